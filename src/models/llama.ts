/**
 * A Llama-style decoder in one file: token embedding -> n × [RMSNorm -> GQA attention with RoPE ->
 * residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> output head (tied to the embedding by
 * default). Activations are 2-D, [rows = batch·time, features], so each projection is one matmul.
 *
 * Two forward passes share the weights: `loss` (training, on the tape) and `forward` (inference with a
 * KV cache: the prefix is never recomputed).
 */
import type { Buf } from '../kernels/backend.js';
import * as ops from '../tensor/ops.js';
import { QuantMatrix, type QuantizedWeight, type Weight, embeddingQuant, project } from '../tensor/quant.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { effectiveDepth, ffnSource, headDim, parameterShapes, sharedLoraNames, sharedProjections, type LlamaConfig, type ProjectionName } from './config.js';

/** Matrices are f32 Tensors (trainable) or quantized (inference only); norm gains are always f32. */
interface Layer {
  attnNorm: Tensor; // [d]
  wq: Weight; // [d, d]
  wk: Weight; // [kvDim, d]
  wv: Weight; // [kvDim, d]
  wo: Weight; // [d, d]
  ffnNorm: Tensor; // [d]
  wGate: Weight; // [hidden, d]
  wUp: Weight; // [hidden, d]
  wDown: Weight; // [d, hidden]
}

/** Keys and values of past positions, per layer: [ctx, kvHeads·headDim] each. */
export class KvCache {
  readonly k: Buf[] = [];
  readonly v: Buf[] = [];
  /** Positions filled. */
  length = 0;

  constructor(
    private readonly graph: Graph,
    readonly config: LlamaConfig,
    /** Positions it can hold (default: the model's context). */
    readonly capacity = config.ctx,
  ) {
    const kvDim = config.nKvHeads * headDim(config);
    for (let i = 0; i < effectiveDepth(config); i++) {
      this.k.push(graph.backend.alloc(capacity * kvDim));
      this.v.push(graph.backend.alloc(capacity * kvDim));
    }
  }

  reset(): void {
    this.length = 0;
  }

  dispose(): void {
    for (const b of [...this.k, ...this.v]) this.graph.backend.free(b);
    this.k.length = 0;
    this.v.length = 0;
  }
}

/** The projections an adapter (LoRA, ./lora.ts) can attach to, by their GGUF tensor names. */
export type Projection = ProjectionName;

/**
 * Updates added to projection outputs, per block POSITION (0 .. depth−1): with block-wise sharing one
 * Layer object runs at several positions, and each position may carry its own adapter.
 */
export interface ProjectionAdapters {
  /** y = x · Wᵀ of `projection` at block `position`; returns y plus the adapter's update (or y). */
  adapt(position: number, projection: Projection, x: Tensor, y: Tensor): Tensor;
}

/** x · Wᵀ for an f32 or a quantized weight. */
const lin = (x: Tensor, w: Weight): Tensor => project(x, w, ops.linear);

/**
 * Tokens per micro-batch of a long prompt in forward(). 128 keeps a 113M model's prefill activations
 * near 9 MB (512 tokens at once: ~37 MB), at ~3% of prefill time for decoding quantized weights again
 * per micro-batch.
 */
export const PREFILL_UBATCH = 128;

export class Llama {
  readonly params = new Map<string, Tensor>();
  /** Matrices loaded quantized (inference only); they are not in `params`. */
  readonly quantized = new Map<string, QuantMatrix>();
  readonly embedding: Weight;
  readonly layers: Layer[] = [];
  readonly outNorm: Tensor;
  /** The output head: the embedding itself when tied. */
  readonly head: Weight;
  /** Draws dropout masks; part of the training state a checkpoint saves. */
  readonly dropoutRng = new Rng(0x5eed);
  /** Dropout probability of the residual branches now (config.dropout unless a schedule sets it per step). */
  dropoutRate: number;
  /** Adapters applied inside the projections (LoRA), or null. */
  adapters: ProjectionAdapters | null = null;
  /** The per-position updates of shared weights (config.sharedLoraRank), by `<position>.<projection>`. */
  private readonly positionLora = new Map<string, { a: Tensor; b: Tensor }>();

  /**
   * Creates the model's parameters in `graph`. With `weights`, they are loaded by name (GGUF names,
   * [out, in] layout; matrices may be quantized, which makes the model inference-only); otherwise
   * initialized N(0, 0.02), output projections N(0, 0.02/√(2·layers)), norm gains 1, from `seed`.
   * With `trainable` false the parameters get no gradient (a frozen base under adapters).
   */
  constructor(
    readonly graph: Graph,
    readonly config: LlamaConfig,
    weights?: Map<string, Float32Array | QuantizedWeight>,
    seed = 1,
    trainable = true,
  ) {
    this.dropoutRate = config.dropout;
    const rng = new Rng(seed);
    const residualStd = 0.02 / Math.sqrt(2 * effectiveDepth(config));
    const all = new Map<string, Weight>();
    for (const [name, shape] of parameterShapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      let data: Float32Array;
      if (weights) {
        const w = weights.get(name);
        if (!w) throw new Error(`model weights: missing tensor '${name}'`);
        if (!(w instanceof Float32Array)) {
          if (/\.lora_[ab]$/.test(name)) throw new Error(`model weights: adapter tensor '${name}' is ${w.type}; per-position adapters must be f32`);
          if (shape.length !== 2) throw new Error(`model weights: tensor '${name}' is ${w.type}, but only matrices can be quantized`);
          const q = new QuantMatrix(graph, name, w.type, [shape[0], shape[1]], w.bytes());
          this.quantized.set(name, q);
          all.set(name, q);
          continue;
        }
        if (w.length !== n) throw new Error(`model weights: tensor '${name}' has ${w.length} values, expected [${shape.join(', ')}] = ${n}`);
        data = w;
      } else if (shape.length === 1) {
        data = new Float32Array(n).fill(1);
      } else if (name.endsWith('.lora_b')) {
        data = new Float32Array(n); // B = 0: the adapted model starts as the plainly shared one
      } else if (name.endsWith('.lora_a')) {
        const bound = 1 / Math.sqrt(shape[1]); // LoRA's (PEFT's) Kaiming-uniform bound
        data = new Float32Array(n);
        for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
      } else {
        const std = /attn_output|ffn_down/.test(name) ? residualStd : 0.02;
        data = new Float32Array(n);
        for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
      }
      const t = graph.param(name, shape, data, trainable);
      this.params.set(name, t);
      all.set(name, t);
    }
    const p = (n: string) => all.get(n)!;
    const gain = (n: string) => this.params.get(n)!; // norm gains are never quantized (checked above)
    this.embedding = p('token_embd.weight');
    for (let i = 0; i < config.nLayers; i++) {
      const b = `blk.${i}.`, f = `blk.${ffnSource(config, i)}.`;
      const layer: Layer = {
        attnNorm: gain(b + 'attn_norm.weight'), wq: p(b + 'attn_q.weight'), wk: p(b + 'attn_k.weight'), wv: p(b + 'attn_v.weight'),
        wo: p(b + 'attn_output.weight'), ffnNorm: gain(b + 'ffn_norm.weight'), wGate: p(f + 'ffn_gate.weight'),
        wUp: p(f + 'ffn_up.weight'), wDown: p(f + 'ffn_down.weight'),
      };
      // A repeated block is the same Layer object run several times in a row (block-wise sharing).
      for (let r = 0; r < (config.blockRepeat ?? 1); r++) this.layers.push(layer);
    }
    for (let pos = 0; pos < effectiveDepth(config) && (config.sharedLoraRank ?? 0) > 0; pos++) {
      for (const proj of sharedProjections(config)) {
        const n = sharedLoraNames(pos, proj);
        this.positionLora.set(`${pos}.${proj}`, { a: this.params.get(n.a)!, b: this.params.get(n.b)! });
      }
    }
    this.outNorm = gain('output_norm.weight');
    this.head = config.tieEmbeddings ? this.embedding : p('output.weight');
  }

  /** A model from a loaded bundle: f32 weights plus any matrices kept quantized. */
  static fromModel(graph: Graph, m: { config: LlamaConfig; weights: Map<string, Float32Array>; quantized?: Map<string, QuantizedWeight> }): Llama {
    return new Llama(graph, m.config, m.quantized?.size ? new Map<string, Float32Array | QuantizedWeight>([...m.weights, ...m.quantized]) : m.weights);
  }

  /** Parameters as name -> values (a copy), for saving. */
  weights(): Map<string, Float32Array> {
    if (this.quantized.size) throw new Error('this model holds quantized weights: save it from the bundle it was loaded from');
    return new Map([...this.params].map(([n, t]) => [n, t.toArray()]));
  }

  /** Parameters that get weight decay: matrices, not norm gains. */
  decayed(t: Tensor): boolean {
    return t.shape.length >= 2;
  }

  /**
   * Block position i's `projection`: x · Wᵀ, plus the position's own update of a shared W
   * (sharedLoraRank), plus an attached adapter's update (LoRA fine-tuning).
   */
  private proj(x: Tensor, w: Weight, i: number, projection: Projection): Tensor {
    let y = lin(x, w);
    const own = this.positionLora.get(`${i}.${projection}`);
    if (own) y = ops.add(y, ops.linear(ops.linear(x, own.a), own.b));
    return this.adapters ? this.adapters.adapt(i, projection, x, y) : y;
  }

  private mlp(l: Layer, x: Tensor, i: number): Tensor {
    const h = ops.rmsNorm(x, l.ffnNorm, this.config.normEps);
    return this.proj(ops.swiglu(this.proj(h, l.wGate, i, 'ffn_gate'), this.proj(h, l.wUp, i, 'ffn_up')), l.wDown, i, 'ffn_down');
  }

  private embed(ids: Int32Array): Tensor {
    return this.embedding instanceof QuantMatrix ? embeddingQuant(this.embedding, ids) : ops.embedding(this.embedding, ids);
  }

  private residual(x: Tensor, branch: Tensor): Tensor {
    return ops.add(x, ops.dropout(branch, this.dropoutRate, () => this.dropoutRng.next()));
  }

  /**
   * Training forward: ids and targets [batch·t] (t ≤ ctx, sequences back to back). Returns the mean
   * cross-entropy in nats as a [1] tensor on the tape. Targets < 0 are ignored.
   */
  loss(ids: Int32Array, targets: Int32Array, batch: number): Tensor {
    return ops.crossEntropy(this.trainLogits(ids, batch), targets);
  }

  /** The training forward's logits [batch·t, vocab] on the tape (what loss() scores; distillation compares them). */
  trainLogits(ids: Int32Array, batch: number): Tensor {
    const c = this.config, hd = headDim(c);
    const t = ids.length / batch;
    if (!Number.isInteger(t) || t < 1) throw new Error(`loss: ${ids.length} ids do not split into ${batch} sequences`);
    if (t > c.ctx) throw new Error(`loss: sequence length ${t} exceeds the model context ${c.ctx}`);
    if (this.quantized.size && this.graph.recording) throw new Error('loss: this model holds quantized weights and cannot be trained (load it in f32 to fine-tune)');
    // Without a tape (evaluation) a layer's activations can go as soon as it is done.
    const mark = this.graph.recording ? -1 : this.graph.mark();
    let x = this.embed(ids); // [B·T, d]
    for (const [i, l] of this.layers.entries()) {
      const h = ops.rmsNorm(x, l.attnNorm, c.normEps);
      const q = ops.rope(this.proj(h, l.wq, i, 'attn_q'), c.nHeads, hd, t, 0, c.ropeTheta); // [B·T, H·hd]
      const k = ops.rope(this.proj(h, l.wk, i, 'attn_k'), c.nKvHeads, hd, t, 0, c.ropeTheta); // [B·T, KV·hd]
      const v = this.proj(h, l.wv, i, 'attn_v');
      const a = ops.attention(q, k, v, batch, c.nHeads, c.nKvHeads, hd); // [B·T, H·hd]
      x = this.residual(x, this.proj(a, l.wo, i, 'attn_output'));
      x = this.residual(x, this.mlp(l, x, i));
      if (mark >= 0) this.graph.releaseSince(mark, x);
    }
    return lin(ops.rmsNorm(x, this.outNorm, c.normEps), this.head); // [B·T, vocab]
  }

  /**
   * Inference forward of new tokens after the cache's positions; appends their keys and values.
   * Returns logits [ids.length, vocab] (or only the last row with lastOnly), valid until graph.release().
   * A long prompt goes through in micro-batches of PREFILL_UBATCH tokens (as llama.cpp's n_ubatch), so
   * the activations held at once stay small whatever the prompt's length; the logits are the same.
   */
  forward(ids: Int32Array, cache: KvCache, lastOnly = true): Tensor {
    const n = ids.length, g = this.graph, vocab = this.config.vocabSize;
    if (n < 1) throw new Error('forward: no tokens');
    if (cache.length + n > cache.capacity) throw new Error(`forward: ${cache.length + n} positions exceed the KV cache's ${cache.capacity} (the model context is ${this.config.ctx})`);
    if (n <= PREFILL_UBATCH) return this.forwardBatch(ids, cache, lastOnly);
    return g.noGrad(() => {
      const all = lastOnly ? null : g.temp([n, vocab]);
      const mark = g.mark();
      for (let i = 0; i < n; i += PREFILL_UBATCH) {
        const end = Math.min(n, i + PREFILL_UBATCH);
        if (lastOnly && end < n) {
          this.forwardBatch(ids.subarray(i, end), cache, true, false);
          g.releaseSince(mark);
          continue;
        }
        const logits = this.forwardBatch(ids.subarray(i, end), cache, lastOnly);
        if (lastOnly) return logits;
        g.backend.copy(logits.buf, 0, all!.buf, i * vocab, (end - i) * vocab);
        g.releaseSince(mark);
      }
      return all!;
    });
  }

  /** One micro-batch of forward(); without `head` it only fills the cache (no logits: returns the last hidden row). */
  private forwardBatch(ids: Int32Array, cache: KvCache, lastOnly: boolean, head = true): Tensor {
    const c = this.config, g = this.graph, be = g.backend, hd = headDim(c);
    const n = ids.length, pos0 = cache.length, kvDim = c.nKvHeads * hd;
    return g.noGrad(() => {
      const mark = g.mark();
      let x = this.embed(ids);
      this.layers.forEach((l, i) => {
        const h = ops.rmsNorm(x, l.attnNorm, c.normEps);
        const q = ops.rope(this.proj(h, l.wq, i, 'attn_q'), c.nHeads, hd, n, pos0, c.ropeTheta);
        const k = ops.rope(this.proj(h, l.wk, i, 'attn_k'), c.nKvHeads, hd, n, pos0, c.ropeTheta);
        const v = this.proj(h, l.wv, i, 'attn_v');
        be.copy(k.buf, 0, cache.k[i], pos0 * kvDim, n * kvDim);
        be.copy(v.buf, 0, cache.v[i], pos0 * kvDim, n * kvDim);
        const a = g.temp([n, c.dModel]);
        be.attention(q.buf, cache.k[i], cache.v[i], a.buf, g.scratch(n * c.nHeads), {
          batch: 1, tq: n, tk: pos0 + n, heads: c.nHeads, kvHeads: c.nKvHeads, headDim: hd, qPos0: pos0, scale: 1 / Math.sqrt(hd), kvBatchStride: cache.capacity * kvDim,
        });
        x = ops.add(x, this.proj(a, l.wo, i, 'attn_output'));
        x = ops.add(x, this.mlp(l, x, i));
        // Only the residual stream outlives a layer: a prefill then holds one layer's activations at
        // a time (wasm memory never shrinks, so the peak is what stays).
        g.releaseSince(mark, x);
      });
      cache.length = pos0 + n;
      if (lastOnly && n > 1) {
        const last = g.temp([1, c.dModel]);
        be.copy(x.buf, (n - 1) * c.dModel, last.buf, 0, c.dModel);
        x = last;
      }
      return head ? lin(ops.rmsNorm(x, this.outNorm, c.normEps), this.head) : x;
    });
  }
}
