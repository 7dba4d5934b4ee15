#!/usr/bin/env node
// Builds the optional native kernels (native/stlm_native.c) into dist/native/stlm_native.node with the
// system C compiler ($CC, else cc) against Node-API's headers (the node-api-headers package), so no
// download and no node-gyp. Node-API's symbols are resolved from the running node at load time.
// The native kernels are an accelerator, not a requirement: without a compiler, on a CPU without
// AVX2, or if the build fails, this prints why and exits 0, and the backend stays in WebAssembly.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'native', 'stlm_native.node');
const skip = (why) => {
  console.warn(`stlm: native kernels not built (${why}); the WebAssembly kernels will be used`);
  process.exit(0);
};
if (process.env.STLM_NATIVE === '0') skip('STLM_NATIVE=0');
if (process.arch !== 'x64') skip(`no native kernels for ${process.arch} yet`);
let include;
try {
  include = createRequire(import.meta.url)('node-api-headers').include_dir;
} catch {
  skip('the node-api-headers package is not installed');
}
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
const tmp = `${out}.${process.pid}.tmp`;
const args = ['-O3', '-std=gnu11', '-fPIC', '-shared', '-fvisibility=hidden', '-Wall', '-I', include,
  join(root, 'native', 'stlm_native.c'), '-o', tmp];
if (process.platform === 'darwin') args.push('-undefined', 'dynamic_lookup');
try {
  execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
} catch (e) {
  skip(`${cc} failed: ${e.message.split('\n')[0]}`);
}
renameSync(tmp, out);
console.log(`stlm: native kernels built: ${out}`);
