/**
 * llama2.c checkpoints (karpathy/llama2.c): the format of run.c and of the tinyllamas models, as bytes.
 * This is a byte container only: header fields as read and tensors under run.c's own names, in file
 * order. What they mean as a model (a LlamaConfig, GGUF tensor names) is io/llama2c.ts.
 *
 * Legacy v0 (what run.c reads; what `export.py --version 0` and the original tinyllamas wrote):
 *   7 x i32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *     (vocab_size < 0 means the classifier is NOT shared with the embedding: wcls follows at the end)
 *   f32 weights, each matrix [out, in] row-major, grouped by kind over layers:
 *     token_embedding_table [vocab, dim], rms_att_weight [L, dim], wq [L, dim, dim], wk [L, kv, dim],
 *     wv [L, kv, dim], wo [L, dim, dim], rms_ffn_weight [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
 *     w3 [L, hidden, dim], rms_final_weight [dim], freq_cis_real [seq_len, head/2],
 *     freq_cis_imag [seq_len, head/2] (unused by run.c), wcls [vocab, dim] when not shared.
 * Version 1 (`export.py --version 1`): a 256-byte header (u32 magic "ak42" = 0x616b3432, i32 version 1,
 *   the 7 i32 above with a positive vocab, u8 shared_classifier, zero padding), then f32 weights: all
 *   norms first (rms_att_weight, rms_ffn_weight, rms_final_weight), then token_embedding_table, wq, wk,
 *   wv, wo, w1, w2, w3, then wcls when not shared. No freq_cis tables.
 *
 * (kv = n_kv_heads · head, head = dim / n_heads.) w1 is the SwiGLU gate, w3 the up projection, w2 the
 * down projection; RoPE rotates adjacent pairs, with theta 10000 and RMSNorm eps 1e-5 hard-coded in run.c.
 */

/** A malformed llama2.c checkpoint. */
export class Llama2cError extends Error {
  override name = 'Llama2cError';
}

const MAGIC_V1 = 0x616b3432;
const V1_HEADER_BYTES = 256;
const V0_HEADER_BYTES = 28;
/** RoPE theta, hard-coded in run.c (and in export.py's freq_cis tables). */
export const LLAMA2C_ROPE_THETA = 10000;
/** RMSNorm epsilon, hard-coded in run.c. */
export const LLAMA2C_NORM_EPS = 1e-5;

/** The header, as read (vocabSize positive; a v0 file's sign is `sharedClassifier`). */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** Whether the classifier is the token embedding (no wcls tensor). */
  sharedClassifier: boolean;
  version: 0 | 1;
}

/** run.c's tensor names (TransformerWeights), plus the legacy layout's freq_cis tables. */
export type Llama2cTensorName =
  | 'token_embedding_table' | 'rms_att_weight' | 'wq' | 'wk' | 'wv' | 'wo' | 'rms_ffn_weight'
  | 'w1' | 'w2' | 'w3' | 'rms_final_weight' | 'freq_cis_real' | 'freq_cis_imag' | 'wcls';

/** One tensor of the file: its name, and its f32 values (per layer when `layered`: stacked over n_layers). */
export interface Llama2cTensorInfo {
  name: Llama2cTensorName;
  values: number;
  layered: boolean;
}

/** All values of a tensor (over every layer when layered). */
function totalValues(h: Llama2cHeader, t: Llama2cTensorInfo): number {
  return t.values * (t.layered ? h.nLayers : 1);
}

/** A checkpoint as data: the header, and every tensor (stacked over layers: [n_layers, ...]) by its llama2.c name. */
export interface Llama2cCheckpoint {
  header: Llama2cHeader;
  tensors: Map<Llama2cTensorName, Float32Array>;
}

/** True when the bytes start like a llama2.c checkpoint (v1 magic, or a plausible v0 header). */
export function looksLikeLlama2c(bytes: Uint8Array): boolean {
  if (bytes.length < V0_HEADER_BYTES) return false;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) === MAGIC_V1) return true;
  const v = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true));
  return v.every((x, i) => (i === 5 ? x !== 0 && Math.abs(x) < 1 << 22 : x > 0 && x < 1 << 20));
}

/** Reads and checks the header (every size plausible; version 0 or 1). */
export function readLlama2cHeader(bytes: Uint8Array, fileName = '<buffer>'): Llama2cHeader {
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
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = vals;
  const sharedClassifier = version === 1 ? bytes[at + 28] !== 0 : vocabRaw > 0;
  if (version === 1 && vocabRaw < 0) throw fail(`header field vocab_size = ${vocabRaw} must be positive in version 1`);
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocabRaw), seqLen, sharedClassifier, version };
}

/** The head size run.c derives (dim / n_heads); throws unless it is a whole, even number. */
function headSize(h: Llama2cHeader, fileName: string): number {
  const head = h.dim / h.nHeads;
  if (!Number.isInteger(head) || head % 2 !== 0) throw new Llama2cError(`${fileName}: dim ${h.dim} is not n_heads ${h.nHeads} times an even head size`);
  return head;
}

/** The tensors a file with this header holds, in file order (run.c's memory_map_weights). */
export function llama2cTensors(h: Llama2cHeader, fileName = '<buffer>'): Llama2cTensorInfo[] {
  const head = headSize(h, fileName);
  const d = h.dim, kv = h.nKvHeads * head, hid = h.hiddenDim;
  const t = (name: Llama2cTensorName, values: number, layered = false): Llama2cTensorInfo => ({ name, values, layered });
  const embd = t('token_embedding_table', h.vocabSize * d);
  const attNorm = t('rms_att_weight', d, true), ffnNorm = t('rms_ffn_weight', d, true), outNorm = t('rms_final_weight', d);
  const attn = [t('wq', d * d, true), t('wk', kv * d, true), t('wv', kv * d, true), t('wo', d * d, true)];
  const mlp = [t('w1', hid * d, true), t('w2', d * hid, true), t('w3', hid * d, true)];
  const cls = h.sharedClassifier ? [] : [t('wcls', h.vocabSize * d)];
  if (h.version === 1) return [attNorm, ffnNorm, outNorm, embd, ...attn, ...mlp, ...cls];
  const freqs = [t('freq_cis_real', (h.seqLen * head) / 2), t('freq_cis_imag', (h.seqLen * head) / 2)];
  return [embd, attNorm, ...attn, ffnNorm, ...mlp, outNorm, ...freqs, ...cls];
}

/**
 * The f32 values after the header. (The two freq_cis tables are added as one term, seq_len · head: for an
 * absurd header, beyond 2^53, the rounded total in the error message is then the one stlm always printed.)
 */
function totalFloats(h: Llama2cHeader, infos: Llama2cTensorInfo[]): number {
  let sum = 0;
  for (const t of infos) {
    if (t.name === 'freq_cis_imag') continue;
    sum += t.name === 'freq_cis_real' ? 2 * t.values : totalValues(h, t);
  }
  return sum;
}

function headerBytes(version: 0 | 1): number {
  return version === 1 ? V1_HEADER_BYTES : V0_HEADER_BYTES;
}

/** Parses a llama2.c checkpoint (float32, version 0 or 1): the header and every tensor, as views of one aligned copy. */
export function readLlama2c(bytes: Uint8Array, fileName = '<buffer>'): Llama2cCheckpoint {
  const header = readLlama2cHeader(bytes, fileName);
  const infos = llama2cTensors(header, fileName);
  const dataStart = headerBytes(header.version);
  const need = dataStart + totalFloats(header, infos) * 4;
  if (bytes.length < need) throw new Llama2cError(`${fileName}: truncated: the header's shape needs ${need} bytes of weights and header, the file has ${bytes.length}`);
  if (bytes.length > need) throw new Llama2cError(`${fileName}: ${bytes.length - need} bytes after the last weight: the header does not describe this file (or it is not a llama2.c checkpoint)`);
  // Copy once into an aligned buffer so each tensor is a plain Float32Array view.
  const all = new Float32Array(bytes.slice(dataStart).buffer);
  const tensors = new Map<Llama2cTensorName, Float32Array>();
  let at = 0;
  for (const t of infos) {
    const n = totalValues(header, t);
    tensors.set(t.name, all.subarray(at, at + n));
    at += n;
  }
  return { header, tensors };
}

/**
 * Writes a checkpoint in `header.version`'s layout. Each tensor is one Float32Array, or its layers in
 * order (so a caller holding per-layer arrays need not concatenate them first). Version 0's freq_cis
 * tables, when absent, are written as export.py computes them (run.c never reads them).
 */
export function writeLlama2c(header: Llama2cHeader, tensors: ReadonlyMap<Llama2cTensorName, Float32Array | readonly Float32Array[]>): Uint8Array {
  const h = header;
  const infos = llama2cTensors(h, 'cannot write llama2.c');
  const dataStart = headerBytes(h.version);
  const floats = totalFloats(h, infos);
  const out = new Uint8Array(dataStart + floats * 4);
  const dv = new DataView(out.buffer);
  const at0 = h.version === 1 ? 8 : 0;
  if (h.version === 1) {
    dv.setUint32(0, MAGIC_V1, true);
    dv.setInt32(4, 1, true);
  }
  const vocab = h.version === 1 || h.sharedClassifier ? h.vocabSize : -h.vocabSize;
  [h.dim, h.hiddenDim, h.nLayers, h.nHeads, h.nKvHeads, vocab, h.seqLen].forEach((v, i) => dv.setInt32(at0 + i * 4, v, true));
  if (h.version === 1) out[at0 + 28] = h.sharedClassifier ? 1 : 0;
  const data = new Float32Array(out.buffer, dataStart, floats);
  const freqs = h.version === 0 && !tensors.has('freq_cis_real') && !tensors.has('freq_cis_imag') ? llama2cFreqCis(h) : undefined;
  let at = 0;
  for (const t of infos) {
    const n = totalValues(h, t);
    const given = tensors.get(t.name) ?? freqs?.get(t.name);
    if (!given) throw new Llama2cError(`cannot write llama2.c: tensor ${t.name} is missing`);
    const parts = given instanceof Float32Array ? [given] : given;
    const total = parts.reduce((s, p) => s + p.length, 0);
    if (total !== n) throw new Llama2cError(`cannot write llama2.c: tensor ${t.name} has ${total} values, the header needs ${n}`);
    for (const p of parts) {
      data.set(p, at);
      at += p.length;
    }
  }
  return out;
}

/** The legacy layout's freq_cis tables, as export.py writes them (theta 10000): cos and sin of t / theta^(2j/head). */
export function llama2cFreqCis(h: Llama2cHeader): Map<Llama2cTensorName, Float32Array> {
  const head = headSize(h, 'cannot write llama2.c');
  const half = head / 2;
  const re = new Float32Array(h.seqLen * half), im = new Float32Array(h.seqLen * half);
  for (let t = 0; t < h.seqLen; t++) {
    for (let j = 0; j < half; j++) {
      const angle = t / Math.pow(LLAMA2C_ROPE_THETA, (2 * j) / head);
      re[t * half + j] = Math.cos(angle);
      im[t * half + j] = Math.sin(angle);
    }
  }
  return new Map([['freq_cis_real', re], ['freq_cis_imag', im]]);
}

/** The vocabulary size a llama2.c header declares, or undefined when the bytes are not one. */
export function llama2cVocabSize(bytes: Uint8Array): number | undefined {
  try {
    return readLlama2cHeader(bytes, '').vocabSize;
  } catch {
    return undefined;
  }
}
