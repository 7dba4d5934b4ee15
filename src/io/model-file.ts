/**
 * Model files. stlm's own format is GGUF (io/gguf-model.ts: stlm's keys, the config, the tensors).
 *
 * Every format comes in through the same door (`loadModel` tells them apart by their first bytes):
 * llama2.c checkpoints (with a separate tokenizer file) and Hugging Face directories (config.json +
 * model.safetensors). Every loader returns one ModelBundle: config, weights by GGUF name, vocabulary.
 */
import { type GgufFile, type GgufTensorInfo, readGguf, readGgufHeader, tensorBytes } from '../formats/gguf.js';
import { looksLikeLlama2c } from '../formats/llama2c.js';
import type { ModelBundle } from '../models/bundle.js';
import type { LlamaConfig } from '../models/config.js';
import type { QuantizedWeight } from '../tensor/quant.js';
import { tokenizerFromVocab } from '../tokenizers/from-vocab.js';
import { byteToUnicode, byteVocab } from '../tokenizers/gpt2.js';
import { readLlama2cTokenizer } from '../tokenizers/llama2c-tokenizer.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { TOKEN_TYPE, type VocabSpec } from '../tokenizers/vocab.js';
import { tokenizerFromHfJson } from '../tokenizers/hf-json.js';
import { vocabFromHfTokenizer } from '../tokenizers/hf-vocab.js';
import { readGgufModel } from './gguf-model.js';
import { readLlama2cModel } from './llama2c.js';
import { vocabFromGguf } from './vocab-gguf.js';

/** Re-exported: the GGUF model file (io/gguf-model.ts) keeps being reached through this module. */
export { configFromGguf, fileTypeOf, modelMetadata, modelParameterShapes, modelTensors, modelToGguf, saveModel } from './gguf-model.js';

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

/** A GGUF model file as a loaded model (its tokenizer built). */
function ggufModel(file: GgufFile, readTensor: (info: GgufTensorInfo) => Uint8Array, keepQuantized: boolean): LoadedModel {
  const { config, weights, quantized, vocab } = readGgufModel(file, readTensor, keepQuantized);
  return withTokenizer({ config, weights, quantized, vocab, format: 'gguf', file }, file.fileName);
}

/** Parses a GGUF model in memory (any Llama with a tokenizer stlm knows); matrices decoded to f32. */
export function parseGgufModel(bytes: Uint8Array, fileName: string, opts: { keepQuantized?: boolean } = {}): LoadedModel {
  const file = readGguf(bytes, fileName);
  return ggufModel(file, (info) => tensorBytes(file, info), opts.keepQuantized ?? false);
}

/**
 * A Hugging Face tokenizer for a model: the tokenizer itself, and its vocabulary in GGUF's form (for
 * export; padded with unused tokens up to the model's vocabulary, as llama.cpp's converter pads, since
 * published embeddings often have spare rows). A tokenizer GGUF cannot hold still runs; only export refuses it.
 */
export function hfTokenizerModel(tokenizerJson: string, tokenizerConfig: string | null, source: string, config: LlamaConfig): { tokenizer: Tokenizer; vocab: VocabSpec } {
  const tokenizer = tokenizerFromHfJson(tokenizerJson, tokenizerConfig, source);
  if (tokenizer.vocabSize > config.vocabSize) throw new Error(`${source}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
  let vocab: VocabSpec;
  try {
    vocab = vocabFromHfTokenizer(tokenizer);
  } catch (e) {
    const why = (e as Error).message;
    vocab = { model: 'llama', tokens: Array.from({ length: tokenizer.vocabSize }, (_, i) => tokenizer.tokenText(i) ?? ''), exportBlocker: `${source}: this tokenizer has no GGUF form stlm writes (${why})` };
  }
  // Whether prompts get BOS is the tokenizer config's say, whichever form the vocabulary took.
  vocab = { ...vocab, addBos: tokenizer.addBos, addEos: tokenizer.addEos };
  const pad = config.vocabSize - vocab.tokens.length;
  if (pad > 0) {
    vocab = {
      ...vocab, tokens: [...vocab.tokens, ...Array.from({ length: pad }, (_, i) => `[PAD${vocab.tokens.length + i}]`)],
      scores: vocab.scores && Float32Array.from([...vocab.scores, ...new Array<number>(pad).fill(-1e9)]),
      types: vocab.types && Int32Array.from([...vocab.types, ...new Array<number>(pad).fill(TOKEN_TYPE.UNUSED)]),
    };
  }
  return { tokenizer, vocab };
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
    const { importHf } = await import('./hf-llama.js');
    const { config, weights } = await importHf(dir);
    // A directory as Hugging Face publishes it carries tokenizer.json (+ tokenizer_config.json); one stlm
    // exported carries tokenizer.gguf. An explicit tokenizer file wins over both.
    const tokenizerJson = join(dir, 'tokenizer.json');
    if (!opts.tokenizer && existsSync(tokenizerJson)) {
      const configJson = join(dir, 'tokenizer_config.json');
      const text = async (p: string) => new TextDecoder().decode(await read(p, 'tokenizer file'));
      const hfTok = hfTokenizerModel(await text(tokenizerJson), existsSync(configJson) ? await text(configJson) : null, tokenizerJson, config);
      return { config, weights, quantized: new Map(), format: 'safetensors' as const, ...hfTok };
    }
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

/**
 * A llama2.c checkpoint in memory with its tokenizer file's bytes (tokenizer.bin or a GGUF vocabulary),
 * or none for a byte-vocabulary model: the bytes path of `openModel` (a browser's dropped files).
 */
export function parseLlama2cModel(bytes: Uint8Array, fileName: string, tokenizer?: { bytes: Uint8Array; fileName: string }): LoadedModel {
  const { config, weights } = readLlama2cModel(bytes, fileName);
  const vocab = tokenizer ? readTokenizerFile(tokenizer.bytes, tokenizer.fileName, config.vocabSize) : defaultVocab(config, fileName);
  return withTokenizer({ config, weights, vocab, format: 'llama2c' }, fileName);
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
