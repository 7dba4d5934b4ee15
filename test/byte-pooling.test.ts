// The byte-pooled model (tokenizer-free STLM): chunk boundaries, the chunk layout (PAD never scored),
// strict causality, gradients against float64 forwards and finite differences, overfitting, file and
// checkpoint round trips, streaming generation against greedy decoding by full recomputation, and errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type GgufValue, gguf, metaString, writeGgufFile } from '../src/formats/gguf.js';
import type { Backend } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { generate } from '../src/generate/generate.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import {
  BytePooled, type PooledConfig, layoutChunks, pooledParameterCounts, pooledParameterShapes, resolvePooledConfig, windowBytes,
} from '../src/models/byte-pooled.js';
import { chunkComplete, chunkEnds, isSpacelike, parseChunking, splitChunks } from '../src/models/chunking.js';
import { PRESETS } from '../src/models/config.js';
import { byteVocab, loadModel, modelMetadata, modelTensors, saveModel } from '../src/io/model-file.js';
import { parseArchConfig } from '../src/train/config-spec.js';
import * as ops from '../src/tensor/ops.js';
import { Graph, type Tensor } from '../src/tensor/tensor.js';
import { BYTE_BOS, BYTE_PAD, ByteTokenizer } from '../src/tokenizers/byte.js';
import { AdamW } from '../src/train/adamw.js';
import { type ModelFactory, train } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const show = (chunks: Uint8Array[]) => chunks.map((c) => Buffer.from(c).toString('latin1'));
// Multi-byte characters (é, ï: 2 bytes; —: 3 bytes) so that chunking and streaming meet UTF-8.
const TEXT = enc('To be, or not to be, that is the question: whether tis nobler in the mind — café, naïve — to suffer the slings and arrows. ');

/** `batch` contiguous windows of t bytes of TEXT (wrapping), as the trainer's ids and targets. */
function windows(batch: number, t: number): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(batch * t), targets = new Int32Array(batch * t);
  for (let b = 0; b < batch; b++) for (let i = 0; i < t; i++) {
    const s = (b * 13 + i) % TEXT.length;
    ids[b * t + i] = TEXT[s];
    targets[b * t + i] = TEXT[(s + 1) % TEXT.length];
  }
  return { ids, targets };
}

const argmax = (x: Float32Array, n = x.length) => {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
};

describe('chunk boundaries', () => {
  test('spacelike bytes: all but ASCII letters, digits and UTF-8 continuation bytes', () => {
    for (const ch of 'azAZ09') assert.equal(isSpacelike(ch.charCodeAt(0)), false, ch);
    for (const ch of ' \n\t,.:;!?-\'"()@[`{~') assert.equal(isSpacelike(ch.charCodeAt(0)), true, JSON.stringify(ch));
    for (let b = 0x80; b <= 0xbf; b++) assert.equal(isSpacelike(b), false, `continuation 0x${b.toString(16)}`);
    for (let b = 0xc0; b <= 0xff; b++) assert.equal(isSpacelike(b), true, `lead 0x${b.toString(16)}`);
  });

  test('fixed chunks: every P bytes, the last one possibly incomplete', () => {
    const c = parseChunking('fixed:4'), b = enc('abcdefghij');
    assert.deepEqual(show(splitChunks(c, b)), ['abcd', 'efgh', 'ij']);
    assert.deepEqual(chunkEnds(c, b), [4, 8, 10]);
    assert.equal(chunkComplete(c, b, 4, 8), true);
    assert.equal(chunkComplete(c, b, 8, 10), false);
    assert.deepEqual(show(splitChunks(parseChunking('fixed:1'), enc('abc'))), ['a', 'b', 'c']);
  });

  test("space chunks: a word with its leading spacelike bytes, ended by the spacelike byte after it (SpaceByte's rule)", () => {
    const c = parseChunking('space');
    assert.equal(c.chunkBytes, 8);
    assert.deepEqual(show(splitChunks(c, enc('Hello, world.\n\nThe cat'))), ['Hello,', ' world.', '\n\nThe ', 'cat']);
    assert.deepEqual(show(splitChunks(c, enc('a, b'))), ['a,', ' b']);
    assert.equal(chunkComplete(c, enc('Hello,'), 0, 6), true);
    assert.equal(chunkComplete(c, enc(' '), 0, 1), false, 'a leading space never ends a chunk');
  });

  test('space chunks: long words and long runs of spacelike bytes are cut at the maximum', () => {
    const c = parseChunking('space:8');
    assert.deepEqual(show(splitChunks(c, enc('abcdefghijklmnopqrst uv'))), ['abcdefgh', 'ijklmnop', 'qrst ', 'uv']);
    assert.deepEqual(show(splitChunks(c, enc('          x y'))), ['        ', '  x ', 'y']);
    assert.deepEqual(show(splitChunks(c, enc('...,,,;;;!'))), ['...,,,;;', ';!']);
    for (const chunk of splitChunks(c, enc('x'.repeat(50)))) assert.ok(chunk.length <= 8);
  });

  test('space chunks with UTF-8: cut after a lead byte that follows a word byte, never inside a run of continuation bytes', () => {
    const c = parseChunking('space:8');
    // café = c a f C3 A9: the lead byte C3 is spacelike and follows 'f', so SpaceByte's global block (here: a cut) comes after it.
    assert.deepEqual(splitChunks(c, enc('café ok')).map((x) => Array.from(x)), [[0x63, 0x61, 0x66, 0xc3], [0xa9, 0x20], [0x6f, 0x6b]]);
    // 日本語 = E6 97 A5 | E6 9C AC | E8 AA 9E: one cut per character after the first.
    assert.deepEqual(splitChunks(c, enc('日本語')).map((x) => Array.from(x)), [[0xe6, 0x97, 0xa5, 0xe6], [0x9c, 0xac, 0xe8], [0xaa, 0x9e]]);
    for (const chunk of splitChunks(c, enc('日本語のテキスト、ñandú — ok'))) assert.ok(chunk.length >= 1 && chunk.length <= 8);
  });

  test('every rule is prefix-decidable: appending bytes never moves an earlier boundary', () => {
    const rng = new Rng(5);
    const alphabet = enc('ab c,\n.é—9');
    for (const spec of ['fixed:3', 'space:4', 'space:8']) {
      const c = parseChunking(spec);
      for (let trial = 0; trial < 50; trial++) {
        const b = Uint8Array.from({ length: 40 }, () => alphabet[rng.int(alphabet.length)]);
        const full = chunkEnds(c, b);
        for (let n = 1; n < b.length; n++) {
          const prefix = chunkEnds(c, b.subarray(0, n));
          assert.deepEqual(prefix.slice(0, -1), full.filter((e) => e < n), `${spec}: boundaries of a ${n}-byte prefix moved`);
          assert.equal(prefix.at(-1), n);
        }
      }
    }
  });

  test('bad chunking specs are refused with the accepted forms', () => {
    assert.throws(() => parseChunking('fixed'), /chunking must be 'fixed:<bytes>'.*or 'space'/);
    assert.throws(() => parseChunking('words'), /chunking must be/);
    assert.throws(() => parseChunking('fixed:0'), /chunkBytes must be an integer from 1 to 64/);
    assert.throws(() => parseChunking('space:65'), /chunkBytes must be an integer from 1 to 64/);
  });
});

describe('byte-pooled model', () => {
  let be: Backend;
  let dir: string;
  const trained = new Map<string, BytePooled>();
  const tiny = (chunk: string, extra: Record<string, unknown> = {}) => resolvePooledConfig({ preset: 'nano', ctx: 64, ...extra }, chunk);
  before(async () => {
    be = await createWasmBackend({ threads: 2 });
    dir = mkdtempSync(join(tmpdir(), 'stlm-pooled-'));
  });
  after(() => {
    be.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('config: defaults, exact parameter counts by part, clear errors', () => {
    const c = tiny('fixed:4');
    assert.deepEqual(c.pooling, { rule: 'fixed', chunkBytes: 4, byteDim: 16, decoderHeads: 1, decoderLayers: 1, decoderMlpHidden: 48 });
    // nano core d 32, 1 layer, MLP 96; byte dim 16; decoder 1 layer, MLP 48; tied head.
    const core = 4 * 32 * 32 + 3 * 32 * 96 + 2 * 32 + 32, decoder = 4 * 16 * 16 + 3 * 16 * 48 + 2 * 16 + 16 + 4 * 16 * 32;
    assert.deepEqual(pooledParameterCounts(c), { byteEmbedding: 259 * 16, encoder: 32 * 4 * 16, core, decoder, total: 259 * 16 + 32 * 4 * 16 + core + decoder });
    const m = new BytePooled(new Graph(be), c);
    assert.equal([...m.params.values()].reduce((s, p) => s + p.size, 0), pooledParameterCounts(c).total);
    assert.deepEqual([...m.params.keys()], pooledParameterShapes(c).map(([n]) => n));
    assert.equal(pooledParameterCounts({ ...c, tieEmbeddings: false }).total, pooledParameterCounts(c).total + 259 * 16);

    assert.throws(() => tiny('fixed:4', { byte_dim: 10, decoder_heads: 2 }), /decoder head dimension byteDim\/decoderHeads = 5 must be even/);
    assert.throws(() => tiny('fixed:4', { byte_dim: 24, decoder_heads: 5 }), /byteDim 24 must be a multiple of decoderHeads 5/);
    assert.throws(() => tiny('fixed:4', { decoder_layers: 0 }), /decoderLayers must be a positive integer, got 0/);
    assert.throws(() => tiny('fixed:4', { vocab_size: 300 }), /vocabSize must be 259 for the byte-pooled model/);
    assert.throws(() => tiny('fixed:4', { byte_dimm: 8 }), /unknown config key 'byte_dimm'.*byte-pooled models also take byteDim, byte_dim/);
    assert.throws(() => tiny('fixed'), /chunking must be 'fixed:<bytes>'/);
    assert.throws(() => new BytePooled(new Graph(be), PRESETS.nano), /config pooling is missing: not a byte-pooled config/);
    assert.throws(() => parseArchConfig({ arch: 'llama', config: 'nano', chunk: 'space', tokenizer: 'byte' }), /chunk applies to arch pooled only/);
    assert.throws(() => parseArchConfig({ arch: 'pooled', config: 'nano', tokenizer: 'bpe:300' }), /arch pooled reads raw bytes: use tokenizer byte/);
    assert.equal((parseArchConfig({ arch: 'pooled', config: '{"preset":"nano","byte_dim":32}', chunk: 'space:6', tokenizer: 'byte' }) as PooledConfig).pooling.chunkBytes, 6);
  });

  test('layout: every byte after the first is scored exactly once, at its row; PAD is never a target', () => {
    const c = tiny('space:8');
    const a = enc('Hello, world.\n\nThe cat sat.'), b = enc('a b c d e f g h i j k l m n');
    assert.equal(a.length, b.length);
    const bytes = Int32Array.from([...a, ...b]);
    const l = layoutChunks(c.pooling, bytes, 2);
    const M = c.pooling.chunkBytes;
    assert.equal(l.chunks % 16, 0, 'word chunk counts are rounded up to a multiple of 16');
    assert.equal(l.targets.length, 2 * l.chunks * M);
    assert.equal(l.targets.filter((t) => t >= 0).length, bytes.length - 2, 'scored bytes');
    assert.ok(!l.targets.includes(BYTE_PAD) && !l.targets.includes(BYTE_BOS));
    for (let p = 0; p < bytes.length; p++) {
      if (p % a.length === 0) assert.equal(l.rowOf[p], -1, 'a sequence\'s first byte is context only');
      else assert.equal(l.targets[l.rowOf[p]], bytes[p]);
    }
    // Core position 0 is the start chunk; position j + 1 reads chunk j ("Hello," then " world.").
    assert.deepEqual(Array.from(l.encoderIds.subarray(0, 2 * M)), [BYTE_BOS, ...Array(M - 1).fill(BYTE_PAD), ...enc('Hello,'), BYTE_PAD, BYTE_PAD]);
    // Decoder chunk 0 ("Hello,"): BOS, then the byte before each predicted byte; chunk 1 (" world.") starts
    // from the previous chunk's last byte; its 8th row is padding.
    assert.deepEqual(Array.from(l.decoderIds.subarray(0, M)), [BYTE_BOS, ...enc('Hello'), BYTE_PAD, BYTE_PAD]);
    assert.deepEqual(Array.from(l.decoderIds.subarray(M, 2 * M)), [...enc(', world'), BYTE_PAD]);
    assert.deepEqual(Array.from(l.targets.subarray(M, 2 * M)), [...enc(' world.'), -1]);
    // The second sequence's padded chunks score nothing.
    const second = l.targets.subarray(l.chunks * M);
    assert.ok(second.subarray(14 * M).every((t) => t === -1));
  });

  test('the loss is the mean cross-entropy over real bytes only (PAD rows excluded)', () => {
    for (const chunk of ['fixed:4', 'space:8']) {
      const g = new Graph(be);
      const m = new BytePooled(g, tiny(chunk), undefined, 7);
      const { ids, targets } = windows(1, 40);
      const loss = g.noGrad(() => m.loss(ids, targets, 1).item());
      g.release();
      const bytes = windowBytes(ids, targets, 1);
      const logits = m.byteLogits(bytes);
      let nats = 0;
      for (let p = 1; p < bytes.length; p++) {
        const row = logits.subarray(p * 259, (p + 1) * 259), max = Math.max(...row);
        nats += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[bytes[p]];
      }
      assert.ok(Math.abs(loss - nats / (bytes.length - 1)) < 1e-4, `${chunk}: loss ${loss} vs ${nats / (bytes.length - 1)}`);
    }
  });

  test('causality: changing byte t never changes the predictions of bytes 1..t', () => {
    for (const chunk of ['fixed:4', 'space:8']) {
      const g = new Graph(be);
      const m = new BytePooled(g, tiny(chunk), undefined, 3);
      const base = Array.from(TEXT.subarray(0, 48));
      const before = m.byteLogits(base);
      let changedLater = 0;
      for (const t of [1, 5, 6, 7, 12, 20, 33, 46]) {
        for (const replacement of [0x20, 0x41, 0xc3]) {
          if (base[t] === replacement) continue;
          const perturbed = base.slice();
          perturbed[t] = replacement;
          const after = m.byteLogits(perturbed);
          let worst = 0;
          for (let i = 0; i < (t + 1) * 259; i++) worst = Math.max(worst, Math.abs(after[i] - before[i]));
          assert.ok(worst < 1e-5, `${chunk}: changing byte ${t} moved an earlier prediction by ${worst}`);
          if (t + 1 < base.length && after.subarray((t + 1) * 259).some((v, i) => v !== before[(t + 1) * 259 + i])) changedLater++;
        }
      }
      assert.ok(changedLater > 10, `${chunk}: perturbations should change later predictions`);
    }
  });

  test('gradients of the encoder and the decoder input against float64 forwards (reference backend)', () => {
    const c = resolvePooledConfig({ preset: 'nano', dModel: 8, nHeads: 2, mlpHidden: 12, ctx: 16, byte_dim: 4, decoder_heads: 2, decoder_mlp_hidden: 6 }, 'fixed:3');
    const M = 3, dB = 4, d = 8, rng = new Rng(9);
    const ids = Int32Array.of(72, 105, BYTE_PAD, BYTE_BOS, 32, 258, 97, 98, 99); // 3 chunks of 3
    const E = Float64Array.from({ length: 259 * dB }, () => rng.normal());
    const W = Float64Array.from({ length: d * M * dB }, () => rng.normal() * 0.3);
    const H = Float64Array.from({ length: 3 * d }, () => rng.normal());
    const gain = Float64Array.from({ length: d }, () => 1 + 0.2 * rng.normal());
    const U = Float64Array.from({ length: M * dB * d }, () => rng.normal() * 0.3);
    /** RMSNorm of each run of n values, times the constant input scale 0.02. */
    const normalize = (x: Float64Array, n: number) => {
      const out = new Float64Array(x.length);
      for (let r = 0; r < x.length / n; r++) {
        let ss = 0;
        for (let k = 0; k < n; k++) ss += x[r * n + k] ** 2;
        for (let k = 0; k < n; k++) out[r * n + k] = (0.02 * x[r * n + k]) / Math.sqrt(ss / n + c.normEps);
      }
      return out;
    };
    const encoderRef = (e: Float64Array, w: Float64Array) => {
      const out = new Float64Array(3 * d);
      for (let r = 0; r < 3; r++) for (let o = 0; o < d; o++) for (let i = 0; i < M; i++) for (let k = 0; k < dB; k++) {
        out[r * d + o] += w[o * M * dB + i * dB + k] * e[ids[r * M + i] * dB + k];
      }
      return normalize(out, d);
    };
    const decoderInputRef = (h: Float64Array, gn: Float64Array, u: Float64Array, e: Float64Array) => {
      const spread = new Float64Array(3 * M * dB);
      for (let r = 0; r < 3; r++) {
        let ss = 0;
        for (let k = 0; k < d; k++) ss += h[r * d + k] ** 2;
        const hn = Array.from({ length: d }, (_, k) => (h[r * d + k] / Math.sqrt(ss / d + c.normEps)) * gn[k]);
        for (let j = 0; j < M * dB; j++) for (let k = 0; k < d; k++) spread[r * M * dB + j] += u[j * d + k] * hn[k];
      }
      return normalize(spread, dB).map((v, j) => v + e[ids[Math.floor(j / dB)] * dB + (j % dB)]);
    };
    const weightsFor = (over: Record<string, Float64Array>) => {
      const w = new Map<string, Float32Array>();
      const r2 = new Rng(1);
      for (const [name, shape] of pooledParameterShapes(c)) {
        const n = shape.reduce((a, b) => a * b, 1);
        w.set(name, over[name] ? Float32Array.from(over[name]) : Float32Array.from({ length: n }, () => (shape.length === 1 ? 1 : 0.3 * r2.normal())));
      }
      return w;
    };
    /** Σ y ⊙ probe over a float64 function, and its central differences with respect to input `x`. */
    const check = (what: string, f: () => Float64Array, inputs: [string, Float64Array, Tensor][], y: Tensor, g: Graph) => {
      const probe = Float64Array.from({ length: y.size }, (_, i) => Math.sin(i * 0.7 + 0.3));
      g.backward(ops.sum(ops.mul(y, g.constant(y.shape, Float32Array.from(probe)))));
      const value = () => f().reduce((s, v, i) => s + v * probe[i], 0);
      for (const [name, x, t] of inputs) {
        const analytic = t.grad!.toArray();
        const scale = Math.max(1e-3, ...Array.from(analytic, Math.abs));
        let worst = 0;
        for (let j = 0; j < x.length; j++) {
          if (name === 'E' && !ids.includes(Math.floor(j / dB))) continue; // rows never read have gradient 0 (checked below)
          const orig = x[j];
          x[j] = orig + 1e-6;
          const up = value();
          x[j] = orig - 1e-6;
          const down = value();
          x[j] = orig;
          worst = Math.max(worst, Math.abs((up - down) / 2e-6 - analytic[j]) / scale);
        }
        assert.ok(worst < 1e-4, `${what}: gradient of ${name} off by ${worst.toExponential(2)} (relative to the largest)`);
        if (name === 'E') for (let j = 0; j < x.length; j++) if (!ids.includes(Math.floor(j / dB))) assert.equal(analytic[j], 0);
      }
    };
    {
      const g = new Graph(new ReferenceBackend());
      const m = new BytePooled(g, c, weightsFor({ 'byte_embd.weight': E, 'pool.weight': W }));
      check('encoder', () => encoderRef(E, W), [['E', E, m.byteEmbedding], ['pool', W, m.pool]], m.encode(ids), g);
    }
    {
      const g = new Graph(new ReferenceBackend());
      const m = new BytePooled(g, c, weightsFor({ 'byte_embd.weight': E, 'unpool.weight': U, 'output_norm.weight': gain }));
      const h = g.param('h', [3, d], Float32Array.from(H));
      check('decoder input', () => decoderInputRef(H, gain, U, E), [['h', H, h], ['output_norm', gain, m.outNorm], ['unpool', U, m.unpool], ['E', E, m.byteEmbedding]], m.decoderInput(h, ids), g);
    }
  });

  test('gradients of the whole loss against finite differences, every parameter tensor (reference backend)', () => {
    for (const chunk of ['fixed:3', 'space:4']) {
      const c = resolvePooledConfig({ preset: 'nano', dModel: 8, nHeads: 2, mlpHidden: 12, ctx: 16, byte_dim: 4, decoder_heads: 2, decoder_mlp_hidden: 6 }, chunk);
      const rng = new Rng(4);
      const w = new Map(pooledParameterShapes(c).map(([name, shape]) => {
        const n = shape.reduce((a, b) => a * b, 1);
        return [name, Float32Array.from({ length: n }, () => (shape.length === 1 ? 1 + 0.1 * rng.normal() : 0.4 * rng.normal()))];
      }));
      const g = new Graph(new ReferenceBackend());
      const m = new BytePooled(g, c, w);
      const { ids, targets } = windows(2, 11);
      g.backward(m.loss(ids, targets, 2));
      const lossAt = () => {
        const v = g.noGrad(() => m.loss(ids, targets, 2).item());
        g.release();
        return v;
      };
      for (const [name, p] of m.params) {
        assert.ok(p.grad && p.gradReady, `${chunk}: ${name} got no gradient`);
        const analytic = p.grad!.toArray(), data = p.toArray();
        const scale = Math.max(1e-2, ...Array.from(analytic, Math.abs));
        // The entries with the largest gradients (the ones a wiring mistake would move most), plus a few others.
        const order = Array.from(analytic.keys()).sort((a, b) => Math.abs(analytic[b]) - Math.abs(analytic[a]));
        for (const j of [...order.slice(0, 3), order[order.length >> 1]]) {
          const orig = data[j], eps = 1e-2;
          g.backend.write(p.buf, [orig + eps], j);
          const up = lossAt();
          g.backend.write(p.buf, [orig - eps], j);
          const down = lossAt();
          g.backend.write(p.buf, [orig], j);
          const numeric = (up - down) / (2 * eps);
          assert.ok(Math.abs(numeric - analytic[j]) / scale < 2e-2, `${chunk}: ${name}[${j}] analytic ${analytic[j]} vs numeric ${numeric}`);
        }
      }
    }
  });

  test('a tiny pooled model overfits a short text (loss < 0.2), both chunk rules', (t) => {
    for (const chunk of ['fixed:4', 'space:8']) {
      const g = new Graph(be);
      const model = new BytePooled(g, tiny(chunk), undefined, 3);
      const params = [...model.params.values()];
      const opt = new AdamW(params, (t) => model.decayed(t), { weightDecay: 0 });
      const { ids, targets } = windows(4, 64);
      const t0 = performance.now();
      let loss = Infinity;
      for (let step = 0; step < 400 && loss > 0.1; step++) {
        g.zeroGrad(params);
        const l = model.loss(ids, targets, 4);
        loss = l.item();
        g.backward(l);
        g.release();
        opt.update(3e-3);
      }
      const seconds = (performance.now() - t0) / 1000;
      assert.ok(loss < 0.2, `${chunk}: loss ${loss} after training`);
      t.diagnostic(`${chunk}: trained in ${seconds.toFixed(1)} s`);
      trained.set(chunk, model);
    }
  });

  test('save and load: an stlm-pooled GGUF gives identical logits; corrupt configs are refused by name', async () => {
    const m = trained.get('space:8') ?? new BytePooled(new Graph(be), tiny('space:8'), undefined, 3);
    const path = join(dir, 'pooled.gguf');
    await saveModel(path, { config: m.config, weights: m.weights(), vocab: byteVocab() });
    for (const keepQuantized of [false, true]) {
      const loaded = await loadModel(path, { keepQuantized });
      assert.equal(metaString(loaded.file!, 'general.architecture'), 'stlm-pooled');
      assert.deepEqual(loaded.config, m.config);
      const again = BytePooled.fromModel(new Graph(be), loaded);
      assert.deepEqual(again.byteLogits(TEXT.subarray(0, 50)), m.byteLogits(TEXT.subarray(0, 50)));
    }
    const bad = { ...m.config, pooling: { ...m.config.pooling, byteDim: 0 } };
    const meta = modelMetadata(m.config, byteVocab()).map(([k, v]): [string, GgufValue] => [k, k === 'stlm.config' ? gguf.str(JSON.stringify(bad)) : v]);
    await writeGgufFile(join(dir, 'bad.gguf'), meta, modelTensors(m.config, m.weights()));
    await assert.rejects(loadModel(join(dir, 'bad.gguf')), /bad\.gguf: metadata 'stlm\.config' of a byte-pooled model: config byteDim must be a positive integer, got 0/);
    const llama = await loadModel(path);
    assert.throws(() => BytePooled.fromModel(new Graph(be), { ...llama, config: PRESETS.nano }), /not a byte-pooled model/);
  });

  test('training windows must be contiguous raw bytes', () => {
    const { ids, targets } = windows(2, 8);
    const shifted = targets.slice();
    shifted[3] = -1;
    assert.throws(() => windowBytes(ids, shifted, 2), /windows must be contiguous text/);
    const special = ids.slice();
    special[0] = BYTE_BOS;
    assert.throws(() => windowBytes(special, targets, 2), /id 256 is not a byte \(the model reads raw bytes/);
    assert.deepEqual(Array.from(windowBytes(ids, targets, 2).subarray(0, 9)), [...Array.from(ids.subarray(0, 8)), targets[7]]);
  });

  test('generation streams text byte by byte and equals greedy decoding by full recomputation (past the context too)', () => {
    const tok = new ByteTokenizer();
    for (const [chunk, model] of trained) {
      const ctx = model.config.ctx, prompt = 'To be, or';
      const pieces: string[] = [];
      const r = generate(model, tok, prompt, { temperature: 0, maxTokens: 150, onText: (t) => pieces.push(t) });
      // By hand: the training forward over the whole context for every byte, the same sliding window.
      const history = Array.from(enc(prompt));
      let start = 0;
      const hand: number[] = [];
      for (let i = 0; i < 150; i++) {
        const logits = model.byteLogits([...history.slice(start), 0]);
        const last = logits.subarray((history.length - start) * 259);
        const next = argmax(last, 256); // BOS, EOS, PAD are never targets; the loop masks BOS and PAD
        hand.push(next);
        if (history.length - start >= ctx) start = history.length + 1 - Math.floor(ctx / 2);
        history.push(next);
      }
      assert.deepEqual(r.tokens, hand, `${chunk}: generated bytes differ from greedy decoding by hand`);
      assert.equal(r.finishReason, 'length');
      assert.equal(r.text, Buffer.from(r.tokens).toString('utf8'));
      assert.equal(pieces.join(''), r.text);
      // Each piece is one whole character, out as soon as its last byte is (past the overfit text the model may
      // emit invalid UTF-8, which the stream decoder turns into U+FFFD: only the valid stretch is checked).
      const invalid = pieces.findIndex((p) => p.includes('\uFFFD'));
      const valid = invalid < 0 ? pieces : pieces.slice(0, invalid);
      assert.ok(valid.length >= 60 && valid.every((p) => [...p].length === 1), `${chunk}: streamed pieces ${JSON.stringify(pieces)}`);
      assert.ok(valid.some((p) => /[é—ï]/.test(p)), `${chunk}: the sample should include multi-byte characters: ${JSON.stringify(r.text)}`);
      assert.ok(r.text.startsWith(' not to be, that is the question'), `${chunk}: ${JSON.stringify(r.text)}`);
      const empty = generate(model, tok, '', { temperature: 0, maxTokens: 5 });
      assert.equal(empty.tokens.length, 5);
      assert.equal(empty.promptTokens, 0);
    }
  });

  test('train(): a pooled run is seeded and resumes exactly from its checkpoint', async () => {
    const config = tiny('space:8');
    const tokens = enc(Buffer.from(TEXT).toString('utf8').repeat(30));
    const options = (ckpt: string, steps: number, resume = false) => ({
      tokens, config, checkpointPath: join(dir, ckpt), steps, batch: 4, seqLen: 48, lr: 3e-3, minLr: 3e-4, warmup: 3, weightDecay: 0.1, clip: 1,
      accum: 1, seed: 5, evalEvery: 0, evalWindows: 2, saveEvery: 0, resume, vocab: byteVocab(),
    });
    const create: ModelFactory<BytePooled> = (g, c, w, seed) => new BytePooled(g, c, w, seed);
    const full = await train(be, options('a.ckpt', 12), create);
    let n = 0;
    await train(be, { ...options('b.ckpt', 12), onStep: () => n++, shouldStop: () => n >= 5 }, create);
    const resumed = await train(be, options('b.ckpt', 12, true), create);
    assert.deepEqual(resumed.losses.slice(5), full.losses.slice(5));
    assert.equal(resumed.finalValBpb, full.finalValBpb);
    assert.ok(full.losses[11] < full.losses[0]);
    assert.ok(full.model instanceof BytePooled);
  });

  test('stlm train --arch pooled writes a model that stlm generate runs', () => {
    const data = join(dir, 'data.txt');
    writeFileSync(data, Buffer.from(TEXT).toString('utf8').repeat(40));
    const out = join(dir, 'cli.gguf');
    const t = spawnSync(process.execPath, [CLI, 'train', '--data', data, '--arch', 'pooled', '--chunk', 'space:8', '--config', '{"preset":"nano","ctx":64}',
      '--steps', '3', '--batch', '2', '--warmup', '1', '--eval-every', '0', '--out', out, '--threads', '1'], { encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stderr, /byte-pooled, space:8 chunks: [\d,]+ parameters/);
    const gen = spawnSync(process.execPath, [CLI, 'generate', '--model', out, '--prompt', 'To be', '--max-tokens', '20', '--threads', '1'], { encoding: 'utf8' });
    assert.equal(gen.status, 0, gen.stderr);
    assert.ok(gen.stdout.startsWith('To be'));
    const bad = spawnSync(process.execPath, [CLI, 'train', '--data', data, '--chunk', 'space', '--steps', '1', '--out', out], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--chunk applies to --arch pooled only/);
  });
});
