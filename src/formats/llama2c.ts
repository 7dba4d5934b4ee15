/**
 * llama2.c checkpoints (karpathy/llama2.c): the format of run.c and of the tinyllamas models.
 *
 * Legacy v0 (what run.c reads; what `export.py --version 0` and the original tinyllamas wrote):
 *   7 x i32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *     (vocab_size < 0 means the classifier is NOT shared with the embedding: wcls follows at the end)
 *   f32 weights, each matrix [out, in] row-major (the same layout as ours), grouped by kind over layers:
 *     token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv, dim], wv [L, kv, dim],
 *     wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim],
 *     rms_final [dim], freq_cis_real [seq_len, head/2], freq_cis_imag [seq_len, head/2] (unused by run.c),
 *     wcls [vocab, dim] when not shared.
 * Version 1 (`export.py --version 1`): a 256-byte header (u32 magic "ak42" = 0x616b3432, i32 version 1,
 *   the 7 i32 above with a positive vocab, u8 shared_classifier, zero padding), then f32 weights: all
 *   norms first (rms_att [L, dim], rms_ffn [L, dim], rms_final), then token_embedding, wq, wk, wv, wo,
 *   w1, w2, w3 (each over all layers), then wcls when not shared.
 *
 * w1 is the SwiGLU gate, w3 the up projection, w2 the down projection; RoPE rotates adjacent pairs
 * (the GGUF layout), with theta 10000 and RMSNorm eps 1e-5 hard-coded in run.c.
 */
import type { LlamaConfig } from '../models/config.js';
import { headDim, parameterShapes, validateConfig } from '../models/config.js';

/** A malformed llama2.c checkpoint. */
export class Llama2cError extends Error {
  override name = 'Llama2cError';
}

const MAGIC_V1 = 0x616b3432;
const V1_HEADER_BYTES = 256;
const V0_HEADER_BYTES = 28;

export interface Llama2cModel {
  config: LlamaConfig;
  /** GGUF names, [out, in] layout. */
  weights: Map<string, Float32Array>;
  version: 0 | 1;
}

interface Header {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
  shared: boolean;
}

/** True when the bytes start like a llama2.c checkpoint (v1 magic, or a plausible v0 header). */
export function looksLikeLlama2c(bytes: Uint8Array): boolean {
  if (bytes.length < V0_HEADER_BYTES) return false;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) === MAGIC_V1) return true;
  const v = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true));
  return v.every((x, i) => (i === 5 ? x !== 0 && Math.abs(x) < 1 << 22 : x > 0 && x < 1 << 20));
}

function readHeader(bytes: Uint8Array, fileName: string): { h: Header; version: 0 | 1; dataStart: number } {
  const fail = (msg: string) => new Llama2cError(`${fileName}: ${msg}`);
  if (bytes.length < V0_HEADER_BYTES) throw fail(`file of ${bytes.length} bytes is too short for a llama2.c header (${V0_HEADER_BYTES} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let version: 0 | 1 = 0;
  let at = 0;
  if (dv.getUint32(0, true) === MAGIC_V1) {
    if (bytes.length < V1_HEADER_BYTES) throw fail(`file of ${bytes.length} bytes is too short for a version 1 header (${V1_HEADER_BYTES} bytes)`);
    const v = dv.getInt32(4, true);
    if (v !== 1) throw fail(`llama2.c checkpoint version ${v} is not supported (only the float32 versions 0 and 1; version 2 is int8)`);
    version = 1;
    at = 8;
  }
  const f = (i: number) => dv.getInt32(at + i * 4, true);
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  const vals = names.map((_, i) => f(i));
  vals.forEach((x, i) => {
    const bound = i === 5 ? Math.abs(x) : x;
    if (!(bound > 0 && bound < 1 << 24)) throw fail(`header field ${names[i]} = ${x} is not a plausible size`);
  });
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen] = vals;
  const shared = version === 1 ? bytes[at + 28] !== 0 : vocabRaw > 0;
  if (version === 1 && vocabRaw < 0) throw fail(`header field vocab_size = ${vocabRaw} must be positive in version 1`);
  return { h: { dim, hidden, layers, heads, kvHeads, vocab: Math.abs(vocabRaw), seqLen, shared }, version, dataStart: version === 1 ? V1_HEADER_BYTES : V0_HEADER_BYTES };
}

function configOf(h: Header, fileName: string): LlamaConfig {
  try {
    return validateConfig({
      vocabSize: h.vocab, dModel: h.dim, nLayers: h.layers, nHeads: h.heads, nKvHeads: h.kvHeads, mlpHidden: h.hidden,
      ctx: h.seqLen, tieEmbeddings: h.shared, ropeTheta: 10000, normEps: 1e-5, dropout: 0,
    });
  } catch (e) {
    throw new Llama2cError(`${fileName}: header describes an invalid model: ${(e as Error).message}`);
  }
}

/** The weight groups in file order; each is one of our tensor kinds stacked over layers (or global). */
function fileOrder(c: LlamaConfig, version: 0 | 1): { key: string; perLayer: boolean; count: number }[] {
  const d = c.dModel, kv = c.nKvHeads * headDim(c), hid = c.mlpHidden;
  const g = (key: string, perLayer: boolean, count: number) => ({ key, perLayer, count });
  const embd = g('token_embd.weight', false, c.vocabSize * d);
  const attnNorm = g('attn_norm.weight', true, d), ffnNorm = g('ffn_norm.weight', true, d), outNorm = g('output_norm.weight', false, d);
  const mats = [
    g('attn_q.weight', true, d * d), g('attn_k.weight', true, kv * d), g('attn_v.weight', true, kv * d), g('attn_output.weight', true, d * d),
  ];
  const mlp = [g('ffn_gate.weight', true, hid * d), g('ffn_down.weight', true, d * hid), g('ffn_up.weight', true, hid * d)];
  const head = c.tieEmbeddings ? [] : [g('output.weight', false, c.vocabSize * d)];
  if (version === 1) return [attnNorm, ffnNorm, outNorm, embd, ...mats, ...mlp, ...head];
  const freqs = g('(freq_cis)', false, c.ctx * headDim(c)); // real and imaginary halves together
  return [embd, attnNorm, ...mats, ffnNorm, ...mlp, outNorm, freqs, ...head];
}

function groupFloats(c: LlamaConfig, version: 0 | 1): number {
  return fileOrder(c, version).reduce((s, g) => s + g.count * (g.perLayer ? c.nLayers : 1), 0);
}

/** Parses a llama2.c checkpoint (float32, version 0 or 1). */
export function readLlama2c(bytes: Uint8Array, fileName = '<buffer>'): Llama2cModel {
  const { h, version, dataStart } = readHeader(bytes, fileName);
  const config = configOf(h, fileName);
  const need = dataStart + groupFloats(config, version) * 4;
  if (bytes.length < need) throw new Llama2cError(`${fileName}: truncated: the header's shape needs ${need} bytes of weights and header, the file has ${bytes.length}`);
  if (bytes.length > need) throw new Llama2cError(`${fileName}: ${bytes.length - need} bytes after the last weight: the header does not describe this file (or it is not a llama2.c checkpoint)`);
  // Copy once into an aligned buffer so each tensor is a plain Float32Array view.
  const all = new Float32Array(bytes.slice(dataStart).buffer);
  const weights = new Map<string, Float32Array>();
  let at = 0;
  for (const g of fileOrder(config, version)) {
    const layers = g.perLayer ? config.nLayers : 1;
    for (let l = 0; l < layers; l++) {
      if (!g.key.startsWith('(')) weights.set(g.perLayer ? `blk.${l}.${g.key}` : g.key, all.subarray(at, at + g.count));
      at += g.count;
    }
  }
  for (const [name, w] of weights) {
    for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i])) throw new Llama2cError(`${fileName}: tensor ${name} holds a non-finite value at index ${i}`);
  }
  return { config, weights, version };
}

/** Writes a legacy (v0) llama2.c checkpoint, the format run.c reads, with run.c's freq_cis tables. */
export function writeLlama2c(config: LlamaConfig, weights: Map<string, Float32Array>): Uint8Array {
  if (config.ropeTheta !== 10000) throw new Llama2cError(`llama2.c hard-codes RoPE theta 10000; this model uses ${config.ropeTheta}`);
  if (Math.abs(config.normEps - 1e-5) > 1e-12) throw new Llama2cError(`llama2.c hard-codes RMSNorm eps 1e-5; this model uses ${config.normEps}`);
  for (const [name] of parameterShapes(config)) if (!weights.has(name)) throw new Llama2cError(`cannot write llama2.c: tensor ${name} is missing`);
  const floats = groupFloats(config, 0);
  const out = new Uint8Array(V0_HEADER_BYTES + floats * 4);
  const dv = new DataView(out.buffer);
  const c = config;
  [c.dModel, c.mlpHidden, c.nLayers, c.nHeads, c.nKvHeads, c.tieEmbeddings ? c.vocabSize : -c.vocabSize, c.ctx].forEach((v, i) => dv.setInt32(i * 4, v, true));
  const data = new Float32Array(out.buffer, V0_HEADER_BYTES, floats);
  let at = 0;
  for (const g of fileOrder(config, 0)) {
    if (g.key === '(freq_cis)') {
      writeFreqCis(data.subarray(at, at + g.count), c);
      at += g.count;
      continue;
    }
    const layers = g.perLayer ? c.nLayers : 1;
    for (let l = 0; l < layers; l++) {
      const name = g.perLayer ? `blk.${l}.${g.key}` : g.key;
      const w = weights.get(name)!;
      if (w.length !== g.count) throw new Llama2cError(`cannot write llama2.c: tensor ${name} has ${w.length} values, the config needs ${g.count}`);
      data.set(w, at);
      at += g.count;
    }
  }
  return out;
}

/** run.c ignores these tables, but the legacy layout has them; write what export.py would. */
function writeFreqCis(dst: Float32Array, c: LlamaConfig): void {
  const half = headDim(c) / 2;
  const re = dst.subarray(0, c.ctx * half), im = dst.subarray(c.ctx * half);
  for (let t = 0; t < c.ctx; t++) {
    for (let j = 0; j < half; j++) {
      const angle = t / Math.pow(c.ropeTheta, (2 * j) / headDim(c));
      re[t * half + j] = Math.cos(angle);
      im[t * half + j] = Math.sin(angle);
    }
  }
}

/** The vocabulary size a llama2.c header declares, or undefined when the bytes are not one. */
export function llama2cVocabSize(bytes: Uint8Array): number | undefined {
  try {
    return readHeader(bytes, '').h.vocab;
  } catch {
    return undefined;
  }
}
