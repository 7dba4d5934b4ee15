/** The kernels layer: one Backend interface, a reference backend and the WebAssembly SIMD backend. */
export type { AdamWArgs, AttentionArgs, Backend, Buf, MatmulArgs, QuantMatmulArgs, QuantStrategy, QuantType } from './backend.js';
export { ReferenceBackend } from './reference.js';
export { createWasmBackend, WasmBackend, type WasmBackendOptions } from './wasm/backend.js';
export { enableRelaxedSimd } from './wasm/relaxed-flag.js';
import type { Backend } from './backend.js';
import { ReferenceBackend } from './reference.js';
import { createWasmBackend } from './wasm/backend.js';

/** A backend by name: 'wasm' (default, fastest available here) or 'reference' (the slow oracle). */
export async function createBackend(name: 'wasm' | 'reference' = 'wasm', opts: { threads?: number; relaxed?: boolean } = {}): Promise<Backend> {
  if (name === 'reference') return new ReferenceBackend();
  if (name === 'wasm') return createWasmBackend(opts);
  throw new Error(`unknown backend '${name as string}' (valid: wasm, reference)`);
}
