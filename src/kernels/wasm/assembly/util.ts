// Shared helpers for the kernels: work partitioning and a vectorized exp.

/** Start of thread tid's share of n items, aligned to 16 so SIMD loops split cleanly; part(n, nth, nth) = n. */
@inline export function part(n: i32, tid: i32, nth: i32): i32 {
  if (tid >= nth) return n;
  return (<i32>((<i64>n * tid) / nth)) & ~15;
}

/** Start of thread tid's share of `rows` whole rows (no alignment needed). */
@inline export function rowPart(rows: i32, tid: i32, nth: i32): i32 {
  return <i32>((<i64>rows * tid) / nth);
}

/** Start of share t of `units` units among nth (t = nth gives units). */
@inline export function share(units: i32, t: i32, nth: i32): i32 {
  return <i32>((<i64>units * t) / nth);
}

@inline export function min32(a: i32, b: i32): i32 {
  return a < b ? a : b;
}

/** c + a·b: one fused multiply-add in the relaxed-SIMD build, a multiply and an add otherwise. */
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  else return f32x4.add(c, f32x4.mul(a, b));
}

/** Byte address of element i of an f32 array at p. */
@inline export function at(p: usize, i: i32): usize {
  return p + (<usize>i << 2);
}

/**
 * exp(x) on four lanes: x = n·ln2 + r with |r| ≤ ln2/2, exp(r) by a degree-6 polynomial (Cephes expf
 * coefficients; relative error about 2e-7), then 2^n built in the exponent bits. Inputs are clamped to
 * [-87.3, 88.7], so very negative inputs give ~1e-38 rather than 0, which no caller here can tell apart.
 * Written with instructions that lower cheaply on x86: pmin/pmax instead of NaN-propagating min/max, and
 * n = round(x·log2e) by adding 1.5·2²³ (the add rounds to nearest even exactly as f32x4.nearest), whose
 * low bits are n itself, so 2ⁿ needs no float-to-int conversion.
 */
@inline export function exp4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.3)), f32x4.splat(88.7));
  const magic = f32x4.splat(12582912.0);
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), magic);
  const n = f32x4.sub(t, magic);
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const r2 = f32x4.mul(r, r);
  p = f32x4.add(f32x4.add(f32x4.mul(p, r2), r), f32x4.splat(1.0));
  // bits(t) = bits(1.5·2²³) + n; shifting (bits + 127) left by 23 leaves (n + 127) << 23 = bits(2ⁿ).
  return f32x4.mul(p, i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23));
}

/** Scalar exp with the same algorithm as exp4, so vector bodies and scalar tails agree. */
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}
