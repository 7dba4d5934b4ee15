// The worker side of the kernel pool's protocol (src/kernels/wasm/pool.ts, worker.ts), driven by hand.
// The pool issues a call by bumping EPOCH once every worker has said it is ready; a worker may reach its
// wait loop only after that. It must still run the call: a worker that took the epoch it found on
// arrival as "already seen" skipped the first call, and the caller spun forever (a hang seen in headless
// Chromium on a busy host). Here the call is issued before the worker even starts. And a caller whose
// worker died gets an error after the pool's deadline instead of spinning forever; a pool whose
// workers cannot start says why in one error, and the backend then computes on one thread.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { simdShared } from '../src/kernels/wasm/generated/binaries.js';
import { ARGC, ARGS_OFFSET, CONTROL_BYTES, DONE, EPOCH, EXIT, FN, MAX_ARGS, WorkerPool, type WorkerInit } from '../src/kernels/wasm/pool.js';

test('a worker runs a call issued before it started (tid 1 of 2 does its half)', async () => {
  const module = new WebAssembly.Module(Buffer.from(simdShared, 'base64'));
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 16, shared: true } as WebAssembly.MemoryDescriptor);
  const names = WebAssembly.Module.exports(module).filter((e) => e.kind === 'function').map((e) => e.name);
  // Above the first 64 KiB page, which the module's data segments fill on every instantiation.
  const n = 64, a = 65536, b = a + 4 * n, out = b + 4 * n;
  const f = new Float32Array(memory.buffer);
  for (let i = 0; i < n; i++) {
    f[a / 4 + i] = i;
    f[b / 4 + i] = 1000;
    f[out / 4 + i] = -1;
  }
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  const ctrl = new Int32Array(control, 0, 16);
  const args = new Float64Array(control, ARGS_OFFSET, MAX_ARGS);
  [a, b, out, n].forEach((v, i) => (args[i] = v));
  ctrl[FN] = names.indexOf('add');
  ctrl[ARGC] = 4;
  Atomics.store(ctrl, DONE, 0);
  Atomics.add(ctrl, EPOCH, 1); // the call, before the worker exists

  const worker = new Worker(new URL('../src/kernels/wasm/worker.js', import.meta.url));
  try {
    const ready = new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    const init: WorkerInit = { module, memory, control, names, tid: 1, nth: 2, native: null };
    worker.postMessage(init);
    await ready;
    // Wait for its share (tid 0's half is nobody's here), at most 10 s instead of forever.
    const deadline = Date.now() + 10_000;
    while (Atomics.load(ctrl, DONE) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(Atomics.load(ctrl, DONE), 1, 'the worker never ran the call issued before it started');
    const got = Array.from(new Float32Array(memory.buffer, out, n));
    // add() splits n in 16-float units: tid 1 of 2 writes the second half, tid 0's half stays untouched.
    assert.deepEqual(got.slice(n / 2), Array.from({ length: n / 2 }, (_, i) => n / 2 + i + 1000));
    assert.deepEqual(got.slice(0, n / 2), new Array(n / 2).fill(-1));
  } finally {
    ctrl[FN] = EXIT;
    Atomics.add(ctrl, EPOCH, 1);
    Atomics.notify(ctrl, EPOCH);
    await worker.terminate();
  }
});

test('a worker that died leaves its caller with a clear error after the deadline, not a spin forever', async () => {
  const be = await createWasmBackend({ threads: 2, native: false });
  try {
    // Reach into the pool (no public handle: only this failure needs one): a short deadline, and its
    // one worker stopped, as a crashed thread would be.
    const pool = (be as unknown as { pool: { deadlineMs: number; workers: { terminate(): Promise<number> }[] } }).pool;
    pool.deadlineMs = 300;
    await pool.workers[0].terminate();
    const [m, k, n] = [128, 128, 128]; // big enough to be split over the threads
    const a = be.alloc(m * k), b = be.alloc(k * n), c = be.alloc(m * n);
    const t0 = Date.now();
    assert.throws(() => be.matmul(a, b, c, { m, k, n }), /1 of 1 worker thread\(s\) gave no result for 'matmul' within 300 ms/);
    assert.ok(Date.now() - t0 < 10_000);
    assert.throws(() => be.matmul(a, b, c, { m, k, n }), /the kernel pool is unusable/);
  } finally {
    be.dispose();
  }
});

test('workers that cannot start reject create() with the reason, not a wait without end', async () => {
  const module = new WebAssembly.Module(Buffer.from(simdShared, 'base64'));
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 16, shared: true } as WebAssembly.MemoryDescriptor);
  const instance = new WebAssembly.Instance(module, { env: { memory, abort: () => {} } });
  const exports = { ...(instance.exports as Record<string, (...a: number[]) => unknown>), 'native.qmatmul': () => 0 };
  // A native addon that is not there: each worker fails to load it and says so.
  const missing = new URL('./no-such-addon.node', import.meta.url).href;
  await assert.rejects(WorkerPool.create(module, memory, exports, 3, missing),
    /^Error: stlm: could not start the kernel worker threads: .*no-such-addon\.node/);
  // A start that takes longer than allowed (0 ms here) is an error too, not a wait without end.
  await assert.rejects(WorkerPool.create(module, memory, exports, 2, null, 0), /could not start the kernel worker threads: 1 kernel worker thread\(s\) did not start within 0 ms/);
});

test('a backend whose pool cannot start computes on one thread and says so on stderr', async () => {
  const create = WorkerPool.create;
  const warnings: string[] = [];
  const warn = console.warn;
  WorkerPool.create = async () => { throw new Error('stlm: could not start the kernel worker threads: (test)'); };
  console.warn = (m: string) => warnings.push(m);
  let be: Awaited<ReturnType<typeof createWasmBackend>> | null = null;
  try {
    be = await createWasmBackend({ threads: 2, native: false });
  } finally {
    WorkerPool.create = create;
    console.warn = warn;
  }
  try {
    assert.equal(be.threads, 1);
    assert.deepEqual(warnings, ['stlm: could not start the kernel worker threads: (test); computing on one thread']);
    const [m, k, n] = [64, 64, 64];
    const a = be.alloc(m * k), b = be.alloc(k * n), c = be.alloc(m * n);
    be.fill(a, 1);
    be.fill(b, 2);
    be.matmul(a, b, c, { m, k, n });
    assert.deepEqual(Array.from(be.read(c, 0, 4)), [128, 128, 128, 128]);
  } finally {
    be.dispose();
  }
});
