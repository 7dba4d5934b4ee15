// The training loop: determinism, resume equal to an uninterrupted run, data errors, and the CLI's
// handling of bad input (clear message, non-zero exit, no stack trace).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { loadNative } from '../src/kernels/wasm/native.js';
import { PRESETS } from '../src/models/config.js';
import { byteVocab, loadModel } from '../src/io/model-file.js';
import { readTextData } from '../src/train/data-files.js';
import { Llama } from '../src/models/llama.js';
import * as ops from '../src/tensor/ops.js';
import { Graph } from '../src/tensor/tensor.js';
import { dropoutRate } from '../src/train/schedule.js';
import { type TrainOptions, train } from '../src/train/trainer.js';
import { countNativeCalls } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const TEXT = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n'.repeat(40);

describe('training', () => {
  let be: Backend;
  let dir: string;
  before(async () => {
    be = await createWasmBackend({ threads: 2 });
    dir = mkdtempSync(join(tmpdir(), 'stlm-train-'));
  });
  after(() => {
    be.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const options = (ckpt: string, steps: number, resume = false): TrainOptions => ({
    tokens: new TextEncoder().encode(TEXT), config: { ...PRESETS.nano, dropout: 0.1 }, checkpointPath: ckpt, steps, batch: 4, seqLen: 32,
    lr: 3e-3, minLr: 3e-4, warmup: 5, weightDecay: 0.1, clip: 1, accum: 2, seed: 11, evalEvery: 0, evalWindows: 4, saveEvery: 0,
    resume, vocab: byteVocab(),
  });

  test('the same seed gives the same loss curve; a resumed run continues it exactly', async () => {
    const full = await train(be, options(join(dir, 'a.ckpt'), 24));
    const again = await train(be, options(join(dir, 'b.ckpt'), 24));
    assert.deepEqual(again.losses, full.losses, 'two runs with the same seed differ');
    // Interrupted at step 12 of 24 (as Ctrl-C does), then resumed.
    let steps = 0;
    const first = await train(be, { ...options(join(dir, 'c.ckpt'), 24), onStep: () => steps++, shouldStop: () => steps >= 12 });
    assert.ok(first.stoppedEarly);
    const resumed = await train(be, options(join(dir, 'c.ckpt'), 24, true));
    // The checkpoint stores the first half's losses as f32; the resumed half must match bit for bit.
    assert.deepEqual(resumed.losses.slice(12), full.losses.slice(12), 'resumed run left the uninterrupted curve');
    assert.equal(resumed.finalValBpb, full.finalValBpb);
    assert.ok(full.losses[23] < full.losses[0], 'loss did not decrease');
  });

  // micro (head size 10: attention stays in WebAssembly) and micro with head size 16 (the native training attention takes it).
  for (const [label, config] of [['micro', PRESETS.micro], ['micro, head size 16', { ...PRESETS.micro, dModel: 64 }]] as const)
  test(`with and without the native kernels, a seeded run gives the same first 20 losses within 1e-4 (relative): ${label}`, async (t) => {
    // Only float rounding differs (the native GEMM's FMAs against WebAssembly SIMD's multiply then add),
    // which the 20 steps of AdamW carry forward. Measured here: the f32 losses agree bit for bit (the
    // products' 1-ulp differences average out below the loss's own rounding); the tolerance leaves room
    // for other CPUs and summation orders.
    const native = await loadNative();
    if (!native) return t.skip('the native kernels are not built here (Node on x86-64 with AVX2 and a C compiler at install time)');
    // Count the native kernels' calls (wrapped before the backend below takes them) to know they ran.
    const { calls, restore } = countNativeCalls(native, ['gemmF32', 'attentionTrainBackward', 'rmsNormBackward', 'rope']);
    const withBe = await createWasmBackend({ threads: 1 });
    const pure = await createWasmBackend({ threads: 1, native: false });
    try {
      const opts = (ckpt: string): TrainOptions => ({ ...options(ckpt, 20), config: { ...config, dropout: 0 }, accum: 1, batch: 8 });
      const withNative = await train(withBe, opts(join(dir, 'n.ckpt')));
      assert.ok(calls.gemmF32 >= 20 * 40, `the native GEMM took ${calls.gemmF32} products in 20 steps`);
      if (config.dModel / config.nHeads === 16) assert.ok(calls.attentionTrainBackward >= 20 * config.nLayers, `the native attention backward ran ${calls.attentionTrainBackward} times in 20 steps`);
      assert.ok(calls.rmsNormBackward >= 20 * (2 * config.nLayers + 1), `the native RMSNorm backward ran ${calls.rmsNormBackward} times in 20 steps`);
      assert.ok(calls.rope >= 20 * 4 * config.nLayers, `the native RoPE ran ${calls.rope} times in 20 steps (q and k, forward and inverse)`);
      const without = await train(pure, opts(join(dir, 'w.ckpt')));
      assert.equal(withNative.losses.length, 20);
      for (let i = 0; i < 20; i++) {
        const d = Math.abs(withNative.losses[i] - without.losses[i]) / Math.abs(without.losses[i]);
        assert.ok(d <= 1e-4, `step ${i + 1}: loss ${withNative.losses[i]} with the native kernels, ${without.losses[i]} without (relative difference ${d.toExponential(2)})`);
      }
    } finally {
      restore();
      withBe.dispose();
      pure.dispose();
    }
  });

  test('dropout schedules: constant, linear ramp-up and triangular rates per step; resume keeps the schedule', async () => {
    assert.deepEqual([0, 5, 10, 20].map((s) => dropoutRate(s, 20, 0.2, 'constant')), [0.2, 0.2, 0.2, 0.2]);
    assert.deepEqual([0, 5, 10, 20].map((s) => dropoutRate(s, 20, 0.2, 'linear')), [0, 0.05, 0.1, 0.2]);
    assert.deepEqual([0, 5, 10, 15, 20].map((s) => dropoutRate(s, 20, 0.2, 'triangular')), [0, 0.1, 0.2, 0.1, 0]);
    const seen: number[] = [];
    const o = { ...options(join(dir, 'd.ckpt'), 10), config: { ...PRESETS.nano, dropout: 0.3 }, dropoutSchedule: 'triangular' as const };
    const full = await train(be, { ...o, onStep: (s) => seen.push(s.dropout) });
    assert.deepEqual(seen, Array.from({ length: 10 }, (_, i) => dropoutRate(i, 10, 0.3, 'triangular')));
    let n = 0;
    await train(be, { ...o, checkpointPath: join(dir, 'e.ckpt'), onStep: () => n++, shouldStop: () => n >= 4 });
    const resumed = await train(be, { ...o, checkpointPath: join(dir, 'e.ckpt'), resume: true });
    assert.deepEqual(resumed.losses.slice(4), full.losses.slice(4), 'a resumed run with a dropout schedule left the curve');
  });

  test('distillation: weight 0 is plain training; weight 1 pulls the student toward the teacher; mismatched vocabularies are refused', async () => {
    const teacherGraph = new Graph(be);
    const teacher = new Llama(teacherGraph, { ...PRESETS.nano, dModel: 48, mlpHidden: 128 }, undefined, 77);
    const base = { ...options(join(dir, 'kd0.ckpt'), 20), config: PRESETS.nano };
    const plain = await train(be, base);
    const zero = await train(be, { ...base, checkpointPath: join(dir, 'kd1.ckpt'), distill: { teacher, temperature: 2, weight: 0 } });
    assert.deepEqual(zero.losses, plain.losses);
    // KL(teacher ‖ student) on fixed windows, before and after 20 steps of pure distillation.
    const ids = Int32Array.from(new TextEncoder().encode(TEXT.slice(0, 4 * 32)));
    const targets = ids.map(() => 0);
    const kl = (m: Llama) => m.graph.noGrad(() => {
      const t = teacherGraph.noGrad(() => teacher.trainLogits(ids, 4).toArray());
      teacherGraph.release();
      const v = ops.distillKl(m.trainLogits(ids, 4), t, 1, targets).item();
      m.graph.release();
      return v;
    });
    const fresh = new Llama(new Graph(be), PRESETS.nano, undefined, base.seed);
    const distilled = await train(be, { ...base, checkpointPath: join(dir, 'kd2.ckpt'), lr: 1e-2, distill: { teacher, temperature: 1, weight: 1 } });
    assert.ok(kl(distilled.model) < 0.5 * kl(fresh), `KL ${kl(fresh)} -> ${kl(distilled.model)}`);
    const other = new Llama(new Graph(be), { ...PRESETS.nano, vocabSize: 300 }, undefined, 1);
    await assert.rejects(train(be, { ...base, checkpointPath: join(dir, 'kd3.ckpt'), distill: { teacher: other, temperature: 2, weight: 0.5 } }), /teacher's vocabulary \(300\) differs from the student's \(259\)/);
  });

  test('data errors: missing, empty, too small for one window', () => {
    assert.throws(() => readTextData(join(dir, 'nope.txt')), /data: '.*nope.txt' does not exist/);
    writeFileSync(join(dir, 'empty.txt'), '');
    assert.throws(() => readTextData(join(dir, 'empty.txt')), /data: '.*empty.txt' is empty/);
    return assert.rejects(
      train(be, { ...options(join(dir, 'd.ckpt'), 2), tokens: new TextEncoder().encode('tiny text'.repeat(5)) }),
      /fewer than one window of 33/,
    );
  });

  test('CLI: bad input gives one clear line and a non-zero exit', async () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    writeFileSync(join(dir, 'data.txt'), TEXT);
    writeFileSync(join(dir, 'junk.gguf'), 'this is not a model file at all');
    const cases: [string[], RegExp][] = [
      [['train', '--data', join(dir, 'missing'), '--out', join(dir, 'x.gguf'), '--steps', '1'], /data: '.*missing' does not exist/],
      [['train', '--data', join(dir, 'data.txt'), '--out', join(dir, 'x.gguf'), '--steps', '1', '--config', '{"preset":"nano","layers":2}'], /unknown config key 'layers' \(valid keys: preset, vocabSize/],
      [['train', '--data', join(dir, 'data.txt'), '--out', join(dir, 'x.gguf'), '--steps', 'ten'], /--steps must be an integer >= 1, got 'ten'/],
      [['train', '--data', join(dir, 'data.txt'), '--out', join(dir, 'x.gguf')], /give --steps N or --minutes N/],
      [['generate', '--model', join(dir, 'junk.gguf'), '--prompt', 'hi'], /junk.gguf/],
      [['generate', '--model', join(dir, 'none.gguf'), '--prompt', 'hi'], /cannot read model file '.*none.gguf': ENOENT/],
      [['info', join(dir, 'junk.gguf')], /junk.gguf/],
      [['generate', '--top-p', '1.5'], /--top-p must be a number in \[0, 1\], got '1.5'/],
    ];
    for (const [args, re] of cases) {
      const r = run(...args);
      assert.notEqual(r.status, 0, `${args.join(' ')} exited 0`);
      assert.match(r.stderr, re, `${args.join(' ')}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at .*:\d+:\d+\)?$/m, `${args.join(' ')} printed a stack trace`);
    }
  });

  test('CLI: --tokenizer bpe:N learns a vocabulary from the training split, trains, resumes with the same vocabulary', async () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    writeFileSync(join(dir, 'bpe.txt'), TEXT.repeat(4));
    const out = join(dir, 'bpe.gguf');
    const args = ['train', '--data', join(dir, 'bpe.txt'), '--config', 'nano', '--tokenizer', 'bpe:300', '--out', out, '--batch', '2', '--ctx', '16', '--warmup', '1', '--threads', '1', '--eval-windows', '2'];
    const t = run(...args, '--steps', '3');
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stderr, /learned 300 BPE tokens/);
    const loaded = await loadModel(out);
    assert.equal(loaded.vocab.model, 'gpt2');
    assert.equal(loaded.config.vocabSize, 300);
    const text = 'All: we are accounted poor citizens';
    assert.equal(new TextDecoder().decode(loaded.tokenizer.decode(loaded.tokenizer.encode(text))), text);
    assert.ok(loaded.tokenizer.encode(text).length < text.length, 'merges shorten the text');
    const r = run(...args, '--steps', '5', '--resume');
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /learned/, 'a resumed run reuses the checkpoint vocabulary');
    assert.deepEqual((await loadModel(out)).vocab.merges, loaded.vocab.merges);
    for (const [bad, re] of [['bpe:x', /--tokenizer must be 'byte' or 'bpe:<vocab size>'/], ['bpe:100', /256 bytes \+ 1 special token/]] as const) {
      const b = run('train', '--data', join(dir, 'bpe.txt'), '--out', join(dir, 'x.gguf'), '--steps', '1', '--tokenizer', bad);
      assert.equal(b.status, 1);
      assert.match(b.stderr, re);
    }
  });

  test('CLI: train, info and generate end to end; the model file reloads', async () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    writeFileSync(join(dir, 'data.txt'), TEXT);
    const out = join(dir, 'm.gguf');
    const t = run('train', '--data', join(dir, 'data.txt'), '--config', 'nano', '--out', out, '--steps', '5', '--batch', '2', '--ctx', '32', '--warmup', '1', '--threads', '1');
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stderr, /validation \d\.\d+ bits\/byte/);
    const i = run('info', out);
    assert.equal(i.status, 0, i.stderr);
    assert.match(i.stdout, /21,696 parameters/);
    const g = run('generate', '--model', out, '--prompt', 'All:', '--max-tokens', '20', '--temperature', '0');
    assert.equal(g.status, 0, g.stderr);
    assert.ok(g.stdout.startsWith('All:'));
    const loaded = await loadModel(out);
    assert.deepEqual(loaded.config, PRESETS.nano);
    // A prompt longer than the context (64) keeps its last 63 tokens, says so, and generation slides on.
    const long = run('generate', '--model', out, '--prompt', 'x'.repeat(100), '--max-tokens', '80', '--temperature', '0');
    assert.equal(long.status, 0, long.stderr);
    assert.match(long.stderr, /the prompt was longer than the context \(64\); its first 37 tokens were dropped/);
  });

  test('CLI: a shared model with per-position adapters trains, saves, reloads and converts to a plain Llama', async () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    writeFileSync(join(dir, 'data.txt'), TEXT);
    const out = join(dir, 'shared.gguf'), plain = join(dir, 'shared-plain.bin');
    const config = '{"preset":"micro","block_repeat":2,"shared_lora_rank":2}';
    const t = run('train', '--data', join(dir, 'data.txt'), '--config', config, '--out', out, '--steps', '3', '--batch', '2', '--ctx', '32', '--warmup', '1', '--threads', '1');
    assert.equal(t.status, 0, t.stderr);
    const loaded = await loadModel(out);
    assert.equal(loaded.config.sharedLoraRank, 2);
    assert.equal(loaded.weights.get('blk.3.attn_q.lora_b')!.length, loaded.config.dModel * 2);
    assert.match(run('info', out).stdout, /rank-2 adapters per position on the shared weights/);
    // Written out for llama2.c: 4 plain blocks, each with its adapter folded in; the same greedy text.
    const c = run('convert', out, plain);
    assert.equal(c.status, 0, c.stderr);
    const greedy = ['--prompt', 'All:', '--max-tokens', '30', '--temperature', '0', '--threads', '1'];
    const a = run('generate', '--model', out, ...greedy), b = run('generate', '--model', plain, ...greedy);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    assert.equal((await loadModel(plain)).config.nLayers, 4);
    assert.match(run('train', '--data', join(dir, 'data.txt'), '--config', '{"preset":"micro","shared_lora_rank":2}', '--out', out, '--steps', '1').stderr, /sharedLoraRank needs shared weights/);
  });

  test('CLI: Ctrl-C saves a checkpoint and exits cleanly; --resume continues from it', async () => {
    writeFileSync(join(dir, 'data.txt'), TEXT);
    const out = join(dir, 'int.gguf');
    const child = spawn(process.execPath, [CLI, 'train', '--data', join(dir, 'data.txt'), '--config', 'nano', '--out', out, '--steps', '100000', '--batch', '2', '--ctx', '32', '--threads', '1', '--eval-every', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) => child.stderr.on('data', (d: string) => {
      stderr += d;
      if (/step \d+\/100000/.test(stderr)) resolve();
    }));
    child.kill('SIGINT');
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /interrupted: finishing this step and saving the checkpoint/);
    assert.match(stderr, /stopped: \d+ steps/);
    assert.ok(existsSync(`${out}.ckpt`) && existsSync(out));
    const resumed = spawnSync(process.execPath, [CLI, 'train', '--data', join(dir, 'data.txt'), '--config', 'nano', '--out', out, '--steps', '3', '--resume', '--batch', '2', '--ctx', '32', '--threads', '1'], { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming from .*int.gguf.ckpt at step \d+/);
  });
});
