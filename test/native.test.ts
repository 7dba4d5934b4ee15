// The native kernels (native/stlm_native.c): the f32 decode product against the reference backend and
// the pure WebAssembly one, a row's result independent of how many rows and threads share the call
// (decode and prefill must agree), what STLM_NATIVE=0 and `native: false` do, and clear errors for bad
// calls straight into the addon. The quantized products are checked with derived error bounds in
// quant-kernels.test.ts, with and without the native kernels.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { Backend, Buf } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend, type WasmBackend } from '../src/kernels/wasm/backend.js';
import { loadNative } from '../src/kernels/wasm/native.js';
import { quantizeQ4_0, quantizeQ8_0 } from '../src/formats/gguf.js';
import { Rng } from '../src/util/rng.js';
import { countNativeCalls, randomF32, withNativeBackends } from './helpers.js';

const native = await loadNative();
const SKIP = native
  ? false
  : 'the native kernels are not built here (they need Node on x86-64 with AVX2 and a C compiler at install time; STLM_NATIVE=0 also turns them off)';

/** Each output within 1e-5 of the reference's, relative to the reference's largest value, and finite. */
function assertNearReference(got: Float32Array[], want: Float32Array[], names: string[], label: string): void {
  names.slice(0, got.length).forEach((name, i) => {
    let err = 0, mag = 1e-30;
    for (let j = 0; j < want[i].length; j++) {
      err = Math.max(err, Math.abs(got[i][j] - want[i][j]));
      mag = Math.max(mag, Math.abs(want[i][j]));
    }
    assert.ok(got[i].every(Number.isFinite) && err <= 1e-5 * mag, `${label}: ${name} differs from the reference by ${err} (largest value ${mag})`);
  });
}

function run(be: Backend, f: (x: Buf, w: Buf, out: Buf) => void,
             x: Float32Array, w: Float32Array | Uint8Array, outLength: number, c0?: Float32Array): Float32Array {
  const xb = be.alloc(x.length), out = be.alloc(outLength);
  be.write(xb, x);
  const wb = w instanceof Uint8Array ? be.uploadBytes(w) : be.alloc(w.length);
  if (!(w instanceof Uint8Array)) be.write(wb, w);
  if (c0) be.write(out, c0);
  else be.fill(out, Number.NaN);
  f(xb, wb, out);
  const r = be.read(out);
  for (const b of [xb, wb, out]) be.free(b);
  return r;
}

describe('native kernels', { skip: SKIP }, () => {
  const ref = new ReferenceBackend();
  let n1: WasmBackend, n2: WasmBackend, wasm: WasmBackend;
  before(async () => {
    n1 = await createWasmBackend({ threads: 1 });
    n2 = await createWasmBackend({ threads: 2 });
    wasm = await createWasmBackend({ threads: 1, native: false });
  });
  after(() => {
    for (const be of [n1, n2, wasm]) be.dispose();
  });

  test('the backend reports them, and native: false leaves them out', () => {
    assert.match(n1.native ?? '', /^(avx2|avx512vnni)$/);
    assert.equal(wasm.native, null);
  });

  test('f32 x · Wᵀ for m ≤ 32 (the matvec at m = 1, the tiled rows above; m·n·k ≥ 16384): within f32 rounding of the float64 reference, 2 threads bit-equal to 1', () => {
    const rng = new Rng(7);
    // Sizes above the backend's threshold for the native f32 product (m·n·k ≥ 16384); n mod 4 = 1, 0, 1
    // (W's last rows outside a tile of four), m = 2..5, 8, 32 (x's rows in tiles of 3, then 2 or 1).
    for (const k of [264, 520, 2048]) {
      for (const n of [257, 260, 513]) {
        for (const m of [1, 2, 3, 4, 5, 8, 32]) {
          const x = randomF32(rng, m * k), w = randomF32(rng, n * k), c0 = randomF32(rng, m * n);
          for (const accumulate of [false, true]) {
            const args = { m, k, n, transB: true, accumulate };
            const mm = (be: Backend) => run(be, (xb, wb, out) => be.matmul(xb, wb, out, args), x, w, m * n, accumulate ? c0 : undefined);
            const want = mm(ref), got = mm(n1);
            // Each output sums k products and c0 in f32: |err| ≤ (k + 2)·2⁻²⁴·(Σ|x·w| + |c0|).
            for (let i = 0; i < m; i++) {
              for (let j = 0; j < n; j++) {
                let mag = accumulate ? Math.abs(c0[i * n + j]) : 0;
                for (let p = 0; p < k; p++) mag += Math.abs(x[i * k + p] * w[j * k + p]);
                const o = i * n + j, bound = (k + 2) * 2 ** -24 * mag;
                assert.ok(Math.abs(got[o] - want[o]) <= bound, `m ${m} n ${n} k ${k} acc ${accumulate}: out[${i}, ${j}] = ${got[o]}, reference ${want[o]} ± ${bound}`);
              }
            }
            assert.deepEqual(mm(n2), got, `m ${m} n ${n} k ${k}: 2 threads differ from 1`);
          }
        }
      }
    }
  });

  test('a row of the result does not depend on the other rows: decode (m = 1) equals prefill (m = 9) bit for bit', () => {
    const rng = new Rng(8);
    const k = 512, n = 130, m = 9; // n·k over both native thresholds
    const x = randomF32(rng, m * k), wf = randomF32(rng, n * k, 0.05);
    const weights: [string, (be: Backend, xb: Buf, wb: Buf, out: Buf, rows: number) => void, Float32Array | Uint8Array][] = [
      ['f32', (be, xb, wb, out, rows) => be.matmul(xb, wb, out, { m: rows, k, n, transB: true }), wf],
      ['q8_0', (be, xb, wb, out, rows) => be.matmulQuant(xb, wb, out, { m: rows, n, k, type: 'q8_0' }), quantizeQ8_0(wf)],
      ['q4_0', (be, xb, wb, out, rows) => be.matmulQuant(xb, wb, out, { m: rows, n, k, type: 'q4_0' }), quantizeQ4_0(wf)],
    ];
    for (const [label, f, w] of weights) {
      if (label === 'f32') continue; // f32 at m = 1 is the matvec, whose summation order differs from the rows' (next test)
      // Q8_0 takes rows of x in pairs (2, 8: pairs only; 3, 9: a last row alone), n mod 4 = 2 columns alone.
      for (const rows of label === 'q8_0' ? [2, 3, 8, m] : [m]) {
        for (const be of [n1, n2]) {
          const all = run(be, (xb, wb, out) => f(be, xb, wb, out, rows), x.subarray(0, rows * k), w, rows * n);
          for (let i = 0; i < rows; i++) {
            const one = run(n1, (xb, wb, out) => f(n1, xb, wb, out, 1), x.subarray(i * k, (i + 1) * k), w, n);
            assert.deepEqual(one, all.subarray(i * n, (i + 1) * n), `${label}: row ${i} alone differs from row ${i} among ${rows} (${be.threads} threads)`);
          }
        }
      }
    }
    // f32 rows (2 ≤ m ≤ 32, the tiled product): a row among 3, 4, 7, 8 or 9 (tiles of 3 rows, then a last
    // 2 or 1) equals the same row first of a pair (a 2×4 tile): the same summation order in every tile.
    const [, f, w] = weights[0];
    for (const rows of [3, 4, 7, 8, m]) {
      const all = run(n1, (xb, wb, out) => f(n1, xb, wb, out, rows), x.subarray(0, rows * k), w, rows * n);
      for (let i = 0; i < rows; i++) {
        const pair = new Float32Array(2 * k);
        pair.set(x.subarray(i * k, (i + 1) * k));
        pair.set(x.subarray(((i + 1) % rows) * k, (((i + 1) % rows) + 1) * k), k);
        const two = run(n1, (xb, wb, out) => f(n1, xb, wb, out, 2), pair, w, 2 * n);
        assert.deepEqual(two.subarray(0, n), all.subarray(i * n, (i + 1) * n), `f32: row ${i} among ${rows} differs from it in a pair`);
      }
    }
  });

  test('f32 GEMM (m ≥ 5; x·Wᵀ up to 32 rows by the rows product): every transpose form, edge tiles, several depth and column blocks, batch with strides and broadcast, accumulate — within f32 rounding of the float64 reference, 2 threads bit-equal to 1', async () => {
    const { calls, restore } = countNativeCalls(native, ['gemmF32', 'matvecF32']);
    const c1 = await createWasmBackend({ threads: 1 });
    const rng = new Rng(10);
    // (batch, m, k, n, strides), each m·k·n above the backend's threshold for the native GEMM: m not a multiple of 6 (the tile rows), n not of 16, k not of 8 and above
    // 256 (several depth blocks), n above 3072 (two column blocks), m above 120 (several row blocks).
    const cases: [number, number, number, number, { strideA?: number; strideB?: number; strideC?: number }][] = [
      [1, 5, 64, 400, {}], [1, 6, 16, 1200, {}], [1, 37, 300, 51, {}], [1, 131, 513, 45, {}], [1, 7, 20, 3100, {}],
      [1, 250, 64, 33, {}], [3, 13, 70, 140, {}], [4, 9, 65, 200, { strideB: 0 }], [2, 10, 70, 150, { strideA: 10 * 70 + 5, strideC: 10 * 150 + 3 }],
      [5, 8, 48, 300, { strideC: 0 }],
    ];
    try {
      for (const [batch, m, k, n, s] of cases) {
        const sa = s.strideA ?? m * k, sb = s.strideB ?? k * n, sc = s.strideC ?? m * n;
        const lenA = (batch - 1) * sa + m * k, lenB = (batch - 1) * sb + k * n, lenC = (batch - 1) * sc + m * n;
        const A = randomF32(rng, lenA), B = randomF32(rng, lenB), C0 = randomF32(rng, lenC);
        for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
          // C shared by every batch item (strideC 0) only makes sense accumulating: the items sum into it.
          for (const accumulate of s.strideC === 0 ? [true] : [false, true]) {
            const args = { m, k, n, transA, transB, accumulate, batch, ...s };
            const label = `batch ${batch} ${m}x${k}x${n} tA=${transA} tB=${transB} acc=${accumulate} ${JSON.stringify(s)}`;
            const mm = (be: Backend) => {
              const a = be.alloc(lenA), b = be.alloc(lenB), c = be.alloc(lenC);
              be.write(a, A);
              be.write(b, B);
              be.write(c, C0);
              be.matmul(a, b, c, args);
              const r = be.read(c);
              for (const x of [a, b, c]) be.free(x);
              return r;
            };
            const before = calls.gemmF32, rowsBefore = calls.matvecF32;
            const want = mm(ref), got = mm(c1);
            // x·Wᵀ of at most 32 rows (k a multiple of 8) is the rows product's (batched decode); the rest the GEMM's.
            const rowsForm = batch === 1 && !transA && transB && m <= 32 && k % 8 === 0;
            assert.equal(calls.gemmF32, before + (rowsForm ? 0 : 1), `${label}: the native GEMM did not take the product`);
            assert.equal(calls.matvecF32, rowsBefore + (rowsForm ? 1 : 0), `${label}: the native rows product did not take the product`);
            // |err| ≤ (k·items + 2)·2⁻²⁴·(Σ|a·b| + |c0|) per element of C, with Σ over the items summed into it.
            const mag = Float64Array.from(C0, (v) => (accumulate ? Math.abs(v) : 0));
            const terms = new Float64Array(lenC);
            for (let t = 0; t < batch; t++) {
              for (let i = 0; i < m; i++) {
                for (let j = 0; j < n; j++) {
                  let sum = 0;
                  for (let p = 0; p < k; p++) {
                    const av = A[t * sa + (transA ? p * m + i : i * k + p)], bv = B[t * sb + (transB ? j * k + p : p * n + j)];
                    sum += Math.abs(av * bv);
                  }
                  mag[t * sc + i * n + j] += sum;
                  terms[t * sc + i * n + j] += k;
                }
              }
            }
            for (let o = 0; o < lenC; o++) {
              const bound = (terms[o] + 2) * 2 ** -24 * mag[o];
              assert.ok(Math.abs(got[o] - want[o]) <= bound, `${label}: c[${o}] = ${got[o]}, reference ${want[o]} ± ${bound}`);
            }
            assert.deepEqual(mm(n2), got, `${label}: 2 threads differ from 1`);
          }
        }
      }
    } finally {
      restore();
      c1.dispose();
    }
  });

  test('Q4_0 repacked four rows at a time (uploadQuant) gives the GGUF-layout product bit for bit: decode, prefill (int8 and, from 64 rows, dequantized), every n mod 4, 2 threads', () => {
    // Both kernels take the same dots, lanes and reduction per row; only where the bytes lie differs.
    const rng = new Rng(9);
    const k = 512;
    for (const n of [128, 129, 130, 131, 261]) {
      const wBytes = quantizeQ4_0(randomF32(rng, n * k, 0.05));
      for (const m of [1, 3, 9, 64]) {
        const x = randomF32(rng, m * k), c0 = randomF32(rng, m * n);
        for (const accumulate of [false, true]) {
          const results = [n1, n2].flatMap((be) => [false, true].map((repacked) => {
            const xb = be.alloc(m * k), out = be.alloc(m * n);
            be.write(xb, x);
            be.write(out, c0);
            const wb = repacked ? be.uploadQuant(wBytes, { type: 'q4_0', rows: n, k }) : be.uploadBytes(wBytes);
            be.matmulQuant(xb, wb, out, { m, n, k, type: 'q4_0', accumulate });
            const r = be.read(out);
            for (const b of [xb, wb, out]) be.free(b);
            return r;
          }));
          for (let i = 1; i < results.length; i++) assert.deepEqual(results[i], results[0], `n ${n} m ${m} acc ${accumulate}: result ${i} (threads ${i < 2 ? 1 : 2}, ${i % 2 ? 'repacked' : 'GGUF'}) differs`);
        }
      }
    }
  });

  test('decode attention (one query per head over a cache, GQA): within 1e-5 of the reference, 2 threads bit-equal to 1', () => {
    const rng = new Rng(9);
    // Each at or above the native threshold (heads · keys · head size ≥ 1024).
    const cases: [number, number, number, number, number][] = [
      // heads, kvHeads, headDim, cache positions (tk), keys seen (qPos0 + 1)
      [4, 4, 32, 16, 9], [8, 8, 64, 64, 33], [8, 8, 64, 300, 257], [12, 4, 128, 40, 17], [16, 16, 1024, 4, 1], [4, 2, 40, 200, 199], [6, 3, 264, 64, 64],
    ];
    for (const [heads, kvHeads, D, tk, n] of cases) {
      const q = randomF32(rng, heads * D, 2), k = randomF32(rng, tk * kvHeads * D), v = randomF32(rng, tk * kvHeads * D);
      const args = { batch: 1, tq: 1, tk, heads, kvHeads, headDim: D, qPos0: n - 1, scale: 1 / Math.sqrt(D) };
      const attn = (be: Backend) => {
        const bufs = [q, k, v].map((a) => {
          const b = be.alloc(a.length);
          be.write(b, a);
          return b;
        });
        const out = be.alloc(heads * D), lse = be.alloc(heads);
        be.attention(bufs[0], bufs[1], bufs[2], out, lse, args);
        const r = [be.read(out), be.read(lse)];
        for (const b of [...bufs, out, lse]) be.free(b);
        return r;
      };
      const [wo, wl] = attn(ref), [go, gl] = attn(n1);
      const label = `heads ${heads}/${kvHeads} D ${D} keys ${n}`;
      for (let i = 0; i < wo.length; i++) assert.ok(Math.abs(go[i] - wo[i]) <= 1e-5 * (1 + Math.abs(wo[i])), `${label}: out[${i}] = ${go[i]}, reference ${wo[i]}`);
      for (let h = 0; h < heads; h++) assert.ok(Math.abs(gl[h] - wl[h]) <= 1e-5 * (1 + Math.abs(wl[h])), `${label}: lse[${h}] = ${gl[h]}, reference ${wl[h]}`);
      const [to, tl] = attn(n2);
      assert.deepEqual(to, go, `${label}: 2 threads differ from 1 (out)`);
      assert.deepEqual(tl, gl, `${label}: 2 threads differ from 1 (lse)`);
    }
  });

  test('batched decode attention (attentionRows, new keys and values written in the call): within 1e-5 of the reference at n = 1 … 200, each row bit for bit what attention gives it alone, 2 threads bit-equal to 1', async () => {
    const rng = new Rng(12);
    // heads, kvHeads, headDim, keys seen by each row (n = position + 1): n = 1, not a multiple of 4 or 8, and the sizes of the benchmark.
    const cases: [number, number, number, number[]][] = [
      [32, 8, 32, [1, 2, 3, 9]], [4, 4, 32, [17, 49, 81, 200, 13, 8]], [8, 2, 64, [81, 5, 250]], [6, 3, 40, [30, 7]], [4, 4, 256, [1, 31]],
    ];
    await withNativeBackends(native, ['attentionDecodeRows'], async (t1, t2, calls) => {
      for (const [heads, kvHeads, D, ns] of cases) {
        const rows = ns.length, capacity = 256, kvDim = kvHeads * D, qLen = heads * D, positions = Int32Array.from(ns, (n) => n - 1);
        const q = randomF32(rng, rows * qLen, 2), newK = randomF32(rng, rows * kvDim), newV = randomF32(rng, rows * kvDim);
        const ks = ns.map(() => randomF32(rng, capacity * kvDim)), vs = ns.map(() => randomF32(rng, capacity * kvDim));
        const up = (be: Backend, a: Float32Array) => {
          const b = be.alloc(a.length);
          be.write(b, a);
          return b;
        };
        const batched = (be: Backend) => {
          const K = ks.map((k) => up(be, k)), V = vs.map((v) => up(be, v)), out = be.alloc(rows * qLen), lse = be.alloc(rows * heads);
          const bufs = [up(be, q), up(be, newK), up(be, newV)];
          be.attentionRows(bufs[0], K, V, out, lse, { heads, kvHeads, headDim: D, scale: 1 / Math.sqrt(D), positions, newKv: { k: bufs[1], v: bufs[2] } });
          const r = { out: be.read(out), lse: be.read(lse), k: K.map((b) => be.read(b)), v: V.map((b) => be.read(b)) };
          for (const b of [...K, ...V, ...bufs, out, lse]) be.free(b);
          return r;
        };
        const label = `heads ${heads}/${kvHeads} D ${D} keys ${ns.join(',')}`;
        const before = calls.attentionDecodeRows;
        const want = batched(ref), got = batched(t1), got2 = batched(t2);
        assert.ok(calls.attentionDecodeRows > before, `${label}: the native attentionDecodeRows did not run`);
        assertNearReference([got.out, got.lse], [want.out, want.lse], ['out', 'lse'], label);
        assert.deepEqual(got2.out, got.out, `${label}: 2 threads differ from 1 (out)`);
        assert.deepEqual(got2.lse, got.lse, `${label}: 2 threads differ from 1 (lse)`);
        ns.forEach((n, r) => {
          for (const [name, caches, rowsNew] of [['keys', got2.k, newK], ['values', got2.v, newV]] as const) {
            assert.deepEqual(caches[r].subarray((n - 1) * kvDim, n * kvDim), rowsNew.subarray(r * kvDim, (r + 1) * kvDim), `${label} row ${r}: new ${name} not at position ${n - 1}`);
          }
          // The row alone: attention() over its cache with the new key and value written first.
          const k = ks[r].slice(), v = vs[r].slice();
          k.set(newK.subarray(r * kvDim, (r + 1) * kvDim), (n - 1) * kvDim);
          v.set(newV.subarray(r * kvDim, (r + 1) * kvDim), (n - 1) * kvDim);
          const bufs = [up(t1, q.slice(r * qLen, (r + 1) * qLen)), up(t1, k), up(t1, v)], out = t1.alloc(qLen), lse = t1.alloc(heads);
          t1.attention(bufs[0], bufs[1], bufs[2], out, lse, { batch: 1, tq: 1, tk: capacity, heads, kvHeads, headDim: D, qPos0: n - 1, scale: 1 / Math.sqrt(D) });
          assert.deepEqual(got.out.subarray(r * qLen, (r + 1) * qLen), t1.read(out), `${label} row ${r}: out differs from attention alone`);
          assert.deepEqual(got.lse.subarray(r * heads, (r + 1) * heads), t1.read(lse), `${label} row ${r}: lse differs from attention alone`);
          for (const b of [...bufs, out, lse]) t1.free(b);
        });
      }
    });
  });

  test('training attention (many query rows, causal, GQA; forward and backward): within 1e-5 of the reference relative to the largest value, 2 threads bit-equal to 1', async () => {
    const rng = new Rng(11);
    // batch, tq, tk, heads, kvHeads, headDim, qPos0, kvBatchStride (backward only where it is 0 or K/V are dense).
    const cases: [number, number, number, number, number, number, number, number?][] = [
      [2, 70, 70, 6, 2, 48, 0], // GQA groups of 3, several backward row blocks, head size of 16-column chunks only
      [1, 41, 41, 4, 2, 80, 0],
      [2, 33, 33, 4, 4, 8, 0], // an 8-column chunk only
      [2, 37, 37, 3, 3, 24, 0], // 16 + 8 columns
      [1, 257, 257, 2, 2, 32, 0], // keys not a multiple of 16, many row blocks
      [3, 100, 100, 2, 1, 64, 0], // every query head on one kv head
      [1, 5, 5, 8, 8, 128, 0], // fewer rows than a block
      [2, 9, 20, 4, 2, 24, 11], // a prompt chunk after 11 cached positions (forward and backward)
      [2, 16, 40, 4, 2, 32, 24, 64 * 2 * 32], // a cache buffer longer than tk (forward only)
    ];
    await withNativeBackends(native, ['attentionTrain', 'attentionTrainBackward'], async (t1, t2, calls) => {
      for (const [batch, tq, tk, heads, kvHeads, D, qPos0, kvBatchStride] of cases) {
        const args = { batch, tq, tk, heads, kvHeads, headDim: D, qPos0, scale: 1 / Math.sqrt(D), ...(kvBatchStride ? { kvBatchStride } : {}) };
        const qn = batch * tq * heads * D, kn = batch * (kvBatchStride ?? tk * kvHeads * D), ln = batch * tq * heads;
        const inputs = [randomF32(rng, qn), randomF32(rng, kn), randomF32(rng, kn), randomF32(rng, qn)];
        const backward = !kvBatchStride;
        const attn = (be: Backend) => {
          const [q, k, v, dout] = inputs.map((a) => {
            const b = be.alloc(a.length);
            be.write(b, a);
            return b;
          });
          const outs = [qn, ln, qn, kn, kn].map((n) => {
            const b = be.alloc(n);
            be.fill(b, Number.NaN);
            return b;
          });
          const [out, lse, dq, dk, dv] = outs;
          be.attention(q, k, v, out, lse, args);
          if (backward) be.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, args);
          const r = (backward ? outs : outs.slice(0, 2)).map((b) => be.read(b));
          for (const b of [q, k, v, dout, ...outs]) be.free(b);
          return r;
        };
        const label = `batch ${batch} tq ${tq} tk ${tk} heads ${heads}/${kvHeads} D ${D} qPos0 ${qPos0}`;
        const before = { ...calls };
        const want = attn(ref), got = attn(t1);
        assert.equal(calls.attentionTrain, before.attentionTrain + 1, `${label}: the native forward did not run`);
        assert.equal(calls.attentionTrainBackward, before.attentionTrainBackward + (backward ? 1 : 0), `${label}: the native backward did not run`);
        assertNearReference(got, want, ['out', 'lse', 'dq', 'dk', 'dv'], label);
        const two = attn(t2);
        two.forEach((r, i) => assert.deepEqual(r, got[i], `${label}: output ${i} with 2 threads differs from 1`));
      }
    });
  });

  test('SwiGLU forward and backward: within 1e-5 of the reference relative to the largest value, 2 threads bit-equal to 1', async () => {
    const rng = new Rng(12);
    await withNativeBackends(native, ['swiglu', 'swigluBackward'], async (t1, t2, calls) => {
      for (const n of [256, 389, 4096, 4099, 70_001]) { // from the backend's threshold (256); tails of 5, 3 and 1 past whole vectors
        const g = randomF32(rng, n, 3), u = randomF32(rng, n), d = randomF32(rng, n);
        const run = (be: Backend) => {
          const [G, U, D] = [g, u, d].map((a) => {
            const b = be.alloc(a.length);
            be.write(b, a);
            return b;
          });
          const outs = [0, 1, 2].map(() => {
            const b = be.alloc(n);
            be.fill(b, Number.NaN);
            return b;
          });
          be.swiglu(G, U, outs[0], n);
          be.swigluBackward(G, U, D, outs[1], outs[2], n);
          const r = outs.map((b) => be.read(b));
          for (const b of [G, U, D, ...outs]) be.free(b);
          return r;
        };
        const before = { ...calls };
        const want = run(ref), got = run(t1);
        assert.deepEqual([calls.swiglu, calls.swigluBackward], [before.swiglu + 1, before.swigluBackward + 1], `n ${n}: the native kernels did not run`);
        assertNearReference(got, want, ['out', 'dgate', 'dup'], `n ${n}`);
        run(t2).forEach((r, i) => assert.deepEqual(r, got[i], `n ${n}: output ${i} with 2 threads differs from 1`));
      }
    });
  });

  test('AdamW: three steps within 1e-5 of the reference relative to the largest value, 2 threads bit-equal to 1', async () => {
    const rng = new Rng(13);
    await withNativeBackends(native, ['adamw'], async (t1, t2, calls) => {
      for (const n of [4096, 4101, 50_001]) {
        const inputs = [randomF32(rng, n), randomF32(rng, n), randomF32(rng, n, 0.1), randomF32(rng, n).map(Math.abs)];
        const run = (be: Backend) => {
          const [P, G, M, V] = inputs.map((a) => {
            const b = be.alloc(a.length);
            be.write(b, a);
            return b;
          });
          for (let step = 1; step <= 3; step++) be.adamw(P, G, M, V, n, { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 });
          const r = [P, M, V].map((b) => be.read(b));
          for (const b of [P, G, M, V]) be.free(b);
          return r;
        };
        const before = calls.adamw;
        const want = run(ref), got = run(t1);
        assert.equal(calls.adamw, before + 3, `n ${n}: the native AdamW did not run`);
        assertNearReference(got, want, ['param', 'm', 'v'], `n ${n}`);
        run(t2).forEach((r, i) => assert.deepEqual(r, got[i], `n ${n}: output ${i} with 2 threads differs from 1`));
      }
    });
  });

  test('RMSNorm forward and backward, RoPE forward and inverse: bit for bit the WebAssembly kernels, within 1e-5 of the reference relative to the largest value, 2 threads bit-equal to 1', async () => {
    // The native kernels repeat WebAssembly's arithmetic (the same unfused multiplies and adds in the same
    // order), so a row's result does not depend on whether its call was large enough to go native.
    const rng = new Rng(14);
    const upload = (be: Backend, a: Float32Array) => {
      const b = be.alloc(a.length);
      be.write(b, a);
      return b;
    };
    await withNativeBackends(native, ['rmsNorm', 'rmsNormBackward', 'rope'], async (t1, t2, calls) => {
      // From the backend's threshold (4096 elements); rows ending in a 4-lane step and in single elements;
      // on 2 threads from 32768 elements, where dw's columns split unevenly.
      for (const [rows, dim] of [[64, 64], [17, 255], [33, 516], [130, 257], [300, 512]]) {
        const x = randomF32(rng, rows * dim), w = randomF32(rng, dim), dy = randomF32(rng, rows * dim), dw0 = randomF32(rng, dim);
        const run = (be: Backend) => {
          const [X, W, DY, DW] = [x, w, dy, dw0].map((a) => upload(be, a));
          const [Y, R, DX] = [rows * dim, rows, rows * dim].map((n) => {
            const b = be.alloc(n);
            be.fill(b, Number.NaN);
            return b;
          });
          be.rmsNorm(X, W, Y, R, rows, dim, 1e-5);
          be.rmsNormBackward(X, W, R, DY, DX, DW, rows, dim);
          const r = [Y, R, DX, DW].map((b) => be.read(b));
          for (const b of [X, W, DY, DW, Y, R, DX]) be.free(b);
          return r;
        };
        const label = `rmsNorm ${rows}×${dim}`, before = { ...calls };
        const want = run(ref), got = run(t1);
        assert.deepEqual([calls.rmsNorm, calls.rmsNormBackward], [before.rmsNorm + 1, before.rmsNormBackward + 1], `${label}: the native kernels did not run`);
        assertNearReference(got, want, ['out', 'rstd', 'dx', 'dw'], label);
        run(wasm).forEach((r, i) => assert.deepEqual(got[i], r, `${label}: output ${i} differs from WebAssembly's`));
        run(t2).forEach((r, i) => assert.deepEqual(r, got[i], `${label}: output ${i} with 2 threads differs from 1`));
      }
      // Head sizes ending in a whole 8-lane step, a 4-lane step and a single pair; positions after pos0, in place too.
      for (const [rows, heads, headDim, seqLen, pos0] of [[64, 2, 32, 16, 0], [50, 3, 34, 10, 7], [40, 4, 44, 40, 300], [1024, 8, 64, 512, 0]]) {
        const x = randomF32(rng, rows * heads * headDim);
        for (const inverse of [false, true]) {
          const run = (be: Backend, inPlace = false) => {
            const X = upload(be, x), O = inPlace ? X : be.alloc(x.length);
            be.rope(X, O, rows, heads, headDim, seqLen, pos0, 10000, inverse);
            const r = be.read(O);
            be.free(X);
            if (!inPlace) be.free(O);
            return [r];
          };
          const label = `rope ${rows}×${heads}×${headDim} seqLen ${seqLen} pos0 ${pos0}${inverse ? ' inverse' : ''}`, before = calls.rope;
          const want = run(ref), got = run(t1);
          assert.equal(calls.rope, before + 1, `${label}: the native kernel did not run`);
          assertNearReference(got, want, ['out'], label);
          assert.deepEqual(got[0], run(wasm)[0], `${label}: differs from WebAssembly's`);
          assert.deepEqual(run(t2)[0], got[0], `${label}: 2 threads differ from 1`);
          assert.deepEqual(run(t1, true)[0], got[0], `${label}: in place differs`);
        }
      }
    });
  });

  test('axpy: bit for bit the WebAssembly kernel, within 1e-5 of the reference relative to the largest value, 2 threads bit-equal to 1', async () => {
    const rng = new Rng(15);
    await withNativeBackends(native, ['axpy'], async (t1, t2, calls) => {
      for (const n of [4096, 4101, 70_003]) { // from the backend's threshold; a tail of 5 past whole vectors; 2 threads from 32768
        const x = randomF32(rng, n), y = randomF32(rng, n);
        const run = (be: Backend) => {
          const [X, Y] = [x, y].map((a) => {
            const buf = be.alloc(n);
            be.write(buf, a);
            return buf;
          });
          be.axpy(X, 0.7, Y, n);
          const r = [be.read(Y)];
          for (const buf of [X, Y]) be.free(buf);
          return r;
        };
        const before = calls.axpy;
        const want = run(ref), got = run(t1);
        assert.equal(calls.axpy, before + 1, `n ${n}: the native axpy did not run`);
        assertNearReference(got, want, ['y'], `n ${n}`);
        assert.deepEqual(got[0], run(wasm)[0], `n ${n}: differs from WebAssembly's`);
        assert.deepEqual(run(t2)[0], got[0], `n ${n}: 2 threads differ from 1`);
      }
    });
  });

  test('bad calls into the addon throw clear errors instead of touching memory', () => {
    const k = native!;
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true } as WebAssembly.MemoryDescriptor);
    const slot = 255; // the last slot: backends take slots from the front
    k.attach(new Uint8Array(mem.buffer), slot);
    assert.doesNotThrow(() => k.qmatmul(slot, 0, 1024, 4096, 1, 1, 64, 0, 0, 0, 1)); // in bounds
    assert.throws(() => k.qmatmul(slot, 65536, 0, 0, 1, 1, 64, 0, 0, 0, 1), /qmatmul: operand outside memory/);
    assert.throws(() => k.qmatmul(slot, 0, 0, 0, 1, 1, 64, 7, 0, 0, 1), /qmatmul: invalid shape, type or share/);
    assert.throws(() => k.qmatmul(slot, 0, 0, 0, 1, 1, 64, 4, 0, 0, 1), /qmatmul: invalid shape, type or share/); // repacked Q8_0: WebAssembly only
    // Repacked Q4_0 (type 3): ceil(n/4) groups of 80 bytes per block; n = 5 at k = 64 takes 320 bytes.
    assert.doesNotThrow(() => k.qmatmul(slot, 0, 65536 - 320, 1024, 1, 5, 64, 3, 0, 0, 1));
    assert.throws(() => k.qmatmul(slot, 0, 65536 - 319, 1024, 1, 5, 64, 3, 0, 0, 1), /qmatmul: operand outside memory/);
    assert.throws(() => k.qmatmul(slot, 0, 0, 0, 1, 1, 48, 0, 0, 0, 1), /qmatmul: invalid shape, type or share/);
    assert.throws(() => k.matvecF32(slot, 0, 0, 65400, 1, 100, 8, 0, 0, 1), /matvecF32: operand outside memory/);
    assert.throws(() => k.matvecF32(slot, 0, 0, 0, 1, 1, 12, 0, 0, 1), /matvecF32: invalid shape or share/);
    assert.throws(() => k.matvecF32(slot, 0, 0, 0, 1, 1, 8, 0, 2, 2), /invalid shape or share/);
    assert.throws(() => k.quantizeActivations(slot, 0, 1e6, 64, 0, 0, 1), /quantizeActivations: operand outside memory/);
    assert.throws(() => k.matvecF32(slot, 0, 0), /wrong number of arguments/);
    assert.throws(() => (k.matvecF32 as (...a: unknown[]) => void)(slot, 'x', 0, 0, 1, 1, 8, 0, 0, 1), /arguments must be numbers/);
    assert.throws(() => k.attentionDecode(slot, 0, 0, 0, 0, 0, 8, 3, 64, 10, 0.1, 0, 1), /attentionDecode: invalid shape or share/);
    assert.throws(() => k.attentionDecode(slot, 0, 0, 0, 0, 0, 8, 8, 60, 10, 0.1, 0, 1), /attentionDecode: invalid shape or share/);
    assert.throws(() => k.attentionDecode(slot, 0, 0, 0, 0, 0, 8, 8, 64, 1000, 0.1, 0, 1), /attentionDecode: operand outside memory/);
    // attentionDecodeRows: a table of (q, k, v, out, lse, n, new key, new value) per row at byte 0; every row
    // checked first, the new key and value only when the write flag is 1. Keys and values 2 heads × 8.
    const table = new Uint32Array(mem.buffer, 0, 16);
    table.set([1024, 2048, 2048, 4096, 8192, 4, 12288, 12352, 1024, 2048, 2048, 4096, 8192, 4, 12288, 12352]);
    assert.doesNotThrow(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 0, 0, 1));
    assert.doesNotThrow(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 1, 0, 1));
    table[13] = 2000; // row 1 would read 2000 keys past the end
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 0, 0, 1), /attentionDecodeRows: operand outside memory \(row 1's keys\)/);
    table[13] = 0;
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 0, 0, 1), /attentionDecodeRows: invalid key count 0 in row 1/);
    table[13] = 4;
    table[7] = 65536 - 16; // row 0's new value (32 bytes) runs past the end: refused with write = 1, ignored with 0
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 1, 0, 1), /attentionDecodeRows: operand outside memory \(row 0's new value\)/);
    assert.doesNotThrow(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 0, 0, 1));
    table[7] = 12352;
    table[14] = 65536 - 31;
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 1, 0, 1), /attentionDecodeRows: operand outside memory \(row 1's new key\)/);
    table[14] = 12288;
    table[9] = 65536 - 8; // row 1's keys
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 1, 0, 1), /attentionDecodeRows: operand outside memory \(row 1's keys\)/);
    table[9] = 2048;
    assert.throws(() => k.attentionDecodeRows(slot, 0, 2, 2, 1, 8, 0.3, 2, 0, 1), /attentionDecodeRows: the write flag is neither 0 nor 1/);
    assert.throws(() => k.attentionDecodeRows(slot, 65530, 1, 2, 1, 8, 0.3, 0, 0, 1), /attentionDecodeRows: table outside memory/);
    assert.throws(() => k.attentionDecodeRows(slot, 65536 - 48, 2, 2, 1, 8, 0.3, 0, 0, 1), /attentionDecodeRows: table outside memory/); // 2 rows: 64 bytes
    assert.throws(() => k.attentionDecodeRows(slot, 0, 1, 3, 2, 8, 0.3, 0, 0, 1), /attentionDecodeRows: invalid shape or share/);
    // Training attention: batch 1, tq 4, tk 4, heads 2, kvHeads 1, headDim 8 (q/out 64 floats, k/v 32, lse 8).
    assert.doesNotThrow(() => k.attentionTrain(slot, 0, 1024, 2048, 4096, 8192, 1, 4, 4, 2, 1, 8, 0, 0.35, 32, 0, 1));
    assert.throws(() => k.attentionTrain(slot, 0, 1024, 2048, 4096, 8192, 1, 4, 4, 2, 1, 12, 0, 0.35, 48, 0, 1), /attentionTrain: invalid shape or share/);
    assert.throws(() => k.attentionTrain(slot, 0, 1024, 2048, 4096, 8192, 1, 4, 4, 3, 2, 8, 0, 0.35, 64, 0, 1), /attentionTrain: invalid shape or share/);
    assert.throws(() => k.attentionTrain(slot, 0, 1024, 2048, 4096, 8192, 1, 4, 4, 2, 1, 8, 0, 0.35, 16, 0, 1), /attentionTrain: invalid shape or share/); // K/V batch items overlap
    assert.throws(() => k.attentionTrain(slot, 0, 1024, 65536 - 64, 4096, 8192, 1, 4, 4, 2, 1, 8, 0, 0.35, 32, 0, 1), /attentionTrain: operand outside memory/);
    assert.throws(() => k.attentionTrainBackward(slot, 0, 1024, 2048, 4096, 8192, 12288, 16384, 20480, 65536 - 64, 1, 4, 4, 2, 1, 8, 0, 0.35, 32, 0, 1), /attentionTrainBackward: operand outside memory/);
    assert.throws(() => k.swiglu(slot, 0, 0, 65536 - 16, 8, 0, 1), /swiglu: operand outside memory/);
    assert.throws(() => k.swigluBackward(slot, 0, 0, 0, 0, 0, 1.5, 0, 1), /swigluBackward: invalid size or share/);
    assert.throws(() => k.adamw(slot, 0, 0, 0, 65536 - 16, 8, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.1, 0.05, 1, 0, 1), /adamw: operand outside memory/);
    assert.throws(() => k.axpy(slot, 65536 - 16, 0, 8, 0.5, 0, 1), /axpy: operand outside memory/);
    assert.throws(() => k.axpy(slot, 0, 0, -1, 0.5, 0, 1), /axpy: invalid size or share/);
    // RMSNorm 2 rows × 8: x, out 16 floats, w 8, rstd 2 (and dy, dx, dw for the backward).
    assert.doesNotThrow(() => k.rmsNorm(slot, 0, 64, 128, 160, 2, 8, 1e-5, 0, 1));
    assert.throws(() => k.rmsNorm(slot, 0, 65536 - 32, 128, 160, 2, 8, 1e-5, 0, 1), /rmsNorm: operand outside memory/);
    assert.throws(() => k.rmsNorm(slot, 0, 64, 65536 - 16, 160, 2, 8, 1e-5, 0, 1), /rmsNorm: operand outside memory/); // w is 8 floats
    assert.throws(() => k.rmsNorm(slot, 0, 64, 128, 160, 2, 0, 1e-5, 0, 1), /rmsNorm: invalid size or share/);
    assert.throws(() => k.rmsNormBackward(slot, 0, 64, 128, 192, 224, 65536 - 4, 2, 8, 0, 1), /rmsNormBackward: operand outside memory/); // rstd is 2 floats
    assert.throws(() => k.rmsNormBackward(slot, 0, 64, 128, 192, 224, 256, 2, 8, 1, 1), /rmsNormBackward: invalid size or share/);
    // RoPE 2 rows × 2 heads × 4 (16 floats), table for positions 0 .. pos0 + 1 (4 floats each).
    assert.doesNotThrow(() => k.rope(slot, 0, 64, 128, 2, 2, 4, 2, 3, 0, 0, 1));
    assert.throws(() => k.rope(slot, 0, 64, 65536 - 64, 2, 2, 4, 2, 3, 0, 0, 1), /rope: operand outside memory/); // table: 5 positions
    assert.throws(() => k.rope(slot, 0, 64, 128, 2, 2, 5, 2, 3, 0, 0, 1), /rope: invalid size or share/); // odd head size
    assert.throws(() => k.rope(slot, 0, 64, 128, 2, 2, 4, 0, 3, 0, 0, 1), /rope: invalid size or share/); // seqLen 0
    assert.throws(() => k.rope(slot, 0, 65536 - 32, 128, 2, 2, 4, 2, 3, 0, 0, 1), /rope: operand outside memory/);
    k.detach(slot);
    assert.throws(() => k.matvecF32(slot, 0, 0, 0, 1, 1, 8, 0, 0, 1), /no memory attached in this slot/);
    assert.throws(() => k.matvecF32(999, 0, 0, 0, 1, 1, 8, 0, 0, 1), /no memory attached in this slot/);
  });

  test('STLM_NATIVE=0 keeps a process pure WebAssembly', () => {
    const url = new URL('../src/kernels/index.js', import.meta.url).href;
    const code = `const k = await import(${JSON.stringify(url)}); const b = await k.createWasmBackend({ threads: 1 }); console.log(String(b.native)); b.dispose();`;
    const probe = (env: NodeJS.ProcessEnv) => spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env }).stdout.trim();
    assert.equal(probe({ ...process.env, STLM_NATIVE: '0' }), 'null');
    assert.equal(probe({ ...process.env, STLM_NATIVE: '' }), n1.native);
  });
});

describe('native build script', () => {
  test('without a working C compiler it says so and exits 0 (the backend then stays WebAssembly)', () => {
    const script = new URL('../../scripts/build-native.mjs', import.meta.url);
    const r = spawnSync(process.execPath, [script.pathname], { encoding: 'utf8', env: { ...process.env, CC: 'false' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /native kernels not built \((false failed|no native kernels for)/);
  });
});
