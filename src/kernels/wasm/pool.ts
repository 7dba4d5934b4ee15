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

/**
 * How long a new worker may take to say it is ready (ms): it instantiates an already compiled module,
 * which takes milliseconds, so only a worker that cannot start (a runtime without module workers, an
 * addon that fails to load in it) gets near this.
 */
export const WORKER_START_MS = 60_000;

/** What a worker posts once: 'ready', or why it could not start. */
export type WorkerReply = 'ready' | { error: string };

/** Minimal common face of Node's worker_threads.Worker and the browser's Worker. */
interface AnyWorker {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

function readyFrom(reply: WorkerReply, resolve: () => void, reject: (e: Error) => void): void {
  if (reply === 'ready') resolve();
  else reject(new Error(reply?.error ?? `unexpected first message ${JSON.stringify(reply)}`));
}

async function spawnWorker(): Promise<{ worker: AnyWorker; ready: Promise<void> }> {
  // `new Worker(new URL('./worker.js', import.meta.url), …)` written out in full each time: bundlers
  // (Vite, for the playground) recognise that form and bundle the worker with its imports.
  // Deno and Bun also answer to process.versions.node and implement node:worker_threads; that is the
  // path they take (Deno's global Worker would need its own permissions flags).
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    const ready = new Promise<void>((resolve, reject) => {
      worker.once('message', (m: WorkerReply) => readyFrom(m, resolve, reject));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the worker exited with code ${code} before it was ready`)));
    });
    // Unref only once it is ready: a parked pool must not keep the process alive, but while the
    // caller awaits `ready` the worker is what the event loop waits for. Deno's event loop does not
    // count an unref'd worker's pending message, so unref'ing at spawn let it empty and the process
    // exit 0 in the middle of creating the backend, printing nothing (issue 19).
    ready.then(() => worker.unref(), () => undefined); // (also marks a rejection seen: create() reports it)
    return { worker, ready };
  }
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const ready = new Promise<void>((resolve, reject) => {
    worker.addEventListener('message', (e) => readyFrom(e.data as WorkerReply, resolve, reject), { once: true });
    worker.addEventListener('error', (e) => reject(new Error(e.message || 'the worker script failed to load')), { once: true });
  });
  ready.catch(() => undefined); // create() reports it
  return { worker, ready };
}

/** Rejects after `ms`; the timer is the event loop's until cleared, so a stuck start cannot end the process silently. */
function deadline(ms: number, what: string): { promise: Promise<never>; clear(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not start within ${ms} ms`)), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
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

  /**
   * Starts threads − 1 workers on `memory`. Throws one clear error (and leaves no worker behind) when
   * any of them cannot start within {@link WORKER_START_MS}: the caller falls back to one thread or
   * reports it, never waits forever.
   */
  static async create(module: WebAssembly.Module, memory: WebAssembly.Memory, exports: Record<string, (...a: number[]) => unknown>, threads: number,
                      native: string | null = null, startMs = WORKER_START_MS): Promise<WorkerPool> {
    const names = Object.keys(exports).filter((k) => typeof exports[k] === 'function');
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const count = Math.max(0, threads - 1);
    const spawned: { worker: AnyWorker; ready: Promise<void> }[] = [];
    const limit = deadline(startMs, `${count} kernel worker thread(s)`);
    let failed = false;
    try {
      const started = (async () => {
        for (let i = 0; i < count; i++) {
          const s = await spawnWorker();
          if (failed) { // the deadline passed while spawning: the catch below ended the others
            s.worker.terminate();
            return;
          }
          spawned.push(s);
        }
        spawned.forEach(({ worker }, i) => {
          const init: WorkerInit = { module, memory, control, names, tid: i + 1, nth: threads, native };
          worker.postMessage(init);
        });
        await Promise.all(spawned.map((s) => s.ready));
      })();
      await Promise.race([started, limit.promise]);
    } catch (e) {
      failed = true;
      for (const s of spawned) s.worker.terminate();
      throw new Error(`stlm: could not start the kernel worker threads: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      limit.clear();
    }
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
