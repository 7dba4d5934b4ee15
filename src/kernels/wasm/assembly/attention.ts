// Causal (grouped-query) attention, forward and backward, f32 with SIMD (f32x4) over headDim.
//
// Layouts (elements): q/out/dout/dq [batch, tq, heads, D]; k/v/dk/dv [batch, tk, kvHeads, D] with batch
// stride kvBatchStride; lse [batch, tq, heads]. Query i sits at position qPos0 + i and sees keys
// 0..qPos0+i (clamped to tk). Query head h reads kv head h / (heads / kvHeads).
//
// Building blocks (SIMD over headDim, scalar tails for headDim % 4, masked tails for key counts % 4):
//   scoreRow2 s0[j] = scale·x0·y_j and s1[j] = scale·x1·y_j, two query rows × four keys per step (eight
//             accumulators, so every loaded K vector feeds two products), one 4×4 transpose-add per row
//             turns the accumulators into four scores. scoreRow is the one-row version (decode).
//   combine2  dst0 = Σ_t c0_t·y_t and dst1 = Σ_t c1_t·y_t over rows y_t: 16-wide chunks of headDim with
//             2×4 accumulators held in registers over all t, each loaded y vector used twice. It computes
//             P·V, dS·K, Pᵀ·dO and dSᵀ·Q. combine is the one-output version; both accumulate every
//             element in the same order, so which one ran never changes a result bit.
//   expf4     util.ts's exp4 with cheaper x86 lowerings (pmin/pmax clamps, round-by-magic-add): bit-identical.
//
// Forward. Work unit = one (batch, head), or with GQA one (batch, pair of query heads sharing a kv head);
// threads take contiguous ranges of units. Query rows go two at a time, consecutive rows of one head
// (row i+1 sees one key more; row i's extra score is masked to p = 0) or, with GQA, the same row of the
// two heads; for each pair:
//   s = scale·q·Kᵀ, m = max s, p = exp(s - m), l = Σp, out = (Σ_j p_j v_j)/l, lse = m + log l.
// Only two rows of scores exist at a time (O(tk) scratch). When a head has ≥ PACK_MIN_ROWS query rows,
// its K and V are first copied to contiguous scratch (the interleaved [tk, kvHeads, D] layout puts rows
// kvHeads·D·4 bytes apart, which maps them onto few L1 sets); GQA heads of one kv head reuse the copy.
// Decode (tq = 1): the same units split across threads (one score row per head), but the keys go in
// blocks of DEC_KEYS, each used by all of the thread's units before the next, so the cache is read
// in memory order (all heads of a position are adjacent) instead of one head-strided pass per head.
//
// Backward (flash-attention style, probabilities recomputed from lse). Work unit = one (batch, kv head)
// with all the query heads that share it, so the thread owns those dk/dv rows and dq rows outright.
// Its K and V are packed into contiguous scratch. For each query head, query rows go in blocks of
// BWD_ROWS (their q and dO rows packed too):
//   row pass, two rows at a time:  P[r,j] = exp(scale·q_r·k_j - lse_r),   dP[r,j] = dO_r·v_j,
//                                  dS[r,j] = scale·P[r,j]·(dP[r,j] - dO_r·O_r),   dq_r = Σ_j dS[r,j]·k_j
//   column pass, two keys at a time over the rows that see them:
//                                  dv_j += Σ_r P[r,j]·dO_r,   dk_j += Σ_r dS[r,j]·q_r
// so the dK/dV rows are read and written once per block of BWD_ROWS queries. P and dS are zeroed past
// each row's causal limit up to the block's, so paired rows/keys may include masked entries (as +0).
//
// Scratch, per thread (attentionScratchBytes(tk) bytes at scratch + tid·that). tkp = tk rounded up to 4,
// R = BWD_ROWS, PD = PACK_MAX_D; byte offsets from off*():
//   [0, R·tkp)                 P block, row r at r·tkp (forward: rows 0 and 1 hold the two score rows;
//                              decode: score rows run on through the dS block, 2·R rows in all)
//   offDS: R·tkp floats        dS block, same layout
//   offK, offV: tk·PD each     packed K, V rows (D floats each)
//   offQB, offGB: R·PD each    packed q and dO rows of the current block (backward); decode keeps
//                              1/Σp of its score rows at offQB
// Packing needs D ≤ PACK_MAX_D; larger heads use the strided layout directly (same results).
//
// Results do not depend on the thread count: the units (fixed by the shape alone) are never split, and
// each row, block and reduction is computed in the same order whichever thread takes it.
import { at, exp4, madd, rowPart } from './util';

/** Query rows per backward block. */
const BWD_ROWS: i32 = 32;
/** headDim up to this is packed into contiguous scratch; it sizes the scratch (2·PACK_MAX_D floats per key). */
const PACK_MAX_D: i32 = 64;
/** The forward packs a head's K and V only when at least this many query rows reuse them. */
const PACK_MIN_ROWS: i32 = 8;

// ---- vector helpers --------------------------------------------------------------------------------

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function hmax(v: v128): f32 {
  return max<f32>(max<f32>(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max<f32>(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** [Σa, Σb, Σc, Σd]: a 4×4 transpose folded into the additions. */
@inline function reduce4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7)); // a02 b02 a13 b13
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

/** Four f32 lanes from scalars. */
@inline function vec4(a: f32, b: f32, c: f32, d: f32): v128 {
  return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(a), 1, b), 2, c), 3, d);
}

/** All-ones in lanes 0..k-1 (0 < k < 4), zero above. */
@inline function laneMask(k: i32): v128 {
  return i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(k));
}

@inline function minI(a: i32, b: i32): i32 {
  return a < b ? a : b;
}

// ---- dot products ------------------------------------------------------------------------------------

/** x·y over n floats. */
function dot1(x: usize, y: usize, n: i32): f32 {
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let e = 0;
  for (; e + 8 <= n; e += 8) {
    const o = <usize>e << 2;
    a = madd(v128.load(x + o), v128.load(y + o), a);
    b = madd(v128.load(x + o, 16), v128.load(y + o, 16), b);
  }
  if (e + 4 <= n) {
    const o = <usize>e << 2;
    a = madd(v128.load(x + o), v128.load(y + o), a);
    e += 4;
  }
  let s = hsum(f32x4.add(a, b));
  for (; e < n; e++) s += load<f32>(at(x, e)) * load<f32>(at(y, e));
  return s;
}

/** [x·y0, x·y1, x·y2, x·y3] for rows yi = y + i·ys (bytes) of n floats; two accumulators per row. */
@inline function dot4(x: usize, y: usize, ys: usize, n: i32): v128 {
  const y1 = y + ys, y2 = y1 + ys, y3 = y2 + ys;
  const z = f32x4.splat(0);
  let a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
  let e = 0;
  for (; e + 8 <= n; e += 8) {
    const o = <usize>e << 2;
    const xa = v128.load(x + o), xb = v128.load(x + o, 16);
    a0 = madd(xa, v128.load(y + o), a0);
    a1 = madd(xa, v128.load(y1 + o), a1);
    a2 = madd(xa, v128.load(y2 + o), a2);
    a3 = madd(xa, v128.load(y3 + o), a3);
    b0 = madd(xb, v128.load(y + o, 16), b0);
    b1 = madd(xb, v128.load(y1 + o, 16), b1);
    b2 = madd(xb, v128.load(y2 + o, 16), b2);
    b3 = madd(xb, v128.load(y3 + o, 16), b3);
  }
  if (e + 4 <= n) {
    const o = <usize>e << 2;
    const xa = v128.load(x + o);
    a0 = madd(xa, v128.load(y + o), a0);
    a1 = madd(xa, v128.load(y1 + o), a1);
    a2 = madd(xa, v128.load(y2 + o), a2);
    a3 = madd(xa, v128.load(y3 + o), a3);
    e += 4;
  }
  let r = reduce4(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3));
  if (e < n) {
    let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
    for (; e < n; e++) {
      const o = <usize>e << 2;
      const xe = load<f32>(x + o);
      t0 += xe * load<f32>(y + o);
      t1 += xe * load<f32>(y1 + o);
      t2 += xe * load<f32>(y2 + o);
      t3 += xe * load<f32>(y3 + o);
    }
    r = f32x4.add(r, vec4(t0, t1, t2, t3));
  }
  return r;
}

/** dst[j] = scale · x·y_j for j < n, with y_j = y + j·ys (bytes), rows of D floats. */
function scoreRow(x: usize, y: usize, ys: usize, n: i32, D: i32, scale: f32, dst: usize): void {
  const vs = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) v128.store(at(dst, j), f32x4.mul(dot4(x, y + <usize>j * ys, ys, D), vs));
  for (; j < n; j++) store<f32>(at(dst, j), dot1(x, y + <usize>j * ys, D) * scale);
}

/** scoreRow for two rows x0 → dst0 and x1 → dst1 sharing every load of y. */
function scoreRow2(x0: usize, x1: usize, y: usize, ys: usize, n: i32, D: i32, scale: f32, dst0: usize, dst1: usize): void {
  const vs = f32x4.splat(scale), z = f32x4.splat(0);
  const ve = <usize>(D & ~3) << 2;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const y0 = y + <usize>j * ys, y1 = y0 + ys, y2 = y1 + ys, y3 = y2 + ys;
    let a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
    for (let o: usize = 0; o < ve; o += 16) {
      const u = v128.load(x0 + o), w = v128.load(x1 + o);
      const k0 = v128.load(y0 + o), k1 = v128.load(y1 + o), k2 = v128.load(y2 + o), k3 = v128.load(y3 + o);
      a0 = madd(u, k0, a0); b0 = madd(w, k0, b0);
      a1 = madd(u, k1, a1); b1 = madd(w, k1, b1);
      a2 = madd(u, k2, a2); b2 = madd(w, k2, b2);
      a3 = madd(u, k3, a3); b3 = madd(w, k3, b3);
    }
    let ra = reduce4(a0, a1, a2, a3), rb = reduce4(b0, b1, b2, b3);
    if (<i32>(ve >> 2) < D) {
      let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0, t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
      for (let o = ve, oe = <usize>D << 2; o < oe; o += 4) {
        const u = load<f32>(x0 + o), w = load<f32>(x1 + o);
        const k0 = load<f32>(y0 + o), k1 = load<f32>(y1 + o), k2 = load<f32>(y2 + o), k3 = load<f32>(y3 + o);
        s0 += u * k0; s1 += u * k1; s2 += u * k2; s3 += u * k3;
        t0 += w * k0; t1 += w * k1; t2 += w * k2; t3 += w * k3;
      }
      ra = f32x4.add(ra, vec4(s0, s1, s2, s3));
      rb = f32x4.add(rb, vec4(t0, t1, t2, t3));
    }
    v128.store(at(dst0, j), f32x4.mul(ra, vs));
    v128.store(at(dst1, j), f32x4.mul(rb, vs));
  }
  for (; j < n; j++) {
    const yj = y + <usize>j * ys;
    store<f32>(at(dst0, j), dot1(x0, yj, D) * scale);
    store<f32>(at(dst1, j), dot1(x1, yj, D) * scale);
  }
}

// ---- weighted sums of rows -------------------------------------------------------------------------

/**
 * dst[0..D) = post · ((accumulate ? dst : 0) + Σ_{t<n} c_t·y_t), with c_t at c + t·cs and y_t at
 * y + t·ys (bytes). Chunks of headDim keep their accumulators in registers over all n rows.
 */
function combine(dst: usize, c: usize, cs: usize, y: usize, ys: usize, n: i32, D: i32, accumulate: bool, post: f32): void {
  const z = f32x4.splat(0), vp = f32x4.splat(post);
  let e = 0;
  for (; e + 32 <= D; e += 32) {
    const d = at(dst, e);
    let a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
    if (accumulate) {
      a0 = v128.load(d); a1 = v128.load(d, 16); a2 = v128.load(d, 32); a3 = v128.load(d, 48);
      a4 = v128.load(d, 64); a5 = v128.load(d, 80); a6 = v128.load(d, 96); a7 = v128.load(d, 112);
    }
    let cp = c, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      const w = v128.load32_splat(cp);
      a0 = madd(w, v128.load(yp), a0);
      a1 = madd(w, v128.load(yp, 16), a1);
      a2 = madd(w, v128.load(yp, 32), a2);
      a3 = madd(w, v128.load(yp, 48), a3);
      a4 = madd(w, v128.load(yp, 64), a4);
      a5 = madd(w, v128.load(yp, 80), a5);
      a6 = madd(w, v128.load(yp, 96), a6);
      a7 = madd(w, v128.load(yp, 112), a7);
      cp += cs;
      yp += ys;
    }
    v128.store(d, f32x4.mul(a0, vp)); v128.store(d, f32x4.mul(a1, vp), 16);
    v128.store(d, f32x4.mul(a2, vp), 32); v128.store(d, f32x4.mul(a3, vp), 48);
    v128.store(d, f32x4.mul(a4, vp), 64); v128.store(d, f32x4.mul(a5, vp), 80);
    v128.store(d, f32x4.mul(a6, vp), 96); v128.store(d, f32x4.mul(a7, vp), 112);
  }
  for (; e + 4 <= D; e += 4) {
    const d = at(dst, e);
    let a0 = accumulate ? v128.load(d) : z;
    let cp = c, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      a0 = madd(v128.load32_splat(cp), v128.load(yp), a0);
      cp += cs;
      yp += ys;
    }
    v128.store(d, f32x4.mul(a0, vp));
  }
  for (; e < D; e++) {
    const d = at(dst, e);
    let a: f32 = accumulate ? load<f32>(d) : 0;
    let cp = c, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      a += load<f32>(cp) * load<f32>(yp);
      cp += cs;
      yp += ys;
    }
    store<f32>(d, a * post);
  }
}

/** combine for two outputs sharing the rows y_t: dst0 from c0 and post0, dst1 from c1 and post1. */
function combine2(dst0: usize, dst1: usize, c0: usize, c1: usize, cs: usize, y: usize, ys: usize, n: i32, D: i32,
                  accumulate: bool, post0: f32, post1: f32): void {
  const z = f32x4.splat(0), p0 = f32x4.splat(post0), p1 = f32x4.splat(post1);
  let e = 0;
  for (; e + 16 <= D; e += 16) {
    const d0 = at(dst0, e), d1 = at(dst1, e);
    let a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
    if (accumulate) {
      a0 = v128.load(d0); a1 = v128.load(d0, 16); a2 = v128.load(d0, 32); a3 = v128.load(d0, 48);
      b0 = v128.load(d1); b1 = v128.load(d1, 16); b2 = v128.load(d1, 32); b3 = v128.load(d1, 48);
    }
    let o: usize = 0, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      const u = v128.load32_splat(c0 + o), w = v128.load32_splat(c1 + o);
      const y0 = v128.load(yp), y1 = v128.load(yp, 16), y2 = v128.load(yp, 32), y3 = v128.load(yp, 48);
      a0 = madd(u, y0, a0); b0 = madd(w, y0, b0);
      a1 = madd(u, y1, a1); b1 = madd(w, y1, b1);
      a2 = madd(u, y2, a2); b2 = madd(w, y2, b2);
      a3 = madd(u, y3, a3); b3 = madd(w, y3, b3);
      o += cs;
      yp += ys;
    }
    v128.store(d0, f32x4.mul(a0, p0)); v128.store(d0, f32x4.mul(a1, p0), 16);
    v128.store(d0, f32x4.mul(a2, p0), 32); v128.store(d0, f32x4.mul(a3, p0), 48);
    v128.store(d1, f32x4.mul(b0, p1)); v128.store(d1, f32x4.mul(b1, p1), 16);
    v128.store(d1, f32x4.mul(b2, p1), 32); v128.store(d1, f32x4.mul(b3, p1), 48);
  }
  for (; e + 4 <= D; e += 4) {
    const d0 = at(dst0, e), d1 = at(dst1, e);
    let a0 = accumulate ? v128.load(d0) : z, b0 = accumulate ? v128.load(d1) : z;
    let o: usize = 0, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      const y0 = v128.load(yp);
      a0 = madd(v128.load32_splat(c0 + o), y0, a0);
      b0 = madd(v128.load32_splat(c1 + o), y0, b0);
      o += cs;
      yp += ys;
    }
    v128.store(d0, f32x4.mul(a0, p0));
    v128.store(d1, f32x4.mul(b0, p1));
  }
  for (; e < D; e++) {
    const d0 = at(dst0, e), d1 = at(dst1, e);
    let a: f32 = accumulate ? load<f32>(d0) : 0, b: f32 = accumulate ? load<f32>(d1) : 0;
    let o: usize = 0, yp = at(y, e);
    for (let t = 0; t < n; t++) {
      const ye = load<f32>(yp);
      a += load<f32>(c0 + o) * ye;
      b += load<f32>(c1 + o) * ye;
      o += cs;
      yp += ys;
    }
    store<f32>(d0, a * post0);
    store<f32>(d1, b * post1);
  }
}

// ---- row-wise probability passes -----------------------------------------------------------------

/** Max of the last softmaxRow call's scores (a per-instance global: each thread has its own instance). */
let rowMax: f32 = 0;

/**
 * In place over s[0..n): p = exp(s - max), returns Σp and leaves max in rowMax. Entries [n, nz) become 0
 * (keys a paired row computed scores for). The last partial vector is masked, not done lane by lane.
 */
function softmaxRow(s: usize, n: i32, nz: i32): f32 {
  const nv = n & ~3, rem = n - nv, ninf = f32x4.splat(-Infinity);
  let mv = ninf;
  for (let j = 0; j < nv; j += 4) mv = f32x4.pmax(mv, v128.load(at(s, j)));
  if (rem) mv = f32x4.pmax(mv, v128.bitselect(v128.load(at(s, nv)), ninf, laneMask(rem)));
  const m = hmax(mv), vm = f32x4.splat(m);
  let sv = f32x4.splat(0);
  for (let j = 0; j < nv; j += 4) {
    const p = exp4(f32x4.sub(v128.load(at(s, j)), vm));
    v128.store(at(s, j), p);
    sv = f32x4.add(sv, p);
  }
  let j = nv;
  if (rem) {
    const p = v128.and(exp4(f32x4.sub(v128.load(at(s, nv)), vm)), laneMask(rem));
    v128.store(at(s, nv), p);
    sv = f32x4.add(sv, p);
    j += 4;
  }
  for (; j < nz; j++) store<f32>(at(s, j), 0);
  rowMax = m;
  return hsum(sv);
}

/**
 * Backward row: p[j] = exp(p[j] - lse) (p holds scale·q·k_j), ds[j] = scale·p[j]·(ds[j] - delta)
 * (ds holds dO·v_j) for j < n; both zero on [n, nz).
 */
function probsAndDs(p: usize, ds: usize, n: i32, nz: i32, lse: f32, delta: f32, scale: f32): void {
  const vl = f32x4.splat(lse), vd = f32x4.splat(delta), vs = f32x4.splat(scale);
  const nv = n & ~3, rem = n - nv;
  for (let j = 0; j < nv; j += 4) {
    const pj = exp4(f32x4.sub(v128.load(at(p, j)), vl));
    v128.store(at(p, j), pj);
    v128.store(at(ds, j), f32x4.mul(f32x4.mul(pj, f32x4.sub(v128.load(at(ds, j)), vd)), vs));
  }
  let j = nv;
  if (rem) {
    const mask = laneMask(rem);
    const pj = v128.and(exp4(f32x4.sub(v128.load(at(p, nv)), vl)), mask);
    v128.store(at(p, nv), pj);
    v128.store(at(ds, nv), v128.and(f32x4.mul(f32x4.mul(pj, f32x4.sub(v128.load(at(ds, nv)), vd)), vs), mask));
    j += 4;
  }
  for (; j < nz; j++) {
    store<f32>(at(p, j), 0);
    store<f32>(at(ds, j), 0);
  }
}

// ---- scratch -------------------------------------------------------------------------------------

@inline function tkPadded(tk: i32): i32 {
  return (tk + 3) & ~3;
}
@inline function offDS(tk: i32): usize { return <usize>(BWD_ROWS * tkPadded(tk)) << 2; }
@inline function offK(tk: i32): usize { return offDS(tk) << 1; }
@inline function offV(tk: i32): usize { return offK(tk) + (<usize>(tk * PACK_MAX_D) << 2); }
@inline function offQB(tk: i32): usize { return offV(tk) + (<usize>(tk * PACK_MAX_D) << 2); }
@inline function offGB(tk: i32): usize { return offQB(tk) + (<usize>(BWD_ROWS * PACK_MAX_D) << 2); }
@inline function offEnd(tk: i32): usize { return offGB(tk) + (<usize>(BWD_ROWS * PACK_MAX_D) << 2); }

export function attentionScratchBytes(tk: i32): i32 {
  return (<i32>offEnd(tk) + 63) & ~63;
}

/** Copies n rows of D floats from src (row stride ss bytes) to dst (row stride ds bytes). */
function copyRows(dst: usize, ds: usize, src: usize, ss: usize, n: i32, D: i32): void {
  const rb = <usize>D << 2;
  for (let t = 0; t < n; t++) {
    let o: usize = 0;
    for (; o + 16 <= rb; o += 16) v128.store(dst + o, v128.load(src + o));
    for (; o < rb; o += 4) store<f32>(dst + o, load<f32>(src + o));
    dst += ds;
    src += ss;
  }
}

// ---- kernels -------------------------------------------------------------------------------------

// Work unit of the forward, decoded by unitOf(u) into these globals (per instance, so per thread):
// batch item, query head, and the second query head of a GQA pair (-1 if none).
let unitB: i32 = 0, unitH: i32 = 0, unitH1: i32 = -1;

/**
 * Forward work units: with GQA (group ≥ 2) pairs of query heads of one kv head, so each K/V load serves
 * two heads (decode included); otherwise single heads. unitCount gives how many, unitOf decodes one.
 */
@inline function unitCount(batch: i32, heads: i32, kvHeads: i32): i32 {
  const group = heads / kvHeads;
  return group >= 2 ? batch * kvHeads * ((group + 1) >> 1) : batch * heads;
}
function unitOf(u: i32, heads: i32, kvHeads: i32): void {
  const group = heads / kvHeads;
  if (group >= 2) {
    const perKv = (group + 1) >> 1;
    unitB = u / (kvHeads * perKv);
    const w = u % (kvHeads * perKv), kvh = w / perKv;
    unitH = kvh * group + 2 * (w % perKv);
    unitH1 = unitH + 1 < (kvh + 1) * group ? unitH + 1 : -1;
  } else {
    unitB = u / heads;
    unitH = u % heads;
    unitH1 = -1;
  }
}

/** Keys per block in the decode path; a multiple of 4, so blocks keep a whole row's 4-key groups. */
const DEC_KEYS: i32 = 32;

/**
 * Decode step (tq = 1, every row sees n keys) for units [u0, u1). Rather than one head after another,
 * the keys go in blocks of DEC_KEYS and each block is used by all the units before the next: K and V
 * rows of one position (all heads) are adjacent in memory, so the cache is read as one stream and each
 * page is visited once instead of once per head. Units go in chunks of up to 2·BWD_ROWS score rows.
 * The out rows accumulate block by block (the same additions in the same order as one combine) and are
 * normalized at the end.
 */
function decode(q: usize, k: usize, v: usize, out: usize, lse: usize, heads: i32, kvHeads: i32, D: i32, n: i32,
                scale: f32, kvBatchStride: i32, tk: i32, base: usize, u0: i32, u1: i32): void {
  const group = heads / kvHeads;
  const rs = <usize>tkPadded(tk) << 2, kvs = <usize>(kvHeads * D) << 2;
  const inv = base + offQB(tk); // 1/Σp per score row
  let c0 = u0;
  while (c0 < u1) {
    let c1 = c0, rows = 0;
    for (; c1 < u1; c1++) {
      unitOf(c1, heads, kvHeads);
      const add = unitH1 >= 0 ? 2 : 1;
      if (rows + add > 2 * BWD_ROWS) break;
      rows += add;
    }
    for (let j0 = 0; j0 < n; j0 += DEC_KEYS) {
      const m = minI(DEC_KEYS, n - j0);
      let sr = base + (<usize>j0 << 2);
      for (let u = c0; u < c1; u++) {
        unitOf(u, heads, kvHeads);
        const row = unitB * heads + unitH;
        const kb = at(k, unitB * kvBatchStride + (unitH / group) * D) + <usize>j0 * kvs;
        if (unitH1 >= 0) {
          scoreRow2(at(q, row * D), at(q, (row + 1) * D), kb, kvs, m, D, scale, sr, sr + rs);
          sr += rs << 1;
        } else {
          scoreRow(at(q, row * D), kb, kvs, m, D, scale, sr);
          sr += rs;
        }
      }
    }
    let r = 0;
    for (let u = c0; u < c1; u++) {
      unitOf(u, heads, kvHeads);
      const row = unitB * heads + unitH;
      for (let t = 0; t < (unitH1 >= 0 ? 2 : 1); t++) {
        const sum = softmaxRow(base + <usize>r * rs, n, n);
        store<f32>(at(lse, row + t), rowMax + Mathf.log(sum));
        store<f32>(at(inv, r), <f32>1 / sum);
        r++;
      }
    }
    for (let j0 = 0; j0 < n; j0 += DEC_KEYS) {
      const m = minI(DEC_KEYS, n - j0);
      let sr = base + (<usize>j0 << 2);
      for (let u = c0; u < c1; u++) {
        unitOf(u, heads, kvHeads);
        const row = unitB * heads + unitH;
        const vb = at(v, unitB * kvBatchStride + (unitH / group) * D) + <usize>j0 * kvs;
        if (unitH1 >= 0) {
          combine2(at(out, row * D), at(out, (row + 1) * D), sr, sr + rs, 4, vb, kvs, m, D, j0 > 0, 1, 1);
          sr += rs << 1;
        } else {
          combine(at(out, row * D), sr, 4, vb, kvs, m, D, j0 > 0, 1);
          sr += rs;
        }
      }
    }
    r = 0;
    for (let u = c0; u < c1; u++) {
      unitOf(u, heads, kvHeads);
      const row = unitB * heads + unitH;
      for (let t = 0; t < (unitH1 >= 0 ? 2 : 1); t++) {
        const o = at(out, (row + t) * D), f = load<f32>(at(inv, r)), vf = f32x4.splat(f);
        let e = 0;
        for (; e + 4 <= D; e += 4) v128.store(at(o, e), f32x4.mul(v128.load(at(o, e)), vf));
        for (; e < D; e++) store<f32>(at(o, e), load<f32>(at(o, e)) * f);
        r++;
      }
    }
    c0 = c1;
  }
}

/**
 * Decode attention for rows of several sequences (a batched decode step), each over its own cache:
 * row r's entry in `table` (six u32 at table + 24·r) holds the byte offsets of its query, keys, values,
 * out and lse rows and its key count n; each row is the tq = 1 path of attention() (batch 1, over n keys),
 * with the scratch laid out for maxTk keys (the largest n; layout only, the arithmetic is the same).
 * Threads split each row's heads as attention() does.
 */
export function attentionRows(table: usize, rows: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32, scratch: usize,
                              maxTk: i32, tid: i32, nth: i32): void {
  const base = scratch + <usize>tid * <usize>attentionScratchBytes(maxTk);
  const units = unitCount(1, heads, kvHeads), u0 = rowPart(units, tid, nth), u1 = rowPart(units, tid + 1, nth);
  for (let r = 0; r < rows; r++) {
    const e = table + <usize>r * 24;
    decode(<usize>load<u32>(e), <usize>load<u32>(e, 4), <usize>load<u32>(e, 8), <usize>load<u32>(e, 12), <usize>load<u32>(e, 16), heads, kvHeads,
           headDim, load<i32>(e, 20), scale, 0, maxTk, base, u0, u1);
  }
}

/** Forward for two query rows over the same K/V (row 0 sees n0 ≤ n1 keys, row 1 sees n1). */
function forwardPair(q0: usize, q1: usize, o0: usize, o1: usize, lse0: usize, lse1: usize, n0: i32, n1: i32,
                     kb: usize, vb: usize, ks: usize, D: i32, scale: f32, s0: usize, s1: usize): void {
  scoreRow2(q0, q1, kb, ks, n1, D, scale, s0, s1);
  const sum0 = softmaxRow(s0, n0, n1);
  store<f32>(lse0, rowMax + Mathf.log(sum0));
  const sum1 = softmaxRow(s1, n1, n1);
  store<f32>(lse1, rowMax + Mathf.log(sum1));
  combine2(o0, o1, s0, s1, 4, vb, ks, n1, D, false, <f32>1 / sum0, <f32>1 / sum1);
}

/** Forward for one query row seeing n keys. */
function forwardOne(q0: usize, o0: usize, lse0: usize, n: i32, kb: usize, vb: usize, ks: usize, D: i32, scale: f32, s0: usize): void {
  scoreRow(q0, kb, ks, n, D, scale, s0);
  const sum = softmaxRow(s0, n, n);
  store<f32>(lse0, rowMax + Mathf.log(sum));
  combine(o0, s0, 4, vb, ks, n, D, false, <f32>1 / sum);
}

export function attention(q: usize, k: usize, v: usize, out: usize, lse: usize, batch: i32, tq: i32, tk: i32, heads: i32,
                          kvHeads: i32, headDim: i32, qPos0: i32, scale: f32, kvBatchStride: i32, scratch: usize,
                          tid: i32, nth: i32): void {
  const D = headDim, group = heads / kvHeads;
  const base = scratch + <usize>tid * <usize>attentionScratchBytes(tk);
  const units = unitCount(batch, heads, kvHeads), u0 = rowPart(units, tid, nth), u1 = rowPart(units, tid + 1, nth);
  if (tq == 1) {
    decode(q, k, v, out, lse, heads, kvHeads, D, minI(qPos0 + 1, tk), scale, kvBatchStride, tk, base, u0, u1);
    return;
  }
  const s0 = base, s1 = base + (<usize>tkPadded(tk) << 2); // the two score rows
  const kvs = <usize>(kvHeads * D) << 2; // k/v row stride in memory (bytes)
  const pack = tq >= PACK_MIN_ROWS && D <= PACK_MAX_D;
  const ks = pack ? <usize>D << 2 : kvs; // k/v row stride as read below
  let packed = -1; // (b, kv head) whose K and V are in scratch
  for (let u = u0; u < u1; u++) {
    unitOf(u, heads, kvHeads);
    const b = unitB, h = unitH, h1 = unitH1, kvh = h / group;
    let kb = at(k, b * kvBatchStride + kvh * D), vb = at(v, b * kvBatchStride + kvh * D);
    if (pack) {
      if (packed != b * kvHeads + kvh) {
        copyRows(base + offK(tk), ks, kb, kvs, tk, D);
        copyRows(base + offV(tk), ks, vb, kvs, tk, D);
        packed = b * kvHeads + kvh;
      }
      kb = base + offK(tk);
      vb = base + offV(tk);
    }
    if (h1 >= 0) {
      // GQA pair: the same query row of both heads.
      for (let i = 0; i < tq; i++) {
        const row = (b * tq + i) * heads + h, row1 = row + 1;
        const n = minI(qPos0 + i + 1, tk);
        forwardPair(at(q, row * D), at(q, row1 * D), at(out, row * D), at(out, row1 * D), at(lse, row), at(lse, row1),
                    n, n, kb, vb, ks, D, scale, s0, s1);
      }
      continue;
    }
    let i = 0;
    for (; i + 2 <= tq; i += 2) {
      // Row i+1 sees one key more than row i; row i's score for it is computed and then masked (p = 0).
      const row = (b * tq + i) * heads + h, row1 = row + heads;
      forwardPair(at(q, row * D), at(q, row1 * D), at(out, row * D), at(out, row1 * D), at(lse, row), at(lse, row1),
                  minI(qPos0 + i + 1, tk), minI(qPos0 + i + 2, tk), kb, vb, ks, D, scale, s0, s1);
    }
    if (i < tq) {
      const row = (b * tq + i) * heads + h;
      forwardOne(at(q, row * D), at(out, row * D), at(lse, row), minI(qPos0 + i + 1, tk), kb, vb, ks, D, scale, s0);
    }
  }
}

export function attentionBackward(q: usize, k: usize, v: usize, out: usize, lse: usize, dout: usize, dq: usize, dk: usize, dv: usize,
                                  batch: i32, tq: i32, tk: i32, heads: i32, kvHeads: i32, headDim: i32, qPos0: i32, scale: f32,
                                  kvBatchStride: i32, scratch: usize, tid: i32, nth: i32): void {
  const D = headDim, group = heads / kvHeads, R = BWD_ROWS;
  const base = scratch + <usize>tid * <usize>attentionScratchBytes(tk);
  const pBlk = base, dsBlk = base + offDS(tk);
  const rs = <usize>tkPadded(tk) << 2; // P/dS row stride (bytes)
  const qs = <usize>(heads * D) << 2, kvs = <usize>(kvHeads * D) << 2; // q-like and k-like row strides in memory
  const pack = D <= PACK_MAX_D;
  const ks = pack ? <usize>D << 2 : kvs, bs = pack ? <usize>D << 2 : qs; // k-like and block row strides as read below
  const units = batch * kvHeads, end = rowPart(units, tid + 1, nth);
  for (let u = rowPart(units, tid, nth); u < end; u++) {
    const b = u / kvHeads, kvh = u % kvHeads;
    const kvOff = b * kvBatchStride + kvh * D;
    let kb = at(k, kvOff), vb = at(v, kvOff);
    const dkb = at(dk, kvOff), dvb = at(dv, kvOff);
    if (pack) {
      copyRows(base + offK(tk), ks, kb, kvs, tk, D);
      copyRows(base + offV(tk), ks, vb, kvs, tk, D);
      kb = base + offK(tk);
      vb = base + offV(tk);
    }
    for (let j = 0; j < tk; j++) {
      memory.fill(dkb + <usize>j * kvs, 0, <usize>D << 2);
      memory.fill(dvb + <usize>j * kvs, 0, <usize>D << 2);
    }
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      for (let i0 = 0; i0 < tq; i0 += R) {
        const rows = minI(R, tq - i0);
        const row0 = (b * tq + i0) * heads + h;
        const nMax = minI(qPos0 + i0 + rows, tk); // keys that some row of the block sees
        let qb = at(q, row0 * D), gb = at(dout, row0 * D);
        if (pack) {
          copyRows(base + offQB(tk), bs, qb, qs, rows, D);
          copyRows(base + offGB(tk), bs, gb, qs, rows, D);
          qb = base + offQB(tk);
          gb = base + offGB(tk);
        }
        // Row pass, two rows at a time: P, dS (zeroed from each row's limit to nMax) and dq.
        for (let r = 0; r < rows; r += 2) {
          const pair = r + 1 < rows;
          const row = row0 + r * heads, row1 = row + heads;
          const n0 = minI(qPos0 + i0 + r + 1, tk), n1 = pair ? minI(qPos0 + i0 + r + 2, tk) : n0;
          const pr = pBlk + <usize>r * rs, dr = dsBlk + <usize>r * rs;
          const qr = qb + <usize>r * bs, gr = gb + <usize>r * bs;
          if (pair) {
            scoreRow2(qr, qr + bs, kb, ks, n1, D, scale, pr, pr + rs);
            scoreRow2(gr, gr + bs, vb, ks, n1, D, 1, dr, dr + rs);
          } else {
            scoreRow(qr, kb, ks, n0, D, scale, pr);
            scoreRow(gr, vb, ks, n0, D, 1, dr);
          }
          probsAndDs(pr, dr, n0, nMax, load<f32>(at(lse, row)), dot1(gr, at(out, row * D), D), scale);
          if (pair) {
            probsAndDs(pr + rs, dr + rs, n1, nMax, load<f32>(at(lse, row1)), dot1(gr + bs, at(out, row1 * D), D), scale);
            combine2(at(dq, row * D), at(dq, row1 * D), dr, dr + rs, 4, kb, ks, n1, D, false, 1, 1);
          } else {
            combine(at(dq, row * D), dr, 4, kb, ks, n0, D, false, 1);
          }
        }
        // Column pass, two keys at a time: key j is seen by the block's rows r ≥ j - (qPos0 + i0);
        // key j+1 by the same rows less at most the first, whose entry for it is a stored zero.
        for (let j = 0; j < nMax; j += 2) {
          const r0 = j - (qPos0 + i0) > 0 ? j - (qPos0 + i0) : 0;
          const cnt = rows - r0;
          const pc = at(pBlk + <usize>r0 * rs, j), dc = at(dsBlk + <usize>r0 * rs, j);
          const gr = gb + <usize>r0 * bs, qr = qb + <usize>r0 * bs;
          const dvj = dvb + <usize>j * kvs, dkj = dkb + <usize>j * kvs;
          if (j + 1 < nMax) {
            combine2(dvj, dvj + kvs, pc, pc + 4, rs, gr, bs, cnt, D, true, 1, 1);
            combine2(dkj, dkj + kvs, dc, dc + 4, rs, qr, bs, cnt, D, true, 1, 1);
          } else {
            combine(dvj, pc, rs, gr, bs, cnt, D, true, 1);
            combine(dkj, dc, rs, qr, bs, cnt, D, true, 1);
          }
        }
      }
    }
  }
}
