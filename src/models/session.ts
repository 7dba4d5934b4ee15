/**
 * The step interface over one KV cache, for a model whose inference forward takes token ids after the
 * cache's positions (the flat Llama): logits are copied out and the step's tensors released each call.
 */
import type { KvCache } from '../nn/kv-cache.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import type { InferenceSession } from './model.js';

/** ids after the cache's positions -> logits [ids.length or 1, vocab] (valid until graph.release()). */
export type CachedForward = (ids: Int32Array, cache: KvCache, lastOnly: boolean) => Tensor;

export class CachedSession implements InferenceSession {
  constructor(
    private readonly graph: Graph,
    /** The session's cache (a model's batched step writes to several sessions' caches at once). */
    readonly cache: KvCache,
    private readonly forward: CachedForward,
  ) {}

  get length(): number {
    return this.cache.length;
  }

  get capacity(): number {
    return this.cache.capacity;
  }

  reset(ids: ArrayLike<number>): Float32Array {
    if (ids.length < 1) throw new Error('reset: this model needs at least one token to start from (BOS, for an empty text)');
    this.cache.reset();
    return this.run(ids, true);
  }

  push(id: number): Float32Array {
    return this.run([id], true);
  }

  extend(ids: ArrayLike<number>): Float32Array {
    return this.run(ids, false);
  }

  truncate(length: number): void {
    this.cache.truncate(length);
  }

  dispose(): void {
    this.cache.dispose();
  }

  private run(ids: ArrayLike<number>, lastOnly: boolean): Float32Array {
    try {
      return this.forward(Int32Array.from(ids), this.cache, lastOnly).toArray();
    } finally {
      this.graph.release();
    }
  }
}
