// Placeholder attention (scalar, one query row at a time); replaced by the blocked SIMD kernel.
import { at } from './util';

export function attentionScratchBytes(tk: i32): i32 { return tk << 2; }

export function attention(q: usize, k: usize, v: usize, out: usize, lse: usize, batch: i32, tq: i32, tk: i32, heads: i32,
                          kvHeads: i32, headDim: i32, qPos0: i32, scale: f32, kvBatchStride: i32, scratch: usize,
                          tid: i32, nth: i32): void {
  const group = heads / kvHeads;
  const s = scratch + <usize>tid * <usize>attentionScratchBytes(tk);
  for (let bh = tid; bh < batch * heads; bh += nth) {
    const b = bh / heads, h = bh % heads, kvh = h / group;
    for (let i = 0; i < tq; i++) {
      const qo = at(q, ((b * tq + i) * heads + h) * headDim), oo = at(out, ((b * tq + i) * heads + h) * headDim);
      const last = qPos0 + i;
      let m: f32 = -Infinity;
      for (let j = 0; j <= last; j++) {
        const ko = at(k, b * kvBatchStride + (j * kvHeads + kvh) * headDim);
        let d: f32 = 0;
        for (let e = 0; e < headDim; e++) d += load<f32>(at(qo, e)) * load<f32>(at(ko, e));
        d *= scale;
        store<f32>(at(s, j), d);
        m = max<f32>(m, d);
      }
      let sum: f32 = 0;
      for (let j = 0; j <= last; j++) { const p = Mathf.exp(load<f32>(at(s, j)) - m); store<f32>(at(s, j), p); sum += p; }
      store<f32>(at(lse, (b * tq + i) * heads + h), m + Mathf.log(sum));
      for (let e = 0; e < headDim; e++) store<f32>(at(oo, e), 0);
      for (let j = 0; j <= last; j++) {
        const p = load<f32>(at(s, j)) / sum, vo = at(v, b * kvBatchStride + (j * kvHeads + kvh) * headDim);
        for (let e = 0; e < headDim; e++) store<f32>(at(oo, e), load<f32>(at(oo, e)) + p * load<f32>(at(vo, e)));
      }
    }
  }
}

export function attentionBackward(q: usize, k: usize, v: usize, out: usize, lse: usize, dout: usize, dq: usize, dk: usize, dv: usize,
                                  batch: i32, tq: i32, tk: i32, heads: i32, kvHeads: i32, headDim: i32, qPos0: i32, scale: f32,
                                  kvBatchStride: i32, scratch: usize, tid: i32, nth: i32): void {
  // One thread owns whole kv heads (all query heads of a group), so dk/dv writes never collide.
  const group = heads / kvHeads;
  for (let bg = tid; bg < batch * kvHeads; bg += nth) {
    const b = bg / kvHeads, kvh = bg % kvHeads;
    for (let j = 0; j < tk; j++) {
      memory.fill(at(dk, b * kvBatchStride + (j * kvHeads + kvh) * headDim), 0, <usize>headDim << 2);
      memory.fill(at(dv, b * kvBatchStride + (j * kvHeads + kvh) * headDim), 0, <usize>headDim << 2);
    }
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      for (let i = 0; i < tq; i++) {
        const row = (b * tq + i) * heads + h;
        const qo = at(q, row * headDim), oo = at(out, row * headDim), go = at(dout, row * headDim), dqo = at(dq, row * headDim);
        const l = load<f32>(at(lse, row));
        let delta: f32 = 0;
        for (let e = 0; e < headDim; e++) { delta += load<f32>(at(go, e)) * load<f32>(at(oo, e)); store<f32>(at(dqo, e), 0); }
        for (let j = 0; j <= qPos0 + i; j++) {
          const off = b * kvBatchStride + (j * kvHeads + kvh) * headDim;
          const ko = at(k, off), vo = at(v, off), dko = at(dk, off), dvo = at(dv, off);
          let d: f32 = 0, dp: f32 = 0;
          for (let e = 0; e < headDim; e++) { d += load<f32>(at(qo, e)) * load<f32>(at(ko, e)); dp += load<f32>(at(go, e)) * load<f32>(at(vo, e)); }
          const p = Mathf.exp(d * scale - l);
          const ds = p * (dp - delta) * scale;
          for (let e = 0; e < headDim; e++) {
            store<f32>(at(dvo, e), load<f32>(at(dvo, e)) + p * load<f32>(at(go, e)));
            store<f32>(at(dqo, e), load<f32>(at(dqo, e)) + ds * load<f32>(at(ko, e)));
            store<f32>(at(dko, e), load<f32>(at(dko, e)) + ds * load<f32>(at(qo, e)));
          }
        }
      }
    }
  }
}
