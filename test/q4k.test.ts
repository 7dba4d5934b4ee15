// Q4_K (GGUF's 4-bit k-quant): the decoder against hand-built blocks, the quantizer's error on awkward
// inputs, and the oracle: a random stlm model written with Q4_K matrices runs in llama.cpp
// (node-llama-cpp 3.21.1) with the same next-token log-probabilities as stlm on the decoded weights.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { f16ToF32 } from '../src/dtypes/f16.js';
import { GGML_TYPE, getTensor, gguf, quantizeQ4_0, dequantizeQ4_0, readGguf, tensorBytes, tensorToF32, writeGguf, writeGgufFile } from '../src/formats/gguf.js';
import { dequantizeQ4_K, minCode, packScalesAndMins, quantizeQ4_K, scaleCode } from '../src/dtypes/kquants.js';
import { type LlamaCppModel, openLlamaCpp } from '../src/interop/llamacpp.js';
import type { Backend, Buf, MatmulArgs } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { type LlamaConfig, PRESETS, parameterShapes } from '../src/models/config.js';
import { byteVocab, type LoadedModel, loadModel, type ModelBundle, modelMetadata, modelTensors } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';
import { argmax, forwardLogits, logSoftmaxRows } from './helpers.js';

const gaussian = (rng: Rng, n: number, std = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * std);

/** RMS of (a − b) over RMS of a. */
function relativeRms(a: Float32Array, b: Float32Array): number {
  let err = 0, ref = 0;
  for (let i = 0; i < a.length; i++) {
    err += (a[i] - b[i]) ** 2;
    ref += a[i] ** 2;
  }
  return Math.sqrt(err / ref);
}

const roundTrip = (x: Float32Array) => dequantizeQ4_K(quantizeQ4_K(x), x.length);

// ---------------------------------------------------------------------------------------------------
// (a) The decoder, on blocks assembled byte by byte from the layout in ggml-common.h

/**
 * Sub-block scale and min codes used in the hand-built block. Codes ≥ 16 in sub-blocks 4..7 use the
 * split high bits, and the scales' high bits (1, 2, 3, 0) differ from the mins' (3, 0, 1, 2), so that
 * mixing up where they go cannot pass unnoticed.
 */
const SC = [1, 2, 3, 63, 17, 33, 48, 5];
const MIN = [0, 7, 63, 1, 50, 3, 16, 34];
/**
 * The 12 scale bytes for SC and MIN, worked out by hand:
 *   bytes 0..3:  SC[0..3]  | (SC[4..7]  >> 4) << 6       = 1|1<<6, 2|2<<6, 3|3<<6, 63|0<<6
 *   bytes 4..7:  MIN[0..3] | (MIN[4..7] >> 4) << 6       = 0|3<<6, 7|0<<6, 63|1<<6, 1|2<<6
 *   bytes 8..11: (SC[4..7] & 15) | (MIN[4..7] & 15) << 4 = 1|2<<4, 1|3<<4, 0|0<<4, 5|2<<4
 */
const SCALE_BYTES = [0x41, 0x82, 0xc3, 0x3f, 0xc0, 0x07, 0x7f, 0x81, 0x21, 0x31, 0x00, 0x25];

/** The 4-bit quant of value i in the hand-built block: every level 0..15 appears, in a scrambled order. */
const quantOf = (i: number) => (i * 7 + 3) & 15;

/** 144 bytes of one block: f16 d and dmin (given as bits), the scale bytes, quants by quantOf. */
function handBlock(dBits: number, dminBits: number, scaleBytes: number[], quant: (i: number) => number): Uint8Array {
  const b = new Uint8Array(144);
  b.set([dBits & 0xff, dBits >> 8, dminBits & 0xff, dminBits >> 8], 0);
  b.set(scaleBytes, 4);
  for (let i = 0; i < 256; i++) {
    // 64-value group g takes bytes 16 + 32g .. +31: its first 32 values in the low nibbles, the next 32 in the high.
    const g = i >> 6, r = i & 63;
    const at = 16 + 32 * g + (r & 31);
    b[at] |= r < 32 ? quant(i) : quant(i) << 4;
  }
  return b;
}

describe('Q4_K decoder', () => {
  test('a hand-built block: x = d·sc·q − dmin·m for every value, exactly', () => {
    const bytes = handBlock(0x3800 /* 0.5 */, 0x3400 /* 0.25 */, SCALE_BYTES, quantOf);
    const want = Float32Array.from({ length: 256 }, (_, i) => 0.5 * SC[i >> 5] * quantOf(i) - 0.25 * MIN[i >> 5]);
    assert.deepEqual(dequantizeQ4_K(bytes, 256), want);
    // Spot checks written out: value 0 (sub-block 0, q 3) and value 255 (sub-block 7, q (255·7+3) & 15 = 12).
    assert.equal(dequantizeQ4_K(bytes, 256)[0], 0.5 * 1 * 3 - 0);
    assert.equal(dequantizeQ4_K(bytes, 256)[255], 0.5 * 5 * 12 - 0.25 * 34);
  });

  test('the encoder packs scale and min codes into the same 12 bytes', () => {
    const packed = new Uint8Array(14).fill(0xaa); // stale bytes around and under the field
    packScalesAndMins(SC, MIN, packed, 1);
    assert.deepEqual(Array.from(packed), [0xaa, ...SCALE_BYTES, 0xaa]);
    assert.deepEqual(SC.map((_, j) => [scaleCode(packed, 1, j), minCode(packed, 1, j)]), SC.map((sc, j) => [sc, MIN[j]]));
  });

  test('two blocks back to back, with extreme codes and tiny and large super-block scales', () => {
    const first = handBlock(0x3800, 0x3400, SCALE_BYTES, quantOf);
    // All codes 63: bytes 0..7 = 63 | 3<<6 = 0xff, bytes 8..11 = 15 | 15<<4 = 0xff. All quants 15.
    const second = handBlock(0x1400 /* 2^-10 */, 0x4200 /* 3 */, new Array(12).fill(0xff), () => 15);
    const out = dequantizeQ4_K(new Uint8Array([...first, ...second]), 512);
    assert.deepEqual(out.subarray(0, 256), dequantizeQ4_K(first, 256));
    assert.ok(out.subarray(256).every((v) => v === Math.fround(2 ** -10 * 63 * 15 - 3 * 63)));
    assert.equal(f16ToF32(0x1400), 2 ** -10);
  });

  test('GGUF files: a raw Q4_K tensor reads back through tensorToF32', () => {
    const block = handBlock(0x3800, 0x3400, SCALE_BYTES, quantOf);
    const file = readGguf(writeGguf([], [{ name: 'w', shape: [256, 1], type: GGML_TYPE.Q4_K, data: block }]), 'q4k.gguf');
    assert.deepEqual(tensorToF32(file, getTensor(file, 'w')), dequantizeQ4_K(block, 256));
  });

  test('clear errors for a length that is not whole super-blocks or bytes that do not match', () => {
    assert.throws(() => dequantizeQ4_K(new Uint8Array(144), 255), /Q4_K: value count 255 is not a whole number of 256-value super-blocks/);
    assert.throws(() => dequantizeQ4_K(new Uint8Array(143), 256), /Q4_K: 256 values take 144 bytes, got 143/);
  });

  test('10M values decode (time reported, not checked: timing belongs in bench/)', () => {
    const n = 10 * 1024 * 1024;
    const bytes = quantizeQ4_K(gaussian(new Rng(9), 256 * 64)); // 64 random blocks, repeated
    const big = new Uint8Array((n / 256) * 144);
    for (let at = 0; at < big.length; at += bytes.length) big.set(bytes.subarray(0, Math.min(bytes.length, big.length - at)), at);
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      dequantizeQ4_K(big, n);
      best = Math.min(best, performance.now() - t0);
    }
    console.log(`# dequantizeQ4_K: ${n} values in ${best.toFixed(0)} ms (best of 3)`);
  });
});

// ---------------------------------------------------------------------------------------------------
// (b) The quantizer

describe('Q4_K quantizer', () => {
  test('Gaussian data: error well below Q4_0 at about the same size (4.5 vs 4.5 bits per value)', () => {
    const x = gaussian(new Rng(1), 256 * 256);
    const q4k = relativeRms(x, roundTrip(x));
    const q40 = relativeRms(x, dequantizeQ4_0(quantizeQ4_0(x), x.length));
    console.log(`# relative RMS error on N(0,1): Q4_K ${q4k.toFixed(4)}, Q4_0 ${q40.toFixed(4)} (ratio ${(q4k / q40).toFixed(3)})`);
    assert.ok(q4k < 0.1, `Q4_K relative RMS ${q4k}`);
    assert.ok(q4k < 0.85 * q40, `Q4_K ${q4k} vs Q4_0 ${q40}`);
    // Shifting the data exercises the min: Q4_0 (symmetric) suffers, Q4_K barely notices.
    const shifted = x.map((v) => v + 2);
    assert.ok(relativeRms(shifted, roundTrip(shifted)) < 0.06);
  });

  test('every value lands within about half a step of its sub-block', () => {
    const x = gaussian(new Rng(2), 256 * 16, 0.02);
    const y = roundTrip(x);
    for (let s = 0; s < x.length; s += 32) {
      const sub = x.subarray(s, s + 32);
      const range = Math.max(...sub, 0) - Math.min(...sub, 0);
      // Step ≤ range/14 (the search may stretch the scale by 15/14); a 6-bit code adds a little.
      for (let i = s; i < s + 32; i++) assert.ok(Math.abs(x[i] - y[i]) <= 0.6 * (range / 14), `value ${i}: ${x[i]} -> ${y[i]}`);
    }
  });

  test('all-zero blocks are all zeros, bytes and values', () => {
    const bytes = quantizeQ4_K(new Float32Array(512));
    assert.ok(bytes.every((b) => b === 0));
    assert.ok(dequantizeQ4_K(bytes, 512).every((v) => v === 0));
  });

  test('constant blocks come back within f16 precision of the constant', () => {
    for (const c of [3.7, -2.5, 0.1, -1e4, 60000]) {
      const y = roundTrip(new Float32Array(256).fill(c));
      for (const v of y) assert.ok(Math.abs(v - c) <= Math.abs(c) * 2 ** -10, `constant ${c} -> ${v}`);
    }
    // Different constants per sub-block, positive and negative, in one super-block.
    const x = Float32Array.from({ length: 256 }, (_, i) => [0.5, -0.25, 1, -1, 0, 2, -2, 0.125][i >> 5]);
    assert.ok(relativeRms(x, roundTrip(x)) < 0.02);
  });

  test('one huge outlier: it survives, and its neighbours keep a usable step', () => {
    const x = gaussian(new Rng(4), 256);
    x[100] = 1000;
    const y = roundTrip(x);
    assert.ok(Math.abs(y[100] - 1000) < 0.05 * 1000, `outlier -> ${y[100]}`);
    // Sub-block 3 holds the outlier; in the others the 6-bit scale codes would round to 0 against
    // d ≈ 1000/15/63, flattening them to their min; trying code 1 keeps a step of about 1.
    const others = Array.from({ length: 256 }, (_, i) => i).filter((i) => i >> 5 !== 3);
    const rms = (f: (i: number) => number) => Math.sqrt(others.reduce((s, i) => s + f(i) ** 2, 0) / others.length);
    const err = rms((i) => x[i] - y[i]);
    console.log(`# outlier block: RMS error of the other 224 values ${err.toFixed(3)} (their RMS ${rms((i) => x[i]).toFixed(3)})`);
    assert.ok(err < 0.45, `RMS error ${err}`);
  });

  test('NaN, Infinity, values too large for f16 scales and partial blocks are clear errors', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = new Float32Array(256);
      x[5] = bad;
      assert.throws(() => quantizeQ4_K(x), new RegExp(`Q4_K: value 5 is ${bad}; only finite values can be quantized`));
    }
    assert.throws(() => quantizeQ4_K(new Float32Array(512).fill(1e9)), /Q4_K: super-block 0: scale .* overflows f16/);
    assert.throws(() => quantizeQ4_K(new Float32Array(300)), /value count 300 is not a whole number of 256-value super-blocks/);
    // And through the GGUF writer.
    assert.throws(() => writeGguf([], [{ name: 'w', shape: [256], type: GGML_TYPE.Q4_K, data: new Float32Array(256).fill(NaN) }]), /only finite values/);
  });

  test('the GGUF writer encodes Q4_K from f32 values', () => {
    const x = gaussian(new Rng(5), 512);
    const file = readGguf(writeGguf([], [{ name: 'w', shape: [256, 2], type: GGML_TYPE.Q4_K, data: x }]), 'q4k.gguf');
    const info = getTensor(file, 'w');
    assert.equal(info.byteLength, 288);
    assert.deepEqual(tensorBytes(file, info), quantizeQ4_K(x));
    assert.deepEqual(tensorToF32(file, info), roundTrip(x));
  });
});

// ---------------------------------------------------------------------------------------------------
// (c) The oracle: llama.cpp runs our Q4_K bytes
//
// llama.cpp does not multiply Q4_K weights by f32 activations: its CPU kernels first round each
// activation row to Q8_K (int8, one f32 scale per 256 values), so even a perfect reader differs from
// stlm's f32 forward by that rounding. Two checks follow from that:
// - exactness: stlm repeats llama.cpp's activation rounding (a wrapper around the backend's matmul);
//   then the two agree to f32 noise, which proves llama.cpp decodes every weight as stlm does;
// - the whole model in Q4_K against plain stlm, with a tolerance measured for that rounding.

/** Every row length (the `in` dimension) a multiple of 256, so every matrix, the embedding included, can be Q4_K. */
const CONFIG: LlamaConfig = { ...PRESETS.nano, dModel: 256, nHeads: 4, nKvHeads: 4, mlpHidden: 512, nLayers: 2 };

/**
 * Random weights with a peaked next-token distribution (std 0.05 embedding rows give log-probs down to
 * about −9, not the near-uniform output of a freshly initialized model), so log-probs and greedy
 * choices say something.
 */
function randomWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of parameterShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 1) weights.set(name, Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal()));
    else weights.set(name, gaussian(rng, n, name === 'token_embd.weight' ? 0.05 : 1 / Math.sqrt(shape[1])));
  }
  return weights;
}

/**
 * The two ways llama.cpp's CPU kernels round a 256-value activation block to Q8_K: the AVX2 kernels
 * (ggml_quantize_mat_q8_K_4x8, for the repacked Q4_K GEMM) use scale amax/127, which is what this
 * x86 build does for every Q4_K product; the reference quantize_row_q8_K, which other CPUs may take,
 * uses max/−128 with codes clamped to 127. Both round half to even. The test takes whichever fits.
 */
type Q8KRule = 'amax/127' | 'max/-128';

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Replaces x[at..at+256) by its Q8_K rounding, in f32 arithmetic as llama.cpp does it. */
function roundQ8K(x: Float32Array, at: number, rule: Q8KRule): void {
  let amax = 0, max = 0;
  for (let i = at; i < at + 256; i++) if (Math.abs(x[i]) > amax) { amax = Math.abs(x[i]); max = x[i]; }
  if (amax === 0) return;
  const f = Math.fround;
  const iscale = rule === 'amax/127' ? f(127 / amax) : f(-128 / max);
  const d = f(1 / iscale);
  for (let i = at; i < at + 256; i++) x[i] = f(d * Math.min(127, roundHalfEven(f(iscale * x[i]))));
}

/** `be`, except that products with a weight in `q4kWeights` first round their activations to Q8_K. */
function roundingActivations(be: Backend, q4kWeights: ReadonlySet<Buf>, rule: Q8KRule): Backend {
  const matmul = (a: Buf, b: Buf, c: Buf, args: MatmulArgs): void => {
    if (!q4kWeights.has(b) || !args.transB || args.transA || (args.batch ?? 1) !== 1 || args.accumulate) return be.matmul(a, b, c, args);
    const x = be.read(a, args.offA ?? 0, args.m * args.k);
    for (let at = 0; at < x.length; at += 256) roundQ8K(x, at, rule);
    const rounded = be.alloc(x.length);
    be.write(rounded, x);
    be.matmul(rounded, b, c, { ...args, offA: 0 });
    be.free(rounded);
  };
  return new Proxy(be, {
    get(target, prop) {
      if (prop === 'matmul') return matmul;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** log-softmax of every position of `input` (fresh cache), as float64 rows; optionally with llama.cpp's activation rounding. */
function logProbs(be: Backend, m: ModelBundle, input: number[], q8k?: { rule: Q8KRule; q4k: ReadonlySet<string> }): Float64Array[] {
  const q4kWeights = new Set<Buf>();
  const g = new Graph(q8k ? roundingActivations(be, q4kWeights, q8k.rule) : be);
  const model = new Llama(g, m.config, m.weights);
  for (const [name, t] of model.params) if (q8k?.q4k.has(name)) q4kWeights.add(t.buf);
  return logSoftmaxRows(forwardLogits(model, input), m.config.vocabSize);
}

/** Largest and mean |a − b| over all rows. */
function difference(a: Float64Array[], b: Float64Array[]): { max: number; mean: number } {
  assert.equal(a.length, b.length);
  let max = 0, sum = 0, count = 0;
  a.forEach((row, i) => row.forEach((v, j) => {
    const d = Math.abs(v - b[i][j]);
    max = Math.max(max, d);
    sum += d;
    count++;
  }));
  return { max, mean: sum / count };
}

const show = (d: { max: number; mean: number }) => `max ${d.max.toExponential(2)}, mean ${d.mean.toExponential(2)}`;

/** Writes `weights` as a GGUF model whose matrices named by `q4k` are Q4_K (the rest F32), and loads it back. */
async function writeQ4K(path: string, weights: Map<string, Float32Array>, q4k: ReadonlySet<string>): Promise<LoadedModel> {
  const meta = modelMetadata(CONFIG, byteVocab(), 'q4k-oracle');
  // llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_S (14); informational only.
  meta[meta.findIndex(([k]) => k === 'general.file_type')] = ['general.file_type', gguf.u32(14)];
  const tensors = modelTensors(CONFIG, weights, GGML_TYPE.F32).map((t) => (q4k.has(t.name) ? { ...t, type: GGML_TYPE.Q4_K } : t));
  await writeGgufFile(path, meta, tensors);
  return loadModel(path);
}

describe('llama.cpp runs stlm\'s Q4_K files (node-llama-cpp 3.21.1)', () => {
  const matrices = parameterShapes(CONFIG).filter(([, shape]) => shape.length === 2).map(([name]) => name);
  // The embedding (259 super-blocks, read by llama.cpp's get_rows and by its tied output head), and the
  // first layer's attention inputs and up projection (on x86, llama.cpp's repacked Q4_K GEMM), a
  // 512-row matrix included. Fewer Q4_K products, fewer activation codes that f32 noise can flip.
  const someQ4K = new Set(['token_embd.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.ffn_up.weight']);
  const allQ4K = new Set(matrices);
  // 32 bytes: llama.cpp's repacked GEMM rounds activation rows in groups of 4 (others take another path).
  const prompt = Array.from(new TextEncoder().encode('Q4_K: 144 bytes per 256 weights.'));
  let be: Backend;
  let dir: string;
  let original: Map<string, Float32Array>;
  let some: LoadedModel, all: LoadedModel;
  const opened: LlamaCppModel[] = [];
  let allInLlamaCpp: LlamaCppModel | undefined;
  let reason = '';
  const open = async (path: string): Promise<LlamaCppModel> => {
    const r = await openLlamaCpp(path);
    if (typeof r === 'string') throw new Error(r);
    opened.push(r);
    return r;
  };

  before(async () => {
    be = await createBackend('wasm', { threads: 1 });
    dir = mkdtempSync(join(tmpdir(), 'stlm-q4k-'));
    original = randomWeights(CONFIG, 2); // a seed whose greedy text runs 16 tokens without an end-of-sequence
    some = await writeQ4K(join(dir, 'some.gguf'), original, someQ4K);
    all = await writeQ4K(join(dir, 'all.gguf'), original, allQ4K);
    const probe = await openLlamaCpp(join(dir, 'all.gguf'));
    if (typeof probe === 'string') reason = probe;
    else opened.push((allInLlamaCpp = probe));
  });
  after(async () => {
    for (const m of opened) await m.dispose();
    be.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the files hold Q4_K matrices (norms F32) and load back as their decoded values', () => {
    assert.equal(prompt.length % 4, 0);
    for (const [m, q4k] of [[some, someQ4K], [all, allQ4K]] as const) {
      for (const t of m.file!.tensors) assert.equal(t.type, q4k.has(t.name) ? GGML_TYPE.Q4_K : GGML_TYPE.F32, t.name);
      for (const [name, w] of original) assert.deepEqual(m.weights.get(name), q4k.has(name) ? roundTrip(w) : w, name);
    }
  });

  test('exactness: with llama.cpp\'s Q8_K activation rounding repeated in stlm, log-probs agree to f32 noise', async (t) => {
    if (reason) return t.skip(reason);
    const theirs = await (await open(join(dir, 'some.gguf'))).logProbs(prompt);
    const positionsOff = (rows: Float64Array[]) => rows.map((row, i) => difference([row], [theirs[i]]).max);
    const byRule = (['amax/127', 'max/-128'] as const).map((rule) => {
      const perPosition = positionsOff(logProbs(be, some, prompt, { rule, q4k: someQ4K }));
      return { rule, perPosition, off: perPosition.filter((d) => d > 1e-4).length };
    });
    const best = byRule.reduce((a, b) => (b.off < a.off ? b : a));
    const plain = positionsOff(logProbs(be, some, prompt));
    const fmt = (v: number[]) => `max ${Math.max(...v).toExponential(2)}, median ${[...v].sort((x, y) => x - y)[v.length >> 1].toExponential(2)}`;
    console.log(`# 5 matrices in Q4_K, per-position max |Δ log p|: llama.cpp vs stlm with Q8_K activations (${best.rule}) ${fmt(best.perPosition)}, ${best.off} of ${prompt.length} positions above 1e-4; vs plain stlm ${fmt(plain)}`);
    // Agreement to f32 noise (~1e-6) at all but a few positions: there, an activation sat so close to a
    // rounding boundary that f32 noise flipped its int8 code, moving log-probs by a few 1e-3. A misread
    // scale, min or nibble moves some logit by ≥ 0.1 (32 weights off by a step) at every position.
    assert.ok(best.off <= 3, `${best.off} positions differ by more than 1e-4: ${best.perPosition.map((d) => d.toExponential(1)).join(' ')}`);
    assert.ok(Math.max(...best.perPosition) < 1e-2, fmt(best.perPosition));
  });

  test('the whole model in Q4_K: next-token log-probs near stlm\'s, the same greedy text', async (t) => {
    if (!allInLlamaCpp) return t.skip(reason);
    const llama = allInLlamaCpp;
    const theirs = await llama.logProbs(prompt);
    const plain = difference(logProbs(be, all, prompt), theirs);
    const withRounding = difference(logProbs(be, all, prompt, { rule: 'amax/127', q4k: allQ4K }), theirs);
    // What Q4_K itself does to the model (f32 vs decoded weights, both in stlm): misread weights would be off by this much.
    const quantEffect = difference(logProbs(be, { ...all, weights: original }, prompt), logProbs(be, all, prompt));
    console.log(`# all 15 matrices in Q4_K: llama.cpp vs plain stlm ${show(plain)}; vs stlm with Q8_K activations ${show(withRounding)}; Q4_K vs f32 weights in stlm ${show(quantEffect)}`);
    // Q8_K rounding perturbs every activation by up to amax/254 before each of the 15 products. Measured
    // here: 0.107 at most, 0.018 on average; the same weights as Q4_0 or Q8_0 files (8-bit activation
    // blocks of 32) give 0.062 and 0.068, and as an F32 file 4e-6. The bound leaves about 2x headroom
    // and stays well below what Q4_K itself does to the model (1.06).
    assert.ok(plain.max < 0.2 && plain.mean < 0.04, show(plain));
    assert.ok(plain.max < quantEffect.max / 4, `${show(plain)} vs Q4_K itself ${show(quantEffect)}`);

    // Greedy text: llama.cpp's 16 tokens, each checked against stlm's choice after the same prefix
    // (one forward over prompt + tokens), so that one near tie does not end the comparison.
    const ids = await llama.greedy(prompt, 16);
    assert.equal(ids.length, 16);
    const rows = logProbs(be, all, [...prompt, ...ids]).slice(prompt.length - 1, -1);
    const ours = rows.map(argmax);
    console.log(`# greedy, 16 steps: llama.cpp [${ids.join(' ')}], stlm after the same prefixes [${ours.join(' ')}]`);
    let same = 0;
    ids.forEach((id, i) => {
      if (id === ours[i]) return void same++;
      // A different choice is only acceptable at a near tie, within the measured log-prob difference.
      const margin = rows[i][ours[i]] - rows[i][id];
      console.log(`# step ${i}: llama.cpp chose ${id}, stlm ${ours[i]} by a margin of ${margin.toExponential(2)} (a near tie)`);
      assert.ok(margin < 2 * plain.max, `step ${i}: llama.cpp chose ${id}, stlm ${ours[i]} by a margin of ${margin}`);
    });
    assert.ok(same >= 12, `${same} of 16 greedy tokens agree`);
  });
});
