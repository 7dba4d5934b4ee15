/**
 * Quantized matrix products on the WebAssembly backend: out[m,n] = x[m,k] · Wᵀ with W [n,k] stored as
 * f32 (the existing matmul, transB: the 'nt' form), Q8_0 or Q4_0 (matmulQuant), each quantized type
 * with both strategies ('int8': x quantized to int8 per block, integer dot products; 'f32': W
 * dequantized on the fly), and 'auto' (what the backend picks), on 1 and 2 threads:
 *   decode  (m,n,k) = (1,4096,4096), (1,768,768), (1,11008,4096), and a 113M model's (1,3072,768), (1,768,3072)
 *   prefill (m,n,k) = (512,768,768)
 * Reported: GFLOP/s (2·m·n·k per call) and the effective GB/s of weight bytes read (n·k·bytes per
 * weight: 4, 34/32, 18/32). Per shape and thread count all variants are sampled in interleaved rounds
 * (each ≥ 60 ms per round, after a 150 ms warm-up each); the median and the best round are shown: the
 * machine may be shared, and noise only ever slows things down.
 *
 *   npm run bench -- qmatmul [--json] [--threads 1,2] [--kernels wasm,native] [--quick] [--from-memory] [--batched-decode]
 * --from-memory: each call takes the next of enough copies of W (≥ 64 MB of each format) that W comes
 * from DRAM, as in a model's decode, instead of the cache that one small W stays in.
 * --kernels: 'wasm' is the backend with native: false, 'native' the backend as it runs by default (the
 * native kernels take the int8 products and small-m f32 products where they are built; elsewhere the
 * two are the same). With both, the last columns are the speed ratio native/wasm.
 * With --json the last stdout line is
 *   {"backend":"wasm-simd / wasm-simd + native avx512vnni","results":[{"m":…,"n":…,"k":…,"type":"q4_0","strategy":"int8","threads":1,"kernels":"native",
 *    "ms":…,"best_ms":…,"gflops":…,"gbps":…,"best_gflops":…}, …]}
 * ('auto' rows show what matmulQuant picks by default: in WebAssembly int8 for m ≤ 16 (Q8_0) / m ≤ 8
 * (Q4_0), else f32; with the native kernels int8 at every m.)
 */
import { QUANT_BLOCKS } from '../src/dtypes/blocks.js';
import type { Backend, Buf, QuantType } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { quantizeQ4_0, quantizeQ8_0 } from '../src/formats/gguf.js';
import { Rng } from '../src/util/rng.js';
import { upload, uploadCopies } from './lib/weights.js';

type Format = 'f32' | Exclude<QuantType, 'q4_k'>;
type Strategy = 'matmul' | 'int8' | 'f32' | 'auto';

interface Result {
  m: number;
  n: number;
  k: number;
  type: Format;
  strategy: Strategy;
  threads: number;
  /** 'native': the backend as it runs by default (native kernels where built); 'wasm': native: false. */
  kernels: 'wasm' | 'native';
  ms: number;
  best_ms: number;
  gflops: number;
  gbps: number;
  best_gflops: number;
}

const SHAPES: [number, number, number, string][] = [
  [1, 4096, 4096, 'decode'],
  [1, 768, 768, 'decode'],
  [1, 11008, 4096, 'decode'],
  [1, 3072, 768, 'decode'],
  [1, 768, 3072, 'decode'],
  [512, 768, 768, 'prefill'],
];

/**
 * --batched-decode: brown-13m's products (d 384, SwiGLU 1152) in a batched decode step of 1, 2, 8 and 32
 * sequences (the rows `stlm serve` multiplies per step at that many clients).
 */
const BATCHED_SHAPES: [number, number, number, string][] = [1, 2, 8, 32].flatMap((m) => [
  [m, 1152, 384, `batch ${m}`], [m, 384, 1152, `batch ${m}`], [m, 384, 384, `batch ${m}`],
] as [number, number, number, string][]);

const VARIANTS: [Format, Strategy][] = [
  ['f32', 'matmul'],
  ['q8_0', 'int8'],
  ['q8_0', 'f32'],
  ['q8_0', 'auto'],
  ['q4_0', 'int8'],
  ['q4_0', 'f32'],
  ['q4_0', 'auto'],
];

const BYTES_PER_WEIGHT: Record<Format, number> = { f32: 4, q8_0: QUANT_BLOCKS.q8_0.bytes / QUANT_BLOCKS.q8_0.values, q4_0: QUANT_BLOCKS.q4_0.bytes / QUANT_BLOCKS.q4_0.values };

/**
 * Median and best ms per call of each of `fns`, sampled in interleaved rounds (every function once per
 * round, ≥ sampleMs each) after a warm-up of each: on a shared machine, a burst of contention then hits
 * all variants alike instead of whichever happened to be running.
 */
function timeInterleaved(fns: (() => void)[], rounds: number, sampleMs: number): { median: number; best: number }[] {
  const perCall = fns.map((fn) => {
    let calls = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 150 || calls < 3) {
      fn();
      calls++;
    }
    return (performance.now() - t0) / calls;
  });
  const inner = perCall.map((ms) => Math.max(1, Math.ceil(sampleMs / ms)));
  const times: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    fns.forEach((fn, i) => {
      const t = performance.now();
      for (let c = 0; c < inner[i]; c++) fn();
      times[i].push((performance.now() - t) / inner[i]);
    });
  }
  return times.map((ts) => {
    ts.sort((a, b) => a - b);
    return { median: ts[ts.length >> 1], best: ts[0] };
  });
}

function random(rng: Rng, n: number, scale: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * scale;
  return x;
}

/** The weights of one shape in every format, made once and uploaded to each backend. */
interface ShapeData {
  x: Float32Array;
  w: Record<Format, Float32Array | Uint8Array>;
}

async function benchThreads(threads: number, kernels: 'wasm' | 'native', data: ShapeData[], rounds: number, sampleMs: number, fromMemory: boolean, log: (s: string) => void): Promise<{ name: string; results: Result[] }> {
  const be = await createWasmBackend({ threads, native: kernels === 'native' });
  if (be.threads !== threads) throw new Error(`qmatmul bench: asked for ${threads} threads, backend has ${be.threads}`);
  const results: Result[] = [];
  try {
    SHAPES.forEach(([m, n, k], s) => {
      const x = upload(be, data[s].x), out = be.alloc(m * n);
      const copies = (f: Format): Buf[] => uploadCopies(be, data[s].w[f], fromMemory ? 'from-memory' : 1, f === 'f32' ? undefined : { type: f, rows: n, k });
      const w = { f32: copies('f32'), q8_0: copies('q8_0'), q4_0: copies('q4_0') };
      let next = 0;
      const pick = (ws: Buf[]): Buf => ws[next++ % ws.length];
      const fns = VARIANTS.map(([type, strategy]) => type === 'f32'
        ? () => be.matmul(x, pick(w.f32), out, { m, n, k, transB: true })
        : () => be.matmulQuant(x, pick(w[type]), out, { m, n, k, type, strategy: strategy as 'int8' | 'f32' | 'auto' }));
      const times = timeInterleaved(fns, rounds, sampleMs);
      VARIANTS.forEach(([type, strategy], i) => {
        const t = times[i];
        const flops = 2 * m * n * k, bytes = n * k * BYTES_PER_WEIGHT[type];
        const r: Result = {
          m, n, k, type, strategy, threads, kernels,
          ms: +t.median.toFixed(4),
          best_ms: +t.best.toFixed(4),
          gflops: +(flops / t.median / 1e6).toFixed(2),
          gbps: +(bytes / t.median / 1e6).toFixed(2),
          best_gflops: +(flops / t.best / 1e6).toFixed(2),
        };
        results.push(r);
        log(`  ${`${m}x${n}x${k}`.padEnd(14)} ${type.padEnd(5)} ${strategy.padEnd(7)} threads ${threads} ${kernels.padEnd(6)}  ${r.ms.toFixed(3).padStart(8)} ms ${r.gflops.toFixed(1).padStart(7)} GFLOP/s ${r.gbps.toFixed(1).padStart(7)} GB/s`);
      });
      for (const b of [x, out, ...w.f32, ...w.q8_0, ...w.q4_0]) be.free(b);
    });
  } finally {
    be.dispose();
  }
  return { name: `${be.name}${be.native ? ` + native ${be.native}` : ''}`, results };
}

type Config = { threads: number; kernels: 'wasm' | 'native' };

function table(results: Result[], configs: Config[]): string {
  const both = configs.some((c) => c.kernels === 'native') && configs.some((c) => c.kernels === 'wasm');
  const threads = [...new Set(configs.map((c) => c.threads))];
  const head = `${'shape (m,n,k)'.padEnd(22)}${'weights'.padEnd(8)}${'strategy'.padEnd(9)}` +
    configs.map((c) => `${`${c.threads} thr ${c.kernels} ms`.padStart(19)}${'(best)'.padStart(9)}${'GFLOP/s'.padStart(9)}${'GB/s'.padStart(8)}`).join('') +
    (both ? threads.map((t) => `${`native/wasm ${t} thr`.padStart(20)}`).join('') : '');
  const lines = [head];
  const find = (m: number, n: number, k: number, type: Format, strategy: Strategy, c: Config) =>
    results.find((x) => x.m === m && x.n === n && x.k === k && x.type === type && x.strategy === strategy && x.threads === c.threads && x.kernels === c.kernels);
  for (const [m, n, k, kind] of SHAPES) {
    for (const [type, strategy] of VARIANTS) {
      let s = `${`${m}x${n}x${k}`.padEnd(14)}${kind.padEnd(8)}${type.padEnd(8)}${strategy.padEnd(9)}`;
      for (const c of configs) {
        const r = find(m, n, k, type, strategy, c);
        s += r ? `${r.ms.toFixed(3).padStart(19)}${`(${r.best_ms.toFixed(3)})`.padStart(9)}${r.gflops.toFixed(1).padStart(9)}${r.gbps.toFixed(1).padStart(8)}` : ''.padStart(45);
      }
      if (both) {
        for (const t of threads) {
          const a = find(m, n, k, type, strategy, { threads: t, kernels: 'native' }), b = find(m, n, k, type, strategy, { threads: t, kernels: 'wasm' });
          // Speed ratio: how many times faster the default backend (native kernels) runs than pure wasm.
          s += a && b ? `${(b.ms / a.ms).toFixed(2)}x`.padStart(20) : ''.padStart(20);
        }
      }
      lines.push(s);
    }
  }
  return lines.join('\n');
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--batched-decode', '--from-memory', '--json', '--kernels', '--quick', '--threads'];

export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const quick = argv.includes('--quick');
  const fromMemory = argv.includes('--from-memory');
  const ti = argv.indexOf('--threads');
  const threadList = ti >= 0 ? argv[ti + 1].split(',').map(Number) : [1, 2];
  const rounds = quick ? 5 : 9, sampleMs = quick ? 40 : 60;
  const log = (s: string): void => console.log(s);
  if (argv.includes('--batched-decode')) SHAPES.splice(0, SHAPES.length, ...BATCHED_SHAPES);

  log(`quantized matmul benchmark, WebAssembly (Node ${process.version})`);
  const rng = new Rng(5);
  const data: ShapeData[] = SHAPES.map(([m, n, k]) => {
    const wf = random(rng, n * k, 0.02);
    return { x: random(rng, m * k, 1), w: { f32: wf, q8_0: quantizeQ8_0(wf), q4_0: quantizeQ4_0(wf) } };
  });
  const ki = argv.indexOf('--kernels');
  const kernelList = (ki >= 0 ? argv[ki + 1].split(',') : ['wasm', 'native']) as ('wasm' | 'native')[];
  for (const k of kernelList) if (k !== 'wasm' && k !== 'native') throw new Error(`--kernels entries are wasm or native, not '${k}'`);
  const results: Result[] = [];
  const names: string[] = [];
  const configs: Config[] = [];
  for (const t of threadList) {
    for (const kernels of kernelList) {
      const r = await benchThreads(t, kernels, data, rounds, sampleMs, fromMemory, log);
      results.push(...r.results);
      configs.push({ threads: t, kernels });
      if (!names.includes(r.name)) names.push(r.name);
    }
  }
  log('');
  log(`${names.join(' / ')}, median (best) of ${rounds} interleaved rounds${fromMemory ? ', W from memory (rotating copies)' : ''}; GFLOP/s and GB/s from the median; GB/s = weight bytes read per second (f32 4, q8_0 34/32, q4_0 18/32 bytes per weight):`);
  log(table(results, configs));
  if (json) console.log(JSON.stringify({ backend: names.join(' / '), results }));
}
