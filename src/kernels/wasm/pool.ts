/**
 * A worker pool over one shared WebAssembly.Memory. Every kernel export takes (…, tid, nth) as its
 * last two arguments and computes its own share, so one call is "the same function on every thread".
 *
 * Dispatch goes through a small shared control block, not postMessage (which costs tens of µs and
 * would dominate decode-time matvecs):
 *   ctrl[EPOCH]    bumped by the main thread to start a call; workers spin briefly, then Atomics.wait on it
 *   ctrl[DONE]     workers add 1 when their share is done; the main thread (tid 0) spins on it
 *   ctrl[FN]       index of the export in the name table, ctrl[ARGC] its argument count (args as f64)
 *   ctrl[FAILED]   set by a worker whose share threw
 *   ctrl[SLEEPING] workers blocked in Atomics.wait; the main thread only pays for notify when > 0
 * The main thread never blocks (browsers forbid Atomics.wait there); it spins while workers finish
 * shares the same size as its own.
 */

export const EPOCH = 0, DONE = 1, FN = 2, ARGC = 3, FAILED = 4, SLEEPING = 5;
export const EXIT = -1;
/** Spins of the calling thread before it sleeps while waiting for workers. */
const MAIN_SPIN_LIMIT = 20_000;
/**
 * How long the calling thread waits for the workers' shares once its own is done before it gives up
 * (ms). Shares are the same size, so a live worker is at most a few scheduler slices behind; only a
 * worker that died mid-call (out of memory, terminated) gets near this, and without a limit its caller
 * would spin forever.
 */
export const WORKER_DEADLINE_MS = 120_000;
/** Bytes of the control block: 16 i32 slots, then the f64 argument slots. */
export const ARGS_OFFSET = 64;
export const MAX_ARGS = 32;
export const CONTROL_BYTES = ARGS_OFFSET + MAX_ARGS * 8;

/** What a worker needs to start; sent once by postMessage. */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  names: string[];
  tid: number;
  nth: number;
  /** file: URL of the native addon when kernels named `native.<name>` are among `names`, else null. */
  native: string | null;
}

/** Minimal common face of Node's worker_threads.Worker and the browser's Worker. */
interface AnyWorker {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

async function spawnWorker(): Promise<{ worker: AnyWorker; ready: Promise<void> }> {
  // `new Worker(new URL('./worker.js', import.meta.url), …)` written out in full each time: bundlers
  // (Vite, for the playground) recognise that form and bundle the worker with its imports.
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    worker.unref(); // a parked pool must not keep the process alive
    const ready = new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    return { worker, ready };
  }
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const ready = new Promise<void>((resolve, reject) => {
    worker.addEventListener('message', () => resolve(), { once: true });
    worker.addEventListener('error', (e) => reject(new Error(`stlm kernel worker failed to start: ${e.message}`)), { once: true });
  });
  return { worker, ready };
}

export class WorkerPool {
  private readonly ctrl: Int32Array;
  private readonly args: Float64Array;
  private readonly fnIndex = new Map<string, number>();
  /** Atomics.wait is allowed here (Node's main thread, any worker) but not on a browser's main thread. */
  private readonly canBlock = (typeof process !== 'undefined' && !!process.versions?.node) || 'WorkerGlobalScope' in globalThis;
  /** Set when a call ran past the deadline: a worker may still write into memory later, so no more calls. */
  private broken: string | null = null;
  /** WORKER_DEADLINE_MS, or shorter in a test. */
  deadlineMs = WORKER_DEADLINE_MS;

  private constructor(
    private readonly exports: Record<string, (...a: number[]) => unknown>,
    private readonly workers: AnyWorker[],
    control: SharedArrayBuffer,
    names: string[],
  ) {
    this.ctrl = new Int32Array(control, 0, 16);
    this.args = new Float64Array(control, ARGS_OFFSET, MAX_ARGS);
    names.forEach((n, i) => this.fnIndex.set(n, i));
  }

  /** Threads in all, the calling thread included. */
  get threads(): number {
    return this.workers.length + 1;
  }

  static async create(module: WebAssembly.Module, memory: WebAssembly.Memory, exports: Record<string, (...a: number[]) => unknown>, threads: number,
                      native: string | null = null): Promise<WorkerPool> {
    const names = Object.keys(exports).filter((k) => typeof exports[k] === 'function');
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const spawned = await Promise.all(Array.from({ length: Math.max(0, threads - 1) }, () => spawnWorker()));
    spawned.forEach(({ worker }, i) => {
      const init: WorkerInit = { module, memory, control, names, tid: i + 1, nth: threads, native };
      worker.postMessage(init);
    });
    await Promise.all(spawned.map((s) => s.ready));
    return new WorkerPool(exports, spawned.map((s) => s.worker), control, names);
  }

  /**
   * Runs export `name` with `args` on every thread (tid 0 here) and returns when all are done.
   * With parallel=false (small work), only this thread runs it, as (args…, 0, 1).
   */
  run(name: string, args: number[], parallel = true): void {
    if (this.broken) throw new Error(this.broken);
    const fn = this.exports[name];
    const nth = parallel ? this.threads : 1;
    if (nth === 1) {
      fn(...args, 0, 1);
      return;
    }
    const c = this.ctrl;
    for (let i = 0; i < args.length; i++) this.args[i] = args[i];
    c[FN] = this.fnIndex.get(name)!;
    c[ARGC] = args.length;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, FAILED, 0);
    Atomics.add(c, EPOCH, 1);
    if (Atomics.load(c, SLEEPING) > 0) Atomics.notify(c, EPOCH);
    let mainError: unknown = null;
    try {
      fn(...args, 0, nth);
    } catch (e) {
      mainError = e;
    }
    const others = nth - 1;
    let spins = 0, deadline = 0;
    for (let done = Atomics.load(c, DONE); done < others; done = Atomics.load(c, DONE)) {
      // Spin: the other shares are as long as ours. If a worker was descheduled (a busy machine),
      // sleep instead of burning the core it needs, where this thread may block (Node, workers).
      if (++spins > MAIN_SPIN_LIMIT && this.canBlock) Atomics.wait(c, DONE, done, 1);
      if ((spins & 1023) === 0) {
        const now = performance.now();
        if (deadline === 0) deadline = now + this.deadlineMs;
        else if (now > deadline) {
          this.broken = `stlm: the kernel pool is unusable: ${others - done} of ${others} worker thread(s) gave no result for '${name}' within ${this.deadlineMs} ms (a worker died or hangs); create a new backend`;
          throw new Error(this.broken);
        }
      }
    }
    if (mainError) throw mainError;
    if (Atomics.load(c, FAILED)) throw new Error(`stlm: kernel '${name}' failed in a worker thread`);
  }

  dispose(): void {
    const c = this.ctrl;
    c[FN] = EXIT;
    Atomics.add(c, EPOCH, 1);
    Atomics.notify(c, EPOCH);
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
  }
}
