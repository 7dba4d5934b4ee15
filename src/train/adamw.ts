/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter) with global-norm gradient clipping.
 * The update itself is one fused backend kernel per parameter; moments live in backend memory.
 */
import type { Buf } from '../kernels/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { NonFiniteError } from '../tensor/tensor.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm to this (0 = no clipping). */
  clip: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 };

export class AdamW {
  readonly opts: AdamWOptions;
  /** Updates applied so far (the bias-correction step). */
  step = 0;
  private readonly m = new Map<Tensor, Buf>();
  private readonly v = new Map<Tensor, Buf>();

  constructor(
    readonly params: Tensor[],
    /** Whether a parameter gets weight decay (matrices yes, norm gains no). */
    private readonly decays: (t: Tensor) => boolean,
    opts: Partial<AdamWOptions> = {},
  ) {
    this.opts = { ...ADAMW_DEFAULTS, ...opts };
    for (const p of params) {
      const be = p.graph.backend;
      const m = be.alloc(p.size), v = be.alloc(p.size);
      be.fill(m, 0);
      be.fill(v, 0);
      this.m.set(p, m);
      this.v.set(p, v);
    }
  }

  /** Global L2 norm of the gradients; throws NonFiniteError (naming the parameter) on NaN or Inf. */
  gradNorm(): number {
    let total = 0;
    for (const p of this.params) {
      if (!p.grad || !p.gradReady) continue;
      const s = p.graph.backend.sumSquares(p.grad.buf, p.size);
      if (!Number.isFinite(s)) throw new NonFiniteError(`the gradient of ${p.name}`, p.graph.step, 'backward');
      total += s;
    }
    return Math.sqrt(total);
  }

  /** Clips, applies one update with learning rate lr, and returns the pre-clip gradient norm. */
  update(lr: number): number {
    const norm = this.gradNorm();
    const { clip } = this.opts;
    const gradScale = clip > 0 && norm > clip ? clip / norm : 1;
    this.step++;
    for (const p of this.params) {
      if (!p.grad || !p.gradReady) continue; // no gradient this step (unused parameter)
      p.graph.backend.adamw(p.buf, p.grad.buf, this.m.get(p)!, this.v.get(p)!, p.size, {
        lr, beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps,
        weightDecay: this.decays(p) ? this.opts.weightDecay : 0, step: this.step, gradScale,
      });
    }
    return norm;
  }

  /** Moments, for checkpoints: name -> [m, v]. */
  state(): Map<string, [Float32Array, Float32Array]> {
    const out = new Map<string, [Float32Array, Float32Array]>();
    for (const p of this.params) {
      const be = p.graph.backend;
      out.set(p.name, [be.read(this.m.get(p)!), be.read(this.v.get(p)!)]);
    }
    return out;
  }

  loadState(step: number, moments: Map<string, [Float32Array, Float32Array]>): void {
    for (const p of this.params) {
      const mv = moments.get(p.name);
      if (!mv) throw new Error(`optimizer state: missing moments for ${p.name}`);
      const be = p.graph.backend;
      be.write(this.m.get(p)!, mv[0]);
      be.write(this.v.get(p)!, mv[1]);
    }
    this.step = step;
  }
}
