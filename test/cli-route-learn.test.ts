// `stlm route-learn`: two local tiers score BLiMP-style pairs; the file it writes loads, names the tiers,
// and its accuracies are the tiers' own (scored here in-process); a tiers config naming it routes by it;
// bad flags exit 2 with one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EscalationModel } from '../src/tiers/escalation.js';
import { LocalModel } from '../src/tiers/local.js';
import { loadTiersConfig } from '../src/tiers/config.js';
import { routerFromConfig } from '../src/tiers/open.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const MODELS = { tiny: fileURLToPath(new URL('../../models/default.gguf', import.meta.url)), small: fileURLToPath(new URL('../../examples/models/brown-13m.q8_0.gguf', import.meta.url)) };
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'route-learn', ...args], { encoding: 'utf8', timeout: 300_000 });
const dir = mkdtempSync(join(tmpdir(), 'stlm-route-learn-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const PAIRS = [
  ['The dogs are barking.', 'The dogs is barking.'], ['No student has ever lied.', 'The student has ever lied.'],
  ['She saw herself.', 'She saw himself.'], ['The cats were asleep.', 'The cats was asleep.'],
  ['Who did you see?', 'Who did you see him?'], ['He has written a book.', 'He has wrote a book.'],
  ['Nobody ever left early.', 'Somebody ever left early.'], ['These books are red.', 'These book are red.'],
  ['The man was seen.', 'The man was saw.'], ['They like each other.', 'They likes each other.'],
];
const items = join(dir, 'pairs.jsonl');
writeFileSync(items, PAIRS.map(([g, b]) => JSON.stringify({ sentence_good: g, sentence_bad: b })).join('\n') + '\n');
const config = join(dir, 'tiers.yaml');
writeFileSync(config, `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(MODELS.tiny)} }\n  - { name: small, tier: small, provider: local, model: ${JSON.stringify(MODELS.small)} }\nrouter: { policy: cascade, threshold: -2, order: [tiny, small] }\n`);

test('fits, writes the model and says what the cascade does with it; the tiers it names are the ones scored', async () => {
  const out = join(dir, 'esc.json');
  const r = run('--tiers', config, '--items', items, '--out', out, '--json');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { weak: string; strong: string; items: number; accWeak: number; accStrong: number; escalated: number; learned: number; random: number };
  assert.deepEqual([summary.weak, summary.strong, summary.items], ['tiny', 'small', 10]);
  // The accuracies are each tier's own on these pairs, scored here without the CLI.
  for (const [name, key] of [['tiny', 'accWeak'], ['small', 'accStrong']] as const) {
    const m = await LocalModel.open(MODELS[name], { name, tier: name });
    let right = 0;
    for (const [g, b] of PAIRS) {
      const [sg, sb] = await m.score('', [g, b]);
      if (sg.logprob > sb.logprob) right++;
    }
    await m.close();
    assert.equal(summary[key], right / PAIRS.length, `${name}'s accuracy`);
  }
  assert.ok(summary.random >= Math.min(summary.accWeak, summary.accStrong) && summary.random <= Math.max(summary.accWeak, summary.accStrong));
  const model = EscalationModel.read(out);
  assert.deepEqual([model.fit.weakTier, model.fit.strongTier, model.fit.items, model.fit.source], ['tiny', 'small', 10, items]);
  // Named on the tiny tier, the router uses it.
  const withModel = join(dir, 'tiers-esc.yaml');
  writeFileSync(withModel, `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(MODELS.tiny)}, escalation: esc.json }\n  - { name: small, tier: small, provider: local, model: ${JSON.stringify(MODELS.small)} }\nrouter: { policy: cascade, order: [tiny, small] }\n`);
  const router = routerFromConfig(await loadTiersConfig(withModel));
  const d = await router.choose('', PAIRS[0]);
  assert.match(d.route.attempts[0].reason, /^predicted gain of escalating -?\d\.\d{3} \(P\(right\): small \d\.\d{3}, tiny \d\.\d{3}\)/);
  // `stlm eval tasks --tier auto` measures the router as it answers: its picks, item by item.
  let right = 0;
  for (const pair of PAIRS) if ((await router.choose('', pair)).index === 0) right++;
  await router.close();
  const e = spawnSync(process.execPath, [CLI, 'eval', 'tasks', items, '--tiers', withModel, '--tier', 'auto', '--json'], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(e.status, 0, e.stderr);
  const report = JSON.parse(e.stdout) as { model: string; results: { acc: number }[] };
  assert.equal(report.model, 'auto');
  assert.equal(report.results[0].acc, right / PAIRS.length);
});

test('bad flags and inputs: one line, exit 2', () => {
  const out = join(dir, 'never.json');
  let r = run('--tiers', config, '--items', items, '--out', out, '--weak', 'huge');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^stlm: error: --weak: 'huge' is not a tier \(tiers in .*tiers\.yaml: tiny, small\)\n$/);
  r = run('--tiers', config, '--items', items, '--out', out, '--weak', 'small');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--strong: no tier follows the weak one; name one/);
  r = run('--tiers', config, '--items', join(dir, 'none.jsonl'), '--out', out);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /none\.jsonl/);
  r = run('--tiers', config, '--items', items, '--out', out, '--normalize', 'tokens');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--normalize .*'tokens'.*(none, bytes|Allowed choices are none, bytes)/);
  r = run('--tiers', config, '--items', items, '--out', out, '--folds', '6');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /10 items; --folds 6 needs at least 12/);
});
