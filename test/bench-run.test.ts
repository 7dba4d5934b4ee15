// The benchmark dispatcher (bench/run.ts): --help shows a benchmark's header, and a flag the benchmark
// does not read is refused before anything runs (a typo such as --model for --models used to be
// ignored, and `--help` started the whole benchmark).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench');
const runJs = join(benchDir, 'run.js');
const bench = (...args: string[]) => spawnSync(process.execPath, [runJs, ...args], { encoding: 'utf8', timeout: 60_000 });

test('bench run: --help prints the header and the flags; unknown flags exit 2 naming them', () => {
  const help = bench('decode-vs-llamacpp', '--help');
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /npm run bench -- decode-vs-llamacpp \[--models/);
  assert.match(help.stdout, /flags: --bandwidth --engines --json --kv --models/);
  const typo = bench('decode-vs-llamacpp', '--model', 'rand25m');
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /bench decode-vs-llamacpp: unknown flag --model \(it takes .*--models/);
  const two = bench('kernels-ab', '--base', 'x', '--hlep', '--in-cahce');
  assert.equal(two.status, 2);
  assert.match(two.stderr, /unknown flags --hlep, --in-cahce/);
});

test('bench run: every benchmark declares the flags it reads', async () => {
  const names = readdirSync(benchDir).filter((f) => f.endsWith('.js') && f !== 'run.js');
  assert.ok(names.length >= 10, `found ${names.length} benchmarks`);
  for (const f of names) {
    const mod = (await import(join(benchDir, f))) as { flags?: unknown };
    assert.ok(Array.isArray(mod.flags) && mod.flags.every((x) => typeof x === 'string' && x.startsWith('--')), `${f} exports no flags list`);
  }
});
