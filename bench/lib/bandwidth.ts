/**
 * The memory-bandwidth bound of a decode step: one core's measured read bandwidth (bench/lib/read-bandwidth.c,
 * built here with the system C compiler into the bench cache) over the bytes of weights one token reads.
 * A batch-1 decode reads every weight matrix once per token, so no engine on one core decodes faster
 * than bandwidth ÷ those bytes; issue 18 asks F32 decode for 80% of it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufHeader } from '../../src/formats/gguf.js';
import { CACHE_DIR } from './model-files.js';

const SOURCE = fileURLToPath(new URL('../../../bench/lib/read-bandwidth.c', import.meta.url));

export interface Bandwidth {
  median_gbps: number;
  best_gbps: number;
  mib: number;
  passes: number;
}

/** One core's read bandwidth (median of the passes), or why it could not be measured. */
export function measureReadBandwidth(mib = 1024, passes = 7): Bandwidth | { skip: string } {
  const bin = join(CACHE_DIR, 'read-bandwidth');
  try {
    if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(SOURCE).mtimeMs) {
      mkdirSync(CACHE_DIR, { recursive: true });
      execFileSync(process.env.CC || 'cc', ['-O2', '-mavx2', '-o', bin, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    }
    return JSON.parse(execFileSync(bin, [String(mib), String(passes)], { encoding: 'utf8' })) as Bandwidth;
  } catch (e) {
    return { skip: `read-bandwidth: ${(e as Error).message.split('\n')[0]}` };
  }
}

/**
 * Bytes of weights a batch-1 decode step reads: every tensor but the token embedding, of which it reads
 * one row; with tied embeddings (no output.weight) the output product reads that table whole.
 */
export async function weightBytesPerToken(path: string): Promise<number> {
  const g = await readGgufHeader(path);
  const tied = !g.tensors.some((t) => t.name === 'output.weight');
  return g.tensors.reduce((sum, t) => sum + (t.name === 'token_embd.weight' && !tied ? 0 : t.byteLength), 0);
}
