/**
 * A learned escalation model for the cascade's multiple-choice requests (RouteLLM's learned routers,
 * at the size of a tiny tier). The margin between a weak tier's two best choices is a poor signal when
 * the weak tier is confidently wrong on whole kinds of items (BLiMP: the embedded model scores 7.5% on
 * npi_present, most of it with large margins), so a margin cascade escalates those items last. This
 * model predicts, from what the weak tier has already computed and the request's own text, the
 * probability that each tier answers right; the router escalates when the strong tier's is higher by
 * more than a threshold (default 0: escalate when the strong tier is expected to do better).
 *
 * Features (hashed into a fixed number of buckets): a bias, the weak tier's margin (clipped and
 * log-scaled), and the words that set the weak tier's pick and its runner-up apart from the other
 * choices (what a request is about, without knowing its task). Two logistic regressions, fit by
 * full-batch Adam in a fixed order, so a fit is deterministic. `stlm route-learn` fits one from items
 * with known answers scored by both tiers; the tiers config names the file on the weak tier.
 */
import { readFileSync } from 'node:fs';

/** One multiple-choice item as the weak tier saw it: the per-choice values it ranked (log-likelihoods, or per byte). */
export interface ChoiceView {
  context: string;
  choices: string[];
  values: number[];
}

/** A training example: the item, and whether each tier's pick was right. */
export interface EscalationExample extends ChoiceView {
  weakRight: boolean;
  strongRight: boolean;
}

export interface EscalationPrediction {
  /** P(the weak tier's pick is right). */
  weak: number;
  /** P(the strong tier's pick is right). */
  strong: number;
  /** strong − weak: the expected accuracy gained by escalating this item. */
  gain: number;
}

/** What the file says about its fit (shown by the router's explanations and `stlm route-learn`). */
export interface EscalationFit {
  weakTier: string;
  strongTier: string;
  items: number;
  accWeak: number;
  accStrong: number;
  /** Where the items came from (paths as given). */
  source: string;
}

interface EscalationFile {
  format: 'stlm-escalation';
  version: 1;
  buckets: number;
  fit: EscalationFit;
  /** Sparse weights: [bucket, weight] pairs. */
  weak: [number, number][];
  strong: [number, number][];
}

const FORMAT = 'stlm-escalation';
const DEFAULT_BUCKETS = 1 << 14;

/** FNV-1a, 32 bits: a stable hash of a feature name. */
function fnv1a(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** Lower-cased words and single punctuation marks: the units the word features are made of. */
const words = (text: string): string[] => text.toLowerCase().match(/[\p{L}\p{N}']+|[^\s\p{L}\p{N}']/gu) ?? [];

type Features = [number, number][];

/** The item's features: index-sorted bucket/value pairs (a bucket hit twice adds up). */
export function choiceFeatures(item: ChoiceView, buckets = DEFAULT_BUCKETS): Features {
  const ranked = item.values.map((v, j) => [v, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  // A choice the weak tier gives probability 0 (log −∞) makes an infinite margin: counted as a large one.
  const raw = ranked.length > 1 ? ranked[0][0] - ranked[1][0] : 0;
  const margin = Number.isFinite(raw) ? raw : 1e3;
  const f = new Map<number, number>();
  const add = (name: string, value = 1): void => {
    const b = fnv1a(name) % buckets;
    f.set(b, (f.get(b) ?? 0) + value);
  };
  add('bias');
  add('margin', Math.min(margin, 20) / 5);
  add('log-margin', Math.log1p(margin));
  const texts = item.choices.map((c) => words(item.context + c));
  const sets = texts.map((t) => new Set(t));
  // Words of a choice that not every choice has: for BLiMP the one or two words a pair differs in.
  const distinct = (j: number): string[] => texts[j].filter((w) => !sets.every((s) => s.has(w)));
  if (ranked.length > 1) {
    for (const w of distinct(ranked[0][1])) add(`pick:${w}`);
    for (const w of distinct(ranked[1][1])) add(`runner-up:${w}`);
  }
  return [...f.entries()].sort((a, b) => a[0] - b[0]);
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

function dot(w: Float64Array, x: Features): number {
  let z = 0;
  for (const [k, v] of x) z += w[k] * v;
  return z;
}

/** L2-regularised logistic regression by full-batch Adam over the examples in order (deterministic). */
function fitLogistic(xs: Features[], ys: boolean[], buckets: number, o: { l2: number; steps: number; lr: number }): Float64Array {
  const w = new Float64Array(buckets), m = new Float64Array(buckets), v = new Float64Array(buckets), g = new Float64Array(buckets);
  const [b1, b2] = [0.9, 0.999];
  for (let t = 1; t <= o.steps; t++) {
    g.fill(0);
    for (let i = 0; i < xs.length; i++) {
      const e = (sigmoid(dot(w, xs[i])) - (ys[i] ? 1 : 0)) / xs.length;
      for (const [k, x] of xs[i]) g[k] += e * x;
    }
    const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
    for (let k = 0; k < buckets; k++) {
      const gk = g[k] + o.l2 * w[k];
      if (gk === 0) continue;
      m[k] = b1 * m[k] + (1 - b1) * gk;
      v[k] = b2 * v[k] + (1 - b2) * gk * gk;
      w[k] -= (o.lr * (m[k] / c1)) / (Math.sqrt(v[k] / c2) + 1e-8);
    }
  }
  return w;
}

const sparse = (w: Float64Array): [number, number][] => [...w.entries()].filter(([, x]) => x !== 0);

export class EscalationModel {
  private constructor(
    private readonly weakW: Float64Array,
    private readonly strongW: Float64Array,
    readonly buckets: number,
    readonly fit: EscalationFit,
  ) {}

  /** Fits both regressions on examples scored by both tiers. */
  static learn(examples: EscalationExample[], fit: Omit<EscalationFit, 'items' | 'accWeak' | 'accStrong'>, o: { buckets?: number; l2?: number; steps?: number; lr?: number } = {}): EscalationModel {
    if (examples.length < 2) throw new Error(`escalation: ${examples.length} examples; fitting needs at least 2 items with known answers`);
    for (const [i, e] of examples.entries()) {
      if (e.choices.length < 2 || e.values.length !== e.choices.length) throw new Error(`escalation: example ${i} has ${e.choices.length} choices and ${e.values.length} values (needs 2+ choices, one value each)`);
    }
    const buckets = o.buckets ?? DEFAULT_BUCKETS;
    const opts = { l2: o.l2 ?? 1e-3, steps: o.steps ?? 300, lr: o.lr ?? 0.05 };
    const xs = examples.map((e) => choiceFeatures(e, buckets));
    const weakW = fitLogistic(xs, examples.map((e) => e.weakRight), buckets, opts);
    const strongW = fitLogistic(xs, examples.map((e) => e.strongRight), buckets, opts);
    const acc = (k: 'weakRight' | 'strongRight'): number => examples.filter((e) => e[k]).length / examples.length;
    return new EscalationModel(weakW, strongW, buckets, { ...fit, items: examples.length, accWeak: acc('weakRight'), accStrong: acc('strongRight') });
  }

  predict(item: ChoiceView): EscalationPrediction {
    const x = choiceFeatures(item, this.buckets);
    const weak = sigmoid(dot(this.weakW, x)), strong = sigmoid(dot(this.strongW, x));
    return { weak, strong, gain: strong - weak };
  }

  toJSON(): EscalationFile {
    return { format: FORMAT, version: 1, buckets: this.buckets, fit: this.fit, weak: sparse(this.weakW), strong: sparse(this.strongW) };
  }

  /** Reads a file `stlm route-learn` wrote; a malformed one is refused naming the file and the field. */
  static read(path: string): EscalationModel {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new Error(`escalation: cannot read ${path}: ${(e as Error).message}`);
    }
    return EscalationModel.fromJSON(raw, path);
  }

  static fromJSON(raw: unknown, where = 'the escalation model'): EscalationModel {
    const bad = (field: string, why: string): Error => new Error(`escalation: ${where}: ${field} ${why}`);
    if (typeof raw !== 'object' || raw === null) throw bad('the file', 'is not a JSON object');
    const r = raw as Partial<EscalationFile>;
    if (r.format !== FORMAT) throw bad('format', `is ${JSON.stringify(r.format)}, not "${FORMAT}" (write one with \`stlm route learn\`)`);
    if (r.version !== 1) throw bad('version', `is ${JSON.stringify(r.version)}; this stlm reads version 1`);
    const buckets = r.buckets;
    if (!Number.isInteger(buckets) || buckets! < 1 || buckets! > 1 << 24) throw bad('buckets', `is ${JSON.stringify(buckets)}, not an integer in 1..${1 << 24}`);
    const fit = r.fit;
    if (typeof fit !== 'object' || fit === null || typeof fit.weakTier !== 'string' || typeof fit.strongTier !== 'string') throw bad('fit', 'needs weakTier and strongTier names');
    const dense = (field: 'weak' | 'strong'): Float64Array => {
      const pairs = r[field];
      if (!Array.isArray(pairs)) throw bad(field, 'is not a list of [bucket, weight] pairs');
      const w = new Float64Array(buckets!);
      for (const [i, p] of pairs.entries()) {
        if (!Array.isArray(p) || p.length !== 2 || !Number.isInteger(p[0]) || p[0] < 0 || p[0] >= buckets! || typeof p[1] !== 'number' || !Number.isFinite(p[1])) {
          throw bad(`${field}[${i}]`, `is ${JSON.stringify(p)}, not [bucket in 0..${buckets! - 1}, finite weight]`);
        }
        w[p[0]] = p[1];
      }
      return w;
    };
    return new EscalationModel(dense('weak'), dense('strong'), buckets!, fit);
  }
}

/**
 * Out-of-fold predictions: the examples split into `folds` parts (a seeded shuffle), each part predicted
 * by a model fit on the others, so every prediction comes from a model that never saw its item. This is
 * how a fit is judged (`stlm route-learn`, `npm run bench -- cascade`). `groups` instead holds out one
 * group at a time (e.g. a task), to see how the model does on a kind of item it was not fit on.
 */
export function crossFitPredictions(
  examples: EscalationExample[], o: { folds?: number; seed?: number; groups?: string[]; buckets?: number; steps?: number } = {},
): EscalationPrediction[] {
  const n = examples.length;
  let parts: number[][];
  if (o.groups) {
    if (o.groups.length !== n) throw new Error(`escalation: ${o.groups.length} group labels for ${n} examples`);
    const byGroup = new Map<string, number[]>();
    o.groups.forEach((g, i) => byGroup.set(g, [...(byGroup.get(g) ?? []), i]));
    parts = [...byGroup.values()];
  } else {
    const folds = o.folds ?? 2;
    if (!Number.isInteger(folds) || folds < 2 || folds > n) throw new Error(`escalation: folds must be an integer in 2..${n}, got ${folds}`);
    let s = (o.seed ?? 1) >>> 0;
    const rand = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const order = [...Array(n).keys()].map((i) => [rand(), i] as const).sort((a, b) => a[0] - b[0]).map(([, i]) => i);
    parts = [...Array(folds).keys()].map((f) => order.filter((_, j) => j % folds === f));
  }
  const out: EscalationPrediction[] = new Array(n);
  const fit = { weakTier: 'weak', strongTier: 'strong', source: 'cross-fit' };
  for (const held of parts) {
    const heldOut = new Set(held);
    const model = EscalationModel.learn(examples.filter((_, i) => !heldOut.has(i)), fit, { buckets: o.buckets, steps: o.steps });
    for (const i of held) out[i] = model.predict(examples[i]);
  }
  return out;
}
