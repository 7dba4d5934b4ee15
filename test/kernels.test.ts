// The WebAssembly backend (with and without the native kernels) against the reference backend, op by op, on random shapes that include
// odd sizes; and the 2-thread backend against the 1-thread one, bit for bit.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend, Buf } from '../src/kernels/backend.js';
import { Rng } from '../src/util/rng.js';
import { randomF32, wasmAndReference } from './helpers.js';

const ODD = [1, 3, 17, 255, 257];
const TOL = 1e-5;

/** max |a-b| / max |b|: the error relative to the size of the result. */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let num = 0, den = 1e-30;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  if (a.some((x) => !Number.isFinite(x))) return Infinity;
  return num / den;
}

/** Runs `body` on each backend with the same inputs; returns the named outputs per backend. */
type Io = { input(name: string, data: Float32Array): Buf; output(name: string, n: number, init?: Float32Array): Buf };
function runAll(backends: Backend[], body: (be: Backend, io: Io) => void, outputs: string[]): Float32Array[][] {
  return backends.map((be) => {
    const bufs = new Map<string, Buf>();
    const io: Io = {
      input(name, data) {
        const b = be.alloc(data.length);
        be.write(b, data);
        bufs.set(name, b);
        return b;
      },
      output(name, n, init) {
        const b = be.alloc(n);
        be.fill(b, Number.NaN);
        if (init) be.write(b, init);
        bufs.set(name, b);
        return b;
      },
    };
    body(be, io);
    const res = outputs.map((o) => be.read(bufs.get(o)!));
    for (const b of bufs.values()) be.free(b);
    return res;
  });
}

// Twice: with the native kernels (where built: AVX2 GEMM, decode products) and as pure WebAssembly (what browsers run).
for (const native of [true, false]) describe(`wasm backend (${native ? 'with the native kernels where built' : 'pure WebAssembly'}) equals the reference backend`, () => {
  const backends = wasmAndReference({ native });
  const { ref } = backends;

  /** Checks wasm-1 and wasm-2 against the reference (TOL) and wasm-2 against wasm-1 (bit-exact). */
  function check(label: string, body: (be: Backend, io: Io) => void, outputs: string[], tol = TOL): void {
    const [r, a, b] = runAll([ref, backends.w1, backends.w2], body, outputs);
    outputs.forEach((name, i) => {
      const e = relErr(a[i], r[i]);
      assert.ok(e <= tol, `${label} ${name}: wasm differs from reference by ${e.toExponential(2)} (tolerance ${tol})`);
      assert.deepEqual(b[i], a[i], `${label} ${name}: 2 threads differ from 1 thread`);
    });
  }

  test('matmul: every transpose form, odd sizes, accumulate, batch with broadcast', () => {
    const rng = new Rng(1);
    const sizes: [number, number, number][] = [];
    for (const m of ODD) for (const k of [1, 17, 257]) for (const n of [1, 3, 255]) sizes.push([m, k, n]);
    sizes.push([64, 128, 96], [1, 512, 512], [257, 255, 17], [300, 64, 300]);
    // Row-vector products (m = 1, transB) take one W row at a time up to k = 2048 and four rows at a
    // time beyond: both sides of that, with every tail (16-float steps, a 4-float step, scalars).
    sizes.push([1, 23, 255], [1, 2048, 21], [1, 2051, 37]);
    for (const [m, k, n] of sizes) {
      for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
        const A = randomF32(rng, m * k), B = randomF32(rng, k * n), C0 = randomF32(rng, m * n);
        for (const accumulate of [false, true]) {
          check(`matmul ${m}x${k}x${n} tA=${transA} tB=${transB} acc=${accumulate}`, (be, io) => {
            be.matmul(io.input('a', A), io.input('b', B), io.output('c', m * n, C0), { m, k, n, transA, transB, accumulate });
          }, ['c']);
        }
      }
    }
    // batched, with B broadcast (stride 0) and with offsets
    const [m, k, n, batch] = [17, 33, 19, 3];
    const A = randomF32(rng, batch * m * k + 5), B = randomF32(rng, k * n), C0 = randomF32(rng, batch * m * n + 2);
    check('matmul batched broadcast B', (be, io) => {
      be.matmul(io.input('a', A), io.input('b', B), io.output('c', batch * m * n + 2, C0), { m, k, n, batch, strideB: 0, offA: 5, offC: 2 });
    }, ['c']);
  });

  test('elementwise and reductions', () => {
    const rng = new Rng(2);
    for (const n of [...ODD, 100_003]) {
      const a = randomF32(rng, n), b = randomF32(rng, n);
      check(`add ${n}`, (be, io) => be.add(io.input('a', a), io.input('b', b), io.output('o', n), n), ['o']);
      check(`mul ${n}`, (be, io) => be.mul(io.input('a', a), io.input('b', b), io.output('o', n), n), ['o']);
      check(`scale ${n}`, (be, io) => be.scale(io.input('a', a), -0.37, io.output('o', n), n), ['o']);
      check(`axpy ${n}`, (be, io) => be.axpy(io.input('a', a), 0.7, io.output('y', n, b), n), ['y']);
      for (const op of ['sum', 'max', 'sumSquares'] as const) {
        const [r, x] = [ref, backends.w1].map((be) => {
          const buf = be.alloc(n);
          be.write(buf, a);
          const v = be[op](buf, n);
          be.free(buf);
          return v;
        });
        assert.ok(Math.abs(x - r) <= TOL * Math.max(1, Math.abs(r)), `${op} ${n}: ${x} vs ${r}`);
      }
    }
    const bad = new Float32Array([1, 2, NaN, 4]);
    for (const be of [ref, backends.w1]) {
      const buf = be.alloc(4);
      be.write(buf, bad);
      assert.ok(Number.isNaN(be.sumSquares(buf, 4)), `${be.name}: sumSquares must expose NaN`);
    }
  });

  test('rmsNorm forward and backward, softmax, swiglu', () => {
    const rng = new Rng(3);
    // dim 1 is left out on purpose: there dx = r·w·dy·eps/(x²+eps) is all cancellation, eps-sized noise.
    for (const [rows, dim] of [[1, 3], [3, 17], [17, 255], [5, 257], [64, 128]]) {
      const x = randomF32(rng, rows * dim), w = randomF32(rng, dim), dy = randomF32(rng, rows * dim), dw0 = randomF32(rng, dim);
      check(`rmsNorm ${rows}x${dim}`, (be, io) => {
        const X = io.input('x', x), W = io.input('w', w), R = io.output('rstd', rows);
        be.rmsNorm(X, W, io.output('y', rows * dim), R, rows, dim, 1e-5);
        be.rmsNormBackward(X, W, R, io.input('dy', dy), io.output('dx', rows * dim), io.output('dw', dim, dw0), rows, dim);
      }, ['y', 'rstd', 'dx', 'dw']);
      check(`softmax ${rows}x${dim}`, (be, io) => be.softmax(io.input('x', randomF32(new Rng(rows), rows * dim, 3)), io.output('o', rows * dim), rows, dim), ['o']);
    }
    for (const n of [...ODD, 4099, 70_001]) {
      const g = randomF32(rng, n, 3), u = randomF32(rng, n), d = randomF32(rng, n);
      check(`swiglu ${n}`, (be, io) => {
        const G = io.input('g', g), U = io.input('u', u);
        be.swiglu(G, U, io.output('o', n), n);
        be.swigluBackward(G, U, io.input('d', d), io.output('dg', n), io.output('du', n), n);
      }, ['o', 'dg', 'du']);
    }
  });

  test('rope forward and inverse, with a position offset', () => {
    const rng = new Rng(4);
    // The last two are past the native kernel's threshold (4096 elements), heads ending in a pair and in 4 lanes.
    for (const [rows, heads, headDim, seqLen, pos0] of [[1, 1, 2, 1, 0], [6, 3, 18, 3, 0], [16, 4, 32, 8, 5], [3, 2, 6, 3, 300], [64, 2, 34, 16, 5], [48, 2, 44, 24, 300]]) {
      const x = randomF32(rng, rows * heads * headDim);
      for (const inverse of [false, true]) {
        check(`rope ${rows}x${heads}x${headDim} pos0=${pos0} inv=${inverse}`, (be, io) => {
          be.rope(io.input('x', x), io.output('o', x.length), rows, heads, headDim, seqLen, pos0, 10000, inverse);
        }, ['o']);
      }
    }
  });

  test('embedding gather and scatter-add, cross-entropy with ignored rows', () => {
    const rng = new Rng(5);
    for (const [vocab, dim, n] of [[3, 1, 5], [17, 3, 40], [259, 17, 257]]) {
      const table = randomF32(rng, vocab * dim), ids = Int32Array.from({ length: n }, () => rng.int(vocab));
      const dout = randomF32(rng, n * dim), dt0 = randomF32(rng, vocab * dim);
      check(`embedding ${vocab}x${dim} n=${n}`, (be, io) => {
        be.embedding(io.input('t', table), ids, io.output('o', n * dim), dim);
        be.embeddingBackward(ids, io.input('d', dout), io.output('dt', vocab * dim, dt0), dim);
      }, ['o', 'dt']);
      const logits = randomF32(rng, n * vocab, 2), targets = Int32Array.from({ length: n }, (_, i) => (i % 7 === 3 ? -1 : rng.int(vocab)));
      const losses: number[] = [];
      check(`crossEntropy ${n}x${vocab}`, (be, io) => {
        const r = be.crossEntropy(io.input('l', logits), targets, io.output('dl', n * vocab), vocab, 1 / n);
        losses.push(r.loss, r.count);
      }, ['dl']);
      assert.ok(Math.abs(losses[2] - losses[0]) <= TOL * Math.abs(losses[0]), `crossEntropy loss ${losses[2]} vs ${losses[0]}`);
      assert.equal(losses[3], losses[1]);
      assert.deepEqual([losses[2], losses[3]], [losses[4], losses[5]]);
    }
    for (const be of [ref, backends.w1]) {
      const t = be.alloc(6);
      assert.throws(() => be.embedding(t, Int32Array.of(0, 3), be.alloc(4), 2), /token id 3 at 1 is outside the vocabulary \[0, 3\)/);
    }
  });

  test('attention forward and backward: GQA, odd lengths, KV-cache offset', () => {
    const rng = new Rng(6);
    const cases = [
      { batch: 1, tq: 1, tk: 1, heads: 1, kvHeads: 1, headDim: 1, qPos0: 0 },
      { batch: 2, tq: 17, tk: 17, heads: 4, kvHeads: 2, headDim: 8, qPos0: 0 },
      { batch: 3, tq: 33, tk: 33, heads: 2, kvHeads: 2, headDim: 17, qPos0: 0 },
      { batch: 1, tq: 3, tk: 12, heads: 4, kvHeads: 1, headDim: 16, qPos0: 9 },
      { batch: 2, tq: 64, tk: 64, heads: 4, kvHeads: 4, headDim: 32, qPos0: 0 },
      // several backward row blocks, GQA groups of 3, headDim a multiple of 16 but not of 32
      { batch: 2, tq: 70, tk: 70, heads: 6, kvHeads: 2, headDim: 48, qPos0: 0 },
      // headDim above the wasm kernel's packing limit (strided K/V path)
      { batch: 1, tq: 41, tk: 41, heads: 4, kvHeads: 2, headDim: 80, qPos0: 0 },
      // a prompt chunk after a cache (packed forward with an offset)
      { batch: 2, tq: 9, tk: 20, heads: 4, kvHeads: 2, headDim: 20, qPos0: 11 },
      // decode steps: GQA over a long cache; a cache buffer longer than tk (kvBatchStride)
      { batch: 1, tq: 1, tk: 300, heads: 8, kvHeads: 2, headDim: 32, qPos0: 299 },
      { batch: 3, tq: 1, tk: 5, heads: 4, kvHeads: 4, headDim: 33, qPos0: 4, kvBatchStride: 8 * 4 * 33 },
      // decode with more query rows than the wasm kernel takes at once (batched, many heads)
      { batch: 3, tq: 1, tk: 40, heads: 32, kvHeads: 8, headDim: 16, qPos0: 39 },
      { batch: 2, tq: 1, tk: 70, heads: 40, kvHeads: 40, headDim: 8, qPos0: 69 },
    ];
    for (const c of cases) {
      const args = { ...c, scale: 1 / Math.sqrt(c.headDim) };
      const kvStride = c.kvBatchStride ?? c.tk * c.kvHeads * c.headDim;
      const qn = c.batch * c.tq * c.heads * c.headDim, kn = c.batch * kvStride;
      const q = randomF32(rng, qn), k = randomF32(rng, kn), v = randomF32(rng, kn), dout = randomF32(rng, qn);
      const training = c.qPos0 === 0;
      check(`attention ${JSON.stringify(c)}`, (be, io) => {
        const Q = io.input('q', q), K = io.input('k', k), V = io.input('v', v);
        const O = io.output('o', qn), L = io.output('lse', c.batch * c.tq * c.heads);
        be.attention(Q, K, V, O, L, args);
        if (training) be.attentionBackward(Q, K, V, O, L, io.input('do', dout), io.output('dq', qn), io.output('dk', kn), io.output('dv', kn), args);
      }, training ? ['o', 'lse', 'dq', 'dk', 'dv'] : ['o', 'lse']);
    }
  });

  test('ropeRows (a position per row) against the reference, and each row bit for bit what rope gives it alone', () => {
    const rng = new Rng(16);
    for (const [heads, headDim, positions] of [[1, 2, [0]], [3, 18, [5, 0, 299, 5, 17]], [4, 32, [1, 2, 3, 100, 64, 63, 7, 0, 250]]] as const) {
      const rows = positions.length, pos = Int32Array.from(positions), x = randomF32(rng, rows * heads * headDim);
      check(`ropeRows ${rows}x${heads}x${headDim}`, (be, io) => {
        be.ropeRows(io.input('x', x), io.output('o', x.length), rows, heads, headDim, pos, 10000);
      }, ['o']);
      for (const be of [backends.w1, backends.w2]) {
        const [[all]] = runAll([be], (b, io) => b.ropeRows(io.input('x', x), io.output('o', x.length), rows, heads, headDim, pos, 10000), ['o']);
        const rowLen = heads * headDim;
        positions.forEach((p, r) => {
          const [[one]] = runAll([be], (b, io) => b.rope(io.input('x', x.slice(r * rowLen, (r + 1) * rowLen)), io.output('o', rowLen), 1, heads, headDim, 1, p, 10000, false), ['o']);
          assert.deepEqual(all.subarray(r * rowLen, (r + 1) * rowLen), one, `ropeRows row ${r} (position ${p}) differs from rope alone`);
        });
      }
    }
  });

  test('attentionRows (each row over its own cache) against the reference, and each row bit for bit what attention gives it alone', () => {
    const rng = new Rng(17);
    // Positions on both sides of the native decode kernel's size threshold (heads·keys·headDim = 16384).
    const cases = [
      { heads: 1, kvHeads: 1, headDim: 1, positions: [0] },
      { heads: 8, kvHeads: 2, headDim: 32, positions: [0, 5, 63, 64, 100, 299, 31] },
      { heads: 6, kvHeads: 6, headDim: 64, positions: [42, 43, 3, 200] },
      { heads: 4, kvHeads: 4, headDim: 33, positions: [4, 0, 130] },
      { heads: 32, kvHeads: 8, headDim: 16, positions: [39, 1, 80] },
    ];
    for (const c of cases) {
      const rows = c.positions.length, capacity = 320, kvDim = c.kvHeads * c.headDim, qLen = c.heads * c.headDim;
      const positions = Int32Array.from(c.positions), scale = 1 / Math.sqrt(c.headDim);
      const q = randomF32(rng, rows * qLen), ks = c.positions.map(() => randomF32(rng, capacity * kvDim)), vs = c.positions.map(() => randomF32(rng, capacity * kvDim));
      const body = (be: Backend, io: Io) => {
        const K = ks.map((k, r) => io.input(`k${r}`, k)), V = vs.map((v, r) => io.input(`v${r}`, v));
        be.attentionRows(io.input('q', q), K, V, io.output('o', rows * qLen), io.output('lse', rows * c.heads), { ...c, scale, positions });
      };
      check(`attentionRows ${JSON.stringify(c)}`, body, ['o', 'lse']);
      for (const be of [backends.w1, backends.w2]) {
        const [[o, lse]] = runAll([be], body, ['o', 'lse']);
        c.positions.forEach((p, r) => {
          const [[o1, l1]] = runAll([be], (b, io) => b.attention(io.input('q', q.slice(r * qLen, (r + 1) * qLen)), io.input('k', ks[r]), io.input('v', vs[r]),
            io.output('o', qLen), io.output('lse', c.heads), { batch: 1, tq: 1, tk: p + 1, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, qPos0: p, scale, kvBatchStride: capacity * kvDim }), ['o', 'lse']);
          assert.deepEqual(o.subarray(r * qLen, (r + 1) * qLen), o1, `attentionRows ${JSON.stringify(c)} row ${r}: out differs from attention alone`);
          assert.deepEqual(lse.subarray(r * c.heads, (r + 1) * c.heads), l1, `attentionRows ${JSON.stringify(c)} row ${r}: lse differs from attention alone`);
        });
      }
    }
    for (const be of [ref, backends.w1]) {
      const q = be.alloc(8), k = be.alloc(16), o = be.alloc(8), l = be.alloc(2);
      const a = { heads: 2, kvHeads: 1, headDim: 4, scale: 0.5 };
      assert.throws(() => be.attentionRows(q, [k], [k], o, l, { ...a, positions: Int32Array.of(0, 1) }), /attentionRows: 2 positions for 1 key and 1 value caches/);
      assert.throws(() => be.attentionRows(q, [k], [k], o, l, { ...a, positions: Int32Array.of(4) }), /attentionRows: row 0's cache holds 16 values, 20 needed for position 4/);
      assert.throws(() => be.attentionRows(q, [k], [k], o, l, { ...a, positions: Int32Array.of(-1) }), /attentionRows: row 0's position -1 is negative/);
      assert.throws(() => be.ropeRows(q, q, 2, 1, 4, Int32Array.of(0), 10000), /ropeRows: 1 positions for 2 rows/);
      for (const b of [q, k, o, l]) be.free(b);
    }
  });

  test('attentionRows with newKv: each row\'s key and value land at its position, the rows attend as after copying them there (bit for bit), against the reference', () => {
    const rng = new Rng(18);
    // Native and WebAssembly rows (the native kernel from heads·keys·headDim = 1024, head sizes that are multiples of 8);
    // keys seen n = 1, 17, 49, 81, 200 and others not a multiple of 4 or 8; GQA; rows split over 2 threads.
    const cases = [
      { heads: 1, kvHeads: 1, headDim: 8, positions: [0, 3] },
      { heads: 4, kvHeads: 4, headDim: 32, positions: [16, 48, 80, 199, 0, 8] },
      { heads: 8, kvHeads: 2, headDim: 32, positions: [0, 5, 63, 64, 100, 299, 31, 7] },
      { heads: 32, kvHeads: 8, headDim: 32, positions: [0, 2, 5] },
      { heads: 6, kvHeads: 3, headDim: 64, positions: [42, 8, 200] },
      { heads: 4, kvHeads: 4, headDim: 33, positions: [4, 130] },
    ];
    for (const c of cases) {
      const rows = c.positions.length, capacity = 320, kvDim = c.kvHeads * c.headDim, qLen = c.heads * c.headDim;
      const positions = Int32Array.from(c.positions), scale = 1 / Math.sqrt(c.headDim);
      const q = randomF32(rng, rows * qLen), newK = randomF32(rng, rows * kvDim), newV = randomF32(rng, rows * kvDim);
      const ks = c.positions.map(() => randomF32(rng, capacity * kvDim)), vs = c.positions.map(() => randomF32(rng, capacity * kvDim));
      // The caches as they should be after the call: row r's new key and value at positions[r], the rest unchanged.
      const written = (caches: Float32Array[], rowsNew: Float32Array) => caches.map((cache, r) => {
        const w = cache.slice();
        w.set(rowsNew.subarray(r * kvDim, (r + 1) * kvDim), c.positions[r] * kvDim);
        return w;
      });
      const wantK = written(ks, newK), wantV = written(vs, newV);
      const cacheNames = [...ks.map((_, r) => `k${r}`), ...vs.map((_, r) => `v${r}`)];
      const fused = (be: Backend, io: Io) => {
        const K = ks.map((k, r) => io.input(`k${r}`, k)), V = vs.map((v, r) => io.input(`v${r}`, v));
        be.attentionRows(io.input('q', q), K, V, io.output('o', rows * qLen), io.output('lse', rows * c.heads),
          { ...c, scale, positions, newKv: { k: io.input('nk', newK), v: io.input('nv', newV) } });
      };
      const copiedFirst = (be: Backend, io: Io) => {
        const K = wantK.map((k, r) => io.input(`k${r}`, k)), V = wantV.map((v, r) => io.input(`v${r}`, v));
        be.attentionRows(io.input('q', q), K, V, io.output('o', rows * qLen), io.output('lse', rows * c.heads), { ...c, scale, positions });
      };
      const label = `attentionRows newKv ${JSON.stringify(c)}`;
      check(label, fused, ['o', 'lse', ...cacheNames]);
      for (const be of [ref, backends.w1, backends.w2]) {
        const [got] = runAll([be], fused, ['o', 'lse', ...cacheNames]);
        const [want] = runAll([be], copiedFirst, ['o', 'lse']);
        assert.deepEqual(got[0], want[0], `${label} (${be.name}): out differs from the caches written first`);
        assert.deepEqual(got[1], want[1], `${label} (${be.name}): lse differs from the caches written first`);
        [...wantK, ...wantV].forEach((w, i) => assert.deepEqual(got[2 + i], w, `${label} (${be.name}): cache ${cacheNames[i]} is not the old cache with the row's new entry at its position`));
      }
    }
    for (const be of [ref, backends.w1]) {
      const q = be.alloc(16), k = be.alloc(16), o = be.alloc(16), l = be.alloc(4), short = be.alloc(7), ok = be.alloc(8);
      const a = { heads: 2, kvHeads: 1, headDim: 4, scale: 0.5, positions: Int32Array.of(1, 2) };
      assert.throws(() => be.attentionRows(q, [k, k], [k, k], o, l, { ...a, newKv: { k: short, v: ok } }), /attentionRows: newKv.k holds 7 values, 8 needed for 2 rows of 4/);
      assert.throws(() => be.attentionRows(q, [k, k], [k, k], o, l, { ...a, newKv: { k: ok, v: short } }), /attentionRows: newKv.v holds 7 values, 8 needed for 2 rows of 4/);
      assert.throws(() => be.attentionRows(q, [k, k], [k, k], o, l, { ...a, positions: Int32Array.of(1, 4), newKv: { k: ok, v: ok } }), /attentionRows: row 1's cache holds 16 values, 20 needed for position 4/);
      for (const b of [q, k, o, l, short, ok]) be.free(b);
    }
  });

  test('the wasm allocator refuses a double free and reuses freed buffers', () => {
    const { w1 } = backends;
    const b = w1.alloc(100);
    w1.free(b);
    assert.throws(() => w1.free(b), /double free/);
    w1.free(w1.alloc(100_000));
    const again = w1.memoryBytes();
    for (let i = 0; i < 1000; i++) w1.free(w1.alloc(100_000));
    assert.equal(w1.memoryBytes(), again, 'alloc/free of one size grew the memory');
  });

  test('adamw', () => {
    const rng = new Rng(7);
    for (const n of [1, 17, 257, 4099, 50_001]) {
      const p0 = randomF32(rng, n), g = randomF32(rng, n), m0 = randomF32(rng, n, 0.1), v0 = randomF32(rng, n).map(Math.abs);
      check(`adamw ${n}`, (be, io) => {
        const P = io.output('p', n, p0), M = io.output('m', n, m0), V = io.output('v', n, v0);
        const G = io.input('g', g);
        for (let step = 1; step <= 3; step++) be.adamw(P, G, M, V, n, { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 });
      }, ['p', 'm', 'v']);
    }
  });
});
