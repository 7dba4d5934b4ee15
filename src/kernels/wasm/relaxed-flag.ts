/**
 * Relaxed SIMD (the relaxed build of the kernels uses its fused multiply-add) is standard WebAssembly
 * (3.0), on by default in Node 22+ and current browsers; Node 20's V8 has it behind `--experimental-wasm-relaxed-simd`. An
 * application (the `stlm train` command, the benchmarks) may turn the flag on in its own process before
 * its first backend compiles, and then gets the relaxed-SIMD kernels. A library never changes
 * process-wide V8 flags by itself: createWasmBackend only detects what the runtime has.
 */
import { relaxedShared } from './generated/binaries.js';

const FLAG = '--experimental-wasm-relaxed-simd';

function relaxedSimdAvailable(): boolean {
  return WebAssembly.validate(Uint8Array.from(atob(relaxedShared), (c) => c.charCodeAt(0)));
}

/**
 * Makes relaxed SIMD available in this Node process if the runtime has it behind a flag; returns
 * whether it is available now. Set STLM_RELAXED_SIMD=0 to leave the flag alone (e.g. to compare builds).
 */
export async function enableRelaxedSimd(): Promise<boolean> {
  if (relaxedSimdAvailable()) return true;
  if (typeof process === 'undefined' || !process.versions?.node || process.env.STLM_RELAXED_SIMD === '0') return false;
  const v8 = await import('node:v8');
  v8.setFlagsFromString(FLAG);
  return relaxedSimdAvailable();
}
