// Fine-tuning and LoRA: adapters start as the identity, their gradients match finite differences, a merge
// equals the adapter applied on the fly, the loss sees only completion tokens, LoRA learns a small task
// in seconds, bad JSONL names its line, and llama.cpp applies our adapter files as stlm does.
import assert from 'node:assert/strict';
import { openLlamaCpp } from '../src/interop/llamacpp.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GGML_TYPE, readGguf, writeGguf } from '../src/formats/gguf.js';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import type { LlamaConfig } from '../src/models/config.js';
import { type LoadedModel, type ModelBundle, byteVocab, loadModel, saveModel } from '../src/io/model-file.js';
import { kvCacheFor, Llama } from '../src/models/llama.js';
import { loraGguf, parseLoraAdapter, saveLoraAdapter } from '../src/io/lora-file.js';
import { LORA_TARGETS, type LoraData, LoraAdapters, initLora, mergeLora, parseLoraTargets } from '../src/models/lora.js';
import { Graph } from '../src/tensor/tensor.js';
import { ByteTokenizer } from '../src/tokenizers/byte.js';
import { evaluateCompletions, finetune, scoreExample } from '../src/train/finetune.js';
import { type CompletionExample, completionBatch, paddedLength, parseJsonl, readJsonl, tokenizeExamples } from '../src/train/jsonl.js';
import { Rng } from '../src/util/rng.js';
import { forwardLogits, greedyIds, logSoftmaxRows, maxAbsDiff } from './helpers.js';

const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const noDefault = existsSync(DEFAULT_MODEL) ? false : 'the embedded default model (models/default.gguf) is absent';

/** A model small enough for the reference backend, with both kinds of sharing and GQA. */
const SHARED: LlamaConfig = {
  vocabSize: 11, dModel: 8, nLayers: 2, nHeads: 2, nKvHeads: 1, mlpHidden: 12, ctx: 8,
  tieEmbeddings: true, ropeTheta: 10000, normEps: 1e-5, dropout: 0, shareFfn: true, blockRepeat: 2,
};

let be: Backend;
let dir: string;
let base: LoadedModel | undefined;
before(async () => {
  be = await createBackend('wasm', { threads: 1 });
  dir = mkdtempSync(join(tmpdir(), 'stlm-lora-'));
  if (!noDefault) base = await loadModel(DEFAULT_MODEL);
});
after(() => {
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Adapters with B drawn N(0, std²) instead of zero, so they change the model. */
function randomAdapters(config: LlamaConfig, o: { rank?: number; alpha?: number; targets?: typeof LORA_TARGETS; std: number; seed?: number }): LoraData {
  const data = initLora(config, { rank: o.rank ?? 4, alpha: o.alpha ?? 8, targets: o.targets ?? LORA_TARGETS, seed: o.seed ?? 3 });
  const rng = new Rng((o.seed ?? 3) + 1);
  for (const p of data.pairs.values()) for (let i = 0; i < p.b.length; i++) p.b[i] = rng.normal() * o.std;
  return data;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function randomWeights(config: LlamaConfig, seed: number): ModelBundle {
  const g = new Graph(be);
  const weights = new Llama(g, config, undefined, seed).weights();
  return { config, weights, vocab: { ...byteVocab(), tokens: byteVocab().tokens.slice(0, config.vocabSize) } };
}

describe('LoRA adapters', () => {
  test('a zero-initialized B gives exactly the base model\'s logits and loss', { skip: noDefault }, () => {
    const m = base!;
    const g = new Graph(be);
    const model = Llama.fromModel(g, m);
    const ids = Array.from(m.tokenizer.encode('ROMEO: Is the day so young?'));
    const before = forwardLogits(model, ids);
    const lossBefore = g.noGrad(() => model.loss(Int32Array.from(ids.slice(0, -1)), Int32Array.from(ids.slice(1)), 1)).item();
    g.release();
    model.adapters = new LoraAdapters(g, m.config, initLora(m.config, { rank: 8, alpha: 16, targets: LORA_TARGETS, seed: 1 }));
    const adapted = forwardLogits(model, ids);
    for (let i = 0; i < before.length; i++) assert.ok(before[i] === adapted[i], `logit ${i}: ${before[i]} vs ${adapted[i]}`);
    assert.equal(g.noGrad(() => model.loss(Int32Array.from(ids.slice(0, -1)), Int32Array.from(ids.slice(1)), 1)).item(), lossBefore);
    g.release();
  });

  test('gradients of A and B match central differences (reference backend, shared blocks, GQA)', (t) => {
    // The reference backend keeps f32 buffers with float64 accumulations. The loss (≈ 6.8 here) is
    // rounded to f32 (ulp 4.8e-7) and so is every activation, so a central difference with eps = 1e-3
    // carries noise of a few ulps / 2e-3, ~2.5e-4 each (3.3e-4 is the worst seen); the truncation error
    // eps²·f'''/6 is smaller once the function is well conditioned. Tolerance: 1e-3 absolute (4 ulps of
    // the loss over 2·eps) plus 0.5% relative, against gradients up to ~1; and 1% on the whole vector.
    // The embedding is scaled to std 1 so the residual stream is O(1): at the 0.02 init RMSNorm blows up
    // a near-zero vector and the loss is so curved along some adapter directions that eps = 1e-3 is too
    // coarse (truncation errors of 1e-3 at 3e-3 of relative error: a property of the function, not of
    // the gradient).
    const ref = new ReferenceBackend();
    const g = new Graph(ref);
    const weights = new Llama(new Graph(ref), SHARED, undefined, 5).weights();
    for (const x of [weights.get('token_embd.weight')!]) for (let i = 0; i < x.length; i++) x[i] *= 50;
    const model = new Llama(g, SHARED, weights, 5, false); // frozen base
    const adapters = new LoraAdapters(g, SHARED, randomAdapters(SHARED, { rank: 2, alpha: 4, std: 0.3 }));
    model.adapters = adapters;
    const ids = Int32Array.of(1, 4, 7, 2, 9, 3, 0, 5, 5, 8, 1, 6);
    const targets = Int32Array.of(4, 7, -1, 9, 3, 0, 5, 10, -1, 1, 6, 2);
    const loss = model.loss(ids, targets, 2);
    g.backward(loss);
    g.release();
    for (const p of model.params.values()) assert.equal(p.grad, null, `frozen ${p.name} got a gradient`);
    const lossAt = () => {
      const l = g.noGrad(() => model.loss(ids, targets, 2)).item();
      g.release();
      return l;
    };
    const eps = 1e-3;
    let worst = 0, checked = 0, norm = 0, errSq = 0, gradSq = 0;
    for (const p of adapters.params()) {
      const grad = p.grad!.toArray(), x = p.toArray();
      for (let i = 0; i < x.length; i++) {
        const orig = x[i];
        x[i] = orig + eps;
        ref.write(p.buf, x);
        const up = lossAt();
        x[i] = orig - eps;
        ref.write(p.buf, x);
        const down = lossAt();
        x[i] = orig;
        ref.write(p.buf, x);
        const fd = (up - down) / (2 * eps);
        const err = Math.abs(fd - grad[i]);
        assert.ok(err <= 1e-3 + 5e-3 * Math.abs(grad[i]), `${p.name}[${i}]: analytic ${grad[i]}, central difference ${fd}`);
        worst = Math.max(worst, err);
        errSq += err * err;
        gradSq += grad[i] * grad[i];
        norm = Math.max(norm, Math.abs(grad[i]));
        checked++;
      }
    }
    // Positions 0 and 1 run the same stored block: their adapters still get different gradients.
    const g0 = adapters.pairs.get('blk.0.ffn_up.weight')!.a.grad!.toArray(), g1 = adapters.pairs.get('blk.1.ffn_up.weight')!.a.grad!.toArray();
    assert.ok(maxAbsDiff(g0, g1) > 1e-3);
    assert.ok(norm > 0.1, 'gradients too small to test');
    assert.ok(Math.sqrt(errSq / gradSq) < 1e-2, `relative error of the whole gradient ${Math.sqrt(errSq / gradSq)}`);
    t.diagnostic(`${checked} values; worst |analytic − central difference| ${worst.toExponential(2)}; relative L2 error ${Math.sqrt(errSq / gradSq).toExponential(2)}`);
    // Per position (rank 2): q 16+16, k 16+8, v 16+8, output 16+16, gate 16+24, up 16+24, down 24+16; 4 positions.
    assert.equal(checked, 4 * 232);
  });

  test('merge equals the adapter applied on the fly (default model; and a shared model, written out per block)', { skip: noDefault }, () => {
    for (const [bundle, lora] of [
      [base!, randomAdapters(base!.config, { rank: 8, alpha: 16, std: 0.02 })],
      [randomWeights(SHARED, 2), randomAdapters(SHARED, { rank: 2, alpha: 4, std: 0.3 })],
    ] as const) {
      const ids = Array.from({ length: Math.min(24, bundle.config.ctx) }, (_, i) => (i * 7 + 3) % bundle.config.vocabSize);
      const g = new Graph(be);
      const plain = new Llama(g, bundle.config, bundle.weights);
      const baseLogits = forwardLogits(plain, ids);
      plain.adapters = new LoraAdapters(g, bundle.config, lora, false);
      const onTheFly = forwardLogits(plain, ids);
      const merged = mergeLora(bundle, lora);
      assert.equal(merged.config.shareFfn ?? false, false);
      assert.equal(merged.config.nLayers, bundle.config.nLayers * (bundle.config.blockRepeat ?? 1));
      const folded = forwardLogits(new Llama(g, merged.config, merged.weights), ids);
      const scale = maxAbs(onTheFly);
      assert.ok(maxAbsDiff(baseLogits, onTheFly) > 1e-2 * scale, 'the adapter should change the logits');
      assert.ok(maxAbsDiff(onTheFly, folded) <= 1e-5 * scale, `merged vs applied: ${maxAbsDiff(onTheFly, folded)} (max |logit| ${scale})`);
      // The base's tensors are untouched (shared arrays are never merged in place).
      assert.ok(bundle.weights.get('blk.0.attn_q.weight') !== merged.weights.get('blk.0.attn_q.weight'));
    }
  });

  test('adapter files: llama.cpp\'s names, ne order and keys; read back exactly; bad files are named', async () => {
    const lora = randomAdapters(SHARED, { rank: 3, alpha: 6, targets: ['attn_q', 'ffn_down'], std: 0.1 });
    const path = join(dir, 'shared-adapter.gguf');
    await saveLoraAdapter(path, lora);
    const bytes = new Uint8Array(readFileSync(path));
    const file = readGguf(bytes, path);
    const meta = (k: string) => file.metadata.get(k)?.value;
    assert.equal(meta('general.type'), 'adapter');
    assert.equal(meta('adapter.type'), 'lora');
    assert.equal(meta('general.architecture'), 'llama');
    assert.equal(meta('adapter.lora.alpha'), 6);
    // Four positions (2 stored blocks × 2 repeats), named by position; A ne [in, r], B ne [r, out].
    const byName = new Map(file.tensors.map((t) => [t.name, t]));
    assert.equal(file.tensors.length, 4 * 2 * 2);
    assert.deepEqual(byName.get('blk.3.attn_q.weight.lora_a')?.shape, [8, 3]);
    assert.deepEqual(byName.get('blk.3.attn_q.weight.lora_b')?.shape, [3, 8]);
    assert.deepEqual(byName.get('blk.2.ffn_down.weight.lora_a')?.shape, [12, 3]);
    assert.deepEqual(byName.get('blk.2.ffn_down.weight.lora_b')?.shape, [3, 8]);
    assert.ok(file.tensors.every((t) => t.type === GGML_TYPE.F32));
    const back = parseLoraAdapter(bytes, path, SHARED);
    assert.equal(back.alpha, 6);
    assert.deepEqual([...back.pairs.keys()].sort(), [...lora.pairs.keys()].sort());
    for (const [n, p] of lora.pairs) assert.deepEqual(back.pairs.get(n), p);
    // Errors name the file and what is wrong.
    assert.throws(() => parseLoraAdapter(bytes, path, { ...SHARED, blockRepeat: 1 }), /shared-adapter\.gguf: adapter for 'blk\.2\.attn_q\.weight': the base model has 2 blocks/);
    assert.throws(() => parseLoraAdapter(bytes, path, { ...SHARED, dModel: 16, nHeads: 2 }), /shared-adapter\.gguf: adapter for 'blk\.\d\.\w+\.weight': A has/);
    const { metadata, tensors } = loraGguf(lora);
    assert.throws(() => parseLoraAdapter(writeGguf(metadata.filter(([k]) => k !== 'general.type'), tensors), 'x.gguf', SHARED), /x\.gguf: not a LoRA adapter .*general\.type is 'missing'/);
    assert.throws(() => parseLoraAdapter(writeGguf(metadata, tensors.filter((t) => t.name !== 'blk.1.attn_q.weight.lora_b')), 'x.gguf', SHARED), /x\.gguf: adapter for 'blk\.1\.attn_q\.weight' lacks its lora_b tensor/);
    assert.throws(() => parseLoraTargets('attn_q,attn_z'), /unknown projection 'attn_z' \(valid: attn_q, attn_k/);
  });

  test('a quantized base (Q8_0 kept quantized) runs with f32 adapters (QLoRA-style inference)', { skip: noDefault }, async () => {
    const q8 = join(dir, 'default-q8.gguf');
    await saveModel(q8, base!, { matrixType: GGML_TYPE.Q8_0 });
    const qm = await loadModel(q8, { keepQuantized: true });
    assert.ok(qm.quantized.size > 0);
    const lora = randomAdapters(base!.config, { rank: 8, alpha: 16, std: 0.02 });
    const ids = Array.from(base!.tokenizer.encode('KING HENRY: Once more unto the breach'));
    const g = new Graph(be);
    const f32 = new Llama(g, base!.config, base!.weights);
    f32.adapters = new LoraAdapters(g, base!.config, lora, false);
    const quant = Llama.fromModel(g, qm);
    const quantBase = forwardLogits(quant, ids);
    quant.adapters = f32.adapters;
    const [want, got] = [forwardLogits(f32, ids), forwardLogits(quant, ids)];
    // The adapter moves the quantized model as it moves the f32 one, up to Q8_0's own error.
    const qError = maxAbsDiff(forwardLogits(new Llama(g, base!.config, base!.weights), ids), quantBase);
    assert.ok(maxAbsDiff(quantBase, got) > 5 * qError, 'the adapter should change the quantized model');
    assert.ok(maxAbsDiff(want, got) < 3 * qError + 1e-4, `adapted: f32 vs Q8_0 base differ by ${maxAbsDiff(want, got)} (Q8_0 alone: ${qError})`);
    for (const q of quant.quantized.values()) q.dispose();
  });
});

describe('prompt/completion data and the fine-tuning loop', () => {
  test('only completion tokens contribute to the loss', { skip: noDefault }, () => {
    const m = base!;
    const examples: CompletionExample[] = [
      { prompt: 'Q: abc\nA:', completion: ' cba', line: 1 },
      { prompt: 'To be, or not', completion: ' to be', line: 2 },
    ];
    const ex = tokenizeExamples(examples, m.tokenizer, { ctx: m.config.ctx, bos: true, fileName: 'mem' });
    const eos = m.tokenizer.eos!, pad = m.tokenizer.pad!;
    assert.deepEqual(Array.from(ex[0].tokens), [m.tokenizer.bos!, ...new TextEncoder().encode('Q: abc\nA: cba'), eos]);
    assert.equal(ex[0].promptLength, 1 + 'Q: abc\nA:'.length);
    const b = completionBatch(ex, { padId: pad, ctx: m.config.ctx, rows: 3 });
    assert.equal(b.batch, 3);
    assert.equal(b.seqLen, paddedLength(Math.max(ex[0].tokens.length, ex[1].tokens.length) - 1, m.config.ctx));
    assert.deepEqual([1, 8, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 250].map((n) => paddedLength(n, 200)), [8, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 200, 250]);
    assert.ok(b.ids.subarray(2 * b.seqLen).every((id) => id === pad) && b.targets.subarray(2 * b.seqLen).every((t) => t === -1), 'an empty row is all padding');
    // Targets: −1 on every prompt position and on padding; the completion and EOS elsewhere.
    for (const [r, e] of ex.entries()) {
      for (let t = 0; t < b.seqLen; t++) {
        const want = t + 1 >= e.promptLength && t + 1 < e.tokens.length ? e.tokens[t + 1] : -1;
        assert.equal(b.targets[r * b.seqLen + t], want, `row ${r} position ${t}`);
        if (t >= e.tokens.length - 1) assert.equal(b.ids[r * b.seqLen + t], pad);
      }
    }
    const g = new Graph(be);
    const model = Llama.fromModel(g, m);
    const lossOf = (ids: Int32Array, targets: Int32Array) => {
      const l = g.noGrad(() => model.loss(ids, targets, b.batch)).item();
      g.release();
      return l;
    };
    const loss = lossOf(b.ids, b.targets);
    // The same number from an independent path: the KV-cache forward, scored on completion tokens only.
    const cache = kvCacheFor(g, m.config);
    const scores = ex.map((e) => scoreExample(model, cache, e));
    cache.dispose();
    const completionNll = -scores.reduce((s, x) => s + x.logProb, 0) / scores.reduce((s, x) => s + x.tokens, 0);
    assert.ok(Math.abs(loss - completionNll) < 1e-5 * loss, `${loss} vs ${completionNll}`);
    // Prompt targets are not consulted: whatever they say (any ignored value, or padding ids), the loss is the same.
    const otherPrompt = b.targets.map((t) => (t < 0 ? -7 : t));
    assert.equal(lossOf(b.ids, otherPrompt), loss);
    const otherPad = b.ids.slice();
    for (let t = ex[1].tokens.length - 1; t < b.seqLen; t++) otherPad[b.seqLen + t] = 42;
    assert.equal(lossOf(otherPad, b.targets), loss);
    // ... while they would change the loss if they were targets, and a completion token does change it.
    const withPrompt = b.targets.slice();
    for (const [r, e] of ex.entries()) for (let t = 0; t + 1 < e.promptLength; t++) withPrompt[r * b.seqLen + t] = e.tokens[t + 1];
    assert.notEqual(lossOf(b.ids, withPrompt), loss);
    const changed = tokenizeExamples([{ ...examples[0], completion: ' cbx' }, examples[1]], m.tokenizer, { ctx: m.config.ctx, bos: true, fileName: 'mem' });
    const b2 = completionBatch(changed, { padId: pad, ctx: m.config.ctx, rows: 3 });
    assert.notEqual(lossOf(b2.ids, b2.targets), loss);
  });

  test('LoRA learns a copy task in seconds: test loss down, accuracy up; the base stays frozen', { skip: noDefault }, (t) => {
    const m = base!;
    const rng = new Rng(7), letters = 'abcdefghijklmnopqrstuvwxyz';
    const make = (n: number) => Array.from({ length: n }, (_, i): CompletionExample => {
      const w = Array.from({ length: 3 }, () => letters[rng.int(26)]).join('');
      return { prompt: `Q: ${w}\nA:`, completion: ` ${w}`, line: i + 1 };
    });
    const enc = (e: CompletionExample[]) => tokenizeExamples(e, m.tokenizer, { ctx: m.config.ctx, bos: true, fileName: 'copy' });
    const [train, testSet] = [enc(make(256)), enc(make(64))];
    const g = new Graph(be);
    const t0 = performance.now();
    const r = finetune(g, m, {
      lora: { rank: 8, alpha: 16, targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output'], seed: 1 },
      train, test: testSet, steps: 200, batch: 8, lr: 5e-3, weightDecay: 0, clip: 1, seed: 1, padId: m.tokenizer.pad!,
    });
    const [b, a] = [r.before!, r.after!];
    t.diagnostic(`${r.steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s: test loss ${b.loss.toFixed(3)} -> ${a.loss.toFixed(3)}, token accuracy ${(100 * b.tokenAccuracy).toFixed(1)}% -> ${(100 * a.tokenAccuracy).toFixed(1)}%, exact match ${(100 * b.exactMatch).toFixed(1)}% -> ${(100 * a.exactMatch).toFixed(1)}%`);
    assert.ok(a.loss < b.loss / 2, `test loss ${b.loss} -> ${a.loss}`);
    // Each completion is 5 tokens (space, 3 letters, EOS): the format alone gives 40%; above it, letters are copied.
    assert.ok(a.tokenAccuracy > 0.45 && a.tokenAccuracy > b.tokenAccuracy + 0.2, `token accuracy ${b.tokenAccuracy} -> ${a.tokenAccuracy}`);
    // Frozen base: no gradients, weights bit for bit as loaded.
    for (const [name, p] of r.model.params) {
      assert.equal(p.grad, null, `${name} got a gradient`);
      assert.deepEqual(p.toArray(), m.weights.get(name));
    }
    assert.equal(r.adapters!.params().length, 4 * 4 * 2);
  });

  test('full fine-tuning trains every weight, deterministically', { skip: noDefault }, () => {
    const m = base!;
    const ex = tokenizeExamples(Array.from({ length: 16 }, (_, i) => ({ prompt: `n${i}:`, completion: ` ${i % 2 ? 'odd' : 'even'}`, line: i + 1 })), m.tokenizer, { ctx: m.config.ctx, bos: true, fileName: 'parity' });
    const run = () => finetune(new Graph(be), m, { train: ex, steps: 8, batch: 4, lr: 1e-3, weightDecay: 0, clip: 1, seed: 3, padId: m.tokenizer.pad! });
    const [r1, r2] = [run(), run()];
    assert.deepEqual(r1.losses, r2.losses);
    assert.ok(r1.losses.at(-1)! < r1.losses[0], `losses ${r1.losses.join(', ')}`);
    assert.equal(r1.adapters, null);
    assert.ok(maxAbsDiff(r1.model.params.get('blk.2.ffn_up.weight')!.toArray(), m.weights.get('blk.2.ffn_up.weight')!) > 0);
    const e = evaluateCompletions(r1.model, ex);
    assert.ok(e.loss < 5 && e.tokens === ex.reduce((s, x) => s + x.tokens.length - x.promptLength, 0));
  });

  test('bad JSONL: errors name the file and the line; long prompts are cut from the left', async () => {
    const f = 'data/train.jsonl';
    const ok = '{"prompt": "a", "completion": "b"}';
    assert.deepEqual(parseJsonl(`\uFEFF${ok}\n\n  \n{"prompt": "", "completion": "é", "extra": 1}\r\n`, f), [
      { prompt: 'a', completion: 'b', line: 1 },
      { prompt: '', completion: 'é', line: 4 },
    ]);
    assert.throws(() => parseJsonl(`${ok}\n${ok}\n{"prompt": "a", "completion": }\n`, f), /^Error: data\/train\.jsonl:3: invalid JSON/);
    assert.throws(() => parseJsonl(`${ok}\n{"prompt": "a"}\n`, f), /^Error: data\/train\.jsonl:2: missing field "completion"$/);
    assert.throws(() => parseJsonl('{"prompt": 7, "completion": "b"}', f), /^Error: data\/train\.jsonl:1: field "prompt" must be a string, got number$/);
    assert.throws(() => parseJsonl(`${ok}\n["a", "b"]`, f), /^Error: data\/train\.jsonl:2: expected an object/);
    assert.throws(() => parseJsonl('\n \n', f), /^Error: data\/train\.jsonl: no examples \(the file is empty\)$/);
    const missing = join(dir, 'nope.jsonl');
    assert.throws(() => readJsonl(missing), /cannot read data file '.*nope\.jsonl': ENOENT/);
    const onDisk = join(dir, 'bad.jsonl');
    writeFileSync(onDisk, `${ok}\n{"prompt": null, "completion": "x"}\n`);
    assert.throws(() => readJsonl(onDisk), new RegExp(`${onDisk.replace(/[.\\/]/g, '\\$&')}:2: field "prompt" must be a string, got null`));

    const tok = new ByteTokenizer();
    const logs: string[] = [];
    const long: CompletionExample[] = [
      { prompt: 'abcdefghij', completion: 'XYZ', line: 1 },
      { prompt: 'short', completion: 'ok', line: 2 },
      { prompt: '0123456789abc', completion: 'Q', line: 5 },
    ];
    const ex = tokenizeExamples(long, tok, { ctx: 8, bos: true, fileName: f, log: (l) => logs.push(l) });
    // BOS + the prompt's last 4 bytes + XYZ + EOS = 9 tokens: 8 positions, the context.
    assert.deepEqual(Array.from(ex[0].tokens), [256, ...new TextEncoder().encode('ghijXYZ'), 257]);
    assert.equal(ex[0].promptLength, 5);
    assert.equal(ex[2].tokens.length - 1, 8);
    assert.deepEqual(logs, [`${f}: 2 examples longer than the context of 8 tokens had the start of the prompt cut (first at line 1)`]);
    assert.throws(() => tokenizeExamples([{ prompt: 'a', completion: 'far too long', line: 9 }], tok, { ctx: 8, bos: true, fileName: f }), /^Error: data\/train\.jsonl:9: the completion is 13 tokens with EOS, more than the model context of 8$/);
  });

  test('`stlm finetune --lora` then `stlm merge`: the files read back; CLI errors are one line', { skip: noDefault }, async () => {
    const train = join(dir, 'cli-train.jsonl');
    writeFileSync(train, ['cat', 'dog', 'owl', 'emu'].map((w) => JSON.stringify({ prompt: `Q: ${w}\nA:`, completion: ` ${w}` })).join('\n') + '\n');
    const adapter = join(dir, 'cli-adapter.gguf'), merged = join(dir, 'cli-merged.gguf');
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    let r = run('finetune', '--data', train, '--test', train, '--out', adapter, '--lora', '--rank', '4', '--targets', 'attn_q,ffn_up', '--steps', '3', '--batch', '2', '--threads', '1');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /LoRA rank 4, alpha 16 on attn_q,ffn_up/);
    assert.match(r.stderr, /test after: +loss \d/);
    const data = parseLoraAdapter(new Uint8Array(readFileSync(adapter)), adapter, base!.config);
    assert.equal(data.pairs.size, 2 * base!.config.nLayers);
    r = run('merge', DEFAULT_MODEL, adapter, merged);
    assert.equal(r.status, 0, r.stderr);
    const m = await loadModel(merged);
    assert.deepEqual(m.weights.get('blk.1.attn_k.weight'), base!.weights.get('blk.1.attn_k.weight'));
    assert.ok(maxAbsDiff(m.weights.get('blk.1.attn_q.weight')!, base!.weights.get('blk.1.attn_q.weight')!) > 0);
    // The adapter applied on the fly (generate --lora) writes what the merged model writes.
    const greedy = ['--prompt', 'Q: cat\nA:', '--temperature', '0', '--max-tokens', '40', '--threads', '1'];
    const onTheFly = run('generate', '--lora', adapter, ...greedy), folded = run('generate', '--model', merged, ...greedy);
    assert.equal(onTheFly.status, 0, onTheFly.stderr);
    assert.equal(onTheFly.stdout, folded.stdout);
    r = run('generate', '--lora', train, '--prompt', 'x');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^stlm: error: .*cli-train\.jsonl/);
    r = run('finetune', '--data', train, '--out', adapter, '--steps', '3', '--epochs', '1');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'stlm: error: finetune: give --steps or --epochs, not both\n');
    r = run('merge', DEFAULT_MODEL, train, merged);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.split('\n').length, 2);
    assert.match(r.stderr, /^stlm: error: .*cli-train\.jsonl/);
  });
});

// ---- llama.cpp as the oracle ----------------------------------------------------------------------

describe('llama.cpp applies our adapter files (node-llama-cpp 3.21.1)', () => {
  test('base GGUF + our LoRA GGUF in llama.cpp = stlm\'s merged model: log-probs within 1e-3, same greedy tokens', { skip: noDefault }, async (t) => {
    const m = base!;
    const lora = randomAdapters(m.config, { rank: 8, alpha: 16, targets: LORA_TARGETS, std: 0.03, seed: 11 });
    const adapter = join(dir, 'oracle-adapter.gguf');
    await saveLoraAdapter(adapter, lora);
    const cpp = await openLlamaCpp(DEFAULT_MODEL, { lora: adapter });
    if (typeof cpp === 'string') return t.skip(cpp);
    try {
      const merged = mergeLora(m, lora);
      const g = new Graph(be);
      const stlmMerged = new Llama(g, merged.config, merged.weights);
      const prompt = Array.from(m.tokenizer.encode('ROMEO: What light through yonder window breaks?'));
      const ours = logSoftmaxRows(forwardLogits(stlmMerged, prompt), m.config.vocabSize);
      const theirs = await cpp.logProbs(prompt);
      const baseRows = logSoftmaxRows(forwardLogits(Llama.fromModel(g, m), prompt), m.config.vocabSize);
      let worst = 0, moved = 0;
      for (let i = 0; i < prompt.length; i++) {
        worst = Math.max(worst, maxAbsDiff(ours[i], theirs[i]));
        moved = Math.max(moved, maxAbsDiff(baseRows[i], theirs[i]));
      }
      assert.ok(moved > 0.1, `the adapter barely moves llama.cpp's log-probs (${moved}): is it applied?`);
      assert.ok(worst < 1e-3, `max |log p difference| ${worst}`);
      t.diagnostic(`max |log p(stlm merged) − log p(llama.cpp + adapter)| ${worst.toExponential(2)} over ${prompt.length} positions; the adapter moves log p by up to ${moved.toFixed(3)}`);
      const theirGreedy = await cpp.greedy(prompt, 48);
      assert.equal(theirGreedy.length, 48);
      assert.deepEqual(greedyIds(stlmMerged, prompt, 48), theirGreedy);
      // And the adapter applied on the fly in stlm (unmerged) generates the same.
      const onTheFly = Llama.fromModel(g, m);
      onTheFly.adapters = new LoraAdapters(g, m.config, lora, false);
      assert.deepEqual(greedyIds(onTheFly, prompt, 48), theirGreedy);
    } finally {
      await cpp.dispose();
    }
  });
});
