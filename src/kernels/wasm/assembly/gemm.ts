// Placeholder: naive matmul (replaced by the packed, register-blocked kernel).
export function matmulScratchBytes(): i32 { return 64; }
export function matmul(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: i32, transB: i32,
                       accumulate: i32, batch: i32, strideA: i32, strideB: i32, strideC: i32,
                       scratch: usize, tid: i32, nth: i32): void {
  for (let t = 0; t < batch; t++) {
    const A = a + (<usize>(t * strideA) << 2), B = b + (<usize>(t * strideB) << 2), C = c + (<usize>(t * strideC) << 2);
    for (let i = tid; i < m; i += nth) for (let j = 0; j < n; j++) {
      let s: f32 = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? load<f32>(A + (<usize>(p * m + i) << 2)) : load<f32>(A + (<usize>(i * k + p) << 2));
        const bv = transB ? load<f32>(B + (<usize>(j * k + p) << 2)) : load<f32>(B + (<usize>(p * n + j) << 2));
        s += av * bv;
      }
      const pc = C + (<usize>(i * n + j) << 2);
      store<f32>(pc, accumulate ? load<f32>(pc) + s : s);
    }
  }
}
