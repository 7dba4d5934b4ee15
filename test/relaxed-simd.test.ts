// The relaxed-SIMD build of the kernels (fused multiply-add, i8×i7 dot products) is what runtimes with
// relaxed SIMD load (Node 22+, current browsers), but Node 20 enables it only behind a V8 flag. This
// runs the kernel and quantized-kernel suites again in a child process with that flag, so both builds
// are checked against the reference backend on every Node version.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const FLAG = '--experimental-wasm-relaxed-simd';

test('kernel suites pass on the relaxed-SIMD build', () => {
  const suites = ['kernels.test.js', 'quant-kernels.test.js'].map((f) => fileURLToPath(new URL(f, import.meta.url)));
  const probe = spawnSync(process.execPath, [FLAG, '--input-type=module', '-e',
    `const k = await import(${JSON.stringify(new URL('../src/kernels/index.js', import.meta.url).href)}); const b = await k.createBackend('wasm', { threads: 1 }); console.log(b.name); b.dispose();`], { encoding: 'utf8' });
  assert.equal(probe.status, 0, probe.stderr);
  assert.equal(probe.stdout.trim(), 'wasm-relaxed-simd', 'the backend did not pick the relaxed-SIMD build under the flag');
  // Without NODE_TEST_CONTEXT, which would make the child report to this runner instead of running its own.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, [FLAG, '--test', '--test-reporter=tap', ...suites], { encoding: 'utf8', env });
  assert.match(r.stdout, /# pass [1-9]/, `no tests ran in the child:\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.status, 0, `relaxed-SIMD kernel suites failed:\n${r.stdout}\n${r.stderr}`);
});
