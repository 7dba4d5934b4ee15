/**
 * `stlm bench --tiers <config>`: every tier of a tiers config measured on the same work, one after
 * another, each local or llama.cpp tier in a child process of its own (child.ts). Before anything is
 * measured, every input is checked (model files exist, endpoints answer, task files and texts read), so a
 * bad one fails in one line at once rather than after minutes of measuring. Earlier results (--from) are
 * reused: a tier already measured with the same model and speed settings keeps its figures, and only
 * the texts and tasks it lacks are measured.
 */
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { readTasks } from '../eval/task-files.js';
import type { TierEntry, TiersConfig } from '../tiers/config.js';
import { type ChildResult, measureHere, measureInChild } from './child.js';
import { type MeasurePlan, energyFrom, heldOutText, usdPerMillion } from './measure.js';
import type { BenchResults, BenchSettings, TaskFigures, TierMeasurement } from './types.js';

export interface BenchOptions {
  settings: BenchSettings;
  /** Measure only these tiers (names); default all. */
  only?: string[];
  /** Earlier results whose figures are reused where they fit. */
  from?: BenchResults;
  /** Measure in this process instead of a child per tier (memory is then not the tier's own). */
  inProcess?: boolean;
  /** The command line, recorded in the results. */
  command?: string;
  onProgress?: (tier: string, what: string, done: number, total: number) => void;
  /** Called after each tier with the results so far (the CLI saves them, so an interrupted run resumes with --from). */
  onTier?: (sofar: BenchResults) => void | Promise<void>;
}

/** An input that is wrong before anything runs (a missing model, a tier that is down, a bad task file): one line. */
export class BenchInputError extends Error {
  override name = 'BenchInputError';
}

/** Whether an endpoint answers at all (any HTTP status will do; a refused or timed-out connection will not). */
async function endpointAnswers(baseUrl: string, timeoutMs = 5000): Promise<string | undefined> {
  try {
    await fetch(`${baseUrl.replace(/\/+$/, '')}/models`, { signal: AbortSignal.timeout(timeoutMs) });
    return undefined;
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? (e as Error).message;
  }
}

/** Checks that every tier can be reached and every text and task file reads; throws a BenchInputError naming the first that cannot. */
export async function checkBenchInputs(tiers: TierEntry[], s: Pick<BenchSettings, 'texts' | 'tasks' | 'textBytes'>): Promise<void> {
  for (const t of tiers) {
    if (t.provider === 'openai') {
      const why = await endpointAnswers(t.baseUrl!);
      if (why) throw new BenchInputError(`tier ${t.name} is down: ${t.baseUrl} does not answer (${why})`);
    } else if (!existsSync(t.model)) {
      throw new BenchInputError(`tier ${t.name}: model file ${t.model} does not exist`);
    }
  }
  for (const path of s.tasks) {
    try {
      readTasks(path);
    } catch (e) {
      throw new BenchInputError(`tasks: ${(e as Error).message}`);
    }
  }
  for (const file of s.texts) {
    try {
      heldOutText(file, s.textBytes);
    } catch (e) {
      throw new BenchInputError(`text: ${(e as Error).message}`);
    }
  }
}

const sameTasks = (a: TaskFigures, path: string, s: BenchSettings) => a.path === path && a.limit === (s.limit ?? null) && a.seed === (s.seed ?? null);

/** What of `settings` is still missing from an earlier measurement of the same tier (all of it when there is none). */
export function missingPlan(old: TierMeasurement | undefined, s: BenchSettings, oldSettings?: BenchSettings): MeasurePlan {
  const speedSame = !!oldSettings && oldSettings.prompt === s.prompt && oldSettings.maxTokens === s.maxTokens && oldSettings.repeats === s.repeats;
  return {
    speed: !old?.speed || !speedSame,
    texts: s.texts.filter((t) => !(old?.bpb.some((b) => b.text === t) && oldSettings?.textBytes === s.textBytes)),
    tasks: s.tasks.filter((p) => !old?.tasks.some((t) => sameTasks(t, p, s))),
  };
}

/** The earlier measurement of this tier, if the same config entry (model, provider, context, threads, …) was measured. */
export function previousOf(entry: TierEntry, from?: BenchResults): TierMeasurement | undefined {
  return from?.tiers.find((t) => t.entry !== undefined && sameEntry(t.entry, entry));
}

/** Whether two config entries are the same, whatever the order of their fields. */
function sameEntry(a: TierEntry, b: TierEntry): boolean {
  const canon = (e: TierEntry) => JSON.stringify(Object.entries(e).filter(([, v]) => v !== undefined).sort(([x], [y]) => (x < y ? -1 : 1)));
  return canon(a) === canon(b);
}

/** A tier's measurement from what the child reported (and what an earlier run measured that was not redone). */
export function assemble(entry: TierEntry, r: ChildResult | undefined, old: TierMeasurement | undefined, plan: MeasurePlan, s: BenchSettings, ownProcess: boolean): TierMeasurement {
  const remote = entry.provider === 'openai';
  const about = r?.about ?? old!;
  const speed = plan.speed ? r!.parts.speed : old!.speed;
  const cpu = plan.speed ? r!.parts.cpu : old?.energy ? { perToken: old.energy.cpuSecondsPerToken, perPromptToken: old.energy.cpuSecondsPerPromptToken } : null;
  const energy = remote || !cpu ? null : energyFrom(cpu, s.wattsPerCore);
  const memory = remote ? null : r
    ? { peakRssBytes: Math.max(r.peakRssBytes, plan.speed ? 0 : old?.memory?.peakRssBytes ?? 0), baseRssBytes: r.baseRssBytes, ownProcess }
    : old!.memory;
  const price = entry.price ?? { prompt: 0, completion: 0 };
  const cost = remote ? { promptPerMillionUsd: price.prompt, completionPerMillionUsd: price.completion, source: 'price' as const }
    : energy?.joulesPerToken != null ? { promptPerMillionUsd: usdPerMillion(energy.joulesPerPromptToken ?? 0, s.usdPerKwh), completionPerMillionUsd: usdPerMillion(energy.joulesPerToken, s.usdPerKwh), source: 'energy estimate' as const }
    : null;
  // Keep only what this run asks for: the texts and tasks of these settings, new or reused.
  const bpb = s.texts.flatMap((t) => r?.parts.bpb.find((b) => b.text === t) ?? old?.bpb.find((b) => b.text === t) ?? []);
  const tasks = s.tasks.flatMap((p) => r?.parts.tasks.find((t) => sameTasks(t, p, s)) ?? old?.tasks.find((t) => sameTasks(t, p, s)) ?? []);
  // Quality only where every task was scored: a mean over fewer tasks would not compare with the others.
  const quality = tasks.length && tasks.length === s.tasks.length ? tasks.reduce((a, t) => a + t.acc, 0) / tasks.length : null;
  const redone = r ? [...plan.texts, ...plan.tasks, ...(plan.speed ? ['speed'] : [])] : [];
  const kept = (old?.notes ?? []).filter((n) => !redone.some((p) => n.includes(p)));
  const notes = [...new Set([...(r?.parts.notes ?? []), ...kept])];
  return {
    entry, name: entry.name, tier: entry.tier, provider: entry.provider, model: entry.model, runsOn: about.runsOn,
    parameters: about.parameters, fileBytes: about.fileBytes, quantization: about.quantization, contextLength: about.contextLength,
    loadMs: r && plan.speed ? r.loadMs : old?.loadMs ?? r!.loadMs,
    speed, memory, energy, cost, bpb, tasks, quality,
    route: {
      ...(speed ? { latencyMs: speed.timeToFirstTokenMs } : {}),
      memoryBytes: memory?.peakRssBytes ?? 0,
      ...(quality !== null ? { quality } : {}),
    },
    notes,
  };
}

/** Measures every tier (or `only` those) of a config; see the file comment. */
export async function runBench(config: TiersConfig, o: BenchOptions): Promise<BenchResults> {
  const s = o.settings;
  const unknown = (o.only ?? []).filter((n) => !config.tiers.some((t) => t.name === n));
  if (unknown.length) throw new BenchInputError(`${config.file} has no tier ${unknown.map((n) => `'${n}'`).join(', ')}; its tiers: ${config.tiers.map((t) => t.name).join(', ')}`);
  const entries = config.tiers.filter((t) => !o.only || o.only.includes(t.name));
  const plans = entries.map((e) => {
    const old = previousOf(e, o.from);
    return { entry: e, old, plan: missingPlan(old, s, o.from?.settings) };
  });
  const work = (p: MeasurePlan) => p.speed || p.texts.length > 0 || p.tasks.length > 0;
  await checkBenchInputs(plans.filter((p) => work(p.plan)).map((p) => p.entry), s);
  const tiers: TierMeasurement[] = [];
  for (const { entry, old, plan } of plans) {
    let r: ChildResult | undefined;
    if (work(plan)) {
      const progress = (what: string, done: number, total: number) => o.onProgress?.(entry.name, what, done, total);
      r = o.inProcess ? await measureHere({ entry, plan, settings: s }, progress) : await measureInChild(entry, plan, s, progress);
    }
    tiers.push(assemble(entry, r, old, plan, s, !o.inProcess));
    await o.onTier?.(results([...tiers]));
  }
  return results(tiers);

  function results(done: TierMeasurement[]): BenchResults {
    return {
      stlmBench: 1, date: new Date().toISOString(), command: o.command ?? '', tiersConfig: config.file,
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', totalMemoryBytes: totalmem(), node: process.version, loadAverage: loadavg() },
      settings: s, tiers: done,
    };
  }
}

/** Reads results written by an earlier `stlm bench` (the JSON), checking its format. */
export function parseBenchResults(text: string, file: string): BenchResults {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new BenchInputError(`${file}: not JSON (${(e as Error).message.split('\n')[0]}); expected what stlm bench --out writes`);
  }
  const d = data as Partial<BenchResults>;
  if (d?.stlmBench !== 1 || !Array.isArray(d.tiers) || typeof d.settings !== 'object') {
    throw new BenchInputError(`${file}: not stlm bench results (expected "stlmBench": 1, "settings" and "tiers", as stlm bench --out writes)`);
  }
  return d as BenchResults;
}
