/**
 * The one interface between the compute kernels and everything above them.
 *
 * Layers above (tensor, nn, models, train) only ever call these methods. A backend owns its memory:
 * buffers are opaque handles ({@link Buf}) so that a backend can keep them in WebAssembly memory, in a
 * native heap, or in plain Float32Arrays without the caller knowing. Nothing here names WebAssembly.
 *
 * Conventions, shared by every backend and checked against the reference backend in tests:
 * - All buffers hold f32, except quantized weights uploaded as raw bytes (uploadBytes) for the
 *   quantized ops. Element offsets and counts are in elements, not bytes.
 * - Matrices are row-major. "Rows" of a 2-D op are the leading dimensions flattened.
 * - Integer inputs (token ids, targets) are passed as Int32Array from JavaScript.
 * - Ops never allocate a Buf; outputs are caller-provided. Gradients named `accumulate` add into
 *   their output instead of overwriting it (so parameter gradients sum over micro-batches).
 */
import type { QuantType } from '../dtypes/blocks.js';

/** Opaque handle to a backend-owned f32 buffer of `length` elements. */
export interface Buf {
  readonly length: number;
}

/** C = op(A) · op(B), batched. op(X) is X or Xᵀ. Shapes after the op: A [m,k], B [k,n], C [m,n]. */
export interface MatmulArgs {
  m: number;
  k: number;
  n: number;
  /** A is stored [k, m] and used transposed. */
  transA?: boolean;
  /** B is stored [n, k] and used transposed (the nn.Linear layout: weight [out, in]). */
  transB?: boolean;
  /** Number of independent products; default 1. */
  batch?: number;
  /** Elements between consecutive batch items; defaults are dense (m·k, k·n, m·n). 0 broadcasts. */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  offA?: number;
  offB?: number;
  offC?: number;
  /** C += product instead of C = product. */
  accumulate?: boolean;
}

/**
 * Causal attention over the natural projection layout, so no transposes are needed:
 * q [batch, tq, heads, headDim], k and v [batch, tk, kvHeads, headDim], out like q.
 * Query i (0-based within q) sits at absolute position qPos0 + i and attends keys 0..qPos0+i.
 * Grouped-query attention: query head h reads kv head floor(h / (heads / kvHeads)).
 */
export interface AttentionArgs {
  batch: number;
  tq: number;
  tk: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Absolute position of the first query; with a KV cache this is the number of cached tokens. */
  qPos0: number;
  /** Usually 1/sqrt(headDim). */
  scale: number;
  /** Elements between batch items of k and v; default tk·kvHeads·headDim (a KV cache may be longer). */
  kvBatchStride?: number;
}

/**
 * Decode attention for rows that each continue a sequence of their own (a batched decode step): row r's
 * query attends to the first positions[r] + 1 keys and values of its own caches k[r], v[r]
 * ([capacity, kvHeads·headDim] each), as {@link Backend.attention} does with batch 1, tq 1,
 * tk = qPos0 + 1 = positions[r] + 1 over those caches.
 */
export interface AttentionRowsArgs {
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** Position of each row's query (the keys it sees: positions 0 ..= positions[r] of its cache). */
  positions: Int32Array;
  /**
   * The rows' new keys and values ([rows, kvHeads·headDim] each): row r's are written at positions[r] of
   * k[r] and v[r] before it attends (a batched decode step's cache writes, in the same call). The rows'
   * caches must not overlap one another.
   */
  newKv?: { k: Buf; v: Buf };
}

/**
 * Throws a RangeError naming the operand unless attentionRows' arguments fit: as many caches as positions
 * (checkRowPositions), each cache long enough for its row's position, newKv (when given) [rows, kvDim].
 */
export function checkAttentionRows(k: readonly Buf[], v: readonly Buf[], a: AttentionRowsArgs): void {
  const rows = a.positions.length, kvDim = a.kvHeads * a.headDim;
  if (k.length !== rows || v.length !== rows) throw new RangeError(`attentionRows: ${rows} positions for ${k.length} key and ${v.length} value caches`);
  checkRowPositions('attentionRows', rows, a.positions);
  for (let r = 0; r < rows; r++) {
    const need = (a.positions[r] + 1) * kvDim;
    if (k[r].length < need || v[r].length < need) throw new RangeError(`attentionRows: row ${r}'s cache holds ${Math.min(k[r].length, v[r].length)} values, ${need} needed for position ${a.positions[r]}`);
  }
  if (a.newKv) {
    for (const [name, b] of [['newKv.k', a.newKv.k], ['newKv.v', a.newKv.v]] as const) {
      if (b.length < rows * kvDim) throw new RangeError(`attentionRows: ${name} holds ${b.length} values, ${rows * kvDim} needed for ${rows} rows of ${kvDim}`);
    }
  }
}

/** Throws a RangeError naming `op` unless positions holds `rows` positions, each an integer >= 0. */
export function checkRowPositions(op: string, rows: number, positions: Int32Array): void {
  if (positions.length !== rows) throw new RangeError(`${op}: ${positions.length} positions for ${rows} rows`);
  for (let r = 0; r < rows; r++) if (!(positions[r] >= 0)) throw new RangeError(`${op}: row ${r}'s position ${positions[r]} is negative`);
}

export interface AdamWArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (AdamW): param -= lr·weightDecay·param before the Adam step. */
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Gradients are multiplied by this first (e.g. the clipping factor); default 1. */
  gradScale?: number;
}

/**
 * A GGUF block-quantized weight type, in llama.cpp's layouts (ggml-common.h), blocks of 32 values:
 * - 'q8_0': 34 bytes, an f16 scale d then 32 int8 q; value = q·d.
 * - 'q4_0': 18 bytes, an f16 scale d then 16 bytes; value j (0..15) is the low nibble of byte j, value
 *   j+16 its high nibble; value = (nibble − 8)·d.
 * - 'q4_k': super-blocks of 256 values in 144 bytes (src/dtypes/kquants.ts): f16 d, f16 dmin, 12 bytes
 *   of 6-bit scale and min codes (sc, m) for 8 sub-blocks of 32, then 128 bytes of nibbles q (in each
 *   group of 64 values, the low nibbles of 32 bytes are values 0..31, the high nibbles 32..63);
 *   value = fround(d·sc)·q − fround(dmin·m), rounded to f32 once (as llama.cpp's dequantize_row_q4_K).
 * A quantized matrix [rows, k] is row-major: each row is k/32 consecutive blocks (k a multiple of 32),
 * or k/256 super-blocks for 'q4_k' (k a multiple of 256). Block geometry: dtypes/blocks.ts (QUANT_BLOCKS).
 */
export type { QuantType };

/**
 * How {@link Backend.matmulQuant} computes:
 * - 'int8' (llama.cpp's way, bit for bit as its x86 quantize_row_q8_0): each block of 32 values of a
 *   row of x is itself quantized, q = round-half-to-even(x·(127/max|x|)) (product and multiplier
 *   rounded to f32) and d_x = max|x|/127 rounded to f16 (llama.cpp stores it in an f16 field), then
 *   out = Σ_blocks d_w·d_x·Σ q_w·q_x. Each x is off by at most d/2 + 127·|d_x − d| ≤ d·(1/2 + 2⁻⁴),
 *   d = max|x|/127.
 *   For 'q4_k', x is rounded as llama.cpp's quantize_row_q8_K (its x86 build uses it unchanged, and the
 *   AVX2 ggml_quantize_mat_q8_K_4x8 of its repacked GEMM rounds the same way) instead:
 *   per block of 256 values iscale = 127/max|x| and d_x = 1/iscale, both rounded to f32, and q =
 *   round-half-to-even(x·iscale); then per super-block out += d_w·d_x·Σ_j sc_j·Σ q_w·q_x −
 *   dmin_w·d_x·Σ_j m_j·Σ q_x, integer sums exact (llama.cpp's ggml_vec_dot_q4_K_q8_K). Each x is off
 *   by at most d·(1/2 + 2⁻¹⁶).
 * - 'f32': W is dequantized and multiplied with x unrounded (only float rounding).
 * - 'auto' (default): the backend's choice for the shape (never for the thread count); the reference
 *   backend computes 'auto' as 'f32'.
 */
export type QuantStrategy = 'auto' | 'int8' | 'f32';

/** out[m, n] = x[m, k] · Wᵀ with W [n, k] quantized (the nn.Linear layout, as GGUF stores weights). */
export interface QuantMatmulArgs {
  m: number;
  n: number;
  /** A multiple of 32 (whole blocks per row); of 256 for 'q4_k'. */
  k: number;
  type: QuantType;
  /** out += product instead of out = product. */
  accumulate?: boolean;
  strategy?: QuantStrategy;
}

export interface Backend {
  readonly name: string;
  /** Threads this backend computes with (1 for single-threaded backends). */
  readonly threads: number;

  // ---- memory -------------------------------------------------------------------------------
  /** A new buffer; its contents are unspecified (a pooled buffer may hold old data). */
  alloc(length: number): Buf;
  /** Returns the buffer to the backend; it must not be used again. */
  free(buf: Buf): void;
  write(buf: Buf, src: ArrayLike<number>, offset?: number): void;
  /** A copy of `length` elements from `offset`. */
  read(buf: Buf, offset?: number, length?: number): Float32Array;
  fill(buf: Buf, value: number, offset?: number, length?: number): void;
  copy(src: Buf, srcOffset: number, dst: Buf, dstOffset: number, length: number): void;
  /** Bytes currently held from the system by this backend (for leak checks). */
  memoryBytes(): number;
  /** The most bytes its memory can grow to (the WebAssembly backend: 4 GiB), when it has such a limit. */
  readonly memoryLimit?: number;

  /**
   * A buffer holding raw bytes (quantized weights) in backend memory; its `length` counts f32 slots,
   * ceil(bytes / 4). Freed with `free` like any buffer; only the quantized ops read it as bytes.
   */
  uploadBytes(bytes: Uint8Array): Buf;
  /**
   * A quantized matrix [rows, k] of `type` (bytes in the GGUF layout above) uploaded for the quantized
   * ops only: the backend may keep it in a layout of its own, so such a buffer is read only by
   * matmulQuant (n ≤ rows) and dequantizeRows with the same type and k, and its `length` says nothing
   * about the bytes. Throws when the byte count does not match the shape.
   */
  uploadQuant(bytes: Uint8Array, args: { type: QuantType; rows: number; k: number }): Buf;

  // ---- elementwise (n elements from offset 0) ------------------------------------------------
  /** out = a + b */
  add(a: Buf, b: Buf, out: Buf, n: number): void;
  /** out = a ⊙ b */
  mul(a: Buf, b: Buf, out: Buf, n: number): void;
  /** out = s · a */
  scale(a: Buf, s: number, out: Buf, n: number): void;
  /** y += alpha · x */
  axpy(x: Buf, alpha: number, y: Buf, n: number): void;

  // ---- reductions ------------------------------------------------------------------------------
  sum(a: Buf, n: number): number;
  max(a: Buf, n: number): number;
  /** Σ a², NaN or Inf when any element is not finite (used for clipping and NaN detection). */
  sumSquares(a: Buf, n: number): number;

  // ---- matmul ----------------------------------------------------------------------------------
  matmul(a: Buf, b: Buf, c: Buf, args: MatmulArgs): void;
  /**
   * out[m, n] (+)= x[m, k] · Wᵀ, W [n, k] quantized (`w` from {@link uploadBytes}). k must be a
   * multiple of 32 (256 for 'q4_k'); x, w and out must be large enough (both throw RangeError). x and
   * out must not overlap.
   */
  matmulQuant(x: Buf, w: Buf, out: Buf, args: QuantMatmulArgs): void;
  /**
   * out[i, :] = row ids[i] of the quantized matrix W [rows, k] dequantized to f32 (an embedding lookup
   * from a quantized table). Exact: each value is q·d correctly rounded to f32 (for 'q4_k', the value
   * as its doc above rounds it, bit for bit). Ids out of range throw.
   */
  dequantizeRows(w: Buf, ids: Int32Array, out: Buf, args: { k: number; type: QuantType }): void;

  // ---- normalization and activations ---------------------------------------------------------
  /** out[r] = x[r] / rms(x[r]) ⊙ w, and rstd[r] = 1/rms (kept for the backward pass). */
  rmsNorm(x: Buf, w: Buf, out: Buf, rstd: Buf, rows: number, dim: number, eps: number): void;
  /** dx = ∂L/∂x (overwritten); dw += ∂L/∂w (accumulated). */
  rmsNormBackward(x: Buf, w: Buf, rstd: Buf, dy: Buf, dx: Buf, dw: Buf, rows: number, dim: number): void;
  /** Row-wise softmax. */
  softmax(x: Buf, out: Buf, rows: number, dim: number): void;
  /**
   * Rotary position embedding on interleaved pairs (x[2i], x[2i+1]), the llama2.c and GGUF layout.
   * x is [rows, heads, headDim], row r at position pos0 + (r mod seqLen). inverse rotates by -θ,
   * which is the backward pass. In place is allowed (out === x).
   */
  rope(x: Buf, out: Buf, rows: number, heads: number, headDim: number, seqLen: number, pos0: number, theta: number, inverse: boolean): void;
  /**
   * Forward RoPE with a position per row: row r of x [rows, heads, headDim] rotated as {@link rope} rotates
   * a row at position positions[r] (rows of several sequences, each at its own position). In place is allowed.
   */
  ropeRows(x: Buf, out: Buf, rows: number, heads: number, headDim: number, positions: Int32Array, theta: number): void;
  /** out = silu(gate) ⊙ up */
  swiglu(gate: Buf, up: Buf, out: Buf, n: number): void;
  /** dgate, dup overwritten. */
  swigluBackward(gate: Buf, up: Buf, dout: Buf, dgate: Buf, dup: Buf, n: number): void;

  // ---- embedding and loss ----------------------------------------------------------------------
  /** out[i] = table[ids[i]], rows of `dim`. Ids out of range throw. */
  embedding(table: Buf, ids: Int32Array, out: Buf, dim: number): void;
  /** dtable[ids[i]] += dout[i] (scatter-add). */
  embeddingBackward(ids: Int32Array, dout: Buf, dtable: Buf, dim: number): void;
  /**
   * Fused softmax cross-entropy over rows of `vocab` logits. Targets < 0 are ignored (padding).
   * Writes dlogits = (softmax - onehot) · gradScale for counted rows (zero for ignored rows) when
   * dlogits is given. Returns the summed loss (nats) and the number of counted rows.
   */
  crossEntropy(logits: Buf, targets: Int32Array, dlogits: Buf | null, vocab: number, gradScale: number): { loss: number; count: number };

  // ---- attention ---------------------------------------------------------------------------------
  /** out (like q) and lse [batch, tq, heads] (log-sum-exp per query, kept for backward). */
  attention(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, args: AttentionArgs): void;
  /**
   * Decode attention of q [rows, heads·headDim], row r over its own caches k[r], v[r] (see
   * {@link AttentionRowsArgs}); out like q, lse [rows, heads]. Each row's numbers are those of
   * {@link attention} on that row alone.
   */
  attentionRows(q: Buf, k: readonly Buf[], v: readonly Buf[], out: Buf, lse: Buf, args: AttentionRowsArgs): void;
  /** dq, dk, dv are overwritten. */
  attentionBackward(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, dout: Buf, dq: Buf, dk: Buf, dv: Buf, args: AttentionArgs): void;

  // ---- optimizer ---------------------------------------------------------------------------------
  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, n: number, args: AdamWArgs): void;

  /** Releases threads and memory. */
  dispose(): void;
}
