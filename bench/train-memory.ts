/**
 * Peak memory of training at an effective batch of 16 × ctx (base: 27M, 16 × 512; medium: 113M, 16 × 512):
 * stlm planning micro-batches and recomputation for its memory budget (train/memory-plan.ts) against
 * PyTorch (the anchor's model, ../shared/anchors/torch/model.py, at the same sizes) on the same data.
 *   npm run bench -- train-memory [--configs base,medium] [--steps 2] [--threads 2] [--memory 4GiB]
 *     [--sides stlm,torch] [--torch-micro 16] [--torch-cap 14GB] [--eval-only] [--json]
 * Each side runs in a process of its own, so each peak RSS (the kernel's maxrss) is that side's alone. For
 * stlm it reports the WebAssembly heap (what the budget bounds: weights, gradients, moments, activations)
 * after every step and after an evaluation pass at the plan's micro-batch, the heap the plan expected, and
 * the process's peak RSS. PyTorch runs under an address-space cap (prlimit --as, default 14 GB) so that a
 * size it cannot fit fails alone instead of pushing a shared machine into swap or the OOM killer;
 * --torch-micro runs it with gradient accumulation too. --eval-only measures a validation pass alone (base,
 * batch 4 × 256, 16 windows) in a fresh process.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { evaluateBpb } from '../src/eval/bpb.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { enableRelaxedSimd } from '../src/kernels/wasm/relaxed-flag.js';
import { PRESETS, parameterShapes } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { accumulateGradients } from '../src/train/accumulate.js';
import { AdamW } from '../src/train/adamw.js';
import { WindowSampler } from '../src/train/data.js';
import { describePlan, formatBytes, parseBytes, planMemory } from '../src/train/memory-plan.js';
import { Rng } from '../src/util/rng.js';
import { PY, arg, ensureTorch } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ANCHOR = join(ROOT, '..', 'shared', 'anchors', 'torch');
const CORPUS = join(ROOT, '..', 'shared', 'fixtures', 'corpora', 'tinyshakespeare', 'input.txt');
const BATCH = 16;

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--child', '--config', '--configs', '--eval-only', '--json', '--memory', '--sides', '--steps', '--threads', '--torch-cap', '--torch-micro'];

const maxRss = () => process.resourceUsage().maxRSS * 1024;

/** One side's run in this (fresh) process: stlm training steps under the plan, then an evaluation pass. */
async function stlmChild(config: string, steps: number, threads: number, budget: number): Promise<Record<string, unknown>> {
  await enableRelaxedSimd();
  const cfg = PRESETS[config], T = cfg.ctx;
  const text = new Uint8Array(readFileSync(CORPUS)), cut = Math.floor(text.length * 0.9);
  const be = await createWasmBackend({ threads });
  const g = new Graph(be);
  const model = new Llama(g, cfg, undefined, 0);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t), { weightDecay: 0.1, clip: 1 });
  const zeros = new Map(parameterShapes(cfg).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]));
  const t0 = performance.now();
  const plan = planMemory({ budget, batch: BATCH, seqLen: T, heldBytes: be.memoryBytes(), build: (dg) => new Llama(dg, cfg, zeros, 0) });
  console.error(`  stlm ${config}: ${describePlan(plan, BATCH, T)} (planned in ${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  zeros.clear();
  model.recompute = plan.recompute;
  const sampler = new WindowSampler(text.subarray(0, cut), BATCH, T, new Rng(0));
  const objective = (ids: Int32Array, targets: Int32Array, w: number) => {
    const loss = model.loss(ids, targets, w);
    return { loss, ce: loss.item() };
  };
  const rows: { step: number; seconds: number; loss: number; heap: number; rss: number }[] = [];
  for (let step = 0; step < steps; step++) {
    sampler.next();
    const s0 = performance.now();
    g.zeroGrad(params);
    const loss = accumulateGradients(g, objective, sampler.ids, sampler.targets, BATCH, plan.microBatch);
    opt.update(6e-4);
    rows.push({ step, seconds: (performance.now() - s0) / 1000, loss, heap: be.memoryBytes(), rss: process.memoryUsage().rss });
    console.error(`  stlm ${config} step ${step}: ${rows.at(-1)!.seconds.toFixed(1)} s, loss ${loss.toFixed(4)}, heap ${formatBytes(be.memoryBytes())}, RSS ${formatBytes(process.memoryUsage().rss)}`);
  }
  const trainHeap = be.memoryBytes();
  const bpb = evaluateBpb(model, text.subarray(cut), { batch: plan.microBatch, seqLen: T, maxWindows: 2 * plan.microBatch + 1 }).bpb;
  const out = {
    side: 'stlm', config, params: params.reduce((s, p) => s + p.size, 0), batch: BATCH, ctx: T, threads, budget_bytes: budget,
    micro_batch: plan.microBatch, recompute: plan.recompute, expected_heap_bytes: plan.expectedBytes,
    heap_after_steps_bytes: trainHeap, heap_after_eval_bytes: be.memoryBytes(), peak_rss_bytes: maxRss(), eval_bpb: bpb, steps: rows,
  };
  be.dispose();
  return out;
}

/** A validation pass alone in a fresh process: base, batch 4 × 256, 16 windows. */
async function evalChild(threads: number): Promise<Record<string, unknown>> {
  await enableRelaxedSimd();
  const text = new Uint8Array(readFileSync(CORPUS)), cut = Math.floor(text.length * 0.9);
  const be = await createWasmBackend({ threads });
  const model = new Llama(new Graph(be), PRESETS.base, undefined, 0);
  const weightsHeap = be.memoryBytes(), rssBefore = maxRss();
  const s0 = performance.now();
  const bpb = evaluateBpb(model, text.subarray(cut), { batch: 4, seqLen: 256, maxWindows: 16 }).bpb;
  const out = { side: 'stlm-eval', config: 'base', batch: 4, ctx: 256, windows: 16, seconds: (performance.now() - s0) / 1000, bpb, heap_weights_bytes: weightsHeap, heap_bytes: be.memoryBytes(), peak_rss_before_bytes: rssBefore, peak_rss_bytes: maxRss() };
  be.dispose();
  return out;
}

/** PyTorch's side in its own process, under an address-space cap; null fields when it failed (with why). */
function torchRun(config: string, steps: number, threads: number, micro: number, cap: number, train: string): Record<string, unknown> {
  const c = PRESETS[config];
  const args = [`--as=${cap}`, PY, join(ROOT, 'bench', 'torch_train_memory.py'), ...[c.dModel, c.nLayers, c.nHeads, c.mlpHidden, c.ctx, BATCH, steps, threads, micro].map(String)];
  const env = { ...process.env, ANCHOR_DIR: ANCHOR, ANCHOR_TRAIN: train, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE' };
  const r = spawnSync('prlimit', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  process.stderr.write(r.stderr.split('\n').filter((l) => l.startsWith('  torch')).map((l) => l + '\n').join(''));
  if (r.status !== 0) {
    const why = r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`;
    console.error(`  torch ${config} (micro-batch ${micro}) failed under the ${formatBytes(cap)} cap: ${why}`);
    return { side: 'torch', config, micro_batch: micro, cap_bytes: cap, failed: why };
  }
  const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  return { side: 'torch', config, micro_batch: micro, cap_bytes: cap, ...j };
}

function child(argv: string[], kind: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('./run.js', import.meta.url)), 'train-memory', ...argv, '--child', kind], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.status !== 0) return { side: kind, failed: `exit ${r.status}` };
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

export async function main(argv: string[]): Promise<void> {
  const steps = Number(arg(argv, '--steps', '2')), threads = Number(arg(argv, '--threads', '2'));
  const budget = parseBytes(arg(argv, '--memory', '4GiB'));
  const kind = arg(argv, '--child', '');
  if (kind === 'stlm') return console.log(JSON.stringify(await stlmChild(arg(argv, '--config', 'base'), steps, threads, budget)));
  if (kind === 'eval') return console.log(JSON.stringify(await evalChild(threads)));
  const sides = arg(argv, '--sides', 'stlm,torch').split(',');
  const configs = arg(argv, '--configs', 'base,medium').split(',');
  const torchMicro = arg(argv, '--torch-micro', String(BATCH)).split(',').map(Number);
  const cap = parseBytes(arg(argv, '--torch-cap', '14GB'), '--torch-cap');
  const results: Record<string, unknown>[] = [];
  if (argv.includes('--eval-only')) results.push(child(['--threads', String(threads)], 'eval'));
  else {
    if (sides.includes('torch')) ensureTorch();
    const text = readFileSync(CORPUS), trainFile = join(tmpdir(), 'stlm-train-memory-train.txt');
    writeFileSync(trainFile, text.subarray(0, Math.floor(text.length * 0.9)));
    for (const config of configs) {
      if (!PRESETS[config]) throw new Error(`unknown config '${config}'`);
      if (sides.includes('stlm')) results.push(child(['--config', config, '--steps', String(steps), '--threads', String(threads), '--memory', String(budget)], 'stlm'));
      if (sides.includes('torch')) for (const micro of torchMicro) results.push(torchRun(config, steps, threads, micro, cap, trainFile));
    }
  }
  const gb = (x: unknown) => (typeof x === 'number' ? (x / 2 ** 30).toFixed(2) : '-');
  console.log('side  | config | micro-batch | recompute | heap GiB (planned) | after eval | peak RSS GiB | s/step');
  for (const r of results) {
    const secs = r.steps ? (r.steps as { seconds: number }[]).map((s) => s.seconds.toFixed(0)).join(', ') : r.step_s ? (r.step_s as number[]).map((s) => s.toFixed(0)).join(', ') : r.seconds !== undefined ? (r.seconds as number).toFixed(1) : '-';
    console.log(`${String(r.side).padEnd(9)} | ${String(r.config ?? '-').padEnd(6)} | ${String(r.micro_batch ?? r.batch ?? '-').padStart(11)} | ${String(r.recompute ?? '-').padStart(9)} | ${gb(r.heap_after_steps_bytes ?? r.heap_bytes)} (${gb(r.expected_heap_bytes)}) | ${gb(r.heap_after_eval_bytes)} | ${r.failed ? `failed: ${r.failed}` : gb(r.peak_rss_bytes)} | ${secs}`);
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ results }));
}
