/** `stlm info`: what a model file holds. */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ggmlTypeName, metaString } from '../formats/gguf.js';
import { headDim, parameterCount, parameterShapes } from '../models/config.js';
import { loadModel } from '../models/io.js';

const FORMAT_NAMES = { gguf: 'GGUF', llama2c: 'llama2.c checkpoint', safetensors: 'Hugging Face safetensors' };

/** A file's size, or the total of a directory's files (a Hugging Face export). */
function sizeOf(path: string): number {
  const s = statSync(path);
  return s.isDirectory() ? readdirSync(path).reduce((n, f) => n + statSync(join(path, f)).size, 0) : s.size;
}

export async function runInfo(path: string, o: { json: boolean; tokenizer?: string }): Promise<void> {
  const { config, tokenizer, file, format } = await loadModel(path, { tokenizer: o.tokenizer, keepQuantized: true });
  const types = file ? [...new Set(file.tensors.map((t) => ggmlTypeName(t.type)))] : ['F32'];
  const info = {
    file: path,
    format: file ? `GGUF v${file.version}` : FORMAT_NAMES[format],
    bytes: sizeOf(path),
    name: file ? metaString(file, 'general.name', '') : '',
    architecture: 'llama',
    parameters: parameterCount(config),
    tensors: file ? file.tensors.length : parameterShapes(config).length,
    tensorTypes: types,
    tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize, bos: tokenizer.bos, eos: tokenizer.eos },
    config: { ...config, headDim: headDim(config) },
    checkpoint: file?.metadata.has('stlm.train.step') ?? false,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(info, null, 1) + '\n');
    return;
  }
  const c = config;
  const lines = [
    `${path}: ${info.format}, ${info.bytes.toLocaleString('en-US')} bytes${info.checkpoint ? ' (training checkpoint)' : ''}`,
    `model:      Llama, ${info.parameters.toLocaleString('en-US')} parameters`,
    `shape:      d_model ${c.dModel}, ${c.nLayers} layers, ${c.nHeads} heads (${c.nKvHeads} kv, head dim ${headDim(c)}), mlp ${c.mlpHidden}, ctx ${c.ctx}`,
    `details:    ${c.tieEmbeddings ? 'tied' : 'untied'} embeddings, rope theta ${c.ropeTheta}, norm eps ${c.normEps}` +
      `${c.shareFfn ? ', FFN shared by all layers' : ''}${(c.blockRepeat ?? 1) > 1 ? `, each block run ${c.blockRepeat}x (${c.nLayers * c.blockRepeat!} deep)` : ''}`,
    `tokenizer:  ${tokenizer.kind}, vocab ${tokenizer.vocabSize} (bos ${tokenizer.bos}, eos ${tokenizer.eos})`,
    `tensors:    ${info.tensors} (${types.join(', ')})`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
