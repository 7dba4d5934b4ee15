// The HTML report of `stlm bench --report` in a real browser (headless Chromium through playwright-core):
// the page loads without errors, both tables hold every tier, the three charts render at their size with
// the Pareto frontier drawn, and a screenshot is taken (kept where STLM_REPORT_SCREENSHOT says, for a
// person to look at). Skips with a message when no Chromium is installed (apt-get install chromium).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { writeReport } from '../src/compare/report.js';
import { fakeResults } from './compare-fixtures.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const dir = mkdtempSync(join(tmpdir(), 'stlm-report-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('bench report in headless Chromium', { skip: CHROMIUM ? false : 'no Chromium installed (apt-get install chromium); the report check is skipped' }, () => {
  test('tables, charts and frontier render; screenshot', { timeout: 120_000 }, async () => {
    const files = await writeReport(fakeResults(), dir, { title: 'Test report' });
    assert.deepEqual(files.map((f) => f.slice(dir.length + 1)), ['bench.json', 'bench.md', 'quality-cost.svg', 'quality-latency.svg', 'quality-memory.svg', 'index.html']);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1240, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      await page.goto(pathToFileURL(join(dir, 'index.html')).href);
      const seen = await page.evaluate(() => {
        const rows = (id: string) => Array.from(document.querySelectorAll(`#${id} tbody tr`)).map((r) => r.getAttribute('data-tier'));
        const charts = Array.from(document.querySelectorAll('figure[data-chart]')).map((f) => {
          const svg = f.querySelector('svg')!;
          const box = svg.getBoundingClientRect();
          const frontier = Array.from(svg.querySelectorAll('path')).filter((p) => p.getAttribute('stroke') === '#c0392b').length;
          return { chart: f.getAttribute('data-chart'), width: box.width, height: box.height, frontier, text: svg.textContent ?? '' };
        });
        return { title: document.title, efficiency: rows('efficiency'), quality: rows('quality'), charts };
      });
      assert.deepEqual(errors, []);
      assert.equal(seen.title, 'Test report');
      assert.deepEqual(seen.efficiency, ['tiny', 'stories', 'small', 'large']);
      assert.deepEqual(seen.quality, ['tiny', 'stories', 'small', 'large']);
      assert.deepEqual(seen.charts.map((c) => c.chart), ['quality-cost.svg', 'quality-latency.svg', 'quality-memory.svg']);
      for (const c of seen.charts) {
        assert.ok(c.width > 400 && c.height > 250, `${c.chart}: ${c.width}×${c.height}`);
        assert.ok(c.frontier >= 2, `${c.chart}: the frontier line and its circles (${c.frontier} marks)`);
        for (const t of ['tiny', 'stories', 'small', 'large']) assert.ok(c.text.includes(t), `${c.chart} labels ${t}`);
      }
      const shot = process.env.STLM_REPORT_SCREENSHOT ?? join(dir, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10_000);
    } finally {
      await browser.close();
    }
  });
});
