// Helpers shared by several test files (not a test file itself: `npm test` runs dist/test/*.test.js only).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import type { NativeKernels } from '../src/kernels/wasm/native.js';
import { kvCacheFor, type Llama } from '../src/models/llama.js';
import type { Rng } from '../src/util/rng.js';

/** Index of the largest value, the first one on ties (as llama2.c's run.c and llama.cpp's greedy sampler). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

/**
 * Greedy ids after `prompt` with a KV cache of `ctx` positions (default: the model's context), freed at
 * the end; `stepwise` feeds the prompt one token at a time, so every product is a matrix-vector one.
 */
export function greedyIds(model: Llama, prompt: number[], n: number, o: { ctx?: number; stepwise?: boolean } = {}): number[] {
  const cache = kvCacheFor(model.graph, model.config, o.ctx);
  const out: number[] = [];
  let logits: Float32Array = new Float32Array(0);
  for (const chunk of o.stepwise ? prompt.map((t) => [t]) : [prompt]) {
    logits = model.forward(Int32Array.from(chunk), cache).toArray();
    model.graph.release();
  }
  for (let i = 0; i < n; i++) {
    const best = argmax(logits);
    out.push(best);
    if (i === n - 1) break;
    logits = model.forward(Int32Array.of(best), cache).toArray();
    model.graph.release();
  }
  cache.dispose();
  return out;
}

/** Logits at every position of `ids` ([ids.length, vocab] flat), from a fresh KV cache. */
export function forwardLogits(model: Llama, ids: number[]): Float32Array {
  const cache = kvCacheFor(model.graph, model.config, ids.length);
  const out = model.forward(Int32Array.from(ids), cache, false).toArray();
  cache.dispose();
  model.graph.release();
  return out;
}

/** Log-softmax of each row of `vocab` logits in `flat`, computed in float64. */
export function logSoftmaxRows(flat: Float32Array, vocab: number): Float64Array[] {
  const rows: Float64Array[] = [];
  for (let i = 0; i < flat.length / vocab; i++) {
    const row = flat.subarray(i * vocab, (i + 1) * vocab);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let s = 0;
    for (const x of row) s += Math.exp(x - max);
    const lse = max + Math.log(s);
    rows.push(Float64Array.from(row, (x) => x - lse));
  }
  return rows;
}

/** Largest |a[i] − b[i]|, asserting equal lengths. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** `n` values drawn N(0, scale²) from `rng`, as f32. */
export function randomF32(rng: Rng, n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * scale;
  return x;
}

/**
 * Inside a describe: the reference backend plus wasm backends of 1 and 2 threads, created before its tests
 * and disposed after them (read `w1` and `w2` in tests, not at describe time). `native: false` keeps
 * them pure WebAssembly; by default they use the native kernels where those are built.
 */
export function wasmAndReference(opts: { native?: boolean } = {}): { readonly ref: ReferenceBackend; readonly w1: Backend; readonly w2: Backend } {
  const ref = new ReferenceBackend();
  let w1: Backend | undefined, w2: Backend | undefined;
  before(async () => {
    w1 = await createWasmBackend({ threads: 1, ...opts });
    w2 = await createWasmBackend({ threads: 2, ...opts });
  });
  after(() => {
    w1!.dispose();
    w2!.dispose();
  });
  return {
    ref,
    get w1() {
      return w1!;
    },
    get w2() {
      return w2!;
    },
  };
}

/**
 * Wraps the named kernels of the native addon so each call is counted, so a test knows the native path,
 * not WebAssembly, ran. Wrap before creating the backends under test (a backend takes the kernels when it
 * is created); `restore()` puts the originals back.
 */
export function countNativeCalls<N extends keyof NativeKernels & string>(native: NativeKernels | null, names: readonly N[]): { calls: Record<N, number>; restore(): void } {
  if (!native) throw new Error('countNativeCalls: the native kernels are not loaded');
  const kernels = native as unknown as Record<string, (...a: number[]) => void>;
  const orig = Object.fromEntries(names.map((n) => [n, kernels[n]])) as Record<N, (...a: number[]) => void>;
  const calls = Object.fromEntries(names.map((n) => [n, 0])) as Record<N, number>;
  for (const name of names) {
    kernels[name] = (...a: number[]) => {
      calls[name]++;
      orig[name](...a);
    };
  }
  return { calls, restore: () => Object.assign(kernels, orig) };
}

/**
 * Runs `fn` with the named native kernels counted (countNativeCalls) and fresh 1- and 2-thread WebAssembly
 * backends created after the wrapping; restores the kernels and disposes the backends however fn ends.
 */
export async function withNativeBackends<N extends keyof NativeKernels & string>(
  native: NativeKernels | null,
  names: readonly N[],
  fn: (t1: Backend, t2: Backend, calls: Record<N, number>) => void | Promise<void>,
): Promise<void> {
  const { calls, restore } = countNativeCalls(native, names);
  const [t1, t2] = [await createWasmBackend({ threads: 1 }), await createWasmBackend({ threads: 2 })];
  try {
    await fn(t1, t2, calls);
  } finally {
    restore();
    t1.dispose();
    t2.dispose();
  }
}
