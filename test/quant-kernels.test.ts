// Quantized matrix products (GGUF Q8_0 / Q4_0 / Q4_K weights) and row dequantization: the WebAssembly backend
// against the reference backend, with error bounds derived per output (not hand-picked), and the
// 2-thread backend against the 1-thread one, bit for bit.
//
// Error bounds, per output o = Σ_j x_j·w_j (+ c0 when accumulating), with u = 2⁻²⁴ (f32 unit roundoff):
// - 'f32' strategy vs the float64 reference: only f32 rounding. Every path sums at most k + 8 rounded
//   operations into one output (the GEMM chain is k multiply-adds plus c0; the streaming path sums
//   32-value blocks, then k/32 block sums), so |err| ≤ (k + 8)·u·(Σ|x·w| + |c0|).
// - 'int8' strategy vs the reference computing the same int8 semantics in float64: block sums are exact
//   integers; f32 rounds d_w·d_x, the scaled block sum, and a chain of at most k/32 + 6 additions, so
//   |err| ≤ (k/32 + 8)·u·(Σ|x̂·w| + |c0|), and Σ|x̂·w| ≤ Σ|x·w| + Σ|w|·d_x.
// - 'int8' vs the exact ('f32') reference: additionally each x is replaced by x̂ with
//   |x − x̂| ≤ d·(1/2 + 2⁻⁴) with d = max|x|/127 (q = round(x·127/max|x|) is off by at most 1/2 plus
//   the f32 rounding of the product; x̂ = q·d_x with d_x = d rounded to f16, |q| ≤ 127, so the f16
//   rounding adds 127·d·2⁻¹¹ < d/16), so |err| ≤ Σ|w|·d·(1/2 + 2⁻⁴) + the bound above.
// Q4_K (w = s·q − o per value, s = d·sc, o = dmin·m, x rounded per 256 values as Q8_K):
// - 'f32' as above (the dequantized values are exact against dequantizeQ4_K, so only the products and
//   sums round).
// - 'int8' vs its float64 reference: the integer sums are exact, but they are scaled by d_w·d_x and
//   dmin_w·d_x separately, so the terms that cancel are Σ|x̂|·s·q and Σ|x̂|·o, not Σ|x̂·w|: with
//   C = Σ (|x| + d)·(|s·q| + |o|) ≥ Σ|x̂|·(|s·q| + |o|), |err| ≤ (k/32 + 8)·u·(C + |c0|).
// - 'int8' vs exact: x̂ = q·d_x with d_x = fround(1/iscale), iscale = fround(127/max|x|) and q =
//   round(fround(x·iscale)), so |x − x̂| ≤ (1/2 + 254u)/iscale ≤ d·(1/2 + 2⁻¹⁶), d = max|x|/127 (no
//   f16); the exact reference also uses w rounded to f32 (≤ u·C more). |err| ≤ Σ|w|·d·(1/2 + 2⁻¹⁰)
//   + (k/32 + 9)·u·(C + |c0|). (A super-block of x whose iscale overflows, max|x| < 3.7e-37, is
//   dropped: its share of the output is below 1e-29, far inside the bound of any other super-block.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend, Buf, QuantStrategy, QuantType } from '../src/kernels/backend.js';
import { QUANT_BLOCKS } from '../src/dtypes/blocks.js';
import { f16ToF32Table, f32ToF16 } from '../src/dtypes/f16.js';
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from '../src/formats/gguf.js';
import { dequantizeQ4_K, minCode, packScalesAndMins, quantizeQ4_K, scaleCode } from '../src/dtypes/kquants.js';
import { Rng } from '../src/util/rng.js';
import { randomF32, wasmAndReference } from './helpers.js';

const U = 2 ** -24;
/** The 32-value block types (Q4_K, with its 256-value super-blocks, has tests of its own below). */
const TYPES: QuantType[] = ['q8_0', 'q4_0'];
const ALL_TYPES: QuantType[] = ['q8_0', 'q4_0', 'q4_k'];

const quantize = (type: QuantType, x: Float32Array): Uint8Array => (type === 'q8_0' ? quantizeQ8_0(x) : type === 'q4_0' ? quantizeQ4_0(x) : quantizeQ4_K(x));
const dequantize = (type: QuantType, b: Uint8Array, n: number): Float32Array =>
  type === 'q8_0' ? dequantizeQ8_0(b, n) : type === 'q4_0' ? dequantizeQ4_0(b, n) : dequantizeQ4_K(b, n);

/** Per Q4_K weight, |s·q| + |o| with s = d·sc and o = dmin·m (the magnitudes the int8 path cancels). */
function q4kMagnitudes(b: Uint8Array, count: number): Float64Array {
  const f16 = f16ToF32Table(), out = new Float64Array(count);
  for (let sb = 0; sb < count / 256; sb++) {
    const p = sb * 144, d = f16[b[p] | (b[p + 1] << 8)], dmin = f16[b[p + 2] | (b[p + 3] << 8)];
    for (let e = 0; e < 256; e++) {
      const j = e >> 5, byte = b[p + 16 + 32 * (j >> 1) + (e & 31)];
      out[sb * 256 + e] = Math.abs(d * scaleCode(b, p + 4, j) * (j & 1 ? byte >> 4 : byte & 15)) + Math.abs(dmin * minCode(b, p + 4, j));
    }
  }
  return out;
}

/**
 * Per-output bound ingredients: A = Σ|x·w|, B = Σ|w|·d_x (d_x = max|x|/127 over x's block: 32 values,
 * 256 for Q4_K), and for Q4_K C = Σ (|x| + d_x)·(|s·q| + |o|) (`mag` from q4kMagnitudes).
 */
function boundTerms(x: Float32Array, wf: Float32Array, m: number, n: number, k: number, type: QuantType, mag?: Float64Array): { A: Float64Array; B: Float64Array; C: Float64Array } {
  const A = new Float64Array(m * n), B = new Float64Array(m * n), C = new Float64Array(m * n);
  const block = type === 'q4_k' ? 256 : 32, shift = Math.log2(block);
  const dx = new Float64Array(k / block);
  for (let i = 0; i < m; i++) {
    for (let b = 0; b < k / block; b++) {
      let amax = 0;
      for (let e = 0; e < block; e++) amax = Math.max(amax, Math.abs(x[i * k + b * block + e]));
      dx[b] = Math.fround(amax / 127);
    }
    for (let j = 0; j < n; j++) {
      let a = 0, s = 0, c = 0;
      for (let p = 0; p < k; p++) {
        const w = Math.abs(wf[j * k + p]), xa = Math.abs(x[i * k + p]);
        a += xa * w;
        s += w * dx[p >> shift];
        if (mag) c += (xa + dx[p >> shift]) * mag[j * k + p];
      }
      A[i * n + j] = a;
      B[i * n + j] = s;
      C[i * n + j] = c;
    }
  }
  return { A, B, C };
}

/** Asserts |got − want| ≤ bound elementwise; returns the largest error relative to its bound. */
function withinBound(label: string, got: Float32Array, want: Float32Array, bound: (o: number) => number): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let o = 0; o < got.length; o++) {
    const err = Math.abs(got[o] - want[o]), b = bound(o);
    assert.ok(Number.isFinite(got[o]) && err <= b, `${label}: output ${o} is ${got[o]}, expected ${want[o]} ± ${b.toExponential(3)} (error ${err.toExponential(3)})`);
    worst = Math.max(worst, b > 0 ? err / b : 0);
  }
  return worst;
}

function bitsEqual(a: Float32Array, b: Float32Array, label: string): void {
  assert.deepEqual(new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length), label);
}

interface QuantCase {
  x: Float32Array;
  wBytes: Uint8Array;
  c0: Float32Array;
  m: number;
  n: number;
  k: number;
  type: QuantType;
  accumulate: boolean;
  strategy: QuantStrategy;
}

/**
 * How W reaches the backend: raw GGUF bytes (uploadBytes), or uploadQuant, where the WebAssembly backend
 * keeps Q8_0 and Q4_0 in its own four-row layouts unless a native kernel takes the matrix.
 */
type Upload = 'bytes' | 'quant';
const UPLOADS: Upload[] = ['bytes', 'quant'];

function upload(be: Backend, bytes: Uint8Array, how: Upload, type: QuantType, rows: number, k: number): Buf {
  return how === 'bytes' ? be.uploadBytes(bytes) : be.uploadQuant(bytes, { type, rows, k });
}

/** Runs one matmulQuant on a backend with fresh buffers (out prefilled with c0 when accumulating, else NaN). */
function runQuant(be: Backend, c: QuantCase, strategy: QuantStrategy = c.strategy, how: Upload = 'bytes'): Float32Array {
  const x = be.alloc(c.x.length), out = be.alloc(c.m * c.n);
  be.write(x, c.x);
  const w = upload(be, c.wBytes, how, c.type, c.n, c.k);
  if (c.accumulate) be.write(out, c.c0);
  else be.fill(out, Number.NaN);
  be.matmulQuant(x, w, out, { m: c.m, n: c.n, k: c.k, type: c.type, accumulate: c.accumulate, strategy });
  const r = be.read(out);
  for (const b of [x, w, out]) be.free(b);
  return r;
}

// Twice: the pure WebAssembly kernels, and the backend as it runs by default (with the native kernels
// for the int8 Q8_0/Q4_0 products where they are built; the same kernels again where they are not).
for (const native of [false, true]) {
describe(`quantized matmul and dequantizeRows: wasm${native ? ' with native kernels' : ' only'} equals the reference`, () => {
  const backends = wasmAndReference({ native });
  const { ref } = backends;

  /** Every strategy of one case against the reference (bounds above), and 2 threads against 1. */
  function checkCase(c: QuantCase, wf: Float32Array, stats: { int8Exact: number; int8Approx: number; f32: number }): void {
    const { m, n, k } = c;
    const label = `${c.type} ${m}x${n}x${k} acc=${c.accumulate}`;
    const k4 = c.type === 'q4_k';
    const { A, B, C } = boundTerms(c.x, wf, m, n, k, c.type, k4 ? q4kMagnitudes(c.wBytes, n * k) : undefined);
    const c0 = (o: number): number => (c.accumulate ? Math.abs(c.c0[o]) : 0);
    const exact = runQuant(ref, c, 'f32');
    const int8Ref = runQuant(ref, c, 'int8');
    const f32Bound = (o: number): number => (k + 8) * U * (A[o] + c0(o));
    const int8Bound = k4
      ? (o: number): number => (k / 32 + 8) * U * (C[o] + c0(o))
      : (o: number): number => (k / 32 + 8) * U * (A[o] + B[o] + c0(o));
    const int8ExactBound = k4
      ? (o: number): number => B[o] * (0.5 + 2 ** -10) + (k / 32 + 9) * U * (C[o] + c0(o))
      : (o: number): number => B[o] * (0.5 + 1 / 16) + int8Bound(o);
    for (const how of UPLOADS) for (const strategy of ['f32', 'int8', 'auto'] as const) {
      const a = runQuant(backends.w1, c, strategy, how), b = runQuant(backends.w2, c, strategy, how);
      bitsEqual(b, a, `${label} ${strategy} ${how}: 2 threads differ from 1 thread`);
      if (strategy === 'f32') {
        stats.f32 = Math.max(stats.f32, withinBound(`${label} f32`, a, exact, f32Bound));
      } else if (strategy === 'int8') {
        stats.int8Exact = Math.max(stats.int8Exact, withinBound(`${label} int8 vs int8 reference`, a, int8Ref, int8Bound));
        stats.int8Approx = Math.max(stats.int8Approx, withinBound(`${label} int8 vs exact`, a, exact, int8ExactBound));
      } else {
        // 'auto' is one of the two; the int8 bound is the looser one, so it holds either way.
        withinBound(`${label} auto vs exact`, a, exact, int8ExactBound);
      }
    }
  }

  test('matmulQuant: odd shapes, both types, every strategy, accumulate, 1 vs 2 threads', () => {
    const rng = new Rng(11);
    const stats = { int8Exact: 0, int8Approx: 0, f32: 0 };
    let cases = 0;
    for (const type of TYPES) {
      // k = 224: seven blocks, so Q4_0's four-block steps and its one-block tail both run in one row.
      // n: every remainder mod 4 (the repacked Q4_0 layout's last group of rows), and two threads' shares.
      for (const k of [32, 96, 224, 512]) {
        for (const n of [1, 6, 35, 257]) {
          const wf32 = randomF32(rng, n * k, 0.05);
          const wBytes = quantize(type, wf32);
          const wf = dequantize(type, wBytes, n * k);
          for (const m of [1, 3, 17, 64]) {
            const x = randomF32(rng, m * k), c0 = randomF32(rng, m * n);
            for (const accumulate of [false, true]) {
              checkCase({ x, wBytes, c0, m, n, k, type, accumulate, strategy: 'auto' }, wf, stats);
              cases++;
            }
          }
        }
      }
    }
    assert.equal(cases, 2 * 4 * 4 * 4 * 2);
    // The worst error as a fraction of its bound, for the record (each is asserted ≤ 1 above).
    console.log(`# ${cases} cases; worst error / bound: f32 ${stats.f32.toFixed(3)}, int8 vs int8 reference ${stats.int8Exact.toFixed(3)}, int8 vs exact ${stats.int8Approx.toFixed(3)}`);
  });

  test('matmulQuant Q4_K: odd shapes, every strategy, accumulate, 1 vs 2 threads', () => {
    const rng = new Rng(15);
    const stats = { int8Exact: 0, int8Approx: 0, f32: 0 };
    let cases = 0;
    for (const k of [256, 512]) {
      for (const n of [1, 5, 33, 257]) {
        // A per-row offset exercises the mins (Q4_K's dmin·m term), which a zero-mean row barely uses.
        const wf32 = randomF32(rng, n * k, 0.05).map((v, i) => v + 0.02 * ((Math.floor(i / k) % 5) - 2));
        const wBytes = quantize('q4_k', wf32);
        const wf = dequantize('q4_k', wBytes, n * k);
        for (const m of [1, 3, 17, 64]) {
          const x = randomF32(rng, m * k), c0 = randomF32(rng, m * n);
          for (const accumulate of [false, true]) {
            checkCase({ x, wBytes, c0, m, n, k, type: 'q4_k', accumulate, strategy: 'auto' }, wf, stats);
            cases++;
          }
        }
      }
    }
    assert.equal(cases, 2 * 4 * 4 * 2);
    console.log(`# ${cases} Q4_K cases; worst error / bound: f32 ${stats.f32.toFixed(3)}, int8 vs int8 reference ${stats.int8Exact.toFixed(3)}, int8 vs exact ${stats.int8Approx.toFixed(3)}`);
  });

  test('matmulQuant int8 matches its float64 definition to ~1e-6 relative', () => {
    const rng = new Rng(12);
    for (const type of ALL_TYPES) {
      const [m, n, k] = [5, 40, 4096];
      const wBytes = quantize(type, randomF32(rng, n * k, 0.05));
      const x = randomF32(rng, m * k);
      const c: QuantCase = { x, wBytes, c0: new Float32Array(m * n), m, n, k, type, accumulate: false, strategy: 'int8' };
      const got = runQuant(backends.w1, c), want = runQuant(ref, c);
      let num = 0, den = 0;
      for (let o = 0; o < got.length; o++) {
        num = Math.max(num, Math.abs(got[o] - want[o]));
        den = Math.max(den, Math.abs(want[o]));
      }
      assert.ok(num / den < 2e-6, `${type}: int8 differs from its definition by ${(num / den).toExponential(2)} of the largest output`);
    }
  });

  test('blocks with d = 0, extreme scales and values, subnormal and negative scales', () => {
    const rng = new Rng(13);
    const k = 8 * 32, n = 21, m = 3;
    for (const type of TYPES) {
      const bb = QUANT_BLOCKS[type].bytes;
      const bytes = new Uint8Array(n * (k / 32) * bb);
      // Scales: 0, −0, ±65504 (f16 max), the smallest subnormal, the smallest normal, ordinary ones.
      const scales = [0, 0x8000, f32ToF16(65504), f32ToF16(-65504), 0x0001, 0x0400, f32ToF16(0.01), f32ToF16(-0.003)];
      for (let blk = 0; blk < n * (k / 32); blk++) {
        const o = blk * bb;
        const h = scales[(blk * 7 + (blk >> 3)) % scales.length];
        bytes[o] = h & 0xff;
        bytes[o + 1] = h >> 8;
        for (let e = 2; e < bb; e++) {
          // Extremes of the code range: int8 −128/−127/127 (Q8_0), nibbles 0/15 i.e. −8/+7 (Q4_0), and random.
          const pick = (blk + e) % 4;
          bytes[o + e] = pick === 0 ? 0x80 : pick === 1 ? 0x7f : pick === 2 ? (type === 'q8_0' ? 0x81 : 0xf0) : rng.nextU32() & 0xff;
        }
      }
      const wf = dequantize(type, bytes, n * k);
      // x: a zero block (d_x = 0), a block of one huge value among tiny ones, ordinary values. (The
      // int8 block scale max|x|/127 is an f16, as in llama.cpp: activations past 127·65504 ≈ 8.3e6
      // overflow it, so the huge values stay just below that.)
      const x = randomF32(rng, m * k);
      x.fill(0, 32, 64);
      for (let e = 64; e < 96; e++) x[e] = 1e-30;
      x[70] = -8e6;
      x[k + 100] = 3e6;
      const c: QuantCase = { x, wBytes: bytes, c0: randomF32(rng, m * n), m, n, k, type, accumulate: false, strategy: 'auto' };
      checkCase(c, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
      checkCase({ ...c, accumulate: true }, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
      // dequantizeRows on the same extreme table: bit-exact against gguf.ts.
      const ids = Int32Array.from({ length: n }, (_, i) => n - 1 - i);
      for (const be of [backends.w1, backends.w2, ref]) for (const how of UPLOADS) {
        const w = upload(be, bytes, how, type, n, k), out = be.alloc(n * k);
        be.dequantizeRows(w, ids, out, { k, type });
        const got = be.read(out);
        const want = new Float32Array(n * k);
        ids.forEach((id, i) => want.set(wf.subarray(id * k, id * k + k), i * k));
        bitsEqual(got, want, `${be.name} ${type} ${how} dequantizeRows of extreme blocks`);
        be.free(w);
        be.free(out);
      }
    }
  });

  test('Q4_K int8 rounds x exactly as llama.cpp\'s quantize_row_q8_K (ties, sign of the max, equal magnitudes)', () => {
    // W = the identity in Q4_K (d = 1, dmin = 0, row p: sub-block p/32 has sc = 1 and value p has q = 1),
    // so out[i, p] = fround(d_x·q_x[p]) exactly: the rounded activation itself.
    const k = 256, n = 256;
    const eye = new Uint8Array(n * 144);
    for (let p = 0; p < n; p++) {
      const o = p * 144;
      eye[o + 1] = 0x3c; // f16 1.0
      const sc = Array.from({ length: 8 }, (_, j) => (j === p >> 5 ? 1 : 0));
      packScalesAndMins(sc, new Array(8).fill(0), eye, o + 4);
      const l = p & 63;
      eye[o + 16 + 32 * (p >> 6) + (l & 31)] = l < 32 ? 0x01 : 0x10;
    }
    // llama.cpp's quantize_row_q8_K in f32 arithmetic, as written there: the signed value of largest
    // magnitude (the first one wins), iscale = −127/max, q = nearest_int(iscale·x) (adding 1.5·2²³ in f32
    // rounds to an integer, ties to even), d = 1/iscale; x̂ = d·q.
    const q8K = (x: Float32Array): Float32Array => {
      let max = 0, amax = 0;
      for (const v of x) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
      const out = new Float32Array(x.length);
      if (!amax) return out;
      const iscale = Math.fround(-127 / max), d = Math.fround(1 / iscale);
      x.forEach((v, j) => (out[j] = Math.fround(d * Math.min(127, Math.fround(Math.fround(iscale * v) + 12582912) - 12582912))));
      return out;
    };
    const rng = new Rng(17);
    const rows: Float32Array[] = [
      randomF32(rng, k),
      randomF32(rng, k, 0.37),
      Float32Array.from({ length: k }, (_, j) => (j === 9 ? 127 : ((rng.nextU32() % 509) - 254) / 2)), // iscale = 1: ties at .5
      Float32Array.from({ length: k }, (_, j) => (j === 200 ? -127 : ((rng.nextU32() % 509) - 254) / 2)), // max is negative
      Float32Array.from({ length: k }, (_, j) => (j === 3 ? -5 : j === 4 ? 5 : rng.normal())), // ±max, the negative first
      Float32Array.from({ length: k }, () => rng.normal() * 10 ** ((rng.nextU32() % 7) - 3)),
      Float32Array.from({ length: k }, (_, j) => (j % 7) * 3.3e-3), // max|x| not a power of two times 127
      ...Array.from({ length: 16 }, (_, i) => randomF32(rng, k, 0.01 * 3 ** i)),
    ];
    // The test must tell d = 1/iscale from the simpler max|x|/127 (they differ for about a quarter of maxima).
    const differs = rows.filter((r) => {
      const amax = Math.max(...r.map(Math.abs));
      return Math.fround(1 / Math.fround(127 / amax)) !== Math.fround(amax / 127);
    });
    assert.ok(differs.length >= 3, `only ${differs.length} rows tell 1/iscale from max/127`);
    const m = rows.length;
    const x = new Float32Array(m * k);
    rows.forEach((r, i) => x.set(r, i * k));
    const c: QuantCase = { x, wBytes: eye, c0: new Float32Array(m * n), m, n, k, type: 'q4_k', accumulate: false, strategy: 'int8' };
    for (const be of [backends.w1, backends.w2, ref]) {
      const got = runQuant(be, c);
      rows.forEach((r, i) => {
        const want = q8K(r);
        for (let p = 0; p < k; p++) {
          assert.ok(got[i * n + p] === want[p], `${be.name}: row ${i} value ${p} (${r[p]}) rounds to ${got[i * n + p]}, llama.cpp gives ${want[p]}`);
        }
      });
    }
  });

  test('Q4_K super-blocks with d = 0, dmin = 0, codes 63, subnormal and extreme scales; x blocks that are zero or tiny', () => {
    const rng = new Rng(16);
    const k = 4 * 256, n = 21, m = 3, sbs = n * (k / 256);
    const bytes = new Uint8Array(sbs * 144);
    // d and dmin: 0, −0, the smallest subnormal, the smallest normal, ±65504 (f16 max), ordinary ones.
    const scales = [0, 0x8000, 0x0001, 0x0400, f32ToF16(65504), f32ToF16(-65504), f32ToF16(0.01), f32ToF16(-0.003)];
    for (let sb = 0; sb < sbs; sb++) {
      const o = sb * 144;
      const d = scales[sb % scales.length], dmin = scales[(sb * 3 + 1 + (sb >> 3)) % scales.length];
      bytes[o] = d & 0xff;
      bytes[o + 1] = d >> 8;
      bytes[o + 2] = dmin & 0xff;
      bytes[o + 3] = dmin >> 8;
      // Codes: all 63, all 0, alternating extremes, random (every bit of the packed 12 bytes is used).
      const pick = sb % 4;
      const code = (j: number, t: number): number => (pick === 0 ? 63 : pick === 1 ? 0 : pick === 2 ? ((j + t) & 1 ? 63 : 0) : rng.nextU32() & 63);
      const sc = Array.from({ length: 8 }, (_, j) => code(j, 0)), mn = Array.from({ length: 8 }, (_, j) => code(j, 1));
      packScalesAndMins(sc, mn, bytes, o + 4);
      for (let e = 16; e < 144; e++) {
        // Nibbles 0 and 15 in both halves, mixed, and random.
        const p = (sb + e) % 4;
        bytes[o + e] = p === 0 ? 0xff : p === 1 ? 0x00 : p === 2 ? 0x0f : rng.nextU32() & 0xff;
      }
    }
    const wf = dequantize('q4_k', bytes, n * k);
    // x: a zero super-block (d_x = 0), one of values below 3.7e-37 (its Q8_K scale overflows: dropped),
    // one with a huge value among tiny ones, ordinary values.
    const x = randomF32(rng, m * k);
    x.fill(0, 256, 512);
    for (let e = 512; e < 768; e++) x[e] = 1e-38 * (e % 3 - 1);
    for (let e = k + 256; e < k + 512; e++) x[e] = 1e-30;
    x[k + 300] = -3e20;
    const c: QuantCase = { x, wBytes: bytes, c0: randomF32(rng, m * n), m, n, k, type: 'q4_k', accumulate: false, strategy: 'auto' };
    checkCase(c, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
    checkCase({ ...c, accumulate: true }, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
    // dequantizeRows on the same table: bit-exact against kquants.ts.
    const ids = Int32Array.from({ length: n }, (_, i) => n - 1 - i);
    for (const be of [backends.w1, backends.w2, ref]) {
      const w = be.uploadBytes(bytes), out = be.alloc(n * k);
      be.dequantizeRows(w, ids, out, { k, type: 'q4_k' });
      const want = new Float32Array(n * k);
      ids.forEach((id, i) => want.set(wf.subarray(id * k, id * k + k), i * k));
      bitsEqual(be.read(out), want, `${be.name} q4_k dequantizeRows of extreme super-blocks`);
      be.free(w);
      be.free(out);
    }
  });

  test('int8 strategy: a NaN in x gives NaN outputs for its row (not a silently zeroed block)', () => {
    for (const type of ALL_TYPES) {
      const [m, n, k] = [2, 3, QUANT_BLOCKS[type].values * 2];
      const x = new Float32Array(m * k).fill(0.5);
      x[5] = Number.NaN;
      const wBytes = quantize(type, new Float32Array(n * k).fill(0.25));
      for (const be of [backends.w1, ref]) {
        const r = runQuant(be, { x, wBytes, c0: new Float32Array(m * n), m, n, k, type, accumulate: false, strategy: 'int8' });
        assert.ok(r.subarray(0, n).every(Number.isNaN), `${be.name} ${type}: row 0 should be NaN, got ${r.subarray(0, n).join(', ')}`);
        assert.ok(r.subarray(n).every(Number.isFinite), `${be.name} ${type}: row 1 should be finite`);
      }
    }
  });

  test('dequantizeRows: exact against gguf.ts and kquants.ts, repeated and unordered ids, 1 vs 2 threads', () => {
    const rng = new Rng(14);
    for (const type of ALL_TYPES) {
      const shapes = type === 'q4_k' ? [[7, 256, 5], [50, 768, 33], [300, 512, 257]] : [[7, 32, 5], [50, 96, 33], [300, 512, 257]];
      for (const [rows, k, count] of shapes) {
        const bytes = quantize(type, randomF32(rng, rows * k, 0.1));
        const table = dequantize(type, bytes, rows * k);
        const ids = Int32Array.from({ length: count }, (_, i) => (i === 0 ? rows - 1 : rng.nextU32() % rows));
        const want = new Float32Array(count * k);
        ids.forEach((id, i) => want.set(table.subarray(id * k, id * k + k), i * k));
        for (const be of [ref, backends.w1, backends.w2]) for (const how of UPLOADS) {
          const w = upload(be, bytes, how, type, rows, k), out = be.alloc(count * k);
          be.dequantizeRows(w, ids, out, { k, type });
          bitsEqual(be.read(out), want, `${be.name} ${type} ${how} rows=${rows} k=${k} count=${count}`);
          be.free(w);
          be.free(out);
        }
      }
    }
  });

  test('clear errors: k not a multiple of 32, buffers too small, ids out of range, unknown type', () => {
    for (const be of [ref, backends.w1, backends.w2]) {
      const bufs: Buf[] = [];
      const alloc = (n: number): Buf => {
        const b = be.alloc(n);
        bufs.push(b);
        return b;
      };
      const [m, n, k] = [2, 3, 64];
      const w = be.uploadBytes(quantizeQ8_0(new Float32Array(n * k)));
      bufs.push(w);
      // out is large enough for the n = 4 and n = 6 cases below, so only w's size is wrong there.
      const x = alloc(m * k), out = alloc(m * n), bigOut = alloc(m * 6);
      const args = { m, n, k, type: 'q8_0' as const };
      assert.throws(() => be.matmulQuant(x, w, out, { ...args, k: 48 }), /k = 48 must be a positive multiple of 32/, be.name);
      assert.throws(() => be.matmulQuant(x, w, bigOut, { ...args, n: n + 1 }), /w holds \d+ bytes, a q8_0 matrix \[4, 64\] needs/, be.name);
      assert.throws(() => be.matmulQuant(alloc(m * k - 1), w, out, args), /x holds 127 elements/, be.name);
      assert.throws(() => be.matmulQuant(x, w, alloc(m * n - 1), args), /out holds 5 elements/, be.name);
      assert.throws(() => be.matmulQuant(x, w, out, { ...args, type: 'q5_0' as unknown as 'q8_0' }), /unknown quantized type 'q5_0'/, be.name);
      assert.throws(() => be.dequantizeRows(w, new Int32Array([0]), alloc(64), { k: 40, type: 'q8_0' }), /k = 40 must be a positive multiple of 32/, be.name);
      assert.throws(() => be.dequantizeRows(w, new Int32Array([0, 3]), alloc(128), { k, type: 'q8_0' }), /row id 3 at 1 is outside the table \[0, 3\)/, be.name);
      assert.throws(() => be.dequantizeRows(w, new Int32Array([-1]), alloc(64), { k, type: 'q8_0' }), /row id -1 at 0/, be.name);
      assert.throws(() => be.dequantizeRows(w, new Int32Array([0, 1]), alloc(127), { k, type: 'q8_0' }), /out holds 127 elements/, be.name);
      // A Q4_0 view of the same bytes is a bigger table ([n·34/18] rows): the size check follows the type.
      assert.throws(() => be.matmulQuant(x, w, bigOut, { ...args, type: 'q4_0', n: 6 }), /a q4_0 matrix \[6, 64\] needs 216/, be.name);
      // Q4_K: rows are whole 256-value super-blocks of 144 bytes.
      const wk = be.uploadBytes(new Uint8Array(2 * 144));
      bufs.push(wk);
      const xk = alloc(2 * 512), outk = alloc(2 * 2);
      assert.throws(() => be.matmulQuant(xk, wk, outk, { m: 2, n: 1, k: 96, type: 'q4_k' }), /k = 96 must be a positive multiple of 256 \(the q4_k super-block size\)/, be.name);
      assert.throws(() => be.matmulQuant(xk, wk, outk, { m: 2, n: 2, k: 384, type: 'q4_k' }), /k = 384 must be a positive multiple of 256/, be.name);
      assert.throws(() => be.matmulQuant(alloc(2 * 512 - 1), wk, outk, { m: 2, n: 1, k: 512, type: 'q4_k' }), /x holds 1023 elements/, be.name);
      assert.throws(() => be.matmulQuant(xk, wk, alloc(2), { m: 2, n: 2, k: 512, type: 'q4_k' }), /out holds 2 elements/, be.name);
      assert.throws(() => be.matmulQuant(xk, wk, outk, { m: 2, n: 2, k: 512, type: 'q4_k' }), /w holds 288 bytes, a q4_k matrix \[2, 512\] needs 576/, be.name);
      assert.throws(() => be.dequantizeRows(wk, new Int32Array([0]), alloc(256), { k: 32, type: 'q4_k' }), /k = 32 must be a positive multiple of 256/, be.name);
      assert.throws(() => be.dequantizeRows(wk, new Int32Array([2]), alloc(256), { k: 256, type: 'q4_k' }), /row id 2 at 0 is outside the table \[0, 2\)/, be.name);
      for (const b of bufs) be.free(b);
    }
  });

  test('uploadQuant: byte count checked against the shape; a repacked matrix refuses another type, k or more rows', () => {
    for (const be of [ref, backends.w1]) {
      const [rows, k] = [5, 64];
      const bytes = quantizeQ4_0(randomF32(new Rng(3), rows * k));
      assert.throws(() => be.uploadQuant(bytes.subarray(1), { type: 'q4_0', rows, k }), /uploadQuant: 179 bytes for a q4_0 matrix \[5, 64\] that takes 180/, be.name);
      assert.throws(() => be.uploadQuant(bytes, { type: 'q4_0', rows, k: 48 }), /k = 48 must be a positive multiple of 32/, be.name);
      assert.throws(() => be.uploadQuant(bytes, { type: 'q4_0', rows: -1, k }), /invalid row count -1/, be.name);
      assert.throws(() => be.uploadQuant(bytes, { type: 'q4_1' as unknown as 'q4_0', rows, k }), /unknown quantized type 'q4_1'/, be.name);
      const w = be.uploadQuant(bytes, { type: 'q4_0', rows, k });
      const x = be.alloc(2 * 128), out = be.alloc(2 * 64);
      // The reference keeps GGUF bytes (its checks are uploadBytes'); the repacked layout knows its shape.
      const tooMany = be === ref ? /w holds 180 bytes, a q4_0 matrix \[6, 64\] needs 216/ : /q4_0 matrix \[5, 64\] in this backend's repacked layout, used as q4_0 with 6 rows of 64/;
      assert.throws(() => be.matmulQuant(x, w, out, { m: 2, n: 6, k, type: 'q4_0' }), tooMany, be.name);
      if (be !== ref) {
        assert.throws(() => be.matmulQuant(x, w, out, { m: 2, n: 2, k, type: 'q8_0' }), /repacked layout, used as q8_0 with 2 rows of 64/);
        assert.throws(() => be.matmulQuant(x, w, out, { m: 1, n: 2, k: 128, type: 'q4_0' }), /repacked layout, used as q4_0 with 2 rows of 128/);
        assert.throws(() => be.dequantizeRows(w, new Int32Array([5]), out, { k, type: 'q4_0' }), /row id 5 at 0 is outside the table \[0, 5\)/);
        const w8 = be.uploadQuant(quantizeQ8_0(randomF32(new Rng(4), rows * k)), { type: 'q8_0', rows, k });
        assert.throws(() => be.matmulQuant(x, w8, out, { m: 2, n: 2, k, type: 'q4_0' }), /w is a q8_0 matrix \[5, 64\] in this backend's repacked layout, used as q4_0/);
        assert.throws(() => be.dequantizeRows(w8, new Int32Array([0]), out, { k, type: 'q4_k' }), /k = 64 must be a positive multiple of 256/);
        be.free(w8);
      }
      for (const b of [w, x, out]) be.free(b);
    }
  });

  test('uploadBytes: length in f32 slots, bytes kept exactly, freed like any buffer', () => {
    for (const be of [ref, backends.w1]) {
      const before = be.memoryBytes();
      for (const len of [0, 1, 18, 34, 35]) {
        const bytes = Uint8Array.from({ length: len }, (_, i) => (i * 37 + 11) & 0xff);
        const b = be.uploadBytes(bytes);
        assert.equal(b.length, Math.ceil(len / 4));
        const back = new Uint8Array(be.read(b).buffer).subarray(0, len);
        assert.deepEqual(back, bytes);
        be.free(b);
      }
      if (be === ref) assert.equal(be.memoryBytes(), before);
    }
  });
});
}
