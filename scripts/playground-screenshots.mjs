// Screenshots of the playground's tabs for docs/ (run after `npm run build`):
//   node scripts/playground-screenshots.mjs
// Serves the built page the way `stlm serve --tiers` does (two local tiers: the embedded model and
// stories260K from the shared fixtures), drives each tab in headless Chromium and writes
// docs/playground-{generate,train,tiers,phone}.png. Look at them before committing.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../dist/bench/lib/chromium.js';
import { createServer } from '../dist/src/server/server.js';
import { PLAYGROUND_DIR } from '../dist/src/server/static.js';
import { parseTiersConfig } from '../dist/src/tiers/config.js';
import { routerFromConfig } from '../dist/src/tiers/open.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = join(ROOT, '../shared/fixtures');
const stories = join(FIXTURES, 'models/stories260K/stories260K.bin');
const corpus = join(FIXTURES, 'corpora/tinyshakespeare/input.txt');

const tiers = parseTiersConfig(JSON.stringify({
  tiers: [
    { name: 'tiny', tier: 'tiny', provider: 'local', model: join(ROOT, 'models/default.gguf'), price: { prompt: 0.01, completion: 0.02 } },
    ...(existsSync(stories) ? [{ name: 'stories', tier: 'small', provider: 'local', model: stories, price: { prompt: 0.1, completion: 0.2 } }] : []),
  ],
  router: { policy: 'cascade', threshold: -1.2 },
}), 'screenshots.json');
const router = routerFromConfig(tiers);
const models = new Map(router.tiers.map((t) => [t.name, t.model]));
models.set('auto', router);
const app = createServer({ models, playground: PLAYGROUND_DIR });
await app.listen({ host: '127.0.0.1', port: 0 });
const url = `http://127.0.0.1:${app.server.address().port}/`;
const browser = await launchChromium();
const shot = async (page, name) => {
  await page.screenshot({ path: join(ROOT, 'docs', `playground-${name}.png`), fullPage: true });
  console.log(`wrote docs/playground-${name}.png`);
};
const ready = (page) => page.waitForFunction(() => !document.getElementById('generate').disabled, null, { timeout: 120_000 });

try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await ready(page);
  await page.fill('#max-tokens', '160');
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('generate-output').dataset.tokens !== undefined, null, { timeout: 120_000 });
  await shot(page, 'generate');

  await page.click('#tab-train');
  const text = existsSync(corpus) ? readFileSync(corpus, 'utf8').slice(0, 200_000) : 'the cat sat on the mat. '.repeat(4000);
  await page.$eval('#train-text', (el, t) => { el.value = t; }, text); // page.fill types 200 kB too slowly
  await page.fill('#minutes', '0.75');
  await page.fill('#sample-prompt', 'ROMEO:');
  await page.click('#train');
  await page.waitForTimeout(20_000);
  await page.click('#sample-now');
  await page.waitForFunction(() => document.getElementById('train-status').dataset.done !== undefined, null, { timeout: 300_000 });
  await shot(page, 'train');

  await page.click('#tab-tiers');
  await page.waitForSelector('#tiers-form:not([hidden])');
  for (const prompt of ['ROMEO:', 'Once upon a time']) {
    await page.fill('#tiers-prompt', prompt);
    const rows = await page.$$eval('#tiers-table tbody tr', (r) => r.length);
    await page.click('#tiers-send');
    await page.waitForFunction((n) => document.querySelectorAll('#tiers-table tbody tr').length > n || !document.getElementById('tiers-error').hidden, rows, { timeout: 120_000 });
  }
  await shot(page, 'tiers');

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
  await phone.goto(url);
  await ready(phone);
  await phone.fill('#max-tokens', '60');
  await phone.click('#generate');
  await phone.waitForFunction(() => document.getElementById('generate-output').dataset.tokens !== undefined, null, { timeout: 120_000 });
  await shot(phone, 'phone');
} finally {
  await browser.close();
  await app.close();
  await Promise.all([...new Set(models.values())].map((m) => m.close()));
}
