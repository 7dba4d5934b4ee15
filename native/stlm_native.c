// stlm's optional native kernels for Node: the hot spots of the WebAssembly backend (quantized and f32
// matrix × few-rows products, attention of one query position over the KV cache, the f32 GEMM, training
// attention, SwiGLU, AdamW, RMSNorm, RoPE) in AVX2 or AVX-512 VNNI, on the backend's own WebAssembly
// memory. Everything else stays in WebAssembly; see src/kernels/wasm/native.ts for how the backend calls
// these and docs/ARCHITECTURE.md for why.
//
// Memory: attach(view, slot) records the base address and size of a backend's shared
// WebAssembly.Memory in a slot (a shared memory never moves: V8 reserves its maximum up front; the
// backend re-attaches after growth for the new size). Every kernel takes the slot first, then byte
// offsets into that memory, as the WebAssembly kernels do, and checks that what it touches lies inside
// before touching it. The library is loaded once per process, so the pool's workers see the same slots.
//
// Threads: each kernel takes (…, tid, nth) last and computes its share of whole outputs (columns in
// units of 16 as the WebAssembly kernels split them, rows, batch items, attention heads, or element
// ranges), never a part of one reduction, so results never depend on the thread count.
//
// Numerics: activations are quantized per block of 32 as llama.cpp's quantize_row_q8_0 does
// (d = f16(max|x|/127), q = nearest-even(x·127/max|x|)); the integer dot products are exact; each block's
// sum is scaled by d_w·d_x in f32, as llama.cpp does, so results equal llama.cpp's and the WebAssembly
// backend's up to float summation order.
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define STLM_X86 1
#else
#define STLM_X86 0
#endif

/** Attached memories (one per backend in the process): base address and size, by slot. */
#define SLOTS 256
static struct { uint8_t *base; size_t size; } mems[SLOTS];
/** The memory of the current call (set from the call's slot argument; each thread has its own). */
static _Thread_local uint8_t *mem_base = NULL;
static _Thread_local size_t mem_size = 0;

// ---- shared helpers --------------------------------------------------------------------------------

/** Units of 16 output columns per thread: thread t's first column (the remainder goes to the last). */
static int col_start(int n, int t, int nth) {
  if (t >= nth) return n;
  int units = n >> 4;
  return (int)(((int64_t)units * t) / nth) << 4;
}

static int row_part(int m, int t, int nth) {
  return (int)(((int64_t)m * t) / nth);
}

/** Bytes of one row of quantized activations: k int8, then k/32 f32 scales, then k/32 i32 (−2·Σq), 64-aligned. */
static size_t qrow_bytes(int k) {
  size_t nb = (size_t)k >> 5;
  return ((size_t)k + 8 * nb + 63) & ~(size_t)63;
}

#if STLM_X86

__attribute__((target("avx2,fma,f16c")))
static inline float f16_to_f32(uint16_t h) {
  return _cvtsh_ss(h);
}

/**
 * One row of 32-blocks of x → int8 q, f32 scale (the f16-rounded max|x|/127) and −2·Σq per block (Q4_0's
 * −8 offset spread over the four i32 lanes a row's block sum occupies in qmatmul_q4).
 */
__attribute__((target("avx2,fma,f16c")))
static void quantize_row(const float *x, int k, uint8_t *dst) {
  int nb = k >> 5;
  int8_t *q = (int8_t *)dst;
  float *ds = (float *)(dst + k);
  int32_t *ns = (int32_t *)(dst + k + 4 * (size_t)nb);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int b = 0; b < nb; b++) {
    const float *xb = x + 32 * b;
    __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    // max_ps drops NaNs; look for them apart so a NaN input gives a NaN scale (NaN outputs), not zeros.
    __m256 nan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)),
                              _mm256_or_ps(_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q), _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
    if (_mm256_movemask_ps(nan)) d = NAN;
    ds[b] = d;
    __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    ns[b] = -2 * _mm_cvtsi128_si32(s4);
    // packs interleave 128-bit lanes; the permute puts the 32 values back in order.
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
  }
}

// Σ_j (wq_j · xq_j) over one 32-block as 8 i32 lanes.
// AVX2: llama.cpp's sign trick (|w| as the unsigned operand of maddubs, x given w's sign), then madd.
__attribute__((target("avx2,fma,f16c")))
static inline __m256i dot32_avx2(__m256i w, __m256i x) {
  const __m256i ax = _mm256_sign_epi8(w, w);
  const __m256i sy = _mm256_sign_epi8(x, w);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/** Lane sums of four 8-lane accumulators, as one 4-vector (r_t = Σ lanes of a_t). */
__attribute__((target("avx2,fma,f16c")))
static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3);
  __m256 s = _mm256_hadd_ps(s01, s23);
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// Q8_0 block dots: DOT(p, x, c) = Σ q_w·q_x over the block at p as 8 i32 lanes (x: the 32 int8 q_x; c unused).
// AVX2: llama.cpp's sign trick. AVX-512 VNNI on 256-bit vectors: one vpdpbusd (u8 × s8, four products
// per i32 lane) per block, still with the sign trick (both operands are signed).
#define DOT_Q8_AVX2(p, x, c) dot32_avx2(_mm256_loadu_si256((const __m256i *)((p) + 2)), (x))
#define VNNI_TARGET "avx2,fma,f16c,avx512vnni,avx512vl"
__attribute__((target(VNNI_TARGET)))
static inline __m256i dot32_vnni_signed(__m256i w, __m256i x) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}
#define DOT_Q8_VNNI(p, x, c) dot32_vnni_signed(_mm256_loadu_si256((const __m256i *)((p) + 2)), (x))
// The same dots given |w| already taken (aw), for a W block used against several rows of x.
#define DOTA_Q8_AVX2(aw, w, x) _mm256_madd_epi16(_mm256_maddubs_epi16((aw), _mm256_sign_epi8((x), (w))), _mm256_set1_epi16(1))
#define DOTA_Q8_VNNI(aw, w, x) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (aw), _mm256_sign_epi8((x), (w)))

/** a += (block b of row wr) · (block b of x), scaled by d_w·d_x. */
#define STEP(DOT, BS, wr, b, a)                                                                          \
  a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT((wr) + (size_t)(b) * (BS), _mm256_loadu_si256((const __m256i *)(xq + 32 * (b))), 0)), \
                      _mm256_set1_ps(f16_to_f32(*(const uint16_t *)((wr) + (size_t)(b) * (BS))) * xd[b]), a)

/**
 * Four blocks b..b+3 of one row, as four STEPs into E (even blocks) and O (odd): the four f16 scales
 * converted as one vector and multiplied by d_x as one (the same f32 products), broadcast from memory.
 */
#define STEP1X4(DOT, BS, wr, b, E, O)                                                                     \
  do {                                                                                                   \
    const uint8_t *pb = (wr) + (size_t)(b) * (BS);                                                       \
    __m128i h = _mm_cvtsi32_si128(*(const uint16_t *)pb);                                                \
    h = _mm_insert_epi16(h, *(const uint16_t *)(pb + (BS)), 1);                                          \
    h = _mm_insert_epi16(h, *(const uint16_t *)(pb + 2 * (BS)), 2);                                      \
    h = _mm_insert_epi16(h, *(const uint16_t *)(pb + 3 * (BS)), 3);                                      \
    float sv[4];                                                                                         \
    _mm_storeu_ps(sv, _mm_mul_ps(_mm_cvtph_ps(h), _mm_loadu_ps(xd + (b))));                              \
    for (int t = 0; t < 4; t += 2) {                                                                     \
      E = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(pb + t * (BS), _mm256_loadu_si256((const __m256i *)(xq + 32 * ((b) + t))), 0)), _mm256_broadcast_ss(sv + t), E); \
      O = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(pb + (t + 1) * (BS), _mm256_loadu_si256((const __m256i *)(xq + 32 * ((b) + t + 1))), 0)), _mm256_broadcast_ss(sv + t + 1), O); \
    }                                                                                                    \
  } while (0)

/**
 * STEP for four rows w0..w3 at once: the x block is loaded once, and the four f16 weight scales are
 * converted and multiplied by d_x as one vector (the same f32 products as STEP's).
 */
#define STEP4(DOT, BS, b, A0, A1, A2, A3) STEP4X(DOT, BS, b, xq, xd, A0, A1, A2, A3)
/** STEP4 against the quantized x row XQ with scales XD. */
#define STEP4X(DOT, BS, b, XQ, XD, A0, A1, A2, A3)                                                        \
  do {                                                                                                   \
    size_t ob = (size_t)(b) * (BS);                                                                      \
    __m256i xv = _mm256_loadu_si256((const __m256i *)((XQ) + 32 * (b)));                                 \
    __m128i h = _mm_cvtsi32_si128(*(const uint16_t *)(w0 + ob));                                         \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w1 + ob), 1);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w2 + ob), 2);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w3 + ob), 3);                                            \
    float sv[4];                                                                                         \
    _mm_storeu_ps(sv, _mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps((XD)[b])));                                \
    A0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w0 + ob, xv, 0)), _mm256_broadcast_ss(sv + 0), A0);      \
    A1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w1 + ob, xv, 0)), _mm256_broadcast_ss(sv + 1), A1);      \
    A2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w2 + ob, xv, 0)), _mm256_broadcast_ss(sv + 2), A2);      \
    A3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w3 + ob, xv, 0)), _mm256_broadcast_ss(sv + 3), A3);      \
  } while (0)

/**
 * STEP4 for two rows of x (XA, XB with scales DA, DB) at once, into A0..A3 and B0..B3: each W block is
 * loaded and its |w| taken once for both, the four f16 scales converted once, and the scale products
 * d_w·d_x (the same f32 products as STEP4's) broadcast from memory rather than permuted in registers.
 */
#define STEP4X2(DOTA, BS, b, XA, DA, XB, DB, A0, A1, A2, A3, B0, B1, B2, B3)                             \
  do {                                                                                                   \
    size_t ob = (size_t)(b) * (BS);                                                                      \
    __m256i xa = _mm256_loadu_si256((const __m256i *)((XA) + 32 * (b)));                                 \
    __m256i xb = _mm256_loadu_si256((const __m256i *)((XB) + 32 * (b)));                                 \
    __m128i h = _mm_cvtsi32_si128(*(const uint16_t *)(w0 + ob));                                         \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w1 + ob), 1);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w2 + ob), 2);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w3 + ob), 3);                                            \
    __m128 dw = _mm_cvtph_ps(h);                                                                         \
    float sa[4], sb[4];                                                                                  \
    _mm_storeu_ps(sa, _mm_mul_ps(dw, _mm_set1_ps((DA)[b])));                                             \
    _mm_storeu_ps(sb, _mm_mul_ps(dw, _mm_set1_ps((DB)[b])));                                             \
    STEP_ROW2(DOTA, w0 + ob, 0, A0, B0);                                                                 \
    STEP_ROW2(DOTA, w1 + ob, 1, A1, B1);                                                                 \
    STEP_ROW2(DOTA, w2 + ob, 2, A2, B2);                                                                 \
    STEP_ROW2(DOTA, w3 + ob, 3, A3, B3);                                                                 \
  } while (0)
#define STEP_ROW2(DOTA, p, t, A, B)                                                                      \
  do {                                                                                                   \
    __m256i wv = _mm256_loadu_si256((const __m256i *)((p) + 2)), aw = _mm256_sign_epi8(wv, wv);          \
    A = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOTA(aw, wv, xa)), _mm256_broadcast_ss(sa + (t)), A);         \
    B = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOTA(aw, wv, xb)), _mm256_broadcast_ss(sb + (t)), B);         \
  } while (0)

/**
 * Q8_0: out[i, j] (+)= Σ_b d_w·d_x·Σ q_w·q_x over rows j of W and quantized rows i of x. Every row's sum is
 * kept in two accumulators (even and odd blocks, so the fused multiply-adds do not wait on each other)
 * and reduced the same way on every path, so a row's result does not depend on m or the thread count.
 * m = 1 (decode), bound by memory bandwidth: one row of W after the other, the order they lie in memory,
 *   a single sequential stream, asked for Q_PREFETCH_AHEAD bytes ahead (x stays in L1);
 *   four blocks' f16 scales converted as one vector (STEP1X4). Four rows per pass measured 1.27x faster
 *   with W in L3 (a 13M model) but 0.8x with W from DRAM at k = 768 (a 113M model's rows): not taken.
 * m > 1 (prefill, batched decode): groups of W rows that fit in L2, each swept over the rows of x two at
 *   a time, four W rows per pass (STEP4X2: each W block loaded and its |w| taken once for both rows of x,
 *   the four W rows' f16 scales converted as one vector, the scale products broadcast from memory: 1.3x
 *   faster per product than one x row at a time); the next four rows are prefetched, since four adjacent
 *   short rows are streams the hardware prefetcher keeps restarting. An odd last x row goes alone four W
 *   rows at a time (STEP4), a last n mod 4 W rows one at a time (STEP); all the same products.
 */
/**
 * A decode product (m = 1) from DRAM asks for the next lines of its stream this far ahead (three lines
 * per call: four Q8_0 blocks are 136 bytes, one repacked Q4_0 step of four rows 80). The hardware
 * prefetcher alone kept too few misses in flight for the int8 products, which do more work per byte than
 * the f32 matvec: rand25m Q8_0 decode, 1 thread, interleaved rounds (busy host) 307–383 tokens/s without,
 * 460–542 at 4 KiB (2 KiB 432–487; 8–16 KiB about 4 KiB's); Q4_0 505–615 against 605–667. The f32 matvec
 * got slower with it (137–154 against 164–178 tokens/s at 4 and 8 KiB) and has none.
 */
#define Q_PREFETCH_AHEAD 4096
#define PF_M1(p)                                                                                         \
  do {                                                                                                   \
    _mm_prefetch((const char *)(p) + Q_PREFETCH_AHEAD, _MM_HINT_T0);                                     \
    _mm_prefetch((const char *)(p) + Q_PREFETCH_AHEAD + 64, _MM_HINT_T0);                                \
    _mm_prefetch((const char *)(p) + Q_PREFETCH_AHEAD + 128, _MM_HINT_T0);                               \
  } while (0)
#define DEFINE_QMATMUL(NAME, TARGET, DOT, DOTA, BS)                                          \
  __attribute__((target(TARGET)))                                                                        \
  static void NAME(const uint8_t *xq_base, const uint8_t *w, float *out, int m, int n, int k, int acc, int tid, int nth) { \
    int nb = k >> 5;                                                                                     \
    size_t rb = (size_t)nb * (BS), xs = qrow_bytes(k);                                                   \
    int j0 = col_start(n, tid, nth), j1 = col_start(n, tid + 1, nth);                                    \
    int group = m == 1 ? (j1 - j0 > 0 ? j1 - j0 : 1) : (int)((256 * 1024 / rb) & ~(size_t)3);           \
    if (group < 4) group = 4;                                                                            \
    for (int jg = j0; jg < j1; jg += group) {                                                            \
      int je = jg + group < j1 ? jg + group : j1;                                                        \
      int ip = 0;                                                                                       \
      /* Two rows of x at a time against four rows of W: each W block is loaded (and its |w| taken) once \
         for both, and the f16 scales gathered once; every sum is the same arithmetic as below. */        \
      for (; ip + 2 <= m; ip += 2) {                                                                       \
        const int8_t *xqa = (const int8_t *)(xq_base + ip * xs), *xqb = (const int8_t *)(xq_base + (ip + 1) * xs); \
        const float *da = (const float *)(xq_base + ip * xs + k), *db = (const float *)(xq_base + (ip + 1) * xs + k); \
        float *oa = out + (size_t)ip * n, *obr = oa + n;                                                  \
        for (int j = jg; j + 4 <= je; j += 4) {                                                          \
          const uint8_t *w0 = w + (size_t)j * rb, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;           \
          __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;  \
          __m256 f0 = e0, f1 = e0, f2 = e0, f3 = e0, p0 = e0, p1 = e0, p2 = e0, p3 = e0;                 \
          int b = 0;                                                                                     \
          for (; b + 2 <= nb; b += 2) {                                                                  \
            const char *pf = (const char *)(w3 + rb + (size_t)b * (BS));                                 \
            _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + rb, _MM_HINT_T0);                           \
            _mm_prefetch(pf + 2 * rb, _MM_HINT_T0); _mm_prefetch(pf + 3 * rb, _MM_HINT_T0);              \
            STEP4X2(DOTA, BS, b, xqa, da, xqb, db, e0, e1, e2, e3, f0, f1, f2, f3);                       \
            STEP4X2(DOTA, BS, b + 1, xqa, da, xqb, db, o0, o1, o2, o3, p0, p1, p2, p3);                   \
          }                                                                                              \
          if (b < nb) STEP4X2(DOTA, BS, b, xqa, da, xqb, db, e0, e1, e2, e3, f0, f1, f2, f3);            \
          __m128 r = hsum4(_mm256_add_ps(e0, o0), _mm256_add_ps(e1, o1), _mm256_add_ps(e2, o2), _mm256_add_ps(e3, o3)); \
          if (acc) r = _mm_add_ps(r, _mm_loadu_ps(oa + j));                                              \
          _mm_storeu_ps(oa + j, r);                                                                      \
          r = hsum4(_mm256_add_ps(f0, p0), _mm256_add_ps(f1, p1), _mm256_add_ps(f2, p2), _mm256_add_ps(f3, p3)); \
          if (acc) r = _mm_add_ps(r, _mm_loadu_ps(obr + j));                                             \
          _mm_storeu_ps(obr + j, r);                                                                     \
        }                                                                                                \
      }                                                                                                  \
      /* The rest: rows of x not in a pair, and every row's last n mod 4 columns of the group. */       \
      for (int i = 0; i < m; i++) {                                                                      \
        const int8_t *xq = (const int8_t *)(xq_base + i * xs);                                           \
        const float *xd = (const float *)(xq_base + i * xs + k);                                         \
        float *o = out + (size_t)i * n;                                                                  \
        int j = i < ip ? jg + ((je - jg) & ~3) : jg;                                                     \
        for (; m > 1 && j + 4 <= je; j += 4) {                                                           \
          const uint8_t *w0 = w + (size_t)j * rb, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;           \
          __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;  \
          int b = 0;                                                                                     \
          for (; b + 2 <= nb; b += 2) {                                                                  \
            const char *pf = (const char *)(w3 + rb + (size_t)b * (BS));                                 \
            _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + rb, _MM_HINT_T0);                           \
            _mm_prefetch(pf + 2 * rb, _MM_HINT_T0); _mm_prefetch(pf + 3 * rb, _MM_HINT_T0);              \
            STEP4(DOT, BS, b, e0, e1, e2, e3);                                                           \
            STEP4(DOT, BS, b + 1, o0, o1, o2, o3);                                                       \
          }                                                                                              \
          if (b < nb) STEP4(DOT, BS, b, e0, e1, e2, e3);                                                 \
          __m128 r = hsum4(_mm256_add_ps(e0, o0), _mm256_add_ps(e1, o1), _mm256_add_ps(e2, o2), _mm256_add_ps(e3, o3)); \
          if (acc) r = _mm_add_ps(r, _mm_loadu_ps(o + j));                                               \
          _mm_storeu_ps(o + j, r);                                                                       \
        }                                                                                                \
        for (; j < je; j++) {                                                                            \
          const uint8_t *w0 = w + (size_t)j * rb;                                                        \
          __m256 e0 = _mm256_setzero_ps(), o0 = e0;                                                      \
          int b = 0;                                                                                     \
          for (; b + 4 <= nb; b += 4) { PF_M1(w0 + (size_t)b * (BS)); STEP1X4(DOT, BS, w0, b, e0, o0); } \
          for (; b + 2 <= nb; b += 2) { STEP(DOT, BS, w0, b, e0); STEP(DOT, BS, w0, b + 1, o0); }       \
          if (b < nb) STEP(DOT, BS, w0, b, e0);                                                          \
          __m256 a = _mm256_add_ps(e0, o0);                                                              \
          float r = _mm_cvtss_f32(hsum4(a, a, a, a));                                                    \
          o[j] = acc ? o[j] + r : r;                                                                     \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }

DEFINE_QMATMUL(qmatmul_q8_avx2, "avx2,fma,f16c", DOT_Q8_AVX2, DOTA_Q8_AVX2, 34)
DEFINE_QMATMUL(qmatmul_q8_vnni, VNNI_TARGET, DOT_Q8_VNNI, DOTA_Q8_VNNI, 34)

// Q4_0 row-pair dots: PAIRDOT(lo, hi, xlo, xhi, c): lo/hi hold the low/high nibbles of two rows' blocks
// (row A in the lower 128 bits, row B in the upper), xlo/xhi the block's x values 0..15 / 16..31 in both
// halves; the result's lanes 0..3 sum row A's 32 products, lanes 4..7 row B's.
// AVX2: nibbles minus 8 as signed bytes, then the sign trick. VNNI: the nibbles are the unsigned operand
// as they are, and c = −2·Σq_x in every lane brings in the −8 (four lanes per row: 4·(−2·Σq) = −8·Σq).
#define PAIRDOT_AVX2(lo, hi, xlo, xhi, c)                                                                 \
  _mm256_add_epi32(dot32_avx2(_mm256_sub_epi8((lo), _mm256_set1_epi8(8)), (xlo)),                         \
                   dot32_avx2(_mm256_sub_epi8((hi), _mm256_set1_epi8(8)), (xhi)))
#define PAIRDOT_VNNI(lo, hi, xlo, xhi, c) _mm256_dpbusd_epi32(_mm256_dpbusd_epi32((c), (lo), (xlo)), (hi), (xhi))

/**
 * Outputs j..j+3 (those below je) from the pair accumulators of a four-row pass: row r's four lanes
 * summed as ((l0 + l1) + (l2 + l3)) of its half, the same order for every row and either Q4_0 layout.
 */
__attribute__((target("avx2,fma,f16c")))
static inline void store_quad(float *o, int j, int je, int acc, __m256 a01, __m256 a23) {
  __m256 r = _mm256_hadd_ps(a01, a23);
  r = _mm256_hadd_ps(r, r);
  __m128 rows = _mm_unpacklo_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
  float rv[4];
  _mm_storeu_ps(rv, rows);
  for (int t = 0; t < 4 && j + t < je; t++) o[j + t] = acc ? o[j + t] + rv[t] : rv[t];
}

/** a += Σ over block b of the row pair (ra, rb_) · x, each row's lanes scaled by its d_w·d_x (in sv8 at idx). */
#define PAIR_STEP(PAIRDOT, ra, rb_, idx, a)                                                               \
  do {                                                                                                   \
    __m256i v = _mm256_loadu2_m128i((const __m128i *)((rb_) + ob + 2), (const __m128i *)((ra) + ob + 2));  \
    __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);             \
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(PAIRDOT(lo, hi, xlo, xhi, cv)), _mm256_permutevar8x32_ps(sv8, idx), a); \
  } while (0)

/** Block b of four rows w0..w3 into the pair accumulators A01 (rows 0, 1) and A23 (rows 2, 3). */
#define QUAD_STEP(PAIRDOT, b, A01, A23)                                                                  \
  do {                                                                                                   \
    size_t ob = (size_t)(b) * 18;                                                                        \
    __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 32 * (b))));         \
    __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 32 * (b) + 16)));    \
    __m256i cv = _mm256_set1_epi32(xn[b]); (void)cv;                                                     \
    __m128i h = _mm_cvtsi32_si128(*(const uint16_t *)(w0 + ob));                                         \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w1 + ob), 1);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w2 + ob), 2);                                            \
    h = _mm_insert_epi16(h, *(const uint16_t *)(w3 + ob), 3);                                            \
    __m256 sv8 = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(xd[b])));                \
    PAIR_STEP(PAIRDOT, w0, w1, idx01, A01);                                                              \
    PAIR_STEP(PAIRDOT, w2, w3, idx23, A23);                                                              \
  } while (0)

/**
 * Q4_0: out[i, j] (+)= Σ_b d_w·d_x·Σ (q_w − 8)·q_x. Bound by unpacking nibbles rather than by memory, so
 * two rows share every vector: one 256-bit register holds the 16 nibble bytes of a block of row A and of
 * row B, and one AND (one shift and AND) gives both rows' values 0..15 (16..31) against x broadcast into
 * both halves: half the instructions per weight of one row per register. Rows go in fours (two pairs,
 * their four f16 scales converted as one vector), for every m, in L2-sized groups swept over the rows of
 * x; a last incomplete four repeats its last row, so every row is computed by the same instructions in
 * the same lane positions and its result never depends on n, m or the thread count. X4 = 1 reads the
 * repacked layout instead (X4_STEP below).
 */
#define DEFINE_QMATMUL_Q4(NAME, TARGET, PAIRDOT, X4)                                                      \
  __attribute__((target(TARGET)))                                                                        \
  static void NAME(const uint8_t *xq_base, const uint8_t *w, float *out, int m, int n, int k, int acc, int tid, int nth) { \
    int nb = k >> 5;                                                                                     \
    /* Bytes per row: GGUF's 18 per block, or a quarter of the repacked layout's 80 per four rows. */   \
    size_t rb = (size_t)nb * (X4 ? 20 : 18), xs = qrow_bytes(k);                                         \
    int j0 = col_start(n, tid, nth), j1 = col_start(n, tid + 1, nth);                                    \
    int group = (int)((256 * 1024 / rb) & ~(size_t)3);                                                   \
    if (group < 4) group = 4;                                                                            \
    const __m256i m4 = _mm256_set1_epi8(0x0f);                                                           \
    const __m256i idx01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), idx23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3); \
    for (int jg = j0; jg < j1; jg += group) {                                                            \
      int je = jg + group < j1 ? jg + group : j1;                                                        \
      for (int i = 0; i < m; i++) {                                                                      \
        const int8_t *xq = (const int8_t *)(xq_base + i * xs);                                           \
        const float *xd = (const float *)(xq_base + i * xs + k);                                         \
        const int32_t *xn = (const int32_t *)(xq_base + i * xs + k + 4 * (size_t)nb);                    \
        float *o = out + (size_t)i * n;                                                                  \
        for (int j = jg; j < je; j += 4) {                                                               \
          int last = je - 1;                                                                             \
          const uint8_t *wg = w + (size_t)j * rb; /* X4: the group of rows j..j+3 */                     \
          const uint8_t *w0 = wg;                                                                        \
          const uint8_t *w1 = w + (size_t)(j + 1 <= last ? j + 1 : last) * rb;                           \
          const uint8_t *w2 = w + (size_t)(j + 2 <= last ? j + 2 : last) * rb;                           \
          const uint8_t *w3 = w + (size_t)(j + 3 <= last ? j + 3 : last) * rb;                           \
          __m256 e01 = _mm256_setzero_ps(), e23 = e01, o01 = e01, o23 = e01;                             \
          int b = 0;                                                                                     \
          for (; b + 2 <= nb; b += 2) {                                                                  \
            if (X4) {                                                                                    \
              PF_M1(wg + (size_t)b * 80);                                                                \
              X4_STEP(PAIRDOT, b, e01, e23);                                                             \
              X4_STEP(PAIRDOT, b + 1, o01, o23);                                                         \
            } else {                                                                                     \
              const char *pf = (const char *)(w0 + 4 * rb + (size_t)b * 18);                             \
              _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + rb, _MM_HINT_T0);                         \
              _mm_prefetch(pf + 2 * rb, _MM_HINT_T0); _mm_prefetch(pf + 3 * rb, _MM_HINT_T0);            \
              QUAD_STEP(PAIRDOT, b, e01, e23);                                                           \
              QUAD_STEP(PAIRDOT, b + 1, o01, o23);                                                       \
            }                                                                                            \
          }                                                                                              \
          if (b < nb) {                                                                                  \
            if (X4) X4_STEP(PAIRDOT, b, e01, e23);                                                       \
            else QUAD_STEP(PAIRDOT, b, e01, e23);                                                        \
          }                                                                                              \
          store_quad(o, j, je, acc, _mm256_add_ps(e01, o01), _mm256_add_ps(e23, o23));                   \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }

/**
 * Q4_0 repacked four rows at a time (the backend's upload layout, kernel type 3; see
 * src/kernels/wasm/assembly/quant.ts): per block of rows 4g..4g+3, their four f32 scales (16 bytes), then
 * their 16 nibble bytes each, so a row pair's block is one 256-bit load and the four scales one 128-bit
 * load, all from a single sequential stream (with X4 = 0 the kernel reads four row streams and gathers
 * four f16 scales per block). The same dots, lanes and reduction either way, so a row's result is bit
 * for bit the same in either layout; 1.3–1.8x faster per product (prototype, one thread).
 * A last group of fewer than four rows holds zero rows, whose outputs are not written.
 */
#define X4_PAIR(PAIRDOT, p, off, idx, a)                                                                  \
  do {                                                                                                   \
    __m256i v = _mm256_loadu_si256((const __m256i *)((p) + (off)));                                      \
    __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);             \
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(PAIRDOT(lo, hi, xlo, xhi, cv)), _mm256_permutevar8x32_ps(sv8, idx), a); \
  } while (0)
#define X4_STEP(PAIRDOT, b, A01, A23)                                                                    \
  do {                                                                                                   \
    const uint8_t *p = wg + (size_t)(b) * 80;                                                            \
    __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 32 * (b))));         \
    __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 32 * (b) + 16)));    \
    __m256i cv = _mm256_set1_epi32(xn[b]); (void)cv;                                                     \
    __m256 sv8 = _mm256_castps128_ps256(_mm_mul_ps(_mm_loadu_ps((const float *)p), _mm_set1_ps(xd[b])));  \
    X4_PAIR(PAIRDOT, p, 16, idx01, A01);                                                                 \
    X4_PAIR(PAIRDOT, p, 48, idx23, A23);                                                                 \
  } while (0)
DEFINE_QMATMUL_Q4(qmatmul_q4_avx2, "avx2,fma,f16c", PAIRDOT_AVX2, 0)
DEFINE_QMATMUL_Q4(qmatmul_q4_vnni, VNNI_TARGET, PAIRDOT_VNNI, 0)
DEFINE_QMATMUL_Q4(qmatmul_q4x4_avx2, "avx2,fma,f16c", PAIRDOT_AVX2, 1)
DEFINE_QMATMUL_Q4(qmatmul_q4x4_vnni, VNNI_TARGET, PAIRDOT_VNNI, 1)

/**
 * out[i, j] (+)= x[i, :] · W[j, :] for f32 W [n, k] (k a multiple of 8; the caller checks). Memory-bound:
 * the rows of W are read one after the other, in the order they lie in memory (one sequential stream,
 * which the hardware prefetcher follows at full bandwidth; interleaving rows measured slower), and each
 * row, once in L1, serves every row of x. Four accumulators per dot product hide the FMA latency.
 */
__attribute__((target("avx2,fma,f16c")))
static void matvec_f32_avx2(const float *x, const float *w, float *out, int m, int n, int k, int acc, int tid, int nth) {
  int j0 = col_start(n, tid, nth), j1 = col_start(n, tid + 1, nth);
  for (int j = j0; j < j1; j++) {
    const float *wr = w + (size_t)j * k;
    for (int i = 0; i < m; i++) {
      const float *xr = x + (size_t)i * k;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int c = 0;
      for (; c + 32 <= k; c += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c), _mm256_loadu_ps(xr + c), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c + 8), _mm256_loadu_ps(xr + c + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c + 16), _mm256_loadu_ps(xr + c + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c + 24), _mm256_loadu_ps(xr + c + 24), a3);
      }
      for (; c < k; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c), _mm256_loadu_ps(xr + c), a0);
      __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      float r = _mm_cvtss_f32(hsum4(a, a, a, a));
      float *o = out + (size_t)i * n + j;
      *o = acc ? *o + r : r;
    }
  }
}

/** out[0..3] (+)= the four lane sums in s. */
__attribute__((target("avx2,fma,f16c")))
static inline void store4(float *o, __m128 s, int acc) {
  if (acc) s = _mm_add_ps(s, _mm_loadu_ps(o));
  _mm_storeu_ps(o, s);
}

/**
 * out[i, j] (+)= x[i, :] · W[j, :] for a few rows of x (batched decode: one row per sequence). Tiles of
 * 3 rows of x × 4 rows of W in twelve accumulators (the last rows of x in tiles of 2 × 4 and 1 × 4): each
 * loaded vector of W serves three rows of x and each of x four of W, so the loop runs near the FMA
 * ports' rate where matvec_f32_avx2 (one dot product at a time, a horizontal sum each) and the packing
 * GEMM (which copies W first) do not. 3 × 4 measured 1.18–1.33x faster than 2 × 4 tiles (eight
 * accumulators) at m = 4–17, k = 128–384 (83 against 63–70 GFLOP/s on one core): twelve independent
 * FMA chains hide the FMA latency with room to spare, and a W load feeds three FMAs. The four rows of W
 * (4·k floats) stay in L1 while every row of x passes over them: W is read from memory once per call.
 * Every output is one accumulator over k in steps of 8 lanes, then its lane sum: the same numbers
 * whichever tile it falls in, so a row's outputs do not depend on m or the thread count.
 */
#define ROWS_TILE_BEGIN(R)                                                                               \
  const float *x0 = x + (size_t)i * k, *x1 = x0 + k, *x2 = x1 + k;                                      \
  (void)x1; (void)x2;                                                                                    \
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,    \
         a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00;
/** One vector of W row t against the tile's R rows of x (R is a constant: the unused FMAs fold away). */
#define ROWS_FMA(R, wt, A0, A1, A2)                                                                      \
  do {                                                                                                   \
    __m256 u = _mm256_loadu_ps((wt) + c);                                                                \
    A0 = _mm256_fmadd_ps(u, v0, A0);                                                                     \
    if ((R) > 1) A1 = _mm256_fmadd_ps(u, v1, A1);                                                        \
    if ((R) > 2) A2 = _mm256_fmadd_ps(u, v2, A2);                                                        \
  } while (0)
#define ROWS_TILE(R)                                                                                     \
  do {                                                                                                   \
    ROWS_TILE_BEGIN(R)                                                                                   \
    for (int c = 0; c < k; c += 8) {                                                                     \
      __m256 v0 = _mm256_loadu_ps(x0 + c), v1 = v0, v2 = v0;                                             \
      if ((R) > 1) v1 = _mm256_loadu_ps(x1 + c);                                                         \
      if ((R) > 2) v2 = _mm256_loadu_ps(x2 + c);                                                         \
      ROWS_FMA(R, w0, a00, a10, a20);                                                                    \
      ROWS_FMA(R, w1, a01, a11, a21);                                                                    \
      ROWS_FMA(R, w2, a02, a12, a22);                                                                    \
      ROWS_FMA(R, w3, a03, a13, a23);                                                                    \
    }                                                                                                    \
    store4(out + (size_t)i * n + j, hsum4(a00, a01, a02, a03), acc);                                     \
    if ((R) > 1) store4(out + (size_t)(i + 1) * n + j, hsum4(a10, a11, a12, a13), acc);                   \
    if ((R) > 2) store4(out + (size_t)(i + 2) * n + j, hsum4(a20, a21, a22, a23), acc);                   \
  } while (0)

__attribute__((target("avx2,fma,f16c")))
static void matmul_rows_f32_avx2(const float *x, const float *w, float *out, int m, int n, int k, int acc, int tid, int nth) {
  int j0 = col_start(n, tid, nth), j1 = col_start(n, tid + 1, nth);
  int j = j0;
  for (; j + 4 <= j1; j += 4) {
    const float *w0 = w + (size_t)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    int i = 0;
    for (; i + 3 <= m; i += 3) ROWS_TILE(3);
    if (i + 2 <= m) {
      ROWS_TILE(2);
      i += 2;
    }
    if (i < m) ROWS_TILE(1);
  }
  for (; j < j1; j++) { // the last 1–3 rows of W (n not a multiple of 4)
    const float *wr = w + (size_t)j * k;
    for (int i = 0; i < m; i++) {
      const float *xr = x + (size_t)i * k;
      __m256 a = _mm256_setzero_ps();
      for (int c = 0; c < k; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c), _mm256_loadu_ps(xr + c), a);
      float r = _mm_cvtss_f32(hsum4(a, a, a, a));
      float *o = out + (size_t)i * n + j;
      *o = acc ? *o + r : r;
    }
  }
}

/**
 * exp(x) on eight lanes, the algorithm of the WebAssembly kernels' exp4 (util.ts): clamp to
 * [-87.3, 88.7], x = n·ln2 + r, exp(r) by Cephes' degree-6 polynomial (relative error about 2e-7),
 * 2ⁿ built in the exponent bits from n = round(x·log2e) taken by adding 1.5·2²³.
 */
__attribute__((target("avx2,fma,f16c")))
static inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  __m256 t = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic);
  __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/** Per-thread score rows of attention_decode (keys of one head), grown as needed. */
static _Thread_local float *score_buf = NULL;
static _Thread_local size_t score_cap = 0;

/**
 * Scores of one head over n keys into s[0, n): s_t = scale·(q·K_t), K_t at kg + t·rs for t < n − 1 and at
 * kl for the last key; returns max s. Four keys at a time (four FMA chains of D/8, lanes summed by hsum4):
 * the cached keys in whole blocks, then one block of the keys left (at most three cached ones and the
 * last), its spare lanes repeating the last key. A key's score does not depend on its lane or block.
 * Head sizes 32 and 64 get their own unrolled copies of this (the same arithmetic).
 */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float decode_scores(const float *qh, const float *kg, const float *kl, size_t rs, int D, int n, float scale, float *s) {
  const int nc = n - 1;
  const __m128 vs = _mm_set1_ps(scale);
  __m128 mx = _mm_set1_ps(-INFINITY);
  int t = 0;
  for (; t + 4 <= nc; t += 4) {
    const float *x = kg + (size_t)t * rs;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int e = 0; e < D; e += 8) {
      const __m256 qe = _mm256_loadu_ps(qh + e);
      a0 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x + e), a0);
      a1 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x + rs + e), a1);
      a2 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x + 2 * rs + e), a2);
      a3 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x + 3 * rs + e), a3);
    }
    const __m128 sc = _mm_mul_ps(hsum4(a0, a1, a2, a3), vs);
    _mm_storeu_ps(s + t, sc);
    mx = _mm_max_ps(mx, sc);
  }
  const float *x0 = t < nc ? kg + (size_t)t * rs : kl, *x1 = t + 1 < nc ? kg + (size_t)(t + 1) * rs : kl;
  const float *x2 = t + 2 < nc ? kg + (size_t)(t + 2) * rs : kl;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int e = 0; e < D; e += 8) {
    const __m256 qe = _mm256_loadu_ps(qh + e);
    a0 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x0 + e), a0);
    a1 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x1 + e), a1);
    a2 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(x2 + e), a2);
    a3 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(kl + e), a3);
  }
  const __m128 sc = _mm_mul_ps(hsum4(a0, a1, a2, a3), vs);
  _mm_storeu_ps(s + t, sc);
  mx = _mm_max_ps(mx, sc);
  mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
  return _mm_cvtss_f32(_mm_max_ss(mx, _mm_shuffle_ps(mx, mx, 1)));
}

/** acc_i += p·x[8i, 8i + 8) for the w (a multiple of 8, ≤ 64) columns of one chunk. */
#define DECODE_PV(p, x, w, c0, c1, c2, c3, c4, c5, c6, c7)                  \
  do {                                                                     \
    c0 = _mm256_fmadd_ps((p), _mm256_loadu_ps(x), c0);                     \
    if ((w) > 8) c1 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 8), c1);  \
    if ((w) > 16) c2 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 16), c2); \
    if ((w) > 24) c3 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 24), c3); \
    if ((w) > 32) c4 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 32), c4); \
    if ((w) > 40) c5 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 40), c5); \
    if ((w) > 48) c6 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 48), c6); \
    if ((w) > 56) c7 = _mm256_fmadd_ps((p), _mm256_loadu_ps((x) + 56), c7); \
  } while (0)

/**
 * out = (Σ_t p_t·V_t)·inv over n values (V_t at vg + t·rs for t < n − 1, the last at vl), in column chunks
 * of 64 (eight accumulators, one FMA chain per column vector, keys in order), so a head of up to 64 reads
 * its values once. (Two accumulator sets over alternating keys, to break the FMA chains, measured slower
 * on 8 rows and the same on one: BENCHMARKS.md, batched decode attention.)
 */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void decode_values(const float *p, const float *vg, const float *vl, size_t rs, int D, int n, float inv, float *oh) {
  const int nc = n - 1;
  for (int e0 = 0; e0 < D; e0 += 64) {
    const int w = D - e0 < 64 ? D - e0 : 64;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int t = 0; t < nc; t++) DECODE_PV(_mm256_set1_ps(p[t]), vg + (size_t)t * rs + e0, w, a0, a1, a2, a3, a4, a5, a6, a7);
    DECODE_PV(_mm256_set1_ps(p[nc]), vl + e0, w, a0, a1, a2, a3, a4, a5, a6, a7);
    const __m256 vi = _mm256_set1_ps(inv), acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int i = 0; i < w / 8; i++) _mm256_storeu_ps(oh + e0 + 8 * i, _mm256_mul_ps(acc[i], vi));
  }
}

/**
 * Attention of one query position (decode) over n cached keys, for heads [h0, h1): for head h (KV head
 * g = h / (heads / kvHeads)), s_t = scale·q_h·K[t, g], p = exp(s − max s), out_h = Σ_t p_t·V[t, g] / Σp,
 * lse_h = max s + log Σp (what the forward saves). K and V rows are [n, kvHeads, D], D % 8 == 0; row n − 1
 * (the query's own key and value) is read from kl and vl instead: the cache's row n − 1 for one decode
 * row, or the new key and value that attentionDecodeRows is writing there on another thread. The order
 * of every sum depends on n and D alone, so a row gets the same numbers alone or in any batch.
 */
__attribute__((target("avx2,fma,f16c")))
static int attention_decode_avx2(const float *q, const float *k, const float *v, const float *kl, const float *vl, float *out, float *lse,
                                 int heads, int kvHeads, int D, int n, float scale, int h0, int h1) {
  if ((size_t)n + 8 > score_cap) {
    size_t cap = ((size_t)n + 8) * 2;
    float *b = (float *)realloc(score_buf, cap * sizeof(float));
    if (!b) return 0;
    score_buf = b;
    score_cap = cap;
  }
  float *s = score_buf;
  const int group = heads / kvHeads;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const size_t rs = (size_t)kvHeads * D;
  for (int h = h0; h < h1; h++) {
    const size_t go = (size_t)(h / group) * D;
    const float *qh = q + (size_t)h * D;
    const float *kg = k + go, *kh = kl + go;
    const float m = D == 32 ? decode_scores(qh, kg, kh, rs, 32, n, scale, s)
                  : D == 64 ? decode_scores(qh, kg, kh, rs, 64, n, scale, s) : decode_scores(qh, kg, kh, rs, D, n, scale, s);
    // p = exp(s − m) in place, Σp over 8 lanes then hsum4; lanes at or past n (whatever they hold) get p = 0
    // by a lane mask (not by storing −∞ there first: scalar stores under a vector load stall its forwarding).
    __m256 sum = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    for (int t = 0; t < n; t += 8) {
      __m256 pv = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + t), vm));
      if (t + 8 > n) pv = _mm256_and_ps(pv, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - t), lane)));
      _mm256_storeu_ps(s + t, pv);
      sum = _mm256_add_ps(sum, pv);
    }
    const float total = _mm_cvtss_f32(hsum4(sum, sum, sum, sum));
    lse[h] = m + logf(total);
    const float *vg = v + go, *vh = vl + go;
    float *oh = out + (size_t)h * D;
    if (D == 32) decode_values(s, vg, vh, rs, 32, n, 1.0f / total, oh);
    else if (D == 64) decode_values(s, vg, vh, rs, 64, n, 1.0f / total, oh);
    else decode_values(s, vg, vh, rs, D, n, 1.0f / total, oh);
  }
  return 1;
}


// ---- f32 GEMM ---------------------------------------------------------------------------------------
//
// C[m, n] (+)= op(A)[m, k] · op(B)[k, n], batched and strided, every transpose form: the products of
// training and prefill. Goto/BLIS structure, the same as the WebAssembly GEMM (assembly/gemm.ts):
//   for jc in steps of NC                  (columns of this thread's block of C)
//     for pc in steps of kc ≤ KC           (depth; k split into equal blocks, a multiple of 8)
//       pack op(B)[pc.., jc..] into NR-column panels [kc][NR]       (the block stays in L2/L3)
//       for ic in steps of MC              (rows of this thread's block of C)
//         pack op(A)[ic.., pc..] into MR-row panels [kc][MR]        (MC·kc·4 ≈ 120 KiB: L2)
//         for each NR panel of B           (kc·NR·4 = 16 KiB: stays in L1)
//           for each MR panel of A         (streamed from L2)
//             MR×NR micro-kernel: the tile of C in 12 registers, one FMA chain per register over p
// Packing absorbs the transposes (8×8 in-register transposes where op(X) runs across memory rows), so
// one micro-kernel serves nn, nt, tn and tt. Edge tiles go through a zero-padded scratch tile with the
// same micro-kernel, so every element of C is the same arithmetic wherever it lies: each depth block's
// sum is an FMA chain from 0 over p, added to C (the first block overwrites C unless accumulating). Threads take disjoint
// blocks of C (whole batch items when there are enough, else NR-panels of columns or MR-panels of rows,
// chosen as the WebAssembly GEMM chooses) and never split k, so results do not depend on the thread count.
// Scratch (packed panels and the edge tile, ~3.2 MB) is allocated once per thread on first use and freed
// when the thread exits.
#define GM_MR 6
#define GM_NR 16
#ifndef GM_KC
#define GM_KC 256
#endif
#ifndef GM_MC
#define GM_MC 120
#endif
#define GM_NC 3072
#define GM_AP_FLOATS (GM_MC * GM_KC + 64)  // + slack: pack_a_n stores 8 floats where a panel row has 6
#define GM_BP_FLOATS (GM_KC * GM_NC)
#define GM_TILE_FLOATS (GM_MR * GM_NR)

/** Each thread's packing scratch, freed when the thread exits (a disposed backend's workers end). */
static pthread_key_t gemm_key;
static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;
static void gemm_key_init(void) { pthread_key_create(&gemm_key, free); }

static float *gemm_scratch(void) {
  pthread_once(&gemm_once, gemm_key_init);
  float *ws = (float *)pthread_getspecific(gemm_key);
  if (!ws) {
    size_t bytes = ((size_t)(GM_AP_FLOATS + GM_BP_FLOATS + GM_TILE_FLOATS) * 4 + 63) & ~(size_t)63;
    ws = (float *)aligned_alloc(64, bytes);
    if (ws && pthread_setspecific(gemm_key, ws) != 0) {
      free(ws);
      ws = NULL;
    }
  }
  return ws;
}

static inline int imin(int a, int b) { return a < b ? a : b; }

/** Depth block: k split into ceil(k / GM_KC) blocks of equal size rounded up to 8 (the shape alone decides). */
static int gm_kc(int k) {
  int blocks = (k + GM_KC - 1) / GM_KC;
  int kc = (k + blocks - 1) / blocks;
  kc = (kc + 7) & ~7;
  return kc > GM_KC ? GM_KC : kc;
}

/** In-register transpose of eight 8-float rows. */
__attribute__((target("avx2,fma")))
static inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/** op(B) = B stored [k, n] (ldb floats a row): kc × nc from src → NR-column panels [kc][NR], zero-padded. */
__attribute__((target("avx2,fma")))
static void gm_pack_b_n(const float *src, size_t ldb, int kc, int nc, float *dst) {
  for (int j = 0; j < nc; j += GM_NR) {
    int nr = imin(GM_NR, nc - j);
    const float *s = src + j;
    if (nr == GM_NR) {
      for (int p = 0; p < kc; p++, s += ldb, dst += GM_NR) {
        _mm256_store_ps(dst, _mm256_loadu_ps(s));
        _mm256_store_ps(dst + 8, _mm256_loadu_ps(s + 8));
      }
    } else {
      for (int p = 0; p < kc; p++, s += ldb, dst += GM_NR) {
        int v = 0;
        for (; v < nr; v++) dst[v] = s[v];
        for (; v < GM_NR; v++) dst[v] = 0;
      }
    }
  }
}

/** op(B) = Bᵀ, B stored [n, k] (ldb floats a row): kc × nc from src → NR-column panels [kc][NR], zero-padded. */
__attribute__((target("avx2,fma")))
static void gm_pack_b_t(const float *src, size_t ldb, int kc, int nc, float *dst) {
  for (int j = 0; j < nc; j += GM_NR, dst += (size_t)kc * GM_NR) {
    int nr = imin(GM_NR, nc - j);
    const float *s = src + (size_t)j * ldb;
    int p = 0;
    if (nr == GM_NR) {
      for (; p + 8 <= kc; p += 8) {
        for (int h = 0; h < 2; h++) {
          __m256 r[8];
          for (int v = 0; v < 8; v++) r[v] = _mm256_loadu_ps(s + (size_t)(h * 8 + v) * ldb + p);
          transpose8(r);
          for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (size_t)(p + q) * GM_NR + h * 8, r[q]);
        }
      }
    }
    for (; p < kc; p++)
      for (int v = 0; v < GM_NR; v++) dst[(size_t)p * GM_NR + v] = v < nr ? s[(size_t)v * ldb + p] : 0;
  }
}

/** op(A) = A stored [m, k] (lda floats a row): mc × kc from src → MR-row panels [kc][MR], zero-padded. */
__attribute__((target("avx2,fma")))
static void gm_pack_a_n(const float *src, size_t lda, int kc, int mc, float *dst) {
  for (int i = 0; i < mc; i += GM_MR, dst += (size_t)kc * GM_MR) {
    int mr = imin(GM_MR, mc - i);
    const float *s = src + (size_t)i * lda;
    int p = 0;
    if (mr == GM_MR) {
      for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int v = 0; v < GM_MR; v++) r[v] = _mm256_loadu_ps(s + (size_t)v * lda + p);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8(r);
        // 8 floats where the panel row has 6: the next store (or the tail, or the next panel) overwrites
        // the 2 extra, and the scratch has slack after the last panel.
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (size_t)(p + q) * GM_MR, r[q]);
      }
    }
    for (; p < kc; p++)
      for (int v = 0; v < GM_MR; v++) dst[(size_t)p * GM_MR + v] = v < mr ? s[(size_t)v * lda + p] : 0;
  }
}

/** op(A) = Aᵀ, A stored [k, m] (lda floats a row): mc × kc from src → MR-row panels [kc][MR], zero-padded. */
static void gm_pack_a_t(const float *src, size_t lda, int kc, int mc, float *dst) {
  for (int i = 0; i < mc; i += GM_MR, dst += (size_t)kc * GM_MR) {
    int mr = imin(GM_MR, mc - i);
    const float *s = src + i;
    for (int p = 0; p < kc; p++, s += lda) {
      float *d = dst + (size_t)p * GM_MR;
      int v = 0;
      for (; v < mr; v++) d[v] = s[v];
      for (; v < GM_MR; v++) d[v] = 0;
    }
  }
}

/**
 * The 6×16 tile of C at c (ldc floats a row) (+)= A panel · B panel over kc: 12 accumulators from zero,
 * 2 B loads and 6 broadcasts per p; C is prefetched first and added at the end (so its cache misses
 * overlap the loop instead of stalling it).
 */
__attribute__((target("avx2,fma")))
static void gm_kernel_6x16(int kc, const float *restrict pa, const float *restrict pb, float *c, size_t ldc, int load) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  for (int i = 0; i < GM_MR; i++) {
    _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int p = 0; p < kc; p++) {
    __m256 b0 = _mm256_load_ps(pb), b1 = _mm256_load_ps(pb + 8), a;
    a = _mm256_broadcast_ss(pa + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(pa + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(pa + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(pa + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(pa + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(pa + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    pa += GM_MR;
    pb += GM_NR;
  }
#define GM_ROW(i, x0, x1)                                                                    \
  do {                                                                                       \
    float *r = c + (i) * ldc;                                                                \
    if (load) x0 = _mm256_add_ps(_mm256_loadu_ps(r), x0), x1 = _mm256_add_ps(_mm256_loadu_ps(r + 8), x1); \
    _mm256_storeu_ps(r, x0);                                                                 \
    _mm256_storeu_ps(r + 8, x1);                                                             \
  } while (0)
  GM_ROW(0, c00, c01); GM_ROW(1, c10, c11); GM_ROW(2, c20, c21);
  GM_ROW(3, c30, c31); GM_ROW(4, c40, c41); GM_ROW(5, c50, c51);
#undef GM_ROW
}

/** A partial tile (mr < MR or nr < NR) through the scratch tile, with the same arithmetic as a full one. */
__attribute__((target("avx2,fma")))
static void gm_edge(int kc, const float *pa, const float *pb, float *c, size_t ldc, int load, int mr, int nr, float *tile) {
  memset(tile, 0, GM_TILE_FLOATS * 4);
  if (load)
    for (int i = 0; i < mr; i++) memcpy(tile + i * GM_NR, c + i * ldc, (size_t)nr * 4);
  gm_kernel_6x16(kc, pa, pb, tile, GM_NR, load);
  for (int i = 0; i < mr; i++) memcpy(c + i * ldc, tile + i * GM_NR, (size_t)nr * 4);
}

/** C[i0:i1, j0:j1] of one product (see the top of this section). */
__attribute__((target("avx2,fma")))
static void gm_block(const float *a, const float *b, float *c, int m, int k, int n, int ta, int tb, int acc,
                     int i0, int i1, int j0, int j1, float *ws) {
  float *ap = ws, *bp = ws + GM_AP_FLOATS, *tile = bp + GM_BP_FLOATS;
  const size_t ldc = (size_t)n;
  const int kcMax = gm_kc(k);
  for (int jc = j0; jc < j1; jc += GM_NC) {
    int nc = imin(GM_NC, j1 - jc);
    for (int pc = 0; pc < k; pc += kcMax) {
      int kc = imin(kcMax, k - pc);
      if (tb) gm_pack_b_t(b + (size_t)jc * k + pc, (size_t)k, kc, nc, bp);
      else gm_pack_b_n(b + (size_t)pc * n + jc, (size_t)n, kc, nc, bp);
      int load = acc || pc > 0;
      for (int ic = i0; ic < i1; ic += GM_MC) {
        int mc = imin(GM_MC, i1 - ic);
        if (ta) gm_pack_a_t(a + (size_t)pc * m + ic, (size_t)m, kc, mc, ap);
        else gm_pack_a_n(a + (size_t)ic * k + pc, (size_t)k, kc, mc, ap);
        for (int jr = 0; jr < nc; jr += GM_NR) {
          const float *pb = bp + (size_t)jr * kc;
          int nr = imin(GM_NR, nc - jr);
          float *cp = c + (size_t)ic * ldc + jc + jr;
          for (int ir = 0; ir < mc; ir += GM_MR, cp += GM_MR * ldc) {
            const float *pa = ap + (size_t)ir * kc;
            int mr = imin(GM_MR, mc - ir);
            if (mr == GM_MR && nr == GM_NR) gm_kernel_6x16(kc, pa, pb, cp, ldc, load);
            else gm_edge(kc, pa, pb, cp, ldc, load, mr, nr, tile);
          }
        }
      }
    }
  }
}

/** Thread t of nth's share of one product: NR-panels of columns or MR-panels of rows, as assembly/gemm.ts splits. */
static void gm_product(const float *a, const float *b, float *c, int m, int k, int n, int ta, int tb, int acc, int tid, int nth, float *ws) {
  int np = (n + GM_NR - 1) / GM_NR, mp = (m + GM_MR - 1) / GM_MR;
  int i0 = 0, i1 = m, j0 = 0, j1 = n;
  if (nth > 1) {
    if (m <= n ? np >= nth || mp < nth : mp < nth) {
      j0 = row_part(np, tid, nth) * GM_NR;
      j1 = imin(row_part(np, tid + 1, nth) * GM_NR, n);
    } else {
      i0 = row_part(mp, tid, nth) * GM_MR;
      i1 = imin(row_part(mp, tid + 1, nth) * GM_MR, m);
    }
  }
  if (i0 < i1 && j0 < j1) gm_block(a, b, c, m, k, n, ta, tb, acc, i0, i1, j0, j1, ws);
}

/** The batched product, thread tid of nth's share: whole batch items when they are many and C's do not overlap. */
static void gemm_f32(const float *a, const float *b, float *c, int m, int k, int n, int ta, int tb, int acc, int batch,
                     size_t sa, size_t sb, size_t sc, int tid, int nth, float *ws) {
  if (nth > 1 && batch > 1 && sc >= (size_t)m * n && (batch % nth == 0 || batch >= 4 * nth)) {
    for (int t = row_part(batch, tid, nth); t < row_part(batch, tid + 1, nth); t++)
      gm_product(a + t * sa, b + t * sb, c + t * sc, m, k, n, ta, tb, acc, 0, 1, ws);
    return;
  }
  for (int t = 0; t < batch; t++) gm_product(a + t * sa, b + t * sb, c + t * sc, m, k, n, ta, tb, acc, tid, nth, ws);
}


// ---- training attention (forward and backward over many query rows) ----------------------------------
//
// Backend.attention / attentionBackward for tq ≥ 1 query rows (training, prefill chunks), causal with
// grouped-query heads, headDim D % 8 == 0. Layouts as the WebAssembly kernels (assembly/attention.ts):
// q/out/dout/dq [batch, tq, heads, D]; k/v/dk/dv [batch, tk, kvHeads, D] with batch stride kvStride; lse
// [batch, tq, heads]. Query i sees keys 0 .. min(qPos0 + i + 1, tk) − 1.
//
// Both are small GEMMs per head with a softmax between, built from two register-tiled kernels:
//   at_scores   S[r, j] = scale·Σ_e x_r[e]·Kᵀ[e, j]: 6 rows × 16 keys per tile (12 accumulators, 2 loads
//               and 6 broadcasts per e, the GEMM micro-kernel's shape) against Kᵀ (or Vᵀ) packed
//               [D][tkp] (tkp: at_ld, not a power of two), zero-padded to a multiple of 16 keys, so no
//               horizontal sums; keys outer, rows inner.
//   at_combine  dst_o = post_o·((acc ? dst_o : 0) + Σ_t c[o, t]·y_t): 6 outputs × 16 columns per tile; it
//               computes P·V and dS·K (outputs = query rows) and Pᵀ·dO, dSᵀ·Q (outputs = keys).
// Every element is one FMA chain in a fixed order (e ascending, or t ascending) whatever tile, block or
// thread it falls in; entries past a row's causal limit are stored as 0, and adding 0·y changes no bit.
// Forward: work unit (batch, query head); rows in blocks of AT_ROWS: scores over the keys the block sees,
//   per row m = max s, p = exp(s − m) (exp8, the decode kernel's), l = Σp (8 lanes, then hsum4),
//   out = (Σ p·v)/l, lse = m + log l. K (as Kᵀ) and V of the unit's kv head are packed into scratch,
//   re-packed only when the kv head changes.
// Backward (probabilities recomputed from lse): work unit (batch, kv head) with all its query heads, so
//   one thread owns those dk/dv rows; rows in blocks of AT_BWD_ROWS (q and dO rows packed):
//   P = exp(scale·q·k − lse), dP = dO·v, dS = scale·P·(dP − dO·O), dq = dS·K, then dv += Pᵀ·dO and
//   dk += dSᵀ·Q over the rows that see each key (heads, blocks and rows ascending).
// Units are fixed by the shape and never split, so results do not depend on the thread count.
#define AT_ROWS 6
#define AT_BWD_ROWS 36

/** Per-thread scratch of the training attention, grown as needed and freed when the thread exits. */
typedef struct { float *p; size_t cap; } at_buf_t;
static pthread_key_t at_key;
static pthread_once_t at_once = PTHREAD_ONCE_INIT;
static void at_buf_free(void *x) {
  at_buf_t *b = (at_buf_t *)x;
  free(b->p);
  free(b);
}
static void at_key_init(void) { pthread_key_create(&at_key, at_buf_free); }

static float *at_scratch(size_t floats) {
  pthread_once(&at_once, at_key_init);
  at_buf_t *b = (at_buf_t *)pthread_getspecific(at_key);
  if (!b) {
    b = (at_buf_t *)calloc(1, sizeof *b);
    if (!b) return NULL;
    if (pthread_setspecific(at_key, b) != 0) {
      free(b);
      return NULL;
    }
  }
  if (b->cap < floats) {
    free(b->p);
    b->p = (float *)aligned_alloc(64, (floats * 4 + 63) & ~(size_t)63);
    b->cap = b->p ? floats : 0;
  }
  return b->p;
}

static inline int at_pad16(int n) { return (n + 15) & ~15; }

/**
 * Row stride of packed Kᵀ/Vᵀ and of score rows for tk keys: 16 floats past tk rounded up to 16. Without
 * them a column's rows lie a power of two apart at tk = 512 (2 KiB) and all fall into two of the L1
 * cache's 64 sets, so walking a column (the head dimension in at_scores, rows of P in at_combine) missed
 * L1 on every row.
 */
static inline int at_ld(int tk) { return at_pad16(tk) + 16; }

/** Floats of scratch one thread needs for keys tk and head size D (the backward's layout; the forward uses a prefix). */
static size_t at_scratch_floats(int tk, int D) {
  size_t tkp = (size_t)at_ld(tk);
  return 2 * (size_t)D * tkp + (size_t)tk * D + 2 * (size_t)AT_BWD_ROWS * D + 2 * (size_t)AT_BWD_ROWS * tkp;
}

/** n rows of D floats (source row stride ss) → transposed into dst[e·ld + t], columns n .. pad16(n) zeroed. */
__attribute__((target("avx2,fma")))
static void at_pack_t(const float *src, size_t ss, int n, int D, float *dst, size_t ld) {
  int t = 0;
  for (; t + 8 <= n; t += 8)  // 8 × 8 blocks transposed in registers (D % 8 == 0)
    for (int e = 0; e < D; e += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)(t + i) * ss + e);
      transpose8(r);
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (size_t)(e + i) * ld + t, r[i]);
    }
  for (; t < n; t++)
    for (int e = 0; e < D; e++) dst[(size_t)e * ld + t] = src[(size_t)t * ss + e];
  for (int e = 0; e < D; e++)
    for (int t = n; t < at_pad16(n); t++) dst[(size_t)e * ld + t] = 0.0f;
}

/** n rows of D floats (source row stride ss) → contiguous rows. */
static void at_pack(const float *src, size_t ss, int n, int D, float *dst) {
  for (int t = 0; t < n; t++) memcpy(dst + (size_t)t * D, src + (size_t)t * ss, (size_t)D * 4);
}

/** S[r·ss + j] = scale·Σ_e x[r·xs + e]·kt[e·kts + j] for r < rows and j < pad16(nk) (≤ kts). */
__attribute__((target("avx2,fma")))
static void at_scores(const float *x, size_t xs, int rows, const float *kt, size_t kts, int nk, int D, float scale, float *s, size_t ss) {
  const __m256 vs = _mm256_set1_ps(scale);
  // Keys outer, rows inner: a block of 16 keys' Kᵀ columns (D lines) stays in L1 for every row block.
  for (int j = 0; j < nk; j += 16) {
    for (int r = 0; r < rows; r += AT_ROWS) {
      int nr = imin(AT_ROWS, rows - r);
      // Rows past nr read row 0 again (their sums are computed and not stored).
      const float *x0 = x + (size_t)r * xs, *x1 = nr > 1 ? x0 + xs : x0, *x2 = nr > 2 ? x0 + 2 * xs : x0, *x3 = nr > 3 ? x0 + 3 * xs : x0,
                  *x4 = nr > 4 ? x0 + 4 * xs : x0, *x5 = nr > 5 ? x0 + 5 * xs : x0;
      float *s0 = s + (size_t)r * ss;
      __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0, a4 = a0, b4 = a0, a5 = a0, b5 = a0;
      const float *kp = kt + j;
      for (int e = 0; e < D; e++, kp += kts) {
        __m256 k0 = _mm256_loadu_ps(kp), k1 = _mm256_loadu_ps(kp + 8), w;
        w = _mm256_broadcast_ss(x0 + e); a0 = _mm256_fmadd_ps(w, k0, a0); b0 = _mm256_fmadd_ps(w, k1, b0);
        w = _mm256_broadcast_ss(x1 + e); a1 = _mm256_fmadd_ps(w, k0, a1); b1 = _mm256_fmadd_ps(w, k1, b1);
        w = _mm256_broadcast_ss(x2 + e); a2 = _mm256_fmadd_ps(w, k0, a2); b2 = _mm256_fmadd_ps(w, k1, b2);
        w = _mm256_broadcast_ss(x3 + e); a3 = _mm256_fmadd_ps(w, k0, a3); b3 = _mm256_fmadd_ps(w, k1, b3);
        w = _mm256_broadcast_ss(x4 + e); a4 = _mm256_fmadd_ps(w, k0, a4); b4 = _mm256_fmadd_ps(w, k1, b4);
        w = _mm256_broadcast_ss(x5 + e); a5 = _mm256_fmadd_ps(w, k0, a5); b5 = _mm256_fmadd_ps(w, k1, b5);
      }
#define AT_STORE_ROW(i, a, b)                                                                                           \
  if (nr > (i)) {                                                                                                       \
    _mm256_storeu_ps(s0 + (i) * ss + j, _mm256_mul_ps(a, vs));                                                          \
    _mm256_storeu_ps(s0 + (i) * ss + j + 8, _mm256_mul_ps(b, vs));                                                      \
  }
      AT_STORE_ROW(0, a0, b0) AT_STORE_ROW(1, a1, b1) AT_STORE_ROW(2, a2, b2) AT_STORE_ROW(3, a3, b3) AT_STORE_ROW(4, a4, b4) AT_STORE_ROW(5, a5, b5)
#undef AT_STORE_ROW
    }
  }
}

/**
 * dst[o·dso + e] = post_o·((acc ? dst[o·dso + e] : 0) + Σ_{t<n} c[o·co + t·ct]·y[t·ys + e]) for o < no,
 * e < D (D % 8 == 0); post NULL means 1.
 */
__attribute__((target("avx2,fma")))
static void at_combine(float *dst, size_t dso, int no, const float *c, size_t co, size_t ct, const float *y, size_t ys, int n, int D,
                       int acc, const float *post) {
  for (int o = 0; o < no; o += AT_ROWS) {
    int nr = imin(AT_ROWS, no - o);
    // Outputs past nr repeat output 0 (computed alike, stored before it).
    const float *c0 = c + (size_t)o * co, *c1 = nr > 1 ? c0 + co : c0, *c2 = nr > 2 ? c0 + 2 * co : c0, *c3 = nr > 3 ? c0 + 3 * co : c0,
                *c4 = nr > 4 ? c0 + 4 * co : c0, *c5 = nr > 5 ? c0 + 5 * co : c0;
    float *d0 = dst + (size_t)o * dso, *d1 = nr > 1 ? d0 + dso : d0, *d2 = nr > 2 ? d0 + 2 * dso : d0, *d3 = nr > 3 ? d0 + 3 * dso : d0,
          *d4 = nr > 4 ? d0 + 4 * dso : d0, *d5 = nr > 5 ? d0 + 5 * dso : d0;
    float pv[AT_ROWS];
    for (int i = 0; i < AT_ROWS; i++) pv[i] = post && nr > i ? post[o + i] : 1.0f;
    int e = 0;
    for (; e + 16 <= D; e += 16) {
      __m256 a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5;
      if (acc) {
        a0 = _mm256_loadu_ps(d0 + e); b0 = _mm256_loadu_ps(d0 + e + 8); a1 = _mm256_loadu_ps(d1 + e); b1 = _mm256_loadu_ps(d1 + e + 8);
        a2 = _mm256_loadu_ps(d2 + e); b2 = _mm256_loadu_ps(d2 + e + 8); a3 = _mm256_loadu_ps(d3 + e); b3 = _mm256_loadu_ps(d3 + e + 8);
        a4 = _mm256_loadu_ps(d4 + e); b4 = _mm256_loadu_ps(d4 + e + 8); a5 = _mm256_loadu_ps(d5 + e); b5 = _mm256_loadu_ps(d5 + e + 8);
      } else {
        a0 = _mm256_setzero_ps(); b0 = a0; a1 = a0; b1 = a0; a2 = a0; b2 = a0; a3 = a0; b3 = a0; a4 = a0; b4 = a0; a5 = a0; b5 = a0;
      }
      const float *yp = y + e;
      size_t ot = 0;
      for (int t = 0; t < n; t++, yp += ys, ot += ct) {
        __m256 y0 = _mm256_loadu_ps(yp), y1 = _mm256_loadu_ps(yp + 8), w;
        w = _mm256_broadcast_ss(c0 + ot); a0 = _mm256_fmadd_ps(w, y0, a0); b0 = _mm256_fmadd_ps(w, y1, b0);
        w = _mm256_broadcast_ss(c1 + ot); a1 = _mm256_fmadd_ps(w, y0, a1); b1 = _mm256_fmadd_ps(w, y1, b1);
        w = _mm256_broadcast_ss(c2 + ot); a2 = _mm256_fmadd_ps(w, y0, a2); b2 = _mm256_fmadd_ps(w, y1, b2);
        w = _mm256_broadcast_ss(c3 + ot); a3 = _mm256_fmadd_ps(w, y0, a3); b3 = _mm256_fmadd_ps(w, y1, b3);
        w = _mm256_broadcast_ss(c4 + ot); a4 = _mm256_fmadd_ps(w, y0, a4); b4 = _mm256_fmadd_ps(w, y1, b4);
        w = _mm256_broadcast_ss(c5 + ot); a5 = _mm256_fmadd_ps(w, y0, a5); b5 = _mm256_fmadd_ps(w, y1, b5);
      }
#define AT_STORE_OUT(i, dp, a, b)                                                                                       \
  if (nr > (i)) {                                                                                                       \
    const __m256 p = _mm256_set1_ps(pv[i]);                                                                             \
    _mm256_storeu_ps(dp + e, _mm256_mul_ps(a, p));                                                                      \
    _mm256_storeu_ps(dp + e + 8, _mm256_mul_ps(b, p));                                                                  \
  }
      AT_STORE_OUT(5, d5, a5, b5) AT_STORE_OUT(4, d4, a4, b4) AT_STORE_OUT(3, d3, a3, b3) AT_STORE_OUT(2, d2, a2, b2)
      AT_STORE_OUT(1, d1, a1, b1) AT_STORE_OUT(0, d0, a0, b0)
#undef AT_STORE_OUT
    }
    if (e < D) {  // the last 8 columns
      __m256 a0, a1, a2, a3, a4, a5;
      if (acc) {
        a0 = _mm256_loadu_ps(d0 + e); a1 = _mm256_loadu_ps(d1 + e); a2 = _mm256_loadu_ps(d2 + e); a3 = _mm256_loadu_ps(d3 + e);
        a4 = _mm256_loadu_ps(d4 + e); a5 = _mm256_loadu_ps(d5 + e);
      } else {
        a0 = _mm256_setzero_ps(); a1 = a0; a2 = a0; a3 = a0; a4 = a0; a5 = a0;
      }
      const float *yp = y + e;
      size_t ot = 0;
      for (int t = 0; t < n; t++, yp += ys, ot += ct) {
        __m256 y0 = _mm256_loadu_ps(yp);
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(c0 + ot), y0, a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(c1 + ot), y0, a1);
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(c2 + ot), y0, a2);
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(c3 + ot), y0, a3);
        a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(c4 + ot), y0, a4);
        a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(c5 + ot), y0, a5);
      }
#define AT_STORE_OUT8(i, dp, a) \
  if (nr > (i)) _mm256_storeu_ps(dp + e, _mm256_mul_ps(a, _mm256_set1_ps(pv[i])));
      AT_STORE_OUT8(5, d5, a5) AT_STORE_OUT8(4, d4, a4) AT_STORE_OUT8(3, d3, a3) AT_STORE_OUT8(2, d2, a2) AT_STORE_OUT8(1, d1, a1)
      AT_STORE_OUT8(0, d0, a0)
#undef AT_STORE_OUT8
    }
  }
}

/** Lanes j0 .. j0+7 that are below n, as an all-ones mask. */
__attribute__((target("avx2,fma")))
static inline __m256 at_below(int j0, int n) {
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/**
 * One score row s[0, nz) (nz a multiple of 8) → p = exp(s − max) on [0, n), 0 on [n, nz); returns Σp and
 * sets *mx to the max. The sum is 8 lanes over the chunks below n, then hsum4: it depends on n alone.
 */
__attribute__((target("avx2,fma,f16c")))
static float at_softmax_row(float *s, int n, int nz, float *mx) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 vm = ninf;
  int j = 0;
  for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
  // The last partial chunk's lanes past n as −∞ (s holds nz ≥ n values), then the lanes' max by shuffles:
  // a max is the same whatever the order (scalar fmaxf calls here cost a fifth of the forward).
  if (j < n) vm = _mm256_max_ps(vm, _mm256_blendv_ps(ninf, _mm256_loadu_ps(s + j), at_below(j, n)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  const float m = _mm_cvtss_f32(h);
  vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  for (j = 0; j < n; j += 8) {
    __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm)), at_below(j, n));
    _mm256_storeu_ps(s + j, p);
    sum = _mm256_add_ps(sum, p);
  }
  for (; j < nz; j += 8) _mm256_storeu_ps(s + j, _mm256_setzero_ps());
  *mx = m;
  return _mm_cvtss_f32(hsum4(sum, sum, sum, sum));
}

/** Forward for units [u0, u1) of (batch, query head); see the top of this section. 0 if out of memory. */
__attribute__((target("avx2,fma,f16c")))
static int attention_train_fwd(const float *q, const float *k, const float *v, float *out, float *lse, int tq, int tk, int heads,
                               int kvHeads, int D, int qPos0, float scale, size_t kvStride, int u0, int u1) {
  if (u0 >= u1) return 1;
  float *ws = at_scratch(at_scratch_floats(tk, D));
  if (!ws) return 0;
  const int group = heads / kvHeads, tkp = at_ld(tk), nkAll = imin(qPos0 + tq, tk);
  const size_t qs = (size_t)heads * D, kvs = (size_t)kvHeads * D;
  float *kt = ws, *vp = kt + (size_t)D * tkp, *sb = vp + (size_t)tk * D;
  float post[AT_ROWS];
  long packed = -1;
  for (int u = u0; u < u1; u++) {
    const int b = u / heads, h = u % heads, kvh = h / group;
    if (packed != (long)b * kvHeads + kvh) {
      const float *kb = k + b * kvStride + (size_t)kvh * D, *vb = v + b * kvStride + (size_t)kvh * D;
      at_pack_t(kb, kvs, nkAll, D, kt, tkp);
      at_pack(vb, kvs, nkAll, D, vp);
      packed = (long)b * kvHeads + kvh;
    }
    for (int i0 = 0; i0 < tq; i0 += AT_ROWS) {
      const int nr = imin(AT_ROWS, tq - i0), nmax = imin(qPos0 + i0 + nr, tk), nz = (nmax + 7) & ~7;
      const size_t row0 = ((size_t)b * tq + i0) * heads + h;
      at_scores(q + row0 * D, qs, nr, kt, tkp, nmax, D, scale, sb, tkp);
      for (int r = 0; r < nr; r++) {
        float m, l = at_softmax_row(sb + (size_t)r * tkp, imin(qPos0 + i0 + r + 1, tk), nz, &m);
        lse[row0 + (size_t)r * heads] = m + logf(l);
        post[r] = 1.0f / l;
      }
      at_combine(out + row0 * D, qs, nr, sb, tkp, 1, vp, D, nmax, D, 0, post);
    }
  }
  return 1;
}

/** Backward for units [u0, u1) of (batch, kv head); see the top of this section. 0 if out of memory. */
__attribute__((target("avx2,fma,f16c")))
static int attention_train_bwd(const float *q, const float *k, const float *v, const float *out, const float *lse, const float *dout,
                               float *dq, float *dk, float *dv, int tq, int tk, int heads, int kvHeads, int D, int qPos0, float scale,
                               size_t kvStride, int u0, int u1) {
  if (u0 >= u1) return 1;
  float *ws = at_scratch(at_scratch_floats(tk, D));
  if (!ws) return 0;
  const int group = heads / kvHeads, tkp = at_ld(tk), nkAll = imin(qPos0 + tq, tk), R = AT_BWD_ROWS;
  const size_t qs = (size_t)heads * D, kvs = (size_t)kvHeads * D;
  float *kt = ws, *vt = kt + (size_t)D * tkp, *kp = vt + (size_t)D * tkp, *qb = kp + (size_t)tk * D, *gb = qb + (size_t)R * D;
  float *pb = gb + (size_t)R * D, *db = pb + (size_t)R * tkp;
  const __m256 vscale = _mm256_set1_ps(scale);
  for (int u = u0; u < u1; u++) {
    const int b = u / kvHeads, kvh = u % kvHeads;
    const size_t kvOff = b * kvStride + (size_t)kvh * D;
    at_pack_t(k + kvOff, kvs, nkAll, D, kt, tkp);
    at_pack_t(v + kvOff, kvs, nkAll, D, vt, tkp);
    at_pack(k + kvOff, kvs, nkAll, D, kp);
    float *dkb = dk + kvOff, *dvb = dv + kvOff;
    for (int j = 0; j < tk; j++) {
      memset(dkb + (size_t)j * kvs, 0, (size_t)D * 4);
      memset(dvb + (size_t)j * kvs, 0, (size_t)D * 4);
    }
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
      for (int i0 = 0; i0 < tq; i0 += R) {
        const int nr = imin(R, tq - i0), nmax = imin(qPos0 + i0 + nr, tk), nz = (nmax + 7) & ~7;
        const size_t row0 = ((size_t)b * tq + i0) * heads + h;
        at_pack(q + row0 * D, qs, nr, D, qb);
        at_pack(dout + row0 * D, qs, nr, D, gb);
        at_scores(qb, D, nr, kt, tkp, nmax, D, scale, pb, tkp);
        at_scores(gb, D, nr, vt, tkp, nmax, D, 1.0f, db, tkp);
        for (int r = 0; r < nr; r++) {
          const size_t row = row0 + (size_t)r * heads;
          const int n = imin(qPos0 + i0 + r + 1, tk);
          const float *gr = gb + (size_t)r * D, *orow = out + row * D;
          __m256 a = _mm256_setzero_ps();
          for (int e = 0; e < D; e += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(gr + e), _mm256_loadu_ps(orow + e), a);
          const __m256 vd = _mm256_set1_ps(_mm_cvtss_f32(hsum4(a, a, a, a))), vl = _mm256_set1_ps(lse[row]);
          float *pr = pb + (size_t)r * tkp, *dr = db + (size_t)r * tkp;
          int j = 0;
          for (; j < n; j += 8) {
            __m256 mask = at_below(j, n);
            __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(pr + j), vl)), mask);
            _mm256_storeu_ps(pr + j, p);
            _mm256_storeu_ps(dr + j, _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dr + j), vd)), vscale), mask));
          }
          for (; j < nz; j += 8) {
            _mm256_storeu_ps(pr + j, _mm256_setzero_ps());
            _mm256_storeu_ps(dr + j, _mm256_setzero_ps());
          }
        }
        // dq rows (written whole: a row lies in one block and sees all its keys here).
        at_combine(dq + row0 * D, qs, nr, db, tkp, 1, kp, D, nmax, D, 0, NULL);
        // dv += Pᵀ·dO, dk += dSᵀ·Q: keys 0 .. qPos0 + i0, which every row of the block sees, then the
        // diagonal keys in groups of AT_ROWS from the first row that sees the group's first key (the rows
        // before see none of the group; later keys' entries in the rows between are stored zeros).
        const int diag = imin(qPos0 + i0 + 1, nmax);
        at_combine(dvb, kvs, diag, pb, 1, tkp, gb, D, nr, D, 1, NULL);
        at_combine(dkb, kvs, diag, db, 1, tkp, qb, D, nr, D, 1, NULL);
        for (int j = diag; j < nmax; j += AT_ROWS) {
          const int r0 = j - (qPos0 + i0), cnt = imin(AT_ROWS, nmax - j);
          at_combine(dvb + (size_t)j * kvs, kvs, cnt, pb + (size_t)r0 * tkp + j, 1, tkp, gb + (size_t)r0 * D, D, nr - r0, D, 1, NULL);
          at_combine(dkb + (size_t)j * kvs, kvs, cnt, db + (size_t)r0 * tkp + j, 1, tkp, qb + (size_t)r0 * D, D, nr - r0, D, 1, NULL);
        }
      }
    }
  }
  return 1;
}


// ---- SwiGLU (forward and backward) -------------------------------------------------------------------
//
// out = silu(g)·up, silu(g) = g·σ(g), σ(g) = 1/(1 + exp(−g)); backward dup = dout·silu(g), dgate =
// dout·up·σ(g)·(1 + g·(1 − σ(g))): the WebAssembly kernels' formulas (assembly/elementwise.ts) on 8 lanes
// with exp8. Each thread takes a contiguous range in units of 8; the last partial vector goes through
// masked loads and stores of the same arithmetic, so every element is computed alike wherever it lies.

/** Thread t of nth's start in [0, n), in units of 8 (n at t = nth). */
static size_t ew_part(size_t n, int t, int nth) {
  if (t >= nth) return n;
  size_t units = (n + 7) >> 3;
  size_t s = ((units * (size_t)t) / (size_t)nth) << 3;
  return s < n ? s : n;
}

__attribute__((target("avx2,fma,f16c")))
static inline __m256 ew_sigmoid(__m256 g) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

// The element loops: whole vectors with plain loads and stores, the last partial one through masked
// ones (vmaskmovps stores are microcoded and slow on AMD: masking every vector made AdamW 3x slower).
#define EW_LOOP(I0, I1, ...)                                                                      \
  do {                                                                                            \
    size_t i = (I0);                                                                              \
    for (; i + 8 <= (I1); i += 8) {                                                               \
      const int full = 1;                                                                         \
      const __m256i mk = _mm256_set1_epi32(-1);                                                   \
      __VA_ARGS__                                                                                 \
    }                                                                                             \
    if (i < (I1)) {                                                                               \
      const int full = 0;                                                                         \
      const __m256i mk = _mm256_castps_si256(at_below(0, (int)((I1) - i)));                       \
      __VA_ARGS__                                                                                 \
    }                                                                                             \
  } while (0)
#define EW_LOAD(p) (full ? _mm256_loadu_ps((p) + i) : _mm256_maskload_ps((p) + i, mk))
#define EW_STORE(p, x) (full ? _mm256_storeu_ps((p) + i, (x)) : _mm256_maskstore_ps((p) + i, mk, (x)))

__attribute__((target("avx2,fma,f16c")))
static void swiglu_avx2(const float *gate, const float *up, float *out, size_t i0, size_t i1) {
  EW_LOOP(i0, i1, {
    __m256 g = EW_LOAD(gate), u = EW_LOAD(up);
    EW_STORE(out, _mm256_mul_ps(_mm256_mul_ps(g, ew_sigmoid(g)), u));
  });
}

__attribute__((target("avx2,fma,f16c")))
static void swiglu_backward_avx2(const float *gate, const float *up, const float *dout, float *dgate, float *dup, size_t i0, size_t i1) {
  const __m256 one = _mm256_set1_ps(1.0f);
  EW_LOOP(i0, i1, {
    __m256 g = EW_LOAD(gate), d = EW_LOAD(dout), u = EW_LOAD(up);
    __m256 s = ew_sigmoid(g);
    EW_STORE(dup, _mm256_mul_ps(d, _mm256_mul_ps(g, s)));
    __m256 ds = _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s))));
    EW_STORE(dgate, _mm256_mul_ps(_mm256_mul_ps(d, u), ds));
  });
}

// ---- AdamW -------------------------------------------------------------------------------------------
//
// The WebAssembly kernel's update (assembly/elementwise.ts) on 8 lanes, with its f32 constants:
// g = grad·gradScale, m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g², p = p·(1 − lr·wd) − (lr/bc1)·m /
// (√(v·(1/bc2)) + eps). Element ranges per thread as SwiGLU's (masked last vector).
__attribute__((target("avx2,fma,f16c")))
static void adamw_avx2(float *param, const float *grad, float *mo, float *vo, size_t i0, size_t i1, float lr, float beta1, float beta2,
                       float eps, float wd, float bc1, float bc2, float gradScale) {
  const __m256 vb1 = _mm256_set1_ps(beta1), vb2 = _mm256_set1_ps(beta2), va1 = _mm256_set1_ps(1.0f - beta1), va2 = _mm256_set1_ps(1.0f - beta2);
  const __m256 vgs = _mm256_set1_ps(gradScale), vdecay = _mm256_set1_ps(1.0f - lr * wd), vstep = _mm256_set1_ps(lr / bc1);
  const __m256 vbc2 = _mm256_set1_ps(1.0f / bc2), veps = _mm256_set1_ps(eps);
  EW_LOOP(i0, i1, {
    __m256 g = _mm256_mul_ps(EW_LOAD(grad), vgs);
    __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, EW_LOAD(mo)), _mm256_mul_ps(va1, g));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, EW_LOAD(vo)), _mm256_mul_ps(va2, _mm256_mul_ps(g, g)));
    EW_STORE(mo, mi);
    EW_STORE(vo, vi);
    __m256 denom = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, vbc2)), veps);
    __m256 p = _mm256_mul_ps(EW_LOAD(param), vdecay);
    EW_STORE(param, _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(vstep, mi), denom)));
  });
}


// ---- RMSNorm (forward and backward) and RoPE ----------------------------------------------------------
//
// The WebAssembly kernels (assembly/rows.ts) on 8 lanes, computing their numbers bit for bit: the same
// multiplies and adds in the same order, never fused into an FMA (which rounds once where WebAssembly
// rounds twice). So a row gets the same result whichever path takes it: decode rows (below the size
// threshold, in WebAssembly) and prefill or training rows (native) agree, as the GEMM's rows do, and
// training computes what it computed before. Every pass is bound by memory, so the unfused arithmetic
// costs nothing measurable. No masked loads or stores: partial vectors at a row's end go through the
// 4-lane and scalar steps WebAssembly's tails use.

/** Keeps a product in a register of its own so the compiler cannot fuse it with the add that follows. */
#define NOFUSE(v) __asm__("" : "+x"(v))

/**
 * Σ a·b over n as WebAssembly's rows.ts dot(): two 4-lane sums over chunks of 8 (here one 8-lane sum,
 * its halves those two), a last chunk of 4 into the first, ((s0+s1) lanes 0+1) + (lanes 2+3), then the
 * rest one by one.
 */
__attribute__((target("avx2,fma")))
static inline float rn_dot(const float *a, const float *b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 p = _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    NOFUSE(p);
    acc = _mm256_add_ps(acc, p);
  }
  __m128 s0 = _mm256_castps256_ps128(acc), s1 = _mm256_extractf128_ps(acc, 1);
  if (i + 4 <= n) {
    __m128 p = _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i));
    NOFUSE(p);
    s0 = _mm_add_ps(s0, p);
    i += 4;
  }
  __m128 t = _mm_add_ps(s0, s1);
  float s = (t[0] + t[1]) + (t[2] + t[3]);
  for (; i < n; i++) {
    float p = a[i] * b[i];
    NOFUSE(p);
    s += p;
  }
  return s;
}

/** RMSNorm forward of rows [r0, r1): rstd = 1/√(Σx²/dim + eps), out = x·rstd·w. */
__attribute__((target("avx2,fma")))
static void rmsnorm_avx2(const float *x, const float *w, float *out, float *rstd, int dim, float eps, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    const float *xr = x + (size_t)r * dim;
    float *orow = out + (size_t)r * dim;
    const float rs = 1.0f / sqrtf(rn_dot(xr, xr, dim) / (float)dim + eps);
    rstd[r] = rs;
    const __m256 vr = _mm256_set1_ps(rs);
    int i = 0;
    for (; i + 8 <= dim; i += 8) _mm256_storeu_ps(orow + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vr), _mm256_loadu_ps(w + i)));
    for (; i < dim; i++) orow[i] = xr[i] * rs * w[i];
  }
}

/**
 * d = Σ dy·w·x of one row as WebAssembly's rmsNormBackward sums it: one 4-lane sum over chunks of 4 in
 * order (here both halves of each 8-lane product, low then high), its lanes (0+1) + (2+3), then the rest.
 */
__attribute__((target("avx2,fma")))
static inline float rn_bwd_dot(const float *g, const float *w, const float *x, int dim) {
  __m128 acc = _mm_setzero_ps();
  int i = 0;
  for (; i + 8 <= dim; i += 8) {
    __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(w + i)), _mm256_loadu_ps(x + i));
    NOFUSE(p);
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(p));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(p, 1));
  }
  if (i + 4 <= dim) {
    __m128 p = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(g + i), _mm_loadu_ps(w + i)), _mm_loadu_ps(x + i));
    NOFUSE(p);
    acc = _mm_add_ps(acc, p);
    i += 4;
  }
  float d = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < dim; i++) {
    float p = g[i] * w[i] * x[i];
    NOFUSE(p);
    d += p;
  }
  return d;
}

/** dw[i0, i1) += dy·x·rstd of row r (dw's share of one row). */
__attribute__((target("avx2,fma")))
static inline void rn_bwd_dw(const float *xr, const float *gr, float rs, float *dw, int i0, int i1) {
  const __m256 vr = _mm256_set1_ps(rs);
  int i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(gr + i), _mm256_loadu_ps(xr + i)), vr);
    NOFUSE(p);
    _mm256_storeu_ps(dw + i, _mm256_add_ps(_mm256_loadu_ps(dw + i), p));
  }
  for (; i < i1; i++) {
    float p = gr[i] * xr[i] * rs;
    NOFUSE(p);
    dw[i] = dw[i] + p;
  }
}

/**
 * RMSNorm backward, thread tid of nth: dx = rstd·w·dy − rstd³/dim·(Σ dy·w·x)·x for rows [r0, r1), and
 * dw += Σ_rows dy·x·rstd for dw's columns [c0, c1) over every row, rows in order. dw is a sum over
 * rows, so threads split its columns, not the rows (each column's sum is then the same chain of adds
 * whatever the thread count); one thread does both in one pass over each row.
 */
__attribute__((target("avx2,fma")))
static void rmsnorm_backward_avx2(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw, int rows, int dim,
                                  int tid, int nth) {
  const int r0 = row_part(rows, tid, nth), r1 = row_part(rows, tid + 1, nth);
  for (int r = r0; r < r1; r++) {
    const float *xr = x + (size_t)r * dim, *gr = dy + (size_t)r * dim;
    float *dxr = dx + (size_t)r * dim;
    const float rs = rstd[r];
    const float d = rn_bwd_dot(gr, w, xr, dim);
    const float c = (rs * rs * rs * d) / (float)dim;
    const __m256 vr = _mm256_set1_ps(rs), vc = _mm256_set1_ps(c);
    int i = 0;
    for (; i + 8 <= dim; i += 8) {
      __m256 a = _mm256_mul_ps(_mm256_mul_ps(vr, _mm256_loadu_ps(w + i)), _mm256_loadu_ps(gr + i));
      __m256 b = _mm256_mul_ps(vc, _mm256_loadu_ps(xr + i));
      NOFUSE(a);
      NOFUSE(b);
      _mm256_storeu_ps(dxr + i, _mm256_sub_ps(a, b));
    }
    for (; i < dim; i++) {
      float a = rs * w[i] * gr[i], b = c * xr[i];
      NOFUSE(a);
      NOFUSE(b);
      dxr[i] = a - b;
    }
    if (nth == 1) rn_bwd_dw(xr, gr, rs, dw, 0, dim);
  }
  if (nth == 1) return;
  const int c0 = (int)ew_part((size_t)dim, tid, nth), c1 = (int)ew_part((size_t)dim, tid + 1, nth);
  if (c0 < c1)
    for (int r = 0; r < rows; r++) rn_bwd_dw(x + (size_t)r * dim, dy + (size_t)r * dim, rstd[r], dw, c0, c1);
}

/**
 * Interleaved-pair RoPE of rows [r0, r1) (x, out [rows, heads·headDim], row r at position pos0 + r mod
 * seqLen; table (cos, sin) per position and pair, the backend's): forward a' = a·c − b·s, b' = b·c + a·s,
 * inverse with −s. On 8 lanes: x·[c c …] then the swapped pairs times [s s …], combined by addsub
 * (subtract in even lanes, add in odd), WebAssembly's x·c + (swapped·s)·[∓1 ±1] exactly. x may be out.
 */
__attribute__((target("avx2,fma")))
static void rope_avx2(const float *x, float *out, const float *table, int heads, int headDim, int seqLen, int pos0, int inverse, int r0, int r1) {
  const __m256 neg8 = _mm256_set1_ps(inverse ? -1.0f : 1.0f);
  const __m128 neg4 = _mm_set1_ps(inverse ? -1.0f : 1.0f);
  for (int r = r0; r < r1; r++) {
    const float *trow = table + (size_t)(pos0 + r % seqLen) * headDim;
    for (int h = 0; h < heads; h++) {
      const float *xr = x + ((size_t)r * heads + h) * headDim;
      float *orow = out + ((size_t)r * heads + h) * headDim;
      int i = 0;
      for (; i + 8 <= headDim; i += 8) {
        __m256 v = _mm256_loadu_ps(xr + i), cs = _mm256_loadu_ps(trow + i);
        __m256 a = _mm256_mul_ps(v, _mm256_moveldup_ps(cs));
        __m256 b = _mm256_mul_ps(_mm256_mul_ps(_mm256_permute_ps(v, 0xB1), _mm256_movehdup_ps(cs)), neg8);
        NOFUSE(a);
        NOFUSE(b);
        _mm256_storeu_ps(orow + i, _mm256_addsub_ps(a, b));
      }
      if (i + 4 <= headDim) {
        __m128 v = _mm_loadu_ps(xr + i), cs = _mm_loadu_ps(trow + i);
        __m128 a = _mm_mul_ps(v, _mm_moveldup_ps(cs));
        __m128 b = _mm_mul_ps(_mm_mul_ps(_mm_permute_ps(v, 0xB1), _mm_movehdup_ps(cs)), neg4);
        NOFUSE(a);
        NOFUSE(b);
        _mm_storeu_ps(orow + i, _mm_addsub_ps(a, b));
        i += 4;
      }
      for (; i < headDim; i += 2) {
        const float c = trow[i], s = inverse ? -trow[i + 1] : trow[i + 1];
        const float a = xr[i], b = xr[i + 1];
        float ac = a * c, bs = b * s, as = a * s, bc = b * c;
        NOFUSE(ac);
        NOFUSE(bs);
        NOFUSE(as);
        NOFUSE(bc);
        orow[i] = ac - bs;
        orow[i + 1] = as + bc;
      }
    }
  }
}

// ---- axpy -------------------------------------------------------------------------------------------
//
// y += α·x (gradient accumulation): WebAssembly's kernel (assembly/elementwise.ts) on 8 lanes, the product
// kept unfused, so bit for bit its numbers. (A native add measured no faster than WebAssembly's: 0.97x.)
__attribute__((target("avx2,fma")))
static void axpy_avx2(const float *x, float alpha, float *y, size_t i0, size_t i1) {
  const __m256 va = _mm256_set1_ps(alpha);
  size_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 p = _mm256_mul_ps(va, _mm256_loadu_ps(x + i));
    NOFUSE(p);
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
  }
  for (; i < i1; i++) {
    float p = alpha * x[i];
    NOFUSE(p);
    y[i] = y[i] + p;
  }
}

#endif  // STLM_X86

// ---- which instruction set --------------------------------------------------------------------------

/** 0: none usable (the backend stays in WebAssembly), 1: AVX2 + FMA + F16C, 2: and AVX-512 VNNI (256-bit). */
static int isa_level(void) {
#if STLM_X86
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  // F16C has no __builtin_cpu_supports name in every compiler; every AVX2 CPU has it.
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) return 2;
  return 1;
#else
  return 0;
#endif
}

static int isa = -1;

// ---- N-API glue -------------------------------------------------------------------------------------

#define MAX_ARGC 24

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}

/** Reads exactly `want` numeric arguments as doubles; false (with a pending TypeError) if it cannot. */
static int read_args(napi_env env, napi_callback_info info, size_t want, double *out) {
  size_t argc = MAX_ARGC;
  napi_value argv[MAX_ARGC];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_type_error(env, NULL, "stlm native: wrong number of arguments");
    return 0;
  }
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_double(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "stlm native: arguments must be numbers");
      return 0;
    }
  }
  return 1;
}

/**
 * read_args for a kernel: argument 0 is the memory slot, which becomes this thread's current memory.
 * Also refuses when this CPU has no usable instruction set (the backend never calls then).
 */
static int read_kernel_args(napi_env env, napi_callback_info info, size_t want, double *out) {
  if (isa <= 0) {
    napi_throw_range_error(env, NULL, "stlm native: no usable instruction set");
    return 0;
  }
  if (!read_args(env, info, want, out)) return 0;
  double slot = out[0];
  if (!(slot >= 0 && slot < SLOTS && slot == (int)slot) || !mems[(int)slot].base) {
    napi_throw_range_error(env, NULL, "stlm native: no memory attached in this slot");
    return 0;
  }
  mem_base = mems[(int)slot].base;
  mem_size = mems[(int)slot].size;
  return 1;
}

/** True when [off, off + bytes) lies inside the recorded memory. */
static int inside(double off, double bytes) {
  return mem_base && off >= 0 && bytes >= 0 && off + bytes <= (double)mem_size;
}

static int valid_dims(double m, double n, double k) {
  return m >= 0 && n >= 0 && k > 0 && m <= 1 << 24 && n <= 1 << 24 && k <= 1 << 24 &&
         m == (int)m && n == (int)n && k == (int)k;
}

static int valid_share(double tid, double nth) {
  return nth >= 1 && tid >= 0 && tid < nth && nth <= 1024;
}

// attach(view, slot): records the memory under view (a Uint8Array over all of it) in a slot.
static napi_value attach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type type;
  size_t length;
  void *data;
  double slot;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array ||
      napi_get_value_double(env, argv[1], &slot) != napi_ok) {
    napi_throw_type_error(env, NULL, "stlm native: attach takes a Uint8Array over the whole WebAssembly memory and a slot");
    return NULL;
  }
  if (!(slot >= 0 && slot < SLOTS && slot == (int)slot)) return throw_range(env, "stlm native: attach: slot out of range");
  mems[(int)slot].base = (uint8_t *)data;
  mems[(int)slot].size = length;
  return NULL;
}

// detach(slot): forgets a slot's memory (the backend was disposed).
static napi_value detach(napi_env env, napi_callback_info info) {
  double a[1];
  if (!read_args(env, info, 1, a)) return NULL;
  if (!(a[0] >= 0 && a[0] < SLOTS && a[0] == (int)a[0])) return throw_range(env, "stlm native: detach: slot out of range");
  mems[(int)a[0]].base = NULL;
  mems[(int)a[0]].size = 0;
  return NULL;
}

// quantizeActivations(slot, x, m, k, xq, tid, nth): rows of x [m, k] f32 → quantized rows of qrowBytes(k).
static napi_value quantize_activations(napi_env env, napi_callback_info info) {
  double b[7];
  if (!read_kernel_args(env, info, 7, b)) return NULL;
  const double *a = b + 1;
  double m = a[1], k = a[2];
  if (!valid_dims(m, 1, k) || (int)k % 32 || !valid_share(a[4], a[5])) return throw_range(env, "stlm native quantizeActivations: invalid shape or share");
  if (!inside(a[0], m * k * 4) || !inside(a[3], m * (double)qrow_bytes((int)k))) return throw_range(env, "stlm native quantizeActivations: operand outside memory");
#if STLM_X86
  int im = (int)m, ik = (int)k, tid = (int)a[4], nth = (int)a[5];
  size_t xs = qrow_bytes(ik);
  for (int i = row_part(im, tid, nth); i < row_part(im, tid + 1, nth); i++)
    quantize_row((const float *)(mem_base + (size_t)a[0]) + (size_t)i * ik, ik, mem_base + (size_t)a[3] + i * xs);
#endif
  return NULL;
}

// qmatmul(slot, xq, w, out, m, n, k, type, accumulate, tid, nth): out[m, n] (+)= x̂ · Wᵀ, W Q8_0 (0), Q4_0
// (1) or Q4_0 repacked four rows at a time (3).
static napi_value qmatmul(napi_env env, napi_callback_info info) {
  double b[11];
  if (!read_kernel_args(env, info, 11, b)) return NULL;
  const double *a = b + 1;
  double m = a[3], n = a[4], k = a[5], type = a[6];
  if (!valid_dims(m, n, k) || (int)k % 32 || (type != 0 && type != 1 && type != 3) || !valid_share(a[8], a[9])) return throw_range(env, "stlm native qmatmul: invalid shape, type or share");
  double wBytes = type == 3 ? ceil(n / 4) * (k / 32) * 80 : n * (k / 32) * (type == 0 ? 34 : 18);
  if (!inside(a[0], m * (double)qrow_bytes((int)k)) || !inside(a[1], wBytes) || !inside(a[2], m * n * 4)) return throw_range(env, "stlm native qmatmul: operand outside memory");
#if STLM_X86
  const uint8_t *xq = mem_base + (size_t)a[0], *w = mem_base + (size_t)a[1];
  float *out = (float *)(mem_base + (size_t)a[2]);
  void (*fn)(const uint8_t *, const uint8_t *, float *, int, int, int, int, int, int) =
      isa >= 2 ? (type == 0 ? qmatmul_q8_vnni : type == 1 ? qmatmul_q4_vnni : qmatmul_q4x4_vnni)
               : (type == 0 ? qmatmul_q8_avx2 : type == 1 ? qmatmul_q4_avx2 : qmatmul_q4x4_avx2);
  fn(xq, w, out, (int)m, (int)n, (int)k, a[7] != 0, (int)a[8], (int)a[9]);
#endif
  return NULL;
}

// matvecF32(slot, x, w, out, m, n, k, accumulate, tid, nth): out[m, n] (+)= x · Wᵀ, W f32 [n, k], k % 8 == 0
// (one row: the bandwidth-bound matvec; a few rows: the 2×4-tiled product).
static napi_value matvec_f32(napi_env env, napi_callback_info info) {
  double b[10];
  if (!read_kernel_args(env, info, 10, b)) return NULL;
  const double *a = b + 1;
  double m = a[3], n = a[4], k = a[5];
  if (!valid_dims(m, n, k) || (int)k % 8 || !valid_share(a[7], a[8])) return throw_range(env, "stlm native matvecF32: invalid shape or share");
  if (!inside(a[0], m * k * 4) || !inside(a[1], n * k * 4) || !inside(a[2], m * n * 4)) return throw_range(env, "stlm native matvecF32: operand outside memory");
#if STLM_X86
  const float *x = (const float *)(mem_base + (size_t)a[0]), *w = (const float *)(mem_base + (size_t)a[1]);
  float *out = (float *)(mem_base + (size_t)a[2]);
  if (m == 1) matvec_f32_avx2(x, w, out, 1, (int)n, (int)k, a[6] != 0, (int)a[7], (int)a[8]);
  else matmul_rows_f32_avx2(x, w, out, (int)m, (int)n, (int)k, a[6] != 0, (int)a[7], (int)a[8]);
#endif
  return NULL;
}

// attentionDecode(slot, q, k, v, out, lse, heads, kvHeads, headDim, n, scale, tid, nth): one query
// position per head (batch 1) over n cached keys; K and V rows [n, kvHeads, headDim], headDim % 8 == 0.
static napi_value attention_decode(napi_env env, napi_callback_info info) {
  double b[13];
  if (!read_kernel_args(env, info, 13, b)) return NULL;
  const double *a = b + 1;
  double heads = a[5], kvHeads = a[6], D = a[7], n = a[8], tid = a[10], nth = a[11];
  if (!valid_dims(heads, kvHeads, D) || kvHeads < 1 || (int)heads % (int)kvHeads || (int)D % 8 || D > 4096 ||
      !(n >= 1 && n <= 1 << 24 && n == (int)n) || !valid_share(tid, nth))
    return throw_range(env, "stlm native attentionDecode: invalid shape or share");
  double kvBytes = n * kvHeads * D * 4;
  if (!inside(a[0], heads * D * 4) || !inside(a[1], kvBytes) || !inside(a[2], kvBytes) || !inside(a[3], heads * D * 4) || !inside(a[4], heads * 4))
    return throw_range(env, "stlm native attentionDecode: operand outside memory");
#if STLM_X86
  int h0 = row_part((int)heads, (int)tid, (int)nth), h1 = row_part((int)heads, (int)tid + 1, (int)nth);
  const float *k = (const float *)(mem_base + (size_t)a[1]), *v = (const float *)(mem_base + (size_t)a[2]);
  const size_t last = ((size_t)n - 1) * (size_t)kvHeads * (size_t)D;
  if (!attention_decode_avx2((const float *)(mem_base + (size_t)a[0]), k, v, k + last, v + last, (float *)(mem_base + (size_t)a[3]),
                             (float *)(mem_base + (size_t)a[4]), (int)heads, (int)kvHeads, (int)D, (int)n, (float)a[9], h0, h1))
    return throw_range(env, "stlm native attentionDecode: out of memory for the score row");
#endif
  return NULL;
}

// attentionDecodeRows(slot, table, rows, heads, kvHeads, headDim, scale, write, tid, nth): attentionDecode
// for rows of several sequences (a batched decode step), each over its own cache: row r's entry in the
// table (eight u32 at table + 32·r) holds the byte offsets of its query, keys, values, out and lse, its
// key count n, and the offsets of its new key and value ([kvHeads·headDim] each). With write = 1 the new
// key and value go into row n − 1 of the caches before the row attends (each thread writes its share of
// the KV heads, and attends with the new row read from the source, so no thread reads what another
// writes); with write = 0 the last two offsets are ignored and the caches are read as they are. The
// rows' caches must not overlap one another. Every row is checked before any is computed or written.
static napi_value attention_decode_rows(napi_env env, napi_callback_info info) {
  double b[10];
  if (!read_kernel_args(env, info, 10, b)) return NULL;
  const double *a = b + 1;
  double rows = a[1], heads = a[2], kvHeads = a[3], D = a[4], write = a[6], tid = a[7], nth = a[8];
  if (!valid_dims(heads, kvHeads, D) || kvHeads < 1 || (int)heads % (int)kvHeads || (int)D % 8 || D > 4096 ||
      !(rows >= 0 && rows <= 1 << 20 && rows == (int)rows) || !valid_share(tid, nth))
    return throw_range(env, "stlm native attentionDecodeRows: invalid shape or share");
  if (!(write == 0 || write == 1)) return throw_range(env, "stlm native attentionDecodeRows: the write flag is neither 0 nor 1");
  if (!inside(a[0], rows * 32)) return throw_range(env, "stlm native attentionDecodeRows: table outside memory");
  const uint32_t *t = (const uint32_t *)(mem_base + (size_t)a[0]);
  const double rowBytes = kvHeads * D * 4;
  static const char *const names[] = {"query", "keys", "values", "out", "lse", NULL, "new key", "new value"};
  char msg[128];
  for (int r = 0; r < (int)rows; r++) {
    const uint32_t *e = t + 8 * r;
    double n = e[5];
    if (!(n >= 1 && n <= 1 << 24)) {
      snprintf(msg, sizeof msg, "stlm native attentionDecodeRows: invalid key count %.0f in row %d", n, r);
      return throw_range(env, msg);
    }
    const double bytes[8] = {heads * D * 4, n * rowBytes, n * rowBytes, heads * D * 4, heads * 4, 0, rowBytes, rowBytes};
    for (int i = 0; i < (write ? 8 : 5); i++) {
      if (i == 5 || inside(e[i], bytes[i])) continue;
      snprintf(msg, sizeof msg, "stlm native attentionDecodeRows: operand outside memory (row %d's %s)", r, names[i]);
      return throw_range(env, msg);
    }
  }
#if STLM_X86
  const int ih = (int)heads, ikv = (int)kvHeads, iD = (int)D, it = (int)tid, in = (int)nth;
  const int h0 = row_part(ih, it, in), h1 = row_part(ih, it + 1, in);
  const int g0 = row_part(ikv, it, in), g1 = row_part(ikv, it + 1, in);
  const size_t rs = (size_t)ikv * iD;
  for (int r = 0; r < (int)rows; r++) {
    const uint32_t *e = t + 8 * r;
    const int n = (int)e[5];
    float *k = (float *)(mem_base + e[1]), *v = (float *)(mem_base + e[2]);
    const float *kl = k + (size_t)(n - 1) * rs, *vl = v + (size_t)(n - 1) * rs;
    if (write) {
      kl = (const float *)(mem_base + e[6]);
      vl = (const float *)(mem_base + e[7]);
      const size_t off = (size_t)g0 * iD, len = (size_t)(g1 - g0) * iD * sizeof(float);
      memmove(k + (size_t)(n - 1) * rs + off, kl + off, len);
      memmove(v + (size_t)(n - 1) * rs + off, vl + off, len);
    }
    if (!attention_decode_avx2((const float *)(mem_base + e[0]), k, v, kl, vl, (float *)(mem_base + e[3]), (float *)(mem_base + e[4]),
                               ih, ikv, iD, n, (float)a[5], h0, h1))
      return throw_range(env, "stlm native attentionDecodeRows: out of memory for the score row");
  }
#endif
  return NULL;
}

// gemmF32(slot, a, b, c, m, k, n, transA, transB, accumulate, batch, strideA, strideB, strideC, tid, nth):
// C[m, n] (+)= op(A) · op(B) for batch items (strides in elements, 0 broadcasts), as Backend.matmul.
static napi_value gemm_f32_js(napi_env env, napi_callback_info info) {
  double b[16];
  if (!read_kernel_args(env, info, 16, b)) return NULL;
  const double *a = b + 1;
  double m = a[3], k = a[4], n = a[5], batch = a[9], sa = a[10], sb = a[11], sc = a[12];
  if (!valid_dims(m, n, k) || m < 1 || n < 1 || !(batch >= 1 && batch <= 1 << 24 && batch == (int)batch) ||
      !(sa >= 0 && sb >= 0 && sc >= 0 && sa == floor(sa) && sb == floor(sb) && sc == floor(sc)) || !valid_share(a[13], a[14]))
    return throw_range(env, "stlm native gemmF32: invalid shape, stride or share");
  if (!inside(a[0], ((batch - 1) * sa + m * k) * 4) || !inside(a[1], ((batch - 1) * sb + k * n) * 4) || !inside(a[2], ((batch - 1) * sc + m * n) * 4))
    return throw_range(env, "stlm native gemmF32: operand outside memory");
#if STLM_X86
  float *ws = gemm_scratch();
  if (!ws) return throw_range(env, "stlm native gemmF32: out of memory for the packing scratch");
  gemm_f32((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (float *)(mem_base + (size_t)a[2]),
           (int)m, (int)k, (int)n, a[6] != 0, a[7] != 0, a[8] != 0, (int)batch, (size_t)sa, (size_t)sb, (size_t)sc, (int)a[13], (int)a[14], ws);
#endif
  return NULL;
}

/**
 * Checks the shape arguments a[0..8] = batch, tq, tk, heads, kvHeads, D, qPos0, scale, kvStride of the
 * training attention and that q-like operands (qn elements) and k-like ones (kn) fit; 0 with a RangeError.
 */
static int attention_train_shape(napi_env env, const char *name, const double *a, double *qn, double *kn) {
  double batch = a[0], tq = a[1], tk = a[2], heads = a[3], kvHeads = a[4], D = a[5], qPos0 = a[6], kvStride = a[8];
  int ok = valid_dims(batch, tq, tk) && batch >= 1 && tq >= 1 && valid_dims(heads, kvHeads, D) && heads >= 1 && kvHeads >= 1 &&
           (int)heads % (int)kvHeads == 0 && (int)D % 8 == 0 && qPos0 >= 0 && qPos0 <= 1 << 24 && qPos0 == (int)qPos0 &&
           kvStride >= tk * kvHeads * D && kvStride == floor(kvStride) && kvStride <= 1e12;
  if (!ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "stlm native %s: invalid shape or share", name);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *qn = batch * tq * heads * D;
  *kn = (batch - 1) * kvStride + tk * kvHeads * D;
  return 1;
}

// attentionTrain(slot, q, k, v, out, lse, batch, tq, tk, heads, kvHeads, headDim, qPos0, scale, kvStride, tid, nth):
// Backend.attention for any tq (causal, GQA), headDim % 8 == 0, kvStride ≥ tk·kvHeads·headDim.
static napi_value attention_train(napi_env env, napi_callback_info info) {
  double b[17], qn, kn;
  if (!read_kernel_args(env, info, 17, b)) return NULL;
  const double *a = b + 1, *s = a + 5;
  if (!attention_train_shape(env, "attentionTrain", s, &qn, &kn)) return NULL;
  if (!valid_share(a[14], a[15])) return throw_range(env, "stlm native attentionTrain: invalid shape or share");
  if (!inside(a[0], qn * 4) || !inside(a[1], kn * 4) || !inside(a[2], kn * 4) || !inside(a[3], qn * 4) || !inside(a[4], qn / s[5] * 4))
    return throw_range(env, "stlm native attentionTrain: operand outside memory");
#if STLM_X86
  int units = (int)s[0] * (int)s[3], tid = (int)a[14], nth = (int)a[15];
  if (!attention_train_fwd((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (const float *)(mem_base + (size_t)a[2]),
                           (float *)(mem_base + (size_t)a[3]), (float *)(mem_base + (size_t)a[4]), (int)s[1], (int)s[2], (int)s[3], (int)s[4], (int)s[5],
                           (int)s[6], (float)s[7], (size_t)s[8], row_part(units, tid, nth), row_part(units, tid + 1, nth)))
    return throw_range(env, "stlm native attentionTrain: out of memory for the scratch");
#endif
  return NULL;
}

// attentionTrainBackward(slot, q, k, v, out, lse, dout, dq, dk, dv, batch, tq, tk, heads, kvHeads, headDim, qPos0, scale,
// kvStride, tid, nth): Backend.attentionBackward under the same conditions; dq, dk, dv overwritten.
static napi_value attention_train_backward(napi_env env, napi_callback_info info) {
  double b[21], qn, kn;
  if (!read_kernel_args(env, info, 21, b)) return NULL;
  const double *a = b + 1, *s = a + 9;
  if (!attention_train_shape(env, "attentionTrainBackward", s, &qn, &kn)) return NULL;
  if (!valid_share(a[18], a[19])) return throw_range(env, "stlm native attentionTrainBackward: invalid shape or share");
  if (!inside(a[0], qn * 4) || !inside(a[1], kn * 4) || !inside(a[2], kn * 4) || !inside(a[3], qn * 4) || !inside(a[4], qn / s[5] * 4) ||
      !inside(a[5], qn * 4) || !inside(a[6], qn * 4) || !inside(a[7], kn * 4) || !inside(a[8], kn * 4))
    return throw_range(env, "stlm native attentionTrainBackward: operand outside memory");
#if STLM_X86
  int units = (int)s[0] * (int)s[4], tid = (int)a[18], nth = (int)a[19];
  if (!attention_train_bwd((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (const float *)(mem_base + (size_t)a[2]),
                           (const float *)(mem_base + (size_t)a[3]), (const float *)(mem_base + (size_t)a[4]), (const float *)(mem_base + (size_t)a[5]),
                           (float *)(mem_base + (size_t)a[6]), (float *)(mem_base + (size_t)a[7]), (float *)(mem_base + (size_t)a[8]),
                           (int)s[1], (int)s[2], (int)s[3], (int)s[4], (int)s[5], (int)s[6], (float)s[7], (size_t)s[8],
                           row_part(units, tid, nth), row_part(units, tid + 1, nth)))
    return throw_range(env, "stlm native attentionTrainBackward: out of memory for the scratch");
#endif
  return NULL;
}

// swiglu(slot, gate, up, out, n, tid, nth): out = silu(gate)·up over n elements.
/**
 * The checks every elementwise binding makes: n (at a[n_at]) a whole count up to 2^30, the thread share
 * (a[share_at], a[share_at + 1]) valid, and the first `operands` arguments each n floats inside memory.
 * False with a pending RangeError naming `name` otherwise.
 */
static int elementwise_args_ok(napi_env env, const double *a, int operands, int n_at, int share_at, const char *name) {
  char msg[96];
  double n = a[n_at];
  if (!(n >= 0 && n <= 1 << 30 && n == floor(n)) || !valid_share(a[share_at], a[share_at + 1])) {
    snprintf(msg, sizeof msg, "stlm native %s: invalid size or share", name);
    throw_range(env, msg);
    return 0;
  }
  for (int i = 0; i < operands; i++)
    if (!inside(a[i], n * 4)) {
      snprintf(msg, sizeof msg, "stlm native %s: operand outside memory", name);
      throw_range(env, msg);
      return 0;
    }
  return 1;
}

static napi_value swiglu_js(napi_env env, napi_callback_info info) {
  double b[7];
  if (!read_kernel_args(env, info, 7, b)) return NULL;
  const double *a = b + 1;
  if (!elementwise_args_ok(env, a, 3, 3, 4, "swiglu")) return NULL;
#if STLM_X86
  size_t n = (size_t)a[3];
  int tid = (int)a[4], nth = (int)a[5];
  swiglu_avx2((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (float *)(mem_base + (size_t)a[2]),
              ew_part(n, tid, nth), ew_part(n, tid + 1, nth));
#endif
  return NULL;
}

// swigluBackward(slot, gate, up, dout, dgate, dup, n, tid, nth): dgate and dup overwritten.
static napi_value swiglu_backward_js(napi_env env, napi_callback_info info) {
  double b[9];
  if (!read_kernel_args(env, info, 9, b)) return NULL;
  const double *a = b + 1;
  if (!elementwise_args_ok(env, a, 5, 5, 6, "swigluBackward")) return NULL;
#if STLM_X86
  size_t n = (size_t)a[5];
  int tid = (int)a[6], nth = (int)a[7];
  swiglu_backward_avx2((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (const float *)(mem_base + (size_t)a[2]),
                       (float *)(mem_base + (size_t)a[3]), (float *)(mem_base + (size_t)a[4]), ew_part(n, tid, nth), ew_part(n, tid + 1, nth));
#endif
  return NULL;
}

// adamw(slot, param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, bc1, bc2, gradScale, tid, nth): one AdamW
// step over n parameters in place (bc1, bc2: the bias corrections 1 − β^t).
static napi_value adamw_js(napi_env env, napi_callback_info info) {
  double b[16];
  if (!read_kernel_args(env, info, 16, b)) return NULL;
  const double *a = b + 1;
  if (!elementwise_args_ok(env, a, 4, 4, 13, "adamw")) return NULL;
#if STLM_X86
  size_t n = (size_t)a[4];
  int tid = (int)a[13], nth = (int)a[14];
  adamw_avx2((float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[1]), (float *)(mem_base + (size_t)a[2]), (float *)(mem_base + (size_t)a[3]),
             ew_part(n, tid, nth), ew_part(n, tid + 1, nth), (float)a[5], (float)a[6], (float)a[7], (float)a[8], (float)a[9],
             (float)a[10], (float)a[11], (float)a[12]);
#endif
  return NULL;
}

/**
 * The checks of the row kernels (RMSNorm, RoPE): rows and dim (at a[rows_at], a[rows_at + 1]) whole counts
 * whose product is at most 2^30, the thread share (a[share_at], a[share_at + 1]) valid, the first `full`
 * arguments each rows·dim floats inside memory, the next `per_dim` dim floats and the next `per_row`
 * rows floats. False with a pending RangeError naming `name` otherwise (elementwise_args_ok's messages).
 */
static int row_args_ok(napi_env env, const double *a, int full, int per_dim, int per_row, int rows_at, int share_at, const char *name) {
  char msg[96];
  double rows = a[rows_at], dim = a[rows_at + 1];
  if (!valid_dims(rows, 1, dim) || rows * dim > 1 << 30 || !valid_share(a[share_at], a[share_at + 1])) {
    snprintf(msg, sizeof msg, "stlm native %s: invalid size or share", name);
    throw_range(env, msg);
    return 0;
  }
  for (int i = 0; i < full + per_dim + per_row; i++)
    if (!inside(a[i], (i < full ? rows * dim : i < full + per_dim ? dim : rows) * 4)) {
      snprintf(msg, sizeof msg, "stlm native %s: operand outside memory", name);
      throw_range(env, msg);
      return 0;
    }
  return 1;
}

// rmsNorm(slot, x, out, w, rstd, rows, dim, eps, tid, nth): Backend.rmsNorm, rows split among threads.
static napi_value rmsnorm_js(napi_env env, napi_callback_info info) {
  double b[10];
  if (!read_kernel_args(env, info, 10, b)) return NULL;
  const double *a = b + 1;
  if (!row_args_ok(env, a, 2, 1, 1, 4, 7, "rmsNorm")) return NULL;
#if STLM_X86
  int rows = (int)a[4], tid = (int)a[7], nth = (int)a[8];
  rmsnorm_avx2((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[2]), (float *)(mem_base + (size_t)a[1]),
               (float *)(mem_base + (size_t)a[3]), (int)a[5], (float)a[6], row_part(rows, tid, nth), row_part(rows, tid + 1, nth));
#endif
  return NULL;
}

// rmsNormBackward(slot, x, dy, dx, w, dw, rstd, rows, dim, tid, nth): Backend.rmsNormBackward (dx overwritten,
// dw accumulated); dx's rows and dw's columns split among threads.
static napi_value rmsnorm_backward_js(napi_env env, napi_callback_info info) {
  double b[11];
  if (!read_kernel_args(env, info, 11, b)) return NULL;
  const double *a = b + 1;
  if (!row_args_ok(env, a, 3, 2, 1, 6, 8, "rmsNormBackward")) return NULL;
#if STLM_X86
  rmsnorm_backward_avx2((const float *)(mem_base + (size_t)a[0]), (const float *)(mem_base + (size_t)a[3]), (const float *)(mem_base + (size_t)a[5]),
                        (const float *)(mem_base + (size_t)a[1]), (float *)(mem_base + (size_t)a[2]), (float *)(mem_base + (size_t)a[4]),
                        (int)a[6], (int)a[7], (int)a[8], (int)a[9]);
#endif
  return NULL;
}

// rope(slot, x, out, table, rows, heads, headDim, seqLen, pos0, inverse, tid, nth): Backend.rope with the backend's
// (cos, sin) table for positions 0 .. pos0 + min(rows, seqLen) − 1; rows split among threads.
static napi_value rope_js(napi_env env, napi_callback_info info) {
  double b[12];
  if (!read_kernel_args(env, info, 12, b)) return NULL;
  const double *a = b + 1;
  // row_args_ok over rows × (heads·headDim), then the shape itself and the table.
  double s[6] = { a[0], a[1], a[3], a[4] * a[5], a[9], a[10] };
  if (!row_args_ok(env, s, 2, 0, 0, 2, 4, "rope")) return NULL;
  double heads = a[4], headDim = a[5], seqLen = a[6], pos0 = a[7], rows = a[3];
  if (!valid_dims(heads, headDim, seqLen) || heads < 1 || (int)headDim % 2 || !(pos0 >= 0 && pos0 <= 1 << 24 && pos0 == floor(pos0)))
    return throw_range(env, "stlm native rope: invalid size or share");
  if (!inside(a[2], (pos0 + fmin(rows, seqLen)) * headDim * 4)) return throw_range(env, "stlm native rope: operand outside memory");
#if STLM_X86
  int r = (int)rows, tid = (int)a[9], nth = (int)a[10];
  rope_avx2((const float *)(mem_base + (size_t)a[0]), (float *)(mem_base + (size_t)a[1]), (const float *)(mem_base + (size_t)a[2]), (int)heads,
            (int)headDim, (int)seqLen, (int)pos0, a[8] != 0, row_part(r, tid, nth), row_part(r, tid + 1, nth));
#endif
  return NULL;
}

// axpy(slot, x, y, n, alpha, tid, nth): y += alpha·x over n elements.
static napi_value axpy_js(napi_env env, napi_callback_info info) {
  double b[7];
  if (!read_kernel_args(env, info, 7, b)) return NULL;
  const double *a = b + 1;
  if (!elementwise_args_ok(env, a, 2, 2, 4, "axpy")) return NULL;
#if STLM_X86
  size_t n = (size_t)a[2];
  int tid = (int)a[4], nth = (int)a[5];
  axpy_avx2((const float *)(mem_base + (size_t)a[0]), (float)a[3], (float *)(mem_base + (size_t)a[1]), ew_part(n, tid, nth), ew_part(n, tid + 1, nth));
#endif
  return NULL;
}

static napi_value qrow_bytes_js(napi_env env, napi_callback_info info) {
  double a[1];
  if (!read_args(env, info, 1, a)) return NULL;
  if (!valid_dims(1, 1, a[0])) return throw_range(env, "stlm native qrowBytes: invalid k");
  napi_value r;
  napi_create_double(env, (double)qrow_bytes((int)a[0]), &r);
  return r;
}

static void add_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

NAPI_MODULE_INIT() {
  if (isa < 0) isa = isa_level();
  napi_value level;
  const char *names[] = { "none", "avx2", "avx512vnni" };
  napi_create_string_utf8(env, names[isa], NAPI_AUTO_LENGTH, &level);
  napi_set_named_property(env, exports, "isa", level);
  add_fn(env, exports, "attach", attach);
  add_fn(env, exports, "detach", detach);
  add_fn(env, exports, "quantizeActivations", quantize_activations);
  add_fn(env, exports, "qmatmul", qmatmul);
  add_fn(env, exports, "matvecF32", matvec_f32);
  add_fn(env, exports, "attentionDecode", attention_decode);
  add_fn(env, exports, "attentionDecodeRows", attention_decode_rows);
  add_fn(env, exports, "gemmF32", gemm_f32_js);
  add_fn(env, exports, "attentionTrain", attention_train);
  add_fn(env, exports, "attentionTrainBackward", attention_train_backward);
  add_fn(env, exports, "swiglu", swiglu_js);
  add_fn(env, exports, "swigluBackward", swiglu_backward_js);
  add_fn(env, exports, "adamw", adamw_js);
  add_fn(env, exports, "rmsNorm", rmsnorm_js);
  add_fn(env, exports, "rmsNormBackward", rmsnorm_backward_js);
  add_fn(env, exports, "rope", rope_js);
  add_fn(env, exports, "axpy", axpy_js);
  add_fn(env, exports, "qrowBytes", qrow_bytes_js);
  return exports;
}
