/**
 * The router's cascade on multiple-choice items with known answers: the weak (cheap) tier answers
 * every item first; items whose margin (best choice's log-likelihood minus the second's) is under a
 * threshold go to the strong tier, or, with a learned escalation model (src/tiers/escalation.ts), items
 * whose predicted gain is over one (each item predicted by a model fit without it: 2-fold cross-fit, and
 * leave-one-task-out). Over all thresholds, accuracy against the share of items escalated,
 * beside a random router that escalates the same share of items at random (its expected accuracy is
 * (1 − s)·acc_weak + s·acc_strong), and RouteLLM's "calls to the strong model" needed to recover 50, 80
 * and 95% of the gap between the weak and the strong tier's accuracy.
 *
 * Each tier scores every item once (LanguageModel.score, as the router does); the curve is then exact
 * for every threshold, and one threshold is checked against the Router itself (Router.choose).
 *
 *   npm run bench -- cascade [--weak models/default.gguf] [--strong <model>] [--strong-tokenizer <tok.bin>]
 *     [--weak-name <label>] [--strong-name <label>] [--task blimp|arc] [--limit 200] [--json] [--svg docs/charts/cascade.svg]
 *
 * Defaults: the weak tier is the embedded model (0.9M parameters, tinyshakespeare), the strong one
 * stories260K (llama2.c's 260K-parameter TinyStories model, with tok512.bin), BLiMP's 12 paradigms in
 * ../shared/fixtures/eval/blimp-dev (the sentence's log-likelihood: good against bad).
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { continuationAfter, readTasks } from '../src/eval/task-files.js';
import { LocalModel } from '../src/tiers/local.js';
import { Router } from '../src/tiers/router.js';
import { crossFitPredictions, EscalationModel, type EscalationExample, type EscalationPrediction } from '../src/tiers/escalation.js';
import { linesSvg, writeSvg } from './lib/chart.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--limit', '--strong', '--strong-name', '--strong-tokenizer', '--svg', '--task', '--weak', '--weak-name'];

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = join(ROOT, '..', 'shared', 'fixtures');

interface Item {
  context: string;
  choices: string[];
  gold: number;
  /** The task file it came from (the held-out group of the leave-one-task-out fit). */
  task: string;
}

/** The items of the chosen task through `stlm eval`'s task reader (src/eval/task-files.ts): at most `limit` per file. */
function loadItems(task: string, limit: number): Item[] {
  const path = { blimp: join(FIXTURES, 'eval', 'blimp-dev'), arc: join(FIXTURES, 'eval', 'arc_easy.jsonl') }[task];
  if (!path) throw new Error(`cascade: --task must be blimp or arc, not '${task}'`);
  if (!existsSync(path)) throw new Error(`cascade: ${path} is absent (see ../shared/fixtures/README.md)`);
  return readTasks(path).flatMap((f) => f.items.slice(0, limit).map((it) => {
    if (it.kind !== 'choice') throw new Error(`cascade: ${f.file}:${it.line} is not a multiple-choice item`);
    // The continuations as scored (ARC's choices after a space); per-byte margins count that space, as before.
    return { context: it.context, choices: it.choices.map((c) => continuationAfter(it.context, c)), gold: it.gold, task: f.file };
  }));
}

/** Each item's best choice and margin on one tier (ARC: log-likelihood per byte, lm-evaluation-harness's acc_norm). */
async function scoreAll(model: LocalModel, items: Item[], perByte: boolean): Promise<{ pick: number; margin: number; values: number[] }[]> {
  const out: { pick: number; margin: number; values: number[] }[] = [];
  for (const it of items) {
    const s = await model.score(it.context, it.choices);
    const v = s.map((c, j) => (perByte ? c.logprob / Math.max(1, new TextEncoder().encode(it.choices[j]).length) : c.logprob));
    const order = v.map((x, j) => [x, j] as const).sort((a, b) => b[0] - a[0]);
    out.push({ pick: order[0][1], margin: order.length > 1 ? order[0][0] - order[1][0] : Infinity, values: v });
  }
  return out;
}

export async function main(argv: string[]): Promise<void> {
  const task = arg(argv, '--task', 'blimp');
  const limit = Number(arg(argv, '--limit', '200'));
  if (!Number.isInteger(limit) || limit < 1) throw new Error('cascade: --limit must be a positive integer');
  const weakPath = arg(argv, '--weak', join(ROOT, 'models', 'default.gguf'));
  const strongPath = arg(argv, '--strong', join(FIXTURES, 'models', 'stories260K', 'stories260K.bin'));
  const strongTok = arg(argv, '--strong-tokenizer', argv.includes('--strong') ? '' : join(FIXTURES, 'models', 'stories260K', 'tok512.bin'));
  const weakName = arg(argv, '--weak-name', argv.includes('--weak') ? basename(weakPath) : 'embedded 0.9M model');
  const strongName = arg(argv, '--strong-name', argv.includes('--strong') ? basename(strongPath) : 'stories260K');
  const items = loadItems(task, limit);
  const weak = await LocalModel.open(weakPath, { name: 'weak', tier: 'tiny' });
  const strong = await LocalModel.open(strongPath, { name: 'strong', tier: 'small', ...(strongTok ? { tokenizer: strongTok } : {}) });
  const t0 = performance.now();
  const perByte = task === 'arc';
  const [w, s] = [await scoreAll(weak, items, perByte), await scoreAll(strong, items, perByte)];
  const seconds = (performance.now() - t0) / 1000;
  const n = items.length;
  const weakRight = items.map((it, i) => (w[i].pick === it.gold ? 1 : 0));
  const strongRight = items.map((it, i) => (s[i].pick === it.gold ? 1 : 0));
  const accW = weakRight.reduce((a: number, b) => a + b, 0) / n, accS = strongRight.reduce((a: number, b) => a + b, 0) / n;
  // The cascade escalating items in a given order, for k = 0..n escalated: every threshold at once.
  const curveOf = (order: number[]) => {
    const curve: { share: number; cascade: number; random: number; k: number }[] = [];
    let right = weakRight.reduce((a: number, b) => a + b, 0);
    curve.push({ share: 0, cascade: right / n, random: accW, k: 0 });
    for (let k = 1; k <= n; k++) {
      const i = order[k - 1];
      right += strongRight[i] - weakRight[i];
      const share = k / n;
      curve.push({ share, cascade: right / n, random: (1 - share) * accW + share * accS, k });
    }
    return curve;
  };
  const gap = accS - accW;
  // Against the random router: at every share, and at every whole percent escalated (1..99%), the grid
  // RouteLLM's curves are read on (at a share of a few items the difference is one item's luck).
  const compare = (curve: ReturnType<typeof curveOf>) => {
    const sharesFor = [0.5, 0.8, 0.95].map((f) => {
      const target = accW + f * gap;
      const hit = gap > 0 ? curve.find((p) => p.cascade >= target - 1e-12) : undefined;
      return { recover: f, cascadeShare: hit?.share ?? null, randomShare: gap > 0 ? f : null };
    });
    const diffs = curve.slice(1, -1).map((p) => p.cascade - p.random);
    const worst = diffs.reduce((w, d, i) => (d < diffs[w] ? i : w), 0);
    const beats = {
      min: Math.min(...diffs), minAtShare: (worst + 1) / n, mean: diffs.reduce((a, b) => a + b, 0) / Math.max(1, diffs.length),
      sharesBelow: diffs.filter((d) => d < 0).length, shares: diffs.length, atEveryShare: diffs.every((d) => d >= 0),
    };
    const grid = [...Array(99).keys()].map((i) => {
      const p = curve[Math.round(((i + 1) / 100) * n)];
      return { percent: i + 1, diff: p.cascade - p.random };
    });
    const gridWorst = grid.reduce((w, g) => (g.diff < w.diff ? g : w), grid[0]);
    const beatsGrid = { min: gridWorst.diff, minAtPercent: gridWorst.percent, mean: grid.reduce((a, g) => a + g.diff, 0) / grid.length, below: grid.filter((g) => g.diff < 0).map((g) => g.percent) };
    return { sharesFor, beats, beatsGrid };
  };
  // The margin cascade: escalate the k lowest margins.
  const byMargin = [...Array(n).keys()].sort((a, b) => w[a].margin - w[b].margin);
  const curve = curveOf(byMargin);
  // The learned escalation model (src/tiers/escalation.ts), escalating the k highest predicted gains.
  // Each item's prediction comes from a model fit without it: 2-fold cross-fitting (a seeded shuffle),
  // and, harder, leave-one-task-out (fit on the other tasks: how it does on a kind of item it never saw).
  const examples: EscalationExample[] = items.map((it, i) => ({ context: it.context, choices: it.choices, values: w[i].values, weakRight: weakRight[i] === 1, strongRight: strongRight[i] === 1 }));
  const tFit = performance.now();
  const byGain = (p: EscalationPrediction[]) => [...Array(n).keys()].sort((a, b) => p[b].gain - p[a].gain || a - b);
  const crossFit = crossFitPredictions(examples, { folds: 2, seed: 1 });
  const learnedCurve = curveOf(byGain(crossFit));
  const tasks = new Set(items.map((it) => it.task));
  const heldOutCurve = tasks.size > 1 ? curveOf(byGain(crossFitPredictions(examples, { groups: items.map((it) => it.task) }))) : undefined;
  const fitSeconds = (performance.now() - tFit) / 1000;
  const atZero = crossFit.filter((p) => p.gain > 0).length;
  const results = { margin: compare(curve), learned: compare(learnedCurve), ...(heldOutCurve ? { heldOutTask: compare(heldOutCurve) } : {}) };
  // The Router itself at one threshold (the median margin) on the first 100 items: the same picks as the curve assumes.
  const threshold = w[byMargin[Math.floor(n / 2)]].margin;
  const router = new Router([
    { name: 'weak', tier: 'tiny', model: weak, offline: true, price: { prompt: 0, completion: 0 } },
    { name: 'strong', tier: 'small', model: strong, offline: true, price: { prompt: 1, completion: 1 } },
  ], { policy: 'cascade', choiceThreshold: threshold });
  let agree = 0;
  const check = Math.min(100, n);
  for (let i = 0; i < check; i++) {
    const r = await router.choose(items[i].context, items[i].choices, { normalize: perByte ? 'bytes' : 'none' });
    const expected = w[i].margin < threshold ? s[i].pick : w[i].pick;
    if (r.index === expected && (r.route.tier === 'strong') === w[i].margin < threshold) agree++;
  }
  // And with an escalation model (fit on every item here): escalates exactly where the model's gain is over 0.
  const escalation = EscalationModel.learn(examples, { weakTier: 'weak', strongTier: 'strong', source: task });
  const learnedRouter = new Router(router.tiers, { policy: 'cascade', escalation: { weak: escalation } });
  let agreeLearned = 0;
  for (let i = 0; i < check; i++) {
    const r = await learnedRouter.choose(items[i].context, items[i].choices, { normalize: perByte ? 'bytes' : 'none' });
    const up = escalation.predict(examples[i]).gain > 0;
    if (r.index === (up ? s[i].pick : w[i].pick) && (r.route.tier === 'strong') === up) agreeLearned++;
  }
  await weak.close();
  await strong.close();
  console.log(`cascade: ${task}, ${n} items; weak ${weakPath} acc ${accW.toFixed(4)}, strong ${strongPath} acc ${accS.toFixed(4)} (scored in ${seconds.toFixed(1)} s, fits ${fitSeconds.toFixed(1)} s)`);
  const curves = { margin: curve, learned: learnedCurve, ...(heldOutCurve ? { heldOutTask: heldOutCurve } : {}) };
  const label = { margin: 'margin cascade', learned: 'learned (2-fold cross-fit)', heldOutTask: 'learned, task held out' };
  const pts = (d: number) => `${d >= 0 ? '+' : ''}${(d * 100).toFixed(2)}`;
  console.log(`  escalated:  ${[10, 20, 30, 50, 70, 90].map((p) => `${p}%`.padStart(8)).join('')}   (cascade − random router, points)`);
  for (const [key, c] of Object.entries(curves)) console.log(`  ${label[key as keyof typeof label].padEnd(28)}${[10, 20, 30, 50, 70, 90].map((p) => pts(c[Math.round((p / 100) * n)].cascade - c[Math.round((p / 100) * n)].random).padStart(8)).join('')}`);
  for (const [key, r] of Object.entries(results)) {
    console.log(`  ${label[key as keyof typeof label]}:`);
    console.log(`    ${r.sharesFor.map((x) => `${(x.recover * 100).toFixed(0)}% of the gap at ${x.cascadeShare === null ? '-' : `${(x.cascadeShare * 100).toFixed(1)}%`} escalated`).join(', ')} (random: 50/80/95%)`);
    console.log(`    over every share: min ${(r.beats.min * 100).toFixed(4)} points (at ${(r.beats.minAtShare * 100).toFixed(2)}%), mean ${(r.beats.mean * 100).toFixed(2)}; ` +
      `below at ${r.beats.sharesBelow} of ${r.beats.shares} shares; on the 1% grid: min ${pts(r.beatsGrid.min)} (at ${r.beatsGrid.minAtPercent}%), mean ${pts(r.beatsGrid.mean)}, ` +
      `below at ${r.beatsGrid.below.length ? r.beatsGrid.below.map((p) => `${p}%`).join(', ') : 'no share'}`);
  }
  const lz = learnedCurve[atZero];
  console.log(`  learned at its default threshold (gain > 0): escalates ${(atZero / n * 100).toFixed(1)}%, accuracy ${(lz.cascade * 100).toFixed(2)}% (random ${(lz.random * 100).toFixed(2)}%, margin cascade ${(curve[atZero].cascade * 100).toFixed(2)}%)`);
  console.log(`  Router.choose at threshold ${threshold.toFixed(3)}: ${agree}/${check} items as the curve assumes; with the escalation model: ${agreeLearned}/${check}`);
  const svg = arg(argv, '--svg', '');
  if (svg) {
    const step = Math.max(1, Math.floor(n / 200));
    const rows = curve.flatMap((p, i) => (i % step === 0 || i === n ? [
      { x: p.share * 100, y: learnedCurve[i].cascade * 100, series: 'learned escalation (2-fold cross-fit)' },
      ...(heldOutCurve ? [{ x: p.share * 100, y: heldOutCurve[i].cascade * 100, series: 'learned, task held out' }] : []),
      { x: p.share * 100, y: p.cascade * 100, series: 'margin (escalate the lowest margins)' },
      { x: p.share * 100, y: p.random * 100, series: 'random router, same share' },
    ] : []));
    await writeSvg(svg, await linesSvg({
      title: `Cascade vs random router: ${task === 'blimp' ? 'BLiMP (12 paradigms)' : 'ARC-Easy'}, ${n} items`,
      subtitle: `weak: ${weakName} (acc ${(accW * 100).toFixed(1)}%), strong: ${strongName} (acc ${(accS * 100).toFixed(1)}%); npm run bench -- cascade`,
      rows, xTitle: 'items escalated to the strong tier (%)', yTitle: 'accuracy (%)', points: false,
    }));
    console.log(`  wrote ${svg}`);
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ task, items: n, weak: weakPath, strong: strongPath, accWeak: accW, accStrong: accS, ...results, learnedAtZero: { escalated: atZero / n, accuracy: lz.cascade }, routerCheck: { threshold, agree, agreeLearned, of: check }, curve: curve.filter((_, i) => i % Math.max(1, Math.floor(n / 100)) === 0).map((p) => ({ share: p.share, margin: p.cascade, learned: learnedCurve[p.k].cascade, heldOutTask: heldOutCurve?.[p.k].cascade, random: p.random })) }));
}
