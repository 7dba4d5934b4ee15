/**
 * Hugging Face LlamaForCausalLM checkpoints (config.json + model.safetensors) to and from stlm's Llama.
 *
 * Reading takes checkpoints as they are published, not only as exportHf writes them: sharded with
 * model.safetensors.index.json, F32/F16/BF16 tensors, grouped-query attention, the tied embedding stored
 * under either name (or aliased in safetensors metadata), MistralForCausalLM without a sliding window.
 * The reader works on a file lookup (importHfFromFiles), so a browser can pass dropped files; importHf is
 * the Node wrapper that reads them from a directory.
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
import { type SafetensorsFloatDtype, parseJsonStrict, readSafetensors, tensorToF32, writeSafetensors } from '../formats/safetensors.js';

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

/** Architectures read, with the model_type their config.json must give. */
const ARCHITECTURES: Readonly<Record<string, string>> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral' };

/**
 * transformers' defaults for what a config.json may leave out, per model_type (LlamaConfig, MistralConfig).
 * MistralConfig's sliding_window defaults to 4096, so a Mistral config must say null explicitly.
 */
const DEFAULTS: Readonly<Record<string, { ctx: number; normEps: number }>> = {
  llama: { ctx: 2048, normEps: 1e-6 },
  mistral: { ctx: 4096 * 32, normEps: 1e-6 },
};

/** What config.json says, before the weights are seen: tie_word_embeddings as given (undefined: absent). */
export interface HfConfigReading {
  config: LlamaConfig;
  /** The architecture read (LlamaForCausalLM or MistralForCausalLM). */
  architecture: string;
  declaredTie: boolean | undefined;
}

/**
 * Reads an HF config.json object. Shape fields are required; the others take transformers' defaults when
 * absent or null (num_key_value_heads = num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000, hidden_act
 * silu). LlamaForCausalLM is read, and MistralForCausalLM when sliding_window is null (then it is the same
 * network). Anything this model does not compute is refused in one line naming the file, the field and its
 * value: scaled RoPE, biases, another activation, head_dim ≠ hidden_size / num_attention_heads, a sliding
 * window, another architecture. tie_word_embeddings is returned as given: the weights decide (importHf).
 */
export function readHfConfig(json: unknown, fileName: string): HfConfigReading {
  const fail = (field: string, message: string): never => {
    throw new HfFormatError(`${fileName}: ${field}: ${message}`);
  };
  const show = (v: unknown): string => JSON.stringify(v) ?? String(v);
  if (!isObject(json)) return fail('config', 'expected a JSON object');
  const supported = `stlm reads ${Object.keys(ARCHITECTURES).join(', ')}`;
  const archs = json.architectures ?? undefined;
  let architecture: string | undefined;
  if (archs !== undefined) {
    if (!Array.isArray(archs)) return fail('architectures', `${show(archs)} is not a list of architecture names`);
    architecture = archs.find((a): a is string => typeof a === 'string' && a in ARCHITECTURES);
    if (!architecture) return fail('architectures', `${show(archs)} is not supported (${supported})`);
  }
  const modelType = json.model_type;
  if (modelType === undefined || modelType === null) return fail('model_type', `is missing (expected ${architecture ? `'${ARCHITECTURES[architecture]}'` : "'llama' or 'mistral'"})`);
  if (architecture ? modelType !== ARCHITECTURES[architecture] : !Object.values(ARCHITECTURES).includes(modelType as string)) {
    fail('model_type', `${show(modelType)} is not supported${architecture ? ` with ${architecture} (expected '${ARCHITECTURES[architecture]}')` : ` (expected 'llama' or 'mistral')`}`);
  }
  architecture ??= Object.keys(ARCHITECTURES).find((a) => ARCHITECTURES[a] === modelType)!;
  const defaults = DEFAULTS[modelType as string];
  if (modelType === 'mistral' && json.sliding_window !== null) {
    fail('sliding_window', `${json.sliding_window === undefined ? 'is absent (MistralConfig then uses 4096)' : `${show(json.sliding_window)} is not supported`}: stlm reads MistralForCausalLM only without a sliding window (sliding_window: null), which is Llama's attention`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (v === undefined) return fail(key, 'is missing');
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return fail(key, `must be a positive integer, got ${show(v)}`);
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) return fail(key, `must be a positive number, got ${show(v)}`);
    return v;
  };
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') fail('hidden_act', `${show(act)} is not supported (stlm's MLP is SwiGLU: 'silu')`);
  if (!ropeIsPlain(json.rope_scaling)) fail('rope_scaling', `${show(json.rope_scaling)} is not supported (stlm computes plain RoPE)`);
  // Newer transformers write rope_theta inside rope_parameters.
  const ropeParameters = json.rope_parameters;
  if (!ropeIsPlain(ropeParameters)) fail('rope_parameters', `${show(ropeParameters)} is not supported (stlm computes plain RoPE)`);
  for (const bias of ['attention_bias', 'mlp_bias']) {
    const v = json[bias];
    if (v !== undefined && v !== null && v !== false) fail(bias, `${show(v)} is not supported (stlm's ${bias === 'mlp_bias' ? 'MLP' : 'attention'} has no biases)`);
  }
  const tieValue = json.tie_word_embeddings ?? undefined;
  if (tieValue !== undefined && typeof tieValue !== 'boolean') fail('tie_word_embeddings', `must be true or false, got ${show(tieValue)}`);
  const tie = tieValue as boolean | undefined;
  const dModel = int('hidden_size'), nHeads = int('num_attention_heads'), nKvHeads = int('num_key_value_heads', nHeads);
  if (dModel % nHeads) fail('num_attention_heads', `${nHeads} does not divide hidden_size ${dModel}`);
  if (nHeads % nKvHeads) fail('num_key_value_heads', `${nKvHeads} does not divide num_attention_heads ${nHeads}`);
  const ropeTheta = isObject(ropeParameters) && ropeParameters.rope_theta !== undefined
    ? (typeof ropeParameters.rope_theta === 'number' && ropeParameters.rope_theta > 0 ? ropeParameters.rope_theta : fail('rope_parameters.rope_theta', `must be a positive number, got ${show(ropeParameters.rope_theta)}`))
    : positive('rope_theta', 10000);
  if (json.head_dim !== undefined && json.head_dim !== null && json.head_dim !== dModel / nHeads) {
    fail('head_dim', `${show(json.head_dim)} is not hidden_size / num_attention_heads = ${dModel / nHeads} (stlm needs them equal)`);
  }
  const config: LlamaConfig = {
    vocabSize: int('vocab_size'), dModel, nLayers: int('num_hidden_layers'), nHeads, nKvHeads,
    mlpHidden: int('intermediate_size'), ctx: int('max_position_embeddings', defaults.ctx), tieEmbeddings: tie ?? false,
    ropeTheta, normEps: positive('rms_norm_eps', defaults.normEps), dropout: 0,
  };
  try {
    validateConfig(config);
  } catch (e) {
    fail('config', (e as Error).message);
  }
  return { config, architecture, declaredTie: tie };
}

/**
 * Our config from an HF config.json object (readHfConfig), with tie_word_embeddings as transformers reads
 * it (absent: false). importHf decides the tie from the weights present instead.
 */
export function llamaFromHfConfig(json: unknown, fileName: string): LlamaConfig {
  return readHfConfig(json, fileName).config;
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
  /** The checkpoint directory (as given), where a tokenizer loader finds tokenizer.json and friends. */
  dir: string;
}

/**
 * A checkpoint directory's files by plain name ('config.json', 'model.safetensors', a shard's name): the
 * bytes, or undefined when there is no such file. In Node, importHf reads them from disk; in a browser,
 * pass the dropped files. Each file is asked for once, when it is needed, and not kept after.
 */
export type HfFileLookup = (name: string) => Promise<Uint8Array | undefined>;

/** `dir/name` for messages (the lookup works on plain names; this is only what the user sees). */
const pathIn = (dir: string, name: string): string => (dir === '' ? name : `${dir.replace(/[\\/]+$/, '')}/${name}`);

async function readRequired(files: HfFileLookup, dir: string, name: string): Promise<Uint8Array> {
  const bytes = await files(name);
  if (bytes === undefined) throw new HfFormatError(`${pathIn(dir, name)}: no such file`);
  return bytes;
}

function decodeText(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new HfFormatError(`${path}: not valid UTF-8`);
  }
}

/** Tensors an HF file may hold that are not parameters: old checkpoints saved RoPE's inverse frequencies. */
const IGNORED_TENSOR = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

const EMBED = 'model.embed_tokens.weight';
const HEAD = 'lm_head.weight';

/**
 * Where the weights are: model.safetensors alone, or the shards a model.safetensors.index.json lists (its
 * weight_map: tensor name -> shard file). Returns each file to read with the tensors it must hold (for a
 * single file: undefined, whatever it holds), and the name of what lists them, for messages.
 */
async function weightPlan(files: HfFileLookup, dir: string): Promise<{ shards: Map<string, Set<string> | undefined>; listing: string; single?: Uint8Array }> {
  const single = await files('model.safetensors');
  if (single !== undefined) return { shards: new Map([['model.safetensors', undefined]]), listing: pathIn(dir, 'model.safetensors'), single };
  const indexPath = pathIn(dir, 'model.safetensors.index.json');
  const indexBytes = await files('model.safetensors.index.json');
  if (indexBytes === undefined) throw new HfFormatError(`${dir}: neither model.safetensors nor model.safetensors.index.json is there`);
  // Strict JSON: a tensor listed twice in weight_map is a duplicate key, which JSON.parse would drop silently.
  const index = parseJsonStrict(decodeText(indexBytes, indexPath), (m) => {
    throw new HfFormatError(`${indexPath}: ${m}`);
  });
  const weightMap = index instanceof Map ? index.get('weight_map') : undefined;
  if (!(weightMap instanceof Map) || weightMap.size === 0) throw new HfFormatError(`${indexPath}: weight_map: must be a non-empty object of tensor name -> shard file`);
  const shards = new Map<string, Set<string>>();
  for (const [name, shard] of weightMap) {
    if (typeof shard !== 'string') throw new HfFormatError(`${indexPath}: weight_map '${name}': must be a file name, got ${JSON.stringify(shard)}`);
    checkPlainFileName(shard, `${indexPath}: weight_map '${name}'`);
    if (!shards.has(shard)) shards.set(shard, new Set());
    shards.get(shard)!.add(name);
  }
  // In name order (model-00001-of-0000N first), as they were written.
  return { shards: new Map([...shards].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), listing: indexPath };
}

/** HF name -> [out, in] shape of every tensor a checkpoint of this config may hold (both embedding names). */
function expectedShapes(config: LlamaConfig): Map<string, number[]> {
  return new Map(parameterShapes({ ...config, tieEmbeddings: false }).map(([name, shape]) => [hfTensorName(name), shape]));
}

const sameValues = (a: Float32Array, b: Float32Array): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
};

/**
 * Reads an HF LlamaForCausalLM (or sliding-window-free MistralForCausalLM) checkpoint from its files:
 * config.json, then model.safetensors or the shards listed by model.safetensors.index.json, one file at a
 * time (each is parsed, its tensors decoded to f32, and let go before the next is asked for).
 *
 * Checked: every shard the index lists exists and holds the tensors the index puts there, no tensor is
 * in two files, every parameter is there with the config's shape, and nothing else is (RoPE's inv_freq
 * buffers of old checkpoints are skipped). Tensors may be F32, F16 or BF16 (others are refused by name).
 *
 * The embedding and the output head: a tied checkpoint may hold model.embed_tokens.weight alone (what
 * transformers saves), lm_head.weight alone (then it is the embedding too), both equal, or one of them
 * with safetensors metadata naming the other as its alias (what safetensors' save_model writes for shared
 * tensors). tie_word_embeddings, when config.json gives it, must agree with what is there; when absent,
 * the weights decide (both present and different: untied).
 */
export async function importHfFromFiles(files: HfFileLookup, dirName: string): Promise<HfModel> {
  const configPath = pathIn(dirName, 'config.json');
  let hfConfig: unknown;
  try {
    hfConfig = JSON.parse(decodeText(await readRequired(files, dirName, 'config.json'), configPath));
  } catch (e) {
    if (e instanceof HfFormatError) throw e;
    throw new HfFormatError(`${configPath}: not valid JSON (${(e as Error).message})`);
  }
  const { config, declaredTie } = readHfConfig(hfConfig, configPath);
  const shapes = expectedShapes(config);
  const plan = await weightPlan(files, dirName);

  // HF name -> values (q/k already in our row order), and where each came from.
  const values = new Map<string, Float32Array>();
  const foundIn = new Map<string, string>();
  const aliases = new Map<string, string>();
  const unexpected: string[] = [];
  let preread = plan.single;
  plan.single = undefined;
  for (const [shard, listed] of plan.shards) {
    const path = pathIn(dirName, shard);
    let bytes = preread;
    preread = undefined;
    if (bytes === undefined) {
      bytes = await files(shard);
      if (bytes === undefined) throw new HfFormatError(`${plan.listing}: weight_map: shard '${shard}' (holding '${[...listed!][0]}') is not in ${dirName}`);
    }
    const file = readSafetensors(bytes, path);
    for (const [k, v] of file.metadata) if ((k === EMBED && v === HEAD) || (k === HEAD && v === EMBED)) aliases.set(k, v);
    for (const info of file.tensors) {
      const name = info.name;
      if (listed && !listed.has(name)) {
        const other = [...plan.shards].find(([, names]) => names?.has(name))?.[0];
        throw new HfFormatError(other
          ? `${path}: tensor '${name}' is here, but ${plan.listing} puts it in ${other} (each tensor must be in exactly the file the index names)`
          : `${path}: tensor '${name}' is not listed in ${plan.listing}`);
      }
      if (IGNORED_TENSOR.test(name)) continue;
      const shape = shapes.get(name);
      if (!shape) {
        unexpected.push(name);
        continue;
      }
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw new HfFormatError(`${path}: tensor '${name}' has shape [${info.shape.join(', ')}], config.json needs [${shape.join(', ')}]`);
      }
      const f32 = tensorToF32(file, name);
      const ours = ggufTensorName(name)!;
      const heads = ropeHeads(config, ours);
      values.set(name, heads ? permuteQkHfToGguf(f32, heads, shape[1]) : f32);
      foundIn.set(name, path);
    }
    if (listed) {
      for (const name of listed) if (!file.tensors.some((t) => t.name === name)) throw new HfFormatError(`${plan.listing}: weight_map '${name}': ${shard} has no such tensor`);
    }
    if (unexpected.length) {
      const shown = unexpected.slice(0, 5).map((n) => `'${n}'`).join(', ') + (unexpected.length > 5 ? `, … (${unexpected.length} in all)` : '');
      throw new HfFormatError(`${path}: unexpected tensor${unexpected.length > 1 ? 's' : ''} ${shown} (not parameters of a Llama of this config.json)`);
    }
  }

  // Tied or not: what config.json says must agree with what the files hold.
  const where = plan.listing;
  const embed = values.get(EMBED), head = values.get(HEAD);
  const tieError = (message: string): never => {
    throw new HfFormatError(`${configPath}: tie_word_embeddings: ${declaredTie}, but ${message}`);
  };
  let tie: boolean;
  if (embed && head) {
    const equal = sameValues(embed, head);
    if (declaredTie === true && !equal) tieError(`${where} holds both ${EMBED} and ${HEAD}, and they differ`);
    tie = declaredTie ?? equal;
  } else if (embed || head) {
    const [have, lack] = embed ? [EMBED, HEAD] : [HEAD, EMBED];
    const alias = aliases.get(lack) === have ? ` (its metadata names ${lack} as an alias of ${have})` : '';
    if (declaredTie === false) tieError(`${where} has no ${lack}, only ${have}${alias}: that is a tied checkpoint`);
    tie = true;
    if (!embed) values.set(EMBED, head!);
  } else {
    throw new HfFormatError(`${where}: tensor '${EMBED}' is missing (and there is no ${HEAD} either)`);
  }
  const resolved: LlamaConfig = { ...config, tieEmbeddings: tie };
  const weights = new Map<string, Float32Array>();
  for (const [name] of parameterShapes(resolved)) {
    const hfName = hfTensorName(name);
    const w = values.get(hfName);
    if (!w) throw new HfFormatError(`${where}: tensor '${hfName}' is missing`);
    weights.set(name, w);
  }
  return { config: resolved, weights, hfConfig: hfConfig as Record<string, unknown>, dir: dirName };
}

/**
 * Reads an HF checkpoint directory from disk (Node): importHfFromFiles over the files in `dir`. Only the
 * files it asks for are read, one at a time.
 */
export async function importHf(dir: string): Promise<HfModel> {
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  const files: HfFileLookup = async (name) => {
    const path = join(dir, name);
    try {
      const buf = await fs.readFile(path);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw new HfFormatError(`cannot read '${path}': ${code ?? (e as Error).message}`);
    }
  };
  return importHfFromFiles(files, dir);
}
