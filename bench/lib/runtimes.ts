/**
 * The JavaScript runtimes stlm's CLI is checked and measured under: Node (the one running this), and
 * Deno and Bun from their npm packages (pinned dev dependencies; each ships its binary in a
 * platform-specific optional package, so a platform without one has no binary). Used by
 * test/runtimes.test.ts and bench/runtimes.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Runtime {
  name: 'node' | 'deno' | 'bun';
  /** The version it reports. */
  version: string;
  /** Program and leading arguments that run an ES module file: append the file and its arguments. */
  command: string[];
}

/** Repository root (this file is at dist/bench/lib/ once compiled). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function probe(name: 'deno' | 'bun', bin: string, runArgs: string[]): Runtime | string {
  if (!existsSync(bin)) return `${name} is not installed (npm ci installs the pinned dev dependency '${name}', whose binary comes from an optional package for this platform): ${bin} is missing`;
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return `${name} does not run here (${bin} --version: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)})`;
  const version = /(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? r.stdout.trim();
  return { name, version, command: [bin, ...runArgs] };
}

/** Node (this process's), then Deno and Bun: each a Runtime, or the one-line reason it is unavailable. */
export function runtimes(): Record<'node' | 'deno' | 'bun', Runtime | string> {
  return {
    node: { name: 'node', version: process.versions.node, command: [process.execPath] },
    // -A: the CLI reads and writes files, reads the environment, starts workers and may load the
    // native addon (Node-API needs --allow-ffi; without it stlm stays in WebAssembly).
    deno: probe('deno', `${ROOT}node_modules/deno/deno`, ['run', '-A']),
    bun: probe('bun', `${ROOT}node_modules/bun/bin/bun.exe`, []),
  };
}

/** The stlm CLI's compiled entry point. */
export const CLI = `${ROOT}dist/src/cli/index.js`;
