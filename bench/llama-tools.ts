/**
 * Where llama.cpp's own tools (llama-server, llama-perplexity, llama-bench) for the benchmarks and
 * oracles are, built once from the llama.cpp source node-llama-cpp ships (bench/lib/llama-tools.ts).
 *
 *   npm run bench -- llama-tools [--build]
 *
 * Without --build it prints the folder and which tools are built; with it, builds what is missing.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureLlamaTool, llamaToolsDir, type LlamaTool } from './lib/llama-tools.js';

export const flags = ['--build'];

export async function main(argv: string[]): Promise<void> {
  const tools: LlamaTool[] = ['llama-server', 'llama-perplexity', 'llama-bench'];
  if (argv.includes('--build')) for (const t of tools) ensureLlamaTool(t);
  const dir = llamaToolsDir();
  for (const t of tools) {
    const bin = join(dir, 'build', 'bin', t);
    console.log(`${t}: ${existsSync(bin) ? bin : `not built (npm run bench -- llama-tools --build)`}`);
  }
}
