/**
 * Differentiable ops. Each one checks shapes (errors name the op and the shapes), runs the forward
 * kernel, and records a backward closure when an input requires a gradient.
 *
 * Shapes: the model keeps activations 2-D, [rows, features] with rows = batch·time, so that every
 * linear layer is one matmul and no transposes are ever materialized.
 */
import type { AttentionArgs } from '../kernels/backend.js';
import { describe, sizeOf, type Tensor } from './tensor.js';

function shapeError(op: string, msg: string, ...ts: Tensor[]): Error {
  return new Error(`${op}: ${msg} (got ${ts.map(describe).join(' and ')})`);
}

function sameGraph(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.graph !== ts[0].graph) throw new Error(`${op}: tensors belong to different graphs`);
}

/** The last dimension, and the product of the others. */
function rowsCols(t: Tensor): [number, number] {
  const cols = t.shape[t.shape.length - 1] ?? 1;
  return [t.size / cols, cols];
}

/** a + b, same shape. */
export function add(a: Tensor, b: Tensor): Tensor {
  sameGraph('add', a, b);
  if (a.size !== b.size) throw shapeError('add', 'shapes differ', a, b);
  const g = a.graph, be = g.backend, n = a.size;
  const out = g.temp(a.shape, g.needsGrad(a, b));
  be.add(a.buf, b.buf, out.buf, n);
  g.record('add', [a, b], out, () => {
    const d = out.grad!.buf;
    if (a.requiresGrad) g.accumulateGrad(a, d);
    if (b.requiresGrad) g.accumulateGrad(b, d);
  });
  return out;
}

/** a ⊙ b, same shape. */
export function mul(a: Tensor, b: Tensor): Tensor {
  sameGraph('mul', a, b);
  if (a.size !== b.size) throw shapeError('mul', 'shapes differ', a, b);
  const g = a.graph, be = g.backend, n = a.size;
  const out = g.temp(a.shape, g.needsGrad(a, b));
  be.mul(a.buf, b.buf, out.buf, n);
  g.record('mul', [a, b], out, () => {
    const d = out.grad!.buf, tmp = g.scratch(n);
    if (a.requiresGrad) {
      be.mul(d, b.buf, tmp, n);
      g.accumulateGrad(a, tmp);
    }
    if (b.requiresGrad) {
      be.mul(d, a.buf, tmp, n);
      g.accumulateGrad(b, tmp);
    }
  });
  return out;
}

/** s · a */
export function scale(a: Tensor, s: number): Tensor {
  const g = a.graph, be = g.backend, n = a.size;
  const out = g.temp(a.shape, g.needsGrad(a));
  be.scale(a.buf, s, out.buf, n);
  g.record('scale', [a], out, () => {
    const tmp = g.scratch(n);
    be.scale(out.grad!.buf, s, tmp, n);
    g.accumulateGrad(a, tmp);
  });
  return out;
}

/** Sum of all elements, shape [1]. */
export function sum(a: Tensor): Tensor {
  const g = a.graph, be = g.backend;
  const out = g.temp([1], g.needsGrad(a));
  be.write(out.buf, [be.sum(a.buf, a.size)]);
  g.record('sum', [a], out, () => {
    const d = out.grad!.item(), tmp = g.scratch(a.size);
    be.fill(tmp, d, 0, a.size);
    g.accumulateGrad(a, tmp);
  });
  return out;
}

/** Mean of all elements, shape [1]. */
export function mean(a: Tensor): Tensor {
  return scale(sum(a), 1 / a.size);
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * Matrix product of the last two dimensions: op(a) [m,k] · op(b) [k,n] -> [m,n]. Leading dimensions of
 * a are flattened into rows when b is 2-D (the linear-layer case), otherwise they are a batch.
 */
export function matmul(a: Tensor, b: Tensor, o: MatmulOptions = {}): Tensor {
  sameGraph('matmul', a, b);
  const transA = !!o.transA, transB = !!o.transB;
  if (a.shape.length < 2 || b.shape.length < 2) throw shapeError('matmul', 'operands must have at least 2 dimensions', a, b);
  const ar = a.shape.length, br = b.shape.length;
  let batch = 1, m: number, k: number;
  const [b0, b1] = [b.shape[br - 2], b.shape[br - 1]];
  if (br === 2 && !transA) {
    [m, k] = rowsCols(a);
  } else {
    batch = sizeOf(a.shape.slice(0, ar - 2));
    const bb = sizeOf(b.shape.slice(0, br - 2));
    if (bb !== batch) throw shapeError('matmul', `batch sizes differ (${batch} vs ${bb})`, a, b);
    [m, k] = transA ? [a.shape[ar - 1], a.shape[ar - 2]] : [a.shape[ar - 2], a.shape[ar - 1]];
  }
  const [kb, n] = transB ? [b1, b0] : [b0, b1];
  if (k !== kb) throw shapeError('matmul', `inner dimensions differ (${k} vs ${kb}${transA ? ', a transposed' : ''}${transB ? ', b transposed' : ''})`, a, b);
  const g = a.graph, be = g.backend;
  const outShape = br === 2 && !transA ? [...a.shape.slice(0, ar - 1), n] : [...a.shape.slice(0, ar - 2), m, n];
  const out = g.temp(outShape, g.needsGrad(a, b));
  be.matmul(a.buf, b.buf, out.buf, { m, k, n, transA, transB, batch });
  g.record('matmul', [a, b], out, () => {
    const dC = out.grad!.buf;
    if (a.requiresGrad) {
      const { grad, accumulate } = g.gradForProduct(a), dA = grad.buf;
      // d op(A) = dC · op(B)ᵀ; stored transposed when transA.
      if (!transA) be.matmul(dC, b.buf, dA, { m, k: n, n: k, transB: !transB, batch, accumulate });
      else be.matmul(b.buf, dC, dA, { m: k, k: n, n: m, transA: transB, transB: true, batch, accumulate });
    }
    if (b.requiresGrad) {
      const { grad, accumulate } = g.gradForProduct(b), dB = grad.buf;
      // d op(B) = op(A)ᵀ · dC; stored transposed when transB.
      if (!transB) be.matmul(a.buf, dC, dB, { m: k, k: m, n, transA: !transA, batch, accumulate });
      else be.matmul(dC, a.buf, dB, { m: n, k: m, n: k, transA: true, transB: transA, batch, accumulate });
    }
  });
  return out;
}

/** x · wᵀ with w [out, in] (the nn.Linear layout), x [..., in] -> [..., out]. */
export function linear(x: Tensor, w: Tensor): Tensor {
  if (w.shape.length !== 2) throw shapeError('linear', 'weight must be [out, in]', x, w);
  if (x.shape[x.shape.length - 1] !== w.shape[1]) throw shapeError('linear', `input features ${x.shape[x.shape.length - 1]} differ from the weight's ${w.shape[1]}`, x, w);
  return matmul(x, w, { transB: true });
}

/** RMSNorm over the last dimension with gain w. */
export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  sameGraph('rmsNorm', x, w);
  const [rows, dim] = rowsCols(x);
  if (w.size !== dim) throw shapeError('rmsNorm', `gain has ${w.size} elements for rows of ${dim}`, x, w);
  const g = x.graph, be = g.backend;
  const out = g.temp(x.shape, g.needsGrad(x, w));
  const rstd = g.scratch(rows);
  be.rmsNorm(x.buf, w.buf, out.buf, rstd, rows, dim, eps);
  g.record('rmsNorm', [x, w], out, () => {
    const dw = w.requiresGrad ? g.gradForAccumulate(w).buf : g.scratch(dim);
    if (!w.requiresGrad) be.fill(dw, 0, 0, dim);
    const dx = g.gradDestination(x);
    be.rmsNormBackward(x.buf, w.buf, rstd, out.grad!.buf, dx, dw, rows, dim);
    g.commitGrad(x, dx);
  });
  return out;
}

/** Row-wise softmax over the last dimension. */
export function softmax(x: Tensor): Tensor {
  const [rows, dim] = rowsCols(x);
  const g = x.graph, be = g.backend;
  const out = g.temp(x.shape, g.needsGrad(x));
  be.softmax(x.buf, out.buf, rows, dim);
  g.record('softmax', [x], out, () => {
    // dx = y ⊙ (dy - Σ dy⊙y), composed from primitive kernels row by row.
    const y = out.toArray(), dy = out.grad!.toArray(), dx = new Float32Array(x.size);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let i = 0; i < dim; i++) s += dy[r * dim + i] * y[r * dim + i];
      for (let i = 0; i < dim; i++) dx[r * dim + i] = y[r * dim + i] * (dy[r * dim + i] - s);
    }
    const tmp = g.scratch(x.size);
    be.write(tmp, dx);
    g.accumulateGrad(x, tmp);
  });
  return out;
}

/**
 * Rotary embedding of x [rows, heads·headDim] (rows = batch·seqLen, position pos0 + row mod seqLen),
 * on interleaved pairs (the GGUF / llama2.c layout).
 */
export function rope(x: Tensor, heads: number, headDim: number, seqLen: number, pos0: number, theta: number): Tensor {
  const [rows, cols] = rowsCols(x);
  if (cols !== heads * headDim) throw shapeError('rope', `last dimension must be heads·headDim = ${heads}·${headDim}`, x);
  if (headDim % 2) throw shapeError('rope', `headDim ${headDim} must be even`, x);
  const g = x.graph, be = g.backend;
  const out = g.temp(x.shape, g.needsGrad(x));
  be.rope(x.buf, out.buf, rows, heads, headDim, seqLen, pos0, theta, false);
  g.record('rope', [x], out, () => {
    // The rotation is orthogonal: its gradient is the inverse rotation.
    const dx = g.gradDestination(x);
    be.rope(out.grad!.buf, dx, rows, heads, headDim, seqLen, pos0, theta, true);
    g.commitGrad(x, dx);
  });
  return out;
}

/** silu(gate) ⊙ up */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  sameGraph('swiglu', gate, up);
  if (gate.size !== up.size) throw shapeError('swiglu', 'gate and up differ in size', gate, up);
  const g = gate.graph, be = g.backend, n = gate.size;
  const out = g.temp(gate.shape, g.needsGrad(gate, up));
  be.swiglu(gate.buf, up.buf, out.buf, n);
  g.record('swiglu', [gate, up], out, () => {
    const dg = g.gradDestination(gate), du = g.gradDestination(up);
    be.swigluBackward(gate.buf, up.buf, out.grad!.buf, dg, du, n);
    g.commitGrad(gate, dg);
    g.commitGrad(up, du);
  });
  return out;
}

/** Rows of table [vocab, dim] picked by ids -> [ids.length, dim]. */
export function embedding(table: Tensor, ids: Int32Array): Tensor {
  if (table.shape.length !== 2) throw shapeError('embedding', 'table must be [vocab, dim]', table);
  const dim = table.shape[1];
  const g = table.graph, be = g.backend;
  const out = g.temp([ids.length, dim], g.needsGrad(table));
  be.embedding(table.buf, ids, out.buf, dim);
  const saved = g.recording && table.requiresGrad ? ids.slice() : ids;
  g.record('embedding', [table], out, () => {
    be.embeddingBackward(saved, out.grad!.buf, g.gradForAccumulate(table).buf, dim);
  });
  return out;
}

/**
 * Mean cross-entropy (nats) of logits [rows, vocab] against targets; targets < 0 are ignored.
 * Returns a [1] tensor. The gradient is computed in the same pass (fused), so backward only scales it.
 */
export function crossEntropy(logits: Tensor, targets: Int32Array): Tensor {
  const [rows, vocab] = rowsCols(logits);
  if (targets.length !== rows) throw shapeError('crossEntropy', `${targets.length} targets for ${rows} rows`, logits);
  const g = logits.graph, be = g.backend;
  const grad = g.needsGrad(logits);
  const out = g.temp([1], grad);
  let count = 0;
  for (let i = 0; i < rows; i++) if (targets[i] >= 0) count++;
  const dl = grad ? g.scratch(logits.size) : null;
  const r = be.crossEntropy(logits.buf, targets, dl, vocab, count ? 1 / count : 0);
  be.write(out.buf, [count ? r.loss / count : 0]);
  g.record('crossEntropy', [logits], out, () => {
    const d = out.grad!.item();
    if (d !== 1) be.scale(dl!, d, dl!, logits.size);
    g.accumulateGrad(logits, dl!);
  });
  return out;
}

/**
 * Causal self-attention. q [batch·t, heads·headDim], k and v [batch·t, kvHeads·headDim] -> like q.
 * (The training form: queries and keys are the same positions.)
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, batch: number, heads: number, kvHeads: number, headDim: number): Tensor {
  sameGraph('attention', q, k, v);
  const [rows, qc] = rowsCols(q);
  if (qc !== heads * headDim) throw shapeError('attention', `q rows must have heads·headDim = ${heads * headDim} values`, q);
  if (k.size !== v.size || k.size !== rows * kvHeads * headDim) throw shapeError('attention', `k and v must be [${rows}, ${kvHeads * headDim}]`, k, v);
  if (rows % batch) throw shapeError('attention', `rows ${rows} are not a multiple of batch ${batch}`, q);
  if (heads % kvHeads) throw shapeError('attention', `heads ${heads} not a multiple of kvHeads ${kvHeads}`, q);
  const t = rows / batch;
  const args: AttentionArgs = { batch, tq: t, tk: t, heads, kvHeads, headDim, qPos0: 0, scale: 1 / Math.sqrt(headDim) };
  const g = q.graph, be = g.backend;
  const out = g.temp(q.shape, g.needsGrad(q, k, v));
  const lse = g.scratch(rows * heads);
  be.attention(q.buf, k.buf, v.buf, out.buf, lse, args);
  g.record('attention', [q, k, v], out, () => {
    const [dq, dk, dv] = [q, k, v].map((x) => g.gradDestination(x));
    be.attentionBackward(q.buf, k.buf, v.buf, out.buf, lse, out.grad!.buf, dq, dk, dv, args);
    g.commitGrad(q, dq);
    g.commitGrad(k, dk);
    g.commitGrad(v, dv);
  });
  return out;
}

/** Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p). */
export function dropout(x: Tensor, p: number, random: () => number): Tensor {
  const g = x.graph;
  if (p <= 0 || !g.recording) return x;
  if (p >= 1) throw new Error(`dropout: probability ${p} must be below 1`);
  const n = x.size, keep = 1 / (1 - p);
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) mask[i] = random() < p ? 0 : keep;
  return mul(x, g.constant(x.shape, mask, 'dropout mask'));
}

/**
 * Knowledge distillation loss (Hinton et al. 2015): T² · mean over scored rows of KL(p_t ‖ p_s), where
 * p = softmax(logits / T), the student's logits on the tape and the teacher's given as values [rows,
 * vocab]. Rows whose target is < 0 (padding, prompts) are skipped. The T² keeps the gradient's size
 * independent of T: d/ds = T·(p_s − p_t) / rows scored.
 */
export function distillKl(student: Tensor, teacher: Float32Array, temperature: number, targets?: Int32Array): Tensor {
  const [rows, vocab] = rowsCols(student);
  if (teacher.length !== student.size) throw shapeError('distillKl', `teacher logits have ${teacher.length} values for ${rows}×${vocab}`, student);
  if (!(temperature > 0)) throw new Error(`distillKl: temperature must be positive, got ${temperature}`);
  const g = student.graph, be = g.backend;
  const s = student.toArray();
  const grad = g.needsGrad(student) ? new Float32Array(student.size) : null;
  const ps = new Float64Array(vocab), pt = new Float64Array(vocab);
  let kl = 0, count = 0;
  for (let r = 0; r < rows; r++) if (!targets || targets[r] >= 0) count++;
  for (let r = 0; r < rows; r++) {
    if (targets && targets[r] < 0) continue;
    const lseS = logSoftmaxRow(s, r * vocab, vocab, temperature, ps);
    const lseT = logSoftmaxRow(teacher, r * vocab, vocab, temperature, pt);
    for (let v = 0; v < vocab; v++) {
      const logPt = teacher[r * vocab + v] / temperature - lseT, logPs = s[r * vocab + v] / temperature - lseS;
      if (pt[v] > 0) kl += pt[v] * (logPt - logPs);
      if (grad) grad[r * vocab + v] = (temperature * (ps[v] - pt[v])) / count;
    }
  }
  const out = g.temp([1], !!grad);
  be.write(out.buf, [count ? (temperature * temperature * kl) / count : 0]);
  g.record('distillKl', [student], out, () => {
    const d = out.grad!.item();
    const tmp = g.scratch(student.size);
    be.write(tmp, d === 1 ? grad! : grad!.map((x) => x * d));
    g.accumulateGrad(student, tmp);
  });
  return out;
}

/** Writes softmax(x[o..o+n) / T) into p (float64) and returns the log-sum-exp of x / T. */
function logSoftmaxRow(x: ArrayLike<number>, o: number, n: number, temperature: number, p: Float64Array): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, x[o + i] / temperature);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp(x[o + i] / temperature - max);
  for (let i = 0; i < n; i++) p[i] /= sum;
  return max + Math.log(sum);
}
