/**
 * Tensors and the reverse-mode tape.
 *
 * A Tensor is a shape plus a backend buffer (contiguous, row-major, f32). Every tensor belongs to a
 * Graph, which owns the tape of backward closures and the intermediate buffers of one step:
 *   forward ops append to the tape -> graph.backward(loss) runs it in reverse -> optimizer step ->
 *   graph.release() returns every intermediate buffer to the backend's pool.
 * Because a step allocates the same sizes in the same order each time, the pool hands the same
 * buffers back and a training loop stops allocating after its first step.
 *
 * Memory: backward frees each op's intermediates (its output, that output's gradient, what it kept for
 * its backward, scratch) as soon as its backward has run, since nothing earlier on the tape reads them
 * (PyTorch does the same without retain_graph); so the peak of a step is the forward's activations plus
 * about one layer's gradients, not both whole. `checkpoint` goes further for a region (a transformer
 * block): it keeps only the region's output and recomputes the rest during backward.
 */
import type { Backend, Buf } from '../kernels/backend.js';

export type Shape = readonly number[];

export class Tensor {
  /** Gradient, same shape; created lazily by backward. */
  grad: Tensor | null = null;
  /** True once grad holds a value (the first contribution may overwrite instead of accumulate). */
  gradReady = false;

  constructor(
    readonly graph: Graph,
    readonly shape: Shape,
    readonly buf: Buf,
    readonly requiresGrad: boolean,
    /** Set for parameters and for debugging; errors name it. */
    public name = '',
    /** For views: the tensor whose buffer this one shares (gradients go to the base). */
    readonly base: Tensor | null = null,
    /** Intermediate of one step, freed by graph.release(); parameters are not. */
    readonly temporary = false,
  ) {}

  get size(): number {
    return sizeOf(this.shape);
  }

  /** A copy of the data as a Float32Array. */
  toArray(): Float32Array {
    return this.graph.backend.read(this.buf, 0, this.size);
  }

  /** The only element of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item: tensor ${describe(this)} has ${this.size} elements, not 1`);
    return this.graph.backend.read(this.buf, 0, 1)[0];
  }

  toString(): string {
    return describe(this);
  }
}

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function describe(t: Tensor): string {
  return `${t.name ? t.name + ' ' : ''}[${t.shape.join(', ')}]`;
}

/** Raised when an op produces NaN or Inf, naming the op and the training step. */
export class NonFiniteError extends Error {
  constructor(
    readonly op: string,
    readonly step: number,
    readonly where: 'forward' | 'backward',
  ) {
    super(`non-finite value (NaN or Inf) produced by ${op} in the ${where} pass at step ${step}`);
    this.name = 'NonFiniteError';
  }
}

interface TapeEntry {
  op: string;
  inputs: Tensor[];
  /** The op's output. */
  out: Tensor;
  /**
   * Intermediates created since the entry before it (its output, what it kept for backward, constants
   * it read): no entry earlier on the tape can read them, so they go once this entry's backward has run.
   */
  owned: Tensor[];
  backward: () => void;
}

export class Graph {
  private tape: TapeEntry[] = [];
  private temps: Tensor[] = [];
  /** Intermediates created while recording since the last tape entry (the next entry owns them). */
  private pending: Tensor[] = [];
  /** Intermediates freed by backward before release(). */
  private freedEarly = new Set<Tensor>();
  /** Gradients of intermediates, with the tensor each belongs to. */
  private readonly gradOwner = new WeakMap<Tensor, Tensor>();
  private gradEnabled = true;
  /** Check every op's output (and every gradient) for NaN/Inf; slow, used to locate a bad op. */
  detectAnomaly = false;
  /** The training step, for error messages. */
  step = 0;

  constructor(readonly backend: Backend) {}

  get recording(): boolean {
    return this.gradEnabled;
  }

  /** Runs fn without recording a tape (inference, evaluation). */
  noGrad<T>(fn: () => T): T {
    const was = this.gradEnabled;
    this.gradEnabled = false;
    try {
      return fn();
    } finally {
      this.gradEnabled = was;
    }
  }

  /** A persistent tensor (a parameter when requiresGrad): not released by release(). */
  param(name: string, shape: Shape, data?: ArrayLike<number>, requiresGrad = true): Tensor {
    const n = sizeOf(shape);
    const buf = this.backend.alloc(n);
    if (data) {
      if (data.length !== n) throw new Error(`param ${name}: ${data.length} values for shape [${shape.join(', ')}] (${n} elements)`);
      this.backend.write(buf, data);
    } else this.backend.fill(buf, 0);
    return new Tensor(this, shape, buf, requiresGrad, name);
  }

  /** An intermediate tensor of this step (freed by release()). Contents unspecified. */
  temp(shape: Shape, requiresGrad = false, name = ''): Tensor {
    const t = new Tensor(this, shape, this.backend.alloc(sizeOf(shape)), requiresGrad, name, null, true);
    this.temps.push(t);
    if (this.gradEnabled) this.pending.push(t);
    return t;
  }

  /** An intermediate tensor with the given values (inputs, constants). */
  constant(shape: Shape, data: ArrayLike<number>, name = ''): Tensor {
    const t = this.temp(shape, false, name);
    if (data.length !== t.size) throw new Error(`constant ${name}: ${data.length} values for shape [${shape.join(', ')}]`);
    this.backend.write(t.buf, data);
    return t;
  }

  /** A view of t with another shape of the same size (shares the buffer and the gradient). */
  view(t: Tensor, shape: Shape): Tensor {
    if (sizeOf(shape) !== t.size) throw new Error(`reshape: cannot view ${describe(t)} (${t.size} elements) as [${shape.join(', ')}]`);
    const base = t.base ?? t;
    return new Tensor(this, shape, t.buf, t.requiresGrad, t.name, base, base.temporary);
  }

  /**
   * Creates the output of an op. requiresGrad follows the inputs while recording.
   * `backward` runs during graph.backward() when the output got a gradient.
   */
  record(op: string, inputs: Tensor[], out: Tensor, backward: () => void): void {
    if (this.detectAnomaly) this.checkFinite(op, out, 'forward');
    if (!out.requiresGrad) return;
    this.tape.push({ op, inputs, out, owned: this.pending, backward });
    this.pending = [];
  }

  /** Whether an op on these inputs must record a backward pass. */
  needsGrad(...inputs: Tensor[]): boolean {
    return this.gradEnabled && inputs.some((t) => t.requiresGrad);
  }

  /**
   * Where an op's gradient contribution for t goes. A kernel that overwrites its output may write
   * straight into the gradient when it is the first contribution (overwrite: true); otherwise it
   * writes to a scratch buffer and adds it with accumulateGrad.
   */
  gradTarget(t: Tensor): { grad: Tensor; overwrite: boolean } {
    const base = t.base ?? t;
    if (!base.grad) {
      base.grad = new Tensor(this, base.shape, this.backend.alloc(base.size), false, base.name ? `${base.name}.grad` : '', null, base.temporary);
      if (base.temporary) {
        this.temps.push(base.grad);
        this.gradOwner.set(base.grad, base);
      }
    }
    return { grad: base.grad, overwrite: !base.gradReady };
  }

  /** Marks t's gradient as holding a value. */
  gradWritten(t: Tensor): void {
    (t.base ?? t).gradReady = true;
  }

  /**
   * t's gradient for a kernel that can overwrite or accumulate into its output (a matrix product), marked
   * written: accumulate only when it already holds a contribution, so a first one needs no zero fill (a
   * pass over the buffer) and the kernel no read of zeros.
   */
  gradForProduct(t: Tensor): { grad: Tensor; accumulate: boolean } {
    const { grad, overwrite } = this.gradTarget(t);
    this.gradWritten(t);
    return { grad, accumulate: !overwrite };
  }

  /** The gradient of t zero-filled if it holds nothing yet, for kernels that accumulate. */
  gradForAccumulate(t: Tensor): Tensor {
    const { grad, overwrite } = this.gradTarget(t);
    if (overwrite) this.backend.fill(grad.buf, 0);
    this.gradWritten(t);
    return grad;
  }

  /**
   * Where an overwriting kernel should write its gradient contribution for t: straight into the gradient
   * when it is the first one, else (or when t needs no gradient) a scratch buffer. Pair with commitGrad.
   */
  gradDestination(t: Tensor): Buf {
    if (!t.requiresGrad) return this.scratch(t.size);
    const { grad, overwrite } = this.gradTarget(t);
    if (!overwrite) return this.scratch(t.size);
    // Claimed now, so a second input that is the same tensor (swiglu(x, x)) gets a scratch buffer.
    this.gradWritten(t);
    return grad.buf;
  }

  /** Completes a contribution written to gradDestination(t): adds it to the gradient unless written in place. */
  commitGrad(t: Tensor, written: Buf): void {
    if (!t.requiresGrad) return;
    if (written !== (t.base ?? t).grad?.buf) this.accumulateGrad(t, written);
  }

  /** Adds the contribution in `src` (size of t) to t's gradient. */
  accumulateGrad(t: Tensor, src: Buf): void {
    const { grad, overwrite } = this.gradTarget(t);
    if (overwrite) this.backend.copy(src, 0, grad.buf, 0, t.size);
    else this.backend.axpy(src, 1, grad.buf, t.size);
    this.gradWritten(t);
  }

  /** A scratch buffer freed at release(). */
  scratch(n: number): Buf {
    return this.temp([n]).buf;
  }

  /**
   * Runs the tape backwards from a scalar loss (d loss = 1), freeing each op's intermediates once its
   * backward has run: read what you need of them before (the loss itself stays). Gradients of
   * parameters and of intermediates that no op produced (inputs) stay until release().
   */
  backward(loss: Tensor): void {
    if (loss.size !== 1) throw new Error(`backward: loss must have one element, got ${describe(loss)}`);
    if (!loss.requiresGrad) throw new Error('backward: the loss does not depend on any parameter that requires a gradient');
    const { grad } = this.gradTarget(loss);
    this.backend.fill(grad.buf, 1);
    this.gradWritten(loss);
    const tape = this.tape;
    this.tape = [];
    try {
      this.runTape(tape, loss.base ?? loss);
    } finally {
      this.pending = [];
    }
  }

  /** Runs `tape`'s backward closures in reverse, freeing as it goes (all but `keep`). */
  private runTape(tape: TapeEntry[], keep: Tensor | null): void {
    for (let i = tape.length - 1; i >= 0; i--) {
      const e = tape[i];
      const before = this.temps.length;
      e.backward();
      if (this.detectAnomaly) for (const t of e.inputs) if ((t.base ?? t).grad && (t.base ?? t).gradReady) this.checkFinite(e.op, (t.base ?? t).grad!, 'backward');
      // Scratch of this backward goes now; the gradients it wrote for earlier tensors stay.
      for (let j = before; j < this.temps.length; j++) if (!this.gradOwner.has(this.temps[j])) this.freeEarly(this.temps[j]);
      this.pending = [];
      const out = e.out.base ?? e.out;
      for (const t of e.owned) {
        // An intermediate that needs a gradient but is no op's output is an input the caller made: keep it.
        if (t === keep || (t.requiresGrad && t !== out)) continue;
        this.freeEarly(t);
        if (t.grad) this.freeEarly(t.grad);
      }
      tape[i] = undefined as unknown as TapeEntry; // let the closures go
    }
  }

  private freeEarly(t: Tensor): void {
    if (this.freedEarly.has(t)) return;
    this.freedEarly.add(t);
    this.backend.free(t.buf);
  }

  /**
   * Activation recomputation (checkpointing): y = fn(inputs), keeping only y. The intermediates fn
   * creates are freed at once; during backward fn runs again on the same inputs, on a tape of its own,
   * whose backward then runs from y's gradient. The gradients are those of running fn directly, at the
   * cost of a second forward of the region. fn must compute the same values when run again: a region
   * that draws random numbers (dropout) must replay them (see nn/block.ts forwardBlocks). Parameters
   * fn reads get their gradients as usual. Without a tape (noGrad) this is fn(inputs).
   */
  checkpoint(inputs: Tensor[], fn: (inputs: Tensor[]) => Tensor): Tensor {
    if (!this.gradEnabled) return fn(inputs);
    const mark = this.temps.length;
    const y = this.isolated(() => fn(inputs));
    const out = y.base ?? y;
    if (!out.temporary || this.temps.lastIndexOf(out) < mark) throw new Error('checkpoint: the region must compute a new tensor, not return one it was given');
    if (!y.requiresGrad) return y;
    this.dropSince(mark, y);
    this.pending.push(out);
    this.record('checkpoint', inputs, y, () => {
      const again = this.temps.length;
      this.isolated(() => {
        const y2 = fn(inputs.map((x) => this.view(x, x.shape))); // views: gradients go to the inputs
        this.accumulateGrad(y2, out.grad!.buf);
        this.runTape(this.tape, null);
        return y2;
      });
      // Drop what the recomputation left, except gradients it wrote for tensors from before it (the inputs').
      const fresh = new Set(this.temps.slice(again));
      const keep = [...fresh].filter((t) => this.gradOwner.has(t) && !fresh.has(this.gradOwner.get(t)!));
      this.dropSince(again, ...keep);
    });
    return y;
  }

  /** Runs fn on a tape of its own (discarded after) with nothing pending from outside. */
  private isolated<T>(fn: () => T): T {
    const tape = this.tape, pending = this.pending;
    this.tape = [];
    this.pending = [];
    try {
      return fn();
    } finally {
      this.tape = tape;
      this.pending = pending;
    }
  }

  private checkFinite(op: string, t: Tensor, where: 'forward' | 'backward'): void {
    if (!Number.isFinite(this.backend.sumSquares(t.buf, t.size))) throw new NonFiniteError(op, this.step, where);
  }

  /** Zeroes the gradients of these parameters (before accumulating a new step). */
  zeroGrad(params: Tensor[]): void {
    for (const p of params) {
      if (p.grad) p.gradReady = false;
    }
  }

  /** A position in the list of intermediates, for releaseSince (inference only). */
  mark(): number {
    return this.temps.length;
  }

  /**
   * Frees the intermediates created since `mark` except `keep` (inference only: a recorded tape may
   * still need them). An inference forward calls it after every layer, so a long prompt holds one
   * layer's activations at a time instead of all of them until release().
   */
  releaseSince(mark: number, ...keep: Tensor[]): void {
    if (this.gradEnabled) throw new Error('releaseSince: only without a tape (inside graph.noGrad)');
    if (mark > this.temps.length) throw new Error(`releaseSince: mark ${mark} is past the ${this.temps.length} live intermediates`);
    this.dropSince(mark, ...keep);
  }

  /** Frees the intermediates created since `mark`, except `keep` (and views of them). */
  private dropSince(mark: number, ...keep: Tensor[]): void {
    // Called after every block of an inference forward: no Sets unless something needs them (the kept
    // buffers are one or two; intermediates freed early and pending ones exist only while recording).
    const temps = this.temps, kept = keep.map((t) => (t.base ?? t).buf);
    const dropped: Tensor[] | null = this.pending.length ? [] : null;
    let live = mark;
    for (let i = mark; i < temps.length; i++) {
      const t = temps[i];
      if (kept.includes(t.buf)) temps[live++] = t;
      else {
        dropped?.push(t);
        if (!(this.freedEarly.size && this.freedEarly.delete(t))) this.backend.free(t.buf);
      }
    }
    temps.length = live;
    if (dropped?.length) {
      const gone = new Set(dropped);
      this.pending = this.pending.filter((t) => !gone.has(t));
    }
  }

  /** Frees every intermediate tensor of the step and clears the tape. Parameters stay. */
  release(): void {
    for (const t of this.temps) if (!this.freedEarly.has(t)) this.backend.free(t.buf);
    this.temps.length = 0;
    this.tape.length = 0;
    this.pending = [];
    this.freedEarly.clear();
  }

  /** Number of intermediate tensors alive (for tests). */
  get liveTemps(): number {
    return this.temps.length - this.freedEarly.size;
  }
}
