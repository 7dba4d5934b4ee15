/** `stlm convert`: a model from any format stlm reads to any it writes. */
import { parameterCount } from '../models/config.js';
import { exportModel, formatFromPath } from '../models/export.js';
import { loadModel } from '../models/io.js';

export interface ConvertCliOptions {
  tokenizer?: string;
  to?: 'gguf' | 'llama2c' | 'hf';
  type: 'f32' | 'f16' | 'bf16';
}

export async function runConvert(input: string, output: string, o: ConvertCliOptions): Promise<void> {
  const m = await loadModel(input, { tokenizer: o.tokenizer });
  const format = o.to === 'hf' ? 'safetensors' : (o.to ?? formatFromPath(output));
  if (format === 'llama2c' && m.vocab.model !== 'llama') {
    process.stderr.write(`note: llama2.c's tokenizer.bin cannot hold a '${m.vocab.model}' vocabulary; writing the model only (stlm reads it back${m.vocab.model === 'byte' ? ', the byte vocabulary is implied by its size' : ' with --tokenizer'})\n`);
  }
  const files = await exportModel(output, m, { format, type: o.type });
  process.stderr.write(`${input} (${m.format}, ${parameterCount(m.config).toLocaleString('en-US')} parameters, ${m.vocab.model} tokenizer) -> ${files.join(', ')}\n`);
}
