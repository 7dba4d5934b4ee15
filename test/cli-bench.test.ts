// `stlm bench` on the embedded model with a tiny limit: the JSON has every field, measured in a child
// process of its own, and agrees with what is known independently (the file's size, the parameter count
// in MODELS.md, energy = CPU seconds × watts); --from measures only what is missing; `stlm recommend`
// chooses from it; bad input (a config that fails, a tier that is down, an unknown task file) exits 2
// with one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BenchResults } from '../src/compare/types.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
const dir = mkdtempSync(join(tmpdir(), 'stlm-bench-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = join(dir, 'tiers.yaml');
writeFileSync(config, `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(MODEL)} }\n`);
// Three BLiMP-style pairs and three multiple-choice items, written here so the test needs no fixture.
const blimp = join(dir, 'pairs.jsonl');
writeFileSync(blimp, [
  { sentence_good: 'The king is here.', sentence_bad: 'The king are here.' },
  { sentence_good: 'She has seen it.', sentence_bad: 'She have seen it.' },
  { sentence_good: 'We were there.', sentence_bad: 'We was there.' },
].map((x) => JSON.stringify(x)).join('\n') + '\n');
const mc = join(dir, 'choices.jsonl');
writeFileSync(mc, [
  { query: 'ROMEO: I', choices: [' love', ' xq'], gold: 0 },
  { query: 'My lord,', choices: [' I', ' zzz'], gold: 0 },
  { query: 'The', choices: [' king', ' 7#'], gold: 0 },
].map((x) => JSON.stringify(x)).join('\n') + '\n');
const text = join(dir, 'text.txt');
writeFileSync(text, 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n'.repeat(100)); // 8,100 bytes: its last 10% holds the 400 scored

const BENCH = ['--tiers', config, '--max-tokens', '8', '--repeats', '1', '--limit', '2', '--text', text, '--text-bytes', '400', '--watts-per-core', '12', '--usd-per-kwh', '0.2'];
let first: BenchResults;

test('bench: every field, from a child process of its own', () => {
  const out = join(dir, 'bench.json'), report = join(dir, 'report');
  const r = run('bench', ...BENCH, '--tasks', blimp, '--json', '--out', out, '--report', report);
  assert.equal(r.status, 0, r.stderr);
  first = JSON.parse(r.stdout) as BenchResults;
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), first);
  assert.equal(first.stlmBench, 1);
  assert.equal(first.settings.limit, 2);
  const [t] = first.tiers;
  assert.equal(t.name, 'tiny');
  assert.equal(t.provider, 'local');
  assert.equal(t.parameters, 886_272); // MODELS.md
  assert.equal(t.fileBytes, statSync(MODEL).size);
  assert.ok(t.loadMs > 0);
  // Memory: the child's own peak, above its size before the model was opened by at least the weights' bytes.
  assert.equal(t.memory!.ownProcess, true);
  assert.ok(t.memory!.baseRssBytes > 0);
  assert.ok(t.memory!.peakRssBytes - t.memory!.baseRssBytes >= t.fileBytes!, JSON.stringify(t.memory));
  // Speed: greedy, at most --max-tokens, rates from the counts.
  const s = t.speed!;
  assert.ok(s.promptTokens > 100 && s.generatedTokens >= 1 && s.generatedTokens <= 8, JSON.stringify(s));
  assert.ok(s.timeToFirstTokenMs > 0 && s.prefillTokensPerS > 0);
  assert.ok(Math.abs(s.prefillTokensPerS - s.promptTokens / (s.timeToFirstTokenMs / 1000)) < 1e-6 * s.prefillTokensPerS);
  if (s.generatedTokens >= 2) assert.ok(s.decodeTokensPerS! > 0);
  // Energy: CPU seconds × the watts given, labelled an estimate; cost: that energy at the price given.
  const e = t.energy!;
  assert.equal(e.estimate, true);
  assert.equal(e.wattsPerCore, 12);
  if (e.cpuSecondsPerToken !== null) {
    assert.ok(Math.abs(e.joulesPerToken! - e.cpuSecondsPerToken * 12) < 1e-12);
    assert.ok(Math.abs(t.cost!.completionPerMillionUsd - (e.joulesPerToken! * 1e6 / 3.6e6) * 0.2) < 1e-12);
  }
  assert.equal(t.cost!.source, 'energy estimate');
  // Quality: bits per byte of the text, accuracy on the pairs (2 of 3 items by --limit).
  assert.equal(t.bpb.length, 1);
  assert.equal(t.bpb[0].bytes, 400); // ASCII text: exactly the bytes asked for
  assert.ok(t.bpb[0].bpb > 0.5 && t.bpb[0].bpb < 8, String(t.bpb[0].bpb));
  assert.equal(t.tasks.length, 1);
  assert.equal(t.tasks[0].results[0].n, 2);
  assert.equal(t.quality, t.tasks[0].acc);
  assert.deepEqual(t.route, { latencyMs: s.timeToFirstTokenMs, memoryBytes: t.memory!.peakRssBytes, quality: t.quality });
  for (const f of ['index.html', 'bench.json', 'bench.md', 'quality-cost.svg', 'quality-latency.svg', 'quality-memory.svg']) assert.ok(existsSync(join(report, f)), f);
});

test('bench --from: what was measured is reused, only the new task is measured', () => {
  const r = run('bench', ...BENCH, '--tasks', blimp, mc, '--json', '--from', join(dir, 'bench.json'), '--out', join(dir, 'bench2.json'));
  assert.equal(r.status, 0, r.stderr);
  const second = JSON.parse(r.stdout) as BenchResults;
  const [a, b] = [first.tiers[0], second.tiers[0]];
  assert.deepEqual(b.speed, a.speed);
  assert.deepEqual(b.bpb, a.bpb);
  assert.deepEqual(b.tasks[0], a.tasks[0]);
  assert.equal(b.tasks[1].path, mc);
  assert.equal(b.tasks[1].results[0].n, 2);
  assert.ok(Math.abs(b.quality! - (a.tasks[0].acc + b.tasks[1].acc) / 2) < 1e-12);
});

test('recommend from the measurements: a fit, and nothing fitting with the limit and margin', () => {
  const from = join(dir, 'bench2.json');
  let r = run('recommend', '--tiers', config, '--task', mc, '--limit', '2', '--from', from, '--memory', '4GB', '--min-accuracy', '0');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^recommended: tiny\nwhy: tiny: the cheapest per million tokens of 1 tier that fit memory ≤ 4\.0 GB, accuracy ≥ 0 on /);
  r = run('recommend', '--tiers', config, '--task', mc, '--limit', '2', '--from', from, '--memory', '1MB', '--json');
  assert.equal(r.status, 1, r.stderr);
  const rec = JSON.parse(r.stdout) as { choice: null; nearest: { tier: string; failing: { constraint: string; margin: number }[] } };
  assert.equal(rec.choice, null);
  assert.equal(rec.nearest.tier, 'tiny');
  const peak = (JSON.parse(readFileSync(from, 'utf8')) as BenchResults).tiers[0].memory!.peakRssBytes;
  assert.deepEqual(rec.nearest.failing.map((f) => [f.constraint, f.margin]), [['memory', peak - 1e6]]);
});

/** A port nothing listens on: one the system gave out and that was closed again. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('bad input: one line, exit code 2', async () => {
  const oneLine = (r: ReturnType<typeof run>, re: RegExp) => {
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  };
  oneLine(run('bench', '--tiers', join(dir, 'none.yaml')), /^stlm: error: .*none\.yaml: no such file\n$/);
  writeFileSync(join(dir, 'bad.yaml'), 'tiers:\n  - { name: x, tier: huge, provider: local, model: m.gguf }\n');
  oneLine(run('bench', '--tiers', join(dir, 'bad.yaml')), /bad\.yaml: tiers\[0\]\.tier must be one of tiny, small, large, got "huge"/);
  const port = await closedPort();
  writeFileSync(join(dir, 'down.yaml'), `tiers:\n  - { name: large, tier: large, provider: openai, model: m, baseUrl: "http://127.0.0.1:${port}/v1" }\n`);
  oneLine(run('bench', '--tiers', join(dir, 'down.yaml')), new RegExp(`^stlm: error: tier large is down: http://127\\.0\\.0\\.1:${port}/v1 does not answer \\(ECONNREFUSED\\)\\n$`));
  oneLine(run('bench', '--tiers', config, '--tasks', join(dir, 'nowhere.jsonl')), /^stlm: error: tasks: .*nowhere\.jsonl: no such file or folder\n$/);
  oneLine(run('recommend', '--tiers', config, '--task', join(dir, 'nowhere.jsonl')), /^stlm: error: --task: .*nowhere\.jsonl: no such file or folder\n$/);
  oneLine(run('bench', '--tiers', config, '--only', 'big'), /has no tier 'big'; its tiers: tiny\n$/);
  const flag = run('recommend', '--tiers', config, '--task', mc, '--memory', 'lots'); // a bad flag: commander's error, then the usage
  assert.notEqual(flag.status, 0);
  assert.match(flag.stderr.split('\n')[0], /^error: option '--memory <size>' argument 'lots' is invalid\. --memory: a size must be a number of bytes with an optional unit/);
});
