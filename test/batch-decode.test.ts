// Batched decode (models/model.ts decodeBatch, Llama.pushBatch): one step for N sequences, each with its own
// KV cache at its own position, against the oracle of each sequence stepped alone (session.push), over
// sequences of different lengths that join and leave mid-way.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { byteVocab, loadModel, saveModel } from '../src/io/model-file.js';
import { BytePooled, resolvePooledConfig } from '../src/models/byte-pooled.js';
import { PRESETS, resolveConfig } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import { type CausalLM, type InferenceSession, decodeBatch } from '../src/models/model.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';

const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

let be: Backend;
let dir: string;
before(async () => {
  be = await createBackend('wasm', { threads: 2 });
  dir = mkdtempSync(join(tmpdir(), 'stlm-batch-'));
});
after(() => {
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

interface Plan {
  /** Prompt of each sequence. */
  prompts: number[][];
  /** Step at which each sequence joins the batch, and the step after which it leaves (exclusive). */
  join: number[];
  leave: number[];
  steps: number;
}

/**
 * Runs the plan batched (decodeBatch over the sequences active at each step) and alone (each sequence's
 * own session, push by push), feeding both the same ids (drawn from a seeded RNG); returns the largest
 * |difference| between matching logits rows, and how many rows were compared.
 */
function compare(model: CausalLM, plan: Plan, seed = 7, idLimit = model.config.vocabSize): { maxDiff: number; rows: number; batchedSizes: Set<number> } {
  const vocab = model.config.vocabSize, rng = new Rng(seed);
  const n = plan.prompts.length;
  const batched: (InferenceSession | null)[] = Array(n).fill(null);
  const alone: InferenceSession[] = plan.prompts.map((p) => model.session(p.length + plan.steps + 1));
  let maxDiff = 0, rows = 0;
  const batchedSizes = new Set<number>();
  const diff = (a: Float32Array, b: Float32Array) => {
    assert.equal(a.length, vocab);
    assert.equal(b.length, vocab);
    for (let j = 0; j < vocab; j++) maxDiff = Math.max(maxDiff, Math.abs(a[j] - b[j]));
    rows++;
  };
  for (let step = 0; step < plan.steps; step++) {
    const active: number[] = [];
    for (let i = 0; i < n; i++) {
      if (step === plan.join[i]) {
        // A joining sequence's prefill runs as its own step (as the server's scheduler runs it).
        batched[i] = model.session(plan.prompts[i].length + plan.steps + 1);
        diff(batched[i]!.reset(plan.prompts[i]), alone[i].reset(plan.prompts[i]));
      } else if (step > plan.join[i] && step < plan.leave[i]) active.push(i);
      if (step === plan.leave[i]) {
        batched[i]!.dispose();
        batched[i] = null;
      }
    }
    const ids = active.map(() => rng.int(idLimit));
    const out = decodeBatch(model, active.map((i) => batched[i]!), ids);
    batchedSizes.add(active.length);
    active.forEach((i, r) => diff(out[r], alone[i].push(ids[r])));
    active.forEach((i) => assert.equal(batched[i]!.length, alone[i].length));
  }
  for (const s of [...batched, ...alone]) s?.dispose();
  return { maxDiff, rows, batchedSizes };
}

const PLAN: Plan = {
  prompts: [[1], [5, 9, 200, 3, 7], Array.from({ length: 17 }, (_, i) => (i * 37) % 250), Array.from({ length: 40 }, (_, i) => (i * 11 + 3) % 250), [42, 43]],
  join: [0, 0, 3, 6, 9],
  leave: [14, 9, 20, 20, 16],
  steps: 20,
};

function quantized(src: string, type: string): string {
  const out = join(dir, `${type}.gguf`);
  const r = spawnSync(process.execPath, [CLI, 'quantize', src, out, '--type', type], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

describe('batched decode: each row equals its sequence stepped alone', () => {
  test('quantized Q8_0 and Q4_0 (the int8 products agree bit for bit across m): logits identical', { skip: !existsSync(DEFAULT_MODEL) && 'the embedded default model is absent' }, async () => {
    for (const type of ['q8_0', 'q4_0']) {
      const m = await loadModel(quantized(DEFAULT_MODEL, type), { keepQuantized: true });
      assert.ok(m.quantized.size > 0);
      const model = Llama.fromModel(new Graph(be), m);
      const r = compare(model, PLAN);
      assert.ok(r.batchedSizes.has(4) && r.batchedSizes.has(2), `batches of several sizes ran: ${[...r.batchedSizes]}`);
      assert.equal(r.maxDiff, 0, `${type}: batched logits differ from alone by ${r.maxDiff}`);
      for (const q of model.quantized.values()) q.dispose();
    }
  });

  test('f32 (the embedded model): logits within 1e-4 (summation order of the m-row products only)', { skip: !existsSync(DEFAULT_MODEL) && 'the embedded default model is absent' }, async (t) => {
    const model = Llama.fromModel(new Graph(be), await loadModel(DEFAULT_MODEL));
    const r = compare(model, PLAN);
    assert.equal(r.rows, 5 + [14, 9, 20, 20, 16].map((l, i) => l - PLAN.join[i] - 1).reduce((a, b) => a + b));
    t.diagnostic(`max |difference| ${r.maxDiff}`);
    assert.ok(r.maxDiff < 1e-4, `max |difference| ${r.maxDiff}`);
  });

  test('grouped-query attention, random init, larger products (native f32 for m <= 4 and the GEMM above)', async (t) => {
    const config = resolveConfig({ preset: 'small', nHeads: 8, nKvHeads: 2, vocabSize: 300, ctx: 96 });
    const model = new Llama(new Graph(be), config, undefined, 11, false);
    const r = compare(model, PLAN, 3);
    t.diagnostic(`max |difference| ${r.maxDiff}`);
    assert.ok(r.maxDiff < 1e-4, `max |difference| ${r.maxDiff}`);
  });

  test('quantized GQA model through a file: identical', async () => {
    const config = resolveConfig({ preset: 'small', nHeads: 8, nKvHeads: 2, vocabSize: 259, ctx: 96 });
    const src = join(dir, 'gqa.gguf');
    await saveModel(src, { config, weights: new Llama(new Graph(be), config, undefined, 5).weights(), vocab: byteVocab() });
    const model = Llama.fromModel(new Graph(be), await loadModel(quantized(src, 'q8_0'), { keepQuantized: true }));
    assert.equal(compare(model, PLAN, 9).maxDiff, 0);
  });

  test('the byte-pooled model steps its sessions one after another: identical', () => {
    const model = new BytePooled(new Graph(be), resolvePooledConfig({ preset: 'nano', ctx: 128 }, 'fixed:4'), undefined, 2);
    assert.equal((model as CausalLM).pushBatch, undefined);
    const r = compare(model, { ...PLAN, prompts: PLAN.prompts.map((p) => p.map((x) => x % 256)) }, 4, 256);
    assert.equal(r.maxDiff, 0);
  });

  test('bad calls: sessions of another model, a session twice, an empty session, ids not matching', async () => {
    const model = new Llama(new Graph(be), { ...PRESETS.nano, vocabSize: 259 }, undefined, 1);
    const other = new Llama(new Graph(be), { ...PRESETS.nano, vocabSize: 259 }, undefined, 1);
    const a = model.session(), b = model.session(), c = other.session();
    a.reset([1, 2]);
    b.reset([3]);
    c.reset([4]);
    assert.throws(() => decodeBatch(model, [a, c], [1, 2]), /session 1 is not one of this model's/);
    assert.throws(() => decodeBatch(model, [a, a], [1, 2]), /a session appears twice/);
    assert.throws(() => decodeBatch(model, [a, model.session()], [1, 2]), /session 1 is empty/);
    assert.throws(() => decodeBatch(model, [a, b], [1]), /1 ids for 2 sessions/);
    assert.equal(a.length, 2, 'a refused step leaves the caches as they were');
    const full = model.session(2);
    full.reset([1, 2]);
    assert.throws(() => decodeBatch(model, [a, full], [1, 2]), /session 1 is full \(2 positions\)/);
    for (const s of [a, b, c, full]) s.dispose();
  });
});
