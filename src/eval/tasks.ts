/**
 * Zero-shot evaluation on task files (task-files.ts), scored as EleutherAI lm-evaluation-harness scores
 * them, through one request any tier answers (`score(context, continuations)`: the tiers' LanguageModel
 * satisfies ContinuationScorer without this layer importing it):
 * - acc: the choice with the highest summed log-likelihood is the gold one (first on ties, as argmax);
 * - acc_norm: the same with each log-likelihood divided by its choice's length in UTF-8 bytes (the
 *   choice's own text, without the space before it, as lm-evaluation-harness counts characters);
 * - schema: the context option under which the shared continuation is most likely;
 * - language modelling: right when greedy decoding gives the target (LAMBADA's acc).
 * Choices that share a context go in one request. Items are scored one after another, so results depend
 * on the model's numbers only (never on timing or thread count).
 */
import { Rng } from '../util/rng.js';
import { type TaskFile, type TaskFormat, type TaskItem, continuationAfter, readTasks } from './task-files.js';

/** What evaluation asks of a model: every tier's LanguageModel has it. */
export interface ContinuationScorer {
  score(context: string, continuations: string[], o?: { signal?: AbortSignal }): Promise<{ logprob: number; greedy: boolean; tokens: number }[]>;
}

export interface TaskResult {
  /** e.g. 'blimp/adjunct_island', 'arc_easy', 'hellaswag', 'lambada_openai_small'. */
  task: string;
  /** The file it came from. */
  file: string;
  format: TaskFormat;
  /** Items scored. */
  n: number;
  /** Fractions in [0, 1]; stderr: the sample standard error of the mean (0 for fewer than 2 items). */
  acc: number;
  accStderr: number;
  /** Where the format has acc_norm (multiple choice, HellaSwag). */
  accNorm?: number;
  accNormStderr?: number;
  seconds: number;
}

export interface EvaluateOptions {
  /** At most this many items per task file: the first ones, or with `seed` a seeded sample (in file order). */
  limit?: number;
  seed?: number;
  /** Items done of all items of all files. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Each item's scores as they come (per-item output, cross-checks). */
  onItem?: (task: TaskFile, item: TaskItem, scored: ItemScore) => void;
}

/** One item's outcome and the numbers it came from. */
export interface ItemScore {
  correct: boolean;
  /** acc_norm's outcome (choices after one context). */
  correctNorm?: boolean;
  /** Per choice (schema: per context option; language modelling: the one target). */
  scores: { logprob: number; greedy: boolean; tokens: number }[];
}

/** Runs every task file at `path` (a file or a folder): one result per file, in file order. */
export async function evaluateTasks(model: ContinuationScorer, path: string, o: EvaluateOptions = {}): Promise<TaskResult[]> {
  return evaluateTaskFiles(model, readTasks(path), o);
}

/** The same, for task files already read (all are read, and checked, before any is scored). */
export async function evaluateTaskFiles(model: ContinuationScorer, files: TaskFile[], o: EvaluateOptions = {}): Promise<TaskResult[]> {
  const chosen = files.map((f) => selectItems(f.items.length, o.limit, o.seed).map((i) => f.items[i]));
  const total = chosen.reduce((a, c) => a + c.length, 0);
  let done = 0;
  o.onProgress?.(0, total);
  const results: TaskResult[] = [];
  for (const [k, f] of files.entries()) {
    const t0 = performance.now();
    const right: number[] = [], rightNorm: number[] = [];
    for (const item of chosen[k]) {
      o.signal?.throwIfAborted();
      const s = await scoreItem(model, item, o.signal);
      right.push(s.correct ? 1 : 0);
      if (s.correctNorm !== undefined) rightNorm.push(s.correctNorm ? 1 : 0);
      o.onItem?.(f, item, s);
      o.onProgress?.(++done, total);
    }
    const acc = meanStderr(right);
    // acc_norm where lm-evaluation-harness reports it (BLiMP's pairs are whole sentences: acc only).
    const norm = rightNorm.length && HAS_ACC_NORM.has(f.format) ? meanStderr(rightNorm) : undefined;
    results.push({
      task: f.task, file: f.file, format: f.format, n: right.length, acc: acc.mean, accStderr: acc.stderr,
      ...(norm ? { accNorm: norm.mean, accNormStderr: norm.stderr } : {}), seconds: (performance.now() - t0) / 1000,
    });
  }
  return results;
}

const HAS_ACC_NORM: ReadonlySet<TaskFormat> = new Set(['multiple_choice', 'hellaswag']);

/** One item scored: all choices of one context in one request. */
export async function scoreItem(model: ContinuationScorer, item: TaskItem, signal?: AbortSignal): Promise<ItemScore> {
  if (item.kind === 'greedy') {
    const scores = await model.score(item.context, [continuationAfter(item.context, item.continuation)], { signal });
    return { correct: scores[0].greedy, scores };
  }
  if (item.kind === 'schema') {
    const scores = [];
    for (const c of item.contexts) scores.push((await model.score(c, [continuationAfter(c, item.continuation)], { signal }))[0]);
    return { correct: argmax(scores.map((s) => s.logprob)) === item.gold, scores };
  }
  const scores = await model.score(item.context, item.choices.map((c) => continuationAfter(item.context, c)), { signal });
  const enc = new TextEncoder();
  const perByte = scores.map((s, j) => s.logprob / enc.encode(item.choices[j]).length);
  return { correct: argmax(scores.map((s) => s.logprob)) === item.gold, correctNorm: argmax(perByte) === item.gold, scores };
}

/** Index of the largest value, the first on ties (numpy's argmax). */
export function argmax(v: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** The mean and its sample standard error (sample standard deviation / √n, as lm-evaluation-harness reports). */
export function meanStderr(x: readonly number[]): { mean: number; stderr: number } {
  const n = x.length;
  if (n === 0) return { mean: NaN, stderr: NaN };
  const mean = x.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: 0 };
  const ss = x.reduce((a, b) => a + (b - mean) ** 2, 0);
  return { mean, stderr: Math.sqrt(ss / (n - 1) / n) };
}

/**
 * Which of `n` items to score under `limit`: the first `limit`, or with `seed` a seeded sample of that
 * many (a partial Fisher–Yates shuffle), returned in file order. The same seed picks the same items.
 */
export function selectItems(n: number, limit?: number, seed?: number): number[] {
  const all = [...Array(n).keys()];
  if (limit === undefined || limit >= n) return all;
  if (seed === undefined) return all.slice(0, limit);
  const rng = new Rng(seed);
  for (let i = 0; i < limit; i++) {
    const j = i + Math.floor(rng.next() * (n - i));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, limit).sort((a, b) => a - b);
}

/** Results as a markdown table (percentages with their standard errors). */
export function resultsTable(results: readonly TaskResult[]): string {
  const pct = (x?: number, se?: number) => (x === undefined ? '' : `${(x * 100).toFixed(2)} ± ${((se ?? 0) * 100).toFixed(2)}`);
  return [
    '| task | format | n | acc (%) | acc_norm (%) | seconds |',
    '|---|---|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.task} | ${r.format} | ${r.n} | ${pct(r.acc, r.accStderr)} | ${pct(r.accNorm, r.accNormStderr)} | ${r.seconds.toFixed(1)} |`),
  ].join('\n');
}
