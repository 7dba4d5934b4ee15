/**
 * Measured figures for the router: what `stlm bench` measured of each tier (compare/), read instead of
 * the numbers a tiers file declares. The tiers layer owns this small shape and reads it; the bench writes
 * it in its JSON, one `route` object per tier:
 *
 *   { "tiers": [ { "name": "tiny", "route": { "latencyMs": 3.1, "memoryBytes": 61000000, "quality": 0.58 } }, … ] }
 *
 * latencyMs is the measured time to first token, memoryBytes the peak resident memory of a process running
 * the tier (0 for a remote one: nothing is loaded here), quality the mean accuracy on the bench's tasks.
 */
import { readFile } from 'node:fs/promises';

/** What the router compares against a request's constraints, as measured. */
export interface MeasuredFigures {
  latencyMs?: number;
  memoryBytes?: number;
  quality?: number;
}

/** A measurements file that cannot be used; one line naming the file, the field and the value. */
export class MeasuredFiguresError extends Error {
  override name = 'MeasuredFiguresError';
}

/** The figures in a bench JSON's text, by tier name. */
export function parseMeasuredFigures(text: string, file: string): Map<string, MeasuredFigures> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new MeasuredFiguresError(`${file}: not JSON (${(e as Error).message.split('\n')[0]}); expected the JSON that stlm bench writes`);
  }
  const tiers = (data as { tiers?: unknown })?.tiers;
  if (!Array.isArray(tiers)) throw new MeasuredFiguresError(`${file}: tiers is missing or not a list; expected the JSON that stlm bench writes ({"tiers": [{"name": …, "route": {…}}]})`);
  const out = new Map<string, MeasuredFigures>();
  tiers.forEach((t: unknown, i) => {
    const at = `${file}: tiers[${i}]`;
    const rec = t as { name?: unknown; route?: unknown };
    if (typeof rec?.name !== 'string' || rec.name === '') throw new MeasuredFiguresError(`${at}.name must be a tier name, got ${JSON.stringify(rec?.name)}`);
    if (rec.route === undefined) return; // a tier measured without route figures (nothing the router can use)
    if (typeof rec.route !== 'object' || rec.route === null) throw new MeasuredFiguresError(`${at}.route must be an object, got ${JSON.stringify(rec.route)}`);
    const route = rec.route as Record<string, unknown>;
    const figures: MeasuredFigures = {};
    for (const k of ['latencyMs', 'memoryBytes', 'quality'] as const) {
      const v = route[k];
      if (v === undefined || v === null) continue;
      const ok = typeof v === 'number' && Number.isFinite(v) && v >= 0 && (k !== 'quality' || v <= 1);
      if (!ok) throw new MeasuredFiguresError(`${at}.route.${k} must be a number ≥ 0${k === 'quality' ? ' and ≤ 1' : ''}, got ${JSON.stringify(v)}`);
      figures[k] = v as number;
    }
    out.set(rec.name, figures);
  });
  return out;
}

/** Reads the figures of a bench JSON file. */
export async function readMeasuredFigures(file: string): Promise<Map<string, MeasuredFigures>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MeasuredFiguresError(`${file}: ${(e as { code?: string }).code === 'ENOENT' ? 'no such file' : (e as Error).message.split('\n')[0]} (the measurements file)`);
  }
  return parseMeasuredFigures(text, file);
}
