/**
 * The byte-pooled model: a tokenizer-free STLM. Bytes are cut into chunks (./chunking.ts); an encoder
 * pools each chunk's bytes into one vector; the core, Llama blocks over chunk vectors (causal over
 * chunks), turns the vector of chunk j into a prediction of chunk j + 1; a small byte decoder spells
 * that chunk out byte by byte. The core runs once per chunk instead of once per byte.
 *
 *   encoder  chunk j's bytes, PAD-padded to M = chunkBytes, embedded and concatenated
 *            [M·byteDim] -> pool.weight -> RMSNorm -> one core vector [dModel]   (MegaByte's patch embedder)
 *   core     position 0 is a start chunk (BOS then PADs), position j + 1 is chunk j; Llama blocks (RoPE
 *            over chunk positions), output_norm. Output j has seen the start and chunks < j: it predicts chunk j.
 *   decoder  unpool.weight spreads core output j over the M byte positions of chunk j [M, byteDim],
 *            RMSNorm per position; row i adds the embedding of the byte before the one it predicts (for
 *            i = 0 the previous chunk's last byte; BOS at the start); causal Llama blocks over the M rows
 *            of the chunk; logits through the byte embedding (tied) or dec.output.weight.
 *
 * Causality is strict: a byte is predicted from the core output of the chunks before its own chunk and
 * from the bytes of its own chunk before it, nothing else; chunk boundaries are prefix-decidable.
 *
 * Training takes the trainer's windows (ids = bytes[s, s+T), targets = bytes[s+1, s+T+1)) as the T + 1
 * bytes they span and scores bytes s+1 .. s+T, the flat model's targets: its first byte is context only.
 * So its cross-entropy is in nats per byte over the same bytes as the flat model's, and bits per byte
 * (eval/bpb.ts) compare directly. PAD never is a target.
 *
 * Parameters: `byte_embd.weight` (shared by encoder and decoder), `pool.weight`, the core as GGUF's
 * `blk.N.*` and `output_norm.weight`, `unpool.weight`, the decoder as `dec.blk.N.*`,
 * `dec.output_norm.weight` (and `dec.output.weight` when not tied). Matrices are [out, in].
 */
import { type TransformerBlock, forwardBlocks } from '../nn/block.js';
import { createParameters, isResidualOutput } from '../nn/init.js';
import type { KvCache } from '../nn/kv-cache.js';
import * as ops from '../tensor/ops.js';
import type { QuantizedWeight } from '../tensor/quant.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import { BYTE_BOS, BYTE_PAD } from '../tokenizers/byte.js';
import { Rng } from '../util/rng.js';
import { type Chunking, chunkComplete, chunkEnds, formatChunking, parseChunking, validateChunking } from './chunking.js';
import { buildBlocks } from './blocks.js';
import { type LlamaConfig, effectiveDepth, parameterShapes, resolveConfig, validateConfig } from './config.js';
import { kvCacheFor } from './llama.js';
import type { CausalLM, InferenceSession } from './model.js';

/** general.architecture of its GGUF files (llama.cpp does not run them). */
export const POOLED_ARCHITECTURE = 'stlm-pooled';

/** 256 bytes + BOS, EOS, PAD: the byte tokenizer's vocabulary. */
const BYTE_VOCAB = 259;

/**
 * The RMS of the two projected inputs to a residual stream (the pooled chunk into the core, the spread
 * core output into the decoder): that of a freshly initialized Llama embedding, 0.02, held fixed by an
 * RMSNorm with a constant gain. A projection's scale otherwise grows under Adam about fan-in times faster
 * than an embedding entry's; the spread core output then swamped the previous byte's embedding it is
 * added to, and the decoder ignored that byte for hundreds of steps (tinyshakespeare, 100 steps:
 * 4.77 bits/byte without, 4.31 with; the core input's norm alone gained little but keeps both alike).
 */
const INPUT_SCALE = 0.02;

/** The byte-level parts' sizes and the chunking. */
export interface PoolingConfig extends Chunking {
  /** Width of the byte embeddings and of the byte decoder. */
  byteDim: number;
  decoderLayers: number;
  decoderHeads: number;
  decoderMlpHidden: number;
}

/**
 * The LlamaConfig fields describe the core (dModel, nLayers, heads, mlpHidden, sharing, dropout, RoPE,
 * norm eps), except `ctx`, the training window in bytes, and `tieEmbeddings`, which ties the decoder's
 * output head to the byte embedding. vocabSize is the byte vocabulary, 259.
 */
export interface PooledConfig extends LlamaConfig {
  pooling: PoolingConfig;
}

export function isPooledConfig(c: LlamaConfig): c is PooledConfig {
  return typeof (c as Partial<PooledConfig>).pooling === 'object' && (c as Partial<PooledConfig>).pooling !== null;
}

const POOLING_KEYS: Record<string, keyof PoolingConfig | 'chunk'> = {
  byteDim: 'byteDim', byte_dim: 'byteDim', decoderLayers: 'decoderLayers', decoder_layers: 'decoderLayers',
  decoderHeads: 'decoderHeads', decoder_heads: 'decoderHeads', decoderMlpHidden: 'decoderMlpHidden', decoder_mlp_hidden: 'decoderMlpHidden',
  chunk: 'chunk',
};

/**
 * A pooled config from a core spec (a preset name, or preset + overrides as for resolveConfig) that may
 * also hold the pooling keys (byte_dim, decoder_layers, decoder_heads, decoder_mlp_hidden, chunk:
 * 'fixed:4' | 'space:8'); `chunk` given here overrides the spec's. Defaults: fixed:4 chunks, byteDim =
 * dModel / 2 (SpaceByte's d_local), one decoder layer of byteDim / 32 heads, MLP 3·byteDim.
 */
export function resolvePooledConfig(spec: string | Record<string, unknown>, chunk?: string): PooledConfig {
  const core: Record<string, unknown> = typeof spec === 'string' ? { preset: spec } : { ...spec };
  const pooling: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(core)) {
    if (!(k in POOLING_KEYS)) continue;
    pooling[POOLING_KEYS[k]] = v;
    delete core[k];
  }
  let c: LlamaConfig;
  try {
    c = resolveConfig(core);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith('unknown config key') ? `${msg}; byte-pooled models also take ${Object.keys(POOLING_KEYS).join(', ')}` : msg);
  }
  const chunkSpec = chunk ?? pooling.chunk ?? 'fixed:4';
  if (typeof chunkSpec !== 'string') throw new Error(`config chunk must be a string such as 'fixed:4' or 'space:8', got ${JSON.stringify(chunkSpec)}`);
  const byteDim = (pooling.byteDim as number | undefined) ?? Math.max(16, Math.floor(c.dModel / 2 / 16) * 16);
  const decoderHeads = (pooling.decoderHeads as number | undefined) ?? Math.max(1, Math.floor(byteDim / 32));
  const config: PooledConfig = {
    ...c,
    pooling: {
      ...parseChunking(chunkSpec), byteDim, decoderHeads,
      decoderLayers: (pooling.decoderLayers as number | undefined) ?? 1,
      decoderMlpHidden: (pooling.decoderMlpHidden as number | undefined) ?? 3 * byteDim,
    },
  };
  return validatePooledConfig(config);
}

/** Checks a pooled config (the core's fields as validateConfig does); errors name the key. */
export function validatePooledConfig(c: LlamaConfig): PooledConfig {
  validateConfig(c);
  if (c.vocabSize !== BYTE_VOCAB) throw new Error(`config vocabSize must be ${BYTE_VOCAB} for the byte-pooled model (it reads bytes; no tokenizer), got ${c.vocabSize}`);
  if (!isPooledConfig(c)) throw new Error('config pooling is missing: not a byte-pooled config');
  const p = c.pooling;
  validateChunking(p);
  for (const k of ['byteDim', 'decoderLayers', 'decoderHeads', 'decoderMlpHidden'] as const) {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1 << 16) throw new Error(`config ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (p.byteDim % p.decoderHeads) throw new Error(`config byteDim ${p.byteDim} must be a multiple of decoderHeads ${p.decoderHeads}`);
  if ((p.byteDim / p.decoderHeads) % 2) throw new Error(`config decoder head dimension byteDim/decoderHeads = ${p.byteDim / p.decoderHeads} must be even (rotary embeddings rotate pairs)`);
  return c;
}

/** The byte decoder as a LlamaConfig (its blocks are Llama blocks over the M positions of a chunk). */
export function decoderConfig(c: PooledConfig): LlamaConfig {
  const p = c.pooling;
  return {
    vocabSize: BYTE_VOCAB, dModel: p.byteDim, nLayers: p.decoderLayers, nHeads: p.decoderHeads, nKvHeads: p.decoderHeads,
    mlpHidden: p.decoderMlpHidden, ctx: p.chunkBytes, tieEmbeddings: c.tieEmbeddings, ropeTheta: c.ropeTheta, normEps: c.normEps, dropout: c.dropout,
  };
}

/** Every parameter's name and shape, in file order. */
export function pooledParameterShapes(c: PooledConfig): [string, number[]][] {
  const { byteDim, chunkBytes } = c.pooling;
  const blocks = (cfg: LlamaConfig, prefix: string) => parameterShapes(cfg).filter(([n]) => n.startsWith('blk.')).map(([n, s]): [string, number[]] => [prefix + n, s]);
  return [
    ['byte_embd.weight', [BYTE_VOCAB, byteDim]],
    ['pool.weight', [c.dModel, chunkBytes * byteDim]],
    ...blocks(c, ''),
    ['output_norm.weight', [c.dModel]],
    ['unpool.weight', [chunkBytes * byteDim, c.dModel]],
    ...blocks(decoderConfig(c), 'dec.'),
    ['dec.output_norm.weight', [byteDim]],
    ...(c.tieEmbeddings ? [] : [['dec.output.weight', [BYTE_VOCAB, byteDim]] as [string, number[]]]),
  ];
}

/** Exact parameter counts: the byte embedding, the encoder (pool), the core and the decoder (unpool and up). */
export function pooledParameterCounts(c: PooledConfig): { byteEmbedding: number; encoder: number; core: number; decoder: number; total: number } {
  const r = { byteEmbedding: 0, encoder: 0, core: 0, decoder: 0, total: 0 };
  for (const [name, shape] of pooledParameterShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const part = name === 'byte_embd.weight' ? 'byteEmbedding' : name === 'pool.weight' ? 'encoder' : name.startsWith('blk.') || name === 'output_norm.weight' ? 'core' : 'decoder';
    r[part] += n;
    r.total += n;
  }
  return r;
}

/** One line for logs: chunking and sizes. */
export function describePooled(c: PooledConfig): string {
  const n = pooledParameterCounts(c), p = c.pooling, f = (x: number) => x.toLocaleString('en-US');
  return `byte-pooled, ${formatChunking(p)} chunks: ${f(n.total)} parameters (byte embedding ${f(n.byteEmbedding)}, encoder ${f(n.encoder)}, ` +
    `core ${f(n.core)}: d ${c.dModel} × ${c.nLayers} layers, decoder ${f(n.decoder)}: d ${p.byteDim} × ${p.decoderLayers} layers), window ${c.ctx} bytes`;
}

/**
 * A batch of byte sequences laid out in chunks. Core position j of sequence b and decoder chunk j of
 * sequence b share the index b·chunks + j; decoder row (b·chunks + j)·M + i predicts byte i of chunk j.
 */
export interface ChunkLayout {
  batch: number;
  /** Core positions per sequence: at least the most chunks any sequence of the batch has (the others are padded). */
  chunks: number;
  /** [batch·chunks·M] the core's input chunk at each position: the start chunk, then chunks 0, 1, …; PAD-padded. */
  encoderIds: Int32Array;
  /** [batch·chunks·M] the decoder's input per row: the byte before the predicted one (BOS for a sequence's first). */
  decoderIds: Int32Array;
  /** [batch·chunks·M] the byte each row predicts; −1 (ignored) for padding and for each sequence's first byte. */
  targets: Int32Array;
  /** [batch·length] the decoder row that predicts each input byte; −1 for each sequence's first byte. */
  rowOf: Int32Array;
}

/** Lays out `batch` sequences of equal length (bytes, back to back) in chunks. */
export function layoutChunks(p: Chunking, bytes: ArrayLike<number>, batch: number): ChunkLayout {
  const len = bytes.length / batch, M = p.chunkBytes;
  if (!Number.isInteger(len) || len < 1) throw new Error(`byte-pooled: ${bytes.length} bytes do not split into ${batch} sequences`);
  const ends: number[][] = [];
  for (let b = 0; b < batch; b++) ends.push(chunkEnds(p, Array.from({ length: len }, (_, i) => bytes[b * len + i])));
  // Word chunks vary in number per window: round up to a multiple of 16 so that a run sees few distinct
  // shapes (the backend's buffer pool keeps a free list per size, so every new shape costs memory).
  const most = Math.max(...ends.map((e) => e.length));
  const chunks = p.rule === 'space' ? Math.ceil(most / 16) * 16 : most;
  const rows = batch * chunks * M;
  const encoderIds = new Int32Array(rows).fill(BYTE_PAD), decoderIds = new Int32Array(rows).fill(BYTE_PAD);
  const targets = new Int32Array(rows).fill(-1), rowOf = new Int32Array(batch * len).fill(-1);
  for (let b = 0; b < batch; b++) {
    const s0 = b * len;
    let prevStart = 0, start = 0;
    ends[b].forEach((end, j) => {
      const row0 = (b * chunks + j) * M;
      // Core input j: the start chunk, or chunk j − 1 (complete: chunk j follows it).
      if (j === 0) encoderIds[row0] = BYTE_BOS;
      else for (let i = prevStart; i < start; i++) encoderIds[row0 + i - prevStart] = bytes[s0 + i];
      // Decoder chunk j: each row reads the byte before the one it predicts (the previous chunk's last, for
      // its first row: a direct path to the nearest context), BOS at the start of the sequence.
      for (let i = start; i < end; i++) {
        decoderIds[row0 + i - start] = i === 0 ? BYTE_BOS : bytes[s0 + i - 1];
        targets[row0 + i - start] = bytes[s0 + i];
        rowOf[s0 + i] = row0 + i - start;
      }
      prevStart = start;
      start = end;
    });
    // The first byte is context only (the flat model's first input): nothing before it to predict from.
    targets[b * chunks * M] = -1;
    rowOf[s0] = -1;
  }
  return { batch, chunks, encoderIds, decoderIds, targets, rowOf };
}

/**
 * The trainer's windows as byte sequences: sequence b is ids[b·T, (b+1)·T) plus its last target, T + 1
 * bytes. Throws unless the windows are contiguous raw bytes (targets[t] = ids[t + 1], ids < 256).
 */
export function windowBytes(ids: Int32Array, targets: Int32Array, batch: number): Int32Array {
  const T = ids.length / batch;
  if (!Number.isInteger(T) || T < 1 || targets.length !== ids.length) throw new Error(`byte-pooled: ${ids.length} ids and ${targets.length} targets do not split into ${batch} windows`);
  const out = new Int32Array(batch * (T + 1));
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const id = ids[b * T + t];
      if (!(id >= 0 && id < 256)) throw new Error(`byte-pooled: id ${id} is not a byte (the model reads raw bytes 0..255: train it with the byte tokenizer)`);
      if (t + 1 < T && targets[b * T + t] !== ids[b * T + t + 1]) throw new Error('byte-pooled: the windows must be contiguous text (targets[t] = ids[t + 1]); masked or shifted targets are not supported');
      out[b * (T + 1) + t] = id;
    }
    const last = targets[b * T + T - 1];
    if (!(last >= 0 && last < 256)) throw new Error(`byte-pooled: target ${last} is not a byte`);
    out[b * (T + 1) + T] = last;
  }
  return out;
}

export class BytePooled implements CausalLM {
  readonly architecture = POOLED_ARCHITECTURE;
  /** Every context starts from the model's own start chunk: no BOS is fed, an empty context is valid. */
  readonly ownStart = true;
  /** BOS and PAD are never targets in training and cannot be fed back as bytes. */
  readonly neverPredicted: readonly number[] = [BYTE_BOS, BYTE_PAD];
  readonly tokenizerKind = 'byte';
  readonly params: Map<string, Tensor>;
  readonly dropoutRng = new Rng(0x5eed);
  dropoutRate: number;
  /** Recompute each block's activations in backward instead of keeping them (less memory, one more forward). */
  recompute = false;
  readonly config: PooledConfig;
  readonly byteEmbedding: Tensor; // [259, byteDim]
  readonly pool: Tensor; // [dModel, M·byteDim]
  /** Blocks over chunk positions, one per position. */
  readonly core: TransformerBlock[];
  readonly outNorm: Tensor; // [dModel]
  readonly unpool: Tensor; // [M·byteDim, dModel]
  /** Blocks over the byte positions of a chunk. */
  readonly decoder: TransformerBlock[];
  readonly decoderNorm: Tensor; // [byteDim]
  readonly head: Tensor; // [259, byteDim]: the byte embedding when tied
  /** Constant gains (INPUT_SCALE, not trained) of the normalized core and decoder inputs. */
  private readonly coreInputScale: Tensor; // [dModel]
  private readonly decoderInputScale: Tensor; // [byteDim]

  /**
   * Creates the parameters in `graph`: loaded by name from `weights`, or initialized from `seed` as Llama
   * does (nn/init.ts; residual output projections N(0, 0.02/√(2·depth)) per stack).
   * Any LlamaConfig is accepted and checked to be a pooled one (so it can serve as train()'s ModelFactory).
   */
  constructor(
    readonly graph: Graph,
    pooledConfig: LlamaConfig,
    weights?: Map<string, Float32Array>,
    seed = 1,
  ) {
    const config = (this.config = validatePooledConfig(pooledConfig));
    this.dropoutRate = config.dropout;
    const coreStd = 0.02 / Math.sqrt(2 * effectiveDepth(config)), decoderStd = 0.02 / Math.sqrt(2 * config.pooling.decoderLayers);
    const std = (name: string) => (isResidualOutput(name) ? (name.startsWith('dec.') ? decoderStd : coreStd) : 0.02);
    const params = createParameters(graph, pooledParameterShapes(config), { weights, seed, std });
    this.params = params.params;
    const p = (name: string) => this.params.get(name)!;
    this.byteEmbedding = p('byte_embd.weight');
    this.pool = p('pool.weight');
    this.core = buildBlocks(config, params);
    this.outNorm = p('output_norm.weight');
    this.unpool = p('unpool.weight');
    this.decoder = buildBlocks(decoderConfig(config), params, 'dec.');
    this.decoderNorm = p('dec.output_norm.weight');
    this.head = config.tieEmbeddings ? this.byteEmbedding : p('dec.output.weight');
    this.coreInputScale = graph.param('core input scale', [config.dModel], new Float32Array(config.dModel).fill(INPUT_SCALE), false);
    this.decoderInputScale = graph.param('decoder input scale', [config.pooling.byteDim], new Float32Array(config.pooling.byteDim).fill(INPUT_SCALE), false);
  }

  session(capacity = this.config.ctx): InferenceSession {
    return new PooledStream(this, capacity);
  }

  /** Training form of a stack: x [batch·t, d], each run of t rows one sequence, dropout on the branches. */
  private runBlocks(blocks: TransformerBlock[], x: Tensor, batch: number, t: number): Tensor {
    const residual = (x: Tensor, branch: Tensor) => ops.add(x, ops.dropout(branch, this.dropoutRate, () => this.dropoutRng.next()));
    return forwardBlocks(blocks, x, batch, t, { residual, recompute: this.recompute, rng: this.dropoutRng });
  }

  /** Inference form of a stack: x [n, d], n new positions after the cache's; appends their keys and values. */
  private runBlocksCached(blocks: TransformerBlock[], x: Tensor, cache: KvCache): Tensor {
    const n = x.shape[0];
    if (cache.length + n > cache.capacity) throw new Error(`byte-pooled: ${cache.length + n} positions exceed the KV cache's ${cache.capacity}`);
    blocks.forEach((block, i) => (x = block.forwardCached(x, cache, i)));
    cache.length += n;
    return x;
  }

  /** A model from a loaded bundle (f32 weights only: the pooled model has no quantized path). */
  static fromModel(graph: Graph, m: { config: LlamaConfig; weights: Map<string, Float32Array>; quantized?: Map<string, QuantizedWeight> }): BytePooled {
    if (!isPooledConfig(m.config)) throw new Error('not a byte-pooled model (its config has no pooling section)');
    if (m.quantized?.size) throw new Error('the byte-pooled model runs from f32 weights only; this file holds quantized tensors');
    return new BytePooled(graph, m.config, m.weights);
  }

  /** Parameters as name -> values (a copy), for saving. */
  weights(): Map<string, Float32Array> {
    return new Map([...this.params].map(([n, t]) => [n, t.toArray()]));
  }

  /** Parameters that get weight decay: matrices (embedding included, as for Llama), not norm gains. */
  decayed(t: Tensor): boolean {
    return t.shape.length >= 2;
  }

  private get chunkBytes(): number {
    return this.config.pooling.chunkBytes;
  }

  /** The encoder: chunks of M ids each [chunks·M] -> core inputs [chunks, dModel], at INPUT_SCALE. */
  encode(ids: Int32Array): Tensor {
    const { byteDim } = this.config.pooling, M = this.chunkBytes;
    const e = ops.embedding(this.byteEmbedding, ids); // [chunks·M, byteDim]
    const pooled = ops.linear(this.graph.view(e, [ids.length / M, M * byteDim]), this.pool); // [chunks, dModel]
    return ops.rmsNorm(pooled, this.coreInputScale, this.config.normEps);
  }

  /** Core outputs [rows, dModel] spread over the M byte positions of their chunk, at INPUT_SCALE: [rows·M, byteDim]. */
  private spread(coreOut: Tensor): Tensor {
    const u = ops.linear(ops.rmsNorm(coreOut, this.outNorm, this.config.normEps), this.unpool); // [rows, M·byteDim]
    return ops.rmsNorm(this.graph.view(u, [u.shape[0] * this.chunkBytes, this.config.pooling.byteDim]), this.decoderInputScale, this.config.normEps);
  }

  /** The decoder's input [rows·M, byteDim]: spread core outputs plus the embedding of the byte before each position (prevIds [rows·M]). */
  decoderInput(coreOut: Tensor, prevIds: Int32Array): Tensor {
    return ops.add(this.spread(coreOut), ops.embedding(this.byteEmbedding, prevIds));
  }

  private byteLogitsOf(decoderOut: Tensor): Tensor {
    return ops.linear(ops.rmsNorm(decoderOut, this.decoderNorm, this.config.normEps), this.head); // [rows, 259]
  }

  /** The training forward's logits [batch·chunks·M, 259], one row per decoder position of the layout. */
  layoutLogits(l: ChunkLayout): Tensor {
    const M = this.chunkBytes;
    const x = this.runBlocks(this.core, this.encode(l.encoderIds), l.batch, l.chunks); // [B·C, dModel]
    const y = this.decoderInput(x, l.decoderIds); // [B·C·M, byteDim]
    return this.byteLogitsOf(this.runBlocks(this.decoder, y, l.batch * l.chunks, M)); // [B·C·M, 259]
  }

  /**
   * Training forward: the trainer's ids and targets [batch·T] (contiguous byte windows, see windowBytes).
   * Returns the mean cross-entropy (nats per byte) over bytes s+1 .. s+T of each window, on the tape.
   */
  loss(ids: Int32Array, targets: Int32Array, batch: number): Tensor {
    const T = ids.length / batch;
    if (T > this.config.ctx) throw new Error(`loss: window of ${T} bytes exceeds the model's ${this.config.ctx}`);
    const l = layoutChunks(this.config.pooling, windowBytes(ids, targets, batch), batch);
    return ops.crossEntropy(this.layoutLogits(l), l.targets);
  }

  /**
   * Logits [bytes.length, 259] of the training forward for one sequence, computed without the tape: row p
   * predicts byte p from the bytes before it (row 0, with nothing before it, is zeros). For tests and
   * for checking generation against full recomputation.
   */
  byteLogits(bytes: ArrayLike<number>): Float32Array {
    const g = this.graph, V = BYTE_VOCAB;
    const l = layoutChunks(this.config.pooling, bytes, 1);
    const all = g.noGrad(() => this.layoutLogits(l).toArray());
    g.release();
    const out = new Float32Array(bytes.length * V);
    l.rowOf.forEach((row, p) => {
      if (row >= 0) out.set(all.subarray(row * V, (row + 1) * V), p * V);
    });
    return out;
  }

  /** Inference: runs the core over n new chunks (ids [n·M]) after the cache's; returns the last one's decoder conditioning [M·byteDim]. */
  coreStep(chunkIds: Int32Array, cache: KvCache): Float32Array {
    const g = this.graph, n = chunkIds.length / this.chunkBytes;
    const out = g.noGrad(() => {
      let x = this.runBlocksCached(this.core, this.encode(chunkIds), cache); // [n, dModel]
      if (n > 1) {
        const last = g.temp([1, this.config.dModel]);
        g.backend.copy(x.buf, (n - 1) * this.config.dModel, last.buf, 0, this.config.dModel);
        x = last;
      }
      return this.spread(x).toArray(); // [M·byteDim]
    });
    g.release();
    return out;
  }

  /**
   * Inference: runs the decoder over new positions of the current chunk after the cache's, each row the
   * conditioning of its position plus the embedding of the byte before it; returns the last row's logits [259].
   */
  decoderStep(conditioning: Float32Array, prevIds: Int32Array, cache: KvCache): Float32Array {
    const g = this.graph, d = this.config.pooling.byteDim, n = prevIds.length, pos0 = cache.length;
    const out = g.noGrad(() => {
      const cond = g.constant([n, d], conditioning.subarray(pos0 * d, (pos0 + n) * d));
      let y = this.runBlocksCached(this.decoder, ops.add(cond, ops.embedding(this.byteEmbedding, prevIds)), cache); // [n, byteDim]
      if (n > 1) {
        const last = g.temp([1, d]);
        g.backend.copy(y.buf, (n - 1) * d, last.buf, 0, d);
        y = last;
      }
      return this.byteLogitsOf(y).toArray();
    });
    g.release();
    return out;
  }
}

/**
 * Byte-by-byte inference over one stream, chunk by chunk inside: a KV cache over the core's chunk
 * positions (the core runs once when a chunk completes) and one over the decoder's positions in the
 * current chunk (reset at each chunk). Every call returns the logits [259] of the next byte.
 */
export class PooledStream implements InferenceSession {
  private readonly coreCache: KvCache;
  private readonly decoderCache: KvCache;
  private conditioning: Float32Array = new Float32Array(0);
  /** Bytes of the current chunk (not yet complete). */
  private chunk: number[] = [];
  /** The bytes in the context: those fed since the last reset. */
  private context: number[] = [];

  /** `capacityBytes`: the longest context it can hold (default the model's window). */
  constructor(
    readonly model: BytePooled,
    readonly capacityBytes = model.config.ctx,
  ) {
    // Every chunk holds at least one byte: capacityBytes bytes are at most that many chunks, plus the start chunk.
    this.coreCache = kvCacheFor(model.graph, model.config, capacityBytes + 1);
    this.decoderCache = kvCacheFor(model.graph, decoderConfig(model.config), model.config.pooling.chunkBytes);
  }

  /** Bytes in the context. */
  get length(): number {
    return this.context.length;
  }

  get capacity(): number {
    return this.capacityBytes;
  }

  /** Starts over from `bytes` (may be empty); returns the logits of the byte after them. */
  reset(bytes: ArrayLike<number>): Float32Array {
    const p = this.model.config.pooling, M = p.chunkBytes;
    if (bytes.length > this.capacityBytes) throw new Error(`byte-pooled: ${bytes.length} bytes exceed the context of ${this.capacityBytes}`);
    this.coreCache.reset();
    const ends = chunkEnds(p, bytes);
    let complete = ends.length;
    const lastStart = ends.length > 1 ? ends[ends.length - 2] : 0;
    if (complete && !chunkComplete(p, bytes, lastStart, ends[complete - 1])) complete--;
    // Core inputs: the start chunk and every complete chunk.
    const ids = new Int32Array((complete + 1) * M).fill(BYTE_PAD);
    ids[0] = BYTE_BOS;
    let start = 0;
    for (let j = 0; j < complete; j++) {
      for (let i = start; i < ends[j]; i++) ids[(j + 1) * M + i - start] = bytes[i];
      start = ends[j];
    }
    this.conditioning = this.model.coreStep(ids, this.coreCache);
    this.chunk = Array.from({ length: bytes.length - start }, (_, i) => bytes[start + i]);
    this.context = Array.from(bytes);
    this.decoderCache.reset();
    // The decoder's rows read the byte before each predicted one: the last complete chunk's last byte first.
    return this.model.decoderStep(this.conditioning, Int32Array.from([start > 0 ? bytes[start - 1] : BYTE_BOS, ...this.chunk]), this.decoderCache);
  }

  /** Appends one byte; returns the logits of the next one. */
  push(byte: number): Float32Array {
    const p = this.model.config.pooling, M = p.chunkBytes;
    if (!(Number.isInteger(byte) && byte >= 0 && byte < 256)) throw new Error(`byte-pooled: ${byte} is not a byte`);
    if (this.context.length >= this.capacityBytes) throw new Error(`byte-pooled: the context of ${this.capacityBytes} bytes is full (reset from a shorter one)`);
    this.chunk.push(byte);
    this.context.push(byte);
    if (chunkComplete(p, this.chunk, 0, this.chunk.length)) {
      // The chunk is complete: the core reads it, and the decoder starts the next one.
      const ids = new Int32Array(M).fill(BYTE_PAD);
      ids.set(this.chunk);
      this.conditioning = this.model.coreStep(ids, this.coreCache);
      this.chunk = [];
      this.decoderCache.reset();
    }
    // Either way the next decoder row reads this byte (the one before the byte it predicts).
    return this.model.decoderStep(this.conditioning, Int32Array.of(byte), this.decoderCache);
  }

  /** Appends bytes one by one (the decoder runs per byte); returns the logits after each [bytes.length × 259]. */
  extend(bytes: ArrayLike<number>): Float32Array {
    const V = BYTE_VOCAB, out = new Float32Array(bytes.length * V);
    for (let i = 0; i < bytes.length; i++) out.set(this.push(bytes[i]), i * V);
    return out;
  }

  /** Keeps the first `length` bytes: the chunking of a prefix is the prefix's own, so it restarts from them. */
  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.context.length)) throw new Error(`byte-pooled: ${length} is not within the ${this.context.length} bytes held`);
    if (length < this.context.length) this.reset(this.context.slice(0, length));
  }

  dispose(): void {
    this.coreCache.dispose();
    this.decoderCache.dispose();
  }
}
