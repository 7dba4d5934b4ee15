/**
 * One tier measured in a child process of its own, so that its memory is its own: the child (this file,
 * run by `child_process.fork`) opens the tier, measures it (measure.ts) and reports its peak resident set
 * size from `process.resourceUsage().maxRSS` (the kernel's high-water mark for the process, every thread
 * and native allocation included: WebAssembly memory, llama.cpp's buffers), next to its resident size
 * before the tier was opened (Node and stlm's code alone). Nothing else runs in that process, so the
 * peak is what running this tier takes; two tiers are never measured at once.
 *
 * Parent -> child: one `ChildRequest`; child -> parent: progress messages, then one result or error.
 */
import { fork } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { enableRelaxedSimd } from '../kernels/wasm/relaxed-flag.js';
import { type TierEntry, openTier } from '../tiers/config.js';
import { type MeasurePlan, type MeasureProgress, type MeasuredParts, measureParts } from './measure.js';
import { type BenchSettings, type TierMeasurement, describeTier } from './types.js';

interface ChildRequest {
  entry: TierEntry;
  plan: MeasurePlan;
  settings: BenchSettings;
}

/** What the child reports. */
export interface ChildResult {
  about: ReturnType<typeof describeTier>;
  loadMs: number;
  parts: MeasuredParts;
  peakRssBytes: number;
  baseRssBytes: number;
}

type ChildMessage =
  | { type: 'progress'; what: string; done: number; total: number }
  | { type: 'result'; result: ChildResult }
  | { type: 'error'; message: string; name: string };

/** A tier that could not be opened or measured; the message is one line naming the tier. */
export class TierMeasureError extends Error {
  override name = 'TierMeasureError';
}

/** Opens and measures a tier in this process (the child's work; also usable in-process, without memory isolation). */
export async function measureHere(req: ChildRequest, onProgress?: MeasureProgress): Promise<ChildResult> {
  const baseRssBytes = process.memoryUsage().rss;
  const t0 = performance.now();
  const model = await openTier(req.entry);
  try {
    const loadMs = performance.now() - t0;
    const parts = await measureParts(model, req.plan, req.settings, onProgress);
    const about = describeTier(req.entry, model.info());
    // A provider that does not report its file's size (a llama2.c checkpoint, llama.cpp): the file's own size.
    if (about.fileBytes === null && req.entry.provider !== 'openai') about.fileBytes = fileSize(req.entry.model);
    return { about, loadMs, parts, peakRssBytes: process.resourceUsage().maxRSS * 1024, baseRssBytes };
  } finally {
    await model.close();
  }
}

function fileSize(path: string): number | null {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** Measures a tier in a child process of its own; progress comes back as it goes. */
export function measureInChild(entry: TierEntry, plan: MeasurePlan, settings: BenchSettings, onProgress?: MeasureProgress): Promise<ChildResult> {
  const script = fileURLToPath(import.meta.url);
  const child = fork(script, ['--stlm-measure-child'], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  return new Promise<ChildResult>((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void) => {
      if (!settled) {
        settled = true;
        f();
      }
    };
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'progress') onProgress?.(m.what, m.done, m.total);
      else if (m.type === 'result') settle(() => resolve(m.result));
      else settle(() => reject(new TierMeasureError(`tier ${entry.name}: ${m.message}`)));
    });
    child.on('error', (e) => settle(() => reject(new TierMeasureError(`tier ${entry.name}: the measuring process failed: ${e.message}`))));
    child.on('exit', (code, signal) => {
      const last = stderr.trim().split('\n').at(-1) ?? '';
      settle(() => reject(new TierMeasureError(`tier ${entry.name}: the measuring process ended (${signal ?? `exit code ${code}`}) before reporting${last ? `: ${last}` : ''}`)));
    });
    child.send({ entry, plan, settings } satisfies ChildRequest);
  }).finally(() => {
    if (child.exitCode === null) child.kill();
  });
}

// The child: measure what the parent asks, report, exit (llama.cpp may hold handles that keep Node alive).
if (process.argv.includes('--stlm-measure-child') && process.send) {
  process.once('disconnect', () => process.exit(1)); // the parent is gone: nobody wants the result
  process.once('message', (req: ChildRequest) => {
    const send = (m: ChildMessage) => new Promise<void>((res) => process.send!(m, undefined, undefined, () => res()));
    let last = 0;
    void enableRelaxedSimd()
      .then(() => measureHere(req, (what, done, total) => {
        const now = performance.now();
        if (now - last > 200 || done === total) {
          last = now;
          void send({ type: 'progress', what, done, total });
        }
      }))
      .then((result) => send({ type: 'result', result }), (e: Error) => send({ type: 'error', message: String(e?.message ?? e).split('\n')[0], name: e?.name ?? 'Error' }))
      .finally(() => process.exit(0));
  });
}
