/**
 * `stlm route-learn --tiers <config> --items <tasks> --out <file>`: fits the cascade's learned escalation
 * model (tiers/escalation.ts) for one tier and the tier after it. Both tiers score every item with a
 * known answer (task files as `stlm eval tasks` reads them); the model is fit on all of them and written
 * atomically; a cross-fit estimate (each item predicted by a model fit without it) says what the cascade
 * then does at the default threshold, beside the margin cascade and a random router escalating as often.
 */
import { loadTiersConfig, openTier, TiersConfigError } from '../tiers/config.js';
import { EscalationModel, crossFitPredictions, type EscalationExample } from '../tiers/escalation.js';
import type { LanguageModel } from '../tiers/types.js';
import { continuationAfter, readTasks, TaskFileError } from '../eval/task-files.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { Progress, formatDuration } from './progress.js';
import { UsageError } from './route.js';

export interface RouteLearnCliOptions {
  tiers: string;
  items: string;
  out: string;
  weak?: string;
  strong?: string;
  limit?: number;
  normalize: 'none' | 'bytes';
  folds: number;
  json: boolean;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

export async function runRouteLearn(o: RouteLearnCliOptions): Promise<void> {
  let config, files;
  try {
    config = await loadTiersConfig(o.tiers);
    files = readTasks(o.items);
  } catch (e) {
    if (e instanceof TaskFileError || e instanceof TiersConfigError) throw new UsageError((e as Error).message);
    throw e;
  }
  const names = config.router?.order ?? config.tiers.map((t) => t.name);
  const weakName = o.weak ?? names[0];
  const strongName = o.strong ?? names[names.indexOf(weakName) + 1];
  const entry = (name: string | undefined, flag: string) => {
    const t = config.tiers.find((x) => x.name === name);
    if (!t) throw new UsageError(`${flag}: ${name === undefined ? 'no tier follows the weak one; name one' : `'${name}' is not a tier`} (tiers in ${o.tiers}: ${config.tiers.map((x) => x.name).join(', ')})`);
    return t;
  };
  const [weakEntry, strongEntry] = [entry(weakName, '--weak'), entry(strongName, '--strong')];
  if (weakEntry === strongEntry) throw new UsageError(`--weak and --strong are both '${weakName}'`);
  const items = files.flatMap((f) => f.items.slice(0, o.limit).map((it) => {
    if (it.kind !== 'choice') throw new UsageError(`${f.file}:${it.line}: not a multiple-choice item (learning needs items with choices and a known answer)`);
    return { context: it.context, choices: it.choices.map((c) => continuationAfter(it.context, c)), gold: it.gold };
  }));
  if (items.length < 2 * o.folds) throw new UsageError(`${o.items}: ${items.length} items; --folds ${o.folds} needs at least ${2 * o.folds}`);

  const progress = new Progress({ barFormat: 'score {value}/{total} |{bar}| {tier}', interruptMessage: 'Stopping (nothing is written; Ctrl-C again to quit now)' });
  const models: LanguageModel[] = [];
  const t0 = performance.now();
  const bytes = (s: string) => Math.max(1, new TextEncoder().encode(s).length);
  const scored: { values: number[] }[][] = [];
  try {
    for (const e of [weakEntry, strongEntry]) {
      const model = await openTier(e);
      models.push(model);
      const out: { values: number[] }[] = [];
      for (const [i, it] of items.entries()) {
        if (progress.stopRequested) throw new UsageError('stopped; nothing written');
        const s = await model.score(it.context, it.choices);
        out.push({ values: s.map((c, j) => (o.normalize === 'bytes' ? c.logprob / bytes(it.choices[j]) : c.logprob)) });
        const done = scored.length * items.length + i + 1, total = 2 * items.length;
        progress.update({ value: done, total, payload: { tier: e.name }, line: () => `route learn: ${done}/${total} scored (${e.name}, ${formatDuration((performance.now() - t0) / 1000)})`, force: done === total });
      }
      scored.push(out);
    }
  } finally {
    progress.close();
    await Promise.all(models.map((m) => m.close()));
  }
  const argmax = (v: number[]) => v.reduce((b, x, j) => (x > v[b] ? j : b), 0);
  const examples: EscalationExample[] = items.map((it, i) => ({
    context: it.context, choices: it.choices, values: scored[0][i].values,
    weakRight: argmax(scored[0][i].values) === it.gold, strongRight: argmax(scored[1][i].values) === it.gold,
  }));
  const model = EscalationModel.learn(examples, { weakTier: weakEntry.name, strongTier: strongEntry.name, source: o.items });
  // What the cascade does at threshold 0 on items its model did not see, against the margin cascade
  // and a random router that escalate as many items.
  const held = crossFitPredictions(examples, { folds: o.folds });
  const n = examples.length, escalate = held.map((p) => p.gain > 0), k = escalate.filter(Boolean).length;
  const right = (pick: (i: number) => boolean) => examples.filter((e, i) => (pick(i) ? e.strongRight : e.weakRight)).length / n;
  const margins = examples.map((e) => { const v = [...e.values].sort((a, b) => b - a); return v[0] - v[1]; });
  const lowest = new Set([...Array(n).keys()].sort((a, b) => margins[a] - margins[b]).slice(0, k));
  const { accWeak, accStrong } = model.fit;
  const summary = {
    weak: weakEntry.name, strong: strongEntry.name, items: n, accWeak, accStrong, folds: o.folds,
    escalated: k / n, learned: right((i) => escalate[i]), margin: right((i) => lowest.has(i)), random: (1 - k / n) * accWeak + (k / n) * accStrong,
  };
  await writeFileAtomic(o.out, JSON.stringify(model.toJSON()) + '\n');
  if (o.json) {
    process.stdout.write(JSON.stringify({ out: o.out, ...summary }) + '\n');
    return;
  }
  process.stdout.write([
    `${n} items from ${o.items}: ${weakEntry.name} ${pct(accWeak)} right, ${strongEntry.name} ${pct(accStrong)} (scored in ${formatDuration((performance.now() - t0) / 1000)})`,
    `cross-fit (${o.folds} folds), threshold 0: escalates ${pct(summary.escalated)} of items; accuracy ${pct(summary.learned)} ` +
      `(margin cascade at that share ${pct(summary.margin)}, random router ${pct(summary.random)})`,
    `wrote ${o.out} (fit on all ${n} items); to use it, give tier '${weakEntry.name}' in ${o.tiers} the line  escalation: <path to it>`,
    `  (router policy: cascade; router.gainThreshold, 0 by default, over 0 escalates fewer items)`,
  ].join('\n') + '\n');
}
