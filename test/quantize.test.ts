// Quantized models end to end: `stlm quantize` writes GGUF files llama.cpp runs to the same greedy text,
// stlm runs them from their quantized weights (never an f32 copy of a matrix), the quality cost is small
// on the embedded model, and bad input (already quantized, NaN, rows that are not whole blocks) is handled.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateBpb } from '../src/eval/bpb.js';
import { GGML_TYPE, readGgufFile } from '../src/formats/gguf.js';
import { type LlamaCppModel, openLlamaCpp } from '../src/interop/llamacpp.js';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { PRESETS } from '../src/models/config.js';
import { type LoadedModel, byteVocab, loadModel, saveModel } from '../src/io/model-file.js';
import { kvCacheFor, Llama } from '../src/models/llama.js';
import { planQuantization } from '../src/io/quantize.js';
import { Graph } from '../src/tensor/tensor.js';
import { splitTrainVal } from '../src/train/data.js';
import { argmax, greedyIds, logSoftmaxRows } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const TINY_RANDOM = join(FIXTURES, 'models/tiny-random-llama/llama-2-tiny-random.gguf');
const SHAKESPEARE = join(FIXTURES, 'corpora/tinyshakespeare/input.txt');
const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const absent = (p: string) => (existsSync(p) ? false : `fixture ${p} is absent (see ../shared/fixtures/README.md)`);
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

let be: Backend;
let dir: string;
before(async () => {
  be = await createBackend('wasm', { threads: 1 });
  dir = mkdtempSync(join(tmpdir(), 'stlm-quant-'));
});
after(() => {
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Greedy ids after `prompt` from the model as loaded (quantized matrices run quantized). `stepwise`
 * feeds the prompt one token at a time, so every product is a matrix-vector one.
 */
function greedy(m: LoadedModel, prompt: number[], n: number, stepwise = false): number[] {
  const model = Llama.fromModel(new Graph(be), m);
  const out = greedyIds(model, prompt, n, { ctx: prompt.length + n, stepwise });
  for (const q of model.quantized.values()) q.dispose();
  return out;
}

function quantize(input: string, type: string, ...extra: string[]): string {
  const out = join(dir, `${type}-${Math.random().toString(36).slice(2)}.gguf`);
  const r = run('quantize', input, out, '--type', type, ...extra);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

describe('stlm quantize: files, types, bad input', () => {
  test('norms stay F32, matrices take the type, the tied embedding Q8_0 at 4 bits; loading keeps matrices quantized', { skip: absent(DEFAULT_MODEL) && 'the embedded default model is absent' }, async () => {
    const q4 = quantize(DEFAULT_MODEL, 'q4_0');
    const f = await readGgufFile(q4);
    const type = (n: string) => f.tensors.find((t) => t.name === n)!.type;
    assert.equal(type('blk.0.attn_norm.weight'), GGML_TYPE.F32);
    assert.equal(type('blk.0.attn_q.weight'), GGML_TYPE.Q4_0);
    assert.equal(type('blk.3.ffn_down.weight'), GGML_TYPE.Q4_0);
    assert.equal(type('token_embd.weight'), GGML_TYPE.Q8_0);
    const m = await loadModel(q4, { keepQuantized: true });
    assert.equal(m.quantized.size, 1 + 4 * 7);
    assert.ok([...m.weights.keys()].every((n) => n.endsWith('norm.weight')), 'only norm gains are decoded to f32');
    assert.ok(readFileSync(q4).length < readFileSync(DEFAULT_MODEL).length / 6);
  });

  test('an already-quantized model is refused unless --allow-requantize', { skip: absent(DEFAULT_MODEL) && 'the embedded default model is absent' }, () => {
    const q8 = quantize(DEFAULT_MODEL, 'q8_0');
    const r = run('quantize', q8, join(dir, 'again.gguf'), '--type', 'q4_0');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already quantized \(tensor '.*' is Q8_0\).*--allow-requantize/);
    quantize(q8, 'q4_0', '--allow-requantize');
  });

  test('NaN weights are refused by name; rows that are not whole blocks fall back (documented) and still run', async () => {
    const g = new Graph(be);
    const config = { ...PRESETS.micro }; // d 40, mlp 112: rows of 40 and 112 are not whole 32-blocks
    const weights = new Llama(g, config, undefined, 3).weights();
    const plan = planQuantization(config, 'q4_0');
    assert.equal(plan.types.get('blk.0.attn_q.weight'), GGML_TYPE.F16);
    assert.match(plan.notes.join('\n'), /blk\.0\.attn_q\.weight: rows of 40 are not whole Q4_0 blocks of 32; written as F16/);
    const k256 = planQuantization({ ...PRESETS.tiny }, 'q4_k');
    assert.equal(k256.types.get('blk.0.attn_q.weight'), GGML_TYPE.Q8_0, 'rows of 128 fit Q8_0 blocks but not Q4_K super-blocks');
    const src = join(dir, 'micro.gguf');
    await saveModel(src, { config, weights, vocab: byteVocab() });
    const q = quantize(src, 'q4_0');
    const back = await loadModel(q, { keepQuantized: true });
    assert.equal(back.quantized.size, 0, 'F16 fallbacks are decoded to f32');
    assert.equal(greedy(back, [65, 66], 4).length, 4);
    weights.get('blk.1.ffn_up.weight')![7] = NaN;
    const bad = join(dir, 'nan.gguf');
    await saveModel(bad, { config, weights, vocab: byteVocab() });
    const r = run('quantize', bad, join(dir, 'x.gguf'), '--type', 'q8_0');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /tensor 'blk\.1\.ffn_up\.weight' holds NaN at index 7: cannot quantize non-finite weights/);
  });
});

describe('quantized models against llama.cpp (node-llama-cpp 3.21.1)', () => {
  let reason = '';
  const opened: LlamaCppModel[] = [];
  const open = async (p: string) => {
    const m = await openLlamaCpp(p);
    if (typeof m === 'string') {
      reason = m;
      return undefined;
    }
    opened.push(m);
    return m;
  };
  after(async () => {
    for (const m of opened) await m.dispose();
  });

  // llama.cpp multiplies quantized weights by activations rounded to 8 bits per block of 32, in every
  // product. stlm does the same for matrix-vector products (and small batches); fed one token at a time it
  // computes what llama.cpp computes, up to float summation order, so the greedy tokens must be identical.
  // A batched prefill instead multiplies by the unrounded activations (faster there, and more exact), so
  // its logits differ from llama.cpp's by the activation rounding: a choice may flip only at a near tie.
  for (const type of ['q8_0', 'q4_0']) {
    test(`the embedded model in ${type}: llama.cpp's 64 greedy tokens, exactly (stepwise) and up to near ties (batched prefill)`, { skip: absent(DEFAULT_MODEL) && 'the embedded default model is absent' }, async (t) => {
      const file = quantize(DEFAULT_MODEL, type);
      const ref = await open(file);
      if (!ref) return t.skip(reason);
      const m = await loadModel(file, { keepQuantized: true });
      const prompt = Array.from(m.tokenizer.encode('ROMEO: Is the day so young?'));
      const theirs = await ref.greedy(prompt, 64);
      assert.equal(theirs.length, 64);
      assert.deepEqual(greedy(m, prompt, 64, true), theirs);
      // And stepwise log-probabilities equal llama.cpp's (F32 KV cache) over the first 12 positions.
      // (Only there: for a longer batch llama.cpp's Q8_0 path regroups rows, and from row 17 on it rounds
      // differently, by ~0.05 in log-probability, the size of an activation-rounding difference.)
      const theirLp = await ref.logProbs(prompt.slice(0, 12));
      {
        const g = new Graph(be);
        const model = Llama.fromModel(g, m);
        const cache = kvCacheFor(g, m.config, 12);
        let worst = 0;
        prompt.slice(0, 12).forEach((tok, i) => {
          const [row] = logSoftmaxRows(model.forward(Int32Array.of(tok), cache).toArray(), m.config.vocabSize);
          g.release();
          row.forEach((v, t) => (worst = Math.max(worst, Math.abs(v - theirLp[i][t]))));
        });
        for (const q of model.quantized.values()) q.dispose();
        assert.ok(worst < 1e-3, `stepwise max |log p difference| ${worst}`);
      }
      // Batched prefill, teacher-forced on llama.cpp's tokens: our choice equals theirs or is a near tie.
      const g = new Graph(be);
      const model = Llama.fromModel(g, m);
      const cache = kvCacheFor(g, m.config, prompt.length + 64);
      let logits = model.forward(Int32Array.from(prompt), cache).toArray();
      let ties = 0;
      for (let i = 0; i < 64; i++) {
        const best = argmax(logits);
        if (best !== theirs[i]) {
          ties++;
          assert.ok(logits[best] - logits[theirs[i]] < 0.05, `step ${i}: ours ${best} beats theirs ${theirs[i]} by ${logits[best] - logits[theirs[i]]}`);
        }
        g.release();
        logits = model.forward(Int32Array.of(theirs[i]), cache).toArray();
      }
      g.release();
      assert.ok(ties <= 2, `${ties} near ties`);
      for (const q of model.quantized.values()) q.dispose();
    });
  }

  test('the tiny-random fixture re-quantized by stlm (F16 -> Q8_0) runs in both with the same greedy tokens', { skip: absent(TINY_RANDOM) }, async (t) => {
    const file = quantize(TINY_RANDOM, 'q8_0', '--embedding-type', 'q8_0');
    const ref = await open(file);
    if (!ref) return t.skip(reason);
    const m = await loadModel(file, { keepQuantized: true });
    assert.ok(m.quantized.size > 0);
    const prompt = [1, ...m.tokenizer.encode('Once upon a time')];
    const theirs = await ref.greedy(prompt, 16);
    assert.deepEqual(greedy(m, prompt, theirs.length), theirs);
  });
});

describe('quality cost on the embedded model (tinyshakespeare validation, 64 windows)', { skip: (absent(DEFAULT_MODEL) && 'the embedded default model is absent') || absent(SHAKESPEARE) }, () => {
  test('Q8_0 costs at most 0.01 bits/byte, Q4_0 at most 0.10', async () => {
    const val = splitTrainVal(new Uint8Array(readFileSync(SHAKESPEARE))).val;
    const bpb = async (path: string) => {
      const m = await loadModel(path, { keepQuantized: true });
      const g = new Graph(be);
      const model = Llama.fromModel(g, m);
      const r = evaluateBpb(model, val, { batch: 8, seqLen: 256, maxWindows: 64 }).bpb;
      for (const q of model.quantized.values()) q.dispose();
      return r;
    };
    const base = await bpb(DEFAULT_MODEL);
    const q8 = await bpb(quantize(DEFAULT_MODEL, 'q8_0'));
    const q4 = await bpb(quantize(DEFAULT_MODEL, 'q4_0'));
    assert.ok(q8 - base <= 0.01, `Q8_0: ${base} -> ${q8}`);
    assert.ok(q4 - base <= 0.10, `Q4_0: ${base} -> ${q4}`);
  });
});
