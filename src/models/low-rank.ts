/**
 * W + s·B·A for a low-rank update (LoRA, and the per-position adapters of shared weights): A [r, in],
 * B [out, r], W [out, in], all row-major. Each row's update is summed in float64 and added with one
 * rounding to f32, so folding an adapter into a weight changes the model's function as little as f32 allows.
 */
export function addLowRank(w: Float32Array, a: Float32Array, b: Float32Array, rank: number, scale: number): Float32Array {
  const inp = a.length / rank, out = b.length / rank;
  if (!Number.isInteger(inp) || !Number.isInteger(out) || w.length !== out * inp) {
    throw new Error(`low-rank update: A has ${a.length} and B ${b.length} values at rank ${rank}, which does not fit a weight of ${w.length}`);
  }
  const merged = new Float32Array(w.length); // never in place: a shared array may back other positions
  const row = new Float64Array(inp);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < rank; k++) {
      const bk = b[o * rank + k];
      if (bk === 0) continue;
      for (let i = 0; i < inp; i++) row[i] += bk * a[k * inp + i];
    }
    for (let i = 0; i < inp; i++) merged[o * inp + i] = w[o * inp + i] + scale * row[i];
  }
  return merged;
}
