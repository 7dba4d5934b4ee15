// The WebAssembly backend, unchanged, in a real browser (headless Chromium through playwright-core):
// with cross-origin isolation it runs 2 threads over shared memory; without it, one thread.
// Results are checked against the reference backend running in the same page.
// Skips with a message when no Chromium is installed (apt-get install chromium).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { type Browser, CHROMIUM, NO_CHROMIUM, launchChromium } from '../bench/lib/chromium.js';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.html': 'text/html', '.map': 'application/json' };

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import { createWasmBackend } from '/dist/src/kernels/wasm/backend.js';
import { ReferenceBackend } from '/dist/src/kernels/reference.js';
try {
  const be = await createWasmBackend({ threads: 2 });
  const ref = new ReferenceBackend();
  const [m, k, n] = [67, 129, 93];
  const A = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
  const B = Float32Array.from({ length: n * k }, (_, i) => Math.cos(i));
  const out = [];
  for (const b of [be, ref]) {
    const a = b.alloc(A.length), bb = b.alloc(B.length), c = b.alloc(m * n);
    b.write(a, A); b.write(bb, B);
    b.matmul(a, bb, c, { m, k, n, transB: true });
    out.push(b.read(c));
  }
  let err = 0, scale = 0;
  for (let i = 0; i < out[1].length; i++) { err = Math.max(err, Math.abs(out[0][i] - out[1][i])); scale = Math.max(scale, Math.abs(out[1][i])); }
  window.result = { name: be.name, threads: be.threads, isolated: self.crossOriginIsolated, relErr: err / scale };
  be.dispose();
} catch (e) { window.result = { error: String(e && e.stack || e) }; }
</script>`;

function serve(isolated: boolean): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const headers: Record<string, string> = isolated ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(PAGE);
      return;
    }
    const file = normalize(join(ROOT, path));
    if (!file.startsWith(join(ROOT, 'dist')) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    resolve({ server, url: `http://127.0.0.1:${addr.port}/` });
  }));
}

describe('browser (headless Chromium)', { skip: CHROMIUM ? false : NO_CHROMIUM }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => browser?.close());

  for (const isolated of [true, false]) {
    // A time limit of its own: a page whose main thread spins (a pool waiting on a worker that never runs
    // its share) also blocks the page-side polling of waitForFunction, so its timeout alone never fires.
    test(isolated ? 'cross-origin isolated: worker pool over shared memory' : 'not isolated: single-threaded fallback', { timeout: 180_000 }, async () => {
      const { server, url } = await serve(isolated);
      try {
        const page = await browser.newPage();
        await page.goto(url);
        await page.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined, null, { timeout: 90_000 }); // generous: a loaded CI host can take long to start the page's workers
        const r = await page.evaluate(() => (window as unknown as { result: Record<string, unknown> }).result);
        assert.equal(r.error, undefined, String(r.error));
        assert.equal(r.isolated, isolated);
        assert.equal(r.threads, isolated ? 2 : 1);
        assert.ok((r.relErr as number) < 1e-5, `browser matmul differs from the reference by ${r.relErr}`);
        await page.close();
      } finally {
        server.close();
      }
    });
  }
});
