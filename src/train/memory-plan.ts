/**
 * Fitting a training run into a memory budget. The trainer splits each batch into micro-batches (their
 * gradients accumulated, so the update is the batch's) and may recompute block activations in backward
 * (Graph.checkpoint). Which to use is measured, not guessed: each candidate's step runs on the dry backend
 * (kernels/dry.ts), which lays out every buffer exactly as the WebAssembly heap does and computes nothing,
 * so a candidate costs milliseconds and its number is the heap the real step will reach, fragmentation of
 * the size-class free lists included.
 *
 * Preference: whole activations at the largest micro-batch that fits, else recomputation at the largest
 * micro-batch that fits. Recomputation costs a second forward of every block (about a third more
 * arithmetic); a smaller micro-batch costs little, since even one window of a few hundred tokens gives the
 * matrix products a few hundred rows (not measured against each other yet).
 */
import { DryBackend } from '../kernels/dry.js';
import type { TrainableModel } from '../models/model.js';
import { Graph, type Tensor } from '../tensor/tensor.js';
import { AdamW } from './adamw.js';

export interface MemoryPlan {
  /** Windows per forward/backward pass (divides the batch). */
  microBatch: number;
  /** Recompute block activations in backward. */
  recompute: boolean;
  /** The backend's memory the run is expected to reach (bytes). */
  expectedBytes: number;
  /** Of which parameters, gradients, optimizer moments and whatever else was held before training (bytes). */
  fixedBytes: number;
  budgetBytes: number;
}

export interface MemoryPlanOptions {
  /** Bytes the backend's memory may reach. */
  budget: number;
  /** Windows per batch (what the plan splits). */
  batch: number;
  seqLen: number;
  /** Bytes the backend holds now (the model, its optimizer moments, a teacher...): backend.memoryBytes(). */
  heldBytes: number;
  /** The model to train, built again on another graph (the dry one): same architecture, config and parameters. */
  build: (graph: Graph) => TrainableModel;
  /** Whether the model can recompute its blocks (default true). */
  canRecompute?: boolean;
  /** What the flag or option is called in errors (default '--memory'). */
  flag?: string;
}

/**
 * Kernel scratch the WebAssembly backend allocates on first use beside the graph's buffers (attention's
 * per-thread rows, staging for token ids, RoPE tables): under 2 MiB measured at ctx 512 on two threads
 * (bench/train-memory.ts prints planned against reached); kept generous so a plan never sits on the edge.
 */
export const BACKEND_SCRATCH_ALLOWANCE = 16 * 2 ** 20;

/** The divisors of n, largest first. */
function divisorsDescending(n: number): number[] {
  const out: number[] = [];
  for (let d = n; d >= 1; d--) if (n % d === 0) out.push(d);
  return out;
}

/** Bytes as people read them ("1.23 GB", decimal units as --memory takes them). */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)} MB`;
  return `${(n / 1e3).toFixed(0)} kB`;
}

/** A size such as 3GB, 3.5G, 2048MB, 4GiB or a plain byte count; an error naming the flag otherwise. */
export function parseBytes(text: string, flag = '--memory'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(k|m|g|t)?(i)?b?\s*$/i.exec(text);
  if (!m) throw new Error(`${flag}: '${text}' is not a size (examples: 3GB, 3.5G, 2048MB, 4GiB)`);
  const unit = m[2] ? 'kmgt'.indexOf(m[2].toLowerCase()) + 1 : 0;
  const bytes = Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** unit);
  if (!(bytes > 0)) throw new Error(`${flag}: '${text}' must be more than 0 bytes`);
  return bytes;
}

/**
 * The heap a training step of `microBatch` windows grows to, measured on the dry backend: the model's
 * parameters and AdamW's moments as the trainer allocates them, then two steps (the second holds the
 * parameters' gradients from the first) and evaluation passes. Returns the growth beyond parameters and
 * moments (bytes).
 */
export function measureStepBytes(o: Pick<MemoryPlanOptions, 'build' | 'seqLen'>, microBatch: number, recompute: boolean): number {
  const be = new DryBackend();
  const g = new Graph(be);
  const model = o.build(g);
  model.recompute = recompute;
  model.dropoutRate = model.config.dropout;
  const params = [...model.params.values()];
  new AdamW(params, () => true); // its moments, allocated where the trainer allocates them
  const before = be.memoryBytes();
  const ids = new Int32Array(microBatch * o.seqLen), targets = new Int32Array(microBatch * o.seqLen);
  for (let step = 0; step < 2; step++) {
    g.zeroGrad(params);
    const loss: Tensor = model.loss(ids, targets, microBatch);
    g.backward(loss);
    g.release();
  }
  // Evaluation at the same micro-batch, and at one window less: the largest short last batch of an
  // evaluation, whose buffers are sizes of their own.
  for (const b of microBatch > 1 ? [microBatch, microBatch - 1] : [1]) {
    g.noGrad(() => model.loss(ids.subarray(0, b * o.seqLen), targets.subarray(0, b * o.seqLen), b));
    g.release();
  }
  return be.memoryBytes() - before;
}

/**
 * The micro-batch and recomputation that keep a run within `budget` bytes: whole activations at the
 * largest micro-batch that fits, else recomputed ones at the largest that fits. Throws, saying what the
 * smallest configuration needs, when not even one window per micro-batch with recomputation fits.
 */
export function planMemory(o: MemoryPlanOptions): MemoryPlan {
  const flag = o.flag ?? '--memory';
  const fixedBytes = o.heldBytes + BACKEND_SCRATCH_ALLOWANCE;
  const modes = o.canRecompute === false ? [false] : [false, true];
  let smallest = Infinity;
  for (const recompute of modes) {
    for (const microBatch of divisorsDescending(o.batch)) {
      const expectedBytes = fixedBytes + measureStepBytes(o, microBatch, recompute);
      smallest = Math.min(smallest, expectedBytes);
      if (expectedBytes <= o.budget) return { microBatch, recompute, expectedBytes, fixedBytes, budgetBytes: o.budget };
    }
  }
  throw new Error(
    `${flag} ${formatBytes(o.budget)}: too small for this model: one window of ${o.seqLen} tokens per micro-batch${modes.length > 1 ? ', with block activations recomputed,' : ''} ` +
      `needs ${formatBytes(smallest)} (of which ${formatBytes(o.heldBytes)} are the parameters, their AdamW moments and what else is loaded, ` +
      `and ${formatBytes(BACKEND_SCRATCH_ALLOWANCE)} kernel scratch); give more memory, a shorter context (--ctx) or a smaller model`,
  );
}

/** One line saying what a plan chose. */
export function describePlan(p: MemoryPlan, batch: number, seqLen: number): string {
  const split = p.microBatch === batch ? `whole batches of ${batch} × ${seqLen}` : `micro-batches of ${p.microBatch} × ${seqLen}, ${batch / p.microBatch} accumulated per batch of ${batch}`;
  return `memory: ${split}, ${p.recompute ? 'block activations recomputed in backward' : 'activations kept'}; expected peak ${formatBytes(p.expectedBytes)} of ${formatBytes(p.budgetBytes)} (${formatBytes(p.fixedBytes)} held before the first step: parameters, optimizer moments, kernel scratch)`;
}
