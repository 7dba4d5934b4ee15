// `stlm route`: the example tiers file explains its decision without opening any model, runs a request
// on the tiny tier, and bad input exits 2 with one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../examples/tiers.yaml', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'route', ...args], { encoding: 'utf8', timeout: 120_000 });
const dir = mkdtempSync(join(tmpdir(), 'stlm-route-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('--explain: the plan for the example file, with constraints, as text and JSON', () => {
  const r = run('--tiers', EXAMPLE, '--explain', 'ROMEO:');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^tier: tiny\nwhy: {2}cascade \(escalates under -1\.5; multiple choice by the learned gain\): tiny is the first in the configured order of 3 fitting tiers/);
  const j = run('--tiers', EXAMPLE, '--explain', '--json', '--offline', 'ROMEO:');
  const d = JSON.parse(j.stdout) as { tier: string; attempts: { tier: string; outcome: string; reason: string }[] };
  assert.equal(d.tier, 'tiny');
  assert.deepEqual(d.attempts.map((a) => [a.tier, a.outcome]), [['large', 'skipped'], ['tiny', 'first'], ['small', 'next']]);
  assert.equal(d.attempts[0].reason, 'needs the network (offline only)');
});

test('a request the tiny tier is sure of: its text on stdout, the decision on stderr', () => {
  const cfg = join(dir, 'tiny.yaml');
  writeFileSync(cfg, `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(fileURLToPath(new URL('../../models/default.gguf', import.meta.url)))} }\nrouter: { policy: cheapest }\n`);
  const r = run('--tiers', cfg, '--max-tokens', '20', '--seed', '3', 'ROMEO:');
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.trim().length > 0);
  assert.match(r.stderr, /^tier: tiny\nwhy: {2}cheapest that fits/);
});

test('bad input: a missing file, a bad field, no tier fitting: one line, exit 2', () => {
  let r = run('--tiers', join(dir, 'none.yaml'), '--explain', 'x');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^stlm: error: .*none\.yaml: no such file\n$/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'tiers:\n  - { name: a, tier: tiny, provider: local, model: m.gguf, price: { prompt: -1, completion: 0 } }\n');
  r = run('--tiers', bad, '--explain', 'x');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^stlm: error: .*bad\.yaml: tiers\[0\]\.price\.prompt must be a number ≥ 0, got -1\n$/);
  r = run('--tiers', EXAMPLE, '--explain', '--min-quality', '0.9', 'x');
  assert.equal(r.status, 2);
  assert.match(r.stdout, /tier: \(none\)\nwhy: {2}no tier fits the constraints/);
});
