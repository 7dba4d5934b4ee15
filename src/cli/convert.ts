/**
 * `stlm convert`: a model from any format stlm reads to any it writes. The byte-pooled model
 * (general.architecture stlm-pooled) has no form outside stlm's GGUF: llama2.c and Hugging Face files
 * hold plain Llamas, and no other engine runs it, so it converts GGUF to GGUF only (e.g. to f16).
 */
import { architectureOf } from '../models/architectures.js';
import { exportModel, formatFromPath } from '../io/export.js';
import { type ModelFormat, loadModel } from '../io/model-file.js';

const FORMAT_NAMES: Record<ModelFormat, string> = { gguf: 'GGUF', llama2c: 'llama2.c', safetensors: 'Hugging Face safetensors' };

export interface ConvertCliOptions {
  tokenizer?: string;
  to?: 'gguf' | 'llama2c' | 'hf';
  type: 'f32' | 'f16' | 'bf16';
}

export async function runConvert(input: string, output: string, o: ConvertCliOptions): Promise<void> {
  const m = await loadModel(input, { tokenizer: o.tokenizer });
  const format = o.to === 'hf' ? 'safetensors' : (o.to ?? formatFromPath(output));
  if (!architectureOf(m.config).portable && format !== 'gguf') {
    throw new Error(`${input} is a byte-pooled model (stlm-pooled), which only stlm runs: ${FORMAT_NAMES[format]} files hold plain Llama models, so it cannot be written as one; convert it to a .gguf file instead (e.g. --type f16)`);
  }
  if (format === 'llama2c' && m.vocab.model !== 'llama') {
    process.stderr.write(`note: llama2.c's tokenizer.bin cannot hold a '${m.vocab.model}' vocabulary; writing the model only (stlm reads it back${m.vocab.model === 'byte' ? ', the byte vocabulary is implied by its size' : ' with --tokenizer'})\n`);
  }
  const files = await exportModel(output, m, { format, type: o.type });
  process.stderr.write(`${input} (${m.format}, ${architectureOf(m.config).parameters.toLocaleString('en-US')} parameters, ${m.vocab.model} tokenizer) -> ${files.join(', ')}\n`);
}

