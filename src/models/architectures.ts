/**
 * The one place that maps a config to its architecture: every caller that builds a model from a config
 * (the loader, the trainer, the CLI) goes through `createModel`, so a new architecture is added here.
 */
import type { QuantizedWeight } from '../tensor/quant.js';
import type { Graph } from '../tensor/tensor.js';
import { BytePooled, POOLED_ARCHITECTURE, decoderConfig, describePooled, isPooledConfig, pooledParameterCounts } from './byte-pooled.js';
import { formatChunking } from './chunking.js';
import { type LlamaConfig, headDim, parameterCount } from './config.js';
import { Llama } from './llama.js';
import type { CausalLM } from './model.js';

export interface CreateModelOptions {
  /** Values by GGUF name (quantized matrices for inference where the architecture runs them). */
  weights?: Map<string, Float32Array | QuantizedWeight>;
  /** Seed of the initial values when there are no weights. */
  seed?: number;
  /** False freezes the parameters (a base under adapters). Default true. */
  trainable?: boolean;
}

/** A model of the architecture `config` describes: a byte-pooled config builds BytePooled, any other a Llama. */
export function createModel(graph: Graph, config: LlamaConfig, o: CreateModelOptions = {}): CausalLM {
  if (isPooledConfig(config)) {
    if (o.trainable === false) throw new Error('the byte-pooled model cannot be frozen under adapters (LoRA applies to Llama models)');
    const f32 = new Map<string, Float32Array>();
    for (const [name, w] of o.weights ?? []) {
      if (!(w instanceof Float32Array)) throw new Error(`the byte-pooled model runs from f32 weights only; tensor '${name}' is ${w.type}`);
      f32.set(name, w);
    }
    return new BytePooled(graph, config, o.weights ? f32 : undefined, o.seed);
  }
  return new Llama(graph, config, o.weights, o.seed, o.trainable);
}

/** A model from a loaded bundle: f32 weights plus any matrices kept quantized. */
export function modelFromBundle(graph: Graph, m: { config: LlamaConfig; weights: Map<string, Float32Array>; quantized?: Map<string, QuantizedWeight> }): CausalLM {
  return isPooledConfig(m.config) ? BytePooled.fromModel(graph, m) : Llama.fromModel(graph, m);
}

/** What the tools need to know of an architecture, whatever it is: one entry per architecture. */
export interface ArchitectureInfo {
  /** general.architecture of its GGUF files. */
  name: string;
  /** Exact parameter count (shared tensors once). */
  parameters: number;
  /** Whether other engines (llama.cpp, transformers, llama2.c) run it, so it can be written in their formats. */
  portable: boolean;
  /** Whether it runs from quantized matrices. */
  quantizable: boolean;
  /** Whether it reads raw bytes with no tokenizer (its evaluation then reads the file's bytes as they are). */
  readsBytes: boolean;
  /** Whether it has next-token logits on the tape, so it can learn from a teacher's (distillation). */
  distillable: boolean;
  /** One line for training logs where the architecture needs one ('' for the plain Llama). */
  summary: string;
  /** Lines describing its shape, for `stlm info`. */
  describe(): string[];
  /** Extra fields of `stlm info --json`. */
  extraInfo(): Record<string, unknown>;
}

const count = (n: number) => n.toLocaleString('en-US');

/** A stack of Llama blocks in one line (the Llama itself, or the pooled model's core). */
function blocksShape(c: LlamaConfig, width = 'd_model'): string {
  return `${width} ${c.dModel}, ${c.nLayers} layers, ${c.nHeads} heads (${c.nKvHeads} kv, head dim ${headDim(c)}), mlp ${c.mlpHidden}`;
}

/** Weight sharing and repeated blocks, as a suffix ('' when neither). */
function sharingNote(c: LlamaConfig): string {
  return `${c.shareFfn ? ', FFN shared by all layers' : ''}${(c.blockRepeat ?? 1) > 1 ? `, each block run ${c.blockRepeat}x (${c.nLayers * c.blockRepeat!} deep)` : ''}` +
    `${(c.sharedLoraRank ?? 0) > 0 ? `, rank-${c.sharedLoraRank} adapters per position on the shared weights` : ''}`;
}

/** The architecture `config` describes. */
export function architectureOf(c: LlamaConfig): ArchitectureInfo {
  if (isPooledConfig(c)) {
    const n = pooledParameterCounts(c), p = c.pooling, dec = decoderConfig(c);
    return {
      name: POOLED_ARCHITECTURE, parameters: n.total, portable: false, quantizable: false, readsBytes: true, distillable: false, summary: describePooled(c),
      describe: () => {
        const rule = p.rule === 'fixed' ? `every ${p.chunkBytes} bytes` : `at word boundaries (SpaceByte's rule), at most ${p.chunkBytes} bytes`;
        return [
          `model:      byte-pooled (${POOLED_ARCHITECTURE}; only stlm runs it), ${count(n.total)} parameters`,
          `chunking:   ${formatChunking(p)}: chunks cut ${rule}`,
          `parameters: byte embedding ${count(n.byteEmbedding)}, encoder ${count(n.encoder)}, core ${count(n.core)}, decoder ${count(n.decoder)}`,
          `core:       ${blocksShape(c)}, over chunks`,
          `decoder:    ${blocksShape(dec, 'byte dim')}, over the bytes of a chunk; output head ${c.tieEmbeddings ? 'tied to' : 'apart from'} the byte embedding`,
          `details:    ctx ${c.ctx} bytes, rope theta ${c.ropeTheta}, norm eps ${c.normEps}${sharingNote(c)}`,
        ];
      },
      extraInfo: () => ({ chunking: formatChunking(p), parameterCounts: n }),
    };
  }
  return {
    name: 'llama', parameters: parameterCount(c), portable: true, quantizable: true, readsBytes: false, distillable: true, summary: '',
    describe: () => [
      `model:      Llama, ${count(parameterCount(c))} parameters`,
      `shape:      ${blocksShape(c)}, ctx ${c.ctx}`,
      `details:    ${c.tieEmbeddings ? 'tied' : 'untied'} embeddings, rope theta ${c.ropeTheta}, norm eps ${c.normEps}${sharingNote(c)}`,
    ],
    extraInfo: () => ({}),
  };
}
