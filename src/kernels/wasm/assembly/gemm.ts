// fp32 matrix multiply: C[m,n] (+)= op(A)[m,k] · op(B)[k,n], batched, over the shared linear memory.
//
// Two paths, chosen from the shape alone (never from the thread count, so 1 and N threads give
// bit-identical results):
//
// 1. Small m (decode-time matrix-vector products): no packing, each thread owns a range of columns of C
//    (whole 64-byte lines, so threads never write the same cache line):
//    - B not transposed, m ≤ 4: each row of C += x[p] · B[p, :], streaming four rows of B at a time,
//      sequentially in memory, with the C row segment (a few KiB) kept in L1.
//    - B transposed ([n,k], the nn.Linear weight layout), m = 1: dot products along k, four rows of B
//      at a time.
//
// 2. Everything else: a Goto/BLIS-style packed GEMM around an MR×NR register-blocked micro-kernel
//    (generated into generated/gemm_micro.ts by scripts/gen-gemm.mjs; MR, NR, KC, MC, NC come from there).
//      for jc in steps of NC          (columns of this thread's block of C)
//        for pc in steps of KC        (depth)
//          pack op(B)[pc:pc+KC, jc:jc+NC] into Bp: NR-column panels, each [KC][NR] row-major
//          for ic in steps of MC      (rows of this thread's block of C)
//            pack op(A)[ic:ic+MC, pc:pc+KC] into Ap: MR-row panels, each [KC][MR] (column of the panel
//                                     contiguous, so the kernel broadcasts MR consecutive floats per p)
//            for each NR panel of Bp  (kept in L1: KC·NR·4 = 16 KiB)
//              for each MR panel of Ap (streamed from L2)
//                micro-kernel: MR×NR tile of C in registers, C tile (+)= Ap-panel · Bp-panel
//    Both packings absorb the transposes (transA packs by copying MR contiguous floats per p,
//    transB packs with 4×4 in-register transposes), so the micro-kernel is the same for nn/nt/tn/tt.
//    Panels at the edges are zero-padded; edge tiles of C go through a small scratch tile, so every
//    element of C is computed by the same instruction sequence (same summation order) wherever it lies.
//    The first depth block starts from 0 (or from C when accumulating); later ones start from C.
//
// Threads: the same call runs on nth threads with no barrier. Each thread takes a disjoint block of C
// (whole batch items when there are enough of them, else a range of NR-panels of columns when n ≥ m,
// else a range of MR-panels of rows) and packs what it needs itself into its own scratch. K is never
// split across threads.
import { KC, MC, MR, NC, NR, copyPanelRow, microKernel } from './generated/gemm_micro';
import { madd, min32, share } from './util';
import { packA } from './pack';

/** Peak-FLOP microbenchmark (bench/gemm.ts); not used by the kernels. */
export { gemmPeak } from './generated/gemm_micro';

// Per-thread scratch: packed A block, packed B block, one edge tile of C.
const AP_BYTES: i32 = MC * KC * 4;
const BP_BYTES: i32 = KC * NC * 4;
const TILE_BYTES: i32 = MR * NR * 4;
const SCRATCH_BYTES: i32 = (AP_BYTES + BP_BYTES + TILE_BYTES + 63) & ~63;

/** m up to this uses the unpacked row-times-matrix path when B is not transposed (m = 1 when it is). */
const SMALL_M_NN: i32 = 4;

/** Scratch bytes one thread needs (the caller provides nth times this, 64-byte aligned). */
export function matmulScratchBytes(): i32 {
  return SCRATCH_BYTES;
}

export function matmul(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: i32, transB: i32,
                       accumulate: i32, batch: i32, strideA: i32, strideB: i32, strideC: i32,
                       scratch: usize, tid: i32, nth: i32): void {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  if (nth < 1) nth = 1;
  // C[m,1] = A·b is the same memory as Cᵀ[1,m] = bᵀ·Aᵀ: turn column-vector products into row-vector ones.
  if (n == 1 && m > 1) {
    const ta = transA;
    const t = a; a = b; b = t;
    const s = strideA; strideA = strideB; strideB = s;
    n = m; m = 1;
    transA = 0;
    transB = ta ? 0 : 1;
  }
  const ws = scratch + <usize>tid * <usize>SCRATCH_BYTES;
  // Whole batch items per thread when they are many and do not overlap in C.
  const mn = <i64>m * n;
  if (nth > 1 && batch > 1 && <i64>strideC >= mn && (batch % nth == 0 || batch >= 4 * nth)) {
    const t0 = share(batch, tid, nth), t1 = share(batch, tid + 1, nth);
    for (let t = t0; t < t1; t++) {
      one(a + (<usize>(<i64>t * strideA) << 2), b + (<usize>(<i64>t * strideB) << 2), c + (<usize>(<i64>t * strideC) << 2),
          m, k, n, transA, transB, accumulate, ws, 0, 1);
    }
    return;
  }
  for (let t = 0; t < batch; t++) {
    one(a + (<usize>(<i64>t * strideA) << 2), b + (<usize>(<i64>t * strideB) << 2), c + (<usize>(<i64>t * strideC) << 2),
        m, k, n, transA, transB, accumulate, ws, tid, nth);
  }
}

/** One product, thread tid of nth's share of it. */
function one(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: i32, transB: i32,
             accumulate: i32, ws: usize, tid: i32, nth: i32): void {
  if (k <= 0) {
    if (!accumulate) {
      const r0 = share(m, tid, nth), r1 = share(m, tid + 1, nth);
      memory.fill(c + (<usize>(<i64>r0 * n) << 2), 0, <usize>(<i64>(r1 - r0) * n) << 2);
    }
    return;
  }
  // Small-m paths: columns split in 16-float units (whole cache lines of C), the remainder to the last thread.
  const j0 = share(n >> 4, tid, nth) << 4, j1 = tid + 1 >= nth ? n : share(n >> 4, tid + 1, nth) << 4;
  if (!transB && m <= SMALL_M_NN) {
    for (let i = 0; i < m; i++) {
      const x = transA ? a + (<usize>i << 2) : a + (<usize>(<i64>i * k) << 2);
      const xs: usize = transA ? <usize>m << 2 : 4;
      rowTimesMatrix(x, xs, b, c + (<usize>(<i64>i * n) << 2), k, n, j0, j1, accumulate);
    }
    return;
  }
  if (transB && m == 1) {
    rowDotRows(a, b, c, k, j0, j1, accumulate);
    return;
  }
  // Packed GEMM on a block of C.
  const np = (n + NR - 1) / NR, mp = (m + MR - 1) / MR;
  let i0 = 0, i1 = m, jb = 0, je = n;
  if (nth > 1) {
    if (m <= n ? np >= nth || mp < nth : mp < nth) {
      jb = share(np, tid, nth) * NR;
      je = min32(share(np, tid + 1, nth) * NR, n);
    } else {
      i0 = share(mp, tid, nth) * MR;
      i1 = min32(share(mp, tid + 1, nth) * MR, m);
    }
  }
  if (i0 < i1 && jb < je) gemmBlock(a, b, c, m, k, n, transA, transB, accumulate, ws, i0, i1, jb, je);
}

/** C[i0:i1, j0:j1] of one product by the packed algorithm (see the top of the file). */
function gemmBlock(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: i32, transB: i32,
                   accumulate: i32, ws: usize, i0: i32, i1: i32, j0: i32, j1: i32): void {
  const ap = ws, bp = ws + <usize>AP_BYTES, tile = bp + <usize>BP_BYTES;
  const ldc = <usize>n << 2;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min32(NC, j1 - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min32(KC, k - pc);
      if (transB) packBt(b + ((<usize>jc * <usize>k + <usize>pc) << 2), k, kc, nc, bp);
      else packB(b + ((<usize>pc * <usize>n + <usize>jc) << 2), n, kc, nc, bp);
      const load = accumulate != 0 || pc > 0;
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = min32(MC, i1 - ic);
        if (transA) packAt(a + ((<usize>pc * <usize>m + <usize>ic) << 2), m, kc, mc, ap);
        else packA(a + ((<usize>ic * <usize>k + <usize>pc) << 2), k, kc, mc, ap);
        const panelBytes = <usize>kc << 2;
        for (let jr = 0; jr < nc; jr += NR) {
          const pb = bp + <usize>jr * panelBytes;
          const nr = min32(NR, nc - jr);
          let cp = c + ((<usize>ic * <usize>n + <usize>(jc + jr)) << 2);
          for (let ir = 0; ir < mc; ir += MR) {
            const pa = ap + <usize>ir * panelBytes;
            const mr = min32(MR, mc - ir);
            if (mr == MR && nr == NR) {
              microKernel(kc, pa, pb, cp, ldc, load);
            } else {
              edgeTile(kc, pa, pb, cp, ldc, load, mr, nr, tile);
            }
            cp += ldc * <usize>MR;
          }
        }
      }
    }
  }
}

/** A partial tile (mr < MR or nr < NR) through the scratch tile, with the same arithmetic as a full one. */
function edgeTile(kc: i32, pa: usize, pb: usize, cp: usize, ldc: usize, load: bool, mr: i32, nr: i32, tile: usize): void {
  memory.fill(tile, 0, <usize>TILE_BYTES);
  if (load) {
    for (let i = 0; i < mr; i++) memory.copy(tile + <usize>(i * NR * 4), cp + <usize>i * ldc, <usize>nr << 2);
  }
  microKernel(kc, pa, pb, tile, <usize>(NR * 4), load);
  for (let i = 0; i < mr; i++) memory.copy(cp + <usize>i * ldc, tile + <usize>(i * NR * 4), <usize>nr << 2);
}

// ---- packing ------------------------------------------------------------------------------------

/** B stored [k,n] (ldb = n elements), block of kc rows × nc columns from src → NR-column panels [kc][NR]. */
function packB(src: usize, ldb: i32, kc: i32, nc: i32, dst: usize): void {
  const ld = <usize>ldb << 2;
  for (let j = 0; j < nc; j += NR) {
    const nr = min32(NR, nc - j);
    let s = src + (<usize>j << 2), d = dst;
    if (nr == NR) {
      for (let p = 0; p < kc; p++) {
        copyPanelRow(s, d);
        s += ld;
        d += <usize>(NR << 2);
      }
    } else {
      for (let p = 0; p < kc; p++) {
        let v = 0;
        for (; v < nr; v++) store<f32>(d + <usize>(v << 2), load<f32>(s + <usize>(v << 2)));
        for (; v < NR; v++) store<f32>(d + <usize>(v << 2), 0);
        s += ld;
        d += <usize>(NR << 2);
      }
    }
    dst += <usize>kc * <usize>(NR << 2);
  }
}

/** B stored [n,k] (ldb = k elements), op(B) block of kc × nc from src → NR-column panels [kc][NR]. */
function packBt(src: usize, ldb: i32, kc: i32, nc: i32, dst: usize): void {
  const ld = <usize>ldb << 2;
  const row = <usize>(NR << 2);
  for (let j = 0; j < nc; j += NR) {
    const nr = min32(NR, nc - j);
    const panel = src + <usize>j * ld;
    if (nr == NR) {
      // 4 rows of B (4 columns of the panel) at a time, 4 depths at a time: a 4×4 transpose.
      for (let q = 0; q < NR; q += 4) {
        const s0 = panel + <usize>q * ld, s1 = s0 + ld, s2 = s1 + ld, s3 = s2 + ld;
        let d = dst + <usize>(q << 2);
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          const o = <usize>p << 2;
          const r0 = v128.load(s0 + o), r1 = v128.load(s1 + o), r2 = v128.load(s2 + o), r3 = v128.load(s3 + o);
          const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
          const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
          v128.store(d, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
          v128.store(d + row, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
          v128.store(d + 2 * row, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
          v128.store(d + 3 * row, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
          d += 4 * row;
        }
        for (; p < kc; p++) {
          const o = <usize>p << 2;
          store<f32>(d, load<f32>(s0 + o));
          store<f32>(d, load<f32>(s1 + o), 4);
          store<f32>(d, load<f32>(s2 + o), 8);
          store<f32>(d, load<f32>(s3 + o), 12);
          d += row;
        }
      }
    } else {
      let d = dst;
      for (let p = 0; p < kc; p++) {
        let v = 0;
        for (; v < nr; v++) store<f32>(d + <usize>(v << 2), load<f32>(panel + <usize>v * ld + (<usize>p << 2)));
        for (; v < NR; v++) store<f32>(d + <usize>(v << 2), 0);
        d += row;
      }
    }
    dst += <usize>kc * row;
  }
}

/** A stored [k,m] (lda = m elements), op(A) block of mc × kc from src → MR-row panels [kc][MR]. */
function packAt(src: usize, lda: i32, kc: i32, mc: i32, dst: usize): void {
  const ld = <usize>lda << 2;
  for (let i = 0; i < mc; i += MR) {
    const mr = min32(MR, mc - i);
    let s = src + (<usize>i << 2), d = dst;
    if (mr == MR && MR == 2) {
      for (let p = 0; p < kc; p++) {
        store<i64>(d, load<i64>(s));
        s += ld;
        d += 8;
      }
    } else if (mr == MR && MR % 4 == 0) {
      for (let p = 0; p < kc; p++) {
        for (let v = 0; v < MR; v += 4) v128.store(d + <usize>(v << 2), v128.load(s + <usize>(v << 2)));
        s += ld;
        d += <usize>(MR << 2);
      }
    } else {
      for (let p = 0; p < kc; p++) {
        let r = 0;
        for (; r < mr; r++) store<f32>(d + <usize>(r << 2), load<f32>(s + <usize>(r << 2)));
        for (; r < MR; r++) store<f32>(d + <usize>(r << 2), 0);
        s += ld;
        d += <usize>(MR << 2);
      }
    }
    dst += <usize>kc * <usize>(MR << 2);
  }
}

// ---- small m --------------------------------------------------------------------------------------

/**
 * y[j0:j1] (+)= Σ_p x[p] · B[p, j0:j1] for B stored [k,n]; x[p] at x + p·xs bytes; y is a row of C.
 * Four rows of B per sweep over the row segment, in p order, so each element is summed in p order.
 */
function rowTimesMatrix(x: usize, xs: usize, b: usize, y: usize, k: i32, n: i32, j0: i32, j1: i32, accumulate: i32): void {
  if (j0 >= j1) return;
  const ld = <usize>n << 2;
  const yb = y + (<usize>j0 << 2), ye = y + (<usize>j1 << 2);
  const vecEnd = yb + (<usize>((j1 - j0) & ~3) << 2);
  const pairEnd = yb + (<usize>((j1 - j0) & ~7) << 2);
  if (!accumulate) memory.fill(yb, 0, ye - yb);
  let p = 0;
  for (; p + 4 <= k; p += 4) {
    const xf0 = load<f32>(x + <usize>p * xs), xf1 = load<f32>(x + <usize>(p + 1) * xs);
    const xf2 = load<f32>(x + <usize>(p + 2) * xs), xf3 = load<f32>(x + <usize>(p + 3) * xs);
    const x0 = f32x4.splat(xf0), x1 = f32x4.splat(xf1), x2 = f32x4.splat(xf2), x3 = f32x4.splat(xf3);
    // B row p, column j0, minus the C row's j0 address: then B[p+r][j] = bo + y-pointer + r·ld.
    const bo = b + <usize>p * ld + (<usize>j0 << 2) - yb;
    let yp = yb;
    for (; yp < pairEnd; yp += 32) {
      const q = bo + yp;
      let u = v128.load(yp), v = v128.load(yp, 16);
      u = madd(x0, v128.load(q), u);
      v = madd(x0, v128.load(q, 16), v);
      u = madd(x1, v128.load(q + ld), u);
      v = madd(x1, v128.load(q + ld, 16), v);
      u = madd(x2, v128.load(q + 2 * ld), u);
      v = madd(x2, v128.load(q + 2 * ld, 16), v);
      u = madd(x3, v128.load(q + 3 * ld), u);
      v = madd(x3, v128.load(q + 3 * ld, 16), v);
      v128.store(yp, u);
      v128.store(yp, v, 16);
    }
    for (; yp < vecEnd; yp += 16) {
      const q = bo + yp;
      let u = v128.load(yp);
      u = madd(x0, v128.load(q), u);
      u = madd(x1, v128.load(q + ld), u);
      u = madd(x2, v128.load(q + 2 * ld), u);
      u = madd(x3, v128.load(q + 3 * ld), u);
      v128.store(yp, u);
    }
    for (; yp < ye; yp += 4) {
      const q = bo + yp;
      let u = f32x4.splat(load<f32>(yp));
      u = madd(x0, f32x4.splat(load<f32>(q)), u);
      u = madd(x1, f32x4.splat(load<f32>(q + ld)), u);
      u = madd(x2, f32x4.splat(load<f32>(q + 2 * ld)), u);
      u = madd(x3, f32x4.splat(load<f32>(q + 3 * ld)), u);
      store<f32>(yp, f32x4.extract_lane(u, 0));
    }
  }
  for (; p < k; p++) {
    const x0 = f32x4.splat(load<f32>(x + <usize>p * xs));
    const bo = b + <usize>p * ld + (<usize>j0 << 2) - yb;
    let yp = yb;
    for (; yp < vecEnd; yp += 16) v128.store(yp, madd(x0, v128.load(bo + yp), v128.load(yp)));
    for (; yp < ye; yp += 4) {
      store<f32>(yp, f32x4.extract_lane(madd(x0, f32x4.splat(load<f32>(bo + yp)), f32x4.splat(load<f32>(yp))), 0));
    }
  }
}

/** Horizontal sum of the four lanes as (l0 + l2) + (l1 + l3). */
@inline function hsum(v: v128): f32 {
  const h = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(h, 0) + f32x4.extract_lane(h, 1);
}

/**
 * y[j] (+)= dot(x[0:k], B[j, 0:k]) for j in [j0, j1), B stored [n,k], x contiguous.
 * Rows of up to ROW_STREAM_K values go one after the other (rowDotStream): B is then read as one
 * sequential stream, which the hardware prefetcher follows at full speed, where four rows side by side
 * (below) are four streams of a few KB each that it must pick up again at every row group (`npm run
 * bench -- kernels-ab`, W from memory: 768×768 2.4x, 3072×768 2.3x; 1.6–2.7x at k = 512..2048).
 * Longer rows go four at a time: with one row at a time x no longer stays in L1 beside the stream
 * (k = 4096: 0.72x).
 * Per j in the four-row path: one v128 accumulator over the 4-float chunks of k (lane l sums
 * p ≡ l mod 4), reduced as (l0 + l2) + (l1 + l3), then the scalar tail. Rows go four at a time (four
 * streams of B, one load of x), or one at a time at the end, with the same summation order either way.
 * (More rows or a second accumulator per row make V8 spill: it issues all loads of the loop body first.)
 * The path depends on k alone, so a column's result never depends on the thread count.
 */
function rowDotRows(x: usize, b: usize, y: usize, k: i32, j0: i32, j1: i32, accumulate: i32): void {
  if (k <= ROW_STREAM_K) {
    rowDotStream(x, b, y, k, j0, j1, accumulate);
    return;
  }
  const ld = <usize>k << 2;
  const kb = <usize>(k & ~3) << 2;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const b0 = b + <usize>j * ld, b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld;
    let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
    for (let o: usize = 0; o < kb; o += 16) {
      const xv = v128.load(x + o);
      s0 = madd(xv, v128.load(b0 + o), s0);
      s1 = madd(xv, v128.load(b1 + o), s1);
      s2 = madd(xv, v128.load(b2 + o), s2);
      s3 = madd(xv, v128.load(b3 + o), s3);
    }
    let r0 = hsum(s0), r1 = hsum(s1), r2 = hsum(s2), r3 = hsum(s3);
    for (let o = kb; o < ld; o += 4) {
      const xv = load<f32>(x + o);
      r0 += xv * load<f32>(b0 + o);
      r1 += xv * load<f32>(b1 + o);
      r2 += xv * load<f32>(b2 + o);
      r3 += xv * load<f32>(b3 + o);
    }
    const yp = y + (<usize>j << 2);
    if (accumulate) {
      r0 = load<f32>(yp) + r0;
      r1 = load<f32>(yp, 4) + r1;
      r2 = load<f32>(yp, 8) + r2;
      r3 = load<f32>(yp, 12) + r3;
    }
    store<f32>(yp, r0);
    store<f32>(yp, r1, 4);
    store<f32>(yp, r2, 8);
    store<f32>(yp, r3, 12);
  }
  for (; j < j1; j++) {
    const b0 = b + <usize>j * ld;
    let s0 = f32x4.splat(0);
    for (let o: usize = 0; o < kb; o += 16) s0 = madd(v128.load(x + o), v128.load(b0 + o), s0);
    let r0 = hsum(s0);
    for (let o = kb; o < ld; o += 4) r0 += load<f32>(x + o) * load<f32>(b0 + o);
    const yp = y + (<usize>j << 2);
    if (accumulate) r0 = load<f32>(yp) + r0;
    store<f32>(yp, r0);
  }
}

/** Longest rows rowDotRows takes one at a time (x, 8 KB, then stays in L1 beside the stream of B). */
const ROW_STREAM_K: i32 = 2048;

/**
 * rowDotRows one row at a time: four v128 accumulators over 16-float chunks (lane l of accumulator a
 * sums p ≡ 4a + l mod 16), summed as (s0 + s1) + (s2 + s3) and reduced as (l0 + l2) + (l1 + l3); then a
 * 4-float step into s0 and the scalar tail.
 */
function rowDotStream(x: usize, b: usize, y: usize, k: i32, j0: i32, j1: i32, accumulate: i32): void {
  const ld = <usize>k << 2;
  const k16 = <usize>(k & ~15) << 2, k4 = <usize>(k & ~3) << 2;
  for (let j = j0; j < j1; j++) {
    const row = b + <usize>j * ld;
    let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
    for (let o: usize = 0; o < k16; o += 64) {
      s0 = madd(v128.load(x + o), v128.load(row + o), s0);
      s1 = madd(v128.load(x + o, 16), v128.load(row + o, 16), s1);
      s2 = madd(v128.load(x + o, 32), v128.load(row + o, 32), s2);
      s3 = madd(v128.load(x + o, 48), v128.load(row + o, 48), s3);
    }
    for (let o = k16; o < k4; o += 16) s0 = madd(v128.load(x + o), v128.load(row + o), s0);
    let r = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
    for (let o = k4; o < ld; o += 4) r += load<f32>(x + o) * load<f32>(row + o);
    const yp = y + (<usize>j << 2);
    if (accumulate) r = load<f32>(yp) + r;
    store<f32>(yp, r);
  }
}
