/**
 * Before/after of the whole model: this build's Llama and byte-pooled model against another build's
 * (a second checkout, e.g. `git worktree add ../base <commit> && (cd ../base && npm ci)`), in one
 * process, with rounds interleaved (A B, B A, …) so a busy shared host slows both sides alike. Both sides
 * build the same model from the same config and seed on their own backend (same threads, native kernels
 * as configured), then per round time:
 *   - prefill: one forward of a 256-token prompt into an empty KV cache;
 *   - decode: 64 single-token steps after a 32-token prompt;
 *   - decode ×8: 32 batched steps of 8 sequences (pushBatch: a server's step at 8 clients);
 *   - train: one training step's forward and backward (loss on batch × seq windows, then release);
 *   - pooled decode / pooled train: the same for the byte-pooled model (bytes, chunk by chunk).
 * Prints medians, the speed-up (base time / ours) and the largest |difference| of the outputs (logits
 * and loss); 0 means this build computes bit for bit what the base computed.
 *
 *   npm run bench -- model-ab --base <checkout> [--config small] [--threads 1] [--rounds 9] [--batch 4] [--seq 128] [--json]
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--base', '--batch', '--config', '--json', '--rounds', '--seq', '--threads'];

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

interface Build {
  name: string;
  backend: Any;
  Graph: Any;
  Llama: Any;
  BytePooled: Any;
  PooledStream: Any;
  cache(g: Any, config: Any, capacity: number): Any;
  resolveConfig(spec: string): Any;
  resolvePooledConfig(spec: string, chunk?: string): Any;
}

async function loadBuild(root: string, name: string, threads: number): Promise<Build> {
  const mod = async (p: string) => import(pathToFileURL(resolve(root, 'dist', 'src', p)).href);
  const [wasm, tensor, llama, pooled, config] = await Promise.all([mod('kernels/wasm/backend.js'), mod('tensor/tensor.js'), mod('models/llama.js'), mod('models/byte-pooled.js'), mod('models/config.js')]);
  return {
    name,
    backend: await wasm.createWasmBackend({ threads }),
    Graph: tensor.Graph,
    Llama: llama.Llama,
    BytePooled: pooled.BytePooled,
    PooledStream: pooled.PooledStream,
    // Before the nn/ layer a cache was `new KvCache(graph, config, capacity)`; after, `kvCacheFor(...)`.
    cache: llama.kvCacheFor ?? ((g: Any, c: Any, n: number) => new llama.KvCache(g, c, n)),
    resolveConfig: config.resolveConfig,
    resolvePooledConfig: pooled.resolvePooledConfig,
  };
}

interface Task {
  name: string;
  /** Runs once; returns the output to compare between builds. */
  run(): Float32Array;
  /** Units per run (tokens or bytes), for the rate. */
  units: number;
}

function tasks(b: Build, configName: string, batch: number, seq: number): Task[] {
  const config = { ...b.resolveConfig(configName), dropout: 0 };
  const g = new b.Graph(b.backend);
  const model = new b.Llama(g, config, undefined, 7);
  const V = config.vocabSize;
  const ids = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => (i * 131 + seed * 17) % Math.min(V, 256));
  const prompt256 = ids(Math.min(256, config.ctx), 1), prompt32 = ids(32, 2);
  const trainIds = ids(batch * seq, 3), trainTargets = ids(batch * seq, 4);
  const pooledConfig = { ...b.resolvePooledConfig(configName, 'space:8'), dropout: 0 };
  const pg = new b.Graph(b.backend);
  const pooled = new b.BytePooled(pg, pooledConfig, undefined, 7);
  const text = Int32Array.from(new TextEncoder().encode('First Citizen:\nBefore we proceed any further, hear me speak. '.repeat(40)).subarray(0, batch * seq + batch));
  const windows = (arr: Int32Array, off: number) => Int32Array.from({ length: batch * seq }, (_, i) => arr[Math.floor(i / seq) * (seq + 1) + (i % seq) + off]);
  const trainStep = (graph: Any, m: Any, x: Int32Array, y: Int32Array): Float32Array => {
    const loss = m.loss(x, y, batch);
    graph.backward(loss);
    const out = loss.toArray();
    graph.release();
    graph.zeroGrad([...m.params.values()]);
    return out;
  };
  return [
    {
      name: 'prefill', units: prompt256.length,
      run: () => {
        const cache = b.cache(g, config, prompt256.length);
        const out = model.forward(prompt256, cache).toArray();
        g.release();
        cache.dispose();
        return out;
      },
    },
    {
      name: 'decode', units: 64,
      run: () => {
        const cache = b.cache(g, config, 32 + 64);
        let logits = model.forward(prompt32, cache).toArray();
        g.release();
        for (let i = 0; i < 64; i++) {
          logits = model.forward(Int32Array.of(i % V), cache).toArray();
          g.release();
        }
        cache.dispose();
        return logits;
      },
    },
    {
      // A batched decode step of 8 sequences (stlm serve at 8 clients), 32 steps after 32-token prompts.
      name: 'decode ×8', units: 8 * 32,
      run: () => {
        const sessions = Array.from({ length: 8 }, () => model.session(32 + 32));
        sessions.forEach((s: Any, i: number) => s.reset(ids(32, 5 + i)));
        let rows: Float32Array[] = [];
        for (let i = 0; i < 32; i++) rows = model.pushBatch(sessions, Int32Array.from(sessions, (_: Any, r: number) => (i * 7 + r) % V));
        for (const s of sessions) s.dispose();
        return Float32Array.from(rows.flatMap((r) => [...r]));
      },
    },
    { name: 'train', units: batch * seq, run: () => trainStep(g, model, trainIds, trainTargets) },
    {
      name: 'pooled decode', units: 128,
      run: () => {
        const s = new b.PooledStream(pooled);
        let logits = s.reset(Array.from(text.subarray(0, 32)));
        for (let i = 0; i < 128; i++) logits = s.push(text[32 + i]);
        s.dispose();
        return logits;
      },
    },
    { name: 'pooled train', units: batch * seq, run: () => trainStep(pg, pooled, windows(text, 0), windows(text, 1)) },
  ];
}

const median = (t: number[]): number => [...t].sort((a, b) => a - b)[t.length >> 1];

export async function main(argv: string[]): Promise<void> {
  const baseArg = arg(argv, '--base', '');
  if (!baseArg) throw new Error('model-ab: --base <checkout> is required (a second checkout of stlm, built)');
  if (!existsSync(resolve(baseArg, 'dist', 'src', 'models', 'llama.js'))) throw new Error(`model-ab: ${baseArg} has no build (run npm ci in it)`);
  const threads = Number(arg(argv, '--threads', '1')), rounds = Number(arg(argv, '--rounds', '9'));
  const batch = Number(arg(argv, '--batch', '4')), seq = Number(arg(argv, '--seq', '128'));
  const configName = arg(argv, '--config', 'small');
  for (const [k, v, min] of [['--threads', threads, 1], ['--rounds', rounds, 3], ['--batch', batch, 1], ['--seq', seq, 8]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`model-ab: ${k} must be an integer ≥ ${min}`);
  }
  const builds = [await loadBuild(baseArg, 'base', threads), await loadBuild(fileURLToPath(new URL('../..', import.meta.url)), 'ours', threads)];
  console.log(`model-ab: base ${baseArg} against this build, '${configName}' config, ${threads} thread(s), batch ${batch} × ${seq}, median of ${rounds} interleaved rounds`);
  const sides = builds.map((b) => tasks(b, configName, batch, seq));
  const rows: { task: string; base_ms: number; ours_ms: number; speedup: number; ours_units_per_s: number; max_diff: number }[] = [];
  try {
    for (let t = 0; t < sides[0].length; t++) {
      const outs = sides.map((s) => s[t].run()); // warm-up, and the outputs to compare
      let maxDiff = 0;
      for (let i = 0; i < outs[0].length; i++) maxDiff = Math.max(maxDiff, Math.abs(outs[0][i] - outs[1][i]));
      if (outs[0].length !== outs[1].length) maxDiff = Infinity;
      const times: number[][] = [[], []];
      for (let r = 0; r < rounds; r++) {
        // A B, then B A: neither side always runs right after the other's garbage or cache state.
        for (const i of r % 2 ? [1, 0] : [0, 1]) {
          const t0 = performance.now();
          sides[i][t].run();
          times[i].push(performance.now() - t0);
        }
      }
      const [bm, om] = times.map(median);
      const row = { task: sides[0][t].name, base_ms: +bm.toFixed(2), ours_ms: +om.toFixed(2), speedup: +(bm / om).toFixed(3), ours_units_per_s: Math.round(sides[0][t].units / (om / 1000)), max_diff: maxDiff };
      rows.push(row);
      console.log(`  ${row.task.padEnd(14)} base ${bm.toFixed(2).padStart(9)} ms  ours ${om.toFixed(2).padStart(9)} ms  speed-up ${(bm / om).toFixed(3)}x  (${row.ours_units_per_s} units/s)  max|diff| ${maxDiff.toExponential(2)}`);
    }
  } finally {
    for (const b of builds) b.backend.dispose();
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ base: baseArg, config: configName, threads, batch, seq, rounds, rows }));
}
