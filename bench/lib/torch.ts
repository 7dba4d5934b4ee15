/**
 * What the benchmarks that run PyTorch beside stlm share: the interpreter, argument lookup, and
 * installing Debian's python3-torch (on OpenBLAS) when it is missing. (A folder of its own, so the
 * bench dispatcher does not list it as a benchmark.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PY = '/usr/bin/python3';

export function arg(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
}

/**
 * Debian's PyTorch does its fp32 GEMMs through libblas.so.3; without OpenBLAS that is the netlib
 * reference BLAS, ~15x slower, which would make the anchor meaningless. So both are required.
 */
export function ensureTorch(): void {
  const torch = spawnSync(PY, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
  const openblas = existsSync('/usr/lib/x86_64-linux-gnu/libopenblas.so.0');
  if (torch && openblas) return;
  console.error(`${torch ? '' : 'python3-torch '}${openblas ? '' : 'libopenblas0-pthread '}missing: installing with apt-get (Debian's PyTorch on OpenBLAS is the anchor)…`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', 'python3-torch', 'python3-numpy', 'libopenblas0-pthread'], { stdio: 'inherit' });
}

