/**
 * A kernel worker: instantiates the kernel module on the shared memory and runs its share of each
 * call the pool dispatches (see pool.ts for the protocol). Runs unchanged as a Node worker_thread
 * or a browser module Worker; only the bootstrap below differs.
 */
import { ARGC, ARGS_OFFSET, DONE, EPOCH, EXIT, FAILED, FN, MAX_ARGS, SLEEPING, type WorkerInit, type WorkerReply } from './pool.js';

/** Spins before sleeping: decode issues many short calls in a row, and a futex wake costs ~10-50 µs. */
const SPIN_LIMIT = 200_000;

function serve(init: WorkerInit, native: Record<string, unknown> | null, ready: () => void, failed: (e: unknown) => void): void {
  let fns: ((...a: number[]) => unknown)[];
  try {
    const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory, abort: () => { throw new Error('abort'); } } });
    const exports = instance.exports as Record<string, (...a: number[]) => unknown>;
    fns = init.names.map((n) => {
      const fn = n.startsWith('native.') ? native?.[n.slice(7)] : exports[n];
      if (typeof fn !== 'function') throw new Error(`kernel '${n}' is missing in the worker`);
      return fn as (...a: number[]) => unknown;
    });
  } catch (e) {
    failed(e);
    return;
  }
  const ctrl = new Int32Array(init.control, 0, 16);
  const argv = new Float64Array(init.control, ARGS_OFFSET, MAX_ARGS);
  const args: number[] = [];
  // Ready only once the module is instantiated, so the pool's first call never waits on a setup that
  // may still fail. The pool may then bump EPOCH for its first call before this thread reaches the
  // loop; starting from the epoch the control block was created with (0), not from the value read now,
  // means that call is run rather than missed (missing it left the caller spinning forever: seen in
  // headless Chromium on a busy host).
  let seen = 0;
  ready();
  for (;;) {
    let spins = 0;
    while (Atomics.load(ctrl, EPOCH) === seen) {
      if (++spins < SPIN_LIMIT) continue;
      Atomics.add(ctrl, SLEEPING, 1);
      Atomics.wait(ctrl, EPOCH, seen);
      Atomics.sub(ctrl, SLEEPING, 1);
      spins = 0;
    }
    seen = Atomics.load(ctrl, EPOCH);
    const fn = ctrl[FN];
    if (fn === EXIT) return;
    const argc = ctrl[ARGC];
    args.length = argc;
    for (let i = 0; i < argc; i++) args[i] = argv[i];
    try {
      fns[fn](...args, init.tid, init.nth);
    } catch {
      Atomics.store(ctrl, FAILED, 1);
    }
    Atomics.add(ctrl, DONE, 1);
    Atomics.notify(ctrl, DONE); // wakes the caller if it stopped spinning
  }
}

/** Why this thread could not start, in one line for the pool's error. */
function reason(e: unknown): WorkerReply {
  return { error: e instanceof Error ? e.message : String(e) };
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;
if (isNode) {
  const { parentPort } = await import('node:worker_threads');
  parentPort!.once('message', async (init: WorkerInit) => {
    let native: Record<string, unknown> | null = null;
    try {
      // The addon is loaded once per process; here it only gains this thread's Node-API bindings.
      native = init.native
        ? ((await import('node:module')).createRequire(import.meta.url)((await import('node:url')).fileURLToPath(init.native)) as Record<string, unknown>)
        : null;
    } catch (e) {
      parentPort!.postMessage(reason(e));
      return;
    }
    serve(init, native, () => parentPort!.postMessage('ready' satisfies WorkerReply), (e) => parentPort!.postMessage(reason(e)));
  });
} else {
  const scope = globalThis as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void };
  scope.onmessage = (e: MessageEvent) => {
    scope.onmessage = null;
    serve(e.data as WorkerInit, null, () => scope.postMessage('ready' satisfies WorkerReply), (err) => scope.postMessage(reason(err)));
  };
}
