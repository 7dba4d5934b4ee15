// Row-wise kernels: RMSNorm, softmax, RoPE, embedding and fused softmax cross-entropy.
// Parallel ones split whole rows across threads.
import { at, exp4, exp1, rowPart } from './util';

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function dot(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(at(a, i)), v128.load(at(b, i))));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(at(a, i + 4)), v128.load(at(b, i + 4))));
  }
  for (; i + 4 <= n; i += 4) s0 = f32x4.add(s0, f32x4.mul(v128.load(at(a, i)), v128.load(at(b, i))));
  let s = hsum(f32x4.add(s0, s1));
  for (; i < n; i++) s += load<f32>(at(a, i)) * load<f32>(at(b, i));
  return s;
}

export function rmsNorm(x: usize, w: usize, out: usize, rstd: usize, rows: i32, dim: i32, eps: f32, tid: i32, nth: i32): void {
  const end = rowPart(rows, tid + 1, nth);
  for (let r = rowPart(rows, tid, nth); r < end; r++) {
    const xr = at(x, r * dim), orow = at(out, r * dim);
    const rs: f32 = 1 / Mathf.sqrt(dot(xr, xr, dim) / <f32>dim + eps);
    store<f32>(at(rstd, r), rs);
    const vr = f32x4.splat(rs);
    let i = 0;
    for (; i + 4 <= dim; i += 4) v128.store(at(orow, i), f32x4.mul(f32x4.mul(v128.load(at(xr, i)), vr), v128.load(at(w, i))));
    for (; i < dim; i++) store<f32>(at(orow, i), load<f32>(at(xr, i)) * rs * load<f32>(at(w, i)));
  }
}

/** dx = r·w⊙dy - r³/dim·(Σ dy⊙w⊙x)·x, dw += Σ_rows dy⊙x·r. One thread: dw is shared by all rows. */
export function rmsNormBackward(x: usize, w: usize, rstd: usize, dy: usize, dx: usize, dw: usize, rows: i32, dim: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = at(x, r * dim), gr = at(dy, r * dim), dxr = at(dx, r * dim);
    const rs = load<f32>(at(rstd, r));
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= dim; i += 4) acc = f32x4.add(acc, f32x4.mul(f32x4.mul(v128.load(at(gr, i)), v128.load(at(w, i))), v128.load(at(xr, i))));
    let d = hsum(acc);
    for (; i < dim; i++) d += load<f32>(at(gr, i)) * load<f32>(at(w, i)) * load<f32>(at(xr, i));
    const c: f32 = (rs * rs * rs * d) / <f32>dim;
    const vr = f32x4.splat(rs), vc = f32x4.splat(c);
    i = 0;
    for (; i + 4 <= dim; i += 4) {
      const xi = v128.load(at(xr, i)), gi = v128.load(at(gr, i));
      v128.store(at(dxr, i), f32x4.sub(f32x4.mul(f32x4.mul(vr, v128.load(at(w, i))), gi), f32x4.mul(vc, xi)));
      v128.store(at(dw, i), f32x4.add(v128.load(at(dw, i)), f32x4.mul(f32x4.mul(gi, xi), vr)));
    }
    for (; i < dim; i++) {
      const xi = load<f32>(at(xr, i)), gi = load<f32>(at(gr, i));
      store<f32>(at(dxr, i), rs * load<f32>(at(w, i)) * gi - c * xi);
      store<f32>(at(dw, i), load<f32>(at(dw, i)) + gi * xi * rs);
    }
  }
}

/** Softmax of one row in place of out; returns log Σ exp(x - max) + max (the row's log-sum-exp). */
export function softmaxRow(x: usize, out: usize, dim: i32): f32 {
  let vm = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= dim; i += 4) vm = f32x4.max(vm, v128.load(at(x, i)));
  let m = max<f32>(max<f32>(f32x4.extract_lane(vm, 0), f32x4.extract_lane(vm, 1)), max<f32>(f32x4.extract_lane(vm, 2), f32x4.extract_lane(vm, 3)));
  for (; i < dim; i++) m = max<f32>(m, load<f32>(at(x, i)));
  const vmax = f32x4.splat(m);
  let vs = f32x4.splat(0);
  i = 0;
  for (; i + 4 <= dim; i += 4) {
    const e = exp4(f32x4.sub(v128.load(at(x, i)), vmax));
    v128.store(at(out, i), e);
    vs = f32x4.add(vs, e);
  }
  let s = hsum(vs);
  for (; i < dim; i++) {
    const e = exp1(load<f32>(at(x, i)) - m);
    store<f32>(at(out, i), e);
    s += e;
  }
  const inv = f32x4.splat(<f32>1 / s);
  i = 0;
  for (; i + 4 <= dim; i += 4) v128.store(at(out, i), f32x4.mul(v128.load(at(out, i)), inv));
  for (; i < dim; i++) store<f32>(at(out, i), load<f32>(at(out, i)) / s);
  return m + Mathf.log(s);
}

export function softmax(x: usize, out: usize, rows: i32, dim: i32, tid: i32, nth: i32): void {
  const end = rowPart(rows, tid + 1, nth);
  for (let r = rowPart(rows, tid, nth); r < end; r++) softmaxRow(at(x, r * dim), at(out, r * dim), dim);
}

/**
 * Interleaved-pair RoPE. table holds (cos, sin) for every position p < maxPos and pair i < headDim/2
 * at table[(p·headDim/2 + i)·2], computed by the caller in f64. inverse rotates by -θ (the backward pass).
 */
export function rope(x: usize, out: usize, rows: i32, heads: i32, headDim: i32, seqLen: i32, pos0: i32, table: usize,
                     inverse: i32, tid: i32, nth: i32): void {
  ropeAt(x, out, rows, heads, headDim, seqLen, pos0, 0, table, inverse, tid, nth);
}

/** Forward RoPE with a position per row: row r at load<i32>(positions + 4r) (the i32 array at `positions`). */
export function ropeRows(x: usize, out: usize, rows: i32, heads: i32, headDim: i32, positions: usize, table: usize, tid: i32, nth: i32): void {
  ropeAt(x, out, rows, heads, headDim, 1, 0, positions, table, 0, tid, nth);
}

/** rope's loop; with `positions` (non-zero) row r's position is read from there instead of pos0 + r mod seqLen. */
@inline function ropeAt(x: usize, out: usize, rows: i32, heads: i32, headDim: i32, seqLen: i32, pos0: i32, positions: usize, table: usize,
                        inverse: i32, tid: i32, nth: i32): void {
  const half = headDim >> 1;
  // forward: a' = a·c - b·s, b' = b·c + a·s, i.e. the swapped pair (b, a) times s times [-1, +1];
  // inverse flips the sign of s.
  const sgn = inverse ? f32x4(1, -1, 1, -1) : f32x4(-1, 1, -1, 1);
  const end = rowPart(rows, tid + 1, nth);
  for (let r = rowPart(rows, tid, nth); r < end; r++) {
    const pos = positions ? load<i32>(positions + (<usize>r << 2)) : pos0 + r % seqLen;
    const trow = at(table, pos * half * 2);
    for (let h = 0; h < heads; h++) {
      const xr = at(x, (r * heads + h) * headDim), orow = at(out, (r * heads + h) * headDim);
      let i = 0;
      // Two pairs per vector: [a0 b0 a1 b1]·[c0 c0 c1 c1] + [b0 a0 b1 a1]·[s0 s0 s1 s1]·sgn
      for (; i + 4 <= headDim; i += 4) {
        const v = v128.load(at(xr, i));
        const cs = v128.load(at(trow, i)); // c0 s0 c1 s1
        const c = v128.shuffle<f32>(cs, cs, 0, 0, 2, 2);
        const s = v128.shuffle<f32>(cs, cs, 1, 1, 3, 3);
        const sw = v128.shuffle<f32>(v, v, 1, 0, 3, 2);
        v128.store(at(orow, i), f32x4.add(f32x4.mul(v, c), f32x4.mul(f32x4.mul(sw, s), sgn)));
      }
      for (; i < headDim; i += 2) {
        const c = load<f32>(at(trow, i)), s0 = load<f32>(at(trow, i + 1));
        const s = inverse ? -s0 : s0;
        const a = load<f32>(at(xr, i)), b = load<f32>(at(xr, i + 1));
        store<f32>(at(orow, i), a * c - b * s);
        store<f32>(at(orow, i + 1), a * s + b * c);
      }
    }
  }
}

export function embedding(table: usize, ids: usize, out: usize, nIds: i32, dim: i32, tid: i32, nth: i32): void {
  const end = rowPart(nIds, tid + 1, nth);
  for (let r = rowPart(nIds, tid, nth); r < end; r++) {
    memory.copy(at(out, r * dim), at(table, load<i32>(ids + (<usize>r << 2)) * dim), <usize>dim << 2);
  }
}

/** dtable[ids[r]] += dout[r]; one thread, since two rows may share an id. */
export function embeddingBackward(ids: usize, dout: usize, dtable: usize, nIds: i32, dim: i32): void {
  for (let r = 0; r < nIds; r++) {
    const src = at(dout, r * dim), dst = at(dtable, load<i32>(ids + (<usize>r << 2)) * dim);
    let i = 0;
    for (; i + 4 <= dim; i += 4) v128.store(at(dst, i), f32x4.add(v128.load(at(dst, i)), v128.load(at(src, i))));
    for (; i < dim; i++) store<f32>(at(dst, i), load<f32>(at(dst, i)) + load<f32>(at(src, i)));
  }
}

/**
 * Fused softmax cross-entropy. losses[r] (f64) gets the row's loss, 0 for ignored rows (target < 0);
 * the caller counts rows. dlogits (0 = not wanted) = (softmax - onehot)·gradScale.
 */
export function crossEntropy(logits: usize, targets: usize, dlogits: usize, losses: usize, rows: i32, vocab: i32,
                             gradScale: f32, tid: i32, nth: i32): void {
  const end = rowPart(rows, tid + 1, nth);
  for (let r = rowPart(rows, tid, nth); r < end; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    const lrow = at(logits, r * vocab);
    if (t < 0) {
      store<f64>(losses + (<usize>r << 3), 0);
      if (dlogits) memory.fill(at(dlogits, r * vocab), 0, <usize>vocab << 2);
      continue;
    }
    if (dlogits) {
      const drow = at(dlogits, r * vocab);
      const lse = softmaxRow(lrow, drow, vocab);
      store<f64>(losses + (<usize>r << 3), <f64>(lse - load<f32>(at(lrow, t))));
      const vg = f32x4.splat(gradScale);
      let i = 0;
      for (; i + 4 <= vocab; i += 4) v128.store(at(drow, i), f32x4.mul(v128.load(at(drow, i)), vg));
      for (; i < vocab; i++) store<f32>(at(drow, i), load<f32>(at(drow, i)) * gradScale);
      store<f32>(at(drow, t), load<f32>(at(drow, t)) - gradScale);
    } else {
      // Log-sum-exp without writing probabilities.
      let m: f32 = -Infinity;
      for (let i = 0; i < vocab; i++) m = max<f32>(m, load<f32>(at(lrow, i)));
      const vmax = f32x4.splat(m);
      let vs = f32x4.splat(0);
      let i = 0;
      for (; i + 4 <= vocab; i += 4) vs = f32x4.add(vs, exp4(f32x4.sub(v128.load(at(lrow, i)), vmax)));
      let s = hsum(vs);
      for (; i < vocab; i++) s += exp1(load<f32>(at(lrow, i)) - m);
      store<f64>(losses + (<usize>r << 3), <f64>(m + Mathf.log(s) - load<f32>(at(lrow, t))));
    }
  }
}
