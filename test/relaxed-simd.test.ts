// The relaxed-SIMD build of the kernels (fused multiply-add) is what runtimes with relaxed SIMD load
// (Node 22+, current browsers), but Node 20 enables it only behind a V8 flag. This runs the kernel and
// quantized-kernel suites again in child processes: with that flag, so both builds are checked against
// the reference backend on every Node version, and with V8's baseline compiler only (Liftoff), for
// both builds. Every wasm function runs in Liftoff until V8 tiers it up, and the two compilers lower
// instructions separately: Node 20's Liftoff once computed i32x4.relaxed_dot_i8x16_i7x16_add_s with
// the wrong operand signedness (the optimized code was right), so only a product's first calls were
// wrong, which suites run at the optimizing tier did not see.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const FLAG = '--experimental-wasm-relaxed-simd';
const SUITES = ['kernels.test.js', 'quant-kernels.test.js'].map((f) => fileURLToPath(new URL(f, import.meta.url)));

/** Runs the suites in a child node with `flags`; fails with its output unless they ran and passed. */
function runSuites(flags: string[], what: string): void {
  // Without NODE_TEST_CONTEXT, which would make the child report to this runner instead of running its own.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, [...flags, '--test', '--test-reporter=tap', ...SUITES], { encoding: 'utf8', env });
  assert.match(r.stdout, /# pass [1-9]/, `no tests ran in the child (${what}):\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.status, 0, `${what}: kernel suites failed:\n${r.stdout}\n${r.stderr}`);
}

test('kernel suites pass on the relaxed-SIMD build', () => {
  const probe = spawnSync(process.execPath, [FLAG, '--input-type=module', '-e',
    `const k = await import(${JSON.stringify(new URL('../src/kernels/index.js', import.meta.url).href)}); const b = await k.createBackend('wasm', { threads: 1 }); console.log(b.name); b.dispose();`], { encoding: 'utf8' });
  assert.equal(probe.status, 0, probe.stderr);
  assert.equal(probe.stdout.trim(), 'wasm-relaxed-simd', 'the backend did not pick the relaxed-SIMD build under the flag');
  runSuites([FLAG], 'relaxed SIMD');
});

test('kernel suites pass in V8\'s baseline compiler (Liftoff), SIMD and relaxed-SIMD builds', () => {
  runSuites(['--liftoff-only'], 'SIMD, Liftoff only');
  runSuites([FLAG, '--liftoff-only'], 'relaxed SIMD, Liftoff only');
});
