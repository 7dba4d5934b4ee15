/**
 * The stlm CLI under Node, Deno and Bun (bench/lib/runtimes.ts: the Node running this, Deno and Bun
 * from their pinned npm packages): decode tokens/s (`stlm generate`, greedy after the prompt "ROMEO:",
 * on the small preset with a 1024-token context, 5.4M parameters, written once by one Node training
 * step: long enough runs to time) and training tokens/s (`stlm train`, the tiny preset, batch 8 × 128
 * bytes of --data), each runtime's ratio to Node.
 *
 *   npm run bench -- runtimes [--threads 1] [--rounds 3] [--data <text file>] [--json]
 *
 * Method: each measurement runs the command twice in fresh processes, short and long (100 and 900 decoded
 * tokens; 3 and 13 training steps), and divides the difference in tokens by the difference in time, so
 * start-up, compilation and the first step's warm-up cancel out. Two times are taken: wall-clock and the
 * processes' CPU time (user + system, from the shell's `times`). On a shared, busy machine the CPU time is
 * the steadier measure of what each runtime costs; on one thread it is also its speed on an idle core
 * (with more threads it includes the workers' spinning, so read wall-clock there). The runtimes take
 * turns within each round; each cell is the median over rounds. A runtime that is not installed is
 * listed with the reason and skipped. Default data: the repository's README.md.
 * With --json the last stdout line is {"rows":[{"runtime","version","threads","decode_tps","decode_cpu_tps","train_tps","train_cpu_tps"}]}.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CLI, runtimes, type Runtime } from './lib/runtimes.js';
import { arg } from './lib/torch.js';

export const flags = ['--threads', '--rounds', '--data', '--json'];

/** Runs the CLI; its output, wall-clock seconds and CPU seconds (user + system of the process and its threads). */
function stlm(rt: Runtime, args: string[]): { out: string; wall: number; cpu: number } {
  const [bin, ...pre] = rt.command;
  const t0 = performance.now();
  // bash's `times` prints its children's user and system time on its second line.
  const r = spawnSync('bash', ['-c', '"$@"; s=$?; times >&2; exit $s', 'bash', bin, ...pre, CLI, ...args], { encoding: 'utf8', timeout: 600_000 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${rt.name} stlm ${args[0]} exited with ${r.status ?? r.signal}: ${r.error?.message ?? r.stderr.slice(-1000)}`);
  const times = r.stderr.trim().split('\n').at(-1)!.match(/(\d+)m([\d.]+)s/g)!.map((t) => {
    const [, m, s] = /(\d+)m([\d.]+)s/.exec(t)!;
    return Number(m) * 60 + Number(s);
  });
  return { out: r.stdout + r.stderr, wall, cpu: times[0] + times[1] };
}

interface Speed { wall: number; cpu: number }

/** Tokens per second from the difference between a short and a long run. */
function marginal(short: { wall: number; cpu: number }, long: { wall: number; cpu: number }, tokens: number): Speed {
  return { wall: tokens / (long.wall - short.wall), cpu: tokens / (long.cpu - short.cpu) };
}

function decodeSpeed(rt: Runtime, threads: number, model: string): Speed {
  const run = (n: number) => {
    const r = stlm(rt, ['generate', '--model', model, '--prompt', 'ROMEO:', '--max-tokens', String(n), '--temperature', '0', '--threads', String(threads), '--stats']);
    const m = /; (\d+) tokens in [\d.]+ ms/.exec(r.out); // the decoded tokens, after the prompt's
    if (!m) throw new Error(`no decode statistics in ${rt.name}'s output: ${r.out.slice(-500)}`);
    return { ...r, tokens: Number(m[1]) };
  };
  const short = run(100), long = run(900);
  return marginal(short, long, long.tokens - short.tokens);
}

const trainOut = `/tmp/stlm-bench-runtimes-${process.pid}.gguf`;

function trainSpeed(rt: Runtime, threads: number, data: string): Speed {
  const run = (steps: number) => stlm(rt, ['train', '--data', data, '--config', 'tiny', '--steps', String(steps), '--batch', '8', '--ctx', '128',
    '--warmup', '2', '--eval-every', '0', '--eval-windows', '1', '--save-every', '0', '--threads', String(threads), '--out', trainOut]);
  return marginal(run(3), run(13), 10 * 8 * 128);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function main(argv: string[]): Promise<void> {
  const threadCounts = arg(argv, '--threads', '1').split(',').map(Number);
  const rounds = Number(arg(argv, '--rounds', '3'));
  const data = arg(argv, '--data', fileURLToPath(new URL('../../README.md', import.meta.url)));
  const found = runtimes();
  const ready = Object.values(found).filter((r): r is Runtime => typeof r !== 'string');
  for (const r of Object.values(found)) if (typeof r === 'string') console.log(`skipped: ${r}`);
  const model = `/tmp/stlm-bench-runtimes-${process.pid}-decode.gguf`;
  stlm(found.node as Runtime, ['train', '--data', data, '--config', '{"preset":"small","ctx":1024}', '--steps', '1', '--batch', '1', '--ctx', '64',
    '--eval-every', '0', '--eval-windows', '1', '--save-every', '0', '--out', model]);
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const samples = new Map<string, { decode: Speed[]; train: Speed[] }>();
  const key = (rt: Runtime, t: number) => `${rt.name}/${t}`;
  for (let round = 0; round < rounds; round++) {
    for (const t of threadCounts) {
      for (const rt of ready) {
        const s = samples.get(key(rt, t)) ?? { decode: [], train: [] };
        s.decode.push(decodeSpeed(rt, t, model));
        s.train.push(trainSpeed(rt, t, data));
        samples.set(key(rt, t), s);
        const [d, tr] = [s.decode.at(-1)!, s.train.at(-1)!];
        console.log(`round ${round + 1}: ${rt.name} ${rt.version}, ${t} thread(s): decode ${d.wall.toFixed(0)} tok/s (${d.cpu.toFixed(0)} per CPU-s), train ${tr.wall.toFixed(0)} tok/s (${tr.cpu.toFixed(0)} per CPU-s)`);
      }
    }
  }
  const rows = threadCounts.flatMap((t) => ready.map((rt) => {
    const s = samples.get(key(rt, t))!;
    return { runtime: rt.name, version: rt.version, threads: t,
      decode_tps: median(s.decode.map((x) => x.wall)), decode_cpu_tps: median(s.decode.map((x) => x.cpu)),
      train_tps: median(s.train.map((x) => x.wall)), train_cpu_tps: median(s.train.map((x) => x.cpu)) };
  }));
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('\n| runtime | threads | decode tok/s (wall) | per CPU-second | vs Node (CPU) | train tok/s (wall) | per CPU-second | vs Node (CPU) |\n|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const node = rows.find((n) => n.runtime === 'node' && n.threads === r.threads)!;
    console.log(`| ${r.runtime} ${r.version} | ${r.threads} | ${r.decode_tps.toFixed(0)} | ${r.decode_cpu_tps.toFixed(0)} | ${(r.decode_cpu_tps / node.decode_cpu_tps).toFixed(2)}x | ` +
      `${r.train_tps.toFixed(0)} | ${r.train_cpu_tps.toFixed(0)} | ${(r.train_cpu_tps / node.train_cpu_tps).toFixed(2)}x |`);
  }
  for (const f of [model, `${model}.ckpt`, trainOut, `${trainOut}.ckpt`]) rmSync(f, { force: true });
  if (argv.includes('--json')) console.log(JSON.stringify({ rows }));
}
