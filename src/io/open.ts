/**
 * One loader: `openModel` opens any model stlm reads — GGUF (f32 or quantized, flat or byte-pooled),
 * llama2.c, a Hugging Face directory — from a path (Node) or from bytes (anywhere, a browser included),
 * and returns a handle with the model, its tokenizer and what it is. Node's file access stays at the edge
 * (`models/io.ts` loadModel); the bytes path touches no `node:` module.
 */
import type { Backend } from '../kernels/backend.js';
import { modelFromBundle } from '../models/architectures.js';
import type { LlamaConfig } from '../models/config.js';
import { type HfFileLookup, importHfFromFiles } from './hf-llama.js';
import { type LoadOptions, type LoadedModel, type ModelFormat, detectFormat, hfTokenizerModel, loadModel, parseGgufModel, parseLlama2cModel } from './model-file.js';
import { type LoraData, LoraAdapters } from '../models/lora.js';
import { parseLoraAdapter, readLoraAdapter } from './lora-file.js';
import { Llama } from '../models/llama.js';
import type { CausalLM } from '../models/model.js';
import { Graph } from '../tensor/tensor.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export interface OpenOptions extends LoadOptions {
  /** The backend the model runs on (default: the WebAssembly backend with every core). */
  backend?: Backend;
  /** A LoRA adapter applied on the fly (llama.cpp's --lora): an adapter GGUF's path or bytes, or adapter data. */
  lora?: string | Uint8Array | LoraData;
  /** With model bytes: the bytes of the tokenizer file a llama2.c checkpoint keeps apart (tokenizer.bin). */
  tokenizerBytes?: Uint8Array;
  /** With bytes: the file's name, for messages (default '<bytes>'). */
  name?: string;
}

/** An opened model: what every consumer (generation, scoring, the tiers, the server) holds. */
export interface ModelHandle {
  model: CausalLM;
  tokenizer: Tokenizer;
  config: LlamaConfig;
  /** Where it came from: the file's format and name. */
  format: ModelFormat;
  source: string;
  /** Whether prompts get BOS by default (the vocabulary's add_bos_token; never for a model with its own start). */
  addBos: boolean;
  /** Parameters as held (shared tensors once; quantized matrices counted by their values). */
  parameters: number;
  /** The bundle as loaded (weights, vocabulary, the parsed GGUF file), for info and export. */
  bundle: LoadedModel;
  /** Frees the model's memory on the backend (and the backend, when openModel created it). */
  dispose(): void;
}

/**
 * A model directory given as its files (a browser's dropped folder): `files(name)` returns a file's bytes
 * or undefined. A Hugging Face directory (config.json, safetensors, tokenizer.json) opens this way.
 */
export interface ModelFiles {
  /** The directory's name, for messages. */
  name: string;
  files: HfFileLookup;
}

/**
 * Opens a model from a path (Node), from a file's bytes, or from a directory's files (anywhere);
 * quantized GGUF matrices stay quantized.
 */
export async function openModel(source: string | Uint8Array | ModelFiles, o: OpenOptions = {}): Promise<ModelHandle> {
  const bundle = typeof source === 'string' ? await loadModel(source, { keepQuantized: true, ...o })
    : source instanceof Uint8Array ? parseModelBytes(source, o) : await hfFromFiles(source, o);
  const owned = !o.backend;
  const be = o.backend ?? (await (await import('../kernels/wasm/backend.js')).createWasmBackend());
  try {
    const name = typeof source === 'string' ? source : source instanceof Uint8Array ? (o.name ?? '<bytes>') : source.name;
    return await handleFor(bundle, new Graph(be), name, o.lora, owned);
  } catch (e) {
    if (owned) be.dispose();
    throw e;
  }
}

/** A Hugging Face directory from its files: the weights, config.json, and tokenizer.json (+ tokenizer_config.json). */
async function hfFromFiles(dir: ModelFiles, o: OpenOptions): Promise<LoadedModel> {
  if (o.tokenizer) throw new Error('openModel: a tokenizer path needs a model path; a directory\'s files carry their tokenizer.json');
  const { config, weights } = await importHfFromFiles(dir.files, dir.name);
  const text = async (name: string) => {
    const b = await dir.files(name);
    return b && new TextDecoder().decode(b);
  };
  const tokenizerJson = await text('tokenizer.json');
  if (tokenizerJson === undefined) throw new Error(`${dir.name}: no tokenizer.json (the files must include the model's tokenizer)`);
  const hf = hfTokenizerModel(tokenizerJson, (await text('tokenizer_config.json')) ?? null, `${dir.name}/tokenizer.json`, config);
  return { config, weights, quantized: new Map(), format: 'safetensors', ...hf };
}

/**
 * A model file given as bytes: GGUF, any architecture, or a llama2.c checkpoint with its tokenizer's bytes
 * (`tokenizerBytes`; none for a byte vocabulary). Safetensors needs config.json beside it: open it as files.
 */
function parseModelBytes(bytes: Uint8Array, o: OpenOptions): LoadedModel {
  if (o.tokenizer) throw new Error('openModel: a tokenizer path needs a model path; with model bytes, give the tokenizer as tokenizerBytes');
  const name = o.name ?? '<bytes>';
  const format = detectFormat(bytes);
  if (format === 'gguf') {
    if (o.tokenizerBytes) throw new Error(`${name}: a GGUF model carries its tokenizer; no tokenizer file is needed`);
    return parseGgufModel(bytes, name, { keepQuantized: true });
  }
  if (format === 'llama2c') return parseLlama2cModel(bytes, name, o.tokenizerBytes && { bytes: o.tokenizerBytes, fileName: `${name}'s tokenizer` });
  if (format === undefined) throw new Error(`${name}: not a model file stlm reads (GGUF, llama2.c checkpoint)`);
  throw new Error(`${name}: a ${format} model needs files beside it (its config.json): open it by path or as a directory's files`);
}

async function handleFor(bundle: LoadedModel, graph: Graph, source: string, loraSource: OpenOptions['lora'], ownsBackend: boolean): Promise<ModelHandle> {
  let model: CausalLM;
  if (loraSource) {
    const base = modelFromBundle(graph, bundle);
    if (!(base instanceof Llama)) throw new Error(`${source} is a ${base.architecture} model; LoRA adapters apply to Llama models`);
    const lora: LoraData = typeof loraSource === 'string' ? await readLoraAdapter(loraSource, bundle.config)
      : loraSource instanceof Uint8Array ? parseLoraAdapter(loraSource, '<adapter bytes>', bundle.config) : loraSource;
    base.adapters = new LoraAdapters(graph, bundle.config, lora, false);
    model = base;
  } else {
    model = modelFromBundle(graph, bundle);
  }
  return {
    model, tokenizer: bundle.tokenizer, config: bundle.config, format: bundle.format, source,
    addBos: !model.ownStart && (bundle.vocab.addBos ?? false),
    parameters: parameterTotal(model),
    bundle,
    dispose: () => {
      graph.release();
      for (const t of model.params.values()) graph.backend.free(t.buf);
      if (model instanceof Llama) for (const q of model.quantized.values()) q.dispose();
      if (ownsBackend) graph.backend.dispose();
    },
  };
}

/** Parameters as held: f32 tensors' values plus quantized matrices' values. */
function parameterTotal(model: CausalLM): number {
  let n = 0;
  for (const t of model.params.values()) n += t.size;
  if (model instanceof Llama) for (const q of model.quantized.values()) n += q.shape[0] * q.shape[1];
  return n;
}
