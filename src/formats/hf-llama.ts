/**
 * Hugging Face LlamaForCausalLM checkpoints (config.json + model.safetensors) to and from stlm's Llama.
 *
 * Two things differ between the layouts:
 *   1. Names: HF's `model.layers.{i}.self_attn.q_proj.weight` is our (GGUF) `blk.{i}.attn_q.weight`, ...
 *      (table below). Matrices are [out, in] row-major on both sides, so no transposes.
 *   2. Rotary embeddings: HF's rotate_half pairs dimension i of a head with i + headDim/2; GGUF, llama2.c
 *      and our model pair 2i with 2i+1. Both rotate pair k by the same angle (frequency theta^(-2k/headDim)),
 *      so the two are the same model once the rows of q_proj and k_proj are reordered inside each head:
 *      our row 2k is HF row k and our row 2k+1 is HF row k + headDim/2. This is llama.cpp's permute in
 *      convert_hf_to_gguf.py (reshape(heads, 2, headDim/2, in).swapaxes(1, 2)); k_proj uses the kv heads.
 *      Attention scores are dot products of q and k, unchanged by reordering both the same way; v_proj
 *      and o_proj are not touched.
 *
 * Tokenizers are not handled here: exportHf takes `extraFiles` (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json) and importHf returns the directory and the raw config so that a tokenizer
 * loader can read its files beside the weights.
 */
import { writeFileAtomic } from '../util/atomic-write.js';
import { type LlamaConfig, headDim, parameterShapes, validateConfig } from '../models/config.js';
import { type SafetensorsFile, type SafetensorsFloatDtype, readSafetensorsFile, tensorToF32, writeSafetensors } from './safetensors.js';

/** A config.json or a checkpoint directory that stlm cannot read as a LlamaForCausalLM. */
export class HfFormatError extends Error {
  override name = 'HfFormatError';
}

export const HF_ARCHITECTURE = 'LlamaForCausalLM';

// ---------------------------------------------------------------------------------------------------
// Tensor names

/** Per-layer names: ours (after `blk.{i}.`) and HF's (after `model.layers.{i}.`). */
const LAYER_NAMES: readonly (readonly [string, string])[] = [
  ['attn_norm', 'input_layernorm'],
  ['attn_q', 'self_attn.q_proj'],
  ['attn_k', 'self_attn.k_proj'],
  ['attn_v', 'self_attn.v_proj'],
  ['attn_output', 'self_attn.o_proj'],
  ['ffn_norm', 'post_attention_layernorm'],
  ['ffn_gate', 'mlp.gate_proj'],
  ['ffn_up', 'mlp.up_proj'],
  ['ffn_down', 'mlp.down_proj'],
];

const GLOBAL_NAMES: readonly (readonly [string, string])[] = [
  ['token_embd', 'model.embed_tokens'],
  ['output_norm', 'model.norm'],
  ['output', 'lm_head'],
];

/** HF's name for one of our tensors; throws for a name that is not a Llama parameter. */
export function hfTensorName(ggufName: string): string {
  const layer = /^blk\.(\d+)\.(\w+)\.weight$/.exec(ggufName);
  const pair = layer ? LAYER_NAMES.find(([ours]) => ours === layer[2]) : GLOBAL_NAMES.find(([ours]) => `${ours}.weight` === ggufName);
  if (!pair) throw new HfFormatError(`tensor '${ggufName}' has no Hugging Face Llama name`);
  return layer ? `model.layers.${layer[1]}.${pair[1]}.weight` : `${pair[1]}.weight`;
}

/** Our name for an HF Llama tensor, or undefined when the name is not a Llama parameter. */
export function ggufTensorName(hfName: string): string | undefined {
  const layer = /^model\.layers\.(\d+)\.([\w.]+)\.weight$/.exec(hfName);
  if (layer) {
    const pair = LAYER_NAMES.find(([, hf]) => hf === layer[2]);
    return pair && `blk.${layer[1]}.${pair[0]}.weight`;
  }
  const pair = GLOBAL_NAMES.find(([, hf]) => `${hf}.weight` === hfName);
  return pair && `${pair[0]}.weight`;
}

// ---------------------------------------------------------------------------------------------------
// The rotary-embedding row order of q_proj and k_proj

/** Moves whole rows: out row `to(r)` = in row r, for a [rows, cols] matrix. */
function moveRows(w: Float32Array, rows: number, cols: number, to: (r: number) => number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) out.set(w.subarray(r * cols, (r + 1) * cols), to(r) * cols);
  return out;
}

function checkQkShape(w: Float32Array, heads: number, cols: number): { rows: number; hd: number } {
  const rows = w.length / cols;
  const hd = rows / heads;
  if (!Number.isInteger(rows) || !Number.isInteger(hd) || hd % 2) {
    throw new HfFormatError(`a q/k projection of ${w.length} values is not [heads ${heads} × even headDim, ${cols}]`);
  }
  return { rows, hd };
}

/** Within each head, HF row k goes to our row 2k and HF row k + headDim/2 to our row 2k+1. */
const hfRowToGguf = (r: number, hd: number): number => {
  const head = Math.floor(r / hd), i = r % hd, half = hd / 2;
  return head * hd + (i < half ? 2 * i : 2 * (i - half) + 1);
};

/** q_proj or k_proj [heads·headDim, cols] from HF's rotate_half row order to ours (interleaved pairs). */
export function permuteQkHfToGguf(w: Float32Array, heads: number, cols: number): Float32Array {
  const { rows, hd } = checkQkShape(w, heads, cols);
  return moveRows(w, rows, cols, (r) => hfRowToGguf(r, hd));
}

/** The inverse of permuteQkHfToGguf: our row order back to HF's. */
export function permuteQkGgufToHf(w: Float32Array, heads: number, cols: number): Float32Array {
  const { rows, hd } = checkQkShape(w, heads, cols);
  const ggufToHf = new Int32Array(rows);
  for (let r = 0; r < rows; r++) ggufToHf[hfRowToGguf(r, hd)] = r;
  return moveRows(w, rows, cols, (r) => ggufToHf[r]);
}

/** How many heads a tensor's rows are grouped into for the rotary permutation (0: not permuted). */
function ropeHeads(config: LlamaConfig, ggufName: string): number {
  if (/^blk\.\d+\.attn_q\.weight$/.test(ggufName)) return config.nHeads;
  if (/^blk\.\d+\.attn_k\.weight$/.test(ggufName)) return config.nKvHeads;
  return 0;
}

/** Our weights as HF's: HF names, q/k rows in HF order. Checks every tensor is there with its size. */
export function hfWeightsFromLlama(config: LlamaConfig, weights: Map<string, Float32Array>): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of parameterShapes(config)) {
    const w = weights.get(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (!w) throw new HfFormatError(`model weights: tensor '${name}' is missing`);
    if (w.length !== n) throw new HfFormatError(`model weights: tensor '${name}' has ${w.length} values, the config needs [${shape.join(', ')}] = ${n}`);
    const heads = ropeHeads(config, name);
    out.set(hfTensorName(name), { shape, data: heads ? permuteQkGgufToHf(w, heads, shape[1]) : w });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// config.json

export interface HfTokenIds {
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
}

const TORCH_DTYPES: Record<SafetensorsFloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** A config.json that transformers' LlamaForCausalLM loads as this model. */
export function hfConfigFromLlama(config: LlamaConfig, tokens: HfTokenIds = {}, dtype: SafetensorsFloatDtype = 'F32'): Record<string, unknown> {
  validateConfig(config);
  const out: Record<string, unknown> = {
    architectures: [HF_ARCHITECTURE],
    model_type: 'llama',
    vocab_size: config.vocabSize,
    hidden_size: config.dModel,
    intermediate_size: config.mlpHidden,
    num_hidden_layers: config.nLayers,
    num_attention_heads: config.nHeads,
    num_key_value_heads: config.nKvHeads,
    head_dim: headDim(config),
    hidden_act: 'silu',
    max_position_embeddings: config.ctx,
    rms_norm_eps: config.normEps,
    rope_theta: config.ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0,
    mlp_bias: false,
    initializer_range: 0.02,
    pretraining_tp: 1,
    tie_word_embeddings: config.tieEmbeddings,
    use_cache: true,
    torch_dtype: TORCH_DTYPES[dtype],
  };
  if (tokens.bosTokenId !== undefined) out.bos_token_id = tokens.bosTokenId;
  if (tokens.eosTokenId !== undefined) out.eos_token_id = tokens.eosTokenId;
  if (tokens.padTokenId !== undefined) out.pad_token_id = tokens.padTokenId;
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Rope settings that mean plain RoPE: absent, null, or rope_type/type 'default'. */
function ropeIsPlain(r: unknown): boolean {
  return r === undefined || r === null || (isObject(r) && (r.rope_type ?? r.type ?? 'default') === 'default');
}

/**
 * Our config from an HF config.json object. Shape fields are required; the others take transformers'
 * LlamaConfig defaults when absent (num_key_value_heads = num_attention_heads, max_position_embeddings
 * 2048, rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false, hidden_act silu). Anything this
 * model does not compute (scaled RoPE, biases, another activation, head_dim ≠ hidden/heads) is an error.
 */
export function llamaFromHfConfig(json: unknown, fileName: string): LlamaConfig {
  const fail = (field: string, message: string): never => {
    throw new HfFormatError(`${fileName}: ${field}: ${message}`);
  };
  if (!isObject(json)) return fail('config', 'expected a JSON object');
  const archs = json.architectures;
  if (archs !== undefined && !(Array.isArray(archs) && archs.includes(HF_ARCHITECTURE))) fail('architectures', `${JSON.stringify(archs)} does not include ${HF_ARCHITECTURE}`);
  if (json.model_type !== 'llama') fail('model_type', json.model_type === undefined ? "is missing (expected 'llama')" : `${JSON.stringify(json.model_type)} is not supported (expected 'llama')`);
  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (v === undefined) return fail(key, 'is missing');
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return fail(key, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) return fail(key, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') fail('hidden_act', `${JSON.stringify(act)} is not supported (stlm's MLP is SwiGLU: 'silu')`);
  if (!ropeIsPlain(json.rope_scaling)) fail('rope_scaling', `${JSON.stringify(json.rope_scaling)} is not supported (stlm computes plain RoPE)`);
  // Newer transformers write rope_theta inside rope_parameters.
  const ropeParameters = json.rope_parameters;
  if (!ropeIsPlain(ropeParameters)) fail('rope_parameters', `${JSON.stringify(ropeParameters)} is not supported (stlm computes plain RoPE)`);
  for (const bias of ['attention_bias', 'mlp_bias']) if (json[bias] === true) fail(bias, 'biases are not supported');
  const tie = json.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') fail('tie_word_embeddings', `must be true or false, got ${JSON.stringify(tie)}`);
  const dModel = int('hidden_size'), nHeads = int('num_attention_heads');
  const ropeTheta = isObject(ropeParameters) && ropeParameters.rope_theta !== undefined
    ? (typeof ropeParameters.rope_theta === 'number' && ropeParameters.rope_theta > 0 ? ropeParameters.rope_theta : fail('rope_parameters.rope_theta', `must be a positive number, got ${JSON.stringify(ropeParameters.rope_theta)}`))
    : positive('rope_theta', 10000);
  if (json.head_dim !== undefined && json.head_dim !== null && json.head_dim !== dModel / nHeads) {
    fail('head_dim', `${JSON.stringify(json.head_dim)} is not hidden_size / num_attention_heads = ${dModel / nHeads} (stlm needs them equal)`);
  }
  const config: LlamaConfig = {
    vocabSize: int('vocab_size'), dModel, nLayers: int('num_hidden_layers'), nHeads, nKvHeads: int('num_key_value_heads', nHeads),
    mlpHidden: int('intermediate_size'), ctx: int('max_position_embeddings', 2048), tieEmbeddings: tie as boolean,
    ropeTheta, normEps: positive('rms_norm_eps', 1e-6), dropout: 0,
  };
  try {
    return validateConfig(config);
  } catch (e) {
    return fail('config', (e as Error).message);
  }
}

// ---------------------------------------------------------------------------------------------------
// Checkpoint directories

export interface HfExportOptions {
  /** How the weights are stored (default F32, exact). */
  dtype?: SafetensorsFloatDtype;
  /** Special token ids for config.json. */
  tokenIds?: HfTokenIds;
  /** More files to write beside the weights, atomically: the tokenizer's (tokenizer.json, ...). */
  extraFiles?: Record<string, string | Uint8Array>;
}


/** A plain file name (no directories), so that a file name read from a checkpoint stays inside it. */
function checkPlainFileName(name: string, field: string): void {
  if (!/^[\w.-]+$/.test(name) || name === '.' || name === '..') throw new HfFormatError(`${field}: '${name}' is not a plain file name`);
}

/**
 * Writes `dir/config.json` and `dir/model.safetensors` (HF names and q/k row order; no lm_head when the
 * embedding is tied), each atomically, plus any `extraFiles`.
 */
export async function exportHf(config: LlamaConfig, weights: Map<string, Float32Array>, dir: string, opts: HfExportOptions = {}): Promise<void> {
  const dtype = opts.dtype ?? 'F32';
  const hfConfig = hfConfigFromLlama(config, opts.tokenIds, dtype);
  const tensors = [...hfWeightsFromLlama(config, weights)].map(([name, t]) => ({ name, dtype, shape: t.shape, data: t.data }));
  // transformers refuses safetensors weights without metadata format 'pt'.
  const bytes = writeSafetensors(tensors, { format: 'pt' });
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  await fs.mkdir(dir, { recursive: true });
  for (const name of Object.keys(opts.extraFiles ?? {})) checkPlainFileName(name, 'extraFiles');
  await writeFileAtomic(join(dir, 'model.safetensors'), bytes);
  await writeFileAtomic(join(dir, 'config.json'), JSON.stringify(hfConfig, null, 2) + '\n');
  for (const [name, data] of Object.entries(opts.extraFiles ?? {})) await writeFileAtomic(join(dir, name), data);
}

export interface HfModel {
  config: LlamaConfig;
  /** Our names and layout. */
  weights: Map<string, Float32Array>;
  /** config.json as read (special token ids, for the tokenizer). */
  hfConfig: Record<string, unknown>;
  /** The checkpoint directory, where a tokenizer loader finds tokenizer.json and friends. */
  dir: string;
}

async function readJsonFile(path: string): Promise<unknown> {
  const fs = await import('node:fs/promises');
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    throw new HfFormatError(`cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HfFormatError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Each HF tensor name and the parsed file that holds it: model.safetensors, or the shards of an index. */
async function readWeightFiles(dir: string): Promise<Map<string, SafetensorsFile>> {
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  const single = join(dir, 'model.safetensors');
  const where = new Map<string, SafetensorsFile>();
  if (await fs.stat(single).then(() => true, () => false)) {
    const file = await readSafetensorsFile(single);
    for (const t of file.tensors) where.set(t.name, file);
    return where;
  }
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (!(await fs.stat(indexPath).then(() => true, () => false))) throw new HfFormatError(`${dir}: neither model.safetensors nor model.safetensors.index.json is there`);
  const index = await readJsonFile(indexPath);
  const weightMap = isObject(index) ? index.weight_map : undefined;
  if (!isObject(weightMap)) throw new HfFormatError(`${indexPath}: weight_map: must be an object of tensor name -> shard file`);
  const shards = new Map<string, SafetensorsFile>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string') throw new HfFormatError(`${indexPath}: weight_map '${name}': must be a file name, got ${JSON.stringify(shard)}`);
    checkPlainFileName(shard, `${indexPath}: weight_map '${name}'`);
    if (!shards.has(shard)) shards.set(shard, await readSafetensorsFile(join(dir, shard)));
    const file = shards.get(shard)!;
    if (!file.tensors.some((t) => t.name === name)) throw new HfFormatError(`${indexPath}: weight_map '${name}': ${shard} has no such tensor`);
    where.set(name, file);
  }
  return where;
}

/** Tensors an HF file may hold that are not parameters: old checkpoints saved RoPE's inverse frequencies. */
const IGNORED_TENSOR = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** Our weights from HF tensors (any of F32, F16, BF16), shapes checked against the config. */
function llamaWeightsFromFiles(config: LlamaConfig, where: Map<string, SafetensorsFile>, dir: string): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  const used = new Set<string>();
  for (const [name, shape] of parameterShapes(config)) {
    const hfName = hfTensorName(name);
    const file = where.get(hfName);
    if (!file) throw new HfFormatError(`${dir}: tensor '${hfName}' is missing`);
    const info = file.tensors.find((t) => t.name === hfName)!;
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new HfFormatError(`${file.fileName}: tensor '${hfName}' has shape [${info.shape.join(', ')}], config.json needs [${shape.join(', ')}]`);
    }
    const values = tensorToF32(file, hfName);
    const heads = ropeHeads(config, name);
    weights.set(name, heads ? permuteQkHfToGguf(values, heads, shape[1]) : values);
    used.add(hfName);
  }
  for (const [hfName, file] of where) {
    // A tied model's file may still carry lm_head (a copy of the embedding): the tie wins.
    if (used.has(hfName) || IGNORED_TENSOR.test(hfName) || (config.tieEmbeddings && hfName === 'lm_head.weight')) continue;
    throw new HfFormatError(`${file.fileName}: unexpected tensor '${hfName}' (not a parameter of this LlamaForCausalLM)`);
  }
  return weights;
}

/** Reads an HF LlamaForCausalLM directory: config.json and model.safetensors (or sharded with an index). */
export async function importHf(dir: string): Promise<HfModel> {
  const { join } = await import('node:path');
  const configPath = join(dir, 'config.json');
  const hfConfig = await readJsonFile(configPath);
  const config = llamaFromHfConfig(hfConfig, configPath);
  const weights = llamaWeightsFromFiles(config, await readWeightFiles(dir), dir);
  return { config, weights, hfConfig: hfConfig as Record<string, unknown>, dir };
}
