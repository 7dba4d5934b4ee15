/**
 * LoRA (Hu et al. 2021): low-rank adapters on the decoder's projections. For a projection W [out, in]
 * at block position i, the adapter holds A [r, in] and B [out, r] and the projection becomes
 *   y = x · Wᵀ + s · (x · Aᵀ) · Bᵀ,   s = alpha / r.
 * A starts random (PEFT's Kaiming-uniform bound 1/√in) and B at zero, so an adapted model starts out
 * exactly equal to its base. Adapters are per block POSITION: with block-wise sharing one stored block
 * runs at several positions, and each position gets its own adapter.
 *
 * llama.cpp scales by alpha / r with r read from lora_b, per tensor pair, and by 1 when alpha is 0 or
 * absent; we do the same. Positions are named by materialized block index (blk.<position>.*), which is
 * what llama.cpp sees in an exported (unshared) copy of the base. The adapter FILE (llama.cpp's LoRA
 * adapter GGUF) is read and written by io/lora-file.ts.
 */
import type { Graph, Tensor } from '../tensor/tensor.js';
import * as ops from '../tensor/ops.js';
import { Rng } from '../util/rng.js';
import { type LlamaConfig, effectiveDepth, materializeSharing, projectionShape } from './config.js';
export { projectionShape };
import type { ModelBundle } from './bundle.js';
import { addLowRank } from './low-rank.js';
import type { Projection, ProjectionAdapters } from './llama.js';

/** Every projection an adapter can target (GGUF names), in file order. */
export const LORA_TARGETS: readonly Projection[] = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];
/** PEFT's and the LoRA paper's default: the query and value projections. */
export const DEFAULT_LORA_TARGETS: readonly Projection[] = ['attn_q', 'attn_v'];

export interface LoraOptions {
  rank: number;
  alpha: number;
  targets: readonly Projection[];
  /** Seed of A's random initialization. */
  seed: number;
}

/** One adapter pair as data: A [rank, in] and B [out, rank], row-major f32. */
export interface LoraPair {
  a: Float32Array;
  b: Float32Array;
  rank: number;
}

/** An adapter as data: pairs by the base tensor they adapt (`blk.<position>.<projection>.weight`). */
export interface LoraData {
  alpha: number;
  pairs: Map<string, LoraPair>;
}

/** "attn_q,attn_v" -> the projections, checked (an unknown name lists the valid ones). */
export function parseLoraTargets(spec: string): Projection[] {
  const names = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new Error(`--targets: no projection named (valid: ${LORA_TARGETS.join(', ')})`);
  for (const n of names) if (!(LORA_TARGETS as readonly string[]).includes(n)) throw new Error(`--targets: unknown projection '${n}' (valid: ${LORA_TARGETS.join(', ')})`);
  return [...new Set(names)] as Projection[];
}

/** The base tensor an adapter at (position, projection) adapts, as named in an unshared model. */
export function loraTensorName(position: number, p: Projection): string {
  return `blk.${position}.${p}.weight`;
}

/** The scale llama.cpp applies: alpha / r in f32, or 1 when alpha is 0 (llama_adapter_lora_weight::get_scale). */
export function loraScale(alpha: number, rank: number): number {
  const a = Math.fround(alpha);
  return a ? Math.fround(a / rank) : 1;
}

/** New adapters as data: A ~ U(−1/√in, 1/√in) (PEFT's kaiming_uniform_(a=√5)), B = 0. */
export function initLora(config: LlamaConfig, o: LoraOptions): LoraData {
  if (!(Number.isInteger(o.rank) && o.rank >= 1)) throw new Error(`LoRA rank must be a positive integer, got ${o.rank}`);
  if (!(Number.isFinite(o.alpha) && o.alpha > 0)) throw new Error(`LoRA alpha must be a positive number, got ${o.alpha}`);
  if (!o.targets.length) throw new Error('LoRA: no target projections');
  const rng = new Rng(o.seed);
  const pairs = new Map<string, LoraPair>();
  for (let pos = 0; pos < effectiveDepth(config); pos++) {
    for (const p of LORA_TARGETS) {
      if (!o.targets.includes(p)) continue;
      const [out, inp] = projectionShape(config, p);
      const bound = 1 / Math.sqrt(inp);
      const a = new Float32Array(o.rank * inp);
      for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
      pairs.set(loraTensorName(pos, p), { a, b: new Float32Array(out * o.rank), rank: o.rank });
    }
  }
  return { alpha: o.alpha, pairs };
}

/** Checks every pair against the base config (position in range, known projection, shapes); `where` names the source. */
export function validateLora(data: LoraData, config: LlamaConfig, where: string): void {
  const depth = effectiveDepth(config);
  for (const [name, pair] of data.pairs) {
    const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
    if (!m || !(LORA_TARGETS as readonly string[]).includes(m[2])) {
      throw new Error(`${where}: adapter for '${name}': stlm adapts only blk.N.{${LORA_TARGETS.join(',')}}.weight`);
    }
    const pos = Number(m[1]);
    if (pos >= depth) throw new Error(`${where}: adapter for '${name}': the base model has ${depth} blocks (is this the adapter of another model?)`);
    const [out, inp] = projectionShape(config, m[2] as Projection);
    if (!(Number.isInteger(pair.rank) && pair.rank >= 1) || pair.a.length !== pair.rank * inp || pair.b.length !== out * pair.rank) {
      throw new Error(`${where}: adapter for '${name}': A has ${pair.a.length} and B ${pair.b.length} values, expected [${pair.rank}, ${inp}] and [${out}, ${pair.rank}] for the base's [${out}, ${inp}]`);
    }
  }
}

/** Adapters attached to a model (`llama.adapters = ...`): parameters in `graph`, applied per position. */
export class LoraAdapters implements ProjectionAdapters {
  /** By base tensor name; A and B are graph parameters named `<base tensor>.lora_a` / `.lora_b`. */
  readonly pairs = new Map<string, { a: Tensor; b: Tensor; rank: number; scale: number }>();
  readonly alpha: number;

  constructor(
    readonly graph: Graph,
    readonly config: LlamaConfig,
    data: LoraData,
    /** Whether A and B get gradients (training) or not (inference). */
    trainable = true,
  ) {
    validateLora(data, config, 'LoRA adapter');
    this.alpha = data.alpha;
    for (const [name, p] of data.pairs) {
      const inp = p.a.length / p.rank, out = p.b.length / p.rank;
      this.pairs.set(name, {
        a: graph.param(`${name}.lora_a`, [p.rank, inp], p.a, trainable),
        b: graph.param(`${name}.lora_b`, [out, p.rank], p.b, trainable),
        rank: p.rank,
        scale: loraScale(data.alpha, p.rank),
      });
    }
  }

  adapt(position: number, projection: Projection, x: Tensor, y: Tensor): Tensor {
    const p = this.pairs.get(loraTensorName(position, projection));
    if (!p) return y;
    // s · (x·Aᵀ)·Bᵀ with the scale on the narrow [rows, r] product.
    return ops.add(y, ops.linear(ops.scale(ops.linear(x, p.a), p.scale), p.b));
  }

  /** The trainable tensors (A and B of every pair). */
  params(): Tensor[] {
    return [...this.pairs.values()].flatMap((p) => [p.a, p.b]);
  }

  /** The adapters as data (copies), for saving or merging. */
  data(): LoraData {
    const pairs = new Map<string, LoraPair>();
    for (const [name, p] of this.pairs) pairs.set(name, { a: p.a.toArray(), b: p.b.toArray(), rank: p.rank });
    return { alpha: this.alpha, pairs };
  }

  /** Frees the parameters' backend memory. */
  dispose(): void {
    for (const t of this.params()) this.graph.backend.free(t.buf);
    this.pairs.clear();
  }
}

/**
 * The base with the adapters folded in: W + s·B·A per adapted tensor (sums in float64, one rounding to
 * f32). A base with shared weights is first written out per position (materializeSharing), since
 * adapters at different positions of one shared matrix give different matrices.
 */
export function mergeLora(base: ModelBundle, lora: LoraData): ModelBundle {
  validateLora(lora, base.config, 'merge');
  const plain = materializeSharing(base.config, base.weights);
  const weights = new Map(plain.weights);
  for (const [name, p] of lora.pairs) {
    const w = weights.get(name);
    if (!w) throw new Error(`merge: the base has no tensor '${name}'`);
    const merged = addLowRank(w, p.a, p.b, p.rank, loraScale(lora.alpha, p.rank));
    weights.set(name, merged);
  }
  return { config: plain.config, weights, vocab: base.vocab };
}
