/**
 * Writing a model in any format stlm reads: GGUF (ours and llama.cpp's), llama2.c (run.c's legacy
 * checkpoint plus its tokenizer.bin) and Hugging Face (config.json + model.safetensors, the tokenizer
 * as a vocab-only GGUF beside them). Every file is written to a temporary name, then renamed.
 */
import { GGML_TYPE, writeGgufFile } from '../formats/gguf.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { writeLlama2cTokenizer } from '../tokenizers/llama2c-tokenizer.js';
import { vocabToGguf } from './vocab-gguf.js';
import { materializeSharing } from '../models/config.js';
import { writeLlama2cModel } from './llama2c.js';
import { saveModel } from './gguf-model.js';
import { HF_VOCAB_FILE, type ModelBundle, type ModelFormat } from './model-file.js';

export interface ExportOptions {
  /** Output format; by default from the path: .gguf, .bin (llama2.c), anything else a Hugging Face directory. */
  format?: ModelFormat;
  /** Tensor type of the matrices: 'f32' (default), 'f16' (GGUF and safetensors), 'bf16' (safetensors). */
  type?: 'f32' | 'f16' | 'bf16';
  /** general.name for GGUF. */
  name?: string;
}

/** The format a path asks for by its extension. */
export function formatFromPath(path: string): ModelFormat {
  if (/\.gguf$/i.test(path)) return 'gguf';
  if (/\.bin$/i.test(path)) return 'llama2c';
  return 'safetensors';
}

/** Writes `m` to `path`; returns the files written (llama2.c and Hugging Face write more than one). */
export async function exportModel(path: string, bundle: ModelBundle, o: ExportOptions = {}): Promise<string[]> {
  const format = o.format ?? formatFromPath(path);
  // Other tools know only plain Llamas: shared weights are written out per layer.
  const m = { ...bundle, ...materializeSharing(bundle.config, bundle.weights) };
  const type = o.type ?? 'f32';
  if (format === 'gguf') {
    if (type === 'bf16') throw new Error("GGUF export: --type bf16 is not supported (use f32 or f16)");
    await saveModel(path, m, { name: o.name, matrixType: type === 'f16' ? GGML_TYPE.F16 : GGML_TYPE.F32 });
    return [path];
  }
  const { dirname, join } = await import('node:path');
  if (format === 'llama2c') {
    if (type !== 'f32') throw new Error(`llama2.c export: only f32 is supported (got ${type})`);
    const written = [path];
    await writeFileAtomic(path, writeLlama2cModel(m.config, m.weights));
    // run.c reads the vocabulary from a separate file; only SentencePiece-style vocabularies fit its format.
    if (m.vocab.model === 'llama') {
      const tokPath = join(dirname(path), `tok${m.config.vocabSize}.bin`);
      await writeFileAtomic(tokPath, writeLlama2cTokenizer(m.vocab));
      written.push(tokPath);
    }
    return written;
  }
  const { exportHf } = await import('./hf-llama.js');
  await exportHf(m.config, m.weights, path, { dtype: type === 'f16' ? 'F16' : type === 'bf16' ? 'BF16' : 'F32' });
  const vocabPath = join(path, HF_VOCAB_FILE);
  await writeGgufFile(vocabPath, vocabToGguf(m.vocab), []);
  return [join(path, 'config.json'), join(path, 'model.safetensors'), vocabPath];
}
