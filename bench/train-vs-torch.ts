/**
 * Training against the PyTorch anchor (../shared/anchors/torch), same configs, same data, same run:
 *   1. throughput: batch 16 × ctx 256, AdamW, median step time after warm-up, tokens/s per side and ratio;
 *   2. a fixed wall-clock budget (default 10 minutes per side) on tinyshakespeare (first 90% train,
 *      last 10% validation), then validation bits per byte on the whole split.
 * Both sides use 2 threads; the anchor runs with OMP_WAIT_POLICY=PASSIVE as its README prescribes.
 *
 * stlm runs its relaxed-SIMD build where the runtime has it (enabling Node 20's flag, as the CLI does).
 *
 *   npm run bench -- train-vs-torch [--configs tiny,small] [--minutes 10] [--no-budget] [--steps 10] [--threads 2] [--sides stlm,torch] [--json]
 * (--sides stlm skips the anchor: only for re-running our side; a comparison needs both in one run.)
 * With --json the last stdout line is
 *   {"results":[{"config":"tiny","side":"stlm","tokens_per_s":…,"val_bpb_10min":…}, …],"ratio":{"tiny":…}}
 * (ratio = stlm tokens/s ÷ torch tokens/s; val_bpb_10min is for the budget given by --minutes).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { enableRelaxedSimd } from '../src/kernels/wasm/relaxed-flag.js';
import { PRESETS } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { byteVocab } from '../src/io/model-file.js';
import { AdamW } from '../src/train/adamw.js';
import { WindowSampler } from '../src/train/data.js';
import { train } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import { PY, arg, ensureTorch } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHARED = join(ROOT, '..', 'shared');
const ANCHOR = join(SHARED, 'anchors', 'torch');
const CORPUS = join(SHARED, 'fixtures', 'corpora', 'tinyshakespeare', 'input.txt');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Our training throughput: the same step the anchor times (zero grad, forward, backward, AdamW). */
async function stlmThroughput(config: string, threads: number, warmup: number, steps: number, tokens: Uint8Array): Promise<number> {
  const be = await createWasmBackend({ threads });
  const g = new Graph(be);
  const cfg = PRESETS[config];
  const model = new Llama(g, cfg, undefined, 0);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t), { weightDecay: 0.1, clip: 0 });
  const sampler = new WindowSampler(tokens, 16, cfg.ctx, new Rng(0));
  const times: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    sampler.next();
    const t0 = performance.now();
    g.zeroGrad(params);
    const loss = model.loss(sampler.ids, sampler.targets, 16);
    g.backward(loss);
    opt.update(1e-3);
    g.release();
    const dt = (performance.now() - t0) / 1000;
    if (s >= warmup) times.push(dt);
    console.error(`  stlm ${config} step ${s} ${s < warmup ? 'warm' : 'timed'} ${(dt * 1000).toFixed(1)} ms`);
  }
  be.dispose();
  return (16 * cfg.ctx) / median(times);
}

function anchorEnv(out: string, files: { train: string; val: string }, threads: number): NodeJS.ProcessEnv {
  return {
    ...process.env, ANCHOR_TRAIN: files.train, ANCHOR_VAL: files.val, ANCHOR_OUT: out,
    OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE',
  };
}

function runAnchor(script: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const r = spawnSync(PY, [join(ANCHOR, script), ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`anchor ${script} failed (exit ${r.status})`);
  const last = r.stdout.trim().split('\n').at(-1)!;
  return JSON.parse(last) as Record<string, unknown>;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--configs', '--json', '--minutes', '--no-budget', '--sides', '--steps', '--threads'];

export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const configs = arg(argv, '--configs', 'tiny,small').split(',');
  const minutes = Number(arg(argv, '--minutes', '10'));
  const budget = !argv.includes('--no-budget');
  const steps = Number(arg(argv, '--steps', '10'));
  const threads = Number(arg(argv, '--threads', '2'));
  const sides = arg(argv, '--sides', 'stlm,torch').split(',');
  const withTorch = sides.includes('torch');
  if (!existsSync(CORPUS) || !existsSync(ANCHOR)) throw new Error(`needs ../shared (fixtures and anchors) beside the project: ${CORPUS}`);
  if (withTorch) ensureTorch();
  // As the stlm CLI does: relaxed SIMD (FMA) where the runtime has it behind a flag (Node 20).
  // STLM_RELAXED_SIMD=0 measures the plain SIMD build.
  const relaxed = await enableRelaxedSimd();
  console.error(`stlm: wasm-${relaxed ? 'relaxed-simd' : 'simd'} build, ${threads} threads`);
  const text = new Uint8Array(readFileSync(CORPUS));
  const cut = Math.floor(text.length * 0.9);
  const dir = join(tmpdir(), 'stlm-train-vs-torch');
  mkdirSync(dir, { recursive: true });
  const files = { train: join(dir, 'train.txt'), val: join(dir, 'val.txt') };
  writeFileSync(files.train, text.subarray(0, cut));
  writeFileSync(files.val, text.subarray(cut));
  const env = anchorEnv(dir, files, threads);

  const results: { config: string; side: 'stlm' | 'torch'; tokens_per_s: number; val_bpb_10min: number | null; steps_in_budget?: number }[] = [];
  const ratio: Record<string, number> = {};
  for (const config of configs) {
    if (!PRESETS[config]) throw new Error(`unknown config '${config}'`);
    console.error(`== ${config}: throughput (batch 16 × ctx ${PRESETS[config].ctx}, ${threads} threads)`);
    const torchTps = withTorch ? (runAnchor('bench_train.py', [config, String(threads), '3', String(steps)], env).tokens_per_s_median as number) : NaN;
    const ours = await stlmThroughput(config, threads, 3, steps, text.subarray(0, cut));
    ratio[config] = ours / torchTps;
    const rowT = { config, side: 'torch' as const, tokens_per_s: torchTps, val_bpb_10min: null as number | null, steps_in_budget: undefined as number | undefined };
    const rowS = { config, side: 'stlm' as const, tokens_per_s: ours, val_bpb_10min: null as number | null, steps_in_budget: undefined as number | undefined };
    if (budget) {
      console.error(`== ${config}: ${minutes} minutes of training per side, then validation bits per byte`);
      const planned = Math.max(200, Math.round((torchTps * minutes * 60) / (16 * PRESETS[config].ctx)));
      if (withTorch) {
        const t = runAnchor('train.py', [config, String(planned), String(minutes), String(threads)], env);
        rowT.val_bpb_10min = t.val_bpb as number;
        rowT.steps_in_budget = t.steps as number;
      }
      const be = await createWasmBackend({ threads });
      const r = await train(be, {
        tokens: text, config: { ...PRESETS[config], vocabSize: 259 }, checkpointPath: join(dir, `stlm-${config}.ckpt`), minutes, batch: 16, seqLen: PRESETS[config].ctx,
        lr: 1e-3, minLr: 1e-4, warmup: 100, weightDecay: 0.1, clip: 1, accum: 1, seed: 0, evalEvery: 0, evalWindows: 1, saveEvery: 0, resume: false,
        vocab: byteVocab(), log: (l) => console.error(`  ${l}`),
        onStep: (s) => { if (s.step % 100 === 0) console.error(`  stlm step ${s.step}/${s.totalSteps} loss ${s.loss.toFixed(4)} ${Math.round(s.tokensPerSecond)} tok/s`); },
      });
      be.dispose();
      rowS.val_bpb_10min = r.finalValBpb;
      rowS.steps_in_budget = r.steps;
    }
    results.push(rowS);
    if (withTorch) results.push(rowT);
  }

  console.log('config | side  | tokens/s | ratio | steps in budget | val bpb after budget');
  for (const r of results) {
    console.log(`${r.config.padEnd(6)} | ${r.side.padEnd(5)} | ${Math.round(r.tokens_per_s).toString().padStart(8)} | ${r.side === 'stlm' ? ratio[r.config].toFixed(2) : '     '} | ${String(r.steps_in_budget ?? '-').padStart(15)} | ${r.val_bpb_10min?.toFixed(4) ?? '-'}`);
  }
  if (json) console.log(JSON.stringify({ results, ratio, budget_minutes: budget ? minutes : null, threads }));
}
