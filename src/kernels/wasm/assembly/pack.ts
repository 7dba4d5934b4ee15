// Packing of A panels shared by the f32 GEMM (gemm.ts) and the dequantizing GEMM (quant.ts). Not a
// kernel export: index.ts does not re-export this module.
import { MR } from './generated/gemm_micro';
import { min32 } from './util';

/** A stored [m,k] (lda = k elements), block of mc rows × kc depths from src → MR-row panels [kc][MR]. */
export function packA(src: usize, lda: i32, kc: i32, mc: i32, dst: usize): void {
  const ld = <usize>lda << 2;
  for (let i = 0; i < mc; i += MR) {
    const mr = min32(MR, mc - i);
    const s = src + <usize>i * ld;
    if (mr == MR && MR == 2) {
      const s1 = s + ld;
      let d = dst;
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const o = <usize>p << 2;
        const r0 = v128.load(s + o), r1 = v128.load(s1 + o);
        v128.store(d, i32x4.shuffle(r0, r1, 0, 4, 1, 5));
        v128.store(d, i32x4.shuffle(r0, r1, 2, 6, 3, 7), 16);
        d += 32;
      }
      for (; p < kc; p++) {
        store<f32>(d, load<f32>(s + (<usize>p << 2)));
        store<f32>(d, load<f32>(s1 + (<usize>p << 2)), 4);
        d += 8;
      }
    } else if (mr == MR && MR == 4) {
      const s1 = s + ld, s2 = s1 + ld, s3 = s2 + ld;
      let d = dst;
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const o = <usize>p << 2;
        const r0 = v128.load(s + o), r1 = v128.load(s1 + o), r2 = v128.load(s2 + o), r3 = v128.load(s3 + o);
        const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        v128.store(d, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(d, i32x4.shuffle(t0, t2, 2, 3, 6, 7), 16);
        v128.store(d, i32x4.shuffle(t1, t3, 0, 1, 4, 5), 32);
        v128.store(d, i32x4.shuffle(t1, t3, 2, 3, 6, 7), 48);
        d += 64;
      }
      for (; p < kc; p++) {
        const o = <usize>p << 2;
        store<f32>(d, load<f32>(s + o));
        store<f32>(d, load<f32>(s1 + o), 4);
        store<f32>(d, load<f32>(s2 + o), 8);
        store<f32>(d, load<f32>(s3 + o), 12);
        d += 16;
      }
    } else {
      let d = dst;
      for (let p = 0; p < kc; p++) {
        let r = 0;
        for (; r < mr; r++) store<f32>(d + <usize>(r << 2), load<f32>(s + <usize>r * ld + (<usize>p << 2)));
        for (; r < MR; r++) store<f32>(d + <usize>(r << 2), 0);
        d += <usize>(MR << 2);
      }
    }
    dst += <usize>kc * <usize>(MR << 2);
  }
}
