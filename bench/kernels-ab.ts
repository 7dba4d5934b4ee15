/**
 * Before/after of the WebAssembly decode products: this build's kernels against another build's (a second
 * checkout, e.g. `git worktree add ../base <commit> && (cd ../base && npm ci)`), in one process, calls
 * interleaved round by round, so a busy shared host slows both sides alike (two separate bench runs on
 * this host differ by 10–40% from contention alone). Prints per shape the median ms of each side, the
 * speed-up (base ms / ours ms) and the largest |difference| of the outputs (0 when a change keeps the
 * arithmetic).
 *
 *   npm run bench -- kernels-ab --base <checkout> [--types f32,q8_0,q4_0] [--threads 1] [--in-cache] [--rounds 15]
 *     [--shapes 1x768x768,128x768x768] [--strategy int8|f32|auto] [--json]
 *
 * Shapes (m×n×k, default): the 113M model's 1x768x768, 1x3072x768, 1x768x3072 and 1x4096x4096,
 * 1x11008x4096. f32 uses matmul (x · Wᵀ), the quantized types matmulQuant with --strategy (default int8;
 * auto with m > 16 times the packed prefill path). By
 * default each call takes the next of enough copies of W (≥ 64 MB) that W comes from memory, as in a
 * model's decode; --in-cache uses one copy. Both backends run with native: false (WebAssembly only).
 * Quantized W is uploaded as a model uploads it (uploadQuant, where this build repacks Q4_0; a base
 * build from before uploadQuant gets the raw bytes).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Backend, QuantStrategy } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { quantizeQ4_0, quantizeQ8_0 } from '../src/formats/gguf.js';
import { Rng } from '../src/util/rng.js';
import { arg } from './lib/torch.js';
import { upload, uploadCopies } from './lib/weights.js';

type WeightType = 'f32' | 'q8_0' | 'q4_0';
const SHAPES: [number, number, number][] = [[1, 768, 768], [1, 3072, 768], [1, 768, 3072], [1, 4096, 4096], [1, 11008, 4096]];

interface Side {
  run(): void;
  read(): Float32Array;
}

/** Uploads x and the copies of W to `be`; run() multiplies by the next copy. */
function setup(be: Backend, type: WeightType, m: number, n: number, k: number, x: Float32Array, w: Float32Array | Uint8Array, copies: number | 'from-memory', strategy: QuantStrategy): Side {
  const xb = upload(be, x);
  const ws = uploadCopies(be, w, copies, type === 'f32' ? undefined : { type, rows: n, k });
  const out = be.alloc(m * n);
  let next = 0;
  return {
    run: type === 'f32'
      ? () => be.matmul(xb, ws[next++ % ws.length], out, { m, n, k, transB: true })
      : () => be.matmulQuant(xb, ws[next++ % ws.length], out, { m, n, k, type, strategy }),
    read: () => be.read(out),
  };
}

/** 'MxNxK' with positive integers, K a multiple of 32 (a whole number of quantized blocks). */
function parseShape(s: string): [number, number, number] {
  const dims = s.split('x').map(Number);
  if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d > 0) || dims[2] % 32 !== 0) {
    throw new Error(`kernels-ab: a --shapes entry is MxNxK with positive integers and K a multiple of 32, not '${s}'`);
  }
  return dims as [number, number, number];
}

const median = (t: number[]): number => [...t].sort((a, b) => a - b)[t.length >> 1];

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--base', '--in-cache', '--json', '--rounds', '--shapes', '--strategy', '--threads', '--types'];

export async function main(argv: string[]): Promise<void> {
  const baseArg = arg(argv, '--base', '');
  if (!baseArg) throw new Error('kernels-ab: --base <checkout> is required (a second checkout of stlm, built)');
  const baseModule = resolve(baseArg, 'dist', 'src', 'kernels', 'wasm', 'backend.js');
  if (!existsSync(baseModule)) throw new Error(`kernels-ab: ${baseModule} does not exist (run npm ci or npm run build in ${baseArg})`);
  const types = arg(argv, '--types', 'f32,q8_0,q4_0').split(',') as WeightType[];
  for (const t of types) if (!['f32', 'q8_0', 'q4_0'].includes(t)) throw new Error(`kernels-ab: --types entries are f32, q8_0 or q4_0, not '${t}'`);
  const threads = Number(arg(argv, '--threads', '1'));
  const rounds = Number(arg(argv, '--rounds', '15'));
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`kernels-ab: --threads must be a positive integer, not '${arg(argv, '--threads', '')}'`);
  if (!Number.isInteger(rounds) || rounds < 3) throw new Error(`kernels-ab: --rounds must be an integer ≥ 3, not '${arg(argv, '--rounds', '')}'`);
  const inCache = argv.includes('--in-cache');
  const strategy = arg(argv, '--strategy', 'int8') as QuantStrategy;
  if (!['int8', 'f32', 'auto'].includes(strategy)) throw new Error(`kernels-ab: --strategy is int8, f32 or auto, not '${strategy}'`);
  const shapesArg = arg(argv, '--shapes', '');
  const shapes = shapesArg ? shapesArg.split(',').map(parseShape) : SHAPES;

  const baseCreate = (await import(pathToFileURL(baseModule).href)).createWasmBackend as typeof createWasmBackend;
  const base = await baseCreate({ threads, native: false });
  const ours = await createWasmBackend({ threads, native: false });
  console.log(`kernels-ab: base ${baseArg} (${base.name}) against this build (${ours.name}), ${threads} thread(s), W ${inCache ? 'in cache' : 'from memory'}, median of ${rounds} interleaved rounds`);
  const rng = new Rng(11);
  const rows: { type: WeightType; m: number; n: number; k: number; base_ms: number; ours_ms: number; speedup: number; max_diff: number }[] = [];
  try {
    for (const type of types) {
      for (const [m, n, k] of shapes) {
        const x = new Float32Array(m * k).map(() => rng.normal());
        const wf = new Float32Array(n * k).map(() => rng.normal() * 0.02);
        const w = type === 'f32' ? wf : type === 'q8_0' ? quantizeQ8_0(wf) : quantizeQ4_0(wf);
        const copies = inCache ? 1 : 'from-memory';
        const sides = [setup(base, type, m, n, k, x, w, copies, strategy), setup(ours, type, m, n, k, x, w, copies, strategy)];
        sides.forEach((s) => s.run());
        const [a, b] = sides.map((s) => s.read());
        let maxDiff = 0;
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
        const reps = Math.max(3, Math.round(1e8 / (m * n * k)));
        const times: number[][] = [[], []];
        for (let r = 0; r < rounds; r++) {
          sides.forEach((s, i) => {
            const t0 = performance.now();
            for (let c = 0; c < reps; c++) s.run();
            times[i].push((performance.now() - t0) / reps);
          });
        }
        const [bm, om] = times.map(median);
        rows.push({ type, m, n, k, base_ms: +bm.toFixed(4), ours_ms: +om.toFixed(4), speedup: +(bm / om).toFixed(3), max_diff: maxDiff });
        console.log(`  ${type.padEnd(5)} ${`${m}x${n}x${k}`.padEnd(13)} base ${bm.toFixed(4).padStart(8)} ms  ours ${om.toFixed(4).padStart(8)} ms  speed-up ${(bm / om).toFixed(2)}x  max|diff| ${maxDiff.toExponential(2)}`);
      }
    }
  } finally {
    base.dispose();
    ours.dispose();
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ base: baseArg, threads, in_cache: inCache, rounds, strategy, rows }));
}
