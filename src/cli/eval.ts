/** `stlm eval bpb`: bits per byte of a model on a text (quantized models run from their quantized weights). */
import type { Backend } from '../kernels/backend.js';
import { evaluateBpb } from '../eval/bpb.js';
import { loadModel } from '../models/io.js';
import { Llama } from '../models/llama.js';
import { Graph } from '../tensor/tensor.js';
import { readTextData, splitTrainVal } from '../train/data.js';

export interface EvalBpbCliOptions {
  model: string;
  tokenizer?: string;
  data: string;
  split: 'val' | 'all';
  ctx?: number;
  batch: number;
  json: boolean;
}

export async function runEvalBpb(o: EvalBpbCliOptions, be: Backend): Promise<void> {
  try {
    const m = await loadModel(o.model, { tokenizer: o.tokenizer, keepQuantized: true });
    const bytes = readTextData(o.data);
    const text = o.split === 'val' ? splitTrainVal(bytes).val : bytes;
    const ids = m.tokenizer.encode(new TextDecoder().decode(text));
    const seqLen = Math.min(o.ctx ?? m.config.ctx, m.config.ctx, ids.length - 1);
    if (seqLen < 1) throw new Error(`eval: '${o.data}' (${o.split === 'val' ? 'its last 10%' : 'all of it'}) is too short: ${ids.length} tokens`);
    const tokenBytes = Int32Array.from({ length: m.config.vocabSize }, (_, id) => m.tokenizer.tokenBytes(id).length);
    const model = Llama.fromModel(new Graph(be), m);
    const t0 = performance.now();
    const r = evaluateBpb(model, ids, { batch: o.batch, seqLen, tokenBytes });
    const seconds = (performance.now() - t0) / 1000;
    const types = m.quantized.size ? [...new Set([...m.quantized.values()].map((q) => q.type))].join('+') : 'f32';
    if (o.json) process.stdout.write(JSON.stringify({ model: o.model, data: o.data, split: o.split, weights: types, bpb: r.bpb, tokens: r.tokens, ctx: seqLen, seconds }) + '\n');
    else process.stdout.write(`${o.model} (${types}) on ${o.data} [${o.split}]: ${r.bpb.toFixed(4)} bits/byte over ${r.tokens.toLocaleString('en-US')} tokens (windows of ${seqLen}; ${seconds.toFixed(1)} s)\n`);
  } finally {
    be.dispose();
  }
}
