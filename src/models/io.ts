/**
 * Model files: an stlm model is a GGUF v3 file with `general.architecture = llama` and the standard
 * llama.* keys (so llama.cpp can read its shape), the tokenizer in tokenizer.ggml.* form, and stlm.*
 * keys for what llama.cpp has no key for (the full config as JSON, the tokenizer kind).
 * Tensors keep GGUF's names; our [out, in] matrices are GGUF's ne = [in, out], the same bytes.
 */
import { GGML_TYPE, type GgufFile, type GgufTensorInput, type GgufValue, gguf, metaNumber, metaString, readGguf, tensorToF32, writeGgufFile } from '../formats/gguf.js';
import { ByteTokenizer } from '../tokenizers/byte.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { type LlamaConfig, headDim, parameterShapes, validateConfig } from './config.js';

export interface LoadedModel {
  config: LlamaConfig;
  weights: Map<string, Float32Array>;
  tokenizer: Tokenizer;
  /** The parsed file, for `stlm info` and for readers of extra tensors (checkpoints). */
  file: GgufFile;
}

/** GPT-2's printable stand-in for each byte, so a byte vocabulary reads as a gpt2-style BPE vocab. */
export function byteToUnicode(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return out;
}

/** Metadata describing the model's shape and tokenizer (shared by model files and checkpoints). */
export function modelMetadata(config: LlamaConfig, tokenizer: Tokenizer, name = 'stlm'): [string, GgufValue][] {
  if (tokenizer.kind !== 'byte') throw new Error(`saving a model with a '${tokenizer.kind}' tokenizer is not supported yet`);
  const tokens = [...byteToUnicode(), '<s>', '</s>', '<pad>'];
  const types = Int32Array.from(tokens, (_, i) => (i < 256 ? 1 : 3)); // 1 normal, 3 control
  return [
    ['general.architecture', gguf.str('llama')],
    ['general.name', gguf.str(name)],
    ['general.file_type', gguf.u32(0)],
    ['llama.vocab_size', gguf.u32(config.vocabSize)],
    ['llama.context_length', gguf.u32(config.ctx)],
    ['llama.embedding_length', gguf.u32(config.dModel)],
    ['llama.block_count', gguf.u32(config.nLayers)],
    ['llama.feed_forward_length', gguf.u32(config.mlpHidden)],
    ['llama.attention.head_count', gguf.u32(config.nHeads)],
    ['llama.attention.head_count_kv', gguf.u32(config.nKvHeads)],
    ['llama.rope.dimension_count', gguf.u32(headDim(config))],
    ['llama.rope.freq_base', gguf.f32(config.ropeTheta)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(config.normEps)],
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str('default')],
    ['tokenizer.ggml.tokens', gguf.arr('string', tokens)],
    ['tokenizer.ggml.token_type', gguf.arr('i32', types)],
    ['tokenizer.ggml.merges', gguf.arr('string', [])],
    ['tokenizer.ggml.bos_token_id', gguf.u32(256)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(257)],
    ['tokenizer.ggml.padding_token_id', gguf.u32(258)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['stlm.tokenizer', gguf.str('byte')],
    ['stlm.config', gguf.str(JSON.stringify(config))],
  ];
}

/** The model's tensors in GGUF form (F32), in the canonical order. */
export function modelTensors(config: LlamaConfig, weights: Map<string, Float32Array>): GgufTensorInput[] {
  return parameterShapes(config).map(([name, shape]) => ({ name, shape: [...shape].reverse(), type: GGML_TYPE.F32, data: weights.get(name)! }));
}

/** Writes a model file atomically (temporary file, then rename). */
export async function saveModel(path: string, config: LlamaConfig, weights: Map<string, Float32Array>, tokenizer: Tokenizer, name?: string): Promise<void> {
  await writeGgufFile(path, modelMetadata(config, tokenizer, name), modelTensors(config, weights));
}

/** The config stored in a file: stlm's own JSON when present, else derived from the llama.* keys. */
export function configFromGguf(file: GgufFile): LlamaConfig {
  const arch = metaString(file, 'general.architecture', '');
  if (arch !== 'llama') throw new Error(`${file.fileName}: not a Llama model (general.architecture is '${arch || 'missing'}')`);
  if (file.metadata.has('stlm.config')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(metaString(file, 'stlm.config'));
    } catch {
      throw new Error(`${file.fileName}: metadata 'stlm.config' is not valid JSON`);
    }
    try {
      return validateConfig(parsed as LlamaConfig);
    } catch (e) {
      throw new Error(`${file.fileName}: metadata 'stlm.config': ${(e as Error).message}`);
    }
  }
  const n = (k: string, fallback?: number) => metaNumber(file, `llama.${k}`, fallback);
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  const vocab = n('vocab_size', tokens?.type === 'array' ? tokens.value.length : undefined);
  return validateConfig({
    vocabSize: vocab, dModel: n('embedding_length'), nLayers: n('block_count'), nHeads: n('attention.head_count'),
    nKvHeads: n('attention.head_count_kv', n('attention.head_count')), mlpHidden: n('feed_forward_length'), ctx: n('context_length'),
    tieEmbeddings: !file.tensors.some((t) => t.name === 'output.weight'), ropeTheta: n('rope.freq_base', 10000),
    normEps: n('attention.layer_norm_rms_epsilon', 1e-5), dropout: 0,
  });
}

/** Parses model bytes (any GGUF Llama with a tokenizer stlm knows). */
export function parseModel(bytes: Uint8Array, fileName: string): LoadedModel {
  const file = readGguf(bytes, fileName);
  const config = configFromGguf(file);
  const kind = metaString(file, 'stlm.tokenizer', '');
  if (kind !== 'byte') throw new Error(`${fileName}: tokenizer '${kind || metaString(file, 'tokenizer.ggml.model', 'none')}' is not supported yet (stlm reads byte-level models)`);
  const tokenizer = new ByteTokenizer();
  if (config.vocabSize !== tokenizer.vocabSize) throw new Error(`${fileName}: vocabulary of ${config.vocabSize} does not match the byte tokenizer's ${tokenizer.vocabSize}`);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of parameterShapes(config)) {
    const info = byName.get(name);
    if (!info) throw new Error(`${fileName}: tensor '${name}' is missing`);
    const want = [...shape].reverse();
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      throw new Error(`${fileName}: tensor '${name}' has shape [${info.shape.join(', ')}], the config needs [${want.join(', ')}]`);
    }
    weights.set(name, tensorToF32(file, info));
  }
  return { config, weights, tokenizer, file };
}

/** Reads a model file from disk (Node). */
export async function loadModel(path: string): Promise<LoadedModel> {
  const { readFile } = await import('node:fs/promises');
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new Error(`cannot read model file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseModel(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}
