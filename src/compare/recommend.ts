/**
 * `stlm recommend`: the tier that fits a user's limits (memory on this machine, latency, accuracy on
 * their task, offline), chosen from measurements (bench.ts), with the reason; when none fits, which
 * limit each tier breaks and by how much, and which tier comes nearest.
 *
 * The figures compared: memory = the tier's peak resident memory here (0 for a remote tier: nothing is
 * loaded on this machine); latency = its measured time to first token; accuracy = its mean accuracy on
 * the task (each file of a task folder once). Among the tiers that fit, the cheapest per million
 * generated tokens is chosen (a local tier's electricity estimate, a remote tier's price), then the
 * smaller, then the more accurate; `prefer: 'accuracy'` puts the most accurate first instead.
 */
import type { BenchResults } from './types.js';

export interface RecommendConstraints {
  /** Most memory the tier may take here, in bytes. */
  memoryBytes?: number;
  /** Longest time to first token, in milliseconds. */
  latencyMs?: number;
  /** Lowest accuracy on the task, in [0, 1]. */
  minAccuracy?: number;
  /** Only tiers that run without a network. */
  offline?: boolean;
}

/** One tier's figures as recommend compares them (null: not measured). */
export interface Candidate {
  name: string;
  offline: boolean;
  memoryBytes: number | null;
  latencyMs: number | null;
  accuracy: number | null;
  costPerMillionUsd: number | null;
}

export type ConstraintName = 'memory' | 'latency' | 'accuracy' | 'offline';

export interface ConstraintCheck {
  constraint: ConstraintName;
  ok: boolean;
  value: number | null;
  limit: number | null;
  /** How far past the limit (memory and latency: over by; accuracy: short by), in the constraint's unit; null when met or unmeasured. */
  margin: number | null;
  /** One phrase: "memory 61.2 MB ≤ 256 MB", "latency 120 ms > 50 ms: over by 70 ms (140%)". */
  text: string;
}

export interface TierVerdict {
  tier: string;
  fits: boolean;
  checks: ConstraintCheck[];
}

export interface Recommendation {
  /** The chosen tier, or null when none fits. */
  choice: string | null;
  /** One line: why this tier, or why none. */
  reason: string;
  /** The tiers that fit, best first. */
  fitting: string[];
  verdicts: TierVerdict[];
  /** When none fits: the tier that comes nearest (fewest limits broken, then the smallest shortfall) and what it breaks. */
  nearest?: { tier: string; failing: ConstraintCheck[] };
}

/** Bytes as people read them: "61.2 MB" (decimal units, as --memory takes them). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0, v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** A size such as "256MB", "1.5 GB", "300MiB", "4096" (bytes); k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKMGT]i?)?[bB]?\s*$/.exec(text);
  if (!m) throw new Error(`a size must be a number of bytes with an optional unit (e.g. 256MB, 1.5GB, 300MiB), got '${text}'`);
  const unit = m[2] ?? '';
  const power = unit ? 'kMGT'.indexOf(unit[0].replace('K', 'k')) + 1 : 0;
  const base = unit.endsWith('i') ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** power);
}

const ms = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
const pct = (over: number, limit: number) => (limit > 0 ? ` (${Math.round((over / limit) * 100)}%)` : '');

/** Checks one candidate against the constraints that are set. */
export function checkCandidate(c: Candidate, k: RecommendConstraints, task = 'the task'): TierVerdict {
  const checks: ConstraintCheck[] = [];
  if (k.offline) {
    checks.push({ constraint: 'offline', ok: c.offline, value: null, limit: null, margin: null, text: c.offline ? 'runs offline' : 'needs the network (--offline)' });
  }
  if (k.memoryBytes !== undefined) {
    const v = c.memoryBytes, lim = k.memoryBytes;
    checks.push(v === null ? { constraint: 'memory', ok: false, value: null, limit: lim, margin: null, text: 'memory not measured' }
      : v <= lim ? { constraint: 'memory', ok: true, value: v, limit: lim, margin: null, text: `memory ${formatBytes(v)} ≤ ${formatBytes(lim)}` }
      : { constraint: 'memory', ok: false, value: v, limit: lim, margin: v - lim, text: `memory ${formatBytes(v)} > ${formatBytes(lim)}: over by ${formatBytes(v - lim)}${pct(v - lim, lim)}` });
  }
  if (k.latencyMs !== undefined) {
    const v = c.latencyMs, lim = k.latencyMs;
    checks.push(v === null ? { constraint: 'latency', ok: false, value: null, limit: lim, margin: null, text: 'latency not measured' }
      : v <= lim ? { constraint: 'latency', ok: true, value: v, limit: lim, margin: null, text: `time to first token ${ms(v)} ≤ ${ms(lim)}` }
      : { constraint: 'latency', ok: false, value: v, limit: lim, margin: v - lim, text: `time to first token ${ms(v)} > ${ms(lim)}: over by ${ms(v - lim)}${pct(v - lim, lim)}` });
  }
  if (k.minAccuracy !== undefined) {
    const v = c.accuracy, lim = k.minAccuracy;
    checks.push(v === null ? { constraint: 'accuracy', ok: false, value: null, limit: lim, margin: null, text: `accuracy on ${task} not measured (the tier cannot score)` }
      : v >= lim ? { constraint: 'accuracy', ok: true, value: v, limit: lim, margin: null, text: `accuracy ${v.toFixed(3)} ≥ ${lim} on ${task}` }
      : { constraint: 'accuracy', ok: false, value: v, limit: lim, margin: lim - v, text: `accuracy ${v.toFixed(3)} < ${lim} on ${task}: short by ${(lim - v).toFixed(3)}` });
  }
  return { tier: c.name, fits: checks.every((x) => x.ok), checks };
}

/** How far a verdict misses: limits broken, then the sum of shortfalls relative to their limits (an unmeasured figure or the network counts as 1). */
function missBy(v: TierVerdict): [number, number] {
  const failing = v.checks.filter((x) => !x.ok);
  const relative = failing.reduce((a, x) => a + (x.margin === null || !x.limit ? 1 : x.margin / x.limit), 0);
  return [failing.length, relative];
}

/** The recommendation for these candidates and constraints (see the file comment). */
export function recommend(candidates: readonly Candidate[], k: RecommendConstraints, o: { prefer?: 'cost' | 'accuracy'; task?: string } = {}): Recommendation {
  if (!candidates.length) throw new Error('recommend: no tiers to choose from');
  const verdicts = candidates.map((c) => checkCandidate(c, k, o.task));
  const byName = new Map(candidates.map((c) => [c.name, c]));
  const inf = (x: number | null, worst = Infinity) => x ?? worst;
  const better = (a: Candidate, b: Candidate) => {
    const cost = inf(a.costPerMillionUsd) - inf(b.costPerMillionUsd);
    const mem = inf(a.memoryBytes) - inf(b.memoryBytes);
    const acc = inf(b.accuracy, -1) - inf(a.accuracy, -1);
    return o.prefer === 'accuracy' ? acc || cost || mem : cost || mem || acc;
  };
  const fitting = verdicts.filter((v) => v.fits).map((v) => byName.get(v.tier)!).sort(better).map((c) => c.name);
  const limits = [
    k.memoryBytes !== undefined ? `memory ≤ ${formatBytes(k.memoryBytes)}` : '', k.latencyMs !== undefined ? `time to first token ≤ ${ms(k.latencyMs)}` : '',
    k.minAccuracy !== undefined ? `accuracy ≥ ${k.minAccuracy}${o.task ? ` on ${o.task}` : ''}` : '', k.offline ? 'offline' : '',
  ].filter(Boolean).join(', ') || 'no limits';
  if (fitting.length) {
    const choice = fitting[0], c = byName.get(choice)!, v = verdicts.find((x) => x.tier === choice)!;
    const why = o.prefer === 'accuracy' ? 'the most accurate' : 'the cheapest per million tokens';
    const detail = [...v.checks.map((x) => x.text), c.costPerMillionUsd !== null ? `$${c.costPerMillionUsd.toPrecision(2)} per million tokens` : ''].filter(Boolean).join(', ');
    const others = fitting.length > 1 ? `; also fitting: ${fitting.slice(1).join(', ')}` : '';
    return { choice, reason: `${choice}: ${why} of ${fitting.length} tier${fitting.length === 1 ? '' : 's'} that fit ${limits} (${detail})${others}`, fitting, verdicts };
  }
  const nearest = [...verdicts].sort((a, b) => {
    const [fa, ra] = missBy(a), [fb, rb] = missBy(b);
    return fa - fb || ra - rb;
  })[0];
  const failing = nearest.checks.filter((x) => !x.ok);
  return {
    choice: null, fitting: [], verdicts, nearest: { tier: nearest.tier, failing },
    reason: `no tier fits ${limits}; nearest: ${nearest.tier}, which fails ${failing.map((x) => x.text).join('; ')}`,
  };
}

/** The candidates of bench results, with accuracy on `task` (a --tasks path the results hold; null where a tier has none). */
export function candidatesFrom(results: BenchResults, task?: string): Candidate[] {
  return results.tiers.map((t) => ({
    name: t.name,
    offline: t.provider !== 'openai',
    memoryBytes: t.provider === 'openai' ? 0 : t.memory?.peakRssBytes ?? null,
    latencyMs: t.speed?.timeToFirstTokenMs ?? null,
    accuracy: task === undefined ? t.quality : t.tasks.find((x) => x.path === task)?.acc ?? null,
    costPerMillionUsd: t.cost?.completionPerMillionUsd ?? null,
  }));
}
