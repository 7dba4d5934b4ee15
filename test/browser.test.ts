// The WebAssembly backend, unchanged, in a real browser (headless Chromium through playwright-core):
// with cross-origin isolation it runs 2 threads over shared memory; without it, one thread.
// Results are checked against the reference backend running in the same page.
// Skips with a message when no Chromium is installed (apt-get install chromium).
import assert from 'node:assert/strict';
import { type Browser, CHROMIUM, NO_CHROMIUM, launchChromium, serveDist } from '../bench/lib/chromium.js';
import { after, before, describe, test } from 'node:test';

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

/**
 * A few training steps of the tiny config in the page under a memory budget just below what whole
 * batches need, so the plan (measured on the dry backend, in the page) must split the batch or recompute;
 * the WebAssembly heap the steps reach is compared with the plan.
 */
const TRAIN_PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import { createWasmBackend } from '/dist/src/kernels/wasm/backend.js';
import { PRESETS, parameterShapes } from '/dist/src/models/config.js';
import { Llama } from '/dist/src/models/llama.js';
import { Graph } from '/dist/src/tensor/tensor.js';
import { accumulateGradients } from '/dist/src/train/accumulate.js';
import { AdamW } from '/dist/src/train/adamw.js';
import { planMemory } from '/dist/src/train/memory-plan.js';
import { Rng } from '/dist/src/util/rng.js';
try {
  const be = await createWasmBackend({ threads: 2 });
  const cfg = PRESETS.tiny, batch = 8, T = 128;
  const g = new Graph(be), model = new Llama(g, cfg, undefined, 1);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t));
  const zeros = new Map(parameterShapes(cfg).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]));
  const o = { batch, seqLen: T, heldBytes: be.memoryBytes(), build: (dg) => new Llama(dg, cfg, zeros, 1) };
  const whole = planMemory({ ...o, budget: 2 ** 32 });
  const plan = planMemory({ ...o, budget: whole.expectedBytes - 1 });
  model.recompute = plan.recompute;
  // Text-like windows: a repeating phrase, so the loss must fall within a few steps.
  const phrase = new TextEncoder().encode('to be or not to be, that is the question. ');
  const rng = new Rng(2), ids = new Int32Array(batch * T), targets = new Int32Array(batch * T);
  const losses = [];
  for (let step = 0; step < 4; step++) {
    for (let b = 0; b < batch; b++) {
      const s = rng.int(phrase.length);
      for (let t = 0; t < T; t++) { ids[b * T + t] = phrase[(s + t) % phrase.length]; targets[b * T + t] = phrase[(s + t + 1) % phrase.length]; }
    }
    g.zeroGrad(params);
    losses.push(accumulateGradients(g, (i, t, w) => { const l = model.loss(i, t, w); return { loss: l, ce: l.item() }; }, ids, targets, batch, plan.microBatch));
    opt.update(3e-3);
  }
  window.result = { threads: be.threads, microBatch: plan.microBatch, recompute: plan.recompute, budget: plan.budgetBytes, expected: plan.expectedBytes, heap: be.memoryBytes(), losses };
  be.dispose();
} catch (e) { window.result = { error: String(e && e.stack || e) }; }
</script>`;

const serve = (isolated: boolean) => serveDist((path) => (path === '/' ? PAGE : path === '/train' ? TRAIN_PAGE : undefined), isolated);

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

  test('training steps under a memory budget: the plan splits the batch and the heap stays within it', { timeout: 300_000 }, async () => {
    const { server, url } = await serve(true);
    try {
      const page = await browser.newPage();
      await page.goto(url + 'train');
      await page.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined, null, { timeout: 240_000 });
      const r = await page.evaluate(() => (window as unknown as { result: Record<string, unknown> }).result);
      assert.equal(r.error, undefined, String(r.error));
      assert.ok((r.microBatch as number) < 8 || r.recompute, `a budget under whole batches still ran them: ${JSON.stringify(r)}`);
      assert.ok((r.heap as number) <= (r.expected as number) && (r.expected as number) <= (r.budget as number), `heap ${r.heap} bytes, planned ${r.expected} of ${r.budget}`);
      const losses = r.losses as number[];
      assert.ok(losses.every(Number.isFinite) && losses[3] < losses[0], `losses ${losses.join(', ')}`);
      console.log(`browser training: micro-batch ${r.microBatch} of 8 × 128, recompute ${r.recompute}, heap ${r.heap} bytes (planned ${r.expected}, budget ${r.budget}), losses ${losses.map((l) => l.toFixed(3)).join(', ')}`);
      await page.close();
    } finally {
      server.close();
    }
  });
});
