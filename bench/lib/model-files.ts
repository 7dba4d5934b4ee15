/**
 * The model files the benchmarks run, made on first use and cached under bench-results/decode-vs-llamacpp/:
 * stories260K (the llama2.c fixture converted to GGUF), the embedded models/default.gguf, and random-weight
 * byte-vocabulary Llamas of ~27M and ~113M parameters (fixed seeds: random weights are enough to time a
 * model), each as F32 GGUF, converted to F16 or quantized to Q8_0/Q4_0 with `stlm quantize`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LlamaConfig, PRESETS, parameterCount, parameterShapes } from '../../src/models/config.js';
import { byteVocab, saveModel } from '../../src/io/model-file.js';
import { Rng } from '../../src/util/rng.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'src', 'cli', 'index.js');
export const CACHE_DIR = join(ROOT, 'bench-results', 'decode-vs-llamacpp');
const STORIES = join(ROOT, '..', 'shared', 'fixtures', 'models', 'stories260K', 'stories260K.bin');

export type FileType = 'f32' | 'f16' | 'q8_0' | 'q4_0';
export const FILE_TYPES: FileType[] = ['f32', 'f16', 'q8_0', 'q4_0'];

/** Random-weight models: every matrix row a multiple of 32 values, so Q8_0/Q4_0 apply to all of them. */
const RANDOM_MODELS: Record<string, { config: LlamaConfig; seed: number }> = {
  rand25m: { config: { ...PRESETS.base, dModel: 512, nLayers: 8, nHeads: 8, nKvHeads: 8, mlpHidden: 1536, ctx: 1024 }, seed: 25 },
  rand110m: { config: { ...PRESETS.base, dModel: 768, nLayers: 12, nHeads: 12, nKvHeads: 12, mlpHidden: 3072, ctx: 1024 }, seed: 110 },
};
export const ALL_MODELS = ['stories260K', 'default', 'rand25m', 'rand110m'];

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
  if (r.status !== 0) throw new Error(`stlm ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
}

/** N(0, 0.02) matrices and unit norm gains from a fixed seed: random weights are enough to time a model. */
function randomWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of parameterShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.02;
    weights.set(name, data);
  }
  return weights;
}

/** The model's F32 GGUF (created on first use), or why it cannot be had. */
export async function sourceFile(model: string): Promise<string | { skip: string }> {
  if (model === 'default') {
    const embedded = join(ROOT, 'models', 'default.gguf');
    return existsSync(embedded) ? embedded : { skip: `${embedded} is absent` };
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const out = join(CACHE_DIR, `${model}-f32.gguf`);
  if (existsSync(out)) return out;
  if (model === 'stories260K') {
    if (!existsSync(STORIES)) return { skip: `fixture ${STORIES} is absent (it lives in ../shared beside the project)` };
    cli(['convert', STORIES, out]);
    return out;
  }
  const spec = RANDOM_MODELS[model];
  if (!spec) return { skip: `unknown model '${model}' (valid: ${ALL_MODELS.join(', ')})` };
  console.error(`  writing ${out}: random weights, ${parameterCount(spec.config).toLocaleString('en-US')} parameters, seed ${spec.seed}`);
  await saveModel(out, { config: spec.config, weights: randomWeights(spec.config, spec.seed), vocab: byteVocab() }, { name: model });
  return out;
}

/** Trained models the repository ships already quantized (only in that type): name -> file. */
const SHIPPED: Record<string, string> = { 'brown-13m': join(ROOT, 'examples', 'models', 'brown-13m.q8_0.gguf') };

/**
 * The model as a `type` GGUF: the F32 source, `stlm convert --type f16`, or `stlm quantize --type`; a
 * shipped model, or a path to a .gguf file (a model trained here and kept outside git), as it is.
 */
export async function modelFile(model: string, type: FileType): Promise<string | { skip: string }> {
  if (SHIPPED[model]) return existsSync(SHIPPED[model]) ? SHIPPED[model] : { skip: `${SHIPPED[model]} is absent` };
  if (model.endsWith('.gguf')) return existsSync(model) ? model : { skip: `${model} is absent` };
  const src = await sourceFile(model);
  if (typeof src !== 'string' || type === 'f32') return src;
  const out = join(CACHE_DIR, `${model}-${type}.gguf`);
  if (!existsSync(out)) cli(type === 'f16' ? ['convert', src, out, '--type', 'f16'] : ['quantize', src, out, '--type', type]);
  return out;
}
