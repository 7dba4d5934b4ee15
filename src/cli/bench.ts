/**
 * `stlm bench --tiers <config>`: measures every tier of a tiers config on the same work (compare/bench.ts)
 * and prints a markdown table (or JSON); `--out` saves the JSON, `--report <dir>` writes the HTML page, the
 * markdown and the charts (`--out` is also written after each tier, so an interrupted run resumes with
 * `--from` the same file); `--from` reuses an earlier run's figures and measures only what it lacks.
 * A bad config, a tier that is down, a missing task file or text: one line, exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { BenchInputError, parseBenchResults, runBench } from '../compare/bench.js';
import { TierMeasureError } from '../compare/child.js';
import { markdownReport, writeReport } from '../compare/report.js';
import { type BenchResults, type BenchSettings, DEFAULT_BENCH_SETTINGS } from '../compare/types.js';
import { loadTiersConfig, type TiersConfig } from '../tiers/config.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { Progress, formatDuration, log } from './progress.js';
import { UsageError } from './route.js';

export interface BenchCliOptions {
  tiers: string;
  only?: string[];
  tasks?: string[];
  text?: string[];
  textBytes: number;
  limit?: number;
  seed?: number;
  maxTokens: number;
  repeats: number;
  prompt?: string;
  wattsPerCore: number;
  usdPerKwh: number;
  from?: string;
  out?: string;
  report?: string;
  title?: string;
  json: boolean;
  inProcess: boolean;
}

/** The tiers config, or a UsageError (exit 2) naming what is wrong with it. */
export async function loadConfigOrExit(path: string): Promise<TiersConfig> {
  try {
    return await loadTiersConfig(path);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Earlier results (--from), or a UsageError. */
export async function readBenchFile(path: string): Promise<BenchResults> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`${path}: ${(e as { code?: string }).code === 'ENOENT' ? 'no such file' : (e as Error).message.split('\n')[0]} (--from: the JSON an earlier stlm bench wrote with --out)`);
  }
  try {
    return parseBenchResults(text, path);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Runs the bench with a progress display; a bad input or an unreachable tier becomes a UsageError (exit 2). */
export async function benchWithProgress(config: TiersConfig, o: Parameters<typeof runBench>[1]): Promise<BenchResults> {
  const progress = new Progress({ barFormat: 'bench {tier} {what} {value}/{total} |{bar}|', interruptMessage: 'Ctrl-C again to quit now', lineIntervalMs: 5000 });
  const t0 = performance.now();
  let current = '';
  try {
    return await runBench(config, {
      ...o,
      onProgress: (tier, what, done, total) => {
        const part = `${tier} ${what}`;
        const first = part !== current;
        current = part;
        progress.update({ value: done, total, payload: { tier, what }, force: first, line: () => `bench: ${tier}: ${what} ${done}/${total} (${formatDuration((performance.now() - t0) / 1000)})` });
      },
    });
  } catch (e) {
    if (e instanceof BenchInputError || e instanceof TierMeasureError) throw new UsageError(e.message);
    throw e;
  } finally {
    progress.stop();
    progress.close();
  }
}

export function settingsFrom(o: Pick<BenchCliOptions, 'tasks' | 'text' | 'textBytes' | 'limit' | 'seed' | 'maxTokens' | 'repeats' | 'prompt' | 'wattsPerCore' | 'usdPerKwh'>): BenchSettings {
  return {
    ...DEFAULT_BENCH_SETTINGS,
    ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
    maxTokens: o.maxTokens, repeats: o.repeats, texts: o.text ?? [], textBytes: o.textBytes, tasks: o.tasks ?? [],
    ...(o.limit !== undefined ? { limit: o.limit } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}),
    wattsPerCore: o.wattsPerCore, usdPerKwh: o.usdPerKwh,
  };
}

export async function runBenchCli(o: BenchCliOptions, command: string): Promise<void> {
  const config = await loadConfigOrExit(o.tiers);
  const from = o.from ? await readBenchFile(o.from) : undefined;
  const save = async (r: BenchResults) => {
    if (o.out) await writeFileAtomic(o.out, JSON.stringify(r, null, 2) + '\n');
  };
  // Saved after every tier too, so a run stopped part way resumes with --from <the same file>.
  const results = await benchWithProgress(config, { settings: settingsFrom(o), only: o.only, from, inProcess: o.inProcess, command, onTier: save });
  await save(results);
  if (o.report) {
    const files = await writeReport(results, o.report, { title: o.title });
    log(`bench: wrote ${files.join(', ')}`);
  }
  process.stdout.write(o.json ? JSON.stringify(results) + '\n' : markdownReport(results));
}
