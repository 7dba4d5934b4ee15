/**
 * Continuous batching: many generations of one model advance together, one batched decode step
 * (`decodeBatch`: every projection over N rows, so the weights are read once per step for all N
 * sequences) per iteration, each generation with its own KV cache, sampler, stop rules and callbacks.
 *
 * An iteration: drop the generations whose signal aborted (their sessions freed at once); admit waiting
 * ones while fewer than `maxBatch` run, each prefilled as its own step (up to `prefillTokens` prompt
 * tokens per iteration, at least one prompt, so decoding never stalls behind a burst of long prompts),
 * and when any were admitted, a turn of the event loop so their first tokens go out at once; then one
 * decode step for every running generation; then a turn of the event loop, so streams flush and new
 * requests arrive. A sequence whose context is full restarts from its window (as generateSteps does)
 * outside the batch. Every row's logits are what the sequence stepped alone would get (bit for bit with
 * quantized weights, within float summation order with f32), so a seed gives the same text batched or alone.
 */
import { type CausalLM, type InferenceSession, decodeBatch } from '../models/model.js';
import type { Generation, GenerateResult } from './generate.js';

export interface BatcherOptions {
  /** Generations decoded together at most (each holds a KV cache of the model's context). */
  maxBatch: number;
  /** Prompt tokens prefilled per iteration at most (at least one prompt always is). Default 512. */
  prefillTokens?: number;
}

export interface BatchedRunOptions {
  /** Aborting drops the generation at the next iteration and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Each piece of text as it completes (called inside the batch's step: keep it short). */
  onText?: (text: string) => void;
}

interface Sequence {
  gen: Generation;
  o: BatchedRunOptions;
  session?: InferenceSession;
  next: number | null;
  decodeStart: number;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
}

export class DecodeBatcher {
  private readonly waiting: Sequence[] = [];
  private readonly active: Sequence[] = [];
  private running = false;
  /** Decode steps run, and the rows they held (for a mean batch size). */
  steps = 0;
  rows = 0;

  constructor(
    readonly model: CausalLM,
    readonly o: BatcherOptions,
  ) {
    if (!(Number.isInteger(o.maxBatch) && o.maxBatch >= 1)) throw new Error(`batcher: maxBatch must be an integer >= 1, got ${o.maxBatch}`);
  }

  /** Generations running now and waiting to start. */
  get load(): { active: number; waiting: number } {
    return { active: this.active.length, waiting: this.waiting.length };
  }

  /** Runs `gen` (a generation of this batcher's model) among the others; resolves with its result. */
  run(gen: Generation, o: BatchedRunOptions = {}): Promise<GenerateResult> {
    if (gen.model !== this.model) return Promise.reject(new Error('batcher: the generation is for another model'));
    if (o.signal?.aborted) return Promise.reject(o.signal.reason);
    return new Promise((resolve, reject) => {
      this.waiting.push({ gen, o, next: null, decodeStart: 0, resolve, reject });
      if (!this.running) void this.loop();
    });
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting.length || this.active.length) {
        this.dropAborted();
        // The first tokens of the generations just admitted go out before the decode step: their
        // streams' writes run in the turn (a burst of 32 prompts waited a whole step longer without it).
        if (this.admit()) await nextTurn();
        this.decode();
        await nextTurn();
      }
    } finally {
      this.running = false;
    }
  }

  private dropAborted(): void {
    for (const list of [this.waiting, this.active]) {
      for (const s of list.filter((x) => x.o.signal?.aborted)) this.fail(s, s.o.signal!.reason);
    }
  }

  /** Prefills waiting generations (each its own step) while there is room; returns how many. */
  private admit(): number {
    let budget = this.o.prefillTokens ?? 512, admitted = 0;
    while (this.waiting.length && this.active.length < this.o.maxBatch && budget > 0) {
      const s = this.waiting.shift()!;
      this.active.push(s);
      budget -= s.gen.ids.length;
      admitted++;
      this.guard(s, () => {
        const t0 = performance.now();
        s.session = this.model.session();
        const logits = s.session.reset(s.gen.ids);
        s.decodeStart = performance.now();
        s.gen.prefillSeconds = (s.decodeStart - t0) / 1000;
        if (s.gen.done) this.complete(s);
        else this.take(s, logits);
      });
    }
    return admitted;
  }

  /** One decode step for every running generation that has a next id. */
  private decode(): void {
    const ready = this.active.filter((s) => s.next !== null);
    const batch: Sequence[] = [];
    for (const s of ready) {
      // A full context restarts from its window, alone (a prefill, as generateSteps does).
      if (s.gen.full(s.session!)) this.guard(s, () => this.take(s, s.session!.reset(s.gen.window())));
      else batch.push(s);
    }
    if (!batch.length) return;
    let rows: Float32Array[];
    try {
      rows = decodeBatch(this.model, batch.map((s) => s.session!), batch.map((s) => s.next!));
    } catch (e) {
      for (const s of batch) this.fail(s, e);
      return;
    }
    this.steps++;
    this.rows += batch.length;
    batch.forEach((s, i) => this.guard(s, () => this.take(s, rows[i])));
  }

  /** Feeds a row of logits to its generation: the text goes out, the next id is kept for the next step. */
  private take(s: Sequence, logits: Float32Array): void {
    const { text, next } = s.gen.accept(logits);
    if (text) s.o.onText?.(text);
    s.next = next;
    if (next === null) this.complete(s);
  }

  private complete(s: Sequence): void {
    const rest = s.gen.end();
    if (rest) s.o.onText?.(rest);
    s.gen.decodeSeconds = (performance.now() - s.decodeStart) / 1000;
    this.remove(s);
    s.resolve(s.gen.result());
  }

  /** Runs a step of one generation; an error there ends that generation only. */
  private guard(s: Sequence, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(s, e);
    }
  }

  private fail(s: Sequence, e: unknown): void {
    this.remove(s);
    s.reject(e);
  }

  private remove(s: Sequence): void {
    for (const list of [this.waiting, this.active]) {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
    }
    s.session?.dispose();
    s.session = undefined;
    s.next = null;
  }
}

/** A turn of the event loop (setImmediate in Node: no 1 ms timer clamp; a timer elsewhere). */
function nextTurn(): Promise<void> {
  return new Promise((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));
}
