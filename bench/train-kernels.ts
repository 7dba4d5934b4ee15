/**
 * The training kernels the native addon takes besides the GEMM (attention forward and backward, SwiGLU
 * forward and backward, AdamW, RMSNorm forward and backward, RoPE forward and inverse, axpy)
 * against the same backend in pure WebAssembly (`native: false`), at the tiny and small presets' sizes
 * (batch 16 × 256, head size 32; MLP 384 and 768 wide; AdamW over a 128×384 matrix and a whole tiny
 * model's 0.9M parameters) and the base preset's (attention: 4 of its 16 windows of 512, 8 heads of 64;
 * RMSNorm, RoPE and axpy: all 16 × 512 rows of 512). Both backends live in one process and their
 * calls alternate round by round, so a busy shared host slows both alike; each side's figure is its best
 * round (the stable statistic on a shared machine). Prints ms per call per side and the speed-up.
 *
 *   npm run bench -- train-kernels [--threads 1] [--rounds 7] [--json]
 * With --json the last stdout line is {"results":[{"case":…,"wasm_ms":…,"native_ms":…,"speedup":…}],"threads":…}.
 */
import type { AttentionArgs, Backend, Buf } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { Rng } from '../src/util/rng.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--rounds', '--threads'];

interface Case {
  name: string;
  /** Allocates the inputs on one backend; returns the call to time and the buffers to free. */
  setup(be: Backend, rng: Rng): { call: () => void; bufs: Buf[] };
}

function randomBuf(be: Backend, rng: Rng, n: number, positive = false): Buf {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = positive ? Math.abs(rng.normal()) : rng.normal();
  const b = be.alloc(n);
  be.write(b, x);
  return b;
}

function attentionCase(heads: number, backward: boolean, B = 16, T = 256, D = 32): Case {
  const a: AttentionArgs = { batch: B, tq: T, tk: T, heads, kvHeads: heads, headDim: D, qPos0: 0, scale: 1 / Math.sqrt(D) };
  return {
    name: `attention ${backward ? 'bwd' : 'fwd'} B${B} T${T} H${heads} D${D}`,
    setup(be, rng) {
      const n = B * T * heads * D;
      const [q, k, v, dout] = [0, 1, 2, 3].map(() => randomBuf(be, rng, n));
      const o = be.alloc(n), lse = be.alloc(B * T * heads), dq = be.alloc(n), dk = be.alloc(n), dv = be.alloc(n);
      be.attention(q, k, v, o, lse, a);
      const call = backward ? () => be.attentionBackward(q, k, v, o, lse, dout, dq, dk, dv, a) : () => be.attention(q, k, v, o, lse, a);
      return { call, bufs: [q, k, v, dout, o, lse, dq, dk, dv] };
    },
  };
}

function swigluCase(width: number, backward: boolean): Case {
  const n = 16 * 256 * width;
  return {
    name: `swiglu ${backward ? 'bwd' : 'fwd'} 4096×${width}`,
    setup(be, rng) {
      const [g, u, d] = [0, 1, 2].map(() => randomBuf(be, rng, n));
      const [o, dg] = [be.alloc(n), be.alloc(n)];
      const call = backward ? () => be.swigluBackward(g, u, d, dg, o, n) : () => be.swiglu(g, u, o, n);
      return { call, bufs: [g, u, d, o, dg] };
    },
  };
}

function adamwCase(n: number, label: string): Case {
  return {
    name: `adamw ${label}`,
    setup(be, rng) {
      const [p, g, m] = [0, 1, 2].map(() => randomBuf(be, rng, n));
      const v = randomBuf(be, rng, n, true);
      let step = 0;
      const call = () => be.adamw(p, g, m, v, n, { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: ++step });
      return { call, bufs: [p, g, m, v] };
    },
  };
}

function rmsNormCase(rows: number, dim: number, backward: boolean): Case {
  return {
    name: `rmsNorm ${backward ? 'bwd' : 'fwd'} ${rows}×${dim}`,
    setup(be, rng) {
      const [x, w, dy] = [rows * dim, dim, rows * dim].map((n) => randomBuf(be, rng, n));
      const [out, rstd, dx, dw] = [be.alloc(rows * dim), be.alloc(rows), be.alloc(rows * dim), be.alloc(dim)];
      be.fill(dw, 0);
      be.rmsNorm(x, w, out, rstd, rows, dim, 1e-5);
      const call = backward ? () => be.rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim) : () => be.rmsNorm(x, w, out, rstd, rows, dim, 1e-5);
      return { call, bufs: [x, w, dy, out, rstd, dx, dw] };
    },
  };
}

function ropeCase(rows: number, heads: number, headDim: number, seqLen: number, inverse: boolean): Case {
  return {
    name: `rope ${inverse ? 'bwd' : 'fwd'} ${rows}×${heads}×${headDim}`,
    setup(be, rng) {
      const x = randomBuf(be, rng, rows * heads * headDim), out = be.alloc(rows * heads * headDim);
      return { call: () => be.rope(x, out, rows, heads, headDim, seqLen, 0, 10000, inverse), bufs: [x, out] };
    },
  };
}

function axpyCase(n: number): Case {
  return {
    name: `axpy ${n}`,
    setup(be, rng) {
      const [x, y] = [randomBuf(be, rng, n), randomBuf(be, rng, n)];
      return { call: () => be.axpy(x, 0.5, y, n), bufs: [x, y] };
    },
  };
}

export async function main(argv: string[]): Promise<void> {
  const threads = Number(arg(argv, '--threads', '1')), rounds = Number(arg(argv, '--rounds', '7'));
  const json = argv.includes('--json');
  const native = await createWasmBackend({ threads });
  if (!native.native) throw new Error('train-kernels: the native kernels are not available here (not built, not x86-64 with AVX2, or STLM_NATIVE=0)');
  const wasm = await createWasmBackend({ threads, native: false });
  const cases = [
    attentionCase(4, false), attentionCase(4, true), attentionCase(8, false), attentionCase(8, true),
    attentionCase(8, false, 4, 512, 64), attentionCase(8, true, 4, 512, 64),
    swigluCase(384, false), swigluCase(384, true), swigluCase(768, false), swigluCase(768, true),
    adamwCase(128 * 384, '128×384'), adamwCase(900_000, '0.9M (tiny, all)'),
    rmsNormCase(4096, 128, false), rmsNormCase(4096, 128, true), rmsNormCase(8192, 512, false), rmsNormCase(8192, 512, true),
    ropeCase(4096, 4, 32, 256, false), ropeCase(4096, 4, 32, 256, true), ropeCase(8192, 8, 64, 512, false), ropeCase(8192, 8, 64, 512, true),
    axpyCase(4096 * 128), axpyCase(8192 * 512),
  ];
  const results: { case: string; wasm_ms: number; native_ms: number; speedup: number }[] = [];
  console.log(`${threads} thread(s), best of ${rounds} rounds, the two sides alternating (native: ${native.native})`);
  try {
    for (const c of cases) {
      const rng = new Rng(1);
      const sides = [wasm, native].map((be) => ({ be, ...c.setup(be, rng), best: Infinity }));
      for (const s of sides) s.call(); // warm-up
      // Short calls are timed in batches so the timer's resolution does not matter.
      const t0 = performance.now();
      sides[0].call();
      const inner = Math.max(1, Math.ceil(2 / Math.max(performance.now() - t0, 1e-3)));
      for (let r = 0; r < rounds; r++) {
        for (const s of sides) {
          const t = performance.now();
          for (let i = 0; i < inner; i++) s.call();
          s.best = Math.min(s.best, (performance.now() - t) / inner);
        }
      }
      for (const s of sides) for (const b of s.bufs) s.be.free(b);
      const [w, n] = sides.map((s) => s.best);
      results.push({ case: c.name, wasm_ms: +w.toFixed(4), native_ms: +n.toFixed(4), speedup: +(w / n).toFixed(2) });
      console.log(`${c.name.padEnd(34)} wasm ${w.toFixed(3).padStart(9)} ms   native ${n.toFixed(3).padStart(9)} ms   ${(w / n).toFixed(2)}x`);
    }
  } finally {
    native.dispose();
    wasm.dispose();
  }
  if (json) console.log(JSON.stringify({ results, threads }));
}
