// The playground (web/, built into dist/playground) in headless Chromium, served by `stlm serve`'s server
// in this process: the page's seeded generation from the embedded model gives Node's tokens; a dropped
// llama2.c checkpoint gives llama2.c's recorded greedy tokens; a non-model file gives an error in the page;
// a few training steps in the page give Node's losses for the same run, and the downloaded GGUF loads in
// Node with the weights Node's run trained, and llama.cpp continues it as stlm does. Skips with a message without Chromium or a built page.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type Browser, NO_CHROMIUM, launchChromium } from '../bench/lib/chromium.js';
import { generate } from '../src/generate/generate.js';
import { openLlamaCpp } from '../src/interop/llamacpp.js';
import { openModel } from '../src/io/open.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { enableRelaxedSimd } from '../src/kernels/wasm/relaxed-flag.js';
import { createModel } from '../src/models/architectures.js';
import { createServer } from '../src/server/server.js';
import { ISOLATION_HEADERS, PLAYGROUND_DIR } from '../src/server/static.js';
import { train } from '../src/train/trainer.js';
import { playgroundTrainOptions } from '../web/src/train-options.js';
import type { TrainSettings } from '../web/src/protocol.js';
import { maxAbsDiff } from './helpers.js';

// Chromium runs the relaxed-SIMD kernels (fused multiply-add); so does this process, for like-for-like numbers.
await enableRelaxedSimd();

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEFAULT_MODEL = join(ROOT, 'models/default.gguf');
const STORIES = join(ROOT, '../shared/fixtures/models/stories260K');
const skip = NO_CHROMIUM ?? (existsSync(join(PLAYGROUND_DIR, 'index.html')) ? false : `the playground is not built (${PLAYGROUND_DIR}): run npm run build`);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Page = any;

/** Drops files on the element `selector` as a user's drag and drop does (a DataTransfer in a drop event). */
async function dropFiles(page: Page, selector: string, files: { name: string; path: string }[]): Promise<void> {
  const payload = files.map((f) => ({ name: f.name, b64: readFileSync(f.path).toString('base64') }));
  await page.evaluate(({ selector, payload }: { selector: string; payload: { name: string; b64: string }[] }) => {
    const dt = new DataTransfer();
    for (const f of payload) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
    document.querySelector(selector)!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, { selector, payload });
}

/** Sets the page's sampling fields, clicks Generate and returns the generated token ids and text. */
async function generateInPage(page: Page, prompt: string, s: Record<string, string>): Promise<{ tokens: number[]; text: string }> {
  await page.fill('#prompt', prompt);
  for (const [id, v] of Object.entries(s)) await page.fill(`#${id}`, v);
  await page.waitForFunction(() => !(document.getElementById('generate') as HTMLButtonElement).disabled, null, { timeout: 120_000 });
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('generate-output')!.dataset.tokens !== undefined, null, { timeout: 120_000 });
  const tokens = await page.$eval('#generate-output', (el: HTMLElement) => el.dataset.tokens!);
  const text = await page.$eval('#generate-output', (el: HTMLElement) => el.textContent);
  return { tokens: tokens === '' ? [] : tokens.split(',').map(Number), text: text.slice(prompt.length) };
}

describe('stlm serve: the playground route', { skip: existsSync(join(PLAYGROUND_DIR, 'index.html')) ? false : `the playground is not built (${PLAYGROUND_DIR}): run npm run build` }, () => {
  test('the page and its files are public and cross-origin isolated; the API keeps its key and its 404', async () => {
    const app = createServer({ models: new Map(), apiKey: 'secret', playground: PLAYGROUND_DIR });
    try {
      const page = await app.inject({ method: 'GET', url: '/' });
      assert.equal(page.statusCode, 200);
      assert.match(String(page.headers['content-type']), /^text\/html/);
      for (const [k, v] of Object.entries(ISOLATION_HEADERS)) assert.equal(page.headers[k], v);
      const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(page.body)?.[1];
      assert.ok(script, 'index.html names its script');
      const js = await app.inject({ method: 'GET', url: `/${script}` });
      assert.equal(js.statusCode, 200);
      assert.match(String(js.headers['content-type']), /^text\/javascript/);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 401);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer secret' } })).statusCode, 200);
      const missing = await app.inject({ method: 'GET', url: '/assets/../../package.json', headers: { authorization: 'Bearer secret' } });
      assert.equal(missing.statusCode, 404);
    } finally {
      await app.close();
    }
  });

  test('without a built playground, / says how to build it', async () => {
    const app = createServer({ models: new Map(), playground: join(tmpdir(), 'stlm-no-such-playground') });
    try {
      const r = await app.inject({ method: 'GET', url: '/' });
      assert.equal(r.statusCode, 404);
      assert.match(r.body, /The playground is not built .*npm run build/);
    } finally {
      await app.close();
    }
  });
});

/** The built folder from a plain static server: no COOP/COEP headers, as GitHub Pages serves it. */
function plainStaticHost(): Promise<{ close(): void; url: string }> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
  const server = createHttpServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = normalize(join(PLAYGROUND_DIR, path === '/' ? 'index.html' : path));
    if (!file.startsWith(PLAYGROUND_DIR) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ close: () => server.close(), url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })));
}

describe('playground (headless Chromium)', { skip }, () => {
  let browser: Browser;
  let app: FastifyInstance;
  let url: string;
  let page: Page;
  /** The isolated page's seeded tokens, which the single-threaded page must repeat. */
  let isolatedTokens: number[] = [];
  before(async () => {
    browser = await launchChromium();
    app = createServer({ models: new Map(), playground: PLAYGROUND_DIR });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/?threads=2`;
    page = await browser.newPage({ acceptDownloads: true });
    page.on('pageerror', (e: Error) => console.error(`page error: ${e.message}`));
    await page.goto(url);
  });
  after(async () => {
    await browser?.close();
    await app?.close();
  });

  test('the page is cross-origin isolated and runs 2 threads', { timeout: 180_000 }, async () => {
    await page.waitForFunction(() => document.getElementById('engine-status')!.dataset.threads !== undefined, null, { timeout: 120_000 });
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
    assert.equal(await page.$eval('#engine-status', (el: HTMLElement) => el.dataset.threads), '2');
  });

  test('20 seeded tokens from the embedded model are the tokens Node generates', { timeout: 180_000 }, async () => {
    const sampling = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.02, repetitionPenalty: 1.1, seed: 7, maxTokens: 20 };
    const inPage = await generateInPage(page, 'ROMEO:', {
      temperature: '0.8', 'top-k': '40', 'top-p': '0.95', 'min-p': '0.02', 'repeat-penalty': '1.1', seed: '7', 'max-tokens': '20', 'stop-strings': '',
    });
    assert.equal(inPage.tokens.length, 20);
    isolatedTokens = inPage.tokens;
    // Node: the WebAssembly kernels alone (what the page runs), and the CLI's default (native kernels where built).
    for (const native of [false, true]) {
      const m = await openModel(DEFAULT_MODEL, { backend: await createWasmBackend({ threads: 1, native }) });
      try {
        const r = generate(m.model, m.tokenizer, 'ROMEO:', { ...sampling, addBos: m.addBos });
        assert.deepEqual(inPage.tokens, r.tokens, `native ${native}: the page's tokens differ from Node's`);
        assert.equal(inPage.text, r.text);
      } finally {
        m.dispose();
      }
    }
  });

  test('a dropped file that is not a model is an error in the page; the model before it stays', { timeout: 60_000 }, async () => {
    await dropFiles(page, '#drop-zone', [{ name: 'notes.txt', path: join(ROOT, 'README.md') }]);
    await page.waitForSelector('#generate-error:not([hidden])', { timeout: 30_000 });
    assert.match(await page.textContent('#generate-error'), /Cannot open the model: notes\.txt: not a model file stlm reads/);
    await page.waitForFunction(() => !(document.getElementById('generate') as HTMLButtonElement).disabled, null, { timeout: 30_000 });
    assert.match(await page.textContent('#model-status'), /default\.gguf/);
  });

  test('a dropped llama2.c checkpoint with its tokenizer gives llama2.c\'s greedy tokens', {
    timeout: 180_000, skip: existsSync(join(STORIES, 'stories260K.bin')) ? false : `no stories260K fixture at ${STORIES}`,
  }, async () => {
    await dropFiles(page, '#drop-zone', [{ name: 'stories260K.bin', path: join(STORIES, 'stories260K.bin') }, { name: 'tok512.bin', path: join(STORIES, 'tok512.bin') }]);
    await page.waitForFunction(() => /stories260K/.test(document.getElementById('model-status')!.textContent ?? ''), null, { timeout: 60_000 });
    const r = await generateInPage(page, '', { temperature: '0', 'top-k': '0', 'top-p': '1', 'min-p': '0', 'repeat-penalty': '1', 'max-tokens': '20' });
    const expected = readFileSync(join(STORIES, 'expected_llama2c_t0_n200.ids.txt'), 'utf8').trim().split(/\s+/).map(Number);
    assert.deepEqual(r.tokens, expected.slice(0, 20));
  });

  test('training in the page gives Node\'s losses; the downloaded GGUF loads in Node with Node\'s weights', { timeout: 300_000 }, async (ctx) => {
    // A text of a few kilobytes, made here (no fixture needed).
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'saw', 'dog', 'run', 'far', 'away', 'from', 'home'];
    let text = '';
    for (let i = 0; text.length < 6000; i++) text += `${words[(i * 7) % words.length]} ${words[(i * 3 + 1) % words.length]} ${words[(i * 5 + 2) % words.length]}.\n`;
    const settings: TrainSettings = { text, preset: 'nano', minutes: 5, steps: 6, batch: 4, lr: 0.002, seed: 3, samplePrompt: 'the ' };
    await page.click('#tab-train');
    await page.fill('#train-text', text);
    await page.selectOption('#preset', 'nano');
    for (const [id, v] of [['minutes', '5'], ['steps', '6'], ['batch', '4'], ['lr', '0.002'], ['train-seed', '3'], ['sample-prompt', 'the ']]) await page.fill(`#${id}`, v);
    await page.click('#train');
    await page.waitForFunction(() => document.getElementById('train-status')!.dataset.done !== undefined, null, { timeout: 240_000 });
    const pageLosses = JSON.parse(await page.$eval('#train-status', (el: HTMLElement) => el.dataset.losses!)) as number[];
    assert.equal(pageLosses.length, 6);

    const be = await createWasmBackend({ threads: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'stlm-playground-'));
    try {
      const nodeRun = await train(be, playgroundTrainOptions(settings), (g, c, weights, seed) => createModel(g, c, { weights, seed }));
      assert.ok(maxAbsDiff(pageLosses, nodeRun.losses) < 1e-4, `losses: page ${pageLosses.join(' ')}, Node ${nodeRun.losses.join(' ')}`);

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const file = join(dir, 'trained.gguf');
      await download.saveAs(file);
      const m = await openModel(file, { backend: be });
      assert.deepEqual(m.config, nodeRun.model.config);
      const nodeWeights = nodeRun.model.weights();
      for (const [name, w] of m.bundle.weights) assert.ok(maxAbsDiff(w, nodeWeights.get(name)!) < 1e-3, `${name} differs from Node's training`);
      const r = generate(m.model, m.tokenizer, 'the ', { maxTokens: 10, temperature: 0 });
      assert.equal(r.tokens.length, 10);
      m.dispose();
      // And llama.cpp runs it: its greedy continuation is stlm's (when node-llama-cpp is installed).
      const cpp = await openLlamaCpp(file, { contextSize: 64 });
      if (typeof cpp === 'string') ctx.diagnostic(`llama.cpp check skipped: ${cpp}`);
      else {
        try {
          assert.deepEqual(await cpp.greedy(Array.from(new TextEncoder().encode('the ')), 10), r.tokens);
        } finally {
          await cpp.dispose();
        }
      }
    } finally {
      be.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('from a static host without COOP/COEP: one thread, said on the page, and the same tokens', { timeout: 180_000 }, async () => {
    const host = await plainStaticHost();
    const plain: Page = await browser.newPage();
    try {
      await plain.goto(host.url);
      await plain.waitForFunction(() => document.getElementById('engine-status')!.dataset.threads !== undefined, null, { timeout: 120_000 });
      assert.equal(await plain.evaluate(() => self.crossOriginIsolated), false);
      assert.equal(await plain.$eval('#engine-status', (el: HTMLElement) => el.dataset.threads), '1');
      assert.match(await plain.textContent('#engine-status'), /not cross-origin isolated .*one thread/);
      assert.match(await plain.textContent('#tiers-status'), /No router here/);
      const r = await generateInPage(plain, 'ROMEO:', { temperature: '0.8', 'top-k': '40', 'top-p': '0.95', 'min-p': '0.02', 'repeat-penalty': '1.1', seed: '7', 'max-tokens': '20', 'stop-strings': '' });
      assert.deepEqual(r.tokens, isolatedTokens);
    } finally {
      await plain.close();
      host.close();
    }
  });
});
