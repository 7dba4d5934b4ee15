/**
 * `stlm eval bpb`: bits per byte of a model on a text (quantized models run from their quantized
 * weights). A Llama reads the text through its tokenizer; the byte-pooled model reads the raw bytes,
 * as its trainer does, so the number equals the trainer's validation bits per byte on the same split
 * and window length.
 */
import type { Backend } from '../kernels/backend.js';
import { type BpbModel, bpbWindowLength, evaluateBpb, tokenizeForBpb } from '../eval/bpb.js';
import { BytePooled, POOLED_ARCHITECTURE, type PooledConfig, isPooledConfig } from '../models/byte-pooled.js';
import { formatChunking } from '../models/chunking.js';
import { type LoadedModel, loadModel } from '../models/io.js';
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

/** A model ready to evaluate, with the token stream of the text and what one token stands for. */
interface EvalInput {
  model: BpbModel;
  ids: ArrayLike<number>;
  /** Bytes per token id (absent: one byte each). */
  tokenBytes?: Int32Array;
  /** 'tokens', or 'bytes' for models that read bytes (the count printed is of these). */
  unit: 'tokens' | 'bytes';
  /** The weights' types as run ('f32', or the quantized types). */
  weights: string;
  /** What the model is, for the text output. */
  description: string;
}

/** A Llama: the text through its tokenizer (a byte vocabulary gives one token per byte). */
function llamaInput(m: LoadedModel, text: Uint8Array, be: Backend): EvalInput {
  const { ids, tokenBytes } = tokenizeForBpb(m.tokenizer, text, m.config.vocabSize);
  const types = m.quantized.size ? [...new Set([...m.quantized.values()].map((q) => q.type))].join('+') : 'f32';
  return { model: Llama.fromModel(new Graph(be), m), ids, tokenBytes, unit: 'tokens', weights: types, description: types };
}

/** The byte-pooled model: the raw bytes (it has no tokenizer), exactly what its trainer evaluates. */
function pooledInput(m: LoadedModel, config: PooledConfig, text: Uint8Array, be: Backend): EvalInput {
  // fromModel refuses a file with quantized tensors: the pooled model runs from f32 weights only.
  const model = BytePooled.fromModel(new Graph(be), m);
  return { model, ids: text, unit: 'bytes', weights: 'f32', description: `f32, byte-pooled, ${formatChunking(config.pooling)} chunks` };
}

export async function runEvalBpb(o: EvalBpbCliOptions, be: Backend): Promise<void> {
  try {
    const m = await loadModel(o.model, { tokenizer: o.tokenizer, keepQuantized: true });
    const bytes = readTextData(o.data);
    const text = o.split === 'val' ? splitTrainVal(bytes).val : bytes;
    const input = isPooledConfig(m.config) ? pooledInput(m, m.config, text, be) : llamaInput(m, text, be);
    const seqLen = bpbWindowLength(input.ids.length, m.config.ctx, { ctx: o.ctx, what: `'${o.data}' (${o.split === 'val' ? 'its last 10%' : 'all of it'})`, unit: input.unit });
    const t0 = performance.now();
    const r = evaluateBpb(input.model, input.ids, { batch: o.batch, seqLen, tokenBytes: input.tokenBytes });
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      process.stdout.write(JSON.stringify({
        model: o.model, data: o.data, split: o.split, architecture: isPooledConfig(m.config) ? POOLED_ARCHITECTURE : 'llama', weights: input.weights, bpb: r.bpb, tokens: r.tokens, ctx: seqLen, seconds,
      }) + '\n');
    } else {
      process.stdout.write(`${o.model} (${input.description}) on ${o.data} [${o.split}]: ${r.bpb.toFixed(4)} bits/byte over ${r.tokens.toLocaleString('en-US')} ${input.unit} ` +
        `(windows of ${seqLen}; ${seconds.toFixed(1)} s)\n`);
    }
  } finally {
    be.dispose();
  }
}
