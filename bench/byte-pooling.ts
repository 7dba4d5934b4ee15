/**
 * Byte pooling (models/byte-pooled.ts) against the flat byte model, on tinyshakespeare (first 90% train,
 * last 10% validation, bits per byte over the whole validation split, the same bytes scored by both):
 *   (a) equal parameters (within 1%), same steps, same seed and schedule: validation bits/byte and
 *       training bytes/s;
 *   (b) equal CPU time (--minutes of training each, same threads): validation bits/byte;
 *   (c) generation bytes/s: --gen-bytes sampled bytes (temperature 0.8, seed 1) from each model of (b).
 * The three models: the flat tiny preset (d 128, 4 layers), and pooled models with a d 128 × 4-layer core
 * whose MLP is narrowed so the byte embedding, encoder and decoder (byte dim 64, 1 layer) fit the same
 * budget: fixed 4-byte chunks, and SpaceByte word chunks of at most 8 bytes.
 *
 *   npm run bench -- byte-pooling [--steps 200] [--minutes 2] [--gen-bytes 400] [--threads 2] [--only a|b] [--json]
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { BytePooled, isPooledConfig, pooledParameterCounts, resolvePooledConfig } from '../src/models/byte-pooled.js';
import { type LlamaConfig, PRESETS, parameterCount } from '../src/models/config.js';
import { byteVocab } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { ByteTokenizer } from '../src/tokenizers/byte.js';
import { type TrainableModel, type TrainResult, train } from '../src/train/trainer.js';
import { arg } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CORPUS = join(ROOT, '../shared/fixtures/corpora/tinyshakespeare/input.txt');
const BATCH = 16, WINDOW = 256;

interface Variant {
  name: string;
  config: LlamaConfig;
}

interface Result {
  study: 'a' | 'b';
  variant: string;
  params: number;
  steps: number;
  train_seconds: number;
  train_bytes_per_s: number;
  val_bpb: number;
  gen_bytes_per_s?: number;
  sample?: string;
}

function variants(): Variant[] {
  const decoder = { byte_dim: 64, decoder_layers: 1, decoder_heads: 2, decoder_mlp_hidden: 192 };
  return [
    { name: 'flat bytes (tiny)', config: PRESETS.tiny },
    // MLP widths chosen so the totals match the flat model's 886,272 within 1%.
    { name: 'pooled, fixed 4-byte chunks', config: resolvePooledConfig({ preset: 'tiny', mlp_hidden: 320, ...decoder }, 'fixed:4') },
    { name: 'pooled, space chunks (max 8)', config: resolvePooledConfig({ preset: 'tiny', mlp_hidden: 272, ...decoder }, 'space:8') },
  ];
}

const paramsOf = (c: LlamaConfig) => (isPooledConfig(c) ? pooledParameterCounts(c).total : parameterCount(c));
const createModel = (g: ConstructorParameters<typeof Llama>[0], c: LlamaConfig, w: Map<string, Float32Array> | undefined, seed: number): TrainableModel =>
  isPooledConfig(c) ? new BytePooled(g, c, w, seed) : new Llama(g, c, w, seed);

async function trainOne(be: Backend, tokens: Uint8Array, v: Variant, budget: { steps?: number; minutes?: number }, tag: string): Promise<{ r: TrainResult<TrainableModel>; bytesPerSecond: number; trainSeconds: number }> {
  let bytesPerSecond = 0, trainSeconds = 0;
  const r = await train(be, {
    tokens, config: v.config, checkpointPath: join(ROOT, 'bench-results', `byte-pooling-${tag}.ckpt`), ...budget, batch: BATCH, seqLen: WINDOW,
    lr: 2e-3, minLr: 2e-4, warmup: 30, weightDecay: 0.1, clip: 1, accum: 1, seed: 1, evalEvery: 0, evalWindows: 1, saveEvery: 0, resume: false,
    vocab: byteVocab(),
    onStep: (s) => {
      bytesPerSecond = s.tokensPerSecond;
      trainSeconds = s.elapsedSeconds;
    },
  }, createModel);
  return { r, bytesPerSecond, trainSeconds };
}

/** Bytes per second of sampling `n` bytes after a short prompt. */
function generationSpeed(model: TrainableModel, n: number): { bytesPerSecond: number; sample: string } {
  const tok = new ByteTokenizer(), prompt = 'ROMEO:\n';
  const o = { maxTokens: n, temperature: 0.8, topP: 0.95, seed: 1 };
  const r = generate(model as BytePooled | Llama, tok, prompt, o);
  return { bytesPerSecond: r.tokens.length / r.decodeSeconds, sample: r.text.slice(0, 120) };
}

const loadavg = () => (existsSync('/proc/loadavg') ? readFileSync('/proc/loadavg', 'utf8').trim() : 'n/a');

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--gen-bytes', '--json', '--minutes', '--only', '--steps', '--threads'];

export async function main(argv: string[]): Promise<void> {
  if (!existsSync(CORPUS)) throw new Error(`needs ../shared/fixtures beside the project (${CORPUS})`);
  const steps = Number(arg(argv, '--steps', '200'));
  const minutes = Number(arg(argv, '--minutes', '2'));
  const genBytes = Number(arg(argv, '--gen-bytes', '400'));
  const threads = Number(arg(argv, '--threads', '2'));
  const only = arg(argv, '--only', 'ab');
  const be = await createBackend('wasm', { threads });
  const tokens = new Uint8Array(readFileSync(CORPUS));
  const results: Result[] = [];
  console.error(`loadavg at start: ${loadavg()}; ${be.name} × ${be.threads} threads; batch ${BATCH} × ${WINDOW} bytes`);
  try {
    for (const [study, budget] of [['a', { steps }], ['b', { minutes }]] as const) {
      if (!only.includes(study)) continue;
      for (const [i, v] of variants().entries()) {
        const { r, bytesPerSecond, trainSeconds } = await trainOne(be, tokens, v, budget, `${study}${i}`);
        const res: Result = {
          study, variant: v.name, params: paramsOf(v.config), steps: r.steps, train_seconds: trainSeconds, train_bytes_per_s: bytesPerSecond, val_bpb: r.finalValBpb,
        };
        if (study === 'b' && genBytes > 0) {
          const gen = generationSpeed(r.model, genBytes);
          res.gen_bytes_per_s = gen.bytesPerSecond;
          res.sample = gen.sample;
        }
        r.graph.release();
        results.push(res);
        console.error(`(${study}) ${res.variant} | ${res.params.toLocaleString('en-US')} params | ${res.steps} steps in ${res.train_seconds.toFixed(0)} s | ` +
          `${Math.round(res.train_bytes_per_s).toLocaleString('en-US')} bytes/s | val ${res.val_bpb.toFixed(4)} bits/byte` +
          (res.gen_bytes_per_s ? ` | generation ${Math.round(res.gen_bytes_per_s).toLocaleString('en-US')} bytes/s` : ''));
      }
    }
  } finally {
    be.dispose();
  }
  console.error(`loadavg at end: ${loadavg()}`);
  if (argv.includes('--json')) {
    for (const r of results) console.log(JSON.stringify(r));
    return;
  }
  console.log('| study | model | parameters | steps | train s | train bytes/s | val bits/byte | generation bytes/s |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const study = r.study === 'a' ? `(a) ${steps} steps` : `(b) ${minutes} min`;
    console.log(`| ${study} | ${r.variant} | ${r.params.toLocaleString('en-US')} | ${r.steps} | ${r.train_seconds.toFixed(0)} | ${Math.round(r.train_bytes_per_s).toLocaleString('en-US')} | ` +
      `${r.val_bpb.toFixed(4)} | ${r.gen_bytes_per_s ? Math.round(r.gen_bytes_per_s).toLocaleString('en-US') : '-'} |`);
  }
  for (const r of results) if (r.sample) console.log(`\n${r.variant} sample: ${JSON.stringify(r.sample)}`);
}
