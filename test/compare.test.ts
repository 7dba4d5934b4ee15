// Measuring and choosing tiers (src/compare): the Pareto frontier, recommend's choice on given
// measurements (fits; nothing fits, naming the failing limit and its margin), sizes as people write them,
// the router reading measured figures instead of declared ones, and the charts' frontier line.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { paretoFrontier } from '../src/compare/pareto.js';
import { type Candidate, candidatesFrom, checkCandidate, formatBytes, parseSize, recommend } from '../src/compare/recommend.js';
import { markdownReport, tradeoffCharts } from '../src/compare/report.js';
import { missingPlan } from '../src/compare/bench.js';
import { scatterSvg } from '../src/compare/chart.js';
import { loadTiersConfig, parseTiersConfig } from '../src/tiers/config.js';
import { parseMeasuredFigures } from '../src/tiers/measured.js';
import { routerFromConfig } from '../src/tiers/open.js';
import { fakeResults } from './compare-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'stlm-compare-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('Pareto frontier', () => {
  test('keeps the points no other point beats on both axes', () => {
    const pts = [
      { label: 'a', x: 1, y: 0.5 }, // cheapest
      { label: 'b', x: 2, y: 0.4 }, // dearer and worse than a: off
      { label: 'c', x: 3, y: 0.7 }, // dearer, better: on
      { label: 'd', x: 3, y: 0.6 }, // same cost as c, worse: off
      { label: 'e', x: 10, y: 0.7 }, // same quality as c, dearer: off
      { label: 'f', x: 20, y: 0.9 }, // best: on
    ];
    assert.deepEqual(paretoFrontier(pts), ['a', 'c', 'f']);
  });
  test('equal points are both on it; one point alone is on it', () => {
    assert.deepEqual(paretoFrontier([{ label: 'a', x: 1, y: 1 }, { label: 'b', x: 1, y: 1 }]), ['a', 'b']);
    assert.deepEqual(paretoFrontier([{ label: 'a', x: 5, y: 0 }]), ['a']);
  });
  test('lower-is-better quality (bits per byte) flips the y direction', () => {
    const pts = [{ label: 'a', x: 1, y: 2.0 }, { label: 'b', x: 2, y: 2.5 }, { label: 'c', x: 3, y: 1.5 }];
    assert.deepEqual(paretoFrontier(pts, { yBetter: 'lower' }), ['a', 'c']);
    assert.deepEqual(paretoFrontier(pts), ['a', 'b']); // higher is better: c (dearer, lower) is off
  });
});

describe('sizes', () => {
  test('decimal and binary units, plain bytes; bad text is refused', () => {
    assert.equal(parseSize('256MB'), 256e6);
    assert.equal(parseSize('1.5 GB'), 1.5e9);
    assert.equal(parseSize('300MiB'), 300 * 2 ** 20);
    assert.equal(parseSize('64k'), 64000);
    assert.equal(parseSize('4096'), 4096);
    assert.throws(() => parseSize('lots'), /a size must be a number of bytes with an optional unit \(e\.g\. 256MB, 1\.5GB, 300MiB\), got 'lots'/);
    assert.equal(formatBytes(61_234_567), '61.2 MB');
    assert.equal(formatBytes(256e6), '256 MB');
  });
});

const CANDIDATES: Candidate[] = [
  { name: 'tiny', offline: true, memoryBytes: 60e6, latencyMs: 4, accuracy: 0.58, costPerMillionUsd: 0.0005 },
  { name: 'small', offline: true, memoryBytes: 300e6, latencyMs: 40, accuracy: 0.7, costPerMillionUsd: 0.004 },
  { name: 'large', offline: false, memoryBytes: 0, latencyMs: 400, accuracy: 0.85, costPerMillionUsd: 0.6 },
];

describe('recommend', () => {
  test('picks the cheapest tier that fits every limit, and says why', () => {
    const r = recommend(CANDIDATES, { memoryBytes: 512e6, latencyMs: 50, minAccuracy: 0.6 }, { task: 'arc_easy.jsonl' });
    assert.equal(r.choice, 'small'); // tiny is under 0.6, large is too slow
    assert.deepEqual(r.fitting, ['small']);
    assert.match(r.reason, /^small: the cheapest per million tokens of 1 tier that fit memory ≤ 512 MB, time to first token ≤ 50 ms, accuracy ≥ 0\.6 on arc_easy\.jsonl \(memory 300 MB ≤ 512 MB, time to first token 40 ms ≤ 50 ms, accuracy 0\.700 ≥ 0\.6 on arc_easy\.jsonl/);
    const tiny = r.verdicts.find((v) => v.tier === 'tiny')!;
    assert.equal(tiny.fits, false);
    const acc = tiny.checks.find((c) => c.constraint === 'accuracy')!;
    assert.ok(Math.abs(acc.margin! - 0.02) < 1e-12);
  });
  test('with loose limits the cheapest wins; --prefer accuracy the most accurate', () => {
    assert.equal(recommend(CANDIDATES, {}).choice, 'tiny');
    const r = recommend(CANDIDATES, { memoryBytes: 1e9 }, { prefer: 'accuracy' });
    assert.equal(r.choice, 'large');
    assert.deepEqual(r.fitting, ['large', 'small', 'tiny']);
  });
  test('offline leaves the remote tier out, naming why', () => {
    const r = recommend(CANDIDATES, { offline: true, minAccuracy: 0.8 });
    assert.equal(r.choice, null);
    const large = r.verdicts.find((v) => v.tier === 'large')!;
    assert.deepEqual(large.checks.filter((c) => !c.ok).map((c) => c.text), ['needs the network (--offline)']);
  });
  test('nothing fits: each failing limit with its margin, and the nearest tier', () => {
    const r = recommend(CANDIDATES, { memoryBytes: 256e6, latencyMs: 50, minAccuracy: 0.6 }, { task: 'blimp' });
    assert.equal(r.choice, null);
    // tiny misses by 0.02 of accuracy (3% of the limit); small by 44 MB of memory (17%); large by 350 ms (700%).
    assert.equal(r.nearest?.tier, 'tiny');
    assert.equal(r.reason, 'no tier fits memory ≤ 256 MB, time to first token ≤ 50 ms, accuracy ≥ 0.6 on blimp; nearest: tiny, which fails accuracy 0.580 < 0.6 on blimp: short by 0.020');
    const small = r.verdicts.find((v) => v.tier === 'small')!.checks.find((c) => c.constraint === 'memory')!;
    assert.equal(small.ok, false);
    assert.equal(small.margin, 44e6);
    assert.equal(small.text, 'memory 300 MB > 256 MB: over by 44.0 MB (17%)');
    const large = r.verdicts.find((v) => v.tier === 'large')!.checks.find((c) => c.constraint === 'latency')!;
    assert.equal(large.text, 'time to first token 400 ms > 50 ms: over by 350 ms (700%)');
  });
  test('an unmeasured figure fails its limit and says so', () => {
    const v = checkCandidate({ ...CANDIDATES[2], accuracy: null }, { minAccuracy: 0.5 }, 'arc');
    assert.equal(v.fits, false);
    assert.equal(v.checks[0].text, 'accuracy on arc not measured (the tier cannot score)');
  });
  test('candidates from bench results: remote memory is 0 here, accuracy per task path', () => {
    const c = candidatesFrom(fakeResults(), '/fixtures/eval/arc_easy.jsonl');
    assert.deepEqual(c.map((x) => [x.name, x.memoryBytes, x.accuracy]), [['tiny', 61e6, 0.3], ['stories', 48e6, 0.25], ['small', 180e6, 0.26], ['large', 0, 0.3]]);
    assert.equal(c[3].costPerMillionUsd, 0.6);
  });
});

describe('bench plans and reports', () => {
  test('only what an earlier run lacks is measured again', () => {
    const r = fakeResults();
    const old = r.tiers[0];
    assert.deepEqual(missingPlan(old, r.settings, r.settings), { speed: false, texts: [], tasks: [] });
    const more = { ...r.settings, tasks: [...r.settings.tasks, '/fixtures/eval/lambada.jsonl'] };
    assert.deepEqual(missingPlan(old, more, r.settings), { speed: false, texts: [], tasks: ['/fixtures/eval/lambada.jsonl'] });
    assert.deepEqual(missingPlan(old, { ...r.settings, limit: 50 }, r.settings).tasks, r.settings.tasks); // another limit: other items
    assert.equal(missingPlan(old, { ...r.settings, maxTokens: 8 }, r.settings).speed, true);
    assert.deepEqual(missingPlan(undefined, r.settings), { speed: true, texts: r.settings.texts, tasks: r.settings.tasks });
  });
  test('the markdown tables carry every tier, estimates labelled', () => {
    const md = markdownReport(fakeResults());
    assert.match(md, /\| tier \| runs as \| parameters \| file \| peak RSS \| load \| first token \| prefill tok\/s \| decode tok\/s \| energy\/token \(est\.\) \| \$ \/ M tokens in, out \|/);
    assert.match(md, /\| tiny \(tiny\) \| stlm \| 886K \| 3\.6 MB \| 61\.0 MB \| 120 ms \| 3\.0 ms \| 2,000 \| 250 \| 40\.0 mJ \| \$0\.00042, \$0\.0017 \(est\.\) \|/);
    assert.match(md, /\| large \(large\) \| remote: http:\/\/127\.0\.0\.1:8080\/v1 \| – \| – \| remote \|/);
    assert.match(md, /Energy per generated token is an estimate, not a measurement/);
    assert.match(md, /\| tiny \| 2\.100 \| 0\.300 ± 0\.046 \| 0\.550 ± 0\.050 \| 0\.425 \|/);
  });
  test('three trade-off charts with their frontiers', async () => {
    const charts = await tradeoffCharts(fakeResults());
    assert.deepEqual(charts.map((c) => c.file), ['quality-cost.svg', 'quality-latency.svg', 'quality-memory.svg']);
    const latency = charts[1];
    // Quality: tiny 0.425, stories 0.35, small 0.33, large 0.45; latency: 3, 5, 8, 300 ms.
    assert.deepEqual(latency.frontier, ['tiny', 'large']);
    assert.match(latency.svg, /^<svg/);
    assert.match(latency.svg, /stroke="#c0392b"/);
    assert.match(latency.svg, /the Pareto frontier \(tiny, large\)/);
  });
  test('a chart without its frontier has no frontier line', async () => {
    const svg = await scatterSvg({ title: 'T', rows: [{ x: 0, y: 1, label: 'a', group: 'g' }, { x: 5, y: 2, label: 'b', group: 'g' }], xTitle: 'x', yTitle: 'y', symlogX: true });
    assert.doesNotMatch(svg, /#c0392b/);
    assert.match(svg, />a</);
  });
});

test('tiers config: threads is for llama.cpp tiers only', () => {
  assert.equal(parseTiersConfig('tiers:\n  - { name: s, tier: small, provider: llamacpp, model: m.gguf, threads: 1 }\n', '/x/t.yaml').tiers[0].threads, 1);
  assert.throws(() => parseTiersConfig('tiers:\n  - { name: t, tier: tiny, provider: local, model: m.gguf, threads: 1 }\n', 't.yaml'), /: t\.yaml: tiers\[0\]\.threads applies to provider llamacpp only, not local$/);
  assert.throws(() => parseTiersConfig('tiers:\n  - { name: s, tier: small, provider: llamacpp, model: m.gguf, threads: 0 }\n', 't.yaml'), /tiers\[0\]\.threads must be an integer > 0, got 0/);
});

describe('the router reads measured figures', () => {
  const yaml = (measured: string) => `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: t.gguf, memoryBytes: 1000, latencyMs: 1, quality: 0.9 }\n  - { name: big, tier: small, provider: local, model: b.gguf }\nmeasured: ${measured}\n`;
  test('measured latency, memory and quality replace the declared ones', async () => {
    writeFileSync(join(dir, 'bench.json'), JSON.stringify({ tiers: [{ name: 'tiny', route: { latencyMs: 5, memoryBytes: 61e6, quality: 0.42 } }, { name: 'other', route: {} }] }));
    writeFileSync(join(dir, 'tiers.yaml'), yaml('bench.json'));
    const config = await loadTiersConfig(join(dir, 'tiers.yaml'));
    assert.equal(config.measured, join(dir, 'bench.json'));
    const router = routerFromConfig(config);
    assert.deepEqual([router.tiers[0].latencyMs, router.tiers[0].memoryBytes, router.tiers[0].quality], [5, 61e6, 0.42]);
    const { skipped } = router.plan(10, 10, { memoryBudgetBytes: 50e6 });
    assert.deepEqual(skipped.map((s) => [s.tier, s.reason]), [['tiny', 'needs 61000000 bytes, over the memory budget of 50000000']]);
    const declared = routerFromConfig(parseTiersConfig(yaml('bench.json'), join(dir, 'tiers.yaml')));
    assert.equal(declared.tiers[0].memoryBytes, 1000); // parsing alone reads no file
  });
  test('a bad measurements file is one line naming the file and the field', async () => {
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ tiers: [{ name: 'tiny', route: { quality: 3 } }] }));
    writeFileSync(join(dir, 'bad.yaml'), yaml('bad.json'));
    await assert.rejects(loadTiersConfig(join(dir, 'bad.yaml')), (e: Error) => {
      assert.equal(e.message, `${join(dir, 'bad.yaml')}: measured: ${join(dir, 'bad.json')}: tiers[0].route.quality must be a number ≥ 0 and ≤ 1, got 3`);
      return true;
    });
    writeFileSync(join(dir, 'gone.yaml'), yaml('nowhere.json'));
    await assert.rejects(loadTiersConfig(join(dir, 'gone.yaml')), /measured: .*nowhere\.json: no such file \(the measurements file\)/);
    assert.throws(() => parseMeasuredFigures('{"rows": []}', 'x.json'), /x\.json: tiers is missing or not a list/);
  });
});
