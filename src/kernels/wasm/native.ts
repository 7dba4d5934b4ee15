/**
 * The optional native kernels (native/stlm_native.c, built by scripts/build-native.mjs into
 * dist/native/stlm_native.node): AVX2 / AVX-512 VNNI versions of the products that dominate decode
 * (quantized and f32 weights times a few rows of activations), of decode attention, and training's f32 GEMM and
 * attention (forward and backward), SwiGLU, AdamW, RMSNorm, RoPE and axpy, run on the WebAssembly backend's own
 * memory. The backend calls them through its worker pool like any kernel, so threading, buffers and
 * every other op stay as they are. Node on x86-64 only; anywhere else, or with STLM_NATIVE=0, or when
 * the addon was not built, loadNative() returns null and the backend is pure WebAssembly.
 */

/** The addon's exports. Kernels take a memory slot first, then byte offsets and sizes, then (tid, nth). */
export interface NativeKernels {
  /** 'avx2' or 'avx512vnni' ('none': the addon loaded but this CPU lacks AVX2; it is then not used). */
  readonly isa: string;
  attach(view: Uint8Array, slot: number): void;
  detach(slot: number): void;
  qrowBytes(k: number): number;
  quantizeActivations(...args: number[]): void;
  qmatmul(...args: number[]): void;
  matvecF32(...args: number[]): void;
  attentionDecode(...args: number[]): void;
  attentionDecodeRows(...args: number[]): void;
  gemmF32(...args: number[]): void;
  attentionTrain(...args: number[]): void;
  attentionTrainBackward(...args: number[]): void;
  swiglu(...args: number[]): void;
  swigluBackward(...args: number[]): void;
  adamw(...args: number[]): void;
  rmsNorm(...args: number[]): void;
  rmsNormBackward(...args: number[]): void;
  rope(...args: number[]): void;
  axpy(...args: number[]): void;
}

/** Where the built addon lies, relative to this module (dist/src/kernels/wasm/ → dist/native/). */
export const NATIVE_ADDON_URL = new URL(/* @vite-ignore: Node only, never fetched by a page */ '../../../native/stlm_native.node', import.meta.url);

let cached: NativeKernels | null | undefined;

/** The native kernels if they can run here (see the module comment); loads them once per thread. */
export async function loadNative(): Promise<NativeKernels | null> {
  if (cached !== undefined) return cached;
  cached = null;
  if (typeof process === 'undefined' || !process.versions?.node || process.env.STLM_NATIVE === '0') return null;
  try {
    const { createRequire } = await import('node:module');
    const { fileURLToPath } = await import('node:url');
    const { existsSync } = await import('node:fs');
    const path = fileURLToPath(NATIVE_ADDON_URL);
    if (!existsSync(path)) return null;
    const addon = createRequire(import.meta.url)(path) as NativeKernels;
    if (addon.isa !== 'none') cached = addon;
  } catch {
    // A build for another Node-API version or CPU: stay in WebAssembly.
  }
  return cached;
}

/** Slots the addon keeps memories in (stlm_native.c's SLOTS); a disposed backend returns its slot. */
const SLOTS = 256;
const freeSlots = Array.from({ length: SLOTS }, (_, i) => SLOTS - 1 - i);

export function takeSlot(): number | null {
  return freeSlots.pop() ?? null;
}

export function returnSlot(slot: number): void {
  freeSlots.push(slot);
}
