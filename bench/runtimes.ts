/**
 * The stlm CLI under Node, Deno and Bun (bench/lib/runtimes.ts: Node running this, Deno and Bun from
 * their pinned npm packages): decode tokens/s (`stlm generate --stats`, the embedded default model,
 * 128 tokens after the prompt "ROMEO:", seed 1) and training tokens/s (`stlm train`, the tiny preset,
 * batch 8 × 128 bytes, --steps steps on the text in --data; the trainer's average over the run, first
 * step included), each at every --threads count, and each runtime's ratio to Node.
 *
 *   npm run bench -- runtimes [--threads 1,2] [--rounds 3] [--steps 20] [--data <text file>] [--json]
 *
 * Every measurement is its own process, the runtimes taking turns within each round (interleaved, so a
 * busy machine slows them alike); each cell is the median over rounds. A runtime that is not installed
 * is listed with the reason and skipped. Default data: the repository's README.md.
 * With --json the last stdout line is {"rows":[{"runtime","version","threads","decode_tps","train_tps"}]}.
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CLI, runtimes, type Runtime } from './lib/runtimes.js';
import { arg } from './lib/torch.js';

export const flags = ['--threads', '--rounds', '--steps', '--data', '--json'];

function stlm(rt: Runtime, args: string[]): string {
  const [bin, ...pre] = rt.command;
  const r = spawnSync(bin, [...pre, CLI, ...args], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${rt.name} stlm ${args[0]} exited with ${r.status ?? r.signal}: ${r.error?.message ?? r.stderr.slice(-1000)}`);
  return r.stdout + r.stderr;
}

function decodeTps(rt: Runtime, threads: number): number {
  const out = stlm(rt, ['generate', '--prompt', 'ROMEO:', '--seed', '1', '--max-tokens', '128', '--temperature', '0', '--threads', String(threads), '--stats']);
  const m = /tokens in [\d.]+ ms \(([\d.]+) tok\/s\)/.exec(out);
  if (!m) throw new Error(`no decode speed in ${rt.name}'s output: ${out.slice(-500)}`);
  return Number(m[1]);
}

function trainTps(rt: Runtime, threads: number, steps: number, data: string): number {
  const out = stlm(rt, ['train', '--data', data, '--config', 'tiny', '--steps', String(steps), '--batch', '8', '--ctx', '128', '--warmup', '2',
    '--eval-every', '0', '--eval-windows', '1', '--save-every', '0', '--threads', String(threads), '--out', `/tmp/stlm-bench-runtimes-${process.pid}.gguf`]);
  const lines = [...out.matchAll(/\| ([\d,]+) tok\/s \|/g)];
  if (!lines.length) throw new Error(`no training speed in ${rt.name}'s output: ${out.slice(-500)}`);
  return Number(lines.at(-1)![1].replace(/,/g, ''));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function main(argv: string[]): Promise<void> {
  const threadCounts = arg(argv, '--threads', '1,2').split(',').map(Number);
  const rounds = Number(arg(argv, '--rounds', '3'));
  const steps = Number(arg(argv, '--steps', '20'));
  const data = arg(argv, '--data', fileURLToPath(new URL('../../README.md', import.meta.url)));
  const found = runtimes();
  const ready = Object.values(found).filter((r): r is Runtime => typeof r !== 'string');
  for (const r of Object.values(found)) if (typeof r === 'string') console.log(`skipped: ${r}`);
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const samples = new Map<string, { decode: number[]; train: number[] }>();
  const key = (rt: Runtime, t: number) => `${rt.name}/${t}`;
  for (let round = 0; round < rounds; round++) {
    for (const t of threadCounts) {
      for (const rt of ready) {
        const s = samples.get(key(rt, t)) ?? { decode: [], train: [] };
        s.decode.push(decodeTps(rt, t));
        s.train.push(trainTps(rt, t, steps, data));
        samples.set(key(rt, t), s);
        console.log(`round ${round + 1}: ${rt.name} ${rt.version}, ${t} thread(s): decode ${s.decode.at(-1)!.toFixed(1)} tok/s, train ${s.train.at(-1)} tok/s`);
      }
    }
  }
  const rows = threadCounts.flatMap((t) => ready.map((rt) => {
    const s = samples.get(key(rt, t))!;
    return { runtime: rt.name, version: rt.version, threads: t, decode_tps: median(s.decode), train_tps: median(s.train) };
  }));
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('\n| runtime | threads | decode tok/s | vs Node | train tok/s | vs Node |\n|---|---|---|---|---|---|');
  for (const r of rows) {
    const node = rows.find((n) => n.runtime === 'node' && n.threads === r.threads)!;
    console.log(`| ${r.runtime} ${r.version} | ${r.threads} | ${r.decode_tps.toFixed(1)} | ${(r.decode_tps / node.decode_tps).toFixed(2)}x | ${r.train_tps.toLocaleString('en-US')} | ${(r.train_tps / node.train_tps).toFixed(2)}x |`);
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ rows }));
}
