/**
 * The reference backend: plain TypeScript loops written for clarity, not speed. It is the oracle
 * the fast backends are tested against, so every function here reads like its definition.
 * Accumulations use float64 locals so the reference is at least as accurate as anything it checks.
 */
import { f16ToF32, f16ToF32Table, f32ToF16 } from '../dtypes/f16.js';
import { Q4_K_BLOCK_BYTES, minCode, scaleCode } from '../dtypes/kquants.js';
import { QUANT_BLOCKS, QUANT_TYPES, quantBlock } from '../dtypes/blocks.js';
import { type AdamWArgs, type AttentionArgs, type AttentionRowsArgs, type Backend, type Buf, type MatmulArgs, type QuantMatmulArgs, type QuantType, checkAttentionRows, checkRowPositions } from './backend.js';

class RefBuf implements Buf {
  constructor(public data: Float32Array) {}
  get length(): number {
    return this.data.length;
  }
}

const d = (b: Buf): Float32Array => (b as RefBuf).data;
const bytesOf = (b: Buf): Uint8Array => new Uint8Array(d(b).buffer, d(b).byteOffset, d(b).byteLength);

/** Bytes per row of k values; throws for an unknown type or k not a whole number of blocks. */
function quantRowBytes(op: string, type: QuantType, k: number): number {
  const layout = quantBlock(type);
  if (!layout) throw new RangeError(`${op}: unknown quantized type '${type as string}' (valid: ${QUANT_TYPES.join(', ')})`);
  const { values, bytes, block } = layout;
  if (!(Number.isInteger(k) && k > 0 && k % values === 0)) throw new RangeError(`${op}: k = ${k} must be a positive multiple of ${values} (the ${type} ${block} size)`);
  return (k / values) * bytes;
}

/**
 * The k values of the quantized row at byte o, into out. Q8_0/Q4_0: q·d (exact in f32: 8 × 11
 * significant bits). Q4_K: d·sc·q − dmin·m with d·sc and dmin·m rounded to f32 (exact: 11 × 6 bits), and
 * the difference rounded to f32 as the f32 dequantization does, or, with `unrounded`, kept in float64
 * (the 'int8' strategy sums integers before it scales, so no value of W is ever rounded there).
 */
function decodeRow(b: Uint8Array, o: number, type: QuantType, k: number, f16: Float32Array, out: Float64Array, unrounded: boolean): void {
  if (type === 'q4_k') {
    for (let sb = 0; sb < k / 256; sb++) {
      const p = o + sb * Q4_K_BLOCK_BYTES;
      const dw = f16[b[p] | (b[p + 1] << 8)], dmin = f16[b[p + 2] | (b[p + 3] << 8)];
      for (let j = 0; j < 8; j++) {
        const step = Math.fround(dw * scaleCode(b, p + 4, j)), offset = Math.fround(dmin * minCode(b, p + 4, j));
        for (let l = 0; l < 32; l++) {
          const byte = b[p + 16 + 32 * (j >> 1) + l];
          const v = step * (j & 1 ? byte >> 4 : byte & 15) - offset;
          out[sb * 256 + 32 * j + l] = unrounded ? v : Math.fround(v);
        }
      }
    }
    return;
  }
  const bb = QUANT_BLOCKS[type].bytes;
  for (let e = 0; e < k; e++) {
    const p = o + (e >> 5) * bb, j = e & 31;
    const scale = f16[b[p] | (b[p + 1] << 8)];
    if (type === 'q8_0') out[e] = ((b[p + 2 + j] << 24) >> 24) * scale;
    else {
      const byte = b[p + 2 + (j & 15)];
      out[e] = ((j < 16 ? byte & 15 : byte >> 4) - 8) * scale;
    }
  }
}

/** Round to nearest, ties to even (f32x4.nearest). */
function roundEven(v: number): number {
  const f = Math.floor(v), r = v - f;
  return r < 0.5 ? f : r > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
}

/** A row of x rounded as the 'int8' strategy does: integers q and one scale per block of `block` values. */
interface QuantizedRow {
  q: Int32Array;
  scale: Float64Array;
  block: number;
}

/**
 * One row of x quantized as the 'int8' strategy defines it (llama.cpp's quantize_row_q8_0 on x86): per
 * block of 32, d = f16(fround(max|x|/127)) (NaN if any x is NaN) and q = roundEven(fround(x·fround(127/max|x|)))
 * (0 for a block of zeros, and where the product is NaN).
 */
function quantizeActivationRow(x: Float32Array, o: number, k: number): QuantizedRow {
  const q = new Int32Array(k), scale = new Float64Array(k / 32);
  for (let b = 0; b < k / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[o + b * 32 + j]);
      amax = Number.isNaN(a) || Number.isNaN(amax) ? NaN : Math.max(amax, a);
    }
    scale[b] = f16ToF32(f32ToF16(Math.fround(amax / 127)));
    const inv = amax !== 0 ? Math.fround(127 / amax) : 0;
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[o + b * 32 + j] * inv);
      q[b * 32 + j] = Number.isNaN(v) ? 0 : Math.max(-32768, Math.min(32767, roundEven(v)));
    }
  }
  return { q, scale, block: 32 };
}

/**
 * One row of x quantized as the 'int8' strategy defines it for Q4_K (llama.cpp's quantize_row_q8_K): per
 * block of 256, iscale = fround(127/max|x|), d = fround(1/iscale) and q = roundEven(fround(x·iscale)).
 * (llama.cpp divides by the signed value of largest magnitude: q and d both change sign, d·q does not.)
 * A NaN gives d = NaN (q = 0 where the product is NaN); when iscale overflows (max|x| = 0 or below
 * about 3.7e-37) the block is q = 0, d = 0.
 */
function quantizeActivationRowK(x: Float32Array, o: number, k: number): QuantizedRow {
  const q = new Int32Array(k), scale = new Float64Array(k / 256);
  for (let b = 0; b < k / 256; b++) {
    let amax = 0;
    for (let j = 0; j < 256; j++) {
      const a = Math.abs(x[o + b * 256 + j]);
      amax = Number.isNaN(a) || Number.isNaN(amax) ? NaN : Math.max(amax, a);
    }
    const iscale = Math.fround(127 / amax);
    if (iscale === Infinity) continue;
    scale[b] = Math.fround(1 / iscale);
    for (let j = 0; j < 256; j++) {
      const v = Math.fround(x[o + b * 256 + j] * iscale);
      q[b * 256 + j] = Number.isNaN(v) ? 0 : roundEven(v);
    }
  }
  return { q, scale, block: 256 };
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly threads = 1;
  private held = 0;

  alloc(length: number): Buf {
    this.held += length * 4;
    return new RefBuf(new Float32Array(length));
  }
  free(buf: Buf): void {
    this.held -= buf.length * 4;
  }
  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    d(buf).set(src, offset);
  }
  read(buf: Buf, offset = 0, length = buf.length - offset): Float32Array {
    return d(buf).slice(offset, offset + length);
  }
  fill(buf: Buf, value: number, offset = 0, length = buf.length - offset): void {
    d(buf).fill(value, offset, offset + length);
  }
  copy(src: Buf, srcOffset: number, dst: Buf, dstOffset: number, length: number): void {
    d(dst).set(d(src).subarray(srcOffset, srcOffset + length), dstOffset);
  }
  memoryBytes(): number {
    return this.held;
  }
  uploadBytes(bytes: Uint8Array): Buf {
    const b = this.alloc(Math.ceil(bytes.length / 4));
    bytesOf(b).set(bytes);
    return b;
  }
  uploadQuant(bytes: Uint8Array, a: { type: QuantType; rows: number; k: number }): Buf {
    const rowBytes = quantRowBytes('uploadQuant', a.type, a.k);
    if (!(Number.isInteger(a.rows) && a.rows >= 0)) throw new RangeError(`uploadQuant: invalid row count ${a.rows}`);
    if (bytes.length !== a.rows * rowBytes) throw new RangeError(`uploadQuant: ${bytes.length} bytes for a ${a.type} matrix [${a.rows}, ${a.k}] that takes ${a.rows * rowBytes}`);
    return this.uploadBytes(bytes); // the GGUF layout is this backend's own
  }

  add(a: Buf, b: Buf, out: Buf, n: number): void {
    const x = d(a), y = d(b), o = d(out);
    for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
  }
  mul(a: Buf, b: Buf, out: Buf, n: number): void {
    const x = d(a), y = d(b), o = d(out);
    for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
  }
  scale(a: Buf, s: number, out: Buf, n: number): void {
    const x = d(a), o = d(out);
    for (let i = 0; i < n; i++) o[i] = s * x[i];
  }
  axpy(x: Buf, alpha: number, y: Buf, n: number): void {
    const xs = d(x), ys = d(y);
    for (let i = 0; i < n; i++) ys[i] += alpha * xs[i];
  }

  sum(a: Buf, n: number): number {
    const x = d(a);
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i];
    return s;
  }
  max(a: Buf, n: number): number {
    const x = d(a);
    let m = -Infinity;
    for (let i = 0; i < n; i++) if (x[i] > m || Number.isNaN(x[i])) m = x[i];
    return m;
  }
  sumSquares(a: Buf, n: number): number {
    const x = d(a);
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * x[i];
    return s;
  }

  matmul(a: Buf, b: Buf, c: Buf, args: MatmulArgs): void {
    const { m, k, n } = args;
    const A = d(a), B = d(b), C = d(c);
    const batch = args.batch ?? 1;
    const sA = args.strideA ?? m * k, sB = args.strideB ?? k * n, sC = args.strideC ?? m * n;
    for (let t = 0; t < batch; t++) {
      const oA = (args.offA ?? 0) + t * sA, oB = (args.offB ?? 0) + t * sB, oC = (args.offC ?? 0) + t * sC;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            const av = args.transA ? A[oA + p * m + i] : A[oA + i * k + p];
            const bv = args.transB ? B[oB + j * k + p] : B[oB + p * n + j];
            s += av * bv;
          }
          C[oC + i * n + j] = args.accumulate ? C[oC + i * n + j] + s : s;
        }
      }
    }
  }

  /**
   * 'f32' and 'auto': Σ x·dequantized w in float64. 'int8': x quantized per block (Q8_0's blocks of 32;
   * for Q4_K, Q8_K's blocks of 256), then Σ_b d_x·Σ q_x·w, with Q4_K's w unrounded (see decodeRow).
   */
  matmulQuant(x: Buf, w: Buf, out: Buf, args: QuantMatmulArgs): void {
    const { m, n, k, type } = args;
    const rowBytes = quantRowBytes('matmulQuant', type, k);
    if (m * k > x.length) throw new RangeError(`matmulQuant: x holds ${x.length} elements, m·k = ${m}·${k} needed`);
    if (m * n > out.length) throw new RangeError(`matmulQuant: out holds ${out.length} elements, m·n = ${m}·${n} needed`);
    if (n * rowBytes > w.length * 4) throw new RangeError(`matmulQuant: w holds ${w.length * 4} bytes, a ${type} matrix [${n}, ${k}] needs ${n * rowBytes}`);
    const X = d(x), O = d(out), W = bytesOf(w), f16 = f16ToF32Table();
    const int8 = args.strategy === 'int8';
    const quantizeRow = type === 'q4_k' ? quantizeActivationRowK : quantizeActivationRow;
    const xq = int8 ? Array.from({ length: m }, (_, i) => quantizeRow(X, i * k, k)) : null;
    const wr = new Float64Array(k);
    for (let j = 0; j < n; j++) {
      decodeRow(W, j * rowBytes, type, k, f16, wr, int8);
      for (let i = 0; i < m; i++) {
        let s = 0;
        if (xq) {
          const { q, scale, block } = xq[i];
          for (let b = 0; b < k / block; b++) {
            let t = 0;
            for (let e = b * block; e < (b + 1) * block; e++) t += q[e] * wr[e];
            s += scale[b] * t;
          }
        } else {
          for (let e = 0; e < k; e++) s += X[i * k + e] * wr[e];
        }
        O[i * n + j] = args.accumulate ? O[i * n + j] + s : s;
      }
    }
  }
  dequantizeRows(w: Buf, ids: Int32Array, out: Buf, args: { k: number; type: QuantType }): void {
    const { k, type } = args;
    const rowBytes = quantRowBytes('dequantizeRows', type, k), rows = Math.floor((w.length * 4) / rowBytes);
    if (ids.length * k > out.length) throw new RangeError(`dequantizeRows: out holds ${out.length} elements, ${ids.length}·${k} needed`);
    const W = bytesOf(w), O = d(out), f16 = f16ToF32Table(), wr = new Float64Array(k);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(Number.isInteger(id) && id >= 0 && id < rows)) throw new RangeError(`dequantizeRows: row id ${id} at ${i} is outside the table [0, ${rows})`);
      decodeRow(W, id * rowBytes, type, k, f16, wr, false);
      O.set(wr, i * k);
    }
  }

  rmsNorm(x: Buf, w: Buf, out: Buf, rstd: Buf, rows: number, dim: number, eps: number): void {
    const X = d(x), W = d(w), O = d(out), R = d(rstd);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += X[r * dim + i] ** 2;
      const rs = 1 / Math.sqrt(ss / dim + eps);
      R[r] = rs;
      for (let i = 0; i < dim; i++) O[r * dim + i] = X[r * dim + i] * rs * W[i];
    }
  }
  rmsNormBackward(x: Buf, w: Buf, rstd: Buf, dy: Buf, dx: Buf, dw: Buf, rows: number, dim: number): void {
    // y_i = x_i·r·w_i with r = (mean(x²)+eps)^-1/2, so ∂r/∂x_j = -r³·x_j/dim and
    // dx_j = r·w_j·dy_j - r³·x_j/dim · Σ_i dy_i·w_i·x_i.
    const X = d(x), W = d(w), R = d(rstd), DY = d(dy), DX = d(dx), DW = d(dw);
    for (let r = 0; r < rows; r++) {
      const rs = R[r];
      let dot = 0;
      for (let i = 0; i < dim; i++) dot += DY[r * dim + i] * W[i] * X[r * dim + i];
      const c = (rs * rs * rs * dot) / dim;
      for (let i = 0; i < dim; i++) {
        const xi = X[r * dim + i], gi = DY[r * dim + i];
        DX[r * dim + i] = rs * W[i] * gi - c * xi;
        DW[i] += gi * xi * rs;
      }
    }
  }
  softmax(x: Buf, out: Buf, rows: number, dim: number): void {
    const X = d(x), O = d(out);
    for (let r = 0; r < rows; r++) {
      let m = -Infinity;
      for (let i = 0; i < dim; i++) m = Math.max(m, X[r * dim + i]);
      let s = 0;
      for (let i = 0; i < dim; i++) s += Math.exp(X[r * dim + i] - m);
      for (let i = 0; i < dim; i++) O[r * dim + i] = Math.exp(X[r * dim + i] - m) / s;
    }
  }
  rope(x: Buf, out: Buf, rows: number, heads: number, headDim: number, seqLen: number, pos0: number, theta: number, inverse: boolean): void {
    const X = d(x), O = d(out);
    for (let r = 0; r < rows; r++) {
      const pos = pos0 + (r % seqLen);
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * headDim;
        for (let i = 0; i < headDim; i += 2) {
          const angle = pos * Math.pow(theta, -i / headDim);
          const cos = Math.cos(angle), sin = inverse ? -Math.sin(angle) : Math.sin(angle);
          const a = X[base + i], b = X[base + i + 1];
          O[base + i] = a * cos - b * sin;
          O[base + i + 1] = a * sin + b * cos;
        }
      }
    }
  }
  ropeRows(x: Buf, out: Buf, rows: number, heads: number, headDim: number, positions: Int32Array, theta: number): void {
    checkRowPositions('ropeRows', rows, positions);
    const X = d(x), O = d(out), rowLen = heads * headDim;
    for (let r = 0; r < rows; r++) {
      // One row at its position: rope() on that row (seqLen 1, pos0 = its position).
      const xr = new RefBuf(X.subarray(r * rowLen, (r + 1) * rowLen)), or = new RefBuf(O.subarray(r * rowLen, (r + 1) * rowLen));
      this.rope(xr, or, 1, heads, headDim, 1, positions[r], theta, false);
    }
  }
  swiglu(gate: Buf, up: Buf, out: Buf, n: number): void {
    const G = d(gate), U = d(up), O = d(out);
    for (let i = 0; i < n; i++) O[i] = (G[i] / (1 + Math.exp(-G[i]))) * U[i];
  }
  swigluBackward(gate: Buf, up: Buf, dout: Buf, dgate: Buf, dup: Buf, n: number): void {
    // silu(g) = g·σ(g); silu'(g) = σ(g)·(1 + g·(1 - σ(g))).
    const G = d(gate), U = d(up), DO = d(dout), DG = d(dgate), DU = d(dup);
    for (let i = 0; i < n; i++) {
      const s = 1 / (1 + Math.exp(-G[i]));
      DU[i] = DO[i] * G[i] * s;
      DG[i] = DO[i] * U[i] * s * (1 + G[i] * (1 - s));
    }
  }

  embedding(table: Buf, ids: Int32Array, out: Buf, dim: number): void {
    const T = d(table), O = d(out), vocab = T.length / dim;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < vocab)) throw new RangeError(`embedding: token id ${id} at ${i} is outside the vocabulary [0, ${vocab})`);
      O.set(T.subarray(id * dim, id * dim + dim), i * dim);
    }
  }
  embeddingBackward(ids: Int32Array, dout: Buf, dtable: Buf, dim: number): void {
    const DO = d(dout), DT = d(dtable);
    for (let i = 0; i < ids.length; i++) for (let j = 0; j < dim; j++) DT[ids[i] * dim + j] += DO[i * dim + j];
  }
  crossEntropy(logits: Buf, targets: Int32Array, dlogits: Buf | null, vocab: number, gradScale: number): { loss: number; count: number } {
    const L = d(logits), DL = dlogits ? d(dlogits) : null;
    let loss = 0, count = 0;
    for (let r = 0; r < targets.length; r++) {
      const t = targets[r], base = r * vocab;
      if (t < 0) {
        DL?.fill(0, base, base + vocab);
        continue;
      }
      if (t >= vocab) throw new RangeError(`crossEntropy: target ${t} at row ${r} is outside the vocabulary [0, ${vocab})`);
      let m = -Infinity;
      for (let i = 0; i < vocab; i++) m = Math.max(m, L[base + i]);
      let s = 0;
      for (let i = 0; i < vocab; i++) s += Math.exp(L[base + i] - m);
      const lse = m + Math.log(s);
      loss += lse - L[base + t];
      count++;
      if (DL) for (let i = 0; i < vocab; i++) DL[base + i] = (Math.exp(L[base + i] - lse) - (i === t ? 1 : 0)) * gradScale;
    }
    return { loss, count };
  }

  attentionRows(q: Buf, k: readonly Buf[], v: readonly Buf[], out: Buf, lse: Buf, a: AttentionRowsArgs): void {
    const rows = a.positions.length, { heads, kvHeads, headDim } = a;
    checkAttentionRows(k, v, a);
    const Q = d(q), O = d(out), L = d(lse), qLen = heads * headDim, kvDim = kvHeads * headDim;
    for (let r = 0; r < rows; r++) {
      const pos = a.positions[r];
      if (a.newKv) {
        this.copy(a.newKv.k, r * kvDim, k[r], pos * kvDim, kvDim);
        this.copy(a.newKv.v, r * kvDim, v[r], pos * kvDim, kvDim);
      }
      const view = (b: Float32Array, o: number, n: number) => new RefBuf(b.subarray(o, o + n));
      this.attention(view(Q, r * qLen, qLen), k[r], v[r], view(O, r * qLen, qLen), view(L, r * heads, heads), {
        batch: 1, tq: 1, tk: pos + 1, heads, kvHeads, headDim, qPos0: pos, scale: a.scale,
      });
    }
  }
  attention(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, a: AttentionArgs): void {
    const Q = d(q), K = d(k), V = d(v), O = d(out), LSE = d(lse);
    const { batch, tq, heads, kvHeads, headDim: D, qPos0, scale } = a;
    const kvStride = a.kvBatchStride ?? a.tk * kvHeads * D;
    const group = heads / kvHeads;
    const s = new Float64Array(a.tk);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < tq; i++) {
        for (let h = 0; h < heads; h++) {
          const qo = ((b * tq + i) * heads + h) * D, kvh = Math.floor(h / group);
          const last = qPos0 + i;
          let m = -Infinity;
          for (let j = 0; j <= last; j++) {
            const ko = b * kvStride + (j * kvHeads + kvh) * D;
            let dot = 0;
            for (let e = 0; e < D; e++) dot += Q[qo + e] * K[ko + e];
            s[j] = dot * scale;
            m = Math.max(m, s[j]);
          }
          let sum = 0;
          for (let j = 0; j <= last; j++) sum += Math.exp(s[j] - m);
          LSE[(b * tq + i) * heads + h] = m + Math.log(sum);
          for (let e = 0; e < D; e++) {
            let acc = 0;
            for (let j = 0; j <= last; j++) acc += (Math.exp(s[j] - m) / sum) * V[b * kvStride + (j * kvHeads + kvh) * D + e];
            O[qo + e] = acc;
          }
        }
      }
    }
  }
  attentionBackward(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, dout: Buf, dq: Buf, dk: Buf, dv: Buf, a: AttentionArgs): void {
    // With p_j = exp(s_j - lse): dv_j += p_j·do, dp_j = do·v_j, ds_j = p_j·(dp_j - do·o),
    // dq = scale·Σ ds_j·k_j, dk_j += scale·ds_j·q.
    const Q = d(q), K = d(k), V = d(v), O = d(out), LSE = d(lse), DO = d(dout), DQ = d(dq), DK = d(dk), DV = d(dv);
    const { batch, tq, heads, kvHeads, headDim: D, qPos0, scale } = a;
    const kvStride = a.kvBatchStride ?? a.tk * kvHeads * D;
    const group = heads / kvHeads;
    DQ.fill(0);
    DK.fill(0);
    DV.fill(0);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < tq; i++) {
        for (let h = 0; h < heads; h++) {
          const qo = ((b * tq + i) * heads + h) * D, kvh = Math.floor(h / group);
          const l = LSE[(b * tq + i) * heads + h];
          let delta = 0;
          for (let e = 0; e < D; e++) delta += DO[qo + e] * O[qo + e];
          for (let j = 0; j <= qPos0 + i; j++) {
            const ko = b * kvStride + (j * kvHeads + kvh) * D;
            let dot = 0, dp = 0;
            for (let e = 0; e < D; e++) {
              dot += Q[qo + e] * K[ko + e];
              dp += DO[qo + e] * V[ko + e];
            }
            const p = Math.exp(dot * scale - l);
            const ds = p * (dp - delta);
            for (let e = 0; e < D; e++) {
              DV[ko + e] += p * DO[qo + e];
              DQ[qo + e] += scale * ds * K[ko + e];
              DK[ko + e] += scale * ds * Q[qo + e];
            }
          }
        }
      }
    }
  }

  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, n: number, a: AdamWArgs): void {
    const P = d(param), G = d(grad), M = d(m), V = d(v);
    const gs = a.gradScale ?? 1;
    const bc1 = 1 - Math.pow(a.beta1, a.step), bc2 = 1 - Math.pow(a.beta2, a.step);
    for (let i = 0; i < n; i++) {
      const g = G[i] * gs;
      M[i] = a.beta1 * M[i] + (1 - a.beta1) * g;
      V[i] = a.beta2 * V[i] + (1 - a.beta2) * g * g;
      const mh = M[i] / bc1, vh = V[i] / bc2;
      P[i] = P[i] - a.lr * a.weightDecay * P[i] - (a.lr * mh) / (Math.sqrt(vh) + a.eps);
    }
  }

  dispose(): void {}
}
