/** The pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x)). */
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Attention } from './attention.js';
import type { KvCache } from './kv-cache.js';
import type { SwiGluMlp } from './mlp.js';
import type { RMSNorm } from './norm.js';

/** x + branch; training passes one that applies dropout to the branch. */
export type Residual = (x: Tensor, branch: Tensor) => Tensor;

export class TransformerBlock {
  constructor(
    readonly attnNorm: RMSNorm,
    readonly attn: Attention,
    readonly ffnNorm: RMSNorm,
    readonly mlp: SwiGluMlp,
  ) {}

  /** Training: x [batch·t, d], each run of t rows one sequence (causal within it). */
  forward(x: Tensor, batch: number, t: number, residual: Residual = ops.add): Tensor {
    x = residual(x, this.attn.forward(this.attnNorm.forward(x), batch, t));
    return residual(x, this.mlp.forward(this.ffnNorm.forward(x)));
  }

  /** Inference: x [n, d], new positions after the cache's, using the cache's slot `layer`. */
  forwardCached(x: Tensor, cache: KvCache, layer: number): Tensor {
    x = ops.add(x, this.attn.forwardCached(this.attnNorm.forward(x), cache, layer));
    return ops.add(x, this.mlp.forward(this.ffnNorm.forward(x)));
  }

  /** Batched decode: x [N, d], row i one new position of the sequence in `caches[i]`. */
  forwardCachedRows(x: Tensor, caches: readonly KvCache[], layer: number): Tensor {
    x = ops.add(x, this.attn.forwardCachedRows(this.attnNorm.forward(x), caches, layer));
    return ops.add(x, this.mlp.forward(this.ffnNorm.forward(x)));
  }
}
