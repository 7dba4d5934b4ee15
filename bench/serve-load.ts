/**
 * `stlm serve` under load, against llama.cpp's own `llama-server` on the same GGUF files, in the same run:
 * N concurrent streaming clients on loopback, each sending completions one after another for a fixed time.
 *
 *   npm run bench -- serve-load [--models default,rand25m] [--clients 1,8,32] [--seconds 60] [--max-tokens 64]
 *     [--threads 1] [--engines stlm,llama-server] [--type q8_0] [--rounds 1] [--cpu-prof-dir <dir>] [--json]
 *
 * Models: the embedded models/default.gguf (F32, as shipped) and rand25m, a ~27M-parameter byte-vocabulary
 * Llama with random weights (fixed seed; random weights are enough for a throughput test: the work per
 * token does not depend on the values), quantized to --type (default Q8_0) by `stlm quantize`; files from
 * bench/lib/model-files.ts. Both servers get the same threads, one slot per client (`stlm serve --slots N`,
 * `llama-server -np N`) and the same context per slot. One thread by default: on a small shared machine a
 * second thread's workers spin against other processes (measured on the 2-core dev host at load ~18:
 * 43% of stlm serve's time waiting on its pool at 8 clients with 2 threads).
 *
 * Each client sends `POST /v1/completions` with `stream: true`, a prompt of its own, temperature 1, a seed
 * distinct for every request and max_tokens; it records the time to first token (request sent to first
 * text), the gaps between text chunks (inter-token latency) and the completion tokens (usage). Reported per
 * (model, engine, clients): requests, errors (must be 0), p50/p99 TTFT and inter-token latency, total
 * completion tokens/s over the run. Then the integrity check: every client's first and last requests are
 * sent again alone (one at a time) and their texts must equal what the client streamed under load ("mixed":
 * tokens lost or mixed between streams; must be 0 for stlm, whose batched logits equal unbatched ones;
 * llama-server's batched kernels are not bit-identical to its single-sequence ones, so its count is
 * informative). The load average (`/proc/loadavg`) is printed beside each row.
 *
 * --rounds R: the sweep over client counts and engines runs R times per model, so each cell is measured R
 * times at different moments; the targets use each cell's median, and the 8/1 ratio is also given per
 * round (its 1- and 8-client cells minutes apart). On a shared VM one cell moved ±20% between runs.
 *
 * --cpu-prof-dir: stlm serve runs under `node --cpu-prof` and writes its profile there when it stops.
 *
 * With --json the last stdout line is {"rows":[...]}.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufHeader } from '../src/formats/gguf.js';
import { configFromGguf } from '../src/io/model-file.js';
import { llamaToolsDir } from './lib/llama-tools.js';
import { type FileType, modelFile } from './lib/model-files.js';
import { arg } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'src', 'cli', 'index.js');

type Engine = 'stlm' | 'llama-server';

export interface LoadRow {
  model: string;
  engine: Engine;
  round: number;
  clients: number;
  seconds: number;
  requests: number;
  errors: number;
  firstError?: string;
  mixed: number;
  checked: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  tokens: number;
  tokens_per_s: number;
  load: string;
}

/** The median of xs (the mean of the middle two for an even count). */
function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

interface Sent {
  prompt: string;
  seed: number;
  text: string;
}

const PROMPTS = ['ROMEO:', 'The king', 'Once upon a time', 'JULIET:\nO', 'First Citizen:\nBefore we proceed', 'It was', 'MENENIUS:\nWhy', 'And then'];

const loadAverage = () => (existsSync('/proc/loadavg') ? readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ') : 'n/a');

function percentile(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** One streamed completion: its text, TTFT, the gaps between chunks, the completion tokens (usage). */
async function streamOnce(url: string, body: Record<string, unknown>): Promise<{ text: string; ttft: number; gaps: number[]; tokens: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '', text = '', ttft = NaN, last = NaN, tokens = 0, chunks = 0, done = false, finished = false;
  const gaps: number[] = [];
  while (!done) {
    const r = await reader.read();
    if (r.done) break;
    buf += dec.decode(r.value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i).trim();
      buf = buf.slice(i + 2);
      if (!event.startsWith('data:')) continue;
      const data = event.slice(5).trim();
      if (data === '[DONE]') {
        done = true;
        break;
      }
      const j = JSON.parse(data);
      if (j.error) throw new Error(`stream error: ${JSON.stringify(j.error).slice(0, 200)}`);
      if (j.usage?.completion_tokens !== undefined) tokens = j.usage.completion_tokens;
      for (const c of j.choices ?? []) {
        if (c.finish_reason) finished = true;
        if (!c.text) continue;
        const now = performance.now();
        if (Number.isNaN(ttft)) ttft = now - t0;
        else gaps.push(now - last);
        last = now;
        text += c.text;
        chunks++;
      }
    }
  }
  if (!finished) throw new Error('the stream ended without a finish_reason');
  return { text, ttft: Number.isNaN(ttft) ? performance.now() - t0 : ttft, gaps, tokens: tokens || chunks };
}

/** Runs `clients` clients for `seconds` against url; then replays each client's first and last requests alone. */
async function load(url: string, clients: number, seconds: number, maxTokens: number): Promise<Omit<LoadRow, 'model' | 'engine' | 'round' | 'load'>> {
  const ttfts: number[] = [], gaps: number[] = [];
  let errors = 0, tokens = 0, requests = 0, firstError: string | undefined;
  const sent: Sent[][] = Array.from({ length: clients }, () => []);
  const t0 = performance.now(), end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let k = 0; performance.now() < end; k++) {
      const prompt = PROMPTS[(c + k) % PROMPTS.length], seed = 1 + c * 100000 + k;
      try {
        const r = await streamOnce(url, { model: 'm', prompt, max_tokens: maxTokens, temperature: 1, top_p: 1, seed });
        ttfts.push(r.ttft);
        gaps.push(...r.gaps);
        tokens += r.tokens;
        requests++;
        sent[c].push({ prompt, seed, text: r.text });
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  let mixed = 0, checked = 0;
  for (const list of sent) {
    for (const s of list.length > 1 ? [list[0], list[list.length - 1]] : list) {
      const alone = await streamOnce(url, { model: 'm', prompt: s.prompt, max_tokens: maxTokens, temperature: 1, top_p: 1, seed: s.seed }).catch(() => undefined);
      checked++;
      if (alone?.text !== s.text) mixed++;
    }
  }
  return {
    clients, seconds: Math.round(elapsed * 10) / 10, requests, errors, firstError, mixed, checked,
    ttft_p50_ms: percentile(ttfts, 50), ttft_p99_ms: percentile(ttfts, 99), itl_p50_ms: percentile(gaps, 50), itl_p99_ms: percentile(gaps, 99),
    tokens, tokens_per_s: tokens / elapsed,
  };
}

/** Starts a server and resolves with its base URL once it answers /health. */
async function startServer(engine: Engine, file: string, clients: number, ctx: number, threads: number, port: number, cpuProfileDir?: string): Promise<{ url: string; proc: ChildProcess }> {
  const profile = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : [];
  const proc = engine === 'stlm'
    ? spawn(process.execPath, [...profile, CLI, 'serve', '--model', file, '--name', 'm', '--port', String(port), '--threads', String(threads), '--slots', String(clients), '--queue', '64', '--kv-memory', '4000'], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(join(llamaToolsDir(), 'build', 'bin', 'llama-server'), ['-m', file, '--host', '127.0.0.1', '--port', String(port), '-t', String(threads), '-np', String(clients), '-c', String(ctx * clients), '--alias', 'm', '--no-webui', '-cb'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`${engine} exited (${proc.exitCode}):\n${stderr}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) return { url, proc };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill();
  throw new Error(`${engine} did not answer /health in 60 s:\n${stderr}`);
}

async function stopServer(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.exitCode === null) proc.kill('SIGKILL');
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** A model named by its .gguf path is shown by its file name. */
const label = (model: string): string => (model.endsWith('.gguf') ? basename(model, '.gguf') : model);

export const flags = ['--clients', '--cpu-prof-dir', '--engines', '--json', '--max-tokens', '--models', '--rounds', '--seconds', '--threads', '--type'];

export async function main(argv: string[]): Promise<void> {
  const models = arg(argv, '--models', 'default,rand25m').split(',');
  const clientCounts = arg(argv, '--clients', '1,8,32').split(',').map(Number);
  const seconds = Number(arg(argv, '--seconds', '60'));
  const maxTokens = Number(arg(argv, '--max-tokens', '64'));
  const threads = Number(arg(argv, '--threads', '1'));
  const rounds = Number(arg(argv, '--rounds', '1'));
  const type = arg(argv, '--type', 'q8_0') as FileType;
  /** stlm serve runs under `node --cpu-prof`, its profile (one per server) written here when it stops: where a cell's time goes. */
  const cpuProfileDir = argv.includes('--cpu-prof-dir') ? arg(argv, '--cpu-prof-dir', '') : undefined;
  let engines = arg(argv, '--engines', 'stlm,llama-server').split(',') as Engine[];
  for (const n of [...clientCounts, seconds, maxTokens, threads]) if (!(n > 0)) throw new Error(`serve-load: every count must be a positive number (got ${n})`);
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error(`serve-load: --rounds must be an integer >= 1 (got ${rounds})`);
  if (engines.includes('llama-server') && !existsSync(join(llamaToolsDir(), 'build', 'bin', 'llama-server'))) {
    console.error('serve-load: llama-server is not built (npm run bench -- llama-tools --build); running stlm only');
    engines = engines.filter((e) => e !== 'llama-server');
  }
  const rows: LoadRow[] = [];
  let port = 18000 + (process.pid % 1000) * 10;
  console.log(`serve-load: ${seconds} s per cell, max_tokens ${maxTokens}, ${threads} threads, clients ${clientCounts.join('/')}, ${rounds} round(s), load ${loadAverage()}`);
  console.log('model     engine        round clients  reqs  errors  mixed/checked  TTFT p50/p99 ms  ITL p50/p99 ms  tokens/s  load');
  for (const model of models) {
    const file = await modelFile(model, model === 'default' ? 'f32' : type);
    if (typeof file !== 'string') {
      console.log(`${model}: skipped (${file.skip})`);
      continue;
    }
    const ctx = Math.min(1024, configFromGguf(await readGgufHeader(file)).ctx);
    for (let round = 1; round <= rounds; round++) {
      for (const clients of clientCounts) {
        // The engines take turns at each client count, so both see the same stretch of machine load.
        for (const engine of engines) {
          const { url, proc } = await startServer(engine, file, clients, ctx, threads, port++, engine === 'stlm' ? cpuProfileDir : undefined);
          try {
            // A failed warm-up is not fatal: the load phase counts each failure as an error.
            await streamOnce(url, { model: 'm', prompt: 'warm up', max_tokens: 4, seed: 1 }).catch(() => undefined);
            const r: LoadRow = { model: label(model), engine, round, ...(await load(url, clients, seconds, maxTokens)), load: loadAverage() };
            rows.push(r);
            console.log(`${r.model.padEnd(9)} ${engine.padEnd(13)} ${String(round).padStart(5)} ${String(clients).padStart(7)} ${String(r.requests).padStart(5)} ${String(r.errors).padStart(7)} ${`${r.mixed}/${r.checked}`.padStart(14)} ${`${fmt(r.ttft_p50_ms)}/${fmt(r.ttft_p99_ms)}`.padStart(16)} ${`${fmt(r.itl_p50_ms)}/${fmt(r.itl_p99_ms)}`.padStart(15)} ${fmt(r.tokens_per_s).padStart(9)}  ${r.load}${r.firstError ? `  first error: ${r.firstError}` : ''}`);
          } finally {
            await stopServer(proc);
          }
        }
      }
    }
  }
  console.log(`\ntargets${rounds > 1 ? ` (each cell's median over ${rounds} rounds)` : ''}:`);
  for (const model of models) {
    const cells = (engine: Engine, c: number) => rows.filter((r) => r.model === label(model) && r.engine === engine && r.clients === c);
    const tps = (engine: Engine, c: number) => (cells(engine, c).length ? median(cells(engine, c).map((r) => r.tokens_per_s)) : undefined);
    const one = tps('stlm', 1), eight = tps('stlm', 8);
    if (model === 'default' && one && eight) {
      const perRound = cells('stlm', 8).map((r) => r.tokens_per_s / cells('stlm', 1).find((o) => o.round === r.round)!.tokens_per_s);
      console.log(`  ${model}: stlm 8 clients / 1 client = ${fmt(eight / one, 2)}x (target >= 3x)${rounds > 1 ? `; per round ${perRound.map((x) => fmt(x, 2)).join(', ')}` : ''}`);
    }
    for (const c of clientCounts) {
      const s = tps('stlm', c), l = tps('llama-server', c);
      if (s && l) console.log(`  ${model}, ${c} clients: stlm / llama-server tokens/s = ${fmt(s / l, 2)}x (target >= 1x)`);
    }
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ rows }));
}
