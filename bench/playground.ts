/**
 * The playground in headless Chromium against Node, the same model and the same measure, 1 and 2 threads:
 *   decode  the embedded model (models/default.gguf), prompt "ROMEO:", 200 greedy tokens: tokens per second
 *           after the first (the page's own number; Node's computed the same way around the same loop)
 *   train   a preset (default tiny) from scratch on tinyshakespeare's first 200 kB (or a made-up text
 *           without the fixture), N steps of batch 8: the trainer's tokens per second at the last step
 *           (its validation passes every 10 steps included, on both sides)
 * Node runs the WebAssembly kernels alone (what the page runs) and with the native kernels (what
 * `stlm generate` uses where built); both sides run the relaxed-SIMD build. Rounds are interleaved (page,
 * then Node, per round) and the median is reported, with the page / Node ratio. Needs a built page
 * (npm run build) and Chromium (apt-get install chromium).
 *
 *   npm run bench -- playground [--rounds 3] [--threads 1,2] [--preset tiny] [--steps 40] [--json]
 * With --json the last stdout line is {"results":[{"task","threads","runtime","tokensPerSecond"}…]}.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSteps } from '../src/generate/generate.js';
import { type ModelHandle, openModel } from '../src/io/open.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { enableRelaxedSimd } from '../src/kernels/wasm/relaxed-flag.js';
import { createModel } from '../src/models/architectures.js';
import { createServer } from '../src/server/server.js';
import { PLAYGROUND_DIR } from '../src/server/static.js';
import { train } from '../src/train/trainer.js';
import type { TrainSettings } from '../web/src/protocol.js';
import { playgroundTrainOptions } from '../web/src/train-options.js';
import { type Browser, launchChromium } from './lib/chromium.js';

type Page = Awaited<ReturnType<Browser['newPage']>>;

export const flags = ['--rounds', '--threads', '--preset', '--steps', '--json'];

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = join(ROOT, 'models/default.gguf');
const CORPUS = join(ROOT, '../shared/fixtures/corpora/tinyshakespeare/input.txt');
const DECODE_TOKENS = 200;

interface Result {
  task: 'decode' | 'train';
  threads: number;
  runtime: 'chromium' | 'node-wasm' | 'node-native';
  tokensPerSecond: number;
}

function arg(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Node's decode speed measured as the page's worker measures it: tokens after the first, per second. */
function nodeDecode(m: ModelHandle): number {
  let n = 0, tFirst = 0;
  const it = generateSteps(m.model, m.tokenizer, 'ROMEO:', { maxTokens: DECODE_TOKENS, temperature: 0, addBos: m.addBos, onToken: () => {
    if (n++ === 0) tFirst = performance.now();
  } });
  for (let r = it.next(); !r.done; r = it.next());
  return (n - 1) / ((performance.now() - tFirst) / 1000);
}

/** Node's training speed as the page reports it: the trainer's tokens per second at the last step. */
async function nodeTrain(be: Backend, settings: TrainSettings): Promise<number> {
  let tps = 0;
  const r = await train(be, { ...playgroundTrainOptions(settings), onStep: (s) => { tps = s.tokensPerSecond; } }, (g, c, weights, seed) => createModel(g, c, { weights, seed }));
  r.graph.release();
  for (const t of r.model.params.values()) be.free(t.buf);
  return tps;
}

/** The page's decode speed: one Generate click, its tokens/s. */
async function pageDecode(page: Page): Promise<number> {
  await page.click('#tab-generate');
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('generate-output')!.dataset.tokens !== undefined, null, { timeout: 120_000 });
  return Number(await page.$eval('#generate-stats', (el) => (el as HTMLElement).dataset.tokensPerSecond));
}

export async function main(argv: string[]): Promise<void> {
  const rounds = Number(arg(argv, '--rounds', '3'));
  const threadList = arg(argv, '--threads', '1,2').split(',').map(Number);
  const preset = arg(argv, '--preset', 'tiny');
  const steps = Number(arg(argv, '--steps', '40'));
  const json = argv.includes('--json');
  if (!existsSync(join(PLAYGROUND_DIR, 'index.html'))) throw new Error(`the playground is not built (${PLAYGROUND_DIR}): run npm run build`);
  await enableRelaxedSimd();
  const text = existsSync(CORPUS) ? readFileSync(CORPUS, 'utf8').slice(0, 200_000) : 'the cat sat on the mat and saw the dog run far away from home.\n'.repeat(3200);
  const settings: TrainSettings = { text, preset, minutes: 30, steps, batch: 8, lr: 0.002, seed: 1, samplePrompt: 'ROMEO:' };
  const load = loadavg()[0];

  const app = createServer({ models: new Map(), playground: PLAYGROUND_DIR });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/`;
  const browser = await launchChromium();
  const samples = new Map<string, number[]>();
  const add = (r: Omit<Result, 'tokensPerSecond'>, v: number) => {
    const key = `${r.task}|${r.threads}|${r.runtime}`;
    samples.set(key, [...(samples.get(key) ?? []), v]);
  };
  try {
    for (const threads of threadList) {
      const page = await browser.newPage();
      await page.goto(`${base}?threads=${threads}`);
      await page.waitForFunction(() => !(document.getElementById('generate') as HTMLButtonElement).disabled, null, { timeout: 120_000 });
      const got = await page.$eval('#engine-status', (el) => (el as HTMLElement).dataset.threads);
      if (Number(got) !== threads) throw new Error(`the page runs ${got} threads, not ${threads} (is it cross-origin isolated?)`);
      await page.fill('#temperature', '0');
      await page.fill('#max-tokens', String(DECODE_TOKENS));
      await page.click('#tab-train');
      await page.$eval('#train-text', (el, t) => { (el as HTMLTextAreaElement).value = t; }, text);
      await page.selectOption('#preset', preset);
      for (const [id, v] of [['steps', String(steps)], ['minutes', '30'], ['batch', '8'], ['lr', '0.002'], ['train-seed', '1']]) await page.fill(`#${id}`, v);
      // Node's models and backends live across rounds, as the page's worker does; one decode each first
      // (not counted) so both sides run code the JIT has finished compiling.
      const nodeModels = { 'node-wasm': await openModel(MODEL, { backend: await createWasmBackend({ threads, native: false }) }),
        'node-native': await openModel(MODEL, { backend: await createWasmBackend({ threads }) }) };
      const trainBackend = await createWasmBackend({ threads });
      await pageDecode(page);
      for (const m of Object.values(nodeModels)) nodeDecode(m);
      for (let round = 0; round < rounds; round++) {
        add({ task: 'decode', threads, runtime: 'chromium' }, await pageDecode(page));
        for (const [runtime, m] of Object.entries(nodeModels)) add({ task: 'decode', threads, runtime: runtime as Result['runtime'] }, nodeDecode(m));

        await page.click('#tab-train');
        await page.click('#train');
        await page.waitForFunction(() => document.getElementById('train-status')!.dataset.done !== undefined, null, { timeout: 600_000 });
        add({ task: 'train', threads, runtime: 'chromium' }, Number(await page.$eval('#train-status', (el) => (el as HTMLElement).dataset.tokensPerSecond)));
        add({ task: 'train', threads, runtime: 'node-wasm' }, await nodeTrain(trainBackend, settings));
      }
      for (const m of Object.values(nodeModels)) {
        m.dispose(); // the model's buffers; the backend given to openModel stays ours to free
        m.model.graph.backend.dispose();
      }
      trainBackend.dispose();
      await page.close();
    }
  } finally {
    await browser.close();
    await app.close();
  }

  const results: Result[] = [...samples].map(([key, v]) => {
    const [task, threads, runtime] = key.split('|');
    return { task: task as Result['task'], threads: Number(threads), runtime: runtime as Result['runtime'], tokensPerSecond: median(v) };
  });
  console.log(`playground vs Node: default.gguf decode (${DECODE_TOKENS} greedy tokens), ${preset} training (${steps} steps, batch 8); median of ${rounds} interleaved rounds; load ${load.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end`);
  console.log('task    threads  Chromium tok/s  Node wasm tok/s  Chromium/Node wasm  Node native tok/s  Chromium/Node native');
  for (const task of ['decode', 'train'] as const) {
    for (const threads of threadList) {
      const get = (runtime: Result['runtime']) => results.find((r) => r.task === task && r.threads === threads && r.runtime === runtime)?.tokensPerSecond;
      const c = get('chromium')!, w = get('node-wasm')!, n = get('node-native');
      console.log(`${task.padEnd(8)}${String(threads).padStart(7)}${c.toFixed(0).padStart(16)}${w.toFixed(0).padStart(17)}${(c / w).toFixed(2).padStart(20)}${(n ? n.toFixed(0) : '-').padStart(19)}${(n ? (c / n).toFixed(2) : '-').padStart(22)}`);
    }
  }
  if (json) console.log(JSON.stringify({ results }));
}
