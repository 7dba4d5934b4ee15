// Quantized matrix products (GGUF Q8_0 / Q4_0 weights) and row dequantization: the WebAssembly backend
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
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Backend, Buf, QuantStrategy, QuantType } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { f32ToF16 } from '../src/formats/f16.js';
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from '../src/formats/gguf.js';
import { Rng } from '../src/util/rng.js';

const U = 2 ** -24;
const TYPES: QuantType[] = ['q8_0', 'q4_0'];
const BLOCK_BYTES: Record<QuantType, number> = { q8_0: 34, q4_0: 18 };

const quantize = (type: QuantType, x: Float32Array): Uint8Array => (type === 'q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x));
const dequantize = (type: QuantType, b: Uint8Array, n: number): Float32Array => (type === 'q8_0' ? dequantizeQ8_0(b, n) : dequantizeQ4_0(b, n));

function random(rng: Rng, n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * scale;
  return x;
}

/** Per-output bound ingredients: A = Σ|x·w|, B = Σ|w|·d_x (d_x the int8 scale of x's block), |c0|. */
function boundTerms(x: Float32Array, wf: Float32Array, m: number, n: number, k: number): { A: Float64Array; B: Float64Array } {
  const A = new Float64Array(m * n), B = new Float64Array(m * n);
  const dx = new Float64Array(k / 32);
  for (let i = 0; i < m; i++) {
    for (let b = 0; b < k / 32; b++) {
      let amax = 0;
      for (let e = 0; e < 32; e++) amax = Math.max(amax, Math.abs(x[i * k + b * 32 + e]));
      dx[b] = Math.fround(amax / 127);
    }
    for (let j = 0; j < n; j++) {
      let a = 0, s = 0;
      for (let p = 0; p < k; p++) {
        const w = Math.abs(wf[j * k + p]);
        a += Math.abs(x[i * k + p]) * w;
        s += w * dx[p >> 5];
      }
      A[i * n + j] = a;
      B[i * n + j] = s;
    }
  }
  return { A, B };
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

/** Runs one matmulQuant on a backend with fresh buffers (out prefilled with c0 when accumulating, else NaN). */
function runQuant(be: Backend, c: QuantCase, strategy: QuantStrategy = c.strategy): Float32Array {
  const x = be.alloc(c.x.length), out = be.alloc(c.m * c.n);
  be.write(x, c.x);
  const w = be.uploadBytes(c.wBytes);
  if (c.accumulate) be.write(out, c.c0);
  else be.fill(out, Number.NaN);
  be.matmulQuant(x, w, out, { m: c.m, n: c.n, k: c.k, type: c.type, accumulate: c.accumulate, strategy });
  const r = be.read(out);
  for (const b of [x, w, out]) be.free(b);
  return r;
}

describe('quantized matmul and dequantizeRows: wasm equals the reference', () => {
  const ref = new ReferenceBackend();
  let w1: Backend, w2: Backend;
  before(async () => {
    w1 = await createWasmBackend({ threads: 1 });
    w2 = await createWasmBackend({ threads: 2 });
  });
  after(() => {
    w1.dispose();
    w2.dispose();
  });

  /** Every strategy of one case against the reference (bounds above), and 2 threads against 1. */
  function checkCase(c: QuantCase, wf: Float32Array, stats: { int8Exact: number; int8Approx: number; f32: number }): void {
    const { m, n, k } = c;
    const label = `${c.type} ${m}x${n}x${k} acc=${c.accumulate}`;
    const { A, B } = boundTerms(c.x, wf, m, n, k);
    const c0 = (o: number): number => (c.accumulate ? Math.abs(c.c0[o]) : 0);
    const exact = runQuant(ref, c, 'f32');
    const int8Ref = runQuant(ref, c, 'int8');
    const f32Bound = (o: number): number => (k + 8) * U * (A[o] + c0(o));
    const int8Bound = (o: number): number => (k / 32 + 8) * U * (A[o] + B[o] + c0(o));
    const int8ExactBound = (o: number): number => B[o] * (0.5 + 1 / 16) + int8Bound(o);
    for (const strategy of ['f32', 'int8', 'auto'] as const) {
      const a = runQuant(w1, c, strategy), b = runQuant(w2, c, strategy);
      bitsEqual(b, a, `${label} ${strategy}: 2 threads differ from 1 thread`);
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
      for (const k of [32, 96, 512]) {
        for (const n of [1, 5, 33, 257]) {
          const wf32 = random(rng, n * k, 0.05);
          const wBytes = quantize(type, wf32);
          const wf = dequantize(type, wBytes, n * k);
          for (const m of [1, 3, 17, 64]) {
            const x = random(rng, m * k), c0 = random(rng, m * n);
            for (const accumulate of [false, true]) {
              checkCase({ x, wBytes, c0, m, n, k, type, accumulate, strategy: 'auto' }, wf, stats);
              cases++;
            }
          }
        }
      }
    }
    assert.equal(cases, 2 * 3 * 4 * 4 * 2);
    // The worst error as a fraction of its bound, for the record (each is asserted ≤ 1 above).
    console.log(`# ${cases} cases; worst error / bound: f32 ${stats.f32.toFixed(3)}, int8 vs int8 reference ${stats.int8Exact.toFixed(3)}, int8 vs exact ${stats.int8Approx.toFixed(3)}`);
  });

  test('matmulQuant int8 matches its float64 definition to ~1e-6 relative', () => {
    const rng = new Rng(12);
    for (const type of TYPES) {
      const [m, n, k] = [5, 40, 4096];
      const wBytes = quantize(type, random(rng, n * k, 0.05));
      const x = random(rng, m * k);
      const c: QuantCase = { x, wBytes, c0: new Float32Array(m * n), m, n, k, type, accumulate: false, strategy: 'int8' };
      const got = runQuant(w1, c), want = runQuant(ref, c);
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
      const bb = BLOCK_BYTES[type];
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
      const x = random(rng, m * k);
      x.fill(0, 32, 64);
      for (let e = 64; e < 96; e++) x[e] = 1e-30;
      x[70] = -8e6;
      x[k + 100] = 3e6;
      const c: QuantCase = { x, wBytes: bytes, c0: random(rng, m * n), m, n, k, type, accumulate: false, strategy: 'auto' };
      checkCase(c, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
      checkCase({ ...c, accumulate: true }, wf, { int8Exact: 0, int8Approx: 0, f32: 0 });
      // dequantizeRows on the same extreme table: bit-exact against gguf.ts.
      const ids = Int32Array.from({ length: n }, (_, i) => n - 1 - i);
      for (const be of [w1, w2, ref]) {
        const w = be.uploadBytes(bytes), out = be.alloc(n * k);
        be.dequantizeRows(w, ids, out, { k, type });
        const got = be.read(out);
        const want = new Float32Array(n * k);
        ids.forEach((id, i) => want.set(wf.subarray(id * k, id * k + k), i * k));
        bitsEqual(got, want, `${be.name} ${type} dequantizeRows of extreme blocks`);
        be.free(w);
        be.free(out);
      }
    }
  });

  test('int8 strategy: a NaN in x gives NaN outputs for its row (not a silently zeroed block)', () => {
    for (const type of TYPES) {
      const [m, n, k] = [2, 3, 64];
      const x = new Float32Array(m * k).fill(0.5);
      x[5] = Number.NaN;
      const wBytes = quantize(type, new Float32Array(n * k).fill(0.25));
      for (const be of [w1, ref]) {
        const r = runQuant(be, { x, wBytes, c0: new Float32Array(m * n), m, n, k, type, accumulate: false, strategy: 'int8' });
        assert.ok(r.subarray(0, n).every(Number.isNaN), `${be.name} ${type}: row 0 should be NaN, got ${r.subarray(0, n).join(', ')}`);
        assert.ok(r.subarray(n).every(Number.isFinite), `${be.name} ${type}: row 1 should be finite`);
      }
    }
  });

  test('dequantizeRows: exact against gguf.ts, repeated and unordered ids, 1 vs 2 threads', () => {
    const rng = new Rng(14);
    for (const type of TYPES) {
      for (const [rows, k, count] of [[7, 32, 5], [50, 96, 33], [300, 512, 257]]) {
        const bytes = quantize(type, random(rng, rows * k, 0.1));
        const table = dequantize(type, bytes, rows * k);
        const ids = Int32Array.from({ length: count }, (_, i) => (i === 0 ? rows - 1 : rng.nextU32() % rows));
        const want = new Float32Array(count * k);
        ids.forEach((id, i) => want.set(table.subarray(id * k, id * k + k), i * k));
        for (const be of [ref, w1, w2]) {
          const w = be.uploadBytes(bytes), out = be.alloc(count * k);
          be.dequantizeRows(w, ids, out, { k, type });
          bitsEqual(be.read(out), want, `${be.name} ${type} rows=${rows} k=${k} count=${count}`);
          be.free(w);
          be.free(out);
        }
      }
    }
  });

  test('clear errors: k not a multiple of 32, buffers too small, ids out of range, unknown type', () => {
    for (const be of [ref, w1, w2]) {
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
      for (const b of bufs) be.free(b);
    }
  });

  test('uploadBytes: length in f32 slots, bytes kept exactly, freed like any buffer', () => {
    for (const be of [ref, w1]) {
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
