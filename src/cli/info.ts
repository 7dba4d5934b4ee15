/** `stlm info`: what a model file holds. */
import { statSync } from 'node:fs';
import { ggmlTypeName, metaString } from '../formats/gguf.js';
import { headDim, parameterCount } from '../models/config.js';
import { loadModel } from '../models/io.js';

export async function runInfo(path: string, o: { json: boolean }): Promise<void> {
  const { config, tokenizer, file } = await loadModel(path);
  const types = [...new Set(file.tensors.map((t) => ggmlTypeName(t.type)))];
  const info = {
    file: path,
    format: `GGUF v${file.version}`,
    bytes: statSync(path).size,
    name: metaString(file, 'general.name', ''),
    architecture: 'llama',
    parameters: parameterCount(config),
    tensors: file.tensors.length,
    tensorTypes: types,
    tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize, bos: tokenizer.bos, eos: tokenizer.eos },
    config: { ...config, headDim: headDim(config) },
    checkpoint: file.metadata.has('stlm.train.step'),
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
    `details:    ${c.tieEmbeddings ? 'tied' : 'untied'} embeddings, rope theta ${c.ropeTheta}, norm eps ${c.normEps}`,
    `tokenizer:  ${tokenizer.kind}, vocab ${tokenizer.vocabSize} (bos ${tokenizer.bos}, eos ${tokenizer.eos})`,
    `tensors:    ${info.tensors} (${types.join(', ')})`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
