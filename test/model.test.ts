// The Llama model end to end on the WebAssembly backend: parameter counts against the PyTorch anchor's,
// overfitting, the KV cache against full recomputation, memory stability, and NaN reporting.
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { PRESETS, materializeSharing, parameterCount, resolveConfig } from '../src/models/config.js';
import { kvCacheFor, Llama, PREFILL_UBATCH } from '../src/models/llama.js';
import { generate, generateStream } from '../src/generate/generate.js';
import { ByteTokenizer } from '../src/tokenizers/byte.js';
import { Graph, NonFiniteError } from '../src/tensor/tensor.js';
import { AdamW } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';

const TEXT = Buffer.from('To be, or not to be, that is the question: whether tis nobler in the mind to suffer the slings and arrows. ');

function windows(batch: number, t: number, offset = 0): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(batch * t), targets = new Int32Array(batch * t);
  for (let b = 0; b < batch; b++) for (let i = 0; i < t; i++) {
    const s = (offset + b * 13 + i) % TEXT.length;
    ids[b * t + i] = TEXT[s];
    targets[b * t + i] = TEXT[(s + 1) % TEXT.length];
  }
  return { ids, targets };
}

describe('llama model', () => {
  let be: Backend;
  before(async () => {
    be = await createWasmBackend({ threads: 2 });
  });
  after(() => be.dispose());

  test('parameter counts: the anchor shapes (vocab 256) give the anchor counts exactly', () => {
    // ../shared/anchors/torch/README.md: tiny 885,888, small 5,180,672, base 27,402,752 (vocab 256, tied).
    assert.equal(parameterCount({ ...PRESETS.tiny, vocabSize: 256 }), 885_888);
    assert.equal(parameterCount({ ...PRESETS.small, vocabSize: 256 }), 5_180_672);
    assert.equal(parameterCount({ ...PRESETS.base, vocabSize: 256 }), 27_402_752);
    assert.equal(parameterCount(PRESETS.tiny), 885_888 + 3 * 128);
    assert.equal(parameterCount({ ...PRESETS.tiny, tieEmbeddings: false }), 885_888 + 3 * 128 + 259 * 128);
    assert.ok(Math.abs(parameterCount(PRESETS.micro) - 50_000) < 2_000);
  });

  test('config errors list the valid keys', () => {
    assert.throws(() => resolveConfig({ preset: 'tiny', d_modle: 3 }), /unknown config key 'd_modle' \(valid keys: preset, vocabSize, dModel/);
    assert.throws(() => resolveConfig('huge'), /unknown config preset 'huge' \(valid: nano, micro, tiny, small, base, medium\)/);
    assert.throws(() => resolveConfig({ n_heads: 3 }), /dModel 128 must be a multiple of nHeads 3/);
  });

  test('a 50k-parameter model overfits a short text (loss < 0.1)', () => {
    const g = new Graph(be);
    const model = new Llama(g, PRESETS.micro, undefined, 3);
    const params = [...model.params.values()];
    const opt = new AdamW(params, (t) => model.decayed(t), { weightDecay: 0 });
    const { ids, targets } = windows(4, 64);
    let loss = Infinity;
    for (let step = 0; step < 300 && loss > 0.05; step++) {
      g.zeroGrad(params);
      const l = model.loss(ids, targets, 4);
      loss = l.item();
      g.backward(l);
      opt.update(3e-3);
      g.release();
    }
    assert.ok(loss < 0.1, `loss after training is ${loss}`);
  });

  test('KV-cache decoding equals full recomputation (logits to 1e-5), with GQA', () => {
    const cfg = { ...PRESETS.micro, nHeads: 4, nKvHeads: 2, dModel: 48, ctx: 40 };
    const g = new Graph(be);
    const model = new Llama(g, cfg, undefined, 5);
    const seq = Int32Array.from(TEXT.subarray(0, 30));
    // Cached: a prompt of 7 in one pass, then one token at a time.
    const cache = kvCacheFor(g, cfg);
    const cached: Float32Array[] = [];
    const all = model.forward(seq.subarray(0, 7), cache, false).toArray();
    for (let i = 0; i < 7; i++) cached.push(all.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize));
    g.release();
    for (let i = 7; i < seq.length; i++) {
      cached.push(model.forward(seq.subarray(i, i + 1), cache).toArray());
      g.release();
    }
    // Uncached: the whole prefix recomputed from scratch for every position.
    for (const i of [0, 6, 7, 15, 29]) {
      const fresh = kvCacheFor(g, cfg);
      const full = model.forward(seq.subarray(0, i + 1), fresh).toArray();
      g.release();
      fresh.dispose();
      let err = 0, scale = 0;
      for (let j = 0; j < full.length; j++) {
        err = Math.max(err, Math.abs(full[j] - cached[i][j]));
        scale = Math.max(scale, Math.abs(full[j]));
      }
      assert.ok(err <= 1e-5 * Math.max(1, scale), `position ${i}: cached logits differ by ${err}`);
    }
    assert.throws(() => model.forward(Int32Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), cache), /41 positions exceed the KV cache's 40/);
  });

  test('weight sharing: a shared model is its materialized twin (same loss, gradients summed over the copies, same cached logits)', () => {
    const cfg = { ...PRESETS.micro, nLayers: 2, shareFfn: true, blockRepeat: 2 };
    const plain = PRESETS.micro;
    // Stored parameters: layer 1's FFN matrices are layer 0's; repeating blocks adds none.
    const ffn = 3 * plain.dModel * plain.mlpHidden;
    assert.equal(parameterCount(cfg), parameterCount(plain) - ffn);
    assert.throws(() => resolveConfig({ preset: 'micro', block_repeat: 0 }), /blockRepeat must be an integer from 1 to 16/);
    const g = new Graph(be);
    const shared = new Llama(g, cfg, undefined, 9);
    const { config: flatCfg, weights: flatW } = materializeSharing(cfg, shared.weights());
    assert.equal(flatCfg.nLayers, 4);
    assert.equal(flatCfg.shareFfn, undefined);
    const flat = new Llama(g, flatCfg, flatW);
    const { ids, targets } = windows(2, 16);
    const params = (m: Llama) => [...m.params.values()];
    g.zeroGrad(params(shared));
    const l1 = shared.loss(ids, targets, 2);
    g.backward(l1);
    g.zeroGrad(params(flat));
    const l2 = flat.loss(ids, targets, 2);
    g.backward(l2);
    assert.ok(Math.abs(l1.item() - l2.item()) < 1e-6, `loss ${l1.item()} vs ${l2.item()}`);
    const grad = (m: Llama, n: string) => m.params.get(n)!.grad!.toArray();
    // Stored blk.0.ffn_up is used by materialized blocks 0-3; blk.1.attn_q by blocks 2 and 3.
    const cases: [string, string[]][] = [['blk.0.ffn_up.weight', [0, 1, 2, 3].map((i) => `blk.${i}.ffn_up.weight`)], ['blk.1.attn_q.weight', ['blk.2.attn_q.weight', 'blk.3.attn_q.weight']], ['token_embd.weight', ['token_embd.weight']]];
    for (const [name, copies] of cases) {
      const got = grad(shared, name);
      const want = new Float32Array(got.length);
      for (const c of copies) grad(flat, c).forEach((v, i) => (want[i] += v));
      let err = 0, scale = 0;
      for (let i = 0; i < got.length; i++) {
        err = Math.max(err, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      assert.ok(err <= 1e-4 * scale, `${name}: gradient differs by ${err} (scale ${scale})`);
    }
    g.release();
    const seq = Int32Array.from(TEXT.subarray(0, 12));
    const a = shared.forward(seq, kvCacheFor(g, cfg), false).toArray();
    const b = flat.forward(seq, kvCacheFor(g, flatCfg), false).toArray();
    g.release();
    let err = 0;
    for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
    assert.ok(err < 1e-5, `cached logits differ by ${err}`);
  });

  test('per-position adapters on shared weights: the model is its materialized twin with B·A folded in (loss, cached logits, gradients of A and B)', () => {
    const cfg = { ...PRESETS.micro, nLayers: 2, shareFfn: true, blockRepeat: 2, sharedLoraRank: 3 };
    const shared = { ...cfg, sharedLoraRank: 0 };
    const depth = 4, r = 3, d = cfg.dModel, h = cfg.mlpHidden;
    // Blocks repeat, so all 7 projections adapt at each of the 4 positions: q,k,v,o are [d,d], gate/up [h,d], down [d,h].
    assert.equal(parameterCount(cfg), parameterCount(shared) + depth * r * (4 * 2 * d + 3 * (d + h)));
    assert.throws(() => resolveConfig({ preset: 'micro', shared_lora_rank: 2 }), /sharedLoraRank needs shared weights/);
    const g = new Graph(be);
    const model = new Llama(g, cfg, undefined, 11);
    // B starts at zero (the plainly shared model); give it values so the adapters matter.
    const rng = new Rng(4);
    for (const [name, t] of model.params) if (name.endsWith('.lora_b')) be.write(t.buf, Float32Array.from({ length: t.size }, () => rng.normal() * 0.05));
    const { config: flatCfg, weights: flatW } = materializeSharing(cfg, model.weights());
    assert.equal(flatCfg.sharedLoraRank, undefined);
    assert.equal([...flatW.keys()].some((n) => n.includes('lora')), false);
    const flat = new Llama(g, flatCfg, flatW);
    const { ids, targets } = windows(2, 16);
    g.zeroGrad([...model.params.values()]);
    const l1 = model.loss(ids, targets, 2);
    g.backward(l1);
    g.zeroGrad([...flat.params.values()]);
    const l2 = flat.loss(ids, targets, 2);
    g.backward(l2);
    assert.ok(Math.abs(l1.item() - l2.item()) < 1e-5, `loss ${l1.item()} vs ${l2.item()}`);
    // Chain rule through W_pos = W + B·A: dL/dB = G·Aᵀ and dL/dA = Bᵀ·G, with G = dL/dW_pos of the twin.
    for (const [pos, proj, out, inp] of [[3, 'attn_q', d, d], [1, 'ffn_down', d, h]] as const) {
      const G = flat.params.get(`blk.${pos}.${proj}.weight`)!.grad!.toArray();
      const A = model.params.get(`blk.${pos}.${proj}.lora_a`)!, B = model.params.get(`blk.${pos}.${proj}.lora_b`)!;
      const a = A.toArray(), b = B.toArray(), ga = A.grad!.toArray(), gb = B.grad!.toArray();
      let err = 0, scale = 0;
      for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) {
        let want = 0;
        for (let i = 0; i < inp; i++) want += G[o * inp + i] * a[k * inp + i];
        err = Math.max(err, Math.abs(gb[o * r + k] - want));
        scale = Math.max(scale, Math.abs(want));
      }
      for (let k = 0; k < r; k++) for (let i = 0; i < inp; i++) {
        let want = 0;
        for (let o = 0; o < out; o++) want += b[o * r + k] * G[o * inp + i];
        err = Math.max(err, Math.abs(ga[k * inp + i] - want));
        scale = Math.max(scale, Math.abs(want));
      }
      assert.ok(scale > 0 && err <= 1e-4 * scale, `${proj} at ${pos}: adapter gradients differ by ${err} (scale ${scale})`);
    }
    g.release();
    const seq = Int32Array.from(TEXT.subarray(0, 12));
    const x = model.forward(seq, kvCacheFor(g, cfg), false).toArray();
    const y = flat.forward(seq, kvCacheFor(g, flatCfg), false).toArray();
    g.release();
    let err = 0;
    for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(x[i] - y[i]));
    assert.ok(err < 1e-5, `cached logits differ by ${err}`);
  });

  test('a prompt longer than a micro-batch gives the logits of token-by-token decoding (all rows, and the last)', () => {
    const n = PREFILL_UBATCH * 2 + 37;
    const cfg = { ...PRESETS.micro, ctx: n + 8 };
    const g = new Graph(be);
    const model = new Llama(g, cfg, undefined, 21);
    const seq = Int32Array.from({ length: n }, (_, i) => TEXT[i % TEXT.length]);
    const stepCache = kvCacheFor(g, cfg);
    const steps: Float32Array[] = [];
    for (let i = 0; i < n; i++) {
      steps.push(model.forward(seq.subarray(i, i + 1), stepCache).toArray());
      g.release();
    }
    const all = model.forward(seq, kvCacheFor(g, cfg), false).toArray();
    const last = model.forward(seq, kvCacheFor(g, cfg)).toArray();
    g.release();
    let err = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < cfg.vocabSize; j++) err = Math.max(err, Math.abs(all[i * cfg.vocabSize + j] - steps[i][j]));
    for (let j = 0; j < cfg.vocabSize; j++) err = Math.max(err, Math.abs(last[j] - steps[n - 1][j]));
    assert.ok(err < 1e-5, `logits differ by ${err}`);
  });

  test('an inference forward holds one layer of activations at a time (live intermediates do not grow with depth)', () => {
    const seq = Int32Array.from(TEXT.subarray(0, 32));
    const live = (nLayers: number) => {
      const cfg = { ...PRESETS.micro, nLayers, ctx: 40 };
      const g = new Graph(be);
      const model = new Llama(g, cfg, undefined, 3);
      const cache = kvCacheFor(g, cfg);
      model.forward(seq, cache, false);
      const n = g.liveTemps;
      g.release();
      cache.dispose();
      return n;
    };
    assert.equal(live(6), live(1));
    const g = new Graph(be);
    assert.throws(() => g.releaseSince(g.mark()), /only without a tape/);
  });

  test('training memory is stable over 200 steps (wasm memory and JS heap)', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const g = new Graph(be);
    const model = new Llama(g, PRESETS.nano, undefined, 7);
    const params = [...model.params.values()];
    const opt = new AdamW(params, (t) => model.decayed(t));
    const rng = new Rng(1);
    let wasmAt10 = 0, heapAt10 = 0;
    for (let step = 0; step < 200; step++) {
      const { ids, targets } = windows(4, 32, rng.int(50));
      g.zeroGrad(params);
      const l = model.loss(ids, targets, 4);
      g.backward(l);
      opt.update(1e-3);
      g.release();
      if (step === 10) {
        gc();
        wasmAt10 = be.memoryBytes();
        heapAt10 = process.memoryUsage().heapUsed;
      }
    }
    gc();
    const heapGrowth = process.memoryUsage().heapUsed - heapAt10;
    assert.equal(be.memoryBytes(), wasmAt10, 'wasm memory grew after step 10');
    assert.equal(g.liveTemps, 0);
    assert.ok(heapGrowth < 2 * 1024 * 1024, `JS heap grew by ${heapGrowth} bytes over 190 steps`);
  });

  test('a NaN in the weights is reported with the op and the step', () => {
    const g = new Graph(be);
    const model = new Llama(g, PRESETS.nano, undefined, 9);
    const w = model.params.get('blk.0.ffn_up.weight')!;
    const data = w.toArray();
    data[5] = Number.NaN;
    be.write(w.buf, data);
    g.detectAnomaly = true;
    g.step = 12;
    const { ids, targets } = windows(2, 16);
    assert.throws(() => model.loss(ids, targets, 2), (e: unknown) => e instanceof NonFiniteError && /produced by matmul in the forward pass at step 12/.test(e.message));
    g.release();
  });

  test('streaming: the callback and the async iterator give the same seeded text; stop strings end it', async () => {
    const g = new Graph(be);
    const model = new Llama(g, PRESETS.nano, undefined, 13);
    const tok = new ByteTokenizer();
    const pieces: string[] = [];
    const r = generate(model, tok, 'To be', { maxTokens: 40, temperature: 1, seed: 5, onText: (t) => pieces.push(t) });
    assert.equal(pieces.join(''), r.text);
    const it = generateStream(model, tok, 'To be', { maxTokens: 40, temperature: 1, seed: 5 });
    let streamed = '';
    for await (const t of it) streamed += t;
    assert.equal(streamed, r.text);
    assert.equal(r.tokens.length, 40);
    // Greedy text, then the same with a stop string taken from its middle: it ends just before it.
    const greedy = generate(model, tok, 'To be', { maxTokens: 40, temperature: 0 }).text;
    const stop = greedy.slice(10, 13);
    const cut = generate(model, tok, 'To be', { maxTokens: 40, temperature: 0, stop: [stop] });
    assert.equal(cut.finishReason, 'stop');
    assert.equal(cut.text, greedy.slice(0, greedy.indexOf(stop)));
  });
});
