/**
 * Training checkpoints. A checkpoint is a model file (GGUF, loadable by `stlm generate`) plus the
 * optimizer moments as extra tensors (`optim.m.<name>`, `optim.v.<name>`) and the training state in
 * stlm.train.* metadata: step, planned steps, optimizer step, both RNG states and the loss history.
 * Written to a temporary file and renamed, so a crash never leaves a half-written checkpoint.
 */
import { GGML_TYPE, type GgufTensorInput, type GgufValue, getTensor, gguf, metaArray, metaNumber, tensorToF32 } from '../formats/gguf.js';
import type { LlamaConfig } from '../models/config.js';
import { modelMetadata, modelTensors } from './gguf-model.js';
import { loadModel } from './model-file.js';
import type { VocabSpec } from '../tokenizers/vocab.js';

export interface Checkpoint {
  config: LlamaConfig;
  weights: Map<string, Float32Array>;
  /** name -> [first moment, second moment] */
  moments: Map<string, [Float32Array, Float32Array]>;
  optimizerStep: number;
  step: number;
  plannedSteps: number;
  dataRng: number[];
  dropoutRng: number[];
  losses: number[];
  /** The vocabulary saved with it (filled by loadCheckpoint; saveCheckpoint takes it separately). */
  vocab?: VocabSpec;
}

/** Whether a checkpoint file exists (Node's fs loaded on demand: the trainer, which imports this, runs in browsers too). */
export async function checkpointExists(path: string): Promise<boolean> {
  const { existsSync } = await import('node:fs');
  return existsSync(path);
}

export async function saveCheckpoint(path: string, c: Checkpoint, vocab: VocabSpec): Promise<void> {
  const { writeGgufFile } = await import('../formats/gguf.js');
  const meta: [string, GgufValue][] = [
    ...modelMetadata(c.config, vocab, 'stlm checkpoint'),
    ['stlm.train.step', gguf.u32(c.step)],
    ['stlm.train.planned_steps', gguf.u32(c.plannedSteps)],
    ['stlm.train.optimizer_step', gguf.u32(c.optimizerStep)],
    ['stlm.train.data_rng', gguf.arr('u32', Uint32Array.from(c.dataRng))],
    ['stlm.train.dropout_rng', gguf.arr('u32', Uint32Array.from(c.dropoutRng))],
    ['stlm.train.losses', gguf.arr('f32', Float32Array.from(c.losses))],
  ];
  const tensors: GgufTensorInput[] = modelTensors(c.config, c.weights);
  for (const t of [...tensors]) {
    const [m, v] = c.moments.get(t.name)!;
    tensors.push({ name: `optim.m.${t.name}`, shape: t.shape, type: GGML_TYPE.F32, data: m });
    tensors.push({ name: `optim.v.${t.name}`, shape: t.shape, type: GGML_TYPE.F32, data: v });
  }
  await writeGgufFile(path, meta, tensors);
}

export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const { config, weights, file, vocab } = await loadModel(path);
  if (!file?.metadata.has('stlm.train.step')) throw new Error(`${path}: a model file, not a training checkpoint (no stlm.train.* metadata)`);
  const moments = new Map<string, [Float32Array, Float32Array]>();
  for (const name of weights.keys()) {
    moments.set(name, [tensorToF32(file, getTensor(file, `optim.m.${name}`)), tensorToF32(file, getTensor(file, `optim.v.${name}`))]);
  }
  // Losses were stored as f32; the curve continues from the rounded values, which only affects reporting.
  return {
    config, weights, moments,
    optimizerStep: metaNumber(file, 'stlm.train.optimizer_step'),
    step: metaNumber(file, 'stlm.train.step'),
    plannedSteps: metaNumber(file, 'stlm.train.planned_steps'),
    dataRng: Array.from(metaArray(file, 'stlm.train.data_rng', 'u32')),
    dropoutRng: Array.from(metaArray(file, 'stlm.train.dropout_rng', 'u32')),
    losses: Array.from(metaArray(file, 'stlm.train.losses', 'f32')),
    vocab,
  };
}
