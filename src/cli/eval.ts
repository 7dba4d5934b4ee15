/**
 * `stlm eval bpb`: bits per byte of a model on a text (quantized models run from their quantized
 * weights). A Llama reads the text through its tokenizer; the byte-pooled model reads the raw bytes,
 * as its trainer does, so the number equals the trainer's validation bits per byte on the same split
 * and window length.
 */
import type { Backend } from '../kernels/backend.js';
import { bpbWindowLength, evaluateBpb, tokenizeForBpb } from '../eval/bpb.js';
import { openModel } from '../io/open.js';
import { architectureOf } from '../models/architectures.js';
import { splitTrainVal } from '../train/data.js';
import { readTextData } from '../train/data-files.js';

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
    const m = await openModel(o.model, { tokenizer: o.tokenizer, backend: be });
    const bytes = readTextData(o.data);
    const text = o.split === 'val' ? splitTrainVal(bytes).val : bytes;
    const arch = architectureOf(m.config);
    const weights = m.bundle.quantized.size ? [...new Set([...m.bundle.quantized.values()].map((q) => q.type))].join('+') : 'f32';
    // A model that reads bytes gets the file's bytes as they are (exactly what its trainer evaluates);
    // any other reads the text through its tokenizer, and bits are divided by the bytes each token stands for.
    const input = arch.readsBytes
      ? { ids: text, tokenBytes: undefined, unit: 'bytes' as const, description: `${weights}, byte-pooled, ${String(arch.extraInfo().chunking)} chunks` }
      : { ...tokenizeForBpb(m.tokenizer, text, m.config.vocabSize), unit: 'tokens' as const, description: weights };
    const seqLen = bpbWindowLength(input.ids.length, m.config.ctx, { ctx: o.ctx, what: `'${o.data}' (${o.split === 'val' ? 'its last 10%' : 'all of it'})`, unit: input.unit });
    const t0 = performance.now();
    const r = evaluateBpb(m.model, input.ids, { batch: o.batch, seqLen, tokenBytes: input.tokenBytes });
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      process.stdout.write(JSON.stringify({
        model: o.model, data: o.data, split: o.split, architecture: arch.name, weights, bpb: r.bpb, tokens: r.tokens, ctx: seqLen, seconds,
      }) + '\n');
    } else {
      process.stdout.write(`${o.model} (${input.description}) on ${o.data} [${o.split}]: ${r.bpb.toFixed(4)} bits/byte over ${r.tokens.toLocaleString('en-US')} ${input.unit} ` +
        `(windows of ${seqLen}; ${seconds.toFixed(1)} s)\n`);
    }
  } finally {
    be.dispose();
  }
}
