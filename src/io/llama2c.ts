/**
 * llama2.c checkpoints as models: the header to and from a LlamaConfig (with run.c's hard-coded RoPE
 * theta 10000 and RMSNorm eps 1e-5), run.c's tensors (stacked over layers) to and from GGUF names (one
 * per layer). The bytes are formats/llama2c.ts.
 */
import {
  LLAMA2C_NORM_EPS, LLAMA2C_ROPE_THETA, Llama2cError, type Llama2cHeader, type Llama2cTensorName, llama2cTensors, readLlama2c,
  readLlama2cHeader, writeLlama2c,
} from '../formats/llama2c.js';
import { type LlamaConfig, parameterShapes, validateConfig } from '../models/config.js';

/** A llama2.c checkpoint as a model. */
export interface Llama2cModel {
  config: LlamaConfig;
  /** GGUF names, [out, in] layout (the same layout as llama2.c's). */
  weights: Map<string, Float32Array>;
  version: 0 | 1;
}

/** run.c's tensor -> its GGUF name (per layer, blk.<l>., for the tensors stacked over layers); the freq_cis tables have none. */
const GGUF_NAMES: Partial<Record<Llama2cTensorName, string>> = {
  token_embedding_table: 'token_embd.weight',
  rms_att_weight: 'attn_norm.weight',
  wq: 'attn_q.weight',
  wk: 'attn_k.weight',
  wv: 'attn_v.weight',
  wo: 'attn_output.weight',
  rms_ffn_weight: 'ffn_norm.weight',
  w1: 'ffn_gate.weight',
  w2: 'ffn_down.weight',
  w3: 'ffn_up.weight',
  rms_final_weight: 'output_norm.weight',
  wcls: 'output.weight',
};

/** The model a llama2.c header describes; throws a Llama2cError naming the file when it is no valid model. */
export function llama2cConfig(h: Llama2cHeader, fileName: string): LlamaConfig {
  try {
    return validateConfig({
      vocabSize: h.vocabSize, dModel: h.dim, nLayers: h.nLayers, nHeads: h.nHeads, nKvHeads: h.nKvHeads, mlpHidden: h.hiddenDim,
      ctx: h.seqLen, tieEmbeddings: h.sharedClassifier, ropeTheta: LLAMA2C_ROPE_THETA, normEps: LLAMA2C_NORM_EPS, dropout: 0,
    });
  } catch (e) {
    throw new Llama2cError(`${fileName}: header describes an invalid model: ${(e as Error).message}`);
  }
}

/** The llama2.c header of a model (legacy v0 unless asked); throws where llama2.c cannot hold the model. */
export function llama2cHeader(config: LlamaConfig, version: 0 | 1 = 0): Llama2cHeader {
  const c = config;
  if (c.ropeTheta !== LLAMA2C_ROPE_THETA) throw new Llama2cError(`llama2.c hard-codes RoPE theta 10000; this model uses ${c.ropeTheta}`);
  if (Math.abs(c.normEps - LLAMA2C_NORM_EPS) > 1e-12) throw new Llama2cError(`llama2.c hard-codes RMSNorm eps 1e-5; this model uses ${c.normEps}`);
  return {
    dim: c.dModel, hiddenDim: c.mlpHidden, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize,
    seqLen: c.ctx, sharedClassifier: c.tieEmbeddings, version,
  };
}

/** Parses a llama2.c checkpoint (float32, version 0 or 1) into a config and GGUF-named weights (views, no copy). */
export function readLlama2cModel(bytes: Uint8Array, fileName = '<buffer>'): Llama2cModel {
  // The header's model is checked before the body, so a bad shape is reported as such, not as a wrong length.
  const config = llama2cConfig(readLlama2cHeader(bytes, fileName), fileName);
  const { header, tensors } = readLlama2c(bytes, fileName);
  const weights = new Map<string, Float32Array>();
  for (const t of llama2cTensors(header, fileName)) {
    const name = GGUF_NAMES[t.name];
    if (!name) continue;
    const all = tensors.get(t.name)!;
    if (!t.layered) weights.set(name, all);
    else for (let l = 0; l < header.nLayers; l++) weights.set(`blk.${l}.${name}`, all.subarray(l * t.values, (l + 1) * t.values));
  }
  for (const [name, w] of weights) {
    for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i])) throw new Llama2cError(`${fileName}: tensor ${name} holds a non-finite value at index ${i}`);
  }
  return { config, weights, version: header.version };
}

/** Writes a model as a legacy (v0) llama2.c checkpoint, the format run.c reads, with run.c's freq_cis tables. */
export function writeLlama2cModel(config: LlamaConfig, weights: Map<string, Float32Array>): Uint8Array {
  const header = llama2cHeader(config);
  for (const [name] of parameterShapes(config)) if (!weights.has(name)) throw new Llama2cError(`cannot write llama2.c: tensor ${name} is missing`);
  const tensors = new Map<Llama2cTensorName, Float32Array[]>();
  for (const t of llama2cTensors(header, 'cannot write llama2.c')) {
    const base = GGUF_NAMES[t.name];
    if (!base) continue; // freq_cis: written by the container as export.py computes them
    const layers: Float32Array[] = [];
    for (let l = 0; l < (t.layered ? header.nLayers : 1); l++) {
      const name = t.layered ? `blk.${l}.${base}` : base;
      const w = weights.get(name)!;
      if (w.length !== t.values) throw new Llama2cError(`cannot write llama2.c: tensor ${name} has ${w.length} values, the config needs ${t.values}`);
      layers.push(w);
    }
    tensors.set(t.name, layers);
  }
  return writeLlama2c(header, tensors);
}
