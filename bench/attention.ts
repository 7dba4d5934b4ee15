/**
 * Attention kernel benchmark on the WebAssembly backend, 1 and 2 threads:
 *   train  batch 16, T 256, headDim 32, heads 4 and 8: forward, backward, forward+backward
 *   decode tq 1 after tk-1 cached tokens (tk 256 and 2048), heads 8, headDim 32: time per token
 * FLOPs: causal forward 4·B·H·T²·D/2, backward 2.5× that; decode 4·H·tk·D per token.
 * Times are the best of several repetitions (the machine is shared, the minimum is the stable statistic).
 *
 *   npm run bench -- attention [--json] [--threads 1,2] [--quick]
 * With --json the last stdout line is {"results":[{"case":…,"threads":…,"ms":…,"gflops":…}]}.
 */
import type { AttentionArgs, Buf } from '../src/kernels/backend.js';
import { createWasmBackend, type WasmBackend } from '../src/kernels/wasm/backend.js';
import { Rng } from '../src/util/rng.js';

interface Result {
  case: string;
  threads: number;
  ms: number;
  gflops: number;
}

function randomBuf(be: WasmBackend, rng: Rng, n: number): Buf {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal();
  const b = be.alloc(n);
  be.write(b, x);
  return b;
}

/** Best time in ms of `fn` over repetitions lasting about `budgetMs` (at least 3, after one warm-up). */
function timeBest(fn: () => void, budgetMs: number): number {
  fn();
  let best = Infinity, total = 0, reps = 0;
  while (reps < 3 || (total < budgetMs && reps < 10_000)) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    best = Math.min(best, dt);
    total += dt;
    reps++;
  }
  return best;
}

/** Decode steps are tens of µs: time batches of calls so timer resolution does not matter. */
function timePerCall(fn: () => void, budgetMs: number, inner: number): number {
  return timeBest(() => {
    for (let i = 0; i < inner; i++) fn();
  }, budgetMs) / inner;
}

async function benchThreads(threads: number, budgetMs: number, log: (s: string) => void): Promise<Result[]> {
  const be = await createWasmBackend({ threads });
  const rng = new Rng(1);
  const out: Result[] = [];
  const push = (name: string, ms: number, flops: number): void => {
    const r = { case: name, threads, ms: +ms.toFixed(4), gflops: +(flops / ms / 1e6).toFixed(3) };
    out.push(r);
    log(`${name.padEnd(44)} threads ${threads}  ${ms.toFixed(3).padStart(10)} ms  ${r.gflops.toFixed(2).padStart(7)} GFLOP/s`);
  };
  try {
    for (const heads of [4, 8]) {
      const B = 16, T = 256, D = 32;
      const a: AttentionArgs = { batch: B, tq: T, tk: T, heads, kvHeads: heads, headDim: D, qPos0: 0, scale: 1 / Math.sqrt(D) };
      const n = B * T * heads * D;
      const q = randomBuf(be, rng, n), k = randomBuf(be, rng, n), v = randomBuf(be, rng, n), dout = randomBuf(be, rng, n);
      const o = be.alloc(n), lse = be.alloc(B * T * heads), dq = be.alloc(n), dk = be.alloc(n), dv = be.alloc(n);
      const fwdFlops = (4 * B * heads * T * T * D) / 2;
      const name = `train B${B} T${T} H${heads} D${D}`;
      const fwd = timeBest(() => be.attention(q, k, v, o, lse, a), budgetMs);
      be.attention(q, k, v, o, lse, a);
      const bwd = timeBest(() => be.attentionBackward(q, k, v, o, lse, dout, dq, dk, dv, a), budgetMs);
      const both = timeBest(() => {
        be.attention(q, k, v, o, lse, a);
        be.attentionBackward(q, k, v, o, lse, dout, dq, dk, dv, a);
      }, budgetMs);
      push(`${name} fwd`, fwd, fwdFlops);
      push(`${name} bwd`, bwd, 2.5 * fwdFlops);
      push(`${name} fwd+bwd`, both, 3.5 * fwdFlops);
      for (const b of [q, k, v, dout, o, lse, dq, dk, dv]) be.free(b);
    }
    for (const tk of [256, 2048]) {
      const heads = 8, D = 32;
      const a: AttentionArgs = { batch: 1, tq: 1, tk, heads, kvHeads: heads, headDim: D, qPos0: tk - 1, scale: 1 / Math.sqrt(D) };
      const q = randomBuf(be, rng, heads * D), k = randomBuf(be, rng, tk * heads * D), v = randomBuf(be, rng, tk * heads * D);
      const o = be.alloc(heads * D), lse = be.alloc(heads);
      const ms = timePerCall(() => be.attention(q, k, v, o, lse, a), budgetMs, 50);
      push(`decode tk${tk} H${heads} D${D} (per token)`, ms, 4 * heads * tk * D);
      for (const b of [q, k, v, o, lse]) be.free(b);
    }
  } finally {
    be.dispose();
  }
  return out;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--quick', '--threads'];

export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const quick = argv.includes('--quick');
  const ti = argv.indexOf('--threads');
  const threadList = ti >= 0 ? argv[ti + 1].split(',').map(Number) : [1, 2];
  const log = (s: string): void => console.log(s);
  const results: Result[] = [];
  for (const t of threadList) results.push(...(await benchThreads(t, quick ? 200 : 1000, log)));
  if (json) console.log(JSON.stringify({ results }));
}
