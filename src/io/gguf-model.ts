/**
 * stlm's model file: GGUF v3 with `general.architecture = llama` and the standard llama.* keys (so
 * llama.cpp can read its shape), the tokenizer in tokenizer.ggml.* form (io/vocab-gguf.ts), and stlm.*
 * keys for what llama.cpp has no key for (the full config as JSON, the byte tokenizer's kind). Tensors
 * keep GGUF's names; our [out, in] matrices are GGUF's ne = [in, out], the same bytes. The byte-pooled
 * model has an architecture of its own (its shape only in stlm.config). Checkpoints (io/checkpoint.ts)
 * are such files with more tensors and keys. Loading any format: io/model-file.ts.
 */
import { quantTypeOf } from '../dtypes/blocks.js';
import {
  GGML_TYPE, type GgufFile, type GgufTensorInfo, type GgufTensorInput, type GgufValue, decodeTensor, elementCount, gguf, metaNumber,
  metaString, writeGguf, writeGgufFile,
} from '../formats/gguf.js';
import { POOLED_ARCHITECTURE, isPooledConfig, pooledParameterShapes, validatePooledConfig } from '../models/byte-pooled.js';
import type { ModelBundle } from '../models/bundle.js';
import { type LlamaConfig, headDim, parameterShapes, validateConfig } from '../models/config.js';
import type { QuantizedWeight } from '../tensor/quant.js';
import type { VocabSpec } from '../tokenizers/vocab.js';
import { vocabFromGguf, vocabToGguf } from './vocab-gguf.js';

/** A GGUF model file read: the bundle, its matrices kept quantized (if asked), and the parsed file. */
export interface GgufModel extends ModelBundle {
  /** Matrices kept quantized (keepQuantized); these names are absent from `weights`. */
  quantized: Map<string, QuantizedWeight>;
  file: GgufFile;
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
export async function saveModel(path: string, m: ModelBundle, opts: ModelFileOptions = {}): Promise<void> {
  const { meta, tensors } = modelFileParts(m, opts);
  await writeGgufFile(path, meta, tensors);
}

/** The same GGUF model file as bytes (a browser's download: no file system). */
export function modelToGguf(m: ModelBundle, opts: ModelFileOptions = {}): Uint8Array {
  const { meta, tensors } = modelFileParts(m, opts);
  return writeGguf(meta, tensors);
}

export interface ModelFileOptions {
  name?: string;
  matrixType?: number | ((name: string) => number);
  fileType?: number;
}

/** A model file's metadata and tensors, as saveModel and modelToGguf write them. */
function modelFileParts(m: ModelBundle, opts: ModelFileOptions): { meta: [string, GgufValue][]; tensors: GgufTensorInput[] } {
  const meta = modelMetadata(m.config, m.vocab, opts.name);
  const type = opts.matrixType ?? GGML_TYPE.F32;
  const fileType = opts.fileType ?? (typeof type === 'number' ? fileTypeOf(type) : 0);
  meta[meta.findIndex(([k]) => k === 'general.file_type')] = ['general.file_type', gguf.u32(fileType)];
  return { meta, tensors: modelTensors(m.config, m.weights, type) };
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
 * A GGUF Llama (or byte-pooled model) as a bundle. `readTensor` gives a tensor's bytes (a view of the file in memory, or a read
 * from disk). With `keepQuantized`, Q8_0/Q4_0/Q4_K matrices stay quantized and are read only when the model
 * uploads them; everything else is decoded to f32.
 */
export function readGgufModel(file: GgufFile, readTensor: (info: GgufTensorInfo) => Uint8Array, keepQuantized: boolean): GgufModel {
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
  return { config, weights, quantized, vocab, file };
}
