/** Putting a benchmark's weights on a backend, once or as enough copies that no cache holds them. */
import type { Backend, Buf, QuantType } from '../../src/kernels/backend.js';

/** The shape of a quantized matrix, for uploadQuant. */
export interface QuantShape {
  type: QuantType;
  rows: number;
  k: number;
}

/**
 * f32 data into a new buffer, or quantized blocks as a model uploads them (uploadQuant, where the
 * backend may repack them), or as raw bytes without a shape or on a build from before uploadQuant.
 */
export function upload(be: Backend, data: Float32Array | Uint8Array, quant?: QuantShape): Buf {
  if (data instanceof Uint8Array) return quant && typeof be.uploadQuant === 'function' ? be.uploadQuant(data, quant) : be.uploadBytes(data);
  const b = be.alloc(data.length);
  be.write(b, data);
  return b;
}

/**
 * `data` uploaded `copies` times, or (copies = 'from-memory') often enough for at least 64 MB in all:
 * a product that takes the next copy each call then reads W from DRAM, as in a model's decode.
 */
export function uploadCopies(be: Backend, data: Float32Array | Uint8Array, copies: number | 'from-memory', quant?: QuantShape): Buf[] {
  const n = copies === 'from-memory' ? Math.max(1, Math.ceil(64e6 / data.byteLength)) : copies;
  return Array.from({ length: n }, () => upload(be, data, quant));
}
