/**
 * The CLI on the files that are not plain Llama models: byte-pooled models (general.architecture
 * stlm-pooled) and LoRA adapters (general.type adapter). `info` describes both, `eval bpb` evaluates a
 * pooled model exactly as the library (and the trainer) do, and quantize / convert refuse what cannot
 * work in one clear line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateBpb } from '../src/eval/bpb.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { BytePooled, type PooledConfig, pooledParameterCounts, resolvePooledConfig } from '../src/models/byte-pooled.js';
import { PRESETS } from '../src/models/config.js';
import { byteVocab, loadModel, saveModel } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { saveLoraAdapter } from '../src/io/lora-file.js';
import { type LoraData, initLora } from '../src/models/lora.js';
import { Graph } from '../src/tensor/tensor.js';
import { splitTrainVal } from '../src/train/data.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

const PARAGRAPH = 'The quick brown fox jumps over the lazy dog, and the dog, being lazy, lets it. ' +
  'Then the fox, pleased with itself, trots home across the field before the rain begins.';
const TEXT = Array.from({ length: 16 }, (_, i) => `${i}: ${PARAGRAPH}`).join('\n');

/** Runs the built CLI; STLM_DEBUG off, so errors must come out as one line. */
function stlm(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, STLM_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLineError(r: ReturnType<typeof stlm>, pattern: RegExp, what: string): void {
  assert.equal(r.status, 1, `${what}: exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^stlm: error: /, what);
  assert.match(r.stderr, pattern, what);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line, got ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: printed a stack trace`);
}

/**
 * Bits per byte as a plain mean of the model's loss over each window on its own (batch 1), in float64:
 * no batching, no shared accumulation with evaluateBpb.
 */
function meanWindowLossBits(model: BytePooled, bytes: Uint8Array, T: number): number {
  const windows = Math.floor((bytes.length - 1) / T);
  let nats = 0;
  for (let w = 0; w < windows; w++) {
    const ids = Int32Array.from(bytes.subarray(w * T, w * T + T));
    const targets = Int32Array.from(bytes.subarray(w * T + 1, w * T + T + 1));
    nats += model.graph.noGrad(() => model.loss(ids, targets, 1)).item();
    model.graph.release();
  }
  return nats / windows / Math.LN2;
}

describe('stlm CLI on byte-pooled models and LoRA adapters', () => {
  let dir: string;
  const be = new ReferenceBackend();
  const path = (name: string) => join(dir, name);
  let trainerValidation = NaN;
  let lora: LoraData;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stlm-cli-pooled-'));
    writeFileSync(path('text.txt'), TEXT);
    // fixed:4 chunks, trained for a few steps by the CLI itself (its validation number is checked below).
    const t = stlm('train', '--arch', 'pooled', '--chunk', 'fixed:4', '--config', 'nano', '--data', path('text.txt'), '--out', path('fixed.gguf'),
      '--steps', '3', '--batch', '2', '--ctx', '32', '--warmup', '1', '--threads', '1');
    assert.equal(t.status, 0, t.stderr);
    trainerValidation = Number(/validation (\d+\.\d+) bits\/byte/.exec(t.stderr)![1]);
    // space:8 chunks, random weights made large enough that predictions differ from byte to byte.
    const config = resolvePooledConfig({ preset: 'nano', ctx: 48 }, 'space:8');
    const weights = new BytePooled(new Graph(be), config, undefined, 5).weights();
    for (const w of weights.values()) if (w.length > config.dModel) w.forEach((v, i) => (w[i] = v * 20));
    await saveModel(path('space.gguf'), { config, weights, vocab: byteVocab() });
    lora = initLora({ ...PRESETS.nano, nLayers: 3 }, { rank: 2, alpha: 6, targets: ['attn_q', 'attn_v', 'ffn_down'], seed: 2 });
    await saveLoraAdapter(path('adapter.gguf'), lora);
    await saveModel(path('llama.gguf'), { config: PRESETS.nano, weights: new Llama(new Graph(be), PRESETS.nano).weights(), vocab: byteVocab() });
  });
  after(() => {
    be.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('info: a pooled model shows its chunking, parameter breakdown, core and decoder', async () => {
    const n = pooledParameterCounts((await loadModel(path('space.gguf'))).config as PooledConfig);
    const r = stlm('info', path('space.gguf'));
    assert.equal(r.status, 0, r.stderr);
    const f = (x: number) => x.toLocaleString('en-US');
    assert.match(r.stdout, new RegExp(`model: +byte-pooled \\(stlm-pooled; only stlm runs it\\), ${f(n.total)} parameters`));
    assert.match(r.stdout, /chunking: +space:8: chunks cut at word boundaries \(SpaceByte's rule\), at most 8 bytes/);
    assert.match(r.stdout, new RegExp(`parameters: byte embedding ${f(n.byteEmbedding)}, encoder ${f(n.encoder)}, core ${f(n.core)}, decoder ${f(n.decoder)}`));
    assert.match(r.stdout, /core: +d_model 32, 1 layers, 2 heads \(2 kv, head dim 16\), mlp 96, over chunks/);
    assert.match(r.stdout, /decoder: +byte dim 16, 1 layers, 1 heads .*tied to the byte embedding/);
    assert.match(r.stdout, /ctx 48 bytes/);
    assert.match(r.stdout, /tensors: +23 \(F32\)/);
    const fixed = stlm('info', path('fixed.gguf'));
    assert.equal(fixed.status, 0, fixed.stderr);
    assert.match(fixed.stdout, /chunking: +fixed:4: chunks cut every 4 bytes/);
  });

  test('info --json: the same keys as a Llama\'s, architecture stlm-pooled, plus chunking and the breakdown', () => {
    const pooled = JSON.parse(stlm('info', path('space.gguf'), '--json').stdout);
    const llama = JSON.parse(stlm('info', path('llama.gguf'), '--json').stdout);
    assert.equal(llama.architecture, 'llama');
    assert.deepEqual(Object.keys(pooled), [...Object.keys(llama), 'chunking', 'parameterCounts']);
    assert.equal(pooled.architecture, 'stlm-pooled');
    assert.equal(pooled.chunking, 'space:8');
    assert.equal(pooled.parameters, pooled.parameterCounts.total);
    assert.equal(pooled.parameterCounts.total, pooled.parameterCounts.byteEmbedding + pooled.parameterCounts.encoder + pooled.parameterCounts.core + pooled.parameterCounts.decoder);
    assert.deepEqual(pooled.config.pooling, { rule: 'space', chunkBytes: 8, byteDim: 16, decoderHeads: 1, decoderLayers: 1, decoderMlpHidden: 48 });
    assert.equal(pooled.tensors, 23);
  });

  test('info: a LoRA adapter, from its file alone (text and --json)', () => {
    const parameters = [...lora.pairs.values()].reduce((s, p) => s + p.a.length + p.b.length, 0);
    const r = stlm('info', path('adapter.gguf'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /adapter: +LoRA for a llama model/);
    assert.match(r.stdout, /alpha: +6, rank 2 \(scale alpha\/rank = 3\)/);
    assert.match(r.stdout, /targets: +attn_q, attn_v, ffn_down/);
    assert.match(r.stdout, /positions: +blocks 0-2/);
    assert.match(r.stdout, new RegExp(`pairs: +9 .*, ${parameters.toLocaleString('en-US')} parameters`));
    const j = JSON.parse(stlm('info', path('adapter.gguf'), '--json').stdout);
    assert.deepEqual(
      { type: j.type, adapterType: j.adapterType, alpha: j.alpha, ranks: j.ranks, scales: j.scales, targets: j.targets, positions: j.positions, pairs: j.pairs, parameters: j.parameters, tensors: j.tensors, unpaired: j.unpaired },
      { type: 'adapter', adapterType: 'lora', alpha: 6, ranks: [2], scales: [3], targets: ['attn_q', 'attn_v', 'ffn_down'], positions: [0, 1, 2], pairs: 9, parameters, tensors: 18, unpaired: [] },
    );
  });

  test('commands that need a model say an adapter is not one', () => {
    for (const args of [['generate', '--model', path('adapter.gguf'), '--prompt', 'a'], ['eval', 'bpb', '--model', path('adapter.gguf'), '--data', path('adapter.gguf')], ['quantize', path('adapter.gguf'), path('q.gguf'), '--type', 'q8_0']]) {
      assertOneLineError(stlm(...args), /is a LoRA adapter, not a model: run it on its base \(stlm merge/, args[0]);
    }
  });

  test('eval bpb: a pooled model gives the library\'s number (and the trainer\'s validation)', async () => {
    const cases = [
      { file: 'fixed.gguf', args: ['--ctx', '32'], text: splitTrainVal(new TextEncoder().encode(TEXT)).val, T: 32, batch: 8 },
      { file: 'space.gguf', args: ['--split', 'all', '--ctx', '40', '--batch', '3'], text: new TextEncoder().encode(TEXT), T: 40, batch: 3 },
    ];
    for (const c of cases) {
      const r = stlm('eval', 'bpb', '--model', path(c.file), '--data', path('text.txt'), '--backend', 'reference', '--json', ...c.args);
      assert.equal(r.status, 0, r.stderr);
      const cli = JSON.parse(r.stdout);
      const model = BytePooled.fromModel(new Graph(be), await loadModel(path(c.file)));
      const lib = evaluateBpb(model, c.text, { batch: c.batch, seqLen: c.T });
      assert.ok(Math.abs(cli.bpb - lib.bpb) < 1e-6, `${c.file}: CLI ${cli.bpb} vs library ${lib.bpb}`);
      assert.deepEqual([cli.architecture, cli.weights, cli.ctx, cli.tokens], ['stlm-pooled', 'f32', c.T, Math.floor((c.text.length - 1) / c.T) * c.T]);
      const direct = meanWindowLossBits(model, c.text, c.T);
      assert.ok(Math.abs(cli.bpb - direct) < 1e-5, `${c.file}: CLI ${cli.bpb} vs the mean window loss ${direct}`);
      assert.ok(cli.bpb > 1 && cli.bpb < 12, `${c.file}: ${cli.bpb} bits/byte`);
    }
    // The trainer evaluated the same validation split with the same windows (on wasm; printed to 4 places).
    const text = stlm('eval', 'bpb', '--model', path('fixed.gguf'), '--data', path('text.txt'), '--ctx', '32', '--threads', '1');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`\\(f32, byte-pooled, fixed:4 chunks\\) .*\\[val\\]: ${trainerValidation.toFixed(4)} bits/byte over [\\d,]+ bytes`));
  });

  test('quantize refuses a pooled model in one line, saying why; convert writes GGUF only', async () => {
    assertOneLineError(stlm('quantize', path('space.gguf'), path('q.gguf'), '--type', 'q8_0'),
      /byte-pooled models cannot be quantized yet, because stlm runs them from f32 weights only.*--type f16/, 'quantize');
    assertOneLineError(stlm('convert', path('space.gguf'), path('m.bin')), /byte-pooled model \(stlm-pooled\), which only stlm runs: llama2\.c files hold plain Llama models/, 'convert to llama2.c');
    assertOneLineError(stlm('convert', path('space.gguf'), path('hf')), /only stlm runs: Hugging Face safetensors files hold plain Llama models/, 'convert to Hugging Face');
    // GGUF to GGUF works, f16 included, and the copy evaluates within f16 rounding of the original.
    const c = stlm('convert', path('space.gguf'), path('half.gguf'), '--type', 'f16');
    assert.equal(c.status, 0, c.stderr);
    const total = pooledParameterCounts((await loadModel(path('space.gguf'))).config as PooledConfig).total;
    assert.match(c.stderr, new RegExp(`\\(gguf, ${total.toLocaleString('en-US')} parameters, byte tokenizer\\) -> .*half\\.gguf`));
    const bpb = (file: string) => JSON.parse(stlm('eval', 'bpb', '--model', path(file), '--data', path('text.txt'), '--backend', 'reference', '--json').stdout).bpb as number;
    const [full, half] = [bpb('space.gguf'), bpb('half.gguf')];
    assert.ok(Math.abs(full - half) < 0.01, `f16 copy: ${half} vs ${full} bits/byte`);
  });
});
