/** The pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x)). */
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Rng } from '../util/rng.js';
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
}

export interface BlockStackOptions {
  /** x + branch (training wraps the branch in dropout). */
  residual?: Residual;
  /**
   * Recompute each block in backward instead of keeping its activations (Graph.checkpoint): the tape
   * then holds the blocks' inputs and one block's activations at a time, for a second forward's cost.
   */
  recompute?: boolean;
  /** The random stream `residual` draws from (dropout), replayed when a block is recomputed. */
  rng?: Rng;
}

/**
 * A stack of blocks over x [batch·t, d] (the training form). On the tape each block's activations stay
 * for backward, or with `recompute` only its input; without a tape (evaluation) each block's are freed
 * as soon as the next block's input exists, so a pass holds one block's activations whatever the depth.
 */
export function forwardBlocks(blocks: readonly TransformerBlock[], x: Tensor, batch: number, t: number, o: BlockStackOptions = {}): Tensor {
  const g = x.graph, residual = o.residual ?? ops.add;
  const mark = g.recording ? -1 : g.mark();
  for (const block of blocks) {
    if (o.recompute && g.recording) {
      const run = ([h]: Tensor[]) => block.forward(h, batch, t, residual);
      x = g.checkpoint([x], o.rng ? replaying(o.rng, run) : run);
    } else x = block.forward(x, batch, t, residual);
    if (mark >= 0) g.releaseSince(mark, x);
  }
  return x;
}

/** fn, whose every run after the first draws the same numbers from rng as the first did, and leaves rng as it found it. */
function replaying<A extends unknown[], R>(rng: Rng, fn: (...args: A) => R): (...args: A) => R {
  const start = rng.getState();
  let first = true;
  return (...args) => {
    if (first) {
      first = false;
      return fn(...args);
    }
    const now = rng.getState();
    rng.setState(start);
    try {
      return fn(...args);
    } finally {
      rng.setState(now);
    }
  };
}
