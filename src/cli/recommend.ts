/**
 * `stlm recommend --tiers <config> --task <file> --memory 256MB --latency-ms 50 --min-accuracy 0.6 [--offline]`:
 * the tier that fits, from measurements (compare/recommend.ts): an earlier bench's JSON (--from), with
 * whatever it lacks (a tier, the task) measured now. Prints the choice and why, or, when nothing fits,
 * which limit each tier breaks and by how much (exit code 1). Bad input: one line, exit code 2.
 */
import { readTasks } from '../eval/task-files.js';
import { type Recommendation, candidatesFrom, recommend } from '../compare/recommend.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { benchWithProgress, loadConfigOrExit, readBenchFile, settingsFrom } from './bench.js';
import { UsageError } from './route.js';

export interface RecommendCliOptions {
  tiers: string;
  task: string;
  memory?: number;
  latencyMs?: number;
  minAccuracy?: number;
  offline: boolean;
  prefer: 'cost' | 'accuracy';
  from?: string;
  save?: string;
  limit?: number;
  seed?: number;
  maxTokens: number;
  repeats: number;
  wattsPerCore: number;
  usdPerKwh: number;
  json: boolean;
}

function describe(r: Recommendation): string {
  const width = Math.max(...r.verdicts.map((v) => v.tier.length)) + 1;
  return [
    r.choice ? `recommended: ${r.choice}` : 'recommended: none',
    `why: ${r.reason}`,
    ...r.verdicts.map((v) => `  ${v.tier.padEnd(width)} ${v.fits ? 'fits ' : 'fails'}  ${v.checks.map((c) => `${c.ok ? '' : '✗ '}${c.text}`).join('; ') || 'no limits given'}`),
  ].join('\n') + '\n';
}

export async function runRecommend(o: RecommendCliOptions, command: string): Promise<void> {
  const config = await loadConfigOrExit(o.tiers);
  try {
    readTasks(o.task);
  } catch (e) {
    throw new UsageError(`--task: ${(e as Error).message}`);
  }
  const from = o.from ? await readBenchFile(o.from) : undefined;
  // Offline, the remote tiers cannot be chosen: they are neither measured nor required to be up.
  const only = config.tiers.filter((t) => !o.offline || t.provider !== 'openai').map((t) => t.name);
  if (!only.length) throw new UsageError(`${o.tiers}: every tier needs the network, and --offline leaves none`);
  const settings = { ...(from?.settings ?? settingsFrom({ ...o, textBytes: 0 })), texts: [], tasks: [o.task], limit: o.limit ?? from?.settings.limit, seed: o.seed ?? from?.settings.seed, wattsPerCore: o.wattsPerCore, usdPerKwh: o.usdPerKwh };
  const results = await benchWithProgress(config, { settings, only, from, command });
  if (o.save) await writeFileAtomic(o.save, JSON.stringify(results, null, 2) + '\n');
  const rec = recommend(candidatesFrom(results, o.task), {
    ...(o.memory !== undefined ? { memoryBytes: o.memory } : {}), ...(o.latencyMs !== undefined ? { latencyMs: o.latencyMs } : {}),
    ...(o.minAccuracy !== undefined ? { minAccuracy: o.minAccuracy } : {}), offline: o.offline,
  }, { prefer: o.prefer, task: o.task });
  process.stdout.write(o.json ? JSON.stringify(rec) + '\n' : describe(rec));
  if (!rec.choice) process.exitCode = 1;
}
