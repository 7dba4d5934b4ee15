// Finite-difference gradient checks: every differentiable op's backward pass (in f32, on each
// backend) against central differences of an independent float64 forward written here.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import * as ops from '../src/tensor/ops.js';
import { Graph, type Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';

type F64 = Float64Array;
interface Case {
  name: string;
  /** Input shapes (all differentiable). */
  inputs: number[][];
  /** The op under test on the tensor layer. */
  op(g: Graph, xs: Tensor[]): Tensor;
  /** The same function in float64, written independently. */
  ref(xs: F64[]): F64;
  /** Optional input generator (default standard normal). */
  init?(rng: Rng, i: number, n: number): number;
}

// ---- float64 forwards -----------------------------------------------------------------------------
function mm(a: F64, b: F64, m: number, k: number, n: number, tA: boolean, tB: boolean): F64 {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += (tA ? a[p * m + i] : a[i * k + p]) * (tB ? b[j * k + p] : b[p * n + j]);
    c[i * n + j] = s;
  }
  return c;
}
const sig = (x: number) => 1 / (1 + Math.exp(-x));
function ropeRef(x: F64, rows: number, heads: number, hd: number, seqLen: number, pos0: number): F64 {
  const o = new Float64Array(x.length);
  // cos and sin per position in the window and pair, computed once (the finite differences call this often).
  const cos = new Float64Array(seqLen * hd), sin = new Float64Array(seqLen * hd);
  for (let t = 0; t < seqLen; t++) for (let i = 0; i < hd; i += 2) {
    const ang = (pos0 + t) * Math.pow(10000, -i / hd);
    cos[t * hd + i] = Math.cos(ang);
    sin[t * hd + i] = Math.sin(ang);
  }
  for (let r = 0; r < rows; r++) for (let h = 0; h < heads; h++) for (let i = 0; i < hd; i += 2) {
    const c = cos[(r % seqLen) * hd + i], s = sin[(r % seqLen) * hd + i], base = (r * heads + h) * hd;
    o[base + i] = x[base + i] * c - x[base + i + 1] * s;
    o[base + i + 1] = x[base + i] * s + x[base + i + 1] * c;
  }
  return o;
}
function rmsNormRef(x: F64, w: F64, rows: number, dim: number): F64 {
  const o = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    for (let i = 0; i < dim; i++) o[r * dim + i] = (x[r * dim + i] / Math.sqrt(ss / dim + 1e-5)) * w[i];
  }
  return o;
}
function attnRef(q: F64, k: F64, v: F64, B: number, T: number, H: number, KV: number, D: number): F64 {
  const o = new Float64Array(q.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
    const kvh = Math.floor(h / (H / KV)), qo = ((b * T + i) * H + h) * D;
    const s = [];
    for (let j = 0; j <= i; j++) {
      let d = 0;
      for (let e = 0; e < D; e++) d += q[qo + e] * k[((b * T + j) * KV + kvh) * D + e];
      s.push(d / Math.sqrt(D));
    }
    const m = Math.max(...s), z = s.reduce((acc, x) => acc + Math.exp(x - m), 0);
    for (let j = 0; j <= i; j++) for (let e = 0; e < D; e++) o[qo + e] += (Math.exp(s[j] - m) / z) * v[((b * T + j) * KV + kvh) * D + e];
  }
  return o;
}

const ids = Int32Array.of(2, 0, 4, 2, 1);
const targets = Int32Array.of(3, -1, 0, 6, 2);
const teacherLogits = Float32Array.from({ length: 35 }, (_, i) => Math.sin(i * 1.7) * 3);
const cases: Case[] = [
  { name: 'add', inputs: [[3, 5], [3, 5]], op: (_, [a, b]) => ops.add(a, b), ref: ([a, b]) => a.map((x, i) => x + b[i]) },
  { name: 'mul', inputs: [[3, 5], [3, 5]], op: (_, [a, b]) => ops.mul(a, b), ref: ([a, b]) => a.map((x, i) => x * b[i]) },
  { name: 'scale', inputs: [[7]], op: (_, [a]) => ops.scale(a, -1.7), ref: ([a]) => a.map((x) => -1.7 * x) },
  { name: 'mean', inputs: [[4, 3]], op: (_, [a]) => ops.mean(a), ref: ([a]) => Float64Array.of(a.reduce((s, x) => s + x, 0) / a.length) },
  ...([[false, false], [false, true], [true, false], [true, true]] as const).map(([tA, tB]): Case => ({
    name: `matmul transA=${tA} transB=${tB}`,
    inputs: [tA ? [5, 3] : [3, 5], tB ? [4, 5] : [5, 4]],
    op: (_, [a, b]) => ops.matmul(a, b, { transA: tA, transB: tB }),
    ref: ([a, b]) => mm(a, b, 3, 5, 4, tA, tB),
  })),
  { name: 'matmul batched', inputs: [[2, 3, 4], [2, 4, 3]], op: (_, [a, b]) => ops.matmul(a, b), ref: ([a, b]) => Float64Array.from([...mm(a.subarray(0, 12), b.subarray(0, 12), 3, 4, 3, false, false), ...mm(a.subarray(12), b.subarray(12), 3, 4, 3, false, false)]) },
  { name: 'rmsNorm', inputs: [[3, 6], [6]], op: (_, [x, w]) => ops.rmsNorm(x, w, 1e-5), ref: ([x, w]) => rmsNormRef(x, w, 3, 6) },
  // 64 × 76 = 4864 elements: what the native RMSNorm takes, where built (rows end in a 4-lane step).
  { name: 'rmsNorm (64 × 76)', inputs: [[64, 76], [76]], op: (_, [x, w]) => ops.rmsNorm(x, w, 1e-5), ref: ([x, w]) => rmsNormRef(x, w, 64, 76) },
  {
    name: 'softmax', inputs: [[2, 5]], op: (_, [x]) => ops.softmax(x),
    ref: ([x]) => {
      const o = new Float64Array(10);
      for (let r = 0; r < 2; r++) {
        const row = Array.from(x.subarray(r * 5, r * 5 + 5)), m = Math.max(...row), z = row.reduce((s, v) => s + Math.exp(v - m), 0);
        row.forEach((v, i) => (o[r * 5 + i] = Math.exp(v - m) / z));
      }
      return o;
    },
  },
  { name: 'rope', inputs: [[6, 2 * 4]], op: (_, [x]) => ops.rope(x, 2, 4, 3, 2, 10000), ref: ([x]) => ropeRef(x, 6, 2, 4, 3, 2) },
  // 48 × 2·50 = 4800 elements: what the native RoPE takes, where built (heads end in a single pair).
  { name: 'rope (48 × 2·50)', inputs: [[48, 2 * 50]], op: (_, [x]) => ops.rope(x, 2, 50, 16, 3, 10000), ref: ([x]) => ropeRef(x, 48, 2, 50, 16, 3) },
  { name: 'swiglu with one tensor as both inputs', inputs: [[4, 3]], op: (_, [a]) => ops.swiglu(a, a), ref: ([a]) => a.map((x) => x * sig(x) * x) },
  { name: 'swiglu', inputs: [[4, 3], [4, 3]], op: (_, [a, b]) => ops.swiglu(a, b), ref: ([a, b]) => a.map((x, i) => x * sig(x) * b[i]) },
  {
    name: 'embedding', inputs: [[5, 3]], op: (_, [t]) => ops.embedding(t, ids),
    ref: ([t]) => Float64Array.from(Array.from(ids).flatMap((id) => Array.from(t.subarray(id * 3, id * 3 + 3)))),
  },
  {
    name: 'crossEntropy (one target ignored)', inputs: [[5, 7]], op: (_, [l]) => ops.crossEntropy(l, targets),
    ref: ([l]) => {
      let s = 0, n = 0;
      targets.forEach((t, r) => {
        if (t < 0) return;
        const row = Array.from(l.subarray(r * 7, r * 7 + 7)), m = Math.max(...row);
        s += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[t];
        n++;
      });
      return Float64Array.of(s / n);
    },
  },
  {
    name: 'distillKl (T = 2, one row skipped)', inputs: [[5, 7]], op: (_, [l]) => ops.distillKl(l, teacherLogits, 2, targets),
    ref: ([l]) => {
      const logSoftmax = (row: number[]) => {
        const m = Math.max(...row), lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        return row.map((v) => v - lse);
      };
      let s = 0, n = 0;
      targets.forEach((t, r) => {
        if (t < 0) return;
        const ls = logSoftmax(Array.from(l.subarray(r * 7, r * 7 + 7), (v) => v / 2));
        const lt = logSoftmax(Array.from(teacherLogits.subarray(r * 7, r * 7 + 7), (v) => v / 2));
        s += lt.reduce((a, v, i) => a + Math.exp(v) * (v - ls[i]), 0);
        n++;
      });
      return Float64Array.of((4 * s) / n);
    },
  },
  {
    name: 'attention (GQA, 2 batches)', inputs: [[2 * 5, 4 * 4], [2 * 5, 2 * 4], [2 * 5, 2 * 4]],
    op: (_, [q, k, v]) => ops.attention(q, k, v, 2, 4, 2, 4), ref: ([q, k, v]) => attnRef(q, k, v, 2, 5, 4, 2, 4),
  },
  {
    // Head size 8 and 2·4·12·12·8 = 9216 units of work: what the native training attention takes, where built.
    name: 'attention (GQA, 2 batches, head size 8)', inputs: [[2 * 12, 4 * 8], [2 * 12, 2 * 8], [2 * 12, 2 * 8]],
    op: (_, [q, k, v]) => ops.attention(q, k, v, 2, 4, 2, 8), ref: ([q, k, v]) => attnRef(q, k, v, 2, 12, 4, 2, 8),
  },
];

/** With `recompute`, the op runs inside Graph.checkpoint: its backward then recomputes it on a tape of its own. */
function gradcheck(be: Backend, c: Case, recompute = false): void {
  const rng = new Rng(42);
  const xs = c.inputs.map((shape, i) => Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (c.init ? c.init(rng, i, 0) : rng.normal())));
  const outProbe = c.ref(xs);
  const weights = Float64Array.from({ length: outProbe.length }, () => rng.normal());
  // L = Σ w ⊙ f(x): a scalar whose gradient exercises every output element.
  const loss = (inp: F64[]) => c.ref(inp).reduce((s, y, i) => s + y * weights[i], 0);

  const g = new Graph(be);
  const ts = xs.map((x, i) => g.param(`x${i}`, c.inputs[i], Float32Array.from(x)));
  const y = recompute ? g.checkpoint(ts, (xs) => c.op(g, xs)) : c.op(g, ts);
  const L = ops.sum(ops.mul(y, g.constant(y.shape, Float32Array.from(weights))));
  g.backward(L);
  ts.forEach((t, i) => {
    assert.ok(t.grad && t.gradReady, `${c.name}: input ${i} got no gradient`);
    const analytic = t.grad!.toArray();
    const x = xs[i];
    const eps = 1e-6;
    let worst = 0;
    const scale = Math.max(1e-3, ...Array.from(analytic, Math.abs));
    for (let j = 0; j < x.length; j++) {
      const orig = x[j];
      x[j] = orig + eps;
      const up = loss(xs);
      x[j] = orig - eps;
      const down = loss(xs);
      x[j] = orig;
      const numeric = (up - down) / (2 * eps);
      worst = Math.max(worst, Math.abs(numeric - analytic[j]) / scale);
    }
    assert.ok(worst < 1e-4, `${c.name} on ${be.name}${recompute ? ' (recomputed)' : ''}: gradient of input ${i} off by ${worst.toExponential(2)} (relative to the largest)`);
  });
  g.release();
}

describe('finite-difference gradient checks against float64 forwards', () => {
  const backends: Backend[] = [new ReferenceBackend()];
  before(async () => {
    backends.push(await createWasmBackend({ threads: 2 }));
  });
  after(() => backends.forEach((b) => b.dispose()));
  for (const c of cases) {
    test(c.name, () => {
      for (const be of backends) gradcheck(be, c);
    });
    test(`${c.name}, recomputed in backward (checkpoint)`, () => {
      for (const be of backends) gradcheck(be, c, true);
    });
  }
});

describe('tape', () => {
  test('a gradient flowing into one tensor from two uses accumulates', () => {
    const g = new Graph(new ReferenceBackend());
    const x = g.param('x', [3], [1, 2, 3]);
    const y = ops.sum(ops.add(ops.mul(x, x), x)); // d/dx = 2x + 1
    g.backward(y);
    assert.deepEqual(Array.from(x.grad!.toArray()), [3, 5, 7]);
  });
  test('noGrad records nothing and shape errors name the op and shapes', () => {
    const g = new Graph(new ReferenceBackend());
    const a = g.param('a', [2, 3]), b = g.param('b', [4, 2]);
    const c = g.noGrad(() => ops.add(a, a));
    assert.equal(c.requiresGrad, false);
    assert.throws(() => ops.matmul(a, b), /matmul: inner dimensions differ \(3 vs 4\) \(got a \[2, 3\] and b \[4, 2\]\)/);
    assert.throws(() => ops.add(a, b), /add: shapes differ/);
  });
  test('detectAnomaly names the op and step that produced NaN', () => {
    const g = new Graph(new ReferenceBackend());
    g.detectAnomaly = true;
    g.step = 17;
    const x = g.param('x', [2], [1, Number.POSITIVE_INFINITY]);
    assert.throws(() => ops.scale(x, 0), /non-finite value \(NaN or Inf\) produced by scale in the forward pass at step 17/);
  });
});
