/**
 * Model files. stlm's own format is GGUF v3 with `general.architecture = llama` and the standard llama.*
 * keys (so llama.cpp can read its shape), the tokenizer in tokenizer.ggml.* form, and stlm.* keys for
 * what llama.cpp has no key for (the full config as JSON, the byte tokenizer's kind). Tensors keep GGUF's
 * names; our [out, in] matrices are GGUF's ne = [in, out], the same bytes.
 *
 * Other formats come in through the same door (`loadModel` tells them apart by their first bytes):
 * llama2.c checkpoints (with a separate tokenizer file) and Hugging Face directories (config.json +
 * model.safetensors). Every loader returns one ModelBundle: config, weights by GGUF name, vocabulary.
 */
import {
  GGML_TYPE, type GgufFile, type GgufTensorInfo, type GgufTensorInput, type GgufValue, decodeTensor, elementCount, gguf, metaNumber,
  metaString, readGguf, readGgufHeader, tensorBytes, writeGgufFile,
} from '../formats/gguf.js';
import { quantTypeOf } from '../dtypes/blocks.js';
import type { QuantizedWeight } from '../tensor/quant.js';
import { looksLikeLlama2c } from '../formats/llama2c.js';
import { tokenizerFromVocab } from '../tokenizers/from-vocab.js';
import { byteToUnicode, byteVocab } from '../tokenizers/gpt2.js';
import { readLlama2cTokenizer } from '../tokenizers/llama2c-tokenizer.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import type { VocabSpec } from '../tokenizers/vocab.js';
import { readLlama2cModel } from './llama2c.js';
import { vocabFromGguf, vocabToGguf } from './vocab-gguf.js';
import { POOLED_ARCHITECTURE, isPooledConfig, pooledParameterShapes, validatePooledConfig } from '../models/byte-pooled.js';
import type { ModelBundle } from '../models/bundle.js';
import { type LlamaConfig, headDim, parameterShapes, validateConfig } from '../models/config.js';

/** Re-exported: model code and tests reach the byte vocabulary through the model layer. */
export { byteToUnicode, byteVocab };

export type ModelFormat = 'gguf' | 'llama2c' | 'safetensors';

/** A model as data (models/bundle.ts): what every reader returns and every writer takes. */
export type { ModelBundle };

export interface LoadedModel extends ModelBundle {
  /** Matrices kept quantized (LoadOptions.keepQuantized); these names are absent from `weights`. */
  quantized: Map<string, QuantizedWeight>;
  tokenizer: Tokenizer;
  format: ModelFormat;
  /** The parsed GGUF file (GGUF only), for `stlm info` and for readers of extra tensors (checkpoints). */
  file?: GgufFile;
}

/** Metadata describing the model's shape and tokenizer (shared by model files and checkpoints). */
export function modelMetadata(config: LlamaConfig, vocab: VocabSpec, name = 'stlm'): [string, GgufValue][] {
  if (vocab.tokens.length !== config.vocabSize) throw new Error(`the tokenizer has ${vocab.tokens.length} tokens but the model's vocabulary is ${config.vocabSize}`);
  if (isPooledConfig(config)) {
    // No engine but stlm runs the byte-pooled model: its own architecture name, its shape only in stlm.config.
    return [
      ['general.architecture', gguf.str(POOLED_ARCHITECTURE)], ['general.name', gguf.str(name)], ['general.file_type', gguf.u32(0)],
      ...vocabToGguf(vocab), ['stlm.config', gguf.str(JSON.stringify(config))],
    ];
  }
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
    ...vocabToGguf(vocab),
    ['stlm.config', gguf.str(JSON.stringify(config))],
  ];
}

/**
 * The model's tensors in GGUF form, in the canonical order. `matrixType` applies to the matrices;
 * norm gains stay F32 (as llama.cpp keeps them: they are tiny and precision-sensitive).
 */
export function modelTensors(config: LlamaConfig, weights: Map<string, Float32Array>, matrixType: number | ((name: string) => number) = GGML_TYPE.F32): GgufTensorInput[] {
  return modelParameterShapes(config).map(([name, shape]) => {
    const data = weights.get(name);
    if (!data) throw new Error(`model weights: tensor '${name}' is missing`);
    const type = shape.length < 2 ? GGML_TYPE.F32 : typeof matrixType === 'number' ? matrixType : matrixType(name);
    return { name, shape: [...shape].reverse(), type, data };
  });
}

/**
 * Writes a GGUF model file atomically (temporary file, then rename). Matrices are written in
 * `matrixType` (F32 default; a function picks per tensor), `fileType` is llama.cpp's general.file_type
 * (by default the one matching a single matrixType).
 */
export async function saveModel(path: string, m: ModelBundle, opts: { name?: string; matrixType?: number | ((name: string) => number); fileType?: number } = {}): Promise<void> {
  const meta = modelMetadata(m.config, m.vocab, opts.name);
  const type = opts.matrixType ?? GGML_TYPE.F32;
  const fileType = opts.fileType ?? (typeof type === 'number' ? fileTypeOf(type) : 0);
  meta[meta.findIndex(([k]) => k === 'general.file_type')] = ['general.file_type', gguf.u32(fileType)];
  await writeGgufFile(path, meta, modelTensors(m.config, m.weights, type));
}

/** llama.cpp's general.file_type (enum llama_ftype) for a file whose matrices are (mostly) of one type. */
export function fileTypeOf(type: number): number {
  const ftype: Record<number, number> = { [GGML_TYPE.F32]: 0, [GGML_TYPE.F16]: 1, [GGML_TYPE.Q4_0]: 2, [GGML_TYPE.Q8_0]: 7, [GGML_TYPE.Q4_K]: 14, [GGML_TYPE.BF16]: 32 };
  const t = ftype[type];
  if (t === undefined) throw new Error(`no llama.cpp file type for tensor type ${type}`);
  return t;
}

/** Every stored parameter's name and shape for either architecture (Llama, or the byte-pooled model). */
export function modelParameterShapes(config: LlamaConfig): [string, number[]][] {
  return isPooledConfig(config) ? pooledParameterShapes(config) : parameterShapes(config);
}

/** The config stored in a file: stlm's own JSON when present, else derived from the llama.* keys. */
export function configFromGguf(file: GgufFile): LlamaConfig {
  if (metaString(file, 'general.type', '') === 'adapter') {
    throw new Error(`${file.fileName} is a LoRA adapter, not a model: run it on its base (stlm merge <base> ${file.fileName} <out.gguf>), or see it with stlm info`);
  }
  const arch = metaString(file, 'general.architecture', '');
  if (arch === POOLED_ARCHITECTURE) {
    try {
      return validatePooledConfig(JSON.parse(metaString(file, 'stlm.config')));
    } catch (e) {
      throw new Error(`${file.fileName}: metadata 'stlm.config' of a byte-pooled model: ${(e as Error).message}`);
    }
  }
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
  // Older llama.cpp files have no vocab_size key: the vocabulary is the embedding's row count.
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  const vocab = n('vocab_size', embd?.shape[1]);
  const scaling = metaString(file, 'llama.rope.scaling.type', 'none');
  if (scaling !== 'none') throw new Error(`${file.fileName}: RoPE scaling '${scaling}' (llama.rope.scaling.type) is not supported`);
  const heads = n('attention.head_count');
  const ropeDims = n('rope.dimension_count', n('embedding_length') / heads);
  if (ropeDims !== n('embedding_length') / heads) throw new Error(`${file.fileName}: llama.rope.dimension_count ${ropeDims} differs from the head dimension ${n('embedding_length') / heads} (partial rotary embeddings are not supported)`);
  return validateConfig({
    vocabSize: vocab, dModel: n('embedding_length'), nLayers: n('block_count'), nHeads: n('attention.head_count'),
    nKvHeads: n('attention.head_count_kv', n('attention.head_count')), mlpHidden: n('feed_forward_length'), ctx: n('context_length'),
    tieEmbeddings: !file.tensors.some((t) => t.name === 'output.weight'), ropeTheta: n('rope.freq_base', 10000),
    normEps: n('attention.layer_norm_rms_epsilon', 1e-5), dropout: 0,
  });
}

/**
 * A GGUF Llama as a bundle. `readTensor` gives a tensor's bytes (a view of the file in memory, or a read
 * from disk). With `keepQuantized`, Q8_0/Q4_0/Q4_K matrices stay quantized and are read only when the model
 * uploads them; everything else is decoded to f32.
 */
function ggufModel(file: GgufFile, readTensor: (info: GgufTensorInfo) => Uint8Array, keepQuantized: boolean): LoadedModel {
  const fileName = file.fileName;
  const config = configFromGguf(file);
  const vocab = vocabFromGguf(file);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const weights = new Map<string, Float32Array>();
  const quantized = new Map<string, QuantizedWeight>();
  for (const [name, shape] of modelParameterShapes(config)) {
    const info = byName.get(name);
    if (!info) throw new Error(`${fileName}: tensor '${name}' is missing`);
    const want = [...shape].reverse();
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      throw new Error(`${fileName}: tensor '${name}' has shape [${info.shape.join(', ')}], the config needs [${want.join(', ')}]`);
    }
    // GGUF tensor types a model can run from without dequantizing (the backend's quantized kernels).
    const qtype = quantTypeOf(info.type);
    if (keepQuantized && qtype && shape.length === 2) {
      quantized.set(name, { type: qtype, byteLength: info.byteLength, bytes: () => readTensor(info) });
    } else {
      try {
        weights.set(name, decodeTensor(info.type, readTensor(info), elementCount(info.shape)));
      } catch (e) {
        throw new Error(`${fileName}: tensor '${name}': ${(e as Error).message}`);
      }
    }
  }
  return withTokenizer({ config, weights, quantized, vocab, format: 'gguf', file }, fileName);
}

/** Parses a GGUF model in memory (any Llama with a tokenizer stlm knows); matrices decoded to f32. */
export function parseGgufModel(bytes: Uint8Array, fileName: string, opts: { keepQuantized?: boolean } = {}): LoadedModel {
  const file = readGguf(bytes, fileName);
  return ggufModel(file, (info) => tensorBytes(file, info), opts.keepQuantized ?? false);
}

function withTokenizer(m: Omit<LoadedModel, 'tokenizer' | 'quantized'> & { quantized?: Map<string, QuantizedWeight> }, fileName: string): LoadedModel {
  if (m.vocab.tokens.length !== m.config.vocabSize) {
    throw new Error(`${fileName}: the tokenizer has ${m.vocab.tokens.length} tokens but the model's vocabulary is ${m.config.vocabSize}`);
  }
  return { ...m, quantized: m.quantized ?? new Map(), tokenizer: tokenizerFromVocab(m.vocab, fileName) };
}

/** The formats a model file can be in, told apart by their first bytes (or a directory for Hugging Face). */
export function detectFormat(bytes: Uint8Array): ModelFormat | undefined {
  if (bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46) return 'gguf';
  if (looksLikeLlama2c(bytes)) return 'llama2c';
  if (bytes.length >= 9 && bytes[8] === 0x7b) return 'safetensors';
  return undefined;
}

export interface LoadOptions {
  /** A tokenizer file for formats that keep it apart (llama2.c's tokenizer.bin). */
  tokenizer?: string;
  /**
   * Keep a GGUF's Q8_0/Q4_0/Q4_K matrices quantized (in `quantized`, for inference) instead of decoding
   * them to f32. The file is then read tensor by tensor, when the model uploads it: no copy of the
   * whole file is held, so peak memory stays near the quantized size.
   */
  keepQuantized?: boolean;
}

/** Reads a model from disk (Node): a GGUF file, a llama2.c checkpoint, or a Hugging Face directory / safetensors file. */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  // Node modules load on demand, so this module (and parseGgufModel) also runs in browsers.
  const { readFile, stat } = await import('node:fs/promises');
  const { existsSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  const read = async (p: string, what: string) => {
    try {
      const buf = await readFile(p);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      throw new Error(`cannot read ${what} '${p}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  let isDir = false;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new Error(`cannot read model file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const tokenizerFile = async (vocabSize: number, fallback?: string) => {
    const p = opts.tokenizer ?? fallback;
    return p === undefined ? undefined : readTokenizerFile(await read(p, 'tokenizer file'), p, vocabSize);
  };
  const hf = async (dir: string) => {
    const { importHf } = await import('../formats/hf-llama.js');
    const { config, weights } = await importHf(dir);
    const beside = join(dir, HF_VOCAB_FILE);
    const vocab = (await tokenizerFile(config.vocabSize, existsSync(beside) ? beside : undefined)) ?? defaultVocab(config, dir);
    return withTokenizer({ config, weights, vocab, format: 'safetensors' }, dir);
  };
  if (isDir) return hf(path);
  if (opts.keepQuantized && (await readMagic(path)) === 'GGUF') {
    const file = await readGgufHeader(path);
    const { openSync, readSync, closeSync } = await import('node:fs');
    // One read buffer for all tensors (grown to the largest): each is uploaded to the backend as soon as
    // it is read, so a fresh array per tensor would only leave the whole file as garbage for the GC.
    let scratch = new Uint8Array(0);
    const readRange = (info: GgufTensorInfo) => {
      if (scratch.length < info.byteLength) scratch = new Uint8Array(info.byteLength);
      const out = scratch.subarray(0, info.byteLength);
      const fd = openSync(path, 'r');
      try {
        let done = 0;
        while (done < out.length) {
          const n = readSync(fd, out, done, out.length - done, file.dataOffset + info.offset + done);
          if (n === 0) throw new Error(`${path}: tensor '${info.name}': the file ended early (changed while loading?)`);
          done += n;
        }
      } finally {
        closeSync(fd);
      }
      return out;
    };
    const m = ggufModel(file, readRange, true);
    return opts.tokenizer ? withTokenizer({ ...m, vocab: (await tokenizerFile(m.config.vocabSize))! }, path) : m;
  }
  const bytes = await read(path, 'model file');
  const format = detectFormat(bytes);
  if (format === 'gguf') {
    const m = parseGgufModel(bytes, path);
    if (!opts.tokenizer) return m;
    return withTokenizer({ ...m, vocab: (await tokenizerFile(m.config.vocabSize))! }, path);
  }
  if (format === 'safetensors') return hf(dirname(path));
  if (format === 'llama2c') {
    const { config, weights } = readLlama2cModel(bytes, path);
    const vocab = (await tokenizerFile(config.vocabSize, findLlama2cTokenizer(dirname(path), config.vocabSize, join, existsSync))) ?? defaultVocab(config, path);
    return withTokenizer({ config, weights, vocab, format: 'llama2c' }, path);
  }
  throw new Error(`${path}: not a model file stlm reads (GGUF, llama2.c checkpoint, safetensors with config.json)`);
}

/** Where a Hugging Face export keeps stlm's tokenizer: a vocab-only GGUF, like llama.cpp's ggml-vocab-*.gguf files. */
export const HF_VOCAB_FILE = 'tokenizer.gguf';

/** A tokenizer file: a GGUF (vocab-only or a whole model) or a llama2.c tokenizer.bin. */
export function readTokenizerFile(bytes: Uint8Array, fileName: string, vocabSize: number): VocabSpec {
  if (detectFormat(bytes) === 'gguf') {
    const vocab = vocabFromGguf(readGguf(bytes, fileName));
    if (vocab.tokens.length !== vocabSize) throw new Error(`${fileName}: the tokenizer has ${vocab.tokens.length} tokens but the model's vocabulary is ${vocabSize}`);
    return vocab;
  }
  return readLlama2cTokenizer(bytes, fileName, vocabSize);
}

/** Without a tokenizer file, only a byte-level model can be run: its vocabulary is implied by its size. */
function defaultVocab(config: LlamaConfig, fileName: string): VocabSpec {
  if (config.vocabSize === byteVocab().tokens.length) return byteVocab();
  throw new Error(`${fileName}: no tokenizer found for a vocabulary of ${config.vocabSize}: give one with --tokenizer (a GGUF vocabulary or a llama2.c tokenizer.bin, e.g. tok${config.vocabSize}.bin)`);
}

/** The first four bytes of a file as text ('GGUF' for GGUF). */
async function readMagic(path: string): Promise<string> {
  const fs = await import('node:fs/promises');
  const fh = await fs.open(path, 'r');
  try {
    const b = new Uint8Array(4);
    await fh.read(b, 0, 4, 0);
    return String.fromCharCode(...b);
  } finally {
    await fh.close();
  }
}

/** llama2.c keeps the tokenizer beside the model: tok<vocab>.bin (tinyllamas) or tokenizer.bin (run.c's default). */
function findLlama2cTokenizer(dir: string, vocab: number, join: (...p: string[]) => string, exists: (p: string) => boolean): string | undefined {
  for (const name of [`tok${vocab}.bin`, 'tokenizer.bin']) if (exists(join(dir, name))) return join(dir, name);
  return undefined;
}
