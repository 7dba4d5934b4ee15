/**
 * GGUF's Q4_K "k-quant" (ggml type 12), byte-compatible with llama.cpp (ggml-common.h `block_q4_K`).
 *
 * A super-block holds QK_K = 256 values in 144 bytes:
 *
 *   bytes 0..1    f16 d      scale of the sub-block scales
 *   bytes 2..3    f16 dmin   scale of the sub-block mins
 *   bytes 4..15   scales     8 sub-blocks (32 values each), each with a 6-bit scale sc and a 6-bit min m:
 *                              sub-block j < 4:  sc = bits 0..5 of scales[j],  m = bits 0..5 of scales[j + 4]
 *                              sub-block j >= 4: sc = low nibble of scales[j + 4]  | (bits 6..7 of scales[j - 4]) << 4
 *                                                m  = high nibble of scales[j + 4] | (bits 6..7 of scales[j])     << 4
 *   bytes 16..143 qs         4-bit quants q, 32 bytes per 64 values: in the g-th 64-value group, value l (0..31)
 *                            is the low nibble of byte 32g + l and value 32 + l its high nibble
 *
 *   value = d·sc·q − dmin·m   (the min is always subtracted: mins are stored as non-negative offsets)
 *
 * The layout above is how llama.cpp's `get_scale_min_k4` and `dequantize_row_q4_K` read a block.
 * The quantizer follows the idea of llama.cpp's `quantize_row_q4_K_ref`: fit each sub-block's scale and
 * offset by weighted least squares over a small grid of candidate scales, then quantize the eight
 * scales and mins to 6 bits against the super-block's d and dmin. Unlike the reference, it tries the
 * neighbouring 6-bit codes too and keeps the pair with the least error, which matters in super-blocks
 * with an outlier (the other sub-blocks' scales would otherwise round to 0). It is not bit-identical
 * to llama.cpp's output, but its files decode identically in both (the decoder is exact).
 */
import { QUANT_BLOCKS } from './blocks.js';
import { f16ToF32Table, f32ToF16 } from './f16.js';

/** Values per super-block (256; dtypes/blocks.ts). */
export const QK_K = QUANT_BLOCKS.q4_k.values;
/** Bytes per Q4_K super-block (144; dtypes/blocks.ts). */
export const Q4_K_BLOCK_BYTES = QUANT_BLOCKS.q4_k.bytes;

const SUB_BLOCK = 32;
const SUB_BLOCKS = QK_K / SUB_BLOCK;
const SCALES_OFFSET = 4;
const QS_OFFSET = 16;
/** Largest 4-bit quant and largest 6-bit scale/min code. */
const Q_MAX = 15;
const CODE_MAX = 63;

function superBlockCount(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0 || n % QK_K !== 0) {
    throw new RangeError(`Q4_K: ${what} ${n} is not a whole number of ${QK_K}-value super-blocks`);
  }
  return n / QK_K;
}

// ---------------------------------------------------------------------------------------------------
// The 12-byte scales field

/** Sub-block j's 6-bit scale code from the 12 scale bytes at `b[at..]`. */
export function scaleCode(b: Uint8Array, at: number, j: number): number {
  return j < 4 ? b[at + j] & 63 : (b[at + j + 4] & 0xf) | ((b[at + j - 4] >> 6) << 4);
}

/** Sub-block j's 6-bit min code from the 12 scale bytes at `b[at..]`. */
export function minCode(b: Uint8Array, at: number, j: number): number {
  return j < 4 ? b[at + j + 4] & 63 : (b[at + j + 4] >> 4) | ((b[at + j] >> 6) << 4);
}

/** Packs eight 6-bit scale codes and eight 6-bit min codes into the 12 bytes at `out[at..]`. */
export function packScalesAndMins(sc: ArrayLike<number>, m: ArrayLike<number>, out: Uint8Array, at: number): void {
  out.fill(0, at, at + 12);
  for (let j = 0; j < SUB_BLOCKS; j++) {
    if (j < 4) {
      out[at + j] |= sc[j];
      out[at + j + 4] |= m[j];
    } else {
      // The low nibbles share byte j + 4; the two high bits ride in the spare top bits of bytes 0..7.
      out[at + j + 4] = (sc[j] & 0xf) | ((m[j] & 0xf) << 4);
      out[at + j - 4] |= (sc[j] >> 4) << 6;
      out[at + j] |= (m[j] >> 4) << 6;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoder

/** Decodes `n` values (a multiple of 256) from Q4_K bytes (exactly n/256·144 of them). */
export function dequantizeQ4_K(bytes: Uint8Array, n: number): Float32Array {
  const blocks = superBlockCount(n, 'value count');
  if (bytes.length !== blocks * Q4_K_BLOCK_BYTES) {
    throw new RangeError(`Q4_K: ${n} values take ${blocks * Q4_K_BLOCK_BYTES} bytes, got ${bytes.length}`);
  }
  const f16 = f16ToF32Table();
  const out = new Float32Array(n);
  const step = new Float64Array(SUB_BLOCKS);
  const offset = new Float64Array(SUB_BLOCKS);
  for (let blk = 0, src = 0, dst = 0; blk < blocks; blk++, src += Q4_K_BLOCK_BYTES, dst += QK_K) {
    const d = f16[bytes[src] | (bytes[src + 1] << 8)];
    const dmin = f16[bytes[src + 2] | (bytes[src + 3] << 8)];
    for (let j = 0; j < SUB_BLOCKS; j++) {
      // Both products are exact in f32 (11-bit mantissa times 6 bits), as in llama.cpp.
      step[j] = Math.fround(d * scaleCode(bytes, src + SCALES_OFFSET, j));
      offset[j] = Math.fround(dmin * minCode(bytes, src + SCALES_OFFSET, j));
    }
    for (let g = 0; g < QK_K / 64; g++) {
      const qs = src + QS_OFFSET + 32 * g;
      const o = dst + 64 * g;
      const lowStep = step[2 * g], lowOffset = offset[2 * g];
      const highStep = step[2 * g + 1], highOffset = offset[2 * g + 1];
      for (let l = 0; l < 32; l++) {
        const q = bytes[qs + l];
        // step·q (≤ 21 bits) and the offset (≤ 17 bits) are exact, and so is their f64 difference unless
        // their exponents are ~30 apart: the one rounding, on the store, is llama.cpp's f32 subtraction.
        out[o + l] = lowStep * (q & 0xf) - lowOffset;
        out[o + 32 + l] = highStep * (q >> 4) - highOffset;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Encoder

/** A sub-block's fit: value ≈ scale·q − offset, q in 0..15, offset ≥ 0. */
interface SubBlockFit { scale: number; offset: number }

/** Scratch buffers shared by one quantizeQ4_K call. */
interface Scratch {
  weights: Float64Array;
  levels: Uint8Array;
}

/** Nearest 4-bit level of `v` for value = step·q − offset (0 when the step is 0). */
function nearestLevel(v: number, step: number, offset: number): number {
  if (step === 0) return 0;
  const q = Math.round((v + offset) / step);
  return q < 0 ? 0 : q > Q_MAX ? Q_MAX : q;
}

/** Σ w·(step·q − offset − x)² with every q at its nearest level. */
function weightedError(x: Float32Array, at: number, w: Float64Array, step: number, offset: number): number {
  let err = 0;
  for (let i = 0; i < SUB_BLOCK; i++) {
    const v = x[at + i];
    const diff = step * nearestLevel(v, step, offset) - offset - v;
    err += w[i] * diff * diff;
  }
  return err;
}

/**
 * llama.cpp's importance weights for the reference quantizer: |x| plus the sub-block's RMS, so large
 * values count more (they dominate dot products) without ignoring small ones.
 */
function importanceWeights(x: Float32Array, at: number, w: Float64Array): void {
  let sumSq = 0;
  for (let i = 0; i < SUB_BLOCK; i++) sumSq += x[at + i] * x[at + i];
  const rms = Math.sqrt(sumSq / SUB_BLOCK);
  for (let i = 0; i < SUB_BLOCK; i++) w[i] = rms + Math.abs(x[at + i]);
}

/**
 * Fits scale and offset for one sub-block (after make_qkx2_quants): starting from the min..max range,
 * try 21 candidate inverse scales around 15/(max − min); for each, round to levels and solve the
 * weighted least-squares line through (q, x); keep the fit with the smallest weighted squared error.
 * The offset is clamped to ≥ 0 because Q4_K can only subtract a min.
 */
function fitSubBlock(x: Float32Array, at: number, w: Float64Array, levels: Uint8Array): SubBlockFit {
  let lo = x[at], hi = x[at], sumW = 0, sumWX = 0;
  for (let i = 0; i < SUB_BLOCK; i++) {
    const v = x[at + i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    sumW += w[i];
    sumWX += w[i] * v;
  }
  if (lo > 0) lo = 0; // an all-positive sub-block is fitted by the scale alone
  if (hi === lo) return { scale: 0, offset: -lo };
  let best: SubBlockFit = { scale: (hi - lo) / Q_MAX, offset: -lo };
  let bestErr = weightedError(x, at, w, best.scale, best.offset);
  for (let k = 0; k <= 20; k++) {
    const inverse = (Q_MAX - 1 + 0.1 * k) / (hi - lo);
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < SUB_BLOCK; i++) {
      const q = Math.min(Q_MAX, Math.max(0, Math.round(inverse * (x[at + i] - lo))));
      levels[i] = q;
      sumL += w[i] * q;
      sumL2 += w[i] * q * q;
      sumXL += w[i] * q * x[at + i];
    }
    const det = sumW * sumL2 - sumL * sumL;
    if (!(det > 0)) continue;
    let scale = (sumW * sumXL - sumWX * sumL) / det;
    let intercept = (sumL2 * sumWX - sumL * sumXL) / det;
    if (intercept > 0) { // would need adding a min: refit through the origin instead
      intercept = 0;
      scale = sumXL / sumL2;
    }
    if (!(scale > 0)) continue;
    const err = weightedError(x, at, w, scale, -intercept);
    if (err < bestErr) {
      bestErr = err;
      best = { scale, offset: -intercept };
    }
  }
  return best;
}

/** f16 bits of a super-block scale, with a clear error when it overflows f16. */
function superScaleBits(v: number, what: string, blk: number): number {
  const h = f32ToF16(v);
  if ((h & 0x7c00) === 0x7c00) {
    throw new RangeError(`Q4_K: super-block ${blk}: ${what} ${v} overflows f16 (values too large for Q4_K; keep this tensor F32 or F16)`);
  }
  return h;
}

function clampCode(c: number): number {
  return c < 0 ? 0 : c > CODE_MAX ? CODE_MAX : c;
}

/**
 * The 6-bit (scale, min) codes for one sub-block: the nearest codes and their neighbours, judged by
 * the weighted error once the sub-block is re-quantized with them.
 */
function chooseCodes(x: Float32Array, at: number, w: Float64Array, fit: SubBlockFit, d: number, dmin: number): [number, number] {
  const sc0 = d > 0 ? clampCode(Math.round(fit.scale / d)) : 0;
  const m0 = dmin > 0 ? clampCode(Math.round(fit.offset / dmin)) : 0;
  let best: [number, number] = [sc0, m0];
  let bestErr = Infinity;
  for (let ds = d > 0 ? -1 : 0; ds <= (d > 0 ? 1 : 0); ds++) {
    for (let dm = dmin > 0 ? -1 : 0; dm <= (dmin > 0 ? 1 : 0); dm++) {
      const sc = clampCode(sc0 + ds), m = clampCode(m0 + dm);
      const err = weightedError(x, at, w, Math.fround(d * sc), Math.fround(dmin * m));
      if (err < bestErr) {
        bestErr = err;
        best = [sc, m];
      }
    }
  }
  return best;
}

function checkFinite(x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new RangeError(`Q4_K: value ${i} is ${x[i]}; only finite values can be quantized`);
  }
}

/** Quantizes one super-block x[at..at+256) into out[dst..dst+144). */
function quantizeSuperBlock(x: Float32Array, at: number, out: Uint8Array, dst: number, blk: number, s: Scratch): void {
  const fits: SubBlockFit[] = [];
  let maxScale = 0, maxOffset = 0;
  for (let j = 0; j < SUB_BLOCKS; j++) {
    importanceWeights(x, at + SUB_BLOCK * j, s.weights);
    const fit = fitSubBlock(x, at + SUB_BLOCK * j, s.weights, s.levels);
    fits.push(fit);
    maxScale = Math.max(maxScale, fit.scale);
    maxOffset = Math.max(maxOffset, fit.offset);
  }
  // The largest scale and min get code 63; the codes below are chosen against the f16-rounded d and dmin.
  const dBits = superScaleBits(maxScale / CODE_MAX, 'scale', blk);
  const dminBits = superScaleBits(maxOffset / CODE_MAX, 'min', blk);
  const f16 = f16ToF32Table();
  const d = f16[dBits], dmin = f16[dminBits];
  const sc = new Uint8Array(SUB_BLOCKS), m = new Uint8Array(SUB_BLOCKS);
  for (let j = 0; j < SUB_BLOCKS; j++) {
    importanceWeights(x, at + SUB_BLOCK * j, s.weights);
    [sc[j], m[j]] = chooseCodes(x, at + SUB_BLOCK * j, s.weights, fits[j], d, dmin);
  }
  out[dst] = dBits & 0xff;
  out[dst + 1] = dBits >> 8;
  out[dst + 2] = dminBits & 0xff;
  out[dst + 3] = dminBits >> 8;
  packScalesAndMins(sc, m, out, dst + SCALES_OFFSET);
  for (let g = 0; g < QK_K / 64; g++) {
    const lowStep = Math.fround(d * sc[2 * g]), lowOffset = Math.fround(dmin * m[2 * g]);
    const highStep = Math.fround(d * sc[2 * g + 1]), highOffset = Math.fround(dmin * m[2 * g + 1]);
    const src = at + 64 * g, qs = dst + QS_OFFSET + 32 * g;
    for (let l = 0; l < 32; l++) {
      out[qs + l] = nearestLevel(x[src + l], lowStep, lowOffset) | (nearestLevel(x[src + 32 + l], highStep, highOffset) << 4);
    }
  }
}

/**
 * Quantizes values (a multiple of 256, all finite) to Q4_K bytes. Throws a RangeError on NaN/Infinity
 * and on super-blocks whose range overflows f16 scales (|values| beyond about 1.5e7).
 */
export function quantizeQ4_K(x: Float32Array): Uint8Array {
  const blocks = superBlockCount(x.length, 'value count');
  checkFinite(x);
  const out = new Uint8Array(blocks * Q4_K_BLOCK_BYTES);
  const scratch: Scratch = { weights: new Float64Array(SUB_BLOCK), levels: new Uint8Array(SUB_BLOCK) };
  for (let blk = 0; blk < blocks; blk++) quantizeSuperBlock(x, blk * QK_K, out, blk * Q4_K_BLOCK_BYTES, blk, scratch);
  return out;
}
