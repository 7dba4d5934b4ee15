/** Keys and values of past positions, one pair of buffers per block position: [capacity, kvDim] each. */
import type { Buf } from '../kernels/backend.js';
import type { Graph } from '../tensor/tensor.js';

export class KvCache {
  readonly k: Buf[] = [];
  readonly v: Buf[] = [];
  /** Positions filled. */
  length = 0;

  constructor(
    readonly graph: Graph,
    /** Block positions (each repeat of a shared block has its own). */
    readonly layers: number,
    /** Key/value width: kvHeads · headDim. */
    readonly kvDim: number,
    /** Positions it can hold. */
    readonly capacity: number,
  ) {
    for (let i = 0; i < layers; i++) {
      this.k.push(graph.backend.alloc(capacity * kvDim));
      this.v.push(graph.backend.alloc(capacity * kvDim));
    }
  }

  /** Forgets every position. */
  reset(): void {
    this.length = 0;
  }

  /** Keeps the first `length` positions (the rest are overwritten by the next forward). */
  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.length)) throw new Error(`KvCache.truncate: ${length} is not within the ${this.length} positions held`);
    this.length = length;
  }

  dispose(): void {
    for (const b of [...this.k, ...this.v]) this.graph.backend.free(b);
    this.k.length = 0;
    this.v.length = 0;
  }
}
