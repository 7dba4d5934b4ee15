/**
 * Gradient accumulation over micro-batches: a batch's forward and backward passes run a few windows at
 * a time (less activation memory), and the parameters' gradients end as the whole batch's would be.
 */
import * as ops from '../tensor/ops.js';
import type { Graph, Tensor } from '../tensor/tensor.js';

/** One micro-batch's objective on the tape, and its cross-entropy for the loss curve. */
export type Objective = (ids: Int32Array, targets: Int32Array, windows: number) => { loss: Tensor; ce: number };

/**
 * Each of `parts` equal slices' share of the targets that count (>= 0): the weight of its mean loss in
 * the batch's mean. Equal shares when nothing counts.
 */
export function microBatchWeights(targets: Int32Array, parts: number): number[] {
  const per = targets.length / parts;
  const counts = Array.from({ length: parts }, (_, c) => {
    let n = 0;
    for (let i = c * per; i < (c + 1) * per; i++) if (targets[i] >= 0) n++;
    return n;
  });
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((n) => (total ? n / total : 1 / parts));
}

/**
 * Forward and backward of `windows` windows (ids and targets [windows·T]) as micro-batches of
 * `microBatch` windows: each micro-batch's mean loss is weighted by its share of the counted targets
 * (times `scale`), so the gradients added to the parameters are those of the batch's mean loss (up to
 * float rounding: see test/train-memory.test.ts). Releases the graph after each micro-batch. Returns the
 * batch's mean cross-entropy.
 */
export function accumulateGradients(graph: Graph, objective: Objective, ids: Int32Array, targets: Int32Array, windows: number, microBatch: number, scale = 1): number {
  if (!(Number.isInteger(microBatch) && microBatch >= 1 && windows % microBatch === 0)) throw new Error(`micro-batch ${microBatch} does not divide the batch of ${windows} windows`);
  const parts = windows / microBatch, per = ids.length / parts;
  const weights = microBatchWeights(targets, parts);
  let mean = 0;
  for (let c = 0; c < parts; c++) {
    const { loss, ce } = objective(ids.subarray(c * per, (c + 1) * per), targets.subarray(c * per, (c + 1) * per), microBatch);
    mean += ce * weights[c];
    const w = weights[c] * scale;
    graph.backward(w === 1 ? loss : ops.scale(loss, w));
    graph.release();
  }
  return mean;
}
