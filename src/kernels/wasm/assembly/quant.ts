// Matrix products with GGUF-quantized weights (Q8_0, Q4_0, Q4_K), and row dequantization.
//
// Weight layout (ggml's, as src/formats/gguf.ts writes it): W is [n rows (outputs), k (inputs)],
// each row k/32 consecutive blocks of 32 values (Q4_K: k/256 super-blocks of 256):
//   Q8_0, 34 bytes: f16 scale d, then 32 int8 q;                    w = q·d
//   Q4_0, 18 bytes: f16 scale d, then 16 bytes; value j (0..15) is the low nibble of byte j and value
//                   j+16 its high nibble;                            w = (nibble − 8)·d
//   Q4_K, 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scale and min codes (sc, m) for 8 sub-blocks
//                   of 32 (see src/dtypes/kquants.ts), then 128 bytes of nibbles: in the g-th group
//                   of 64 values, the low nibbles of bytes 32g..32g+31 are values 0..31 (sub-block 2g)
//                   and their high nibbles values 32..63 (sub-block 2g+1); w = d·sc·q − dmin·m
// Blocks are not 4-byte aligned (34 and 18 bytes); wasm loads of any width are fine unaligned.
// The type code is 0 for Q8_0, 1 for Q4_0 and 2 for Q4_K; 3 and 4 are Q4_0 and Q8_0 repacked by
// repackX4 (the backend's own layout, made once at upload when no native kernel takes the matrix):
//   Q4_0x4, 80 bytes / Q8_0x4, 144 bytes per block of four rows: rows 4g..4g+3 are stored together,
//                   block by block; each block holds the four rows' scales as f32 (16 bytes), then each
//                   row's quants as in its GGUF block (16 nibble bytes, or 32 int8). A last group of
//                   fewer than four rows is padded with zero rows.
// Four rows read as one stream share every load of x, and their four block sums reduce into one
// vector with one scale vector: per product 1.28–1.44x (Q4_0) and 1.35–1.6x (Q8_0) over GGUF's layout
// (`npm run bench -- kernels-ab`, W from memory), for 11% / 6% more bytes (f32 scales: no table lookup).
//
// out[m, n] (+)= x[m, k] · Wᵀ by one of two strategies (the backend picks one from the shape alone, so
// the result never depends on the thread count):
//
// int8 (llama.cpp's way, bit for bit; used for small m): quantizeActivations first rounds every block of
//   32 values of x to int8 exactly as llama.cpp's x86 quantize_row_q8_0 does: q = round-to-nearest-even(
//   x·(127/max|x|)), and the block scale d = max|x|/127 is stored rounded to f16 (llama.cpp keeps it in
//   an f16 field), so our products equal llama.cpp's up to float summation order. Stored
//   pre-widened to int16. qmatmulInt8 then takes integer dot products per block with
//   i32x4.dot_i16x8_s (8 multiply-adds per instruction, exact in i32), and scales each block's sum by
//   d_w·d_x in f32. For Q4_0 the bytes are widened unsigned, the low nibbles used unmasked against
//   activations stored in a Q4_0 form (see blockQ4), and the −8 is applied once per block as −8·Σq_x
//   (precomputed per x block), which saves a subtraction per vector. Block scales are read from an
//   f16 → f32 table. Decode is bound by instruction throughput (Q4_0) or by memory bandwidth (Q8_0),
//   at under 1 instruction per weight.
//   Q4_K pairs with llama.cpp's Q8_K instead (quantizeActivationsK, as its quantize_row_q8_K, which
//   x86 uses unchanged; the AVX2 repacked GEMM's ggml_quantize_mat_q8_K_4x8 rounds the same way): one
//   scale per 256 values, iscale = 127/max|x| and d = 1/iscale both rounded to f32 (no f16), q =
//   round-to-nearest-even(x·iscale). Per super-block the integer sums
//   S = Σ_j sc_j·Σ q_w·q_x and M = Σ_j m_j·Σ q_x are exact, and out = Σ (d_w·d_x)·S − (dmin_w·d_x)·M.
//
// f32: the weights are dequantized on the fly and multiplied in f32 (no rounding of x).
//   m = 1: each row of W is streamed once, block by block, converted in registers (kept for
//   comparison: the int8 path is 2-3x faster there).
//   m > 1 (prefill): the Goto/BLIS loop of gemm.ts with the same micro-kernel, except that the packed
//   B panels are produced by dequantizing W rows (transposed by 4×4 register transposes), so each
//   weight is decoded once per thread and reused for all m rows of x. Q4_K is packed a 32-value
//   sub-block at a time like the other types' blocks.
//
// Threads: work is split over n (rows of W = columns of out) in 16-column units (whole 64-byte lines of
// out for m = 1; whole NR-panels for the packed path), never over k, so every output is computed by the
// same instruction sequence whatever the thread count.
import { KC, MC, MR, NC, NR, microKernel } from './generated/gemm_micro';
import { packA } from './pack';
import { madd, min32, rowPart, share } from './util';

const Q8_BYTES: i32 = 34;
const Q4_BYTES: i32 = 18;
const Q4K_BYTES: i32 = 144;
/** One block of four rows in the repacked layouts: four f32 scales, then four rows' 16 nibble bytes (type 3, Q4_0) or 32 int8 (type 4, Q8_0). */
const Q4X4_BYTES: i32 = 80;
const Q8X4_BYTES: i32 = 144;

@inline function x4Bytes(type: i32): i32 {
  return type == 3 ? Q4X4_BYTES : Q8X4_BYTES;
}

/** Depth of one packed block in the prefill path: the GEMM's KC rounded down to whole 32-value blocks. */
const QKC: i32 = KC >= 32 ? KC & ~31 : 32;
const AP_BYTES: i32 = MC * QKC * 4;
const BP_BYTES: i32 = QKC * NC * 4;
const TILE_BYTES: i32 = MR * NR * 4;
/** Four dequantized blocks (4 rows × 32 f32), the input of one 4×4-transposing pack step. */
const TMP_BYTES: i32 = 4 * 32 * 4;
const SCRATCH_BYTES: i32 = (AP_BYTES + BP_BYTES + TILE_BYTES + TMP_BYTES + 63) & ~63;

/** Per-thread scratch bytes of qmatmulF32 (the caller provides nth times this, 64-byte aligned). */
export function qmatmulScratchBytes(): i32 {
  return SCRATCH_BYTES;
}

/** First column of thread t's share of n columns, in units of 16 (the remainder goes to the last thread). */
@inline function colStart(n: i32, t: i32, nth: i32): i32 {
  return t >= nth ? n : share(n >> 4, t, nth) << 4;
}

/** Bytes per row of k values (k whole blocks of the type). */
@inline function rowBytesOf(k: i32, type: i32): usize {
  if (type >= 3) return <usize>((k >> 5) * (x4Bytes(type) >> 2)); // a quarter of a four-row group
  return type == 2 ? <usize>((k >> 8) * Q4K_BYTES) : <usize>((k >> 5) * (type == 0 ? Q8_BYTES : Q4_BYTES));
}

// ---- f16 scales -----------------------------------------------------------------------------------

/**
 * f16 bits (the low 16 bits of each i32 lane) → f32, exactly, for every input: the exponent and
 * mantissa bits shifted into f32 position and scaled by 2^112 rebase the exponent bias from 15 to 127
 * (f16 subnormals become f32 subnormals first, and the product is exact); exponent 31 (±Inf, NaN) is
 * patched to 255; the sign is or-ed back.
 */
@inline function f16x4(h: v128): v128 {
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  let f = f32x4.mul(em, f32x4.splat(5.192296858534828e33)); // 2^112
  const special = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  f = v128.bitselect(v128.or(em, i32x4.splat(0x7f800000)), f, special);
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** Bytes of the f16 → f32 table (every f16 bit pattern). */
export function f16TableBytes(): i32 {
  return 65536 * 4;
}

/**
 * Fills the f16 → f32 table the kernels read block scales from (exact, via f16x4). In the inner loops a
 * lookup (two scalar loads) is cheaper than the vector conversion, whose five constants would have to
 * stay in vector registers next to the loop's own values (V8 allocates 15; a spill costs more).
 */
export function initF16Table(table: usize): void {
  let h = i32x4(0, 1, 2, 3);
  for (let i: usize = 0; i < 65536; i += 4) {
    v128.store(table + (i << 2), f16x4(h));
    h = i32x4.add(h, i32x4.splat(4));
  }
}

/** The f16 scale at p, as f32. */
@inline function scaleAt(table: usize, p: usize): f32 {
  return load<f32>(table + (<usize>load<u16>(p) << 2));
}

/** (l0 + l2) + (l1 + l3). */
@inline function hsumf(v: v128): f32 {
  const h = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(h, 0) + f32x4.extract_lane(h, 1);
}

@inline function hsumi(v: v128): i32 {
  const h = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(h, 0) + i32x4.extract_lane(h, 1);
}

// ---- Q4_K scale and min codes ------------------------------------------------------------------
//
// The 12 code bytes at offset 4 of a super-block: codes 0..3 are the low 6 bits of bytes 0..3 (scales)
// and 4..7 (mins); codes 4..7 take their low 4 bits from the nibbles of bytes 8..11 (scale low, min
// high) and their top 2 bits from the spare bits 6..7 of bytes 0..3 (scales) and 4..7 (mins).

/** Sub-block j's scale code (bits 0..7) and min code (bits 8..15) of the Q4_K super-block at p. */
@inline function scaleMinK(p: usize, j: i32): i32 {
  const s = p + 4;
  if (j < 4) return (<i32>load<u8>(s + j) & 63) | ((<i32>load<u8>(s + j + 4) & 63) << 8);
  const nib = <i32>load<u8>(s + j + 4);
  const sc = (nib & 15) | ((<i32>load<u8>(s + j - 4) >> 6) << 4);
  return sc | (((nib >> 4) | ((<i32>load<u8>(s + j) >> 6) << 4)) << 8);
}

/**
 * All sixteen codes of the Q4_K super-block at p at once, as u8 lanes: scales in 0..7, mins in 8..15.
 * One 16-byte load (the 12 code bytes and 4 bytes of nibbles, all inside the block) and two swizzles
 * that put each code's low bits (a) and top-bit source byte (b) in its lane; swizzle indices past 15
 * give 0, so codes 0..3 and 8..11 get no top bits.
 */
@inline function scalesMinsK(p: usize): v128 {
  const s = v128.load(p, 4);
  const a = i8x16.swizzle(s, i8x16(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const b = i8x16.swizzle(s, i8x16(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  const low = v128.or(v128.and(a, i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
                      v128.and(i8x16.shr_u(a, 4), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
  return v128.or(low, i8x16.shl(i8x16.shr_u(b, 6), 4));
}

// ---- activation quantization (int8 strategy) ------------------------------------------------------

/** Bytes of one row of quantized activations (see quantizeActivations), a multiple of 16. */
export function quantizedRowBytes(k: i32): i32 {
  return (2 * k + 8 * (k >> 5) + 15) & ~15;
}

/**
 * |x| rounded to the nearest f16 value (ties to even), as f32, with x's sign: what llama.cpp's
 * GGML_FP32_TO_FP16 stores as a Q8_0 block scale. f16 subnormals are multiples of 2⁻²⁴, rounded as such.
 */
@inline function roundToF16(x: f32): f32 {
  const bits = reinterpret<u32>(x);
  const sign = bits & 0x80000000;
  const a = reinterpret<f32>(bits ^ sign);
  let r: f32;
  if (a >= 65520) r = a != a ? a : Infinity; // at or past the f16 overflow threshold (NaN stays NaN)
  else if (a < 6.103515625e-5) r = nearest<f32>(a * 16777216) / 16777216; // subnormal: exact scaling by 2^24
  else {
    const u = bits ^ sign;
    r = reinterpret<f32>((u + 0xfff + ((u >> 13) & 1)) & ~0x1fff); // keep 10 mantissa bits, ties to even
  }
  return reinterpret<f32>(reinterpret<u32>(r) | sign);
}

/**
 * Rows of x [m, k] f32 → quantized rows of `stride` bytes at dst. Per block b of 32 values:
 * d = f16(max|x|/127) and q = nearest-even(x·(127/max|x|)) as int16 (pre-widened for i32x4.dot_i16x8_s), then
 * layout per row: q [k × i16] | c [nb × i32] = 8·Σq, Q4_0's −8 offset | d [nb × f32]. With forQ4 (the
 * rows then serve Q4_0 weights only) each block's values 16..31 are stored as q[j+16] − 16·q[j] (blockQ4).
 * The max propagates NaN (f32x4.max), so a NaN in x gives a NaN scale and a NaN output rather than a
 * silently zeroed block. A block of zeros has max 0: the multiplier is 0 (as in llama.cpp), so q = 0.
 */
export function quantizeActivations(x: usize, m: i32, k: i32, dst: usize, stride: i32, forQ4: i32, tid: i32, nth: i32): void {
  const nb = k >> 5;
  const end = rowPart(m, tid + 1, nth);
  for (let i = rowPart(m, tid, nth); i < end; i++) {
    const xr = x + (<usize>(<i64>i * k) << 2);
    const q = dst + <usize>(<i64>i * stride);
    const cs = q + (<usize>k << 1), ds = cs + (<usize>nb << 2);
    for (let b = 0; b < nb; b++) {
      const xb = xr + (<usize>b << 7);
      let mx = f32x4.max(f32x4.abs(v128.load(xb)), f32x4.abs(v128.load(xb, 16)));
      mx = f32x4.max(mx, f32x4.max(f32x4.abs(v128.load(xb, 32)), f32x4.abs(v128.load(xb, 48))));
      mx = f32x4.max(mx, f32x4.max(f32x4.abs(v128.load(xb, 64)), f32x4.abs(v128.load(xb, 80))));
      mx = f32x4.max(mx, f32x4.max(f32x4.abs(v128.load(xb, 96)), f32x4.abs(v128.load(xb, 112))));
      mx = f32x4.max(mx, i32x4.shuffle(mx, mx, 2, 3, 0, 1));
      const amax = max<f32>(f32x4.extract_lane(mx, 0), f32x4.extract_lane(mx, 1));
      store<f32>(ds + (<usize>b << 2), roundToF16(amax / 127));
      const dv = f32x4.splat(amax != 0 ? <f32>127 / amax : 0);
      const qb = q + (<usize>b << 6);
      let sum = i32x4.splat(0);
      let v0 = sum, v1 = sum;
      for (let c = 0; c < 4; c++) {
        const o = <usize>c << 5;
        const lo = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + o), dv)));
        const hi = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + o, 16), dv)));
        let v = i16x8.narrow_i32x4_s(lo, hi);
        sum = i32x4.add(sum, i32x4.extadd_pairwise_i16x8_s(v));
        // For Q4_0, values 16..31 are stored as q[j+16] − 16·q[j] (|·| ≤ 2159, an exact i16; see blockQ4).
        if (c == 0) v0 = v;
        else if (c == 1) v1 = v;
        else if (forQ4) v = i16x8.sub(v, i16x8.shl(c == 2 ? v0 : v1, 4));
        v128.store(qb + (<usize>c << 4), v);
      }
      store<i32>(cs + (<usize>b << 2), hsumi(sum) << 3);
    }
  }
}

/**
 * Rows of x [m, k] f32 (k a multiple of 256) → Q8_K-quantized rows for Q4_K weights, as llama.cpp's
 * quantize_row_q8_K: per super-block of 256 values iscale = 127/max|x| and d = 1/iscale (both f32),
 * q = nearest-even(x·iscale) as int16. llama.cpp divides by the signed value of largest magnitude, which
 * negates q and d together and leaves every product d·q unchanged, so max|x| serves. |q| ≤ 127: the
 * product is at most 127·(1 + 2⁻²⁴) before rounding. Layout per row (fits in quantizedRowBytes(k)):
 * q [k × i16] | s [k/256 × i16x8], Σq per sub-block of 32 (for the min term) | d [k/256 × f32].
 * A NaN gives d = NaN (NaN outputs, as for Q8_0). When iscale overflows (max|x| = 0, or below
 * 127/FLT_MAX ≈ 3.7e-37) the block is zeros with d = 0, which is also what llama.cpp's arithmetic gives.
 */
export function quantizeActivationsK(x: usize, m: i32, k: i32, dst: usize, stride: i32, tid: i32, nth: i32): void {
  const nsb = k >> 8;
  const end = rowPart(m, tid + 1, nth);
  for (let i = rowPart(m, tid, nth); i < end; i++) {
    const xr = x + (<usize>(<i64>i * k) << 2);
    const q = dst + <usize>(<i64>i * stride);
    const ss = q + (<usize>k << 1), ds = ss + (<usize>nsb << 4);
    for (let sb = 0; sb < nsb; sb++) {
      const xb = xr + (<usize>sb << 10);
      let mx = f32x4.abs(v128.load(xb));
      for (let o: usize = 16; o < 1024; o += 16) mx = f32x4.max(mx, f32x4.abs(v128.load(xb + o)));
      mx = f32x4.max(mx, i32x4.shuffle(mx, mx, 2, 3, 0, 1));
      const amax = max<f32>(f32x4.extract_lane(mx, 0), f32x4.extract_lane(mx, 1));
      const iscale: f32 = <f32>127 / amax;
      const zero = iscale == Infinity;
      store<f32>(ds + (<usize>sb << 2), zero ? 0 : <f32>1 / iscale);
      const mul = f32x4.splat(zero ? 0 : iscale);
      const qb = q + (<usize>sb << 9);
      let sums = i32x4.splat(0);
      for (let j = 0; j < 8; j++) {
        let sum = i32x4.splat(0);
        for (let c = 0; c < 4; c++) {
          const o = <usize>((j << 7) + (c << 5));
          const lo = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + o), mul)));
          const hi = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + o, 16), mul)));
          const v = i16x8.narrow_i32x4_s(lo, hi);
          v128.store(qb + (o >> 1), v);
          sum = i32x4.add(sum, i32x4.extadd_pairwise_i16x8_s(v));
        }
        store<i16>(ss + (<usize>sb << 4) + (<usize>j << 1), <i16>hsumi(sum));
      }
    }
  }
}

// ---- int8 dot products ----------------------------------------------------------------------------
//
// One block per loop step, its scale applied by a splat. (Handling four blocks per step and reducing
// their sums with a 4×4 transpose costs fewer instructions on paper, but V8 issues every load of the
// step before the arithmetic that consumes it, and 32 loaded vectors do not fit in 15 registers.)

/** Σ q_w·q_x over one Q8_0 block (w: block start, x: 32 int16), as four i32 partial sums. */
@inline function blockQ8(w: usize, x: usize): v128 {
  let s = i32x4.dot_i16x8_s(v128.load8x8_s(w, 2), v128.load(x));
  s = i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(w, 10), v128.load(x, 16)));
  s = i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(w, 18), v128.load(x, 32)));
  return i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(w, 26), v128.load(x, 48)));
}

/**
 * Σ nibble·q_x over one Q4_0 block (nibbles 0..15 widened unsigned; the −8 is applied by the caller),
 * from activations quantized with forQ4: x holds q[j] for values j = 0..15 and q[j+16] − 16·q[j] for
 * the high ones. Byte j is lo + 16·hi, so Σ byte·q[j] + Σ hi·(q[j+16] − 16·q[j]) = Σ lo·q[j] + Σ hi·q[j+16]
 * exactly: the whole byte multiplies q[j] and no mask is needed for the low nibbles (two instructions
 * and a register fewer per block: `npm run bench -- kernels-ab` 1.07–1.15x per product, outputs bit for
 * bit the same). Ranges: byte·q ≤ 255·127 and hi·|q'| ≤ 15·2159, a pair below 2³¹.
 */
@inline function blockQ4(w: usize, x: usize): v128 {
  const b0 = v128.load8x8_u(w, 2), b1 = v128.load8x8_u(w, 10); // bytes 0..7, 8..15 as u16
  let s = i32x4.dot_i16x8_s(b0, v128.load(x)); // bytes 0..7 against values 0..7
  s = i32x4.add(s, i32x4.dot_i16x8_s(b1, v128.load(x, 16))); // 8..15
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.shr_u(b0, 4), v128.load(x, 32))); // high nibbles: 16..23
  return i32x4.add(s, i32x4.dot_i16x8_s(i16x8.shr_u(b1, 4), v128.load(x, 48))); // 24..31
}

/**
 * [Σ lanes of a, Σ b, Σ c, Σ d]: four blocks' partial sums reduced into one vector, block b in lane b
 * (six shuffles and three adds for four blocks, where each block alone would need a splat of its scale).
 */
@inline function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  return sumPairs(pairSums(a, b), pairSums(c, d));
}

/** The first half of sum4: [a0 + a2, a1 + a3, b0 + b2, b1 + b3]. */
@inline function pairSums(a: v128, b: v128): v128 {
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** The second half of sum4, from pairSums(a, b) and pairSums(c, d): [Σ a, Σ b, Σ c, Σ d]. */
@inline function sumPairs(ab: v128, cd: v128): v128 {
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7));
}

/** The f16 scales of four consecutive blocks of `bytes` bytes from w, as f32 lanes 0..3. */
@inline function scales4(table: usize, w: usize, bytes: usize): v128 {
  let v = f32x4.splat(scaleAt(table, w));
  v = f32x4.replace_lane(v, 1, scaleAt(table, w + bytes));
  v = f32x4.replace_lane(v, 2, scaleAt(table, w + 2 * bytes));
  return f32x4.replace_lane(v, 3, scaleAt(table, w + 3 * bytes));
}

/**
 * One row of W · one quantized row of x: Σ_b (d_w·d_x)_b · Σ q_w·q_x, lanes accumulated in f32 and
 * summed at the end. The block sums are exact integers (|Σ| ≤ 32·128·127 < 2²⁴, so exact in f32 too).
 * Pointers advance by a block per step (V8 would otherwise recompute each address with a multiply).
 */
function dotRowQ8(w: usize, xq: usize, nb: i32, table: usize): f32 {
  const xe = xq + (<usize>nb << 6);
  let xd = xe + (<usize>nb << 2);
  let acc = f32x4.splat(0);
  for (let wb = w, xb = xq; xb < xe; wb += Q8_BYTES, xb += 64, xd += 4) {
    const scale = scaleAt(table, wb) * load<f32>(xd);
    acc = madd(f32x4.convert_i32x4_s(blockQ8(wb, xb)), f32x4.splat(scale), acc);
  }
  return hsumf(acc);
}

/**
 * The same for Q4_0, four blocks per step: their integer sums reduced into one vector (sum4), and their
 * −8 corrections, x scales and W scales each taken as one vector, so the scalar scale work and the
 * splat of a one-block step (about a third of its instructions) are shared by four blocks (`npm run bench
 * -- qmatmul --from-memory`: 1.16–1.23x at k = 4096, 1.00–1.06x at k = 768 and 3072, where it stays
 * near 2 ns per block: what is left is the integer dot products themselves).
 * `fence` is a 4-byte slot this thread owns (the output element the caller writes afterwards): V8's
 * TurboFan places every load of a loop body ahead of the arithmetic, and four blocks' 24 loaded
 * vectors do not fit in its 15 registers (the four-block step without fences ran at 0.81x of the
 * one-block loop). A store of each block's sum puts the next block's loads after that block's
 * arithmetic, at one instruction per block.
 */
function dotRowQ4(w: usize, xq: usize, nb: i32, table: usize, fence: usize): f32 {
  const xe = xq + (<usize>nb << 6), xe4 = xq + (<usize>(nb & ~3) << 6);
  let xc = xe, xd = xe + (<usize>nb << 2);
  let acc = f32x4.splat(0);
  let wb = w, xb = xq;
  for (; xb < xe4; wb += 4 * Q4_BYTES, xb += 256, xc += 16, xd += 16) {
    const s0 = blockQ4(wb, xb);
    v128.store32_lane(fence, s0, 0);
    const s1 = blockQ4(wb + Q4_BYTES, xb + 64);
    v128.store32_lane(fence, s1, 0);
    const s2 = blockQ4(wb + 2 * Q4_BYTES, xb + 128);
    v128.store32_lane(fence, s2, 0);
    const s3 = blockQ4(wb + 3 * Q4_BYTES, xb + 192);
    // Σ(nibble − 8)·q = Σ nibble·q − 8·Σq, per block.
    const s = i32x4.sub(sum4(s0, s1, s2, s3), v128.load(xc));
    acc = madd(f32x4.convert_i32x4_s(s), f32x4.mul(scales4(table, wb, Q4_BYTES), v128.load(xd)), acc);
  }
  let tail: f32 = 0;
  for (; xb < xe; wb += Q4_BYTES, xb += 64, xc += 4, xd += 4) {
    const s = hsumi(blockQ4(wb, xb)) - load<i32>(xc);
    tail += <f32>s * (scaleAt(table, wb) * load<f32>(xd));
  }
  return hsumf(acc) + tail;
}

/**
 * Σ nibble·q_x of one row's block in the repacked layout (p: its 16 nibble bytes) against the block's
 * activations already loaded (x0..x3, the forQ4 form as for blockQ4), as four i32 partial sums.
 */
@inline function rowBlockQ4x4(p: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const b0 = v128.load8x8_u(p), b1 = v128.load8x8_u(p, 8);
  let s = i32x4.dot_i16x8_s(b0, x0);
  s = i32x4.add(s, i32x4.dot_i16x8_s(b1, x1));
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.shr_u(b0, 4), x2));
  return i32x4.add(s, i32x4.dot_i16x8_s(i16x8.shr_u(b1, 4), x3));
}

/**
 * Four rows of repacked Q4_0 W (w: their group) · one row of x quantized with forQ4: lane r is row r's
 * Σ_b (d_w·d_x)_b · Σ (q_w − 8)·q_x. Per block, x is loaded once for the four rows, the rows' integer
 * sums reduce into one vector (lane = row), and the scales are one f32x4 load, so nothing is summed
 * across lanes at the end. The block sums are exact integers as in dotRowQ4. One store into `fence`
 * (a 4-byte slot this thread owns, see dotRowQ4) halfway keeps TurboFan from issuing all of the step's
 * loads first (without it: 0.93x; with one after every row: 0.97x).
 */
function dotGroupQ4x4(w: usize, xq: usize, nb: i32, fence: usize): v128 {
  const xe = xq + (<usize>nb << 6);
  let xc = xe, xd = xe + (<usize>nb << 2);
  let acc = f32x4.splat(0);
  for (let wb = w, xb = xq; xb < xe; wb += Q4X4_BYTES, xb += 64, xc += 4, xd += 4) {
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const s0 = rowBlockQ4x4(wb + 16, x0, x1, x2, x3);
    const s1 = rowBlockQ4x4(wb + 32, x0, x1, x2, x3);
    const s01 = pairSums(s0, s1);
    v128.store32_lane(fence, s01, 0);
    const s2 = rowBlockQ4x4(wb + 48, x0, x1, x2, x3);
    const s3 = rowBlockQ4x4(wb + 64, x0, x1, x2, x3);
    const s23 = pairSums(s2, s3);
    // Σ(nibble − 8)·q = Σ nibble·q − 8·Σq, with 8·Σq the same for the four rows.
    const s = i32x4.sub(sumPairs(s01, s23), v128.load32_splat(xc));
    acc = madd(f32x4.convert_i32x4_s(s), f32x4.mul(v128.load(wb), v128.load32_splat(xd)), acc);
  }
  return acc;
}

/**
 * Σ q_w·q_x of one row's Q8_0 block in the repacked layout (p: its 32 int8) against the block's
 * activations already loaded, as four i32 partial sums.
 */
@inline function rowBlockQ8x4(p: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  let s = i32x4.dot_i16x8_s(v128.load8x8_s(p), x0);
  s = i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(p, 8), x1));
  s = i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(p, 16), x2));
  return i32x4.add(s, i32x4.dot_i16x8_s(v128.load8x8_s(p, 24), x3));
}

/** dotGroupQ4x4 for repacked Q8_0 (no −8 correction). The fence: 1.41x against 1.35x without at k = 4096. */
function dotGroupQ8x4(w: usize, xq: usize, nb: i32, fence: usize): v128 {
  const xe = xq + (<usize>nb << 6);
  let xd = xe + (<usize>nb << 2);
  let acc = f32x4.splat(0);
  for (let wb = w, xb = xq; xb < xe; wb += Q8X4_BYTES, xb += 64, xd += 4) {
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const s0 = rowBlockQ8x4(wb + 16, x0, x1, x2, x3);
    const s1 = rowBlockQ8x4(wb + 48, x0, x1, x2, x3);
    const s01 = pairSums(s0, s1);
    v128.store32_lane(fence, s01, 0);
    const s2 = rowBlockQ8x4(wb + 80, x0, x1, x2, x3);
    const s3 = rowBlockQ8x4(wb + 112, x0, x1, x2, x3);
    const s23 = pairSums(s2, s3);
    const s = sumPairs(s01, s23);
    acc = madd(f32x4.convert_i32x4_s(s), f32x4.mul(v128.load(wb), v128.load32_splat(xd)), acc);
  }
  return acc;
}

/**
 * Q4_0 (type 3) or Q8_0 (type 4) rows [rows, k] in GGUF's layout at src → the repacked layout at dst,
 * ceil(rows/4)·(k/32) blocks of 80 or 144 bytes; rows past the last are zeros (scale 0, so they add 0
 * wherever they are multiplied). Scales become f32 through the f16 table (exact).
 */
export function repackX4(src: usize, dst: usize, rows: i32, k: i32, type: i32, table: usize): void {
  const nb = k >> 5;
  const blockBytes = type == 3 ? Q4_BYTES : Q8_BYTES, quants = <usize>(blockBytes - 2);
  const rowBytes = <usize>(nb * blockBytes);
  let p = dst;
  for (let g = 0; g < rows; g += 4) {
    for (let b = 0; b < nb; b++) {
      for (let r = 0; r < 4; r++) {
        const q = p + 16 + <usize>r * quants;
        if (g + r < rows) {
          const blk = src + <usize>(g + r) * rowBytes + <usize>(b * blockBytes);
          store<f32>(p + (<usize>r << 2), scaleAt(table, blk));
          memory.copy(q, blk + 2, quants);
        } else {
          store<f32>(p + (<usize>r << 2), 0);
          memory.fill(q, 0, quants);
        }
      }
      p += <usize>x4Bytes(type);
    }
  }
}

/**
 * One 64-value group of a Q4_K super-block (qs: its 32 nibble bytes; x: its 64 int16 q_x) with the
 * scale codes of its two sub-blocks splatted in s0, s1: sc_lo·Σ q_w·q_x + sc_hi·Σ q_w·q_x, as four
 * i32 partial sums. Each byte is loaded once and feeds both sub-blocks.
 */
@inline function groupInt8K(qs: usize, x: usize, s0: v128, s1: v128): v128 {
  const lowMask = i16x8.splat(0x0f);
  let b = v128.load8x8_u(qs);
  let lo = i32x4.dot_i16x8_s(v128.and(b, lowMask), v128.load(x));
  let hi = i32x4.dot_i16x8_s(i16x8.shr_u(b, 4), v128.load(x, 64));
  b = v128.load8x8_u(qs, 8);
  lo = i32x4.add(lo, i32x4.dot_i16x8_s(v128.and(b, lowMask), v128.load(x, 16)));
  hi = i32x4.add(hi, i32x4.dot_i16x8_s(i16x8.shr_u(b, 4), v128.load(x, 80)));
  b = v128.load8x8_u(qs, 16);
  lo = i32x4.add(lo, i32x4.dot_i16x8_s(v128.and(b, lowMask), v128.load(x, 32)));
  hi = i32x4.add(hi, i32x4.dot_i16x8_s(i16x8.shr_u(b, 4), v128.load(x, 96)));
  b = v128.load8x8_u(qs, 24);
  lo = i32x4.add(lo, i32x4.dot_i16x8_s(v128.and(b, lowMask), v128.load(x, 48)));
  hi = i32x4.add(hi, i32x4.dot_i16x8_s(i16x8.shr_u(b, 4), v128.load(x, 112)));
  return i32x4.add(i32x4.mul(lo, s0), i32x4.mul(hi, s1));
}

/**
 * One row of Q4_K W · one Q8_K row (quantizeActivationsK): per super-block the exact integer sums
 * S = Σ_j sc_j·Σ q_w·q_x and M = Σ_j m_j·Σ q_x, then (d_w·d_x)·S − (dmin_w·d_x)·M in f32. Each lane of
 * S sums 64 products of at most 15·127·63, M's lanes two sub-blocks of at most 63·32·127: all below
 * 2²⁴, so their conversions to f32 are exact too.
 */
function dotRowInt8K(w: usize, xq: usize, nsb: i32, table: usize): f32 {
  const xe = xq + (<usize>nsb << 9);
  let xs = xe, xd = xe + (<usize>nsb << 4);
  let acc = f32x4.splat(0);
  for (let wb = w, xb = xq; xb < xe; wb += Q4K_BYTES, xb += 512, xs += 16, xd += 4) {
    const codes = scalesMinsK(wb);
    const sc = i16x8.extend_low_i8x16_u(codes);
    const sc03 = i32x4.extend_low_i16x8_u(sc), sc47 = i32x4.extend_high_i16x8_u(sc);
    let s = groupInt8K(wb + 16, xb, i32x4.shuffle(sc03, sc03, 0, 0, 0, 0), i32x4.shuffle(sc03, sc03, 1, 1, 1, 1));
    s = i32x4.add(s, groupInt8K(wb + 48, xb + 128, i32x4.shuffle(sc03, sc03, 2, 2, 2, 2), i32x4.shuffle(sc03, sc03, 3, 3, 3, 3)));
    s = i32x4.add(s, groupInt8K(wb + 80, xb + 256, i32x4.shuffle(sc47, sc47, 0, 0, 0, 0), i32x4.shuffle(sc47, sc47, 1, 1, 1, 1)));
    s = i32x4.add(s, groupInt8K(wb + 112, xb + 384, i32x4.shuffle(sc47, sc47, 2, 2, 2, 2), i32x4.shuffle(sc47, sc47, 3, 3, 3, 3)));
    const mins = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(codes), v128.load(xs));
    const dx = load<f32>(xd);
    acc = madd(f32x4.convert_i32x4_s(s), f32x4.splat(scaleAt(table, wb) * dx), acc);
    acc = madd(f32x4.convert_i32x4_s(mins), f32x4.splat(-(scaleAt(table, wb + 2) * dx)), acc);
  }
  return hsumf(acc);
}

/**
 * out[m, n] (+)= x̂ · Wᵀ with x̂ the quantized activations (quantizeActivations, or quantizeActivationsK
 * for Q4_K; `stride` bytes per row).
 * Thread tid takes a range of W rows; within it, W rows go in groups that fit in L1 (about 16 KiB) and
 * each group is swept over every row of x, so for prefill a weight is read from memory once per thread.
 */
export function qmatmulInt8(xq: usize, stride: i32, w: usize, out: usize, m: i32, n: i32, k: i32, type: i32,
                            accumulate: i32, table: usize, tid: i32, nth: i32): void {
  const nb = k >> 5;
  const rowBytes = rowBytesOf(k, type);
  const j0 = colStart(n, tid, nth), j1 = colStart(n, tid + 1, nth);
  // Thread shares start at multiples of 16, so the repacked groups of four rows never straddle two threads.
  const group = type >= 3 ? max<i32>(4, (16384 / <i32>rowBytes) & ~3) : max<i32>(1, 16384 / <i32>rowBytes);
  for (let jb = j0; jb < j1; jb += group) {
    const je = min32(jb + group, j1);
    for (let i = 0; i < m; i++) {
      const xr = xq + <usize>(<i64>i * stride);
      const o = out + (<usize>(<i64>i * n) << 2);
      if (type >= 3) {
        qmatmulRowX4(xr, w + <usize>jb * rowBytes, o, nb, type, jb, je, accumulate);
        continue;
      }
      let wr = w + <usize>jb * rowBytes;
      for (let j = jb; j < je; j++) {
        const op = o + (<usize>j << 2);
        const prev = accumulate ? load<f32>(op) : 0; // read before dotRowQ4 uses the slot as its fence
        let r = type == 2 ? dotRowInt8K(wr, xr, k >> 8, table) : type == 1 ? dotRowQ4(wr, xr, nb, table, op) : dotRowQ8(wr, xr, nb, table);
        if (accumulate) r = prev + r;
        store<f32>(op, r);
        wr += rowBytes;
      }
    }
  }
}

/** Outputs jb..je of one row of x (o: its output row) from repacked groups (type 3 or 4) starting at wg. */
function qmatmulRowX4(xr: usize, wg: usize, o: usize, nb: i32, type: i32, jb: i32, je: i32, accumulate: i32): void {
  const groupBytes = <usize>(nb * x4Bytes(type));
  for (let j = jb; j < je; j += 4) {
    const op = o + (<usize>j << 2);
    if (j + 4 <= je) {
      const prev = accumulate ? v128.load(op) : f32x4.splat(0); // read before the kernel's fence store
      let r = type == 3 ? dotGroupQ4x4(wg, xr, nb, op) : dotGroupQ8x4(wg, xr, nb, op);
      if (accumulate) r = f32x4.add(prev, r);
      v128.store(op, r);
    } else {
      // The matrix's last group, with 1..3 real rows (je = n here): only their outputs are written.
      const cnt = je - j;
      const p0 = accumulate ? load<f32>(op) : 0, p1 = accumulate && cnt > 1 ? load<f32>(op, 4) : 0;
      const p2 = accumulate && cnt > 2 ? load<f32>(op, 8) : 0;
      const r = type == 3 ? dotGroupQ4x4(wg, xr, nb, op) : dotGroupQ8x4(wg, xr, nb, op);
      store<f32>(op, accumulate ? p0 + f32x4.extract_lane(r, 0) : f32x4.extract_lane(r, 0));
      if (cnt > 1) store<f32>(op, accumulate ? p1 + f32x4.extract_lane(r, 1) : f32x4.extract_lane(r, 1), 4);
      if (cnt > 2) store<f32>(op, accumulate ? p2 + f32x4.extract_lane(r, 2) : f32x4.extract_lane(r, 2), 8);
    }
    wg += groupBytes;
  }
}

// ---- dequantization -------------------------------------------------------------------------------

/** One block at p → 32 f32 at dst (16-byte aligned not required), each q·d correctly rounded. */
@inline function dequantBlock(p: usize, type: i32, dst: usize, table: usize): void {
  if (type == 0) dequantQ8(p + 2, scaleAt(table, p), dst);
  else dequantQ4(p + 2, scaleAt(table, p), dst);
}

/** A Q8_0 block's 32 int8 at q with scale d → 32 f32 at dst, each q·d correctly rounded. */
@inline function dequantQ8(q: usize, d: f32, dst: usize): void {
  const dv = f32x4.splat(d);
  for (let c: usize = 0; c < 4; c++) {
    const t = v128.load8x8_s(q + (c << 3));
    v128.store(dst + (c << 5), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(t)), dv));
    v128.store(dst + (c << 5), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(t)), dv), 16);
  }
}

/** A Q4_0 block's 16 nibble bytes at q with scale d → 32 f32 at dst, each (nibble − 8)·d correctly rounded. */
@inline function dequantQ4(q: usize, d: f32, dst: usize): void {
  const dv = f32x4.splat(d);
  const b0 = v128.load8x8_u(q), b1 = v128.load8x8_u(q, 8);
  const lowMask = i16x8.splat(0x0f), eight = i16x8.splat(8);
  const v0 = i16x8.sub(v128.and(b0, lowMask), eight), v1 = i16x8.sub(v128.and(b1, lowMask), eight);
  const v2 = i16x8.sub(i16x8.shr_u(b0, 4), eight), v3 = i16x8.sub(i16x8.shr_u(b1, 4), eight);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v0)), dv));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v0)), dv), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v1)), dv), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v1)), dv), 48);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v2)), dv), 64);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v2)), dv), 80);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v3)), dv), 96);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v3)), dv), 112);
}

/**
 * Sub-block j (32 values) of the Q4_K super-block at p → 32 f32 at dst, each d·sc·q − dmin·m rounded as
 * llama.cpp rounds it: d·sc and dmin·m are exact in f32 (11-bit by 6-bit products) and so is (d·sc)·q,
 * so the subtraction is the one rounding. (Hence also the same bits whether madd fuses or not.)
 */
@inline function dequantSubK(p: usize, j: i32, dst: usize, table: usize): void {
  const codes = scaleMinK(p, j);
  const step = f32x4.splat(scaleAt(table, p) * <f32>(codes & 0xff));
  const off = f32x4.splat(scaleAt(table, p + 2) * <f32>(codes >> 8));
  const qs = p + 16 + (<usize>(j >> 1) << 5);
  const shift = (j & 1) << 2, lowMask = i16x8.splat(0x0f);
  for (let c: usize = 0; c < 4; c++) {
    const v = v128.and(i16x8.shr_u(v128.load8x8_u(qs + (c << 3)), shift), lowMask);
    v128.store(dst + (c << 5), f32x4.sub(f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(v)), step), off));
    v128.store(dst + (c << 5), f32x4.sub(f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(v)), step), off), 16);
  }
}

/** The 32-value block blk of row `row` of W [·, k] → 32 f32 at dst (for Q4_K, a sub-block of a super-block). */
@inline function dequantBlockAt(w: usize, k: i32, row: i32, blk: i32, type: i32, dst: usize, table: usize): void {
  if (type >= 3) {
    const r = <usize>(row & 3), bytes = <usize>x4Bytes(type);
    const g = w + <usize>(row >> 2) * <usize>(k >> 5) * bytes + <usize>blk * bytes;
    if (type == 3) dequantQ4(g + 16 + (r << 4), load<f32>(g + (r << 2)), dst);
    else dequantQ8(g + 16 + (r << 5), load<f32>(g + (r << 2)), dst);
    return;
  }
  const rp = w + <usize>row * rowBytesOf(k, type);
  if (type == 2) dequantSubK(rp + <usize>(blk >> 3) * Q4K_BYTES, blk & 7, dst, table);
  else dequantBlock(rp + <usize>blk * <usize>(type == 0 ? Q8_BYTES : Q4_BYTES), type, dst, table);
}

/** out[i, :] = dequantized row ids[i] of W (ids checked by the caller); rows split across threads. */
export function dequantizeRows(w: usize, ids: usize, out: usize, count: i32, k: i32, type: i32, table: usize, tid: i32, nth: i32): void {
  const nb = k >> 5;
  const end = rowPart(count, tid + 1, nth);
  for (let i = rowPart(count, tid, nth); i < end; i++) {
    const row = load<i32>(ids + (<usize>i << 2));
    let dst = out + (<usize>(<i64>i * k) << 2);
    for (let b = 0; b < nb; b++) {
      dequantBlockAt(w, k, row, b, type, dst, table);
      dst += 128;
    }
  }
}

// ---- f32 strategy, m = 1: stream W once ---------------------------------------------------------

/** Σ q·x over one Q8_0 block as an f32x4 of partial sums (x: 32 f32). */
@inline function blockQ8f(w: usize, x: usize): v128 {
  const t0 = v128.load8x8_s(w, 2), t1 = v128.load8x8_s(w, 10), t2 = v128.load8x8_s(w, 18), t3 = v128.load8x8_s(w, 26);
  let s = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(t0)), v128.load(x));
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(t0)), v128.load(x, 16), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(t1)), v128.load(x, 32), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(t1)), v128.load(x, 48), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(t2)), v128.load(x, 64), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(t2)), v128.load(x, 80), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(t3)), v128.load(x, 96), s);
  return madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(t3)), v128.load(x, 112), s);
}

/** Σ (nibble − 8)·x over one Q4_0 block as an f32x4 of partial sums. */
@inline function blockQ4f(w: usize, x: usize): v128 {
  const b0 = v128.load8x8_u(w, 2), b1 = v128.load8x8_u(w, 10);
  const lowMask = i16x8.splat(0x0f), eight = i16x8.splat(8);
  const v0 = i16x8.sub(v128.and(b0, lowMask), eight), v1 = i16x8.sub(v128.and(b1, lowMask), eight);
  const v2 = i16x8.sub(i16x8.shr_u(b0, 4), eight), v3 = i16x8.sub(i16x8.shr_u(b1, 4), eight);
  let s = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v0)), v128.load(x));
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v0)), v128.load(x, 16), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v1)), v128.load(x, 32), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v1)), v128.load(x, 48), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v2)), v128.load(x, 64), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v2)), v128.load(x, 80), s);
  s = madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v3)), v128.load(x, 96), s);
  return madd(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v3)), v128.load(x, 112), s);
}

/** One row of W · x (f32): per block the f32x4 of partial sums Σ q·x, scaled by d_w, accumulated. */
function dotRowF32(w: usize, x: usize, nb: i32, type: i32, table: usize): f32 {
  let acc = f32x4.splat(0);
  if (type == 0) {
    for (let b = 0; b < nb; b++) {
      const wb = w + <usize>(b * Q8_BYTES);
      acc = madd(blockQ8f(wb, x + (<usize>b << 7)), f32x4.splat(scaleAt(table, wb)), acc);
    }
  } else {
    for (let b = 0; b < nb; b++) {
      const wb = w + <usize>(b * Q4_BYTES);
      acc = madd(blockQ4f(wb, x + (<usize>b << 7)), f32x4.splat(scaleAt(table, wb)), acc);
    }
  }
  return hsumf(acc);
}

/**
 * One 64-value group of a Q4_K super-block (qs: its 32 nibble bytes; x: its 64 f32) · x, each weight
 * dequantized as dequantSubK does (q·step − off, with the sub-blocks' steps and negated offsets
 * splatted), as an f32x4 of partial sums. Two chains (one per sub-block) halve the add latency.
 */
@inline function groupF32K(qs: usize, x: usize, s0: v128, o0: v128, s1: v128, o1: v128): v128 {
  const lowMask = i16x8.splat(0x0f);
  let lo = f32x4.splat(0), hi = f32x4.splat(0);
  for (let c: usize = 0; c < 4; c++) {
    const b = v128.load8x8_u(qs + (c << 3));
    const l = v128.and(b, lowMask), h = i16x8.shr_u(b, 4);
    const xc = x + (c << 5);
    lo = madd(madd(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(l)), s0, o0), v128.load(xc), lo);
    lo = madd(madd(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(l)), s0, o0), v128.load(xc, 16), lo);
    hi = madd(madd(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(h)), s1, o1), v128.load(xc, 128), hi);
    hi = madd(madd(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(h)), s1, o1), v128.load(xc, 144), hi);
  }
  return f32x4.add(lo, hi);
}

/** One row of Q4_K W · x (f32): the steps d·sc and offsets −dmin·m of a super-block as vectors, then its four groups. */
function dotRowF32K(w: usize, x: usize, nsb: i32, table: usize): f32 {
  let acc = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const p = w + <usize>(sb * Q4K_BYTES), xb = x + (<usize>sb << 10);
    const codes = scalesMinsK(p);
    const sc = i16x8.extend_low_i8x16_u(codes), mn = i16x8.extend_high_i8x16_u(codes);
    const d = f32x4.splat(scaleAt(table, p)), nmin = f32x4.splat(-scaleAt(table, p + 2));
    const st03 = f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(sc)), d);
    const st47 = f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(sc)), d);
    const of03 = f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(mn)), nmin);
    const of47 = f32x4.mul(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(mn)), nmin);
    acc = f32x4.add(acc, groupF32K(p + 16, xb, i32x4.shuffle(st03, st03, 0, 0, 0, 0), i32x4.shuffle(of03, of03, 0, 0, 0, 0),
                                   i32x4.shuffle(st03, st03, 1, 1, 1, 1), i32x4.shuffle(of03, of03, 1, 1, 1, 1)));
    acc = f32x4.add(acc, groupF32K(p + 48, xb + 256, i32x4.shuffle(st03, st03, 2, 2, 2, 2), i32x4.shuffle(of03, of03, 2, 2, 2, 2),
                                   i32x4.shuffle(st03, st03, 3, 3, 3, 3), i32x4.shuffle(of03, of03, 3, 3, 3, 3)));
    acc = f32x4.add(acc, groupF32K(p + 80, xb + 512, i32x4.shuffle(st47, st47, 0, 0, 0, 0), i32x4.shuffle(of47, of47, 0, 0, 0, 0),
                                   i32x4.shuffle(st47, st47, 1, 1, 1, 1), i32x4.shuffle(of47, of47, 1, 1, 1, 1)));
    acc = f32x4.add(acc, groupF32K(p + 112, xb + 768, i32x4.shuffle(st47, st47, 2, 2, 2, 2), i32x4.shuffle(of47, of47, 2, 2, 2, 2),
                                   i32x4.shuffle(st47, st47, 3, 3, 3, 3), i32x4.shuffle(of47, of47, 3, 3, 3, 3)));
  }
  return hsumf(acc);
}

// ---- f32 strategy, m > 1: packed GEMM on dequantized panels -----------------------------------------

/**
 * W rows j0..j0+nr (nr ≤ NR; rows past nr are zeros), depths pc..pc+kc (whole blocks) → one packed B
 * panel [kc][NR], the layout the micro-kernel reads. Four rows at a time: each row's block is
 * dequantized into tmp, then 4×4 transposes write four depths × four columns per step.
 */
function packWPanel(w: usize, k: i32, type: i32, j0: i32, nr: i32, pc: i32, kc: i32, dst: usize, tmp: usize, table: usize): void {
  const row = <usize>(NR << 2);
  const b0 = pc >> 5, b1 = (pc + kc) >> 5;
  for (let q = 0; q < NR; q += 4) {
    let d = dst + (<usize>q << 2);
    for (let blk = b0; blk < b1; blk++) {
      for (let r = 0; r < 4; r++) {
        const t = tmp + (<usize>r << 7);
        if (q + r < nr) dequantBlockAt(w, k, j0 + q + r, blk, type, t, table);
        else memory.fill(t, 0, 128);
      }
      for (let c: usize = 0; c < 128; c += 16) {
        const r0 = v128.load(tmp + c), r1 = v128.load(tmp + 128 + c), r2 = v128.load(tmp + 256 + c), r3 = v128.load(tmp + 384 + c);
        const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        v128.store(d, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(d + row, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
        v128.store(d + 2 * row, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
        v128.store(d + 3 * row, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
        d += 4 * row;
      }
    }
  }
}

/** A partial tile through the scratch tile, with the same arithmetic as a full one (as in gemm.ts). */
function edgeTile(kc: i32, pa: usize, pb: usize, cp: usize, ldc: usize, load: bool, mr: i32, nr: i32, tile: usize): void {
  memory.fill(tile, 0, <usize>TILE_BYTES);
  if (load) {
    for (let i = 0; i < mr; i++) memory.copy(tile + <usize>(i * NR * 4), cp + <usize>i * ldc, <usize>nr << 2);
  }
  microKernel(kc, pa, pb, tile, <usize>(NR * 4), load);
  for (let i = 0; i < mr; i++) memory.copy(cp + <usize>i * ldc, tile + <usize>(i * NR * 4), <usize>nr << 2);
}

/** out[:, j0:j1] (+)= x · W[j0:j1]ᵀ by the packed algorithm of gemm.ts, B panels dequantized from W. */
function gemmDequant(x: usize, w: usize, out: usize, m: i32, k: i32, n: i32, type: i32, accumulate: i32,
                     ws: usize, table: usize, j0: i32, j1: i32): void {
  const ap = ws, bp = ap + <usize>AP_BYTES, tile = bp + <usize>BP_BYTES, tmp = tile + <usize>TILE_BYTES;
  const ldc = <usize>n << 2;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min32(NC, j1 - jc);
    for (let pc = 0; pc < k; pc += QKC) {
      const kc = min32(QKC, k - pc);
      const panelBytes = <usize>kc << 2;
      for (let jr = 0; jr < nc; jr += NR) packWPanel(w, k, type, jc + jr, min32(NR, nc - jr), pc, kc, bp + <usize>jr * panelBytes, tmp, table);
      const load = accumulate != 0 || pc > 0;
      for (let ic = 0; ic < m; ic += MC) {
        const mc = min32(MC, m - ic);
        packA(x + ((<usize>ic * <usize>k + <usize>pc) << 2), k, kc, mc, ap);
        for (let jr = 0; jr < nc; jr += NR) {
          const pb = bp + <usize>jr * panelBytes;
          const nr = min32(NR, nc - jr);
          let cp = out + ((<usize>ic * <usize>n + <usize>(jc + jr)) << 2);
          for (let ir = 0; ir < mc; ir += MR) {
            const pa = ap + <usize>ir * panelBytes;
            const mr = min32(MR, mc - ir);
            if (mr == MR && nr == NR) microKernel(kc, pa, pb, cp, ldc, load);
            else edgeTile(kc, pa, pb, cp, ldc, load, mr, nr, tile);
            cp += ldc * <usize>MR;
          }
        }
      }
    }
  }
}

/**
 * out[m, n] (+)= x[m, k] · Wᵀ with W dequantized on the fly (no rounding of x). m = 1 streams W rows;
 * m > 1 runs the packed GEMM, each thread on a range of NR-column panels with its own scratch.
 */
export function qmatmulF32(x: usize, w: usize, out: usize, m: i32, n: i32, k: i32, type: i32, accumulate: i32,
                           scratch: usize, table: usize, tid: i32, nth: i32): void {
  const nb = k >> 5;
  if (m == 1 && type < 3) { // (the repacked types take the packed path below at any m)
    const rowBytes = rowBytesOf(k, type);
    const j1 = colStart(n, tid + 1, nth);
    for (let j = colStart(n, tid, nth); j < j1; j++) {
      const wr = w + <usize>j * rowBytes;
      let r = type == 2 ? dotRowF32K(wr, x, k >> 8, table) : dotRowF32(wr, x, nb, type, table);
      const op = out + (<usize>j << 2);
      if (accumulate) r = load<f32>(op) + r;
      store<f32>(op, r);
    }
    return;
  }
  const np = (n + NR - 1) / NR;
  const jb = share(np, tid, nth) * NR, je = min32(share(np, tid + 1, nth) * NR, n);
  if (jb < je) gemmDequant(x, w, out, m, k, n, type, accumulate, scratch + <usize>tid * <usize>SCRATCH_BYTES, table, jb, je);
}
