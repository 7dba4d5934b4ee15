/**
 * The dry backend: every buffer gets an address from the same size-class heap (heap.ts, same base and
 * alignment) as the WebAssembly backend's, and no kernel computes anything. Running a training step on
 * it costs milliseconds and says how large the WebAssembly heap grows for that step (`memoryBytes()`, the
 * heap's high-water mark) and how many bytes are live at most (`peakLiveBytes`): the memory planner
 * (train/memory-plan.ts) sizes micro-batches with it, and bench/train-memory.ts shows a step's memory
 * without waiting for the arithmetic. Reads return zeros; results of reductions are 0.
 */
import type { AdamWArgs, AttentionArgs, AttentionRowsArgs, Backend, Buf, MatmulArgs, QuantMatmulArgs, QuantType } from './backend.js';
import { SizeClassHeap } from './heap.js';

class DryBuf implements Buf {
  constructor(
    readonly ptr: number,
    readonly length: number,
    readonly bytes: number,
  ) {}
}

/** Where the WebAssembly backend's heap starts (above AssemblyScript's static data) and its alignment. */
const HEAP_BASE = 65536, ALIGN = 64;

export class DryBackend implements Backend {
  readonly name = 'dry';
  readonly threads = 1;
  readonly heap = new SizeClassHeap(HEAP_BASE, ALIGN);
  /** The most bytes live at once since creation (or since resetPeak). */
  peakLiveBytes = 0;
  private readonly live = new Set<number>();

  /** Starts measuring the live peak from now. */
  resetPeak(): void {
    this.peakLiveBytes = this.heap.liveBytes;
  }

  alloc(length: number): Buf {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`alloc: invalid length ${length}`);
    const bytes = this.heap.size(length * 4);
    const b = new DryBuf(this.heap.alloc(bytes), length, bytes);
    this.live.add(b.ptr);
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.heap.liveBytes);
    return b;
  }
  free(buf: Buf): void {
    const b = buf as DryBuf;
    if (!this.live.delete(b.ptr)) throw new Error(`free: buffer at ${b.ptr} (${b.length} elements) is not allocated (double free?)`);
    this.heap.free(b.ptr, b.bytes);
  }
  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    if (offset + src.length > buf.length) throw new RangeError(`write: ${src.length} elements at ${offset} overflow a buffer of ${buf.length}`);
  }
  read(buf: Buf, offset = 0, length = buf.length - offset): Float32Array {
    return new Float32Array(length);
  }
  fill(): void {}
  copy(): void {}
  memoryBytes(): number {
    return this.heap.top;
  }
  uploadBytes(bytes: Uint8Array): Buf {
    return this.alloc(Math.ceil(bytes.length / 4));
  }
  uploadQuant(bytes: Uint8Array, _a: { type: QuantType; rows: number; k: number }): Buf {
    return this.uploadBytes(bytes);
  }

  add(_a: Buf, _b: Buf, _out: Buf, _n: number): void {}
  mul(_a: Buf, _b: Buf, _out: Buf, _n: number): void {}
  scale(_a: Buf, _s: number, _out: Buf, _n: number): void {}
  axpy(_x: Buf, _alpha: number, _y: Buf, _n: number): void {}
  sum(): number {
    return 0;
  }
  max(): number {
    return 0;
  }
  sumSquares(): number {
    return 0;
  }
  matmul(_a: Buf, _b: Buf, _c: Buf, _args: MatmulArgs): void {}
  matmulQuant(_x: Buf, _w: Buf, _out: Buf, _args: QuantMatmulArgs): void {}
  dequantizeRows(): void {}
  rmsNorm(): void {}
  rmsNormBackward(): void {}
  softmax(): void {}
  rope(): void {}
  ropeRows(): void {}
  swiglu(): void {}
  swigluBackward(): void {}
  embedding(): void {}
  embeddingBackward(): void {}
  crossEntropy(_logits: Buf, targets: Int32Array): { loss: number; count: number } {
    let count = 0;
    for (const t of targets) if (t >= 0) count++;
    return { loss: 0, count };
  }
  attention(_q: Buf, _k: Buf, _v: Buf, _out: Buf, _lse: Buf, _args: AttentionArgs): void {}
  /** Computes nothing and writes nothing (newKv included), like every kernel here. */
  attentionRows(_q: Buf, _k: readonly Buf[], _v: readonly Buf[], _out: Buf, _lse: Buf, _args: AttentionRowsArgs): void {}
  attentionBackward(): void {}
  adamw(_p: Buf, _g: Buf, _m: Buf, _v: Buf, _n: number, _args: AdamWArgs): void {}
  dispose(): void {}
}
