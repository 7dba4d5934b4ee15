/**
 * Next-token sampling from a logits vector. The steps run in llama.cpp's order:
 *   1. repetition penalty (CTRL style) on each distinct token of the last `repetitionWindow` tokens;
 *   2. top-k;  3. top-p (nucleus);  4. min-p  — all three on the temperature-1 probabilities;
 *   5. temperature;  6. a draw from the renormalised survivors.
 * Temperature 0 is greedy: the argmax after the penalty (ties go to the lowest id); the truncations
 * cannot change it, since they always keep the most likely token.
 */
import { expNonPositive } from '../util/exp.js';
import { Rng } from '../util/rng.js';

const NO_TOKENS: readonly number[] = [];

/** Sampling options; every field is optional and defaults to "off" (temperature 1). */
export interface SamplerOptions {
  /** Softmax temperature, >= 0; 0 = greedy. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. Default 0. */
  topK?: number;
  /** Keep the smallest most-likely set whose mass is >= topP, in (0, 1]; 1 = off. Default 1. */
  topP?: number;
  /** Keep tokens with p >= minP * p_max, in [0, 1]; 0 = off. Default 0. */
  minP?: number;
  /** Penalty > 0 for recently seen tokens: logit > 0 ? logit / r : logit * r; 1 = off. Default 1. */
  repetitionPenalty?: number;
  /** How many of the most recent tokens the penalty looks at. Default 64. */
  repetitionWindow?: number;
  /** Seed of the sampler's PRNG. Default 1. */
  seed?: number;
}

/** Validates options and fills in the defaults; throws an Error naming the bad option. */
export function resolveSamplerOptions(o: SamplerOptions = {}): Required<SamplerOptions> {
  const r = {
    temperature: o.temperature ?? 1,
    topK: o.topK ?? 0,
    topP: o.topP ?? 1,
    minP: o.minP ?? 0,
    repetitionPenalty: o.repetitionPenalty ?? 1,
    repetitionWindow: o.repetitionWindow ?? 64,
    seed: o.seed ?? 1,
  };
  const bad = (what: string, v: number) => new Error(`sampler: ${what}, got ${v}`);
  if (!(r.temperature >= 0 && Number.isFinite(r.temperature))) throw bad('temperature must be a finite number >= 0', r.temperature);
  if (!(Number.isInteger(r.topK) && r.topK >= 0)) throw bad('topK must be an integer >= 0', r.topK);
  if (!(r.topP > 0 && r.topP <= 1)) throw bad('topP must be in (0, 1]', r.topP);
  if (!(r.minP >= 0 && r.minP <= 1)) throw bad('minP must be in [0, 1]', r.minP);
  if (!(r.repetitionPenalty > 0 && Number.isFinite(r.repetitionPenalty))) throw bad('repetitionPenalty must be a finite number > 0', r.repetitionPenalty);
  if (!(Number.isInteger(r.repetitionWindow) && r.repetitionWindow >= 0)) throw bad('repetitionWindow must be an integer >= 0', r.repetitionWindow);
  if (!Number.isFinite(r.seed)) throw bad('seed must be a finite number', r.seed);
  return r;
}

/**
 * A stateful sampler: owns its PRNG (so a seeded generation is reproducible) and its scratch buffers
 * (so nothing is allocated per call once the vocabulary size is known). Never modifies the caller's logits.
 */
export class Sampler {
  readonly options: Readonly<Required<SamplerOptions>>;
  /** Probability of the last chosen token under the penalised temperature-1 softmax over the full vocabulary. */
  lastProb = NaN;
  /** Entropy (nats) of that same distribution at the last call: a cheap confidence signal. */
  lastEntropy = NaN;

  private readonly rng: Rng;
  private vocab = 0;
  private logits = new Float32Array(0);
  /** The logits of the current call: the caller's, or this.logits when the penalty changed them. */
  private cur: Float32Array = new Float32Array(0);
  private weights = new Float64Array(0);
  private idx = new Int32Array(0);
  private sorted = new Float32Array(0);
  private stamp = new Uint32Array(0);
  private call = 0;

  constructor(options: SamplerOptions = {}) {
    this.options = Object.freeze(resolveSamplerOptions(options));
    this.rng = new Rng(this.options.seed);
  }

  /** Picks the next token id given the logits and the tokens generated so far (for the penalty). */
  sample(logits: Float32Array, recent: ArrayLike<number> = NO_TOKENS): number {
    const n = logits.length;
    if (n === 0) throw new Error('sampler: empty logits');
    this.ensure(n);
    // The caller's logits are read as they are unless the penalty changes them (then a copy).
    const l = this.penalised(logits, recent);
    this.cur = l;

    // Temperature-1 softmax statistics over the full vocabulary (also gives the greedy argmax).
    let best = 0;
    for (let i = 0; i < n; i++) {
      const x = l[i];
      if (Number.isNaN(x) || x === Infinity) throw new Error(`sampler: logit ${i} is ${x}`);
      if (x > l[best]) best = i;
    }
    const m = l[best];
    if (m === -Infinity) throw new Error('sampler: every logit is -Infinity');
    const z = this.weigh(l, m, n);

    const { temperature, topK, topP, minP } = this.options;
    // Plain sampling draws from w as it is: z is the sum draw() would take (the same terms, in id order;
    // a -Infinity logit's weight is 0, which neither adds to the sum nor is ever drawn).
    const plain = temperature === 1 && (topK === 0 || topK >= n) && topP === 1 && minP === 0;
    const id = temperature === 0 ? best : plain ? this.drawAll(n, z) : this.draw(n, m);
    this.lastProb = expNonPositive(l[id] - m) / z;
    return id;
  }

  /** w = exp(l − m) for every token; returns Σw and sets lastEntropy (of the distribution w / Σw). */
  private weigh(l: Float32Array, m: number, n: number): number {
    const w = this.weights;
    let z = 0, zl = 0;
    for (let i = 0; i < n; i++) {
      const d = l[i] - m, e = expNonPositive(d);
      w[i] = e;
      z += e;
      if (e > 0) zl += e * d;
    }
    this.lastEntropy = Math.log(z) - zl / z;
    return z;
  }

  /** PRNG state, for checkpointing a generation. */
  getRngState(): number[] {
    return this.rng.getState();
  }

  /** Restores a state from {@link getRngState}. */
  setRngState(state: number[]): void {
    this.rng.setState(state);
  }

  private ensure(n: number): void {
    if (n === this.vocab) return;
    this.vocab = n;
    this.logits = new Float32Array(n);
    this.weights = new Float64Array(n);
    this.idx = new Int32Array(n);
    this.sorted = new Float32Array(n);
    this.stamp = new Uint32Array(n);
    this.call = 0;
  }

  /**
   * The logits to sample from: the caller's when the CTRL-style penalty is off, else a copy with the
   * penalty applied once per distinct token of the window.
   */
  private penalised(logits: Float32Array, recent: ArrayLike<number>): Float32Array {
    const { repetitionPenalty: r, repetitionWindow: win } = this.options;
    if (r === 1 || win === 0) return logits;
    const l = this.logits, s = this.stamp, n = this.vocab;
    l.set(logits);
    if (++this.call === 0x100000000) { s.fill(0); this.call = 1; }
    for (let j = Math.max(0, recent.length - win); j < recent.length; j++) {
      const t = recent[j];
      if (!(t >= 0 && t < n && Number.isInteger(t))) throw new RangeError(`sampler: recent token ${t} is outside [0, ${n})`);
      if (s[t] === this.call) continue;
      s[t] = this.call;
      l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
    }
    return l;
  }

  /** A draw from all tokens by the weights w (temperature 1, nothing cut); total is their sum. */
  private drawAll(n: number, total: number): number {
    const w = this.weights;
    let u = this.rng.next() * total, last = 0;
    for (let i = 0; i < n; i++) {
      const x = w[i];
      if (x > 0) {
        last = i;
        if (u < x) return i;
        u -= x;
      }
    }
    return last; // only reached through rounding
  }

  /** Steps 2-6 on the tokens with a finite logit; w holds exp(l - m) on entry and is overwritten. */
  private draw(n: number, m: number): number {
    const { topK, topP, minP, temperature } = this.options;
    const l = this.cur, w = this.weights, idx = this.idx;
    let count = 0;
    for (let i = 0; i < n; i++) if (l[i] !== -Infinity) idx[count++] = i;

    if ((topK > 0 && topK < count) || topP < 1) {
      // v: the best v.length candidate logits, ascending (an exact prefix of the ranking, without a full sort).
      const v = topK > 0 && topK < count ? this.topValues(count, topK) : this.nucleusValues(count, topP);
      let keep = v.length;
      if (topP < 1) {
        let mass = 0;
        if (topK > 0 && topK < count) for (let j = 0; j < v.length; j++) mass += expNonPositive(v[j] - m);
        else for (let j = 0; j < count; j++) mass += w[idx[j]];
        let cum = 0, k = 0;
        while (k < v.length) {
          cum += expNonPositive(v[v.length - 1 - k++] - m);
          if (cum >= topP * mass) break;
        }
        keep = k;
      }
      count = this.keepBest(count, keep, v[v.length - keep]);
    }
    if (minP > 0) {
      // p_i / p_max = w_i, since w_max = exp(0) = 1 and the max survives top-k / top-p.
      let keep = 0;
      for (let j = 0; j < count; j++) if (w[idx[j]] >= minP) idx[keep++] = idx[j];
      count = keep;
    }

    let total = 0;
    for (let j = 0; j < count; j++) {
      const i = idx[j];
      if (temperature !== 1) w[i] = expNonPositive((l[i] - m) / temperature);
      total += w[i];
    }
    let u = this.rng.next() * total;
    let last = idx[0];
    for (let j = 0; j < count; j++) {
      const i = idx[j];
      if (w[i] > 0) last = i;
      if (u < w[i]) return i;
      u -= w[i];
    }
    return last; // only reached through rounding
  }

  /** The k largest candidate logits, ascending: one pass with a size-k min-heap, then a sort of k values. */
  private topValues(count: number, k: number): Float32Array {
    const h = this.sorted, l = this.cur, idx = this.idx;
    for (let j = 0; j < count; j++) {
      const x = l[idx[j]];
      let c: number;
      if (j < k) { // sift up
        for (c = j; c > 0 && h[(c - 1) >> 1] > x; c = (c - 1) >> 1) h[c] = h[(c - 1) >> 1];
      } else if (x > h[0]) { // replace the minimum, sift down
        for (c = 0; ; ) {
          let ch = 2 * c + 1;
          if (ch >= k) break;
          if (ch + 1 < k && h[ch + 1] < h[ch]) ch++;
          if (h[ch] >= x) break;
          h[c] = h[ch];
          c = ch;
        }
      } else continue;
      h[c] = x;
    }
    return h.subarray(0, k).sort();
  }

  /**
   * The logits, ascending, of the candidates whose weight is at least some threshold, chosen as high as
   * possible while they still hold topP of the mass: the nucleus lies inside them, so only they are sorted.
   */
  private nucleusValues(count: number, topP: number): Float32Array {
    const w = this.weights, l = this.cur, idx = this.idx;
    let mass = 0;
    for (let j = 0; j < count; j++) mass += w[idx[j]];
    let theta = 0;
    for (const t of [1e-2, 1e-4, 1e-8]) {
      let s = 0;
      for (let j = 0; j < count; j++) if (w[idx[j]] >= t) s += w[idx[j]];
      if (s >= topP * mass) { theta = t; break; }
    }
    let len = 0;
    for (let j = 0; j < count; j++) if (w[idx[j]] >= theta) this.sorted[len++] = l[idx[j]];
    return this.sorted.subarray(0, len).sort();
  }

  /** Keeps, in id order, the `keep` best candidates: logits above `cut`, then ties at `cut` by lowest id. */
  private keepBest(count: number, keep: number, cut: number): number {
    const l = this.cur, idx = this.idx;
    let above = 0;
    for (let j = 0; j < count; j++) if (l[idx[j]] > cut) above++;
    let ties = keep - above, out = 0;
    for (let j = 0; j < count; j++) {
      const i = idx[j];
      if (l[i] > cut || (l[i] === cut && ties-- > 0)) idx[out++] = i;
    }
    return out;
  }
}
