/**
 * A projection y = x · Wᵀ, for every kind of weight a model holds: f32 (trainable), quantized
 * (inference), tied (the same Tensor as an embedding table) or shared (the same weight at several block
 * positions). At a block position it may add low-rank updates: the position's own B·A of a shared W
 * (trained with the base) and an attached adapter's (LoRA fine-tuning).
 */
import * as ops from '../tensor/ops.js';
import { type Weight, project } from '../tensor/quant.js';
import type { Tensor } from '../tensor/tensor.js';

/** The projections of a transformer block, by their GGUF tensor-name stems. */
export const PROJECTIONS = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'] as const;
export type ProjectionName = (typeof PROJECTIONS)[number];

/**
 * Updates added to projection outputs, per block POSITION (0 .. depth−1): with block-wise sharing one
 * weight runs at several positions, and each position may carry its own adapter.
 */
export interface ProjectionAdapters {
  /** y = x · Wᵀ of `projection` at block `position`; returns y plus the adapter's update (or y). */
  adapt(position: number, projection: ProjectionName, x: Tensor, y: Tensor): Tensor;
}

/** Where a model's adapters attach: one object shared by all its projections, so attaching is one assignment. */
export interface AdapterSlot {
  adapters: ProjectionAdapters | null;
}

/** A rank-r update B·A: a [r, in], b [out, r]. */
export interface LowRank {
  a: Tensor;
  b: Tensor;
}

/** Where a projection sits in a model, for its low-rank updates. */
export interface ProjectionSite {
  position: number;
  projection: ProjectionName;
  slot: AdapterSlot;
  /** The position's own update of a shared weight, if any. */
  own?: LowRank;
}

export class Linear {
  constructor(
    /** [out, in] */
    readonly weight: Weight,
    /** Absent for a projection no adapter reaches (an output head, a pooling matrix). */
    readonly site?: ProjectionSite,
  ) {}

  /** x [rows, in] -> [rows, out]. */
  forward(x: Tensor): Tensor {
    let y = project(x, this.weight, ops.linear);
    const s = this.site;
    if (!s) return y;
    if (s.own) y = ops.add(y, ops.linear(ops.linear(x, s.own.a), s.own.b));
    return s.slot.adapters ? s.slot.adapters.adapt(s.position, s.projection, x, y) : y;
  }
}
