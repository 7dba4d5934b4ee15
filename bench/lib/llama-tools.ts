/**
 * llama.cpp's own command-line tools (`llama-server`, `llama-perplexity`, `llama-bench`) for benchmarks
 * and oracles, built once, offline, from the llama.cpp source node-llama-cpp ships
 * (`node_modules/node-llama-cpp/llama/gitRelease.bundle`, a git bundle of the exact commit its bindings
 * use), into a cache folder outside the repository: `$STLM_CACHE` or `~/.cache/stlm`, under
 * `llama.cpp-<commit>/`. CPU only, Release, the build llama.cpp's README gives (GGML_NATIVE on: the tools
 * are measured as a user of this machine would build them). A second call finds the binary and returns.
 *
 * `npm run bench -- llama-tools [--build]` prints where they are (and builds them with --build).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type LlamaTool = 'llama-server' | 'llama-perplexity' | 'llama-bench';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const BUNDLE = join(ROOT, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');

/** The commit node-llama-cpp's bundle holds (its HEAD). */
function bundleCommit(): string {
  if (!existsSync(BUNDLE)) throw new Error(`llama.cpp tools: ${BUNDLE} is absent (node-llama-cpp, an optional dependency, is not installed)`);
  const head = execFileSync('git', ['bundle', 'list-heads', BUNDLE], { encoding: 'utf8' }).trim().split('\n')[0];
  const commit = head.split(' ')[0];
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`llama.cpp tools: cannot read the commit of ${BUNDLE} ('${head}')`);
  return commit;
}

/** The folder the tools of node-llama-cpp's llama.cpp commit are built into. */
export function llamaToolsDir(): string {
  const cache = process.env.STLM_CACHE || join(homedir(), '.cache', 'stlm');
  return join(cache, `llama.cpp-${bundleCommit().slice(0, 12)}`);
}

/** The path of a llama.cpp tool, building the tools first if they are not there (minutes, once). */
export function ensureLlamaTool(tool: LlamaTool, log: (line: string) => void = (l) => console.error(l)): string {
  const dir = llamaToolsDir();
  const bin = join(dir, 'build', 'bin', tool);
  if (existsSync(bin)) return bin;
  const src = join(dir, 'src');
  if (!existsSync(join(src, 'CMakeLists.txt'))) {
    // Clone into a temporary folder, then rename: an interrupted clone never looks like a finished one.
    const tmp = `${src}.${process.pid}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    log(`llama.cpp tools: unpacking ${BUNDLE} into ${src}`);
    execFileSync('git', ['clone', '--quiet', BUNDLE, tmp], { stdio: 'inherit' });
    rmSync(src, { recursive: true, force: true });
    renameSync(tmp, src);
  }
  const build = join(dir, 'build');
  log(`llama.cpp tools: configuring (cmake, CPU only) in ${build}`);
  execFileSync('cmake', ['-S', src, '-B', build, '-DCMAKE_BUILD_TYPE=Release', '-DLLAMA_CURL=OFF', '-DLLAMA_BUILD_TESTS=OFF',
    '-DLLAMA_BUILD_EXAMPLES=OFF', '-DGGML_NATIVE=ON', '-DBUILD_SHARED_LIBS=OFF'], { stdio: 'inherit' });
  log('llama.cpp tools: building llama-server, llama-perplexity, llama-bench (several minutes on 2 cores, once)');
  execFileSync('cmake', ['--build', build, '--config', 'Release', '-j', '2', '--target', 'llama-server', 'llama-perplexity', 'llama-bench'], { stdio: 'inherit' });
  if (!existsSync(bin)) throw new Error(`llama.cpp tools: the build finished but ${bin} is absent`);
  return bin;
}
