/**
 * Causal grouped-query self-attention with rotary position embeddings (GGUF's interleaved pairs). Two
 * paths over the same weights: training (whole sequences on the tape) and cached inference (new
 * positions after those in a KvCache; the prefix is never recomputed).
 */
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { KvCache } from './kv-cache.js';
import type { Linear } from './linear.js';

export interface AttentionSizes {
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
}

export class Attention {
  constructor(
    readonly q: Linear, // [H·hd, d]
    readonly k: Linear, // [KV·hd, d]
    readonly v: Linear, // [KV·hd, d]
    readonly o: Linear, // [d, H·hd]
    readonly sizes: AttentionSizes,
  ) {}

  /** Training: h [batch·t, d], each run of t rows one sequence -> [batch·t, d]. */
  forward(h: Tensor, batch: number, t: number): Tensor {
    const { heads, kvHeads, headDim: hd, ropeTheta } = this.sizes;
    const q = ops.rope(this.q.forward(h), heads, hd, t, 0, ropeTheta); // [B·T, H·hd]
    const k = ops.rope(this.k.forward(h), kvHeads, hd, t, 0, ropeTheta); // [B·T, KV·hd]
    const v = this.v.forward(h);
    return this.o.forward(ops.attention(q, k, v, batch, heads, kvHeads, hd));
  }

  /**
   * Inference: h [n, d], n new positions after the cache's; writes their keys and values into the
   * cache's slot `layer` (the caller advances cache.length once every layer has run).
   */
  forwardCached(h: Tensor, cache: KvCache, layer: number): Tensor {
    const { heads, kvHeads, headDim: hd, ropeTheta } = this.sizes;
    const g = h.graph, be = g.backend, n = h.shape[0], pos0 = cache.length, kvDim = kvHeads * hd;
    if (pos0 + n > cache.capacity) throw new Error(`attention: ${pos0 + n} positions exceed the KV cache's ${cache.capacity}`);
    const q = ops.rope(this.q.forward(h), heads, hd, n, pos0, ropeTheta);
    const k = ops.rope(this.k.forward(h), kvHeads, hd, n, pos0, ropeTheta);
    const v = this.v.forward(h);
    be.copy(k.buf, 0, cache.k[layer], pos0 * kvDim, n * kvDim);
    be.copy(v.buf, 0, cache.v[layer], pos0 * kvDim, n * kvDim);
    const a = g.temp([n, heads * hd]);
    be.attention(q.buf, cache.k[layer], cache.v[layer], a.buf, g.scratch(n * heads), {
      batch: 1, tq: n, tk: pos0 + n, heads, kvHeads, headDim: hd, qPos0: pos0, scale: 1 / Math.sqrt(hd), kvBatchStride: cache.capacity * kvDim,
    });
    return this.o.forward(a);
  }

  /**
   * Batched decode: h [N, d], one new position for each of N sequences, row i after the positions of
   * `caches[i]` (each sequence its own cache, at its own position). The projections run once over all N
   * rows (the weights are read once per step for every sequence); RoPE, the cache writes and attention
   * go row by row, each over its own cache, with the same kernels and arguments as forwardCached on one
   * row, so a row's numbers differ from its sequence stepped alone only where the products' summation
   * order differs with m.
   */
  forwardCachedRows(h: Tensor, caches: readonly KvCache[], layer: number): Tensor {
    const { heads, kvHeads, headDim: hd, ropeTheta } = this.sizes;
    const g = h.graph, be = g.backend, n = h.shape[0], qDim = heads * hd, kvDim = kvHeads * hd;
    if (caches.length !== n) throw new Error(`attention: ${n} rows for ${caches.length} KV caches`);
    for (const c of caches) if (c.length + 1 > c.capacity) throw new Error(`attention: ${c.length + 1} positions exceed the KV cache's ${c.capacity}`);
    const q = this.q.forward(h), k = this.k.forward(h), v = this.v.forward(h); // [N, H·hd], [N, KV·hd] ×2
    const a = g.temp([n, qDim]);
    // One row's buffers, reused for every row (kernels run synchronously).
    const qRow = g.scratch(qDim), qRot = g.scratch(qDim), kRow = g.scratch(kvDim), kRot = g.scratch(kvDim), aRow = g.scratch(qDim), lse = g.scratch(heads);
    caches.forEach((cache, i) => {
      const pos = cache.length;
      be.copy(q.buf, i * qDim, qRow, 0, qDim);
      be.copy(k.buf, i * kvDim, kRow, 0, kvDim);
      be.rope(qRow, qRot, 1, heads, hd, 1, pos, ropeTheta, false);
      be.rope(kRow, kRot, 1, kvHeads, hd, 1, pos, ropeTheta, false);
      be.copy(kRot, 0, cache.k[layer], pos * kvDim, kvDim);
      be.copy(v.buf, i * kvDim, cache.v[layer], pos * kvDim, kvDim);
      be.attention(qRot, cache.k[layer], cache.v[layer], aRow, lse, {
        batch: 1, tq: 1, tk: pos + 1, heads, kvHeads, headDim: hd, qPos0: pos, scale: 1 / Math.sqrt(hd), kvBatchStride: cache.capacity * kvDim,
      });
      be.copy(aRow, 0, a.buf, i * qDim, qDim);
    });
    return this.o.forward(a);
  }
}
