/**
 * Inference speed against llama.cpp (node-llama-cpp 3.21.1, its CPU build) on the same GGUF files, at
 * batch 1 with the same thread count: decode tokens/s (128 greedy tokens after a 32-token prompt),
 * prefill tokens/s (512 tokens, or the context if shorter), peak RSS, and the stlm/llama.cpp ratios.
 *
 *   npm run bench -- decode-vs-llamacpp [--models stories260K,default,rand25m,rand110m] [--types f32,q8_0,q4_0]
 *     [--threads 2] [--repeats N] [--rounds N] [--engines stlm,stlm-wasm,llama.cpp] [--kv f16|f32] [--profile] [--bandwidth] [--json]
 *
 * --bandwidth: also each row's decode as a share of the memory-bandwidth bound (bench/lib/bandwidth.ts:
 * one core's measured read bandwidth over the weight bytes a token reads; meaningful at --threads 1).
 *
 * Models: stories260K (llama2.c fixture converted to GGUF), the embedded models/default.gguf, and two
 * random-weight byte-vocabulary Llamas (fixed seeds) of ~27M and ~113M parameters; each is written as
 * F32 GGUF and quantized with `stlm quantize` (Q8_0, Q4_0) or converted (F16), cached under
 * bench-results/decode-vs-llamacpp/. Every (model, type, engine) runs in its own process
 * (bench/lib/decode-worker.ts) so its peak RSS is that engine's alone. Engines: `stlm` is the backend
 * as it runs by default in Node (WebAssembly, with the native AVX2 / AVX-512 VNNI kernels taking the
 * decode products where they were built), `stlm-wasm` the same with `native: false` (pure WebAssembly,
 * what a browser gets), `llama.cpp` the reference.
 *
 * KV cache: stlm keeps f32; llama.cpp runs its default F16 (--kv f32 for an F32 cache). Both hold
 * min(ctx, 512) positions. The stlm rows check the memory target: peak RSS ≤ 1.2 × file + KV + 50 MB.
 * --repeats defaults to 3 (2 above 50M parameters); each cell is the median over repeats after a warm-up.
 * --rounds N (default 1) runs every engine N times in turn, each in a fresh process, and keeps each
 * engine's median round by decode speed (the rounds' speeds are listed in the notes).
 * Peak RSS is the worker's VmHWM; the load+decode peak (before the first 512-token prefill) is reported apart.
 *
 * Caveat for --threads > 1: node-llama-cpp gives llama.cpp no persistent thread pool, so ggml starts its
 * worker threads afresh for every graph (one per decoded token); on a VM where waking an idle vCPU takes
 * ~2 ms, and worse on shared cores, its multi-threaded decode of small models is far below its 1-thread
 * speed. Run --threads 1 as well before reading a 2-thread ratio.
 * With --json the last stdout line is {"rows":[{"model","type","engine","decode_tps","prefill_tps","peak_rss_mb",…}],…}.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufHeader } from '../src/formats/gguf.js';
import { type LlamaConfig, parameterCount } from '../src/models/config.js';
import { configFromGguf } from '../src/io/model-file.js';
import type { WorkerResult } from './lib/decode-worker.js';
import { ALL_MODELS, CACHE_DIR, FILE_TYPES, type FileType, modelFile } from './lib/model-files.js';
import { arg } from './lib/torch.js';
import { measureReadBandwidth, weightBytesPerToken } from './lib/bandwidth.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER = join(ROOT, 'dist', 'bench', 'lib', 'decode-worker.js');
const MB = 1e6;

/** 'stlm': the default backend (WebAssembly plus the native kernels where built); 'stlm-wasm': WebAssembly only. */
type Engine = 'stlm' | 'stlm-wasm' | 'llama.cpp';
const isStlm = (e: string): boolean => e === 'stlm' || e === 'stlm-wasm';

/** The issue's decode targets: ≥ 1.0× llama.cpp up to 30M parameters, ≥ 0.6× at 110M. */
const decodeTarget = (params: number) => (params <= 30e6 ? 1.0 : 0.6);

export interface Row {
  model: string;
  type: FileType;
  engine: Engine;
  decode_tps: number;
  prefill_tps: number;
  /** Peak RSS of the whole run; decode_rss_mb: the peak before the first 512-token prefill (load + decode). */
  peak_rss_mb: number;
  decode_rss_mb: number;
  /** Resident set with the engine up and no model loaded yet (Node, modules, worker threads / the llama.cpp addon). */
  runtime_rss_mb: number;
  params: number;
  file_mb: number;
  kv_mb: number;
  kv_type: 'f32' | 'f16';
  /** stlm: WebAssembly memory (weights, KV cache, activations) after loading, after decoding, at the end. */
  wasm_heap_mb?: { loaded: number; decode: number; end: number };
  prefill_tokens: number;
  /**
   * stlm rows: stlm ÷ llama.cpp, and the memory target (1.2 × file + KV + 50 MB) checked on the load +
   * decode peak (mem_ok_decode) and on the whole run's peak, 512-token prefill included (mem_ok).
   */
  decode_ratio?: number;
  prefill_ratio?: number;
  decode_target?: number;
  mem_limit_mb?: number;
  mem_ok_decode?: boolean;
  mem_ok?: boolean;
  /** stlm rows: leading greedy tokens equal to llama.cpp's, out of the tokens generated. */
  greedy_agree?: string;
  /** 1-minute load average when this cell started (the machine's 2 cores are shared). */
  load: number;
  notes: string[];
  profile?: WorkerResult['profile'];
}

// ---- measurements -------------------------------------------------------------------------------

interface RunOptions {
  threads: number;
  repeats: number | undefined;
  kv: 'f16' | 'f32';
  profile: boolean;
}

function runWorker(engine: Engine, path: string, params: number, o: RunOptions): WorkerResult | { error: string } {
  const repeats = o.repeats ?? (params > 50e6 ? 2 : 3);
  const args = ['--engine', engine, '--model', path, '--threads', String(o.threads), '--repeats', String(repeats), '--kv', o.kv];
  if (o.profile) args.push('--profile');
  // The worker gets this process's Node flags (e.g. --experimental-wasm-relaxed-simd on Node 20).
  const r = spawnSync(process.execPath, [...process.execArgv, WORKER, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
  const last = r.stdout?.trim().split('\n').at(-1);
  if (r.status !== 0 || !last) return { error: `${engine} worker failed (exit ${r.status ?? r.signal})` };
  return JSON.parse(last) as WorkerResult;
}

function toRow(model: string, type: FileType, path: string, params: number, w: WorkerResult, load: number): Row {
  return {
    model, type, engine: w.engine, decode_tps: w.decode_tps, prefill_tps: w.prefill_tps, peak_rss_mb: w.peak_rss_bytes / MB, decode_rss_mb: w.decode_rss_bytes / MB,
    runtime_rss_mb: w.runtime_rss_bytes / MB, params,
    file_mb: statSync(path).size / MB, kv_mb: w.kv_bytes / MB, kv_type: w.kv_type,
    wasm_heap_mb: w.wasm_heap_bytes && { loaded: w.wasm_heap_bytes.loaded / MB, decode: w.wasm_heap_bytes.decode / MB, end: w.wasm_heap_bytes.end / MB }, prefill_tokens: w.prefill_tokens, notes: w.notes, profile: w.profile, load,
  };
}

/** Fills the stlm row's comparison fields from llama.cpp's row (when there is one) and its memory check. */
function compare(stlm: Row, ref: Row | undefined, stlmTokens: number[], refTokens: number[] | undefined): void {
  stlm.mem_limit_mb = 1.2 * stlm.file_mb + stlm.kv_mb + 50;
  stlm.mem_ok_decode = stlm.decode_rss_mb <= stlm.mem_limit_mb;
  stlm.mem_ok = stlm.peak_rss_mb <= stlm.mem_limit_mb;
  stlm.decode_target = decodeTarget(stlm.params);
  if (!ref || !refTokens) return;
  stlm.decode_ratio = stlm.decode_tps / ref.decode_tps;
  stlm.prefill_ratio = stlm.prefill_tps / ref.prefill_tps;
  let same = 0;
  while (same < stlmTokens.length && stlmTokens[same] === refTokens[same]) same++;
  stlm.greedy_agree = `${same}/${stlmTokens.length}`;
}

async function llamaCppAvailable(): Promise<string | undefined> {
  try {
    await import('node-llama-cpp');
    return undefined;
  } catch (e) {
    return `node-llama-cpp is not available (${(e as Error).message.split('\n')[0]}); install the dev dependencies (npm ci)`;
  }
}

// ---- report -------------------------------------------------------------------------------------

const fmt = (x: number | undefined, digits = 0) => (x === undefined ? '-' : x.toFixed(digits));

function printModelTable(model: string, config: LlamaConfig, rows: Row[]): void {
  const params = parameterCount(config);
  const positions = Math.min(config.ctx, 512);
  console.log(`\n== ${model}: ${params.toLocaleString('en-US')} parameters (d ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads/${config.nKvHeads} kv, mlp ${config.mlpHidden}, vocab ${config.vocabSize}, ctx ${config.ctx}); ` +
    `KV cache ${positions} positions, prefill ${positions} tokens`);
  console.log('type | engine    | file MB | decode tok/s | prefill tok/s | RSS MB: load+decode / peak | decode ratio | prefill ratio | greedy agree | memory limit MB: load+decode, peak | load avg');
  const verdict = (ok: boolean | undefined) => (ok ? 'ok' : 'OVER');
  for (const r of rows) {
    const mem = r.mem_limit_mb === undefined ? '-' : `${fmt(r.mem_limit_mb, 1)}: ${verdict(r.mem_ok_decode)}, ${verdict(r.mem_ok)}`;
    const rss = `${fmt(r.decode_rss_mb, 1)} / ${fmt(r.peak_rss_mb, 1)}`;
    console.log(`${r.type.padEnd(4)} | ${r.engine.padEnd(9)} | ${fmt(r.file_mb, 1).padStart(7)} | ${fmt(r.decode_tps, 1).padStart(12)} | ${fmt(r.prefill_tps, 1).padStart(13)} | ` +
      `${rss.padStart(26)} | ${fmt(r.decode_ratio, 2).padStart(12)} | ${fmt(r.prefill_ratio, 2).padStart(13)} | ${(r.greedy_agree ?? '-').padStart(12)} | ${mem.padEnd(34)} | ${r.load.toFixed(2)}`);
  }
  for (const r of rows) {
    const h = r.wasm_heap_mb;
    if (h) {
      console.log(`  ${r.type} stlm: runtime ${r.runtime_rss_mb.toFixed(1)} MB RSS before loading; wasm memory ${h.loaded.toFixed(1)} MB loaded, ` +
        `${h.decode.toFixed(1)} MB after decoding, ${h.end.toFixed(1)} MB after the ${r.prefill_tokens}-token prefills`);
    }
  }
  for (const r of rows) if (r.profile) console.log(`  ${r.type} stlm ${profileLine(r.profile)}`);
}

/** Where a stlm decode step and prefill go: matrix products, attention, other kernels, JavaScript between kernels. */
function profileLine(p: NonNullable<Row['profile']>): string {
  const split = (m: Record<string, number>) => {
    const matmul = (m.matmul ?? 0) + (m.matmulQuant ?? 0);
    const attention = m.attention ?? 0;
    const kernels = Object.entries(m).filter(([k]) => k !== '(wall)').reduce((s, [, v]) => s + v, 0);
    const wall = m['(wall)'];
    const pc = (x: number) => `${x.toFixed(2)} ms (${((100 * x) / wall).toFixed(0)}%)`;
    return `${wall.toFixed(2)} ms: matmul ${pc(matmul)}, attention ${pc(attention)}, other kernels ${pc(kernels - matmul - attention)}, JS between kernels ${pc(wall - kernels)}`;
  };
  return `profile — decode step ${split(p.decode)}; prefill ${split(p.prefill)}`;
}

function printSummary(rows: Row[]): void {
  console.log('\n== targets (decode ≥ 1.0× llama.cpp up to 30M parameters, ≥ 0.6× at 110M; stlm peak RSS ≤ 1.2 × file + KV + 50 MB for quantized files)');
  for (const r of rows.filter((x) => isStlm(x.engine))) {
    const decode = r.decode_ratio === undefined ? 'decode: no llama.cpp row'
      : `decode ${r.decode_ratio.toFixed(2)}× (target ${r.decode_target!.toFixed(1)}×): ${r.decode_ratio >= r.decode_target! ? 'met' : `MISSED by ${((1 - r.decode_ratio / r.decode_target!) * 100).toFixed(0)}%`}`;
    const quantized = r.type === 'q8_0' || r.type === 'q4_0';
    const over = (rss: number) => (rss <= r.mem_limit_mb! ? 'within' : `OVER by ${(rss - r.mem_limit_mb!).toFixed(1)} MB`);
    // The runtime (Node, modules, the backend's worker threads) is resident before any model byte is read.
    const aboveRuntime = r.decode_rss_mb - r.runtime_rss_mb;
    const mem = `memory limit ${fmt(r.mem_limit_mb, 1)} MB: load+decode ${fmt(r.decode_rss_mb, 1)} ${over(r.decode_rss_mb)}, ` +
      `with prefill ${fmt(r.peak_rss_mb, 1)} ${over(r.peak_rss_mb)}; load+decode above the ${fmt(r.runtime_rss_mb, 1)} MB runtime ${fmt(aboveRuntime, 1)} ${over(aboveRuntime)}` +
      `${quantized ? '' : ' (not a target: f32 weights in memory)'}`;
    console.log(`  ${r.model.padEnd(11)} ${r.type.padEnd(4)} ${r.engine.padEnd(9)} ${decode}; ${mem}`);
  }
}

const loadAverage = () => (existsSync('/proc/loadavg') ? readFileSync('/proc/loadavg', 'utf8').trim() : 'n/a');

// ---- entry --------------------------------------------------------------------------------------

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--bandwidth', '--engines', '--json', '--kv', '--models', '--profile', '--repeats', '--rounds', '--threads', '--types'];

export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const models = arg(argv, '--models', ALL_MODELS.join(',')).split(',');
  const types = arg(argv, '--types', 'f32,q8_0,q4_0').split(',') as FileType[];
  for (const t of types) if (!FILE_TYPES.includes(t)) throw new Error(`unknown --types entry '${t}' (valid: ${FILE_TYPES.join(', ')})`);
  const kv = arg(argv, '--kv', 'f16');
  if (kv !== 'f16' && kv !== 'f32') throw new Error(`--kv must be f16 or f32, got '${kv}'`);
  const repeatsArg = arg(argv, '--repeats', '');
  const rounds = Number(arg(argv, '--rounds', '1'));
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 20)) throw new Error(`--rounds must be an integer from 1 to 20, got '${arg(argv, '--rounds', '1')}'`);
  const o: RunOptions = { threads: Number(arg(argv, '--threads', '2')), repeats: repeatsArg ? Number(repeatsArg) : undefined, kv, profile: argv.includes('--profile') };
  let engines = arg(argv, '--engines', 'stlm,stlm-wasm,llama.cpp').split(',') as Engine[];
  const missing = engines.includes('llama.cpp') ? await llamaCppAvailable() : undefined;
  if (missing) {
    console.error(`skipping the llama.cpp rows: ${missing}`);
    engines = engines.filter((e) => e !== 'llama.cpp');
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const loadBefore = loadAverage();
  const started = performance.now();
  console.error(`load average before: ${loadBefore}`);

  const rows: Row[] = [];
  const paths = new Map<string, string>(); // 'model type' -> file
  for (const model of models) {
    const modelRows: Row[] = [];
    let config: LlamaConfig | undefined;
    for (const type of types) {
      const path = await modelFile(model, type);
      if (typeof path !== 'string') {
        console.error(`skipping ${model}: ${path.skip}`);
        break;
      }
      paths.set(`${model} ${type}`, path);
      config ??= configFromGguf(await readGgufHeader(path));
      const params = parameterCount(config);
      // Rounds alternate the engines (A B C A B C …), so a burst of load on the shared host lands on
      // every engine alike; each engine's row is its median round by decode speed.
      const runs = new Map<Engine, { w: WorkerResult; load: number }[]>();
      for (let round = 1; round <= rounds; round++) {
        for (const engine of engines) {
          const load = Number(loadAverage().split(' ')[0]);
          console.error(`== ${model} ${type} ${engine}${rounds > 1 ? ` round ${round}/${rounds}` : ''} (load average ${load})`);
          const w = runWorker(engine, path, params, o);
          if ('error' in w) console.error(`  ${w.error}; round skipped`);
          else runs.set(engine, [...(runs.get(engine) ?? []), { w, load }]);
        }
      }
      const results = new Map<Engine, { w: WorkerResult; load: number }>();
      for (const [engine, list] of runs) {
        const sorted = [...list].sort((a, b) => a.w.decode_tps - b.w.decode_tps);
        const mid = sorted[(sorted.length - 1) >> 1];
        if (list.length > 1) mid.w.notes = [...mid.w.notes, `${model} ${type} decode tok/s by round: ${list.map((r) => r.w.decode_tps.toFixed(1)).join(', ')} (median shown)`];
        results.set(engine, mid);
      }
      const ref = results.get('llama.cpp')?.w;
      const refRow = ref ? toRow(model, type, path, params, ref, results.get('llama.cpp')!.load) : undefined;
      for (const engine of engines.filter(isStlm)) {
        const r = results.get(engine);
        if (!r) continue;
        const row = toRow(model, type, path, params, r.w, r.load);
        compare(row, refRow, r.w.tokens, ref?.tokens);
        modelRows.push(row);
      }
      if (refRow) modelRows.push(refRow);
    }
    if (config && modelRows.length) printModelTable(model, config, modelRows);
    rows.push(...modelRows);
  }
  printSummary(rows);
  const bound = argv.includes('--bandwidth') ? await printBandwidthBound(rows, paths, o.threads) : undefined;
  const loadAfter = loadAverage();
  const minutes = (performance.now() - started) / 60000;
  console.log(`\nthreads ${o.threads}; KV cache: stlm f32, llama.cpp ${kv.toUpperCase()}; load average before ${loadBefore}, after ${loadAfter}; ${minutes.toFixed(1)} minutes`);
  for (const n of new Set(rows.flatMap((r) => r.notes.map((x) => `${r.engine}: ${x}`)))) console.log(`  ${n}`);
  if (json) {
    const out = rows.map(({ notes: _n, profile, ...r }) => (o.profile ? { ...r, profile } : r));
    console.log(JSON.stringify({ rows: out, ...(bound ? { bandwidth: bound } : {}), threads: o.threads, kv_cache: { stlm: 'f32', 'llama.cpp': kv }, loadavg_before: loadBefore, loadavg_after: loadAfter, minutes }));
  }
}

/** Each row's decode against the memory-bandwidth bound: one core's read bandwidth ÷ weight bytes per token. */
async function printBandwidthBound(rows: Row[], paths: Map<string, string>, threads: number) {
  const bw = measureReadBandwidth();
  if ('skip' in bw) {
    console.log(`\nbandwidth bound: not measured (${bw.skip})`);
    return undefined;
  }
  console.log(`\nmemory-bandwidth bound: one core reads ${bw.median_gbps.toFixed(2)} GB/s (median of ${bw.passes} passes over ${bw.mib} MiB; best ${bw.best_gbps.toFixed(2)})` +
    `${threads > 1 ? `; these rows ran ${threads} threads, so the one-core bound is not theirs` : ''}`);
  console.log('| model | type | engine | weight MB read per token | bound tok/s | decode tok/s | share of the bound |');
  console.log('|---|---|---|---|---|---|---|');
  const out = [];
  for (const r of rows) {
    const path = paths.get(`${r.model} ${r.type}`);
    if (!path) continue;
    const bytes = await weightBytesPerToken(path);
    const boundTps = (bw.median_gbps * 1e9) / bytes;
    out.push({ model: r.model, type: r.type, engine: r.engine, bytes_per_token: bytes, bound_tps: boundTps, share: r.decode_tps / boundTps });
    console.log(`| ${r.model} | ${r.type} | ${r.engine} | ${(bytes / 1e6).toFixed(1)} | ${boundTps.toFixed(1)} | ${r.decode_tps.toFixed(1)} | ${((r.decode_tps / boundTps) * 100).toFixed(0)}% |`);
  }
  return { ...bw, rows: out };
}
