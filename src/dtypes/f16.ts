/**
 * IEEE 754 half precision (f16) and bfloat16 (bf16) conversions, bit-exact.
 *
 * f16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Largest finite 65504, smallest normal
 * 2^-14 (~6.1035e-5), smallest subnormal 2^-24 (~5.96e-8).
 * bf16: the top 16 bits of an f32 (8 exponent bits, 7 mantissa bits).
 *
 * f32 -> f16/bf16 rounds to nearest, ties to even; values too large become ±Infinity, values too small
 * become subnormals or ±0, NaN stays NaN (quiet, with the top payload bits kept).
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bits of `x` rounded to f32. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** The f32 whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0];
}

/** f32 (any JS number is first rounded to f32) -> f16 bits, round to nearest even. */
export function f32ToF16(x: number): number {
  const b = f32Bits(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00; // NaN (forced quiet) / Inf
  const e = exp - 127 + 15; // the f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // f16 subnormal: value = m * 2^-24 with m = (1.mant * 2^23) >> (14 - e), rounded.
    if (e < -10) return sign; // below half of the smallest subnormal: rounds to ±0
    const full = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1))) m++; // may carry into the smallest normal: still right
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry may reach 0x7c00 = Infinity: right
  return sign | h;
}

let f16Table: Float32Array | undefined;

/** All 65536 f16 values as f32, built on first use (256 KiB). */
export function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -1 : 1) * mant * 2 ** -24; // zero or subnormal, exact in f32
    else if (exp === 0x1f) bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // Inf / NaN with payload
    else bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  }
  f16Table = table;
  return table;
}

/** f16 bits -> number (exact). */
export function f16ToF32(h: number): number {
  return f16ToF32Table()[h & 0xffff];
}

/** f32 -> bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  const b = f32Bits(x);
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return ((b >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits -> number (exact). */
export function bf16ToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}
