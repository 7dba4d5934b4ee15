/**
 * A Llama-style decoder: token embedding -> n × TransformerBlock [RMSNorm -> GQA attention with RoPE ->
 * residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> output head (tied to the embedding by
 * default). Activations are 2-D, [rows = batch·time, features], so each projection is one matmul.
 *
 * Two forward passes share the weights: `loss` (training, on the tape) and `forward` (inference with a
 * KV cache: the prefix is never recomputed). The blocks are nn/; the STLM sharing options are in blocks.ts.
 */
import { Embedding } from '../nn/embedding.js';
import { createParameters, isResidualOutput } from '../nn/init.js';
import { KvCache } from '../nn/kv-cache.js';
import { type AdapterSlot, Linear, type ProjectionAdapters, type ProjectionName } from '../nn/linear.js';
import { RMSNorm } from '../nn/norm.js';
import { type TransformerBlock, forwardBlocks } from '../nn/block.js';
import * as ops from '../tensor/ops.js';
import type { QuantMatrix, QuantizedWeight } from '../tensor/quant.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { buildBlocks } from './blocks.js';
import { type LlamaConfig, effectiveDepth, headDim, parameterShapes } from './config.js';
import type { CausalLM, InferenceSession } from './model.js';
import { CachedSession } from './session.js';

export { KvCache, type ProjectionAdapters };
/** The projections an adapter (LoRA, ./lora.ts) can attach to, by their GGUF tensor names. */
export type Projection = ProjectionName;

/** A KV cache sized for `config`'s blocks, holding `capacity` positions (default the model's context). */
export function kvCacheFor(graph: Graph, config: LlamaConfig, capacity = config.ctx): KvCache {
  return new KvCache(graph, effectiveDepth(config), config.nKvHeads * headDim(config), capacity);
}

/**
 * Tokens per micro-batch of a long prompt in forward(). 128 keeps a 113M model's prefill activations
 * near 9 MB (512 tokens at once: ~37 MB), at ~3% of prefill time for decoding quantized weights again
 * per micro-batch.
 */
export const PREFILL_UBATCH = 128;

export class Llama implements CausalLM {
  readonly architecture = 'llama';
  readonly ownStart = false;
  readonly neverPredicted: readonly number[] = [];
  readonly params: Map<string, Tensor>;
  /** Matrices loaded quantized (inference only); they are not in `params`. */
  readonly quantized: Map<string, QuantMatrix>;
  readonly embedding: Embedding;
  /** One per block position (a repeated block shares its weights across its positions). */
  readonly blocks: TransformerBlock[];
  readonly outNorm: RMSNorm;
  /** The output head: the embedding table itself when tied. */
  readonly head: Linear;
  readonly dropoutRng = new Rng(0x5eed);
  dropoutRate: number;
  /** Recompute each block's activations in backward instead of keeping them (less memory, one more forward). */
  recompute = false;
  private readonly slot: AdapterSlot = { adapters: null };
  /** Sessions this model made (a batched step takes only its own). */
  private readonly sessions = new WeakSet<InferenceSession>();

  /**
   * Creates the parameters in `graph`: loaded by name from `weights` (GGUF names, [out, in]; quantized
   * matrices make the model inference-only), or initialised from `seed` (nn/init.ts; residual output
   * projections N(0, 0.02/√(2·depth))). With `trainable` false they get no gradient (a frozen base).
   */
  constructor(
    readonly graph: Graph,
    readonly config: LlamaConfig,
    weights?: Map<string, Float32Array | QuantizedWeight>,
    seed = 1,
    trainable = true,
  ) {
    this.dropoutRate = config.dropout;
    const residualStd = 0.02 / Math.sqrt(2 * effectiveDepth(config));
    const p = createParameters(graph, parameterShapes(config), { weights, seed, trainable, std: (n) => (isResidualOutput(n) ? residualStd : 0.02) });
    this.params = p.params;
    this.quantized = p.quantized;
    const table = p.all.get('token_embd.weight')!;
    this.embedding = new Embedding(table);
    this.blocks = buildBlocks(config, p, '', this.slot);
    this.outNorm = new RMSNorm(p.params.get('output_norm.weight')!, config.normEps);
    this.head = new Linear(config.tieEmbeddings ? table : p.all.get('output.weight')!);
  }

  /** A model from a loaded bundle: f32 weights plus any matrices kept quantized. */
  static fromModel(graph: Graph, m: { config: LlamaConfig; weights: Map<string, Float32Array>; quantized?: Map<string, QuantizedWeight> }): Llama {
    return new Llama(graph, m.config, m.quantized?.size ? new Map<string, Float32Array | QuantizedWeight>([...m.weights, ...m.quantized]) : m.weights);
  }

  /** Adapters applied inside the projections (LoRA), or null. */
  get adapters(): ProjectionAdapters | null {
    return this.slot.adapters;
  }

  set adapters(a: ProjectionAdapters | null) {
    this.slot.adapters = a;
  }

  weights(): Map<string, Float32Array> {
    if (this.quantized.size) throw new Error('this model holds quantized weights: save it from the bundle it was loaded from');
    return new Map([...this.params].map(([n, t]) => [n, t.toArray()]));
  }

  /** Matrices get weight decay, norm gains not. */
  decayed(t: Tensor): boolean {
    return t.shape.length >= 2;
  }

  session(capacity = this.config.ctx): InferenceSession {
    const s = new CachedSession(this.graph, kvCacheFor(this.graph, this.config, capacity), (ids, cache, lastOnly) => this.forward(ids, cache, lastOnly));
    this.sessions.add(s);
    return s;
  }

  /**
   * Batched decode: ids[i] appended to sessions[i] (this model's sessions, each at its own position) in
   * one pass whose projections run with N rows, so every weight is read once for all N sequences.
   * Returns each session's next-token logits.
   */
  pushBatch(sessions: readonly InferenceSession[], ids: ArrayLike<number>): Float32Array[] {
    const n = sessions.length, g = this.graph, vocab = this.config.vocabSize;
    if (ids.length !== n) throw new Error(`pushBatch: ${ids.length} ids for ${n} sessions`);
    const caches = sessions.map((s, i) => {
      if (!(s instanceof CachedSession) || !this.sessions.has(s)) throw new Error(`pushBatch: session ${i} is not one of this model's`);
      if (s.cache.length < 1) throw new Error(`pushBatch: session ${i} is empty (reset it with a prompt first)`);
      if (s.cache.length + 1 > s.cache.capacity) throw new Error(`pushBatch: session ${i} is full (${s.cache.capacity} positions)`);
      return s.cache;
    });
    if (new Set(caches).size !== n) throw new Error('pushBatch: a session appears twice');
    try {
      const rows = g.noGrad(() => {
        const mark = g.mark();
        let x = this.embedding.forward(Int32Array.from(ids)); // [N, d]
        this.blocks.forEach((block, i) => {
          x = block.forwardCachedRows(x, caches, i);
          g.releaseSince(mark, x);
        });
        for (const c of caches) c.length += 1;
        return this.head.forward(this.outNorm.forward(x)).toArray(); // [N, vocab]
      });
      return sessions.map((_, i) => rows.subarray(i * vocab, (i + 1) * vocab)); // disjoint views of one fresh array
    } finally {
      g.release();
    }
  }

  /** Mean cross-entropy in nats of ids -> targets [batch·t] (t ≤ ctx, sequences back to back), on the tape; targets < 0 ignored. */
  loss(ids: Int32Array, targets: Int32Array, batch: number): Tensor {
    return ops.crossEntropy(this.trainLogits(ids, batch), targets);
  }

  /** The training forward's logits [batch·t, vocab] on the tape (what loss() scores; distillation compares them). */
  trainLogits(ids: Int32Array, batch: number): Tensor {
    const t = ids.length / batch, g = this.graph;
    if (!Number.isInteger(t) || t < 1) throw new Error(`loss: ${ids.length} ids do not split into ${batch} sequences`);
    if (t > this.config.ctx) throw new Error(`loss: sequence length ${t} exceeds the model context ${this.config.ctx}`);
    if (this.quantized.size && g.recording) throw new Error('loss: this model holds quantized weights and cannot be trained (load it in f32 to fine-tune)');
    const residual = (x: Tensor, branch: Tensor) => ops.add(x, ops.dropout(branch, this.dropoutRate, () => this.dropoutRng.next()));
    const x = forwardBlocks(this.blocks, this.embedding.forward(ids), batch, t, { residual, recompute: this.recompute, rng: this.dropoutRng }); // [B·T, d]
    return this.head.forward(this.outNorm.forward(x)); // [B·T, vocab]
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
        const end = Math.min(n, i + PREFILL_UBATCH), last = end === n;
        const logits = this.forwardBatch(ids.subarray(i, end), cache, lastOnly, !lastOnly || last);
        if (lastOnly && last) return logits;
        if (!lastOnly) g.backend.copy(logits.buf, 0, all!.buf, i * vocab, (end - i) * vocab);
        g.releaseSince(mark);
      }
      return all!;
    });
  }

  /** One micro-batch of forward(); without `head` it only fills the cache (returns the last hidden row). */
  private forwardBatch(ids: Int32Array, cache: KvCache, lastOnly: boolean, head = true): Tensor {
    const g = this.graph, d = this.config.dModel, n = ids.length;
    return g.noGrad(() => {
      const mark = g.mark();
      let x = this.embedding.forward(ids);
      this.blocks.forEach((block, i) => {
        x = block.forwardCached(x, cache, i);
        // Only the residual stream outlives a block: a prefill holds one block's activations at a time
        // (wasm memory never shrinks, so the peak is what stays).
        g.releaseSince(mark, x);
      });
      cache.length += n;
      if (lastOnly && n > 1) {
        const last = g.temp([1, d]);
        g.backend.copy(x.buf, (n - 1) * d, last.buf, 0, d);
        x = last;
      }
      return head ? this.head.forward(this.outNorm.forward(x)) : x;
    });
  }
}
