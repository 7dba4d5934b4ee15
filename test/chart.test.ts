// Benchmark charts (bench/lib/chart.ts, vega-lite + vega rendered headless): the SVG carries the titles and
// point labels; bad rows fail with an error naming the chart, row and field; bench output is parsed
// whatever else the file holds.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseBenchOutput } from '../bench/charts.js';
import { groupedBarsSvg, linesSvg, placeLabels, scatterSvg, textWidth, writeSvg } from '../bench/lib/chart.js';

const ROWS = [
  { x: 886272, y: 2.7715, label: 'plain tiny', group: 'sharing' },
  { x: 443904, y: 2.8096, label: 'FFN shared', group: 'sharing' },
  { x: 312320, y: 2.8121, label: 'repeated & shared <2>', group: 'repeat' },
];

/** The visible text of an SVG: every text node, entities decoded. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([\s\S]*?)<\/text>/g)].map((m) =>
    m[1].replace(/<[^>]+>/g, ' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').replace(/\s+/g, ' ').trim(),
  );
}

describe('charts', () => {
  test('a 3-point scatter has its titles, axis titles and point labels, all visible', async () => {
    const svg = await scatterSvg({
      title: 'Bits per byte against parameters', subtitle: ['2026-11-28, npm run bench -- stlm-ablations'],
      xTitle: 'parameters (count, log scale)', yTitle: 'validation bits/byte', groupTitle: 'study', logX: true, rows: ROWS,
    });
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const t = texts(svg);
    for (const s of ['Bits per byte against parameters', 'parameters (count, log scale)', 'validation bits/byte', 'study', 'sharing', 'repeat', ...ROWS.map((r) => r.label)]) {
      assert.ok(t.some((x) => x.includes(s)), `"${s}" missing from the SVG's text: ${JSON.stringify(t)}`);
    }
    assert.ok(t.some((x) => x.includes('2026-11-28, npm run bench -- stlm-ablations')), 'subtitle missing');
    assert.ok(!/…/.test(svg), 'no label is truncated');
    assert.ok(!/opacity="0"/.test(svg), 'no mark is hidden');
    assert.equal((svg.match(/aria-roledescription="point"/g) ?? []).length, 3, 'one point per row');
  });

  test('labels of nearby points do not overlap', () => {
    const pts = [{ px: 100, py: 100, label: 'first label' }, { px: 102, py: 103, label: 'second label' }, { px: 98, py: 98, label: 'third label' }];
    const places = placeLabels(pts, 400, 300);
    const boxes = pts.map((p, i) => {
      const w = textWidth(p.label, 10), c = places[i];
      const x = p.px + c.dx, y = p.py + c.dy;
      const x0 = c.align === 'left' ? x : c.align === 'right' ? x - w : x - w / 2;
      const y0 = c.baseline === 'top' ? y : c.baseline === 'bottom' ? y - 10 : y - 5;
      return { x0, y0, x1: x0 + w, y1: y0 + 10 };
    });
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i], b = boxes[j];
        assert.ok(a.x1 <= b.x0 || b.x1 <= a.x0 || a.y1 <= b.y0 || b.y1 <= a.y0, `labels ${i} and ${j} overlap`);
      }
    }
  });

  test('grouped bars and lines render their titles and series', async () => {
    const bars = await groupedBarsSvg({
      title: 'Decode', xTitle: 'model', yTitle: 'decode (tokens/s)', seriesTitle: 'engine', logY: true, valueFormat: ',.0f',
      rows: [{ category: 'tiny f32', series: 'stlm', value: 2784 }, { category: 'tiny f32', series: 'llama.cpp', value: 1623 }],
    });
    const tb = texts(bars);
    for (const s of ['Decode', 'decode (tokens/s)', 'stlm', 'llama.cpp', 'tiny f32', '2,784', '1,623']) assert.ok(tb.some((x) => x.includes(s)), `"${s}" missing`);
    const lines = await linesSvg({
      title: 'Loss', xTitle: 'step', yTitle: 'loss (nats/token)',
      rows: [{ x: 0, y: 5.5, series: 'a' }, { x: 10, y: 3.1, series: 'a' }, { x: 0, y: 5.4, series: 'b' }, { x: 10, y: 2.9, series: 'b' }],
    });
    const tl = texts(lines);
    for (const s of ['Loss', 'step', 'loss (nats/token)', 'a', 'b']) assert.ok(tl.some((x) => x.includes(s)), `"${s}" missing`);
  });

  test('bad input gives a clear error', async () => {
    const base = { title: 'T', xTitle: 'x', yTitle: 'y' };
    await assert.rejects(scatterSvg({ ...base, rows: [] }), /chart "T": no rows to draw/);
    await assert.rejects(scatterSvg({ ...base, rows: [ROWS[0], { ...ROWS[1], y: NaN }] }), /chart "T": row 2 \(FFN shared \/ sharing\): y must be a finite number, got NaN/);
    await assert.rejects(scatterSvg({ ...base, rows: [{ ...ROWS[0], x: Infinity }] }), /row 1 .*x must be a finite number, got Infinity/);
    await assert.rejects(scatterSvg({ ...base, rows: [{ ...ROWS[0], x: null as unknown as number }] }), /x must be a finite number, got null/);
    await assert.rejects(scatterSvg({ ...base, logX: true, rows: [{ ...ROWS[0], x: 0 }] }), /x = 0 cannot be drawn on a log scale/);
    await assert.rejects(groupedBarsSvg({ ...base, rows: [{ category: 'c', series: 's', value: -1 }], logY: true }), /log scale/);
    await assert.rejects(linesSvg({ ...base, rows: [{ x: 1, y: Number('x'), series: 's' }] }), /y must be a finite number, got NaN/);
  });

  test('bench output is found among other lines', () => {
    const jsonl = 'progress…\n{"study":"a","val_bpb":2.5}\nnot json {\n{"study":"b","val_bpb":2.4}\n';
    assert.deepEqual(parseBenchOutput(jsonl).rows, [{ study: 'a', val_bpb: 2.5 }, { study: 'b', val_bpb: 2.4 }]);
    const wrapped = 'type | engine\nf32 | stlm\n{"rows":[{"model":"m","decode_tps":1}],"threads":1}\n';
    assert.deepEqual(parseBenchOutput(wrapped), { rows: [{ model: 'm', decode_tps: 1 }], meta: { threads: 1 } });
    const pretty = 'log line\n{\n  "rows": [ { "a": 1 } ],\n  "date": "d"\n}\n';
    assert.deepEqual(parseBenchOutput(pretty), { rows: [{ a: 1 }], meta: { date: 'd' } });
    assert.deepEqual(parseBenchOutput('[{"a":1},{"a":2}]').rows, [{ a: 1 }, { a: 2 }]);
    assert.throws(() => parseBenchOutput('no json here\n', 'x.txt'), /x.txt: no JSON rows found/);
  });

  test('writeSvg writes the file whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stlm-chart-'));
    try {
      const path = join(dir, 'sub', 'c.svg');
      const svg = await scatterSvg({ title: 'T', xTitle: 'x', yTitle: 'y', rows: ROWS });
      await writeSvg(path, svg);
      assert.equal(readFileSync(path, 'utf8'), `${svg}\n`);
      await assert.rejects(writeSvg(path, 'not svg'), /not an SVG document/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
