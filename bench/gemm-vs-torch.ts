/**
 * fp32 GEMM of the native kernels (native/stlm_native.c, AVX2 + FMA) against OpenBLAS through PyTorch's
 * torch.mm (Debian's python3-torch at /usr/bin/python3, the anchor) and against stlm's pure WebAssembly
 * GEMM (what browsers get), measured the same way in the same run:
 *   nn, nt, tn 512×768×768 (the headline), and the shapes a training step of the small config runs
 *   (forward x·Wᵀ: nt 4096×256×768 and 4096×768×256; weight gradient dYᵀ·X: tn 768×4096×256).
 * Each figure is the median GFLOP/s of several samples of ≥ 0.2 s after a ≥ 0.3 s warm-up (bench/gemm.ts's
 * timeCalls; the Python side does the same with time.perf_counter). Rounds interleave the three sides
 * (ours, torch, WebAssembly; a fresh python3 per round and thread count, torch.set_num_threads(t)), and
 * the best round's median of each side is kept, since on a shared machine noise only slows things down.
 * The load average (uptime) is printed before and after. On a busy host wall-clock figures measure the
 * share of a core each side got; so each side's GFLOP per second of its own CPU time over all its calls
 * (Node's process.cpuUsage, Python's time.process_time) is printed too: for 1 thread, the kernel's speed
 * on a core while it holds one (cache contention from other processes still counts). With 2 threads the
 * CPU time includes the pools' spinning, so only wall-clock figures are shown.
 *
 *   npm run bench -- gemm-vs-torch [--threads 1,2] [--rounds 3] [--quick] [--json]
 * With --json the last stdout line is {"load":[before, after], "results":[{"m","k","n","op","threads",
 * "native","torch","wasm","ratio","native_cpu","torch_cpu","wasm_cpu","cpu_ratio"}…]} (GFLOP/s; ratio = native / torch;
 * *_cpu: per CPU-second).
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { Rng } from '../src/util/rng.js';
import { randomBuf, timeCalls } from './gemm.js';
import { arg, ensureTorch, PY } from './lib/torch.js';

type Op = 'nn' | 'nt' | 'tn';
const SHAPES: [number, number, number, Op][] = [
  [512, 768, 768, 'nn'],
  [512, 768, 768, 'nt'],
  [512, 768, 768, 'tn'],
  [4096, 256, 768, 'nt'],
  [4096, 768, 256, 'nt'],
  [768, 4096, 256, 'tn'],
];

/** torch.mm on the same shapes; transposed operands are stored transposed and passed as .t() views (BLAS's trans flags). */
const TORCH_SCRIPT = `
import json, sys, time, statistics, torch
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg['threads'])
torch.manual_seed(0)
out = []
for m, k, n, op in cfg['shapes']:
    a = torch.randn(k, m).t() if op[0] == 't' else torch.randn(m, k)
    b = torch.randn(n, k).t() if op[1] == 't' else torch.randn(k, n)
    c = torch.empty(m, n)
    f = lambda: torch.mm(a, b, out=c)
    c0 = time.process_time(); cnt = [0]
    g = f
    def f():
        cnt[0] += 1
        g()
    t0 = time.perf_counter(); calls = 0
    while time.perf_counter() - t0 < max(0.3, cfg['sample_s']) or calls < 3:
        f(); calls += 1
    per = (time.perf_counter() - t0) / calls
    inner = max(1, int(cfg['sample_s'] / per + 0.999))
    times = []
    for s in range(cfg['samples']):
        t = time.perf_counter()
        for i in range(inner): f()
        times.append((time.perf_counter() - t) / inner)
    times.sort()
    cpu = time.process_time() - c0
    out.append([2 * m * k * n / times[len(times) // 2] / 1e9, 2 * m * k * n * cnt[0] / cpu / 1e9])
print(json.dumps(out))
`;

/** Per shape: [median GFLOP/s (wall), GFLOP per second of the process's CPU time over all its calls]. */
function torchGflops(threads: number, samples: number, sampleMs: number): [number, number][] {
  const cfg = JSON.stringify({ threads, shapes: SHAPES, samples, sample_s: sampleMs / 1000 });
  const r = spawnSync(PY, ['-c', TORCH_SCRIPT, cfg], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) } });
  if (r.status !== 0) throw new Error(`gemm-vs-torch: python3 failed: ${(r.stderr ?? '').trim().split('\n').pop()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as [number, number][];
}

async function stlmGflops(threads: number, native: boolean, samples: number, sampleMs: number): Promise<[number, number][]> {
  const be = await createWasmBackend({ threads, native });
  if (native && !be.native) throw new Error('gemm-vs-torch: the native kernels are not built here (npm run build on x86-64 with AVX2 and a C compiler)');
  const rng = new Rng(7);
  const out: [number, number][] = [];
  try {
    for (const [m, k, n, op] of SHAPES) {
      const a = randomBuf(be, rng, m * k), b = randomBuf(be, rng, k * n), c = be.alloc(m * n);
      const args = { m, k, n, transA: op[0] === 't', transB: op[1] === 't' };
      let calls = 0;
      const u0 = process.cpuUsage();
      const t = timeCalls(() => {
        be.matmul(a, b, c, args);
        calls++;
      }, samples, sampleMs);
      const u = process.cpuUsage(u0);
      for (const x of [a, b, c]) be.free(x);
      out.push([(2 * m * k * n) / t.median / 1e6, (2 * m * k * n * calls) / (u.user + u.system) / 1e3]);
    }
  } finally {
    be.dispose();
  }
  return out;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--threads', '--rounds', '--quick', '--json'];

export async function main(argv: string[]): Promise<void> {
  const threadList = arg(argv, '--threads', '1,2').split(',').map(Number);
  const rounds = Number(arg(argv, '--rounds', '3'));
  const quick = argv.includes('--quick');
  const samples = quick ? 3 : 5, sampleMs = quick ? 100 : 200;
  if (!threadList.every((t) => Number.isInteger(t) && t >= 1) || !(Number.isInteger(rounds) && rounds >= 1)) throw new Error('gemm-vs-torch: --threads takes positive integers (1,2), --rounds a positive integer');
  ensureTorch();
  const load0 = loadavg()[0];
  console.log(`GEMM: native (AVX2+FMA) vs torch.mm (OpenBLAS) vs WebAssembly SIMD; load average ${load0.toFixed(2)}; ${rounds} interleaved rounds`);
  type Sides = { native: number; torch: number; wasm: number; native_cpu: number; torch_cpu: number; wasm_cpu: number };
  const best = new Map<string, Sides>();
  for (let r = 1; r <= rounds; r++) {
    for (const t of threadList) {
      const nat = await stlmGflops(t, true, samples, sampleMs);
      const tor = torchGflops(t, samples, sampleMs);
      const was = await stlmGflops(t, false, samples, sampleMs);
      SHAPES.forEach(([m, k, n, op], i) => {
        const key = `${op} ${m}x${k}x${n} ${t}`;
        const b = best.get(key) ?? { native: 0, torch: 0, wasm: 0, native_cpu: 0, torch_cpu: 0, wasm_cpu: 0 };
        best.set(key, {
          native: Math.max(b.native, nat[i][0]), torch: Math.max(b.torch, tor[i][0]), wasm: Math.max(b.wasm, was[i][0]),
          native_cpu: Math.max(b.native_cpu, nat[i][1]), torch_cpu: Math.max(b.torch_cpu, tor[i][1]), wasm_cpu: Math.max(b.wasm_cpu, was[i][1]),
        });
        const f = (x: [number, number]) => `${x[0].toFixed(1).padStart(6)} (cpu ${x[1].toFixed(1).padStart(5)})`;
        console.log(`  round ${r}  ${key.padEnd(22)} thr  native ${f(nat[i])}  torch ${f(tor[i])}  wasm ${f(was[i])} GFLOP/s`);
      });
    }
  }
  const load1 = loadavg()[0];
  console.log(`\nbest round per side, median GFLOP/s (load average ${load0.toFixed(2)} before, ${load1.toFixed(2)} after):`);
  console.log(`${'shape (M,K,N)'.padEnd(20)}${'threads'.padStart(8)}${'native'.padStart(9)}${'torch'.padStart(9)}${'wasm'.padStart(9)}${'native/torch'.padStart(14)}${'  per CPU-second: native, torch, ratio'}`);
  const results = [];
  for (const t of threadList) {
    for (const [m, k, n, op] of SHAPES) {
      const b = best.get(`${op} ${m}x${k}x${n} ${t}`)!;
      const ratio = b.native / b.torch, cpuRatio = b.native_cpu / b.torch_cpu;
      const r2 = (x: number) => +x.toFixed(2);
      results.push({ m, k, n, op, threads: t, native: r2(b.native), torch: r2(b.torch), wasm: r2(b.wasm), ratio: +ratio.toFixed(3),
        native_cpu: r2(b.native_cpu), torch_cpu: r2(b.torch_cpu), wasm_cpu: r2(b.wasm_cpu), cpu_ratio: +cpuRatio.toFixed(3) });
      console.log(`${`${op} ${m}x${k}x${n}`.padEnd(20)}${String(t).padStart(8)}${b.native.toFixed(1).padStart(9)}${b.torch.toFixed(1).padStart(9)}${b.wasm.toFixed(1).padStart(9)}${`${ratio.toFixed(2)}x`.padStart(14)}` +
        (t === 1 ? `  ${b.native_cpu.toFixed(1)}, ${b.torch_cpu.toFixed(1)}, ${cpuRatio.toFixed(2)}x` : ''));
    }
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ load: [+load0.toFixed(2), +load1.toFixed(2)], results }));
}
