/**
 * Training memory in a browser: the base (27M) and medium (113M) configs at an effective batch of 16 × 512
 * in headless Chromium (the WebAssembly backend, 2 threads over shared memory), with the micro-batches and
 * recomputation planned for the 4 GiB WebAssembly heap, as `train-memory` runs them in Node. Per config:
 * the plan, the heap after the steps (what the budget bounds), seconds and loss per step. PyTorch's peak
 * for the same batch is train-memory's (a browser has no PyTorch to run beside it).
 *
 *   npm run bench -- train-memory-browser [--configs base,medium] [--steps 1] [--memory 4GiB] [--json]
 */
import { formatBytes, parseBytes } from '../src/train/memory-plan.js';
import { CHROMIUM, NO_CHROMIUM, launchChromium, serveDist } from './lib/chromium.js';
import { arg } from './lib/torch.js';

const BATCH = 16, T = 512;

/** The page: one config's planned steps; the result in window.result. */
function page(config: string, steps: number, budget: number): string {
  return `<!doctype html><meta charset="utf-8"><script type="module">
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
  const cfg = { ...PRESETS[${JSON.stringify(config)}], dropout: 0 }, batch = ${BATCH}, T = ${T};
  const g = new Graph(be), model = new Llama(g, cfg, undefined, 1);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t));
  const zeros = new Map(parameterShapes(cfg).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]));
  const plan = planMemory({ budget: ${budget}, batch, seqLen: T, heldBytes: be.memoryBytes(), build: (dg) => new Llama(dg, cfg, zeros, 0) });
  model.recompute = plan.recompute;
  const text = new TextEncoder().encode('First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. ');
  const rng = new Rng(3), ids = new Int32Array(batch * T), targets = new Int32Array(batch * T);
  const rows = [];
  for (let step = 0; step < ${steps}; step++) {
    for (let b = 0; b < batch; b++) {
      const s = rng.int(text.length);
      for (let t = 0; t < T; t++) { ids[b * T + t] = text[(s + t) % text.length]; targets[b * T + t] = text[(s + t + 1) % text.length]; }
    }
    const t0 = performance.now();
    g.zeroGrad(params);
    const loss = accumulateGradients(g, (i, t, w) => { const l = model.loss(i, t, w); return { loss: l, ce: l.item() }; }, ids, targets, batch, plan.microBatch);
    opt.update(1e-3);
    rows.push({ step, seconds: (performance.now() - t0) / 1000, loss, heap: be.memoryBytes() });
  }
  window.result = { threads: be.threads, isolated: self.crossOriginIsolated, params: params.reduce((s, p) => s + p.size, 0), microBatch: plan.microBatch, recompute: plan.recompute, expected: plan.expectedBytes, budget: plan.budgetBytes, heap: be.memoryBytes(), steps: rows };
  be.dispose();
} catch (e) { window.result = { error: String(e && e.stack || e) }; }
</script>`;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--configs', '--json', '--memory', '--steps'];

export async function main(argv: string[]): Promise<void> {
  if (!CHROMIUM) throw new Error(`train-memory-browser: ${NO_CHROMIUM}`);
  const configs = arg(argv, '--configs', 'base,medium').split(',');
  const steps = Number(arg(argv, '--steps', '1'));
  const budget = parseBytes(arg(argv, '--memory', '4GiB'));
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error('train-memory-browser: --steps must be an integer ≥ 1');
  let current = '';
  const { server, url } = await serveDist((path) => (path === '/' ? current : undefined), true);
  const browser = await launchChromium();
  const results: Record<string, unknown>[] = [];
  try {
    for (const config of configs) {
      current = page(config, steps, budget);
      const p = await browser.newPage();
      const t0 = performance.now();
      await p.goto(url);
      await p.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined, undefined, { timeout: 3_600_000, polling: 1000 });
      const r = (await p.evaluate(() => (window as unknown as { result: Record<string, unknown> }).result)) as Record<string, unknown>;
      await p.close();
      if (r.error) throw new Error(`train-memory-browser: ${config}: ${r.error}`);
      const s = r.steps as { seconds: number; loss: number; heap: number }[];
      console.log(`${config}: ${Number(r.params).toLocaleString('en-US')} params, ${r.threads} threads (isolated ${r.isolated}); micro-batch ${r.microBatch} × ${T} of ${BATCH}, recompute ${r.recompute}; heap ${formatBytes(Number(r.heap))} (planned ${formatBytes(Number(r.expected))} of ${formatBytes(Number(r.budget))}); steps ${s.map((x) => `${x.seconds.toFixed(1)} s loss ${x.loss.toFixed(4)}`).join(', ')}; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
      results.push({ config, ...r });
    }
  } finally {
    await browser.close();
    server.close();
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ batch: BATCH, ctx: T, budget, results }));
}
