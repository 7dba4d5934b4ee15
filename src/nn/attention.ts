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
   * rows (the weights are read once per step for every sequence); RoPE runs once over all rows, each at
   * its own position (ropeRows), and one attentionRows call writes each row's key and value into its cache
   * and attends every row over its own cache. A row's RoPE and attention are the numbers forwardCached gets
   * on that row alone (the same kernels per row), so a row differs from its sequence stepped alone only
   * where the products' summation order differs with m.
   */
  forwardCachedRows(h: Tensor, caches: readonly KvCache[], layer: number): Tensor {
    const { heads, kvHeads, headDim: hd, ropeTheta } = this.sizes;
    const g = h.graph, be = g.backend, n = h.shape[0], qDim = heads * hd;
    if (caches.length !== n) throw new Error(`attention: ${n} rows for ${caches.length} KV caches`);
    for (const c of caches) if (c.length + 1 > c.capacity) throw new Error(`attention: ${c.length + 1} positions exceed the KV cache's ${c.capacity}`);
    const positions = Int32Array.from(caches, (c) => c.length);
    const q = this.q.forward(h), k = this.k.forward(h), v = this.v.forward(h); // [N, H·hd], [N, KV·hd] ×2
    be.ropeRows(q.buf, q.buf, n, heads, hd, positions, ropeTheta);
    be.ropeRows(k.buf, k.buf, n, kvHeads, hd, positions, ropeTheta);
    const a = g.temp([n, qDim]);
    be.attentionRows(q.buf, caches.map((c) => c.k[layer]), caches.map((c) => c.v[layer]), a.buf, g.scratch(n * heads), {
      heads, kvHeads, headDim: hd, scale: 1 / Math.sqrt(hd), positions, newKv: { k: k.buf, v: v.buf },
    });
    return this.o.forward(a);
  }
}
