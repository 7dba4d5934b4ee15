// Elementwise ops, reductions and the AdamW update. Parallel kernels take (tid, nth) and handle
// their own share [part(tid), part(tid+1)); reductions run on one thread and return f64.
import { at, exp4, exp1, part } from './util';

export function add(a: usize, b: usize, out: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) v128.store(at(out, i), f32x4.add(v128.load(at(a, i)), v128.load(at(b, i))));
  for (; i < hi; i++) store<f32>(at(out, i), load<f32>(at(a, i)) + load<f32>(at(b, i)));
}

export function mul(a: usize, b: usize, out: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) v128.store(at(out, i), f32x4.mul(v128.load(at(a, i)), v128.load(at(b, i))));
  for (; i < hi; i++) store<f32>(at(out, i), load<f32>(at(a, i)) * load<f32>(at(b, i)));
}

export function scale(a: usize, s: f32, out: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  const vs = f32x4.splat(s);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) v128.store(at(out, i), f32x4.mul(vs, v128.load(at(a, i))));
  for (; i < hi; i++) store<f32>(at(out, i), s * load<f32>(at(a, i)));
}

/** y += alpha·x */
export function axpy(x: usize, alpha: f32, y: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  const va = f32x4.splat(alpha);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) v128.store(at(y, i), f32x4.add(v128.load(at(y, i)), f32x4.mul(va, v128.load(at(x, i)))));
  for (; i < hi; i++) store<f32>(at(y, i), load<f32>(at(y, i)) + alpha * load<f32>(at(x, i)));
}

// Reductions accumulate in f64 lanes so long sums keep the reference's accuracy.
export function reduceSum(a: usize, n: i32): f64 {
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(at(a, i));
    s0 = f64x2.add(s0, f64x2.promote_low_f32x4(v));
    s1 = f64x2.add(s1, f64x2.promote_low_f32x4(v128.swizzle(v, v128(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7))));
  }
  const t = f64x2.add(s0, s1);
  let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
  for (; i < n; i++) s += <f64>load<f32>(at(a, i));
  return s;
}

export function reduceSumSquares(a: usize, n: i32): f64 {
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(at(a, i));
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(v128.swizzle(v, v128(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)));
    s0 = f64x2.add(s0, f64x2.mul(lo, lo));
    s1 = f64x2.add(s1, f64x2.mul(hi, hi));
  }
  const t = f64x2.add(s0, s1);
  let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
  for (; i < n; i++) {
    const x = <f64>load<f32>(at(a, i));
    s += x * x;
  }
  return s;
}

/** Max; NaN if any element is NaN (f32x4.max propagates NaN). */
export function reduceMax(a: usize, n: i32): f64 {
  let m = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) m = f32x4.max(m, v128.load(at(a, i)));
  let r = max<f32>(max<f32>(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max<f32>(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  for (; i < n; i++) r = max<f32>(r, load<f32>(at(a, i)));
  return <f64>r;
}

/** out = silu(gate)·up, silu(g) = g/(1+e^-g). */
export function swiglu(gate: usize, up: usize, out: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  const one = f32x4.splat(1);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) {
    const g = v128.load(at(gate, i));
    const s = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(g))));
    v128.store(at(out, i), f32x4.mul(f32x4.mul(g, s), v128.load(at(up, i))));
  }
  for (; i < hi; i++) {
    const g = load<f32>(at(gate, i));
    store<f32>(at(out, i), (g / (1 + exp1(-g))) * load<f32>(at(up, i)));
  }
}

/** dup = dout·silu(g); dgate = dout·up·σ(g)·(1 + g·(1 - σ(g))). */
export function swigluBackward(gate: usize, up: usize, dout: usize, dgate: usize, dup: usize, n: i32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  const one = f32x4.splat(1);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) {
    const g = v128.load(at(gate, i));
    const d = v128.load(at(dout, i));
    const s = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(g))));
    v128.store(at(dup, i), f32x4.mul(d, f32x4.mul(g, s)));
    const ds = f32x4.mul(s, f32x4.add(one, f32x4.mul(g, f32x4.sub(one, s))));
    v128.store(at(dgate, i), f32x4.mul(f32x4.mul(d, v128.load(at(up, i))), ds));
  }
  for (; i < hi; i++) {
    const g = load<f32>(at(gate, i));
    const d = load<f32>(at(dout, i));
    const s: f32 = 1 / (1 + exp1(-g));
    store<f32>(at(dup, i), d * g * s);
    store<f32>(at(dgate, i), d * load<f32>(at(up, i)) * s * (1 + g * (1 - s)));
  }
}

/** AdamW with decoupled weight decay; bc1, bc2 are the bias corrections 1-β^t. */
export function adamw(param: usize, grad: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32, eps: f32,
                      wd: f32, bc1: f32, bc2: f32, gradScale: f32, tid: i32, nth: i32): void {
  const hi = part(n, tid + 1, nth);
  const vb1 = f32x4.splat(beta1), vb2 = f32x4.splat(beta2), va1 = f32x4.splat(1 - beta1), va2 = f32x4.splat(1 - beta2);
  const vgs = f32x4.splat(gradScale), vdecay = f32x4.splat(1 - lr * wd), vstep = f32x4.splat(lr / bc1);
  const vbc2 = f32x4.splat(<f32>1 / bc2), veps = f32x4.splat(eps);
  let i = part(n, tid, nth);
  for (; i + 4 <= hi; i += 4) {
    const g = f32x4.mul(v128.load(at(grad, i)), vgs);
    const mi = f32x4.add(f32x4.mul(vb1, v128.load(at(m, i))), f32x4.mul(va1, g));
    const vi = f32x4.add(f32x4.mul(vb2, v128.load(at(v, i))), f32x4.mul(va2, f32x4.mul(g, g)));
    v128.store(at(m, i), mi);
    v128.store(at(v, i), vi);
    const denom = f32x4.add(f32x4.sqrt(f32x4.mul(vi, vbc2)), veps);
    const p = f32x4.mul(v128.load(at(param, i)), vdecay);
    v128.store(at(param, i), f32x4.sub(p, f32x4.div(f32x4.mul(vstep, mi), denom)));
  }
  for (; i < hi; i++) {
    const g = load<f32>(at(grad, i)) * gradScale;
    const mi = beta1 * load<f32>(at(m, i)) + (1 - beta1) * g;
    const vi = beta2 * load<f32>(at(v, i)) + (1 - beta2) * g * g;
    store<f32>(at(m, i), mi);
    store<f32>(at(v, i), vi);
    const p = load<f32>(at(param, i)) * (1 - lr * wd);
    store<f32>(at(param, i), p - (lr / bc1) * mi / (Mathf.sqrt(vi / bc2) + eps));
  }
}
