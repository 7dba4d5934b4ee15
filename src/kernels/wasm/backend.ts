/**
 * The WebAssembly SIMD backend: kernels compiled from AssemblyScript (src/kernels/wasm/assembly),
 * one linear memory holding every buffer, and a worker pool over that memory when SharedArrayBuffer
 * is available (Node; browsers when cross-origin isolated). Without it, one thread on plain memory.
 *
 * Buffers are byte ranges of the linear memory handed out by a size-class free list: a training step
 * asks for the same sizes in the same order every time, so after the first step every allocation is a
 * free-list hit and the memory stops growing.
 */
import { type AdamWArgs, type AttentionArgs, type AttentionRowsArgs, type Backend, type Buf, type MatmulArgs, type QuantMatmulArgs, type QuantStrategy, type QuantType, checkAttentionRows, checkRowPositions } from '../backend.js';
import { QUANT_BLOCKS, QUANT_TYPES, quantBlock } from '../../dtypes/blocks.js';
import { relaxedShared, simdShared, simdSingle } from './generated/binaries.js';
import { loadNative, NATIVE_ADDON_URL, returnSlot, takeSlot, type NativeKernels } from './native.js';
import { WorkerPool } from './pool.js';
import { SizeClassHeap } from '../heap.js';

export interface WasmBackendOptions {
  /** Threads to compute with (default: all cores). 1 means no workers. */
  threads?: number;
  /** Use relaxed SIMD (fused multiply-add) when the runtime supports it; default true. */
  relaxed?: boolean;
  /**
   * Use the native kernels (AVX2 / AVX-512 VNNI, Node on x86-64, see native.ts) for the decode-time
   * products when they were built; default true, and STLM_NATIVE=0 turns them off process-wide.
   */
  native?: boolean;
}

type Kernel = (...args: number[]) => number;

class WasmBuf implements Buf {
  constructor(
    readonly ptr: number,
    readonly length: number,
    readonly bytes: number,
  ) {}
}

const PAGE = 65536;
const MAX_PAGES = 65536;
/** AssemblyScript's static data lives below this; our heap starts here. */
const HEAP_BASE = PAGE;
const ALIGN = 64;
/** Work below this many elements runs on the calling thread only: dispatch costs more than it saves. */
const PARALLEL_MIN = 1 << 15;

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function defaultThreads(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (nav?.hardwareConcurrency) return nav.hardwareConcurrency;
  if (typeof process !== 'undefined' && process.versions?.node) {
    const os = await import('node:os');
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return 1;
}

function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  const iso = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  return iso !== false;
}

/** Creates the WebAssembly backend. Async because compiling and starting workers is. */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const shared = sharedMemoryAvailable();
  let threads = Math.max(1, Math.floor(opts.threads ?? (await defaultThreads())));
  if (!shared) threads = 1;
  let bytes = decodeBase64(shared ? simdShared : simdSingle);
  let relaxed = false;
  if (shared && opts.relaxed !== false) {
    const r = decodeBase64(relaxedShared);
    if (WebAssembly.validate(r)) {
      bytes = r;
      relaxed = true;
    }
  }
  const module = await WebAssembly.compile(bytes);
  const memory = new WebAssembly.Memory({ initial: 64, maximum: MAX_PAGES, shared } as WebAssembly.MemoryDescriptor);
  const instance = await WebAssembly.instantiate(module, {
    env: { memory, abort: () => { throw new Error('stlm: wasm kernel aborted'); } },
  });
  const exports = instance.exports as unknown as Record<string, Kernel>;
  const native = shared && opts.native !== false ? await loadNative() : null;
  const slot = native ? takeSlot() : null;
  const kernels: Record<string, Kernel> = { ...exports };
  if (native && slot !== null) {
    for (const name of NATIVE_KERNELS) kernels[`native.${name}`] = native[name] as Kernel;
  }
  const nativeUse = native && slot !== null ? { kernels: native, slot } : null;
  let pool: WorkerPool | null = null;
  if (threads > 1) {
    try {
      pool = await WorkerPool.create(module, memory, kernels, threads, nativeUse ? NATIVE_ADDON_URL.href : null);
    } catch (e) {
      // Same results on one thread, only slower: say so once and go on rather than fail the command.
      console.warn(`${e instanceof Error ? e.message : String(e)}; computing on one thread`);
      threads = 1;
    }
  }
  return new WasmBackend(memory, kernels, pool, threads, relaxed, nativeUse);
}

/** Native kernels the pool dispatches (as `native.<name>`). */
const NATIVE_KERNELS = ['quantizeActivations', 'qmatmul', 'matvecF32', 'attentionDecode', 'attentionDecodeRows', 'gemmF32', 'attentionTrain', 'attentionTrainBackward', 'swiglu', 'swigluBackward', 'adamw', 'rmsNorm', 'rmsNormBackward', 'rope', 'axpy'] as const;
/**
 * Largest m the native x·Wᵀ row product takes (one row: the bandwidth-bound matvec; 2 to this many: the
 * 2×4-tiled product, which reads W once and packs nothing: a batched decode step's rows). Above it the
 * packing GEMM.
 */
const NATIVE_F32_MAX_M = 32;
/**
 * Smallest products (m·n·k multiply-adds) the native x·Wᵀ row product takes: a call into the addon costs
 * ~0.5 µs more than one into WebAssembly. Measured here (Zen 3, one thread, best of 5 × 3,000 calls), m = 1:
 * 128×128 1.21 µs native against 1.93 WebAssembly, 384×128 2.90 against 6.22, 128×384 2.86 against 4.64,
 * 256×256 3.61 against 6.55 (an earlier Zen 4 measurement had 128×128 at 1.8 against 1.4).
 */
const NATIVE_F32_MIN_WORK = 16384;
/**
 * The native GEMM (every product with m ≥ 5 from m·n·k = 16384 multiply-adds): measured on this Zen 3
 * (one thread, process CPU time, busy 2-core machine), native against WebAssembly per call: 5×32×32
 * 0.8 µs against 0.7, 8×32×64 1.4 against 1.4–1.7, 16×64×64 2.7–3.4 against 4.3–4.5, 64×64×64 7–11
 * against 15, 512×768×768 2.3–3.0x faster. For m ≤ 4 packing B costs more than it saves (2×256×256 nn
 * 17.7 µs against 10.7; 3×768×768 210 against 162): those stay with the row-times-matrix path (and
 * x·Wᵀ with the native matvecF32 above).
 */
const NATIVE_GEMM_MIN_WORK = 1 << 14;
const NATIVE_GEMM_MIN_M = 5;
/**
 * From this many rows a native-taken Q8_0/Q4_0 product dequantizes the matrix and runs the native f32
 * GEMM instead of the int8 product (below it, decode and batched decode, the int8 product reads 4x fewer
 * bytes and wins). Measured on brown-13m (13M, Q8_0), `stlm eval bpb`, 1 thread: the int8 products made
 * its prefill 2x slower than the same model in F32.
 */
const NATIVE_DEQUANT_MIN_M = 64;
/** The largest matrix dequantized so (64 MiB of f32 scratch); bigger ones keep the int8 product. */
const NATIVE_DEQUANT_MAX_WEIGHTS = 16 << 20;
/** Smallest decode attention (heads × keys × head size) the native kernel takes, for the same reason. */
const NATIVE_ATTENTION_MIN_WORK = 1024;
const NATIVE_QUANT_MIN_WEIGHTS = 16384;
/**
 * Smallest attention of many query rows (batch · heads · tq · keys seen by the last row · headDim) the
 * native training kernels take; see nativeTrainAttention.
 */
const NATIVE_TRAIN_ATTENTION_MIN_WORK = 4096;
/** Smallest AdamW, RMSNorm, RoPE and axpy (elements) the native kernels take. */
const NATIVE_ELEMENTWISE_MIN = 4096;
/**
 * Smallest SwiGLU (elements) the native kernels take: one decode row's hidden layer already pays (Zen 3,
 * one thread, best of 5 × 5,000 calls: 384 elements 0.47 µs native against 0.80 in WebAssembly, 3,072
 * 1.81 against 5.93), and a model's rows then take the same kernel alone or in a batched step.
 */
const NATIVE_SWIGLU_MIN = 256;

export class WasmBackend implements Backend {
  readonly name: string;
  /** The native kernels' instruction set when they take the decode-time products ('avx2', 'avx512vnni'), else null. */
  readonly native: string | null;
  private readonly heap = new SizeClassHeap(HEAP_BASE, ALIGN, (end) => this.growTo(end));
  /** Start addresses of buffers handed out by alloc and not yet freed. */
  private readonly live = new Set<number>();
  private f32!: Float32Array;
  private i32!: Int32Array;
  private f64!: Float64Array;
  private u8!: Uint8Array;
  private readonly matmulScratch: number;
  private staging = { ptr: 0, bytes: 0 };
  private attnScratch = { ptr: 0, bytes: 0 };
  /** Quantized activations of the 'int8' quantized matmul (shared by all threads). */
  private actScratch = { ptr: 0, bytes: 0 };
  /** Per-thread packing scratch of the 'f32' quantized matmul (m > 1), allocated on first use. */
  private qgemmScratch = { ptr: 0, bytes: 0 };
  /** A quantized matrix dequantized for the native GEMM at prefill sizes, and the row ids 0..n-1 it takes. */
  private dequantScratch = { ptr: 0, bytes: 0 };
  private identityIds = new Int32Array(0);
  /** f16 → f32 table of the quantized kernels (256 KiB), built by the kernel module on first use. */
  private f16Table = 0;
  /** Buffers from uploadQuant holding a matrix in a repacked layout (kernel type code 3 or 4), with its type and shape. */
  private readonly repacked = new WeakMap<Buf, { type: QuantType; rows: number; k: number }>();
  private readonly ropeTables = new Map<string, { ptr: number; positions: number }>();

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: Record<string, Kernel>,
    private readonly pool: WorkerPool | null,
    readonly threads: number,
    readonly relaxed: boolean,
    private readonly nativeUse: { kernels: NativeKernels; slot: number } | null = null,
  ) {
    this.name = `wasm-${relaxed ? 'relaxed-simd' : 'simd'}`;
    this.native = nativeUse?.kernels.isa ?? null;
    this.refreshViews();
    this.matmulScratch = this.rawAlloc(this.k.matmulScratchBytes() * threads);
  }

  // ---- memory -------------------------------------------------------------------------------------
  private refreshViews(): void {
    const b = this.memory.buffer;
    this.f32 = new Float32Array(b);
    this.i32 = new Int32Array(b);
    this.f64 = new Float64Array(b);
    this.u8 = new Uint8Array(b);
    this.nativeUse?.kernels.attach(this.u8, this.nativeUse.slot);
  }

  /** Views must be rebuilt after growth (a grown shared memory is a new SharedArrayBuffer object). */
  private views(): Float32Array {
    if (this.f32.buffer.byteLength !== this.memory.buffer.byteLength) this.refreshViews();
    return this.f32;
  }

  private rawAlloc(bytes: number): number {
    return this.heap.alloc(bytes);
  }

  private rawFree(ptr: number, bytes: number): void {
    this.heap.free(ptr, bytes);
  }

  /** Grows the memory to hold `end` bytes (the heap calls it before handing out a range past the top). */
  private growTo(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    try {
      this.memory.grow(Math.ceil((end - have) / PAGE));
    } catch {
      throw new RangeError(`wasm backend: out of memory allocating ${end - this.heap.top} bytes (heap ${have} bytes, limit 4 GiB)`);
    }
    this.refreshViews();
  }

  alloc(length: number): Buf {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`alloc: invalid length ${length}`);
    const bytes = this.heap.size(length * 4);
    const b = new WasmBuf(this.rawAlloc(bytes), length, bytes);
    this.live.add(b.ptr);
    return b;
  }
  free(buf: Buf): void {
    const b = buf as WasmBuf;
    // A double free would hand one range to two owners later: fail loudly instead.
    if (!this.live.delete(b.ptr)) throw new Error(`free: buffer at ${b.ptr} (${b.length} elements) is not allocated (double free?)`);
    this.rawFree(b.ptr, b.bytes);
  }
  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    const b = buf as WasmBuf;
    if (offset + src.length > b.length) throw new RangeError(`write: ${src.length} elements at ${offset} overflow a buffer of ${b.length}`);
    this.views().set(src, b.ptr / 4 + offset);
  }
  read(buf: Buf, offset = 0, length = buf.length - offset): Float32Array {
    const b = buf as WasmBuf;
    const start = b.ptr / 4 + offset;
    return this.views().slice(start, start + length);
  }
  fill(buf: Buf, value: number, offset = 0, length = buf.length - offset): void {
    const start = (buf as WasmBuf).ptr / 4 + offset;
    this.views().fill(value, start, start + length);
  }
  copy(src: Buf, srcOffset: number, dst: Buf, dstOffset: number, length: number): void {
    const f = this.views();
    const s = (src as WasmBuf).ptr / 4 + srcOffset;
    f.copyWithin((dst as WasmBuf).ptr / 4 + dstOffset, s, s + length);
  }
  memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }
  /** 65536 pages of 64 KiB: the most a 32-bit WebAssembly memory can hold. */
  readonly memoryLimit = MAX_PAGES * PAGE;

  uploadBytes(bytes: Uint8Array): Buf {
    const b = this.alloc(Math.ceil(bytes.length / 4));
    this.views();
    this.u8.set(bytes, (b as WasmBuf).ptr);
    return b;
  }

  /**
   * Q4_0 matrices, and Q8_0 matrices that no native kernel takes, are repacked four rows at a time
   * (kernel type codes 3 and 4, see assembly/quant.ts): the int8 products then read one stream and
   * share every load of x among four rows (WebAssembly 1.3–1.6x per product, the native Q4_0 kernel
   * 1.3–1.8x). The GGUF bytes pass through a temporary buffer of their own size, one matrix at a time.
   */
  uploadQuant(bytes: Uint8Array, a: { type: QuantType; rows: number; k: number }): Buf {
    const { rowBytes } = quantLayout('uploadQuant', a.type, a.k);
    const { type, rows, k } = a;
    if (!(Number.isInteger(rows) && rows >= 0)) throw new RangeError(`uploadQuant: invalid row count ${rows}`);
    if (bytes.length !== rows * rowBytes) throw new RangeError(`uploadQuant: ${bytes.length} bytes for a ${type} matrix [${rows}, ${k}] that takes ${rows * rowBytes}`);
    const x4 = REPACKED[type];
    // Q8_0 stays in GGUF's layout where the native kernel takes it (no native kernel for its repacked form).
    if (!x4 || rows === 0 || (!x4.native && this.nativeTakes(type, rows, k))) return this.uploadBytes(bytes);
    const src = this.uploadBytes(bytes);
    const dst = this.alloc(Math.ceil(rows / 4) * (k / QUANT_BLOCKS[type].values) * (x4.groupBlockBytes / 4));
    this.k.repackX4(p(src), p(dst), rows, k, x4.code, this.quantTable());
    this.free(src);
    this.repacked.set(dst, { type, rows, k });
    return dst;
  }

  /** Whether the native int8 product takes a Q8_0/Q4_0 product with n·k weights (when built and enabled). */
  private nativeTakes(type: QuantType, n: number, k: number): boolean {
    return !!this.nativeUse && type !== 'q4_k' && n * k >= NATIVE_QUANT_MIN_WEIGHTS;
  }

  /** The kernels' type code for w (3 or 4 for a repacked matrix, checked against the call's shape). */
  private quantCode(op: string, w: Buf, type: QuantType, n: number, k: number): { code: number; rowBytes: number; packed?: { rows: number } } {
    const layout = quantLayout(op, type, k);
    const packed = this.repacked.get(w);
    if (!packed) return layout;
    if (type !== packed.type || k !== packed.k || n > packed.rows) {
      throw new RangeError(`${op}: w is a ${packed.type} matrix [${packed.rows}, ${packed.k}] in this backend's repacked layout, used as ${type} with ${n} rows of ${k}`);
    }
    return { code: REPACKED[type]!.code, rowBytes: layout.rowBytes, packed };
  }

  /** A grow-only scratch area (kept between calls, like the attention scratch). */
  private scratch(area: { ptr: number; bytes: number }, need: number): number {
    if (need > area.bytes) {
      if (area.bytes) this.rawFree(area.ptr, area.bytes);
      const b = Math.max(need, area.bytes * 2);
      area.ptr = this.rawAlloc(b);
      area.bytes = Math.ceil(b / ALIGN) * ALIGN;
    }
    return area.ptr;
  }

  /** A staging area for int32 inputs and f64 outputs, grown once and kept. */
  private stage(bytes: number): number {
    if (bytes > this.staging.bytes) {
      if (this.staging.bytes) this.rawFree(this.staging.ptr, this.staging.bytes);
      const b = Math.max(bytes, this.staging.bytes * 2);
      this.staging = { ptr: this.rawAlloc(b), bytes: Math.ceil(b / ALIGN) * ALIGN };
    }
    this.views();
    return this.staging.ptr;
  }

  private stageInts(ids: Int32Array, extraBytes = 0): number {
    const ptr = this.stage(ids.length * 4 + ALIGN + extraBytes);
    this.i32.set(ids, ptr / 4);
    return ptr;
  }

  private run(name: string, args: number[], work: number): void {
    if (this.pool && work >= PARALLEL_MIN) this.pool.run(name, args, true);
    else this.k[name](...args, 0, 1);
  }

  // ---- elementwise and reductions ---------------------------------------------------------------
  add(a: Buf, b: Buf, out: Buf, n: number): void {
    this.run('add', [p(a), p(b), p(out), n], n);
  }
  mul(a: Buf, b: Buf, out: Buf, n: number): void {
    this.run('mul', [p(a), p(b), p(out), n], n);
  }
  scale(a: Buf, s: number, out: Buf, n: number): void {
    this.run('scale', [p(a), s, p(out), n], n);
  }
  /** y += alpha·x; native (bit for bit this kernel's numbers) from NATIVE_ELEMENTWISE_MIN: 1.1–1.2x measured (a native add was not faster). */
  axpy(x: Buf, alpha: number, y: Buf, n: number): void {
    if (this.nativeUse && n >= NATIVE_ELEMENTWISE_MIN) {
      this.views();
      this.run('native.axpy', [this.nativeUse.slot, p(x), p(y), n, alpha], n);
      return;
    }
    this.run('axpy', [p(x), alpha, p(y), n], n);
  }
  sum(a: Buf, n: number): number {
    return this.k.reduceSum(p(a), n);
  }
  max(a: Buf, n: number): number {
    return this.k.reduceMax(p(a), n);
  }
  sumSquares(a: Buf, n: number): number {
    return this.k.reduceSumSquares(p(a), n);
  }

  matmul(a: Buf, b: Buf, c: Buf, x: MatmulArgs): void {
    const { m, k, n } = x;
    const batch = x.batch ?? 1;
    if (this.nativeUse && batch === 1 && !x.transA && x.transB && m <= NATIVE_F32_MAX_M && k % 8 === 0 && k > 0 && m > 0 && m * n * k >= NATIVE_F32_MIN_WORK) {
      this.views(); // the native side checks bounds against the attached size, refreshed after growth
      const args = [this.nativeUse.slot, p(a) + (x.offA ?? 0) * 4, p(b) + (x.offB ?? 0) * 4, p(c) + (x.offC ?? 0) * 4, m, n, k, x.accumulate ? 1 : 0];
      this.run('native.matvecF32', args, (m * n * k) / 8);
      return;
    }
    if (this.nativeUse && m >= NATIVE_GEMM_MIN_M && n > 0 && k > 0 && m * n * k >= NATIVE_GEMM_MIN_WORK) {
      this.views();
      const args = [
        this.nativeUse.slot, p(a) + (x.offA ?? 0) * 4, p(b) + (x.offB ?? 0) * 4, p(c) + (x.offC ?? 0) * 4, m, k, n,
        x.transA ? 1 : 0, x.transB ? 1 : 0, x.accumulate ? 1 : 0, batch, x.strideA ?? m * k, x.strideB ?? k * n, x.strideC ?? m * n,
      ];
      this.run('native.gemmF32', args, (batch * m * n * k) / 8);
      return;
    }
    const args = [
      p(a) + (x.offA ?? 0) * 4, p(b) + (x.offB ?? 0) * 4, p(c) + (x.offC ?? 0) * 4, m, k, n,
      x.transA ? 1 : 0, x.transB ? 1 : 0, x.accumulate ? 1 : 0, batch,
      x.strideA ?? m * k, x.strideB ?? k * n, x.strideC ?? m * n, this.matmulScratch,
    ];
    this.run('matmul', args, (batch * m * n * k) / 8);
  }

  private quantTable(): number {
    if (!this.f16Table) {
      this.f16Table = this.rawAlloc(this.k.f16TableBytes());
      this.k.initF16Table(this.f16Table);
    }
    return this.f16Table;
  }

  matmulQuant(x: Buf, w: Buf, out: Buf, a: QuantMatmulArgs): void {
    const { m, n, k, type } = a;
    if (!(Number.isInteger(m) && m >= 0 && Number.isInteger(n) && n >= 0)) throw new RangeError(`matmulQuant: invalid shape m = ${m}, n = ${n}`);
    const { code, rowBytes, packed } = this.quantCode('matmulQuant', w, type, n, k);
    if (m * k > x.length) throw new RangeError(`matmulQuant: x holds ${x.length} elements, m·k = ${m}·${k} needed`);
    if (m * n > out.length) throw new RangeError(`matmulQuant: out holds ${out.length} elements, m·n = ${m}·${n} needed`);
    if (!packed && n * rowBytes > w.length * 4) throw new RangeError(`matmulQuant: w holds ${w.length * 4} bytes, a ${type} matrix [${n}, ${k}] needs ${n * rowBytes}`);
    if (m === 0 || n === 0) return;
    const work = (m * n * k) / 8;
    const acc = a.accumulate ? 1 : 0;
    const native = (!packed || REPACKED[type]!.native) && this.nativeTakes(type, n, k);
    const strategy = resolveStrategy(a.strategy, m, type, native);
    if (native && strategy === 'int8' && a.strategy !== 'int8' && m >= NATIVE_DEQUANT_MIN_M && n * k <= NATIVE_DEQUANT_MAX_WEIGHTS) {
      // Prefill sizes: the matrix dequantized once (n·k work against m·n·k) and the native f32 GEMM,
      // which runs ~2x faster than the int8 product there (x is not rounded to int8 either).
      const wf = this.scratch(this.dequantScratch, n * k * 4);
      if (this.identityIds.length < n) this.identityIds = Int32Array.from({ length: n }, (_, i) => i);
      this.run('dequantizeRows', [p(w), this.stageInts(this.identityIds.subarray(0, n)), wf, n, k, code, this.quantTable()], n * k);
      this.views();
      this.run('native.gemmF32', [this.nativeUse!.slot, p(x), wf, p(out), m, k, n, 0, 1, acc, 1, m * k, k * n, m * n], (m * n * k) / 8);
      return;
    }
    if (native && strategy === 'int8') {
      // The native int8 products, with activations quantized as llama.cpp's quantize_row_q8_0 does.
      const { slot, kernels } = this.nativeUse!;
      const stride = kernels.qrowBytes(k); // the addon's own layout (int8 values, scales, corrections)
      const xq = this.scratch(this.actScratch, m * stride);
      this.views();
      this.run('native.quantizeActivations', [slot, p(x), m, k, xq], m * k);
      this.run('native.qmatmul', [slot, xq, p(w), p(out), m, n, k, code, acc], work);
      return;
    }
    const table = this.quantTable();
    if (strategy === 'int8') {
      // Q4_K pairs with llama.cpp's Q8_K (one scale per 256 values), which fits in the same row stride.
      const stride = this.k.quantizedRowBytes(k);
      const xq = this.scratch(this.actScratch, m * stride);
      if (type === 'q4_k') this.run('quantizeActivationsK', [p(x), m, k, xq, stride], m * k);
      else this.run('quantizeActivations', [p(x), m, k, xq, stride, type === 'q4_0' ? 1 : 0], m * k); // Q4_0's own layout (blockQ4)
      this.run('qmatmulInt8', [xq, stride, p(w), p(out), m, n, k, code, acc, table], work);
    } else {
      const ws = m > 1 || packed ? this.scratch(this.qgemmScratch, this.k.qmatmulScratchBytes() * this.threads) : 0;
      this.run('qmatmulF32', [p(x), p(w), p(out), m, n, k, code, acc, ws, table], work);
    }
  }

  dequantizeRows(w: Buf, ids: Int32Array, out: Buf, a: { k: number; type: QuantType }): void {
    const { code, rowBytes, packed } = this.quantCode('dequantizeRows', w, a.type, 0, a.k);
    const rows = packed ? packed.rows : Math.floor((w.length * 4) / rowBytes);
    if (ids.length * a.k > out.length) throw new RangeError(`dequantizeRows: out holds ${out.length} elements, ${ids.length}·${a.k} needed`);
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < rows)) throw new RangeError(`dequantizeRows: row id ${ids[i]} at ${i} is outside the table [0, ${rows})`);
    }
    if (!ids.length) return;
    const table = this.quantTable();
    this.run('dequantizeRows', [p(w), this.stageInts(ids), p(out), ids.length, a.k, code, table], ids.length * a.k);
  }

  // RMSNorm and RoPE: the native kernels compute the WebAssembly kernels' numbers bit for bit (so a row's
  // result does not depend on which path the call's size picks), only faster.
  rmsNorm(x: Buf, w: Buf, out: Buf, rstd: Buf, rows: number, dim: number, eps: number): void {
    if (this.nativeUse && rows * dim >= NATIVE_ELEMENTWISE_MIN) {
      this.views();
      this.run('native.rmsNorm', [this.nativeUse.slot, p(x), p(out), p(w), p(rstd), rows, dim, eps], rows * dim);
      return;
    }
    this.run('rmsNorm', [p(x), p(w), p(out), p(rstd), rows, dim, eps], rows * dim);
  }
  rmsNormBackward(x: Buf, w: Buf, rstd: Buf, dy: Buf, dx: Buf, dw: Buf, rows: number, dim: number): void {
    if (this.nativeUse && rows * dim >= NATIVE_ELEMENTWISE_MIN) {
      // Threads split dx's rows and dw's columns (WebAssembly's kernel runs on one thread: dw sums over rows).
      this.views();
      this.run('native.rmsNormBackward', [this.nativeUse.slot, p(x), p(dy), p(dx), p(w), p(dw), p(rstd), rows, dim], rows * dim * 2);
      return;
    }
    this.k.rmsNormBackward(p(x), p(w), p(rstd), p(dy), p(dx), p(dw), rows, dim);
  }
  softmax(x: Buf, out: Buf, rows: number, dim: number): void {
    this.run('softmax', [p(x), p(out), rows, dim], rows * dim * 4);
  }
  rope(x: Buf, out: Buf, rows: number, heads: number, headDim: number, seqLen: number, pos0: number, theta: number, inverse: boolean): void {
    if (headDim % 2) throw new RangeError(`rope: headDim ${headDim} must be even`);
    const table = this.ropeTable(headDim, theta, pos0 + Math.min(rows, seqLen));
    if (this.nativeUse && rows * heads * headDim >= NATIVE_ELEMENTWISE_MIN) {
      this.views();
      this.run('native.rope', [this.nativeUse.slot, p(x), p(out), table, rows, heads, headDim, seqLen, pos0, inverse ? 1 : 0], rows * heads * headDim);
      return;
    }
    this.run('rope', [p(x), p(out), rows, heads, headDim, seqLen, pos0, table, inverse ? 1 : 0], rows * heads * headDim);
  }
  ropeRows(x: Buf, out: Buf, rows: number, heads: number, headDim: number, positions: Int32Array, theta: number): void {
    if (headDim % 2) throw new RangeError(`ropeRows: headDim ${headDim} must be even`);
    checkRowPositions('ropeRows', rows, positions);
    if (!rows) return;
    let last = 0;
    for (let r = 0; r < rows; r++) last = Math.max(last, positions[r]);
    const table = this.ropeTable(headDim, theta, last + 1);
    this.run('ropeRows', [p(x), p(out), rows, heads, headDim, this.stageInts(positions), table], rows * heads * headDim);
  }
  /** cos/sin for every position and pair, computed in f64 exactly as the reference does, cached. */
  private ropeTable(headDim: number, theta: number, positions: number): number {
    const key = `${headDim}:${theta}`;
    const have = this.ropeTables.get(key);
    if (have && have.positions >= positions) return have.ptr;
    const n = Math.max(positions, 2 * (have?.positions ?? 0), 256);
    const half = headDim / 2;
    const ptr = this.rawAlloc(n * half * 2 * 4);
    const f = this.views();
    for (let pos = 0; pos < n; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * Math.pow(theta, (-2 * i) / headDim);
        f[ptr / 4 + (pos * half + i) * 2] = Math.cos(angle);
        f[ptr / 4 + (pos * half + i) * 2 + 1] = Math.sin(angle);
      }
    }
    if (have) this.rawFree(have.ptr, have.positions * half * 2 * 4);
    this.ropeTables.set(key, { ptr, positions: n });
    return ptr;
  }
  swiglu(gate: Buf, up: Buf, out: Buf, n: number): void {
    if (this.nativeUse && n >= NATIVE_SWIGLU_MIN) {
      this.views();
      this.run('native.swiglu', [this.nativeUse.slot, p(gate), p(up), p(out), n], n * 4);
      return;
    }
    this.run('swiglu', [p(gate), p(up), p(out), n], n * 4);
  }
  swigluBackward(gate: Buf, up: Buf, dout: Buf, dgate: Buf, dup: Buf, n: number): void {
    if (this.nativeUse && n >= NATIVE_SWIGLU_MIN) {
      this.views();
      this.run('native.swigluBackward', [this.nativeUse.slot, p(gate), p(up), p(dout), p(dgate), p(dup), n], n * 4);
      return;
    }
    this.run('swigluBackward', [p(gate), p(up), p(dout), p(dgate), p(dup), n], n * 4);
  }

  embedding(table: Buf, ids: Int32Array, out: Buf, dim: number): void {
    const vocab = table.length / dim;
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < vocab)) throw new RangeError(`embedding: token id ${ids[i]} at ${i} is outside the vocabulary [0, ${vocab})`);
    }
    this.run('embedding', [p(table), this.stageInts(ids), p(out), ids.length, dim], ids.length * dim);
  }
  embeddingBackward(ids: Int32Array, dout: Buf, dtable: Buf, dim: number): void {
    const vocab = dtable.length / dim;
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < vocab)) throw new RangeError(`embeddingBackward: token id ${ids[i]} at ${i} is outside the vocabulary [0, ${vocab})`);
    }
    this.k.embeddingBackward(this.stageInts(ids), p(dout), p(dtable), ids.length, dim);
  }
  crossEntropy(logits: Buf, targets: Int32Array, dlogits: Buf | null, vocab: number, gradScale: number): { loss: number; count: number } {
    const rows = targets.length;
    let count = 0;
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t >= vocab) throw new RangeError(`crossEntropy: target ${t} at row ${r} is outside the vocabulary [0, ${vocab})`);
      if (t >= 0) count++;
    }
    const intBytes = Math.ceil((rows * 4) / ALIGN) * ALIGN;
    const tp = this.stageInts(targets, rows * 8 + ALIGN);
    const lossPtr = tp + intBytes;
    this.run('crossEntropy', [p(logits), tp, dlogits ? p(dlogits) : 0, lossPtr, rows, vocab, gradScale], rows * vocab * 4);
    const f64 = this.f64;
    let loss = 0;
    for (let r = 0; r < rows; r++) loss += f64[lossPtr / 8 + r];
    return { loss, count };
  }

  private attentionArgs(a: AttentionArgs): number[] {
    const kvStride = a.kvBatchStride ?? a.tk * a.kvHeads * a.headDim;
    if (a.heads % a.kvHeads) throw new RangeError(`attention: heads ${a.heads} is not a multiple of kvHeads ${a.kvHeads}`);
    return [a.batch, a.tq, a.tk, a.heads, a.kvHeads, a.headDim, a.qPos0, a.scale, kvStride, this.attentionScratch(a.tk)];
  }
  /** The attention kernels' scratch for tk keys on every thread (grown, kept). */
  private attentionScratch(tk: number): number {
    const need = this.k.attentionScratchBytes(tk) * this.threads;
    if (need > this.attnScratch.bytes) {
      if (this.attnScratch.bytes) this.rawFree(this.attnScratch.ptr, this.attnScratch.bytes);
      this.attnScratch = { ptr: this.rawAlloc(need), bytes: Math.ceil(need / ALIGN) * ALIGN };
    }
    return this.attnScratch.ptr;
  }
  /** Whether decode attention of n keys goes to the native kernel (one row: attention() and attentionRows() agree). */
  private nativeDecode(heads: number, kvHeads: number, headDim: number, n: number): boolean {
    return !!this.nativeUse && headDim % 8 === 0 && headDim <= 4096 && heads % kvHeads === 0 && n >= 1 && heads * n * headDim >= NATIVE_ATTENTION_MIN_WORK;
  }
  attentionRows(q: Buf, k: readonly Buf[], v: readonly Buf[], out: Buf, lse: Buf, a: AttentionRowsArgs): void {
    const { heads, kvHeads, headDim: D, positions, newKv } = a, rows = positions.length, kvDim = kvHeads * D;
    checkAttentionRows(k, v, a);
    if (!(heads >= 1 && kvHeads >= 1 && heads % kvHeads === 0)) throw new RangeError(`attentionRows: heads ${heads} is not a multiple of kvHeads ${kvHeads}`);
    if (q.length < rows * heads * D || out.length < rows * heads * D || lse.length < rows * heads) throw new RangeError(`attentionRows: q, out or lse holds fewer than ${rows} rows`);
    // Each row goes to the kernel attention() would give it alone (native from a size, else WebAssembly), so
    // its numbers are the same: one call for the native rows (which also writes their new keys and values),
    // one for the rest (whose new keys and values are copied here first).
    for (const native of [true, false]) {
      let count = 0, maxTk = 1, work = 0;
      for (let r = 0; r < rows; r++) if (this.nativeDecode(heads, kvHeads, D, positions[r] + 1) === native) count++;
      if (!count) continue;
      const scratch = native ? 0 : this.attentionScratch(Math.max(...positions) + 1);
      const table = this.stage(count * 32), i32 = this.i32, qBytes = heads * D * 4;
      let e = table / 4;
      for (let r = 0; r < rows; r++) {
        const n = positions[r] + 1;
        if (this.nativeDecode(heads, kvHeads, D, n) !== native) continue;
        if (newKv && !native) {
          this.copy(newKv.k, r * kvDim, k[r], positions[r] * kvDim, kvDim);
          this.copy(newKv.v, r * kvDim, v[r], positions[r] * kvDim, kvDim);
        }
        i32[e] = p(q) + r * qBytes; i32[e + 1] = p(k[r]); i32[e + 2] = p(v[r]); i32[e + 3] = p(out) + r * qBytes; i32[e + 4] = p(lse) + r * heads * 4; i32[e + 5] = n;
        if (native) {
          i32[e + 6] = newKv ? p(newKv.k) + r * kvDim * 4 : 0; i32[e + 7] = newKv ? p(newKv.v) + r * kvDim * 4 : 0;
          e += 8; // the native table's entries also hold the new key's and value's offsets
        } else e += 6;
        maxTk = Math.max(maxTk, n);
        work += heads * n * D;
      }
      if (native) this.run('native.attentionDecodeRows', [this.nativeUse!.slot, table, count, heads, kvHeads, D, a.scale, newKv ? 1 : 0], work);
      else this.run('attentionRows', [table, count, heads, kvHeads, D, a.scale, scratch, maxTk], work);
    }
  }
  /**
   * The native training attention's shape arguments and work when it takes this call (AVX2+FMA, head
   * size a multiple of 8, batch items of K/V that do not overlap, above NATIVE_TRAIN_ATTENTION_MIN_WORK),
   * else null. Single query rows (decode, batched decode) stay with the decode kernels, which read the
   * cache in memory order instead of packing each head's keys.
   */
  private nativeTrainAttention(a: AttentionArgs): { args: number[]; work: number } | null {
    if (!this.nativeUse) return null;
    const kvStride = a.kvBatchStride ?? a.tk * a.kvHeads * a.headDim;
    const keys = Math.min(a.qPos0 + a.tq, a.tk);
    const work = a.batch * a.heads * a.tq * keys * a.headDim;
    if (!(a.headDim % 8 === 0 && a.headDim > 0 && a.kvHeads > 0 && a.heads % a.kvHeads === 0 && a.tq >= 2 && a.tk >= 1 && a.qPos0 >= 0 &&
          kvStride >= a.tk * a.kvHeads * a.headDim && work >= NATIVE_TRAIN_ATTENTION_MIN_WORK)) return null;
    return { args: [a.batch, a.tq, a.tk, a.heads, a.kvHeads, a.headDim, a.qPos0, a.scale, kvStride], work };
  }
  attention(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, a: AttentionArgs): void {
    const n = Math.min(a.qPos0 + 1, a.tk);
    if (a.batch === 1 && a.tq === 1 && this.nativeDecode(a.heads, a.kvHeads, a.headDim, n)) {
      // Decode: one query position per head over the cache (batch 1, so kvBatchStride does not matter).
      this.views();
      const args = [this.nativeUse!.slot, p(q), p(k), p(v), p(out), p(lse), a.heads, a.kvHeads, a.headDim, n, a.scale];
      this.run('native.attentionDecode', args, a.heads * n * a.headDim);
      return;
    }
    const native = this.nativeTrainAttention(a);
    if (native) {
      this.views();
      this.run('native.attentionTrain', [this.nativeUse!.slot, p(q), p(k), p(v), p(out), p(lse), ...native.args], native.work);
      return;
    }
    const rest = this.attentionArgs(a);
    this.run('attention', [p(q), p(k), p(v), p(out), p(lse), ...rest], a.batch * a.heads * a.tq * (a.qPos0 + a.tq) * a.headDim);
  }
  attentionBackward(q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, dout: Buf, dq: Buf, dk: Buf, dv: Buf, a: AttentionArgs): void {
    const native = this.nativeTrainAttention(a);
    if (native) {
      this.views();
      const args = [this.nativeUse!.slot, p(q), p(k), p(v), p(out), p(lse), p(dout), p(dq), p(dk), p(dv), ...native.args];
      this.run('native.attentionTrainBackward', args, native.work);
      return;
    }
    const rest = this.attentionArgs(a);
    this.run('attentionBackward', [p(q), p(k), p(v), p(out), p(lse), p(dout), p(dq), p(dk), p(dv), ...rest], a.batch * a.heads * a.tq * a.tk * a.headDim);
  }

  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, n: number, a: AdamWArgs): void {
    const bc1 = 1 - Math.pow(a.beta1, a.step), bc2 = 1 - Math.pow(a.beta2, a.step);
    if (this.nativeUse && n >= NATIVE_ELEMENTWISE_MIN) {
      this.views();
      this.run('native.adamw', [this.nativeUse.slot, p(param), p(grad), p(m), p(v), n, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, bc1, bc2, a.gradScale ?? 1], n * 8);
      return;
    }
    this.run('adamw', [p(param), p(grad), p(m), p(v), n, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, bc1, bc2, a.gradScale ?? 1], n * 8);
  }

  dispose(): void {
    this.pool?.dispose();
    if (this.nativeUse) {
      this.nativeUse.kernels.detach(this.nativeUse.slot);
      returnSlot(this.nativeUse.slot);
    }
  }
}

const p = (b: Buf): number => (b as WasmBuf).ptr;

/**
 * The repacked layouts (assembly/quant.ts): kernel type code, bytes per block of four rows (four f32
 * scales, then the four rows' quants: 16 nibble bytes or 32 int8 each), and whether the native kernels
 * read it (Q8_0's native kernel, bound by memory bandwidth, keeps GGUF's layout).
 */
const REPACKED: Partial<Record<QuantType, { code: number; groupBlockBytes: number; native: boolean }>> = {
  q4_0: { code: 3, groupBlockBytes: 80, native: true },
  q8_0: { code: 4, groupBlockBytes: 144, native: false },
};

/** The kernels' type code (dtypes/blocks.ts: 0 = Q8_0, 1 = Q4_0, 2 = Q4_K) and bytes per row; throws for a bad type or k. */
function quantLayout(op: string, type: QuantType, k: number): { code: number; rowBytes: number } {
  const layout = quantBlock(type);
  if (!layout) throw new RangeError(`${op}: unknown quantized type '${type as string}' (valid: ${QUANT_TYPES.join(', ')})`);
  const { code, values, bytes, block } = layout;
  if (!(Number.isInteger(k) && k > 0 && k % values === 0)) throw new RangeError(`${op}: k = ${k} must be a positive multiple of ${values} (the ${type} ${block} size)`);
  return { code, rowBytes: (k / values) * bytes };
}

/**
 * 'auto', by shape only (never by thread count, so results do not depend on it). Measured with
 * bench/qmatmul.ts and m swept 1..512 on k = n = 768 and 4096 (Zen 4, Node 20, SIMD build): int8 costs
 * the same per row of x at any m (every row redoes the integer dots) but needs no dequantization, and
 * wins clearly up to m ≈ 16 for Q8_0 and m ≈ 8 for Q4_0 (2x to 3.5x faster than f32 weights at
 * m = 1); beyond that both run at the f32 GEMM's speed and the dequantizing GEMM is used, since it does
 * not round x. Q4_K takes Q4_0's threshold without a sweep of its own; at m = 1 (k = n = 4096, one
 * thread, on a busy 2-core machine) its int8 path took 1.9 ms against 7.1 ms for f32 (Q4_0: 1.15, 3.0).
 * `native` (the native kernels take this Q8_0/Q4_0 product): int8, which beat the WebAssembly f32 GEMM
 * at prefill sizes too (512×768×768: 7.3–8.9 ms against 15.1, `bench qmatmul`); from
 * NATIVE_DEQUANT_MIN_M rows under `auto`, matmulQuant dequantizes for the native f32 GEMM instead,
 * which is faster still.
 */
function resolveStrategy(s: QuantStrategy | undefined, m: number, type: QuantType, native: boolean): 'int8' | 'f32' {
  if (s === 'int8' || s === 'f32') return s;
  if (s !== undefined && s !== 'auto') throw new RangeError(`matmulQuant: unknown strategy '${s as string}' (valid: auto, int8, f32)`);
  if (native) return 'int8';
  return m <= (type === 'q8_0' ? 16 : 8) ? 'int8' : 'f32';
}

