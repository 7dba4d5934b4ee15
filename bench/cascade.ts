/**
 * The router's cascade on multiple-choice items with known answers: the weak (cheap) tier answers
 * every item first; items whose margin (best choice's log-likelihood minus the second's) is under a
 * threshold go to the strong tier. Over all thresholds, accuracy against the share of items escalated,
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
}

/** The items of the chosen task through `stlm eval`'s task reader (src/eval/task-files.ts): at most `limit` per file. */
function loadItems(task: string, limit: number): Item[] {
  const path = { blimp: join(FIXTURES, 'eval', 'blimp-dev'), arc: join(FIXTURES, 'eval', 'arc_easy.jsonl') }[task];
  if (!path) throw new Error(`cascade: --task must be blimp or arc, not '${task}'`);
  if (!existsSync(path)) throw new Error(`cascade: ${path} is absent (see ../shared/fixtures/README.md)`);
  return readTasks(path).flatMap((f) => f.items.slice(0, limit).map((it) => {
    if (it.kind !== 'choice') throw new Error(`cascade: ${f.file}:${it.line} is not a multiple-choice item`);
    // The continuations as scored (ARC's choices after a space); per-byte margins count that space, as before.
    return { context: it.context, choices: it.choices.map((c) => continuationAfter(it.context, c)), gold: it.gold };
  }));
}

/** Each item's best choice and margin on one tier (ARC: log-likelihood per byte, lm-evaluation-harness's acc_norm). */
async function scoreAll(model: LocalModel, items: Item[], perByte: boolean): Promise<{ pick: number; margin: number }[]> {
  const out: { pick: number; margin: number }[] = [];
  for (const it of items) {
    const s = await model.score(it.context, it.choices);
    const v = s.map((c, j) => (perByte ? c.logprob / Math.max(1, new TextEncoder().encode(it.choices[j]).length) : c.logprob));
    const order = v.map((x, j) => [x, j] as const).sort((a, b) => b[0] - a[0]);
    out.push({ pick: order[0][1], margin: order.length > 1 ? order[0][0] - order[1][0] : Infinity });
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
  // Escalating the k lowest-margin items, for k = 0..n: the cascade at every threshold.
  const byMargin = [...Array(n).keys()].sort((a, b) => w[a].margin - w[b].margin);
  const curve: { share: number; cascade: number; random: number; threshold: number }[] = [];
  let right = weakRight.reduce((a: number, b) => a + b, 0);
  curve.push({ share: 0, cascade: right / n, random: accW, threshold: w[byMargin[0]].margin });
  for (let k = 1; k <= n; k++) {
    const i = byMargin[k - 1];
    right += strongRight[i] - weakRight[i];
    const share = k / n;
    curve.push({ share, cascade: right / n, random: (1 - share) * accW + share * accS, threshold: k < n ? w[byMargin[k]].margin : Infinity });
  }
  const gap = accS - accW;
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
  // The same comparison at every whole percent escalated (1..99%), the grid RouteLLM's curves are read on:
  // at a share of a few items the difference is one item's luck (is the single lowest-margin item a gain?).
  const grid = [...Array(99).keys()].map((i) => {
    const p = curve[Math.round(((i + 1) / 100) * n)];
    return { percent: i + 1, diff: p.cascade - p.random };
  });
  const gridWorst = grid.reduce((w, g) => (g.diff < w.diff ? g : w), grid[0]);
  const beatsGrid = { min: gridWorst.diff, minAtPercent: gridWorst.percent, below: grid.filter((g) => g.diff < 0).map((g) => g.percent) };
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
  await weak.close();
  await strong.close();
  const at = (share: number) => curve[Math.round(share * n)];
  console.log(`cascade: ${task}, ${n} items; weak ${weakPath} acc ${accW.toFixed(4)}, strong ${strongPath} acc ${accS.toFixed(4)} (scored in ${seconds.toFixed(1)} s)`);
  for (const share of [0.1, 0.2, 0.3, 0.5, 0.7]) {
    const p = at(share);
    console.log(`  escalate ${(share * 100).toFixed(0).padStart(2)}%: cascade ${p.cascade.toFixed(4)}  random ${p.random.toFixed(4)}  (+${((p.cascade - p.random) * 100).toFixed(2)} points)`);
  }
  for (const r of sharesFor) console.log(`  ${(r.recover * 100).toFixed(0)}% of the gap: cascade escalates ${r.cascadeShare === null ? '-' : `${(r.cascadeShare * 100).toFixed(1)}%`}, random ${r.randomShare === null ? '-' : `${(r.randomShare * 100).toFixed(0)}%`}`);
  console.log(`  cascade − random over every share: min ${(beats.min * 100).toFixed(4)} points (at ${(beats.minAtShare * 100).toFixed(2)}% escalated), mean ${(beats.mean * 100).toFixed(2)} points; ` +
    `below it at ${beats.sharesBelow} of ${beats.shares} shares; at or above it at every share: ${beats.atEveryShare}`);
  console.log(`  on the 1% grid (1..99% escalated): min ${(beatsGrid.min * 100).toFixed(2)} points (at ${beatsGrid.minAtPercent}%); ` +
    `below the random router at ${beatsGrid.below.length ? beatsGrid.below.map((p) => `${p}%`).join(', ') : 'no share'}`);
  console.log(`  Router.choose at threshold ${threshold.toFixed(3)}: ${agree}/${check} items as the curve assumes`);
  const svg = arg(argv, '--svg', '');
  if (svg) {
    const step = Math.max(1, Math.floor(n / 200));
    const rows = curve.filter((_, i) => i % step === 0 || i === n).flatMap((p) => [
      { x: p.share * 100, y: p.cascade * 100, series: 'cascade (escalate the lowest margins)' },
      { x: p.share * 100, y: p.random * 100, series: 'random router, same share' },
    ]);
    await writeSvg(svg, await linesSvg({
      title: `Cascade vs random router: ${task === 'blimp' ? 'BLiMP (12 paradigms)' : 'ARC-Easy'}, ${n} items`,
      subtitle: `weak: ${weakName} (acc ${(accW * 100).toFixed(1)}%), strong: ${strongName} (acc ${(accS * 100).toFixed(1)}%); npm run bench -- cascade`,
      rows, xTitle: 'items escalated to the strong tier (%)', yTitle: 'accuracy (%)', points: false,
    }));
    console.log(`  wrote ${svg}`);
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ task, items: n, weak: weakPath, strong: strongPath, accWeak: accW, accStrong: accS, sharesFor, beats, beatsGrid, routerCheck: { threshold, agree, of: check }, curve: curve.filter((_, i) => i % Math.max(1, Math.floor(n / 100)) === 0) }));
}
