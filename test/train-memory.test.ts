// Training memory: activation recomputation gives the gradients of the plain tape, gradient accumulation
// over micro-batches gives the whole batch's, the tape frees as it goes, nothing grows from step to step,
// and the memory plan's prediction holds on the real WebAssembly heap.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { DryBackend } from '../src/kernels/dry.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { byteVocab } from '../src/io/model-file.js';
import { BytePooled, resolvePooledConfig } from '../src/models/byte-pooled.js';
import { type LlamaConfig, PRESETS, parameterShapes, resolveConfig } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import type { TrainableModel } from '../src/models/model.js';
import { Graph } from '../src/tensor/tensor.js';
import { accumulateGradients, microBatchWeights } from '../src/train/accumulate.js';
import { AdamW } from '../src/train/adamw.js';
import { measureStepBytes, parseBytes, planMemory } from '../src/train/memory-plan.js';
import { train } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import { maxAbsDiff } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const TEXT = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n'.repeat(40);

/** Random byte windows: ids [batch·T] and their targets, some of them ignored (-1), unevenly per window. */
function windows(seed: number, batch: number, T: number, ignoreEvery = 0): { ids: Int32Array; targets: Int32Array } {
  const r = new Rng(seed), ids = new Int32Array(batch * T), targets = new Int32Array(batch * T);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = r.int(256);
    targets[i] = ignoreEvery && i % ignoreEvery < Math.floor(i / T) ? -1 : r.int(256);
  }
  return { ids, targets };
}

/** Zeros for every parameter of a Llama config: models built only to be measured on the dry backend. */
function zeroWeights(c: LlamaConfig): Map<string, Float32Array> {
  return new Map(parameterShapes(c).map(([n, shape]) => [n, new Float32Array(shape.reduce((a, b) => a * b, 1))]));
}

/** Contiguous text windows (what the byte-pooled model trains on): targets[t] = ids[t + 1]. */
function textWindows(batch: number, T: number): { ids: Int32Array; targets: Int32Array } {
  const bytes = new TextEncoder().encode(TEXT), ids = new Int32Array(batch * T), targets = new Int32Array(batch * T);
  for (let b = 0; b < batch; b++) for (let t = 0; t < T; t++) {
    ids[b * T + t] = bytes[b * 37 + t];
    targets[b * T + t] = bytes[b * 37 + t + 1];
  }
  return { ids, targets };
}

/** Every parameter's gradient, by name. */
function gradients(m: TrainableModel): Map<string, Float32Array> {
  return new Map([...m.params].map(([n, p]) => [n, p.grad && p.gradReady ? p.grad.toArray() : new Float32Array(p.size)]));
}

/** Largest |a − b| over all gradients, relative to the largest |a|. */
function relativeGap(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let gap = 0, scale = 0;
  for (const [n, x] of a) {
    gap = Math.max(gap, maxAbsDiff(x, b.get(n)!));
    for (const v of x) scale = Math.max(scale, Math.abs(v));
  }
  return gap / scale;
}

describe('activation recomputation (checkpointing)', () => {
  let wasm: Backend;
  before(async () => {
    wasm = await createWasmBackend({ threads: 2 });
  });
  after(() => wasm.dispose());

  // Shared weights at several positions, their per-position low-rank updates and dropout: the cases
  // where a recomputed block could go wrong (gradients summed over positions, random masks replayed).
  const config: LlamaConfig = resolveConfig({ preset: 'micro', blockRepeat: 2, sharedLoraRank: 2, dropout: 0.2 });
  const step = (be: Backend, recompute: boolean, make: (g: Graph) => TrainableModel, text = false) => {
    const g = new Graph(be);
    const m = make(g);
    m.recompute = recompute;
    const { ids, targets } = text ? textWindows(3, 24) : windows(3, 3, 24, 7);
    const loss = m.loss(ids, targets, 3);
    const value = loss.item();
    g.backward(loss);
    const out = { loss: value, grads: gradients(m), rng: m.dropoutRng.getState() };
    g.release();
    return out;
  };

  for (const [name, backend] of [['reference', () => new ReferenceBackend()], ['wasm × 2 threads', () => wasm]] as const) {
    test(`Llama (shared blocks, low-rank updates, dropout) on ${name}: the same loss, gradients and dropout stream as without`, () => {
      const make = (g: Graph) => new Llama(g, config, undefined, 5);
      const plain = step(backend(), false, make), recomputed = step(backend(), true, make);
      assert.equal(recomputed.loss, plain.loss);
      const gap = relativeGap(plain.grads, recomputed.grads);
      assert.ok(gap <= 1e-6, `gradients differ by ${gap.toExponential(2)} of the largest`);
      assert.deepEqual(recomputed.rng, plain.rng, 'recomputation changed the dropout stream');
    });
  }

  test('byte-pooled model (two stacks of blocks) on wasm: the same loss and gradients as without', () => {
    const c = resolvePooledConfig({ preset: 'nano', ctx: 64, dropout: 0.1 }, 'fixed:4');
    const make = (g: Graph) => new BytePooled(g, c, undefined, 9);
    const plain = step(wasm, false, make, true), recomputed = step(wasm, true, make, true);
    assert.equal(recomputed.loss, plain.loss);
    assert.ok(relativeGap(plain.grads, recomputed.grads) <= 1e-6);
  });

  test('a region that returns its input is refused (nothing to recompute)', () => {
    const g = new Graph(new ReferenceBackend());
    const x = g.param('x', [2], [1, 2]);
    assert.throws(() => g.checkpoint([x], ([h]) => h), /checkpoint: the region must compute a new tensor/);
  });
});

describe('memory of a training step (dry backend: the WebAssembly heap without the arithmetic)', () => {
  const measure = (recompute: boolean) => {
    const be = new DryBackend(), g = new Graph(be);
    const m = new Llama(g, PRESETS.base, undefined, 1);
    m.recompute = recompute;
    const params = [...m.params.values()];
    const paramBytes = be.heap.liveBytes;
    const { ids, targets } = windows(1, 4, 512);
    const loss = m.loss(ids, targets, 4);
    const afterForward = be.heap.liveBytes;
    g.backward(loss);
    const afterBackward = be.heap.liveBytes;
    g.release();
    return { paramBytes, afterForward, afterBackward, heap: be.memoryBytes(), gradBytes: params.reduce((s, p) => s + be.heap.size(p.size * 4), 0) };
  };

  test('backward frees as it goes: the step peaks near the forward\'s activations, and leaves only the parameters\' gradients', () => {
    const m = measure(false);
    const activations = m.afterForward - m.paramBytes;
    // The loss and its gradient (one element each, 64 bytes) are all that stay besides the parameters and their gradients.
    assert.equal(m.afterBackward, m.paramBytes + m.gradBytes + 128);
    assert.ok(m.heap - m.paramBytes <= 1.25 * activations + m.gradBytes, `a step grew the heap by ${m.heap - m.paramBytes} bytes for ${activations} bytes of activations`);
  });

  test('recomputation keeps the blocks\' inputs only: a base step at 4 × 512 needs under half the activation memory', () => {
    const plain = measure(false), recomputed = measure(true);
    assert.equal(recomputed.paramBytes, plain.paramBytes);
    assert.ok(recomputed.heap - recomputed.paramBytes < 0.5 * (plain.heap - plain.paramBytes), `${recomputed.heap} vs ${plain.heap}`);
  });
});

describe('gradient accumulation over micro-batches', () => {
  test('micro-batches of 1 and 2 windows give the gradients of the whole batch of 4 (targets ignored unevenly)', () => {
    const be = new ReferenceBackend();
    const { ids, targets } = windows(8, 4, 16, 5);
    const weights = microBatchWeights(targets, 4);
    assert.ok(new Set(weights).size > 1, 'the windows should count different numbers of targets');
    const run = (microBatch: number) => {
      const g = new Graph(be);
      const m = new Llama(g, PRESETS.micro, undefined, 2);
      const loss = accumulateGradients(g, (i, t, w) => {
        const l = m.loss(i, t, w);
        return { loss: l, ce: l.item() };
      }, ids, targets, 4, microBatch);
      return { loss, grads: gradients(m), model: m };
    };
    /** AdamW on the model's gradients (eps large enough that rounding in a tiny gradient is not turned into a sign), then its weights. */
    const updated = (m: Llama) => {
      new AdamW([...m.params.values()], () => true, { eps: 1e-3 }).update(1e-2);
      return new Map([...m.params].map(([n, p]) => [n, p.toArray()]));
    };
    for (const mb of [1, 2]) {
      const whole = run(4), split = run(mb);
      // Float rounding only: the sums run in another order.
      assert.ok(Math.abs(split.loss - whole.loss) <= 1e-6 * whole.loss, `micro-batch ${mb}: loss ${split.loss} vs ${whole.loss}`);
      const gap = relativeGap(whole.grads, split.grads);
      assert.ok(gap <= 1e-5, `micro-batch ${mb}: gradients differ by ${gap.toExponential(2)} of the largest`);
      const gapW = relativeGap(updated(whole.model), updated(split.model));
      assert.ok(gapW <= 1e-6, `micro-batch ${mb}: updated weights differ by ${gapW.toExponential(2)} of the largest`);
    }
  });
});

describe('memory plan (--memory)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stlm-memory-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('sizes: decimal and binary units; a bad one is named', () => {
    assert.equal(parseBytes('3GB'), 3e9);
    assert.equal(parseBytes('3.5g'), 3.5e9);
    assert.equal(parseBytes('2048MiB'), 2 ** 31);
    assert.equal(parseBytes('4GiB'), 2 ** 32);
    assert.equal(parseBytes('1000'), 1000);
    assert.throws(() => parseBytes('3XB'), /--memory: '3XB' is not a size/);
    assert.throws(() => parseBytes('0GB'), /--memory: '0GB' must be more than 0 bytes/);
  });

  test('the plan splits the batch only as far as the budget needs, and the real WebAssembly heap stays within what it expected', async () => {
    const config = PRESETS.small, batch = 8, seqLen = 128;
    const be = await createWasmBackend({ threads: 2 });
    try {
      const g = new Graph(be);
      const m = new Llama(g, config, undefined, 4);
      const params = [...m.params.values()];
      const opt = new AdamW(params, () => true);
      const build = (dg: Graph) => new Llama(dg, config, zeroWeights(config), 4);
      const held = be.memoryBytes();
      const roomy = planMemory({ budget: 2 ** 32, batch, seqLen, heldBytes: held, build });
      assert.deepEqual([roomy.microBatch, roomy.recompute], [batch, false]);
      // A budget between what micro-batches of 2 and of 4 need, with whole activations.
      const two = planMemory({ budget: 2 ** 32, batch: 2, seqLen, heldBytes: held, build }), four = planMemory({ budget: 2 ** 32, batch: 4, seqLen, heldBytes: held, build });
      const plan = planMemory({ budget: Math.floor((two.expectedBytes + four.expectedBytes) / 2), batch, seqLen, heldBytes: held, build });
      assert.deepEqual([plan.microBatch, plan.recompute], [2, false]);
      // Train with it: a few steps and an evaluation at the plan's micro-batch, as the trainer does.
      const { ids, targets } = windows(5, batch, seqLen);
      for (let s = 0; s < 3; s++) {
        g.zeroGrad(params);
        accumulateGradients(g, (i, t, w) => ({ loss: m.loss(i, t, w), ce: 0 }), ids, targets, batch, plan.microBatch);
        opt.update(1e-3);
      }
      g.noGrad(() => m.loss(ids.subarray(0, 2 * seqLen), targets.subarray(0, 2 * seqLen), 2));
      g.release();
      const real = be.memoryBytes();
      assert.ok(real <= plan.expectedBytes, `the heap reached ${real} bytes, more than the ${plan.expectedBytes} planned`);
      // The dry replay is the heap's own layout: the real growth is it plus a little kernel scratch, less
      // what the memory held unused before (at most its initial 4 MiB).
      const replayed = measureStepBytes({ build, seqLen }, plan.microBatch, plan.recompute);
      assert.ok(Math.abs(real - held - replayed) <= 6 * 2 ** 20, `the heap grew by ${real - held} bytes; the dry replay said ${replayed}`);
    } finally {
      be.dispose();
    }
  });

  test('recomputation is chosen when no micro-batch fits with whole activations; too small a budget is refused, saying what one window needs', () => {
    const config = PRESETS.small, seqLen = 256, heldBytes = 100e6;
    const build = (dg: Graph) => new Llama(dg, config, zeroWeights(config), 4);
    const one = planMemory({ budget: 2 ** 32, batch: 1, seqLen, heldBytes, build });
    const plan = planMemory({ budget: one.expectedBytes - 1, batch: 16, seqLen, heldBytes, build });
    assert.equal(plan.recompute, true);
    assert.ok(plan.microBatch >= 1 && plan.expectedBytes < one.expectedBytes);
    assert.throws(() => planMemory({ budget: heldBytes, batch: 16, seqLen, heldBytes, build }), /--memory 100 MB: too small for this model: one window of 256 tokens per micro-batch, with block activations recomputed, needs 1\d\d MB/);
  });

  test('the trainer follows the plan: the same losses as whole batches, and stlm train --memory says what it chose or why it cannot', async () => {
    const be = await createWasmBackend({ threads: 2 });
    try {
      const options = (extra: object) => ({
        tokens: new TextEncoder().encode(TEXT), config: PRESETS.nano, checkpointPath: join(dir, `${Object.keys(extra).join('-')}.ckpt`), steps: 4, batch: 4, seqLen: 32,
        lr: 3e-3, minLr: 3e-4, warmup: 2, weightDecay: 0.1, clip: 1, accum: 1, seed: 3, evalEvery: 0, evalWindows: 4, saveEvery: 0, resume: false, vocab: byteVocab(), ...extra,
      });
      const whole = await train(be, options({}));
      const split = await train(be, options({ microBatch: 1, recompute: true }));
      for (let i = 0; i < whole.losses.length; i++) assert.ok(Math.abs(split.losses[i] - whole.losses[i]) <= 1e-4, `step ${i}: ${split.losses[i]} vs ${whole.losses[i]}`);
      assert.ok(Math.abs(split.finalValBpb - whole.finalValBpb) <= 1e-4);
    } finally {
      be.dispose();
    }
    writeFileSync(join(dir, 'data.txt'), TEXT);
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'train', '--data', join(dir, 'data.txt'), '--config', 'nano', '--out', join(dir, 'm.gguf'), '--batch', '4', '--ctx', '32', '--threads', '1', '--eval-windows', '2', '--steps', '1', ...args], { encoding: 'utf8' });
    const ok = run('--memory', '100MB');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /memory: (whole batches of 4|micro-batches of \d × 32, \d accumulated per batch of 4) × 32?.*expected peak .* of 100 MB/);
    const refused = run('--memory', '1MB');
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /--memory 1 MB: too small for this model: one window of 32 tokens per micro-batch, with block activations recomputed, needs \d+ MB/);
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'a stack trace');
  });
});

describe('nothing grows from step to step', () => {
  test('the WebAssembly heap after every step, evaluations included, is the heap after the first evaluation', async () => {
    const be = await createWasmBackend({ threads: 2 });
    try {
      const sizes: number[] = [];
      await train(be, {
        tokens: new TextEncoder().encode(TEXT), config: { ...PRESETS.nano, dropout: 0.1 }, checkpointPath: join(tmpdir(), `stlm-grow-${process.pid}.ckpt`), steps: 12, batch: 4, seqLen: 32,
        lr: 3e-3, minLr: 3e-4, warmup: 2, weightDecay: 0.1, clip: 1, accum: 2, seed: 3, evalEvery: 3, evalWindows: 3, saveEvery: 0, resume: false, vocab: byteVocab(),
        microBatch: 2, recompute: true, onStep: () => sizes.push(be.memoryBytes()),
      });
      assert.deepEqual(new Set(sizes.slice(2)).size, 1, `heap by step: ${sizes.join(', ')}`);
    } finally {
      be.dispose();
      rmSync(join(tmpdir(), `stlm-grow-${process.pid}.ckpt`), { force: true });
    }
  });
});
