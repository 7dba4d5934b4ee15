// Sampler (greedy, seeding, softmax frequencies, top-k / top-p / min-p, repetition penalty, options)
// and stop strings on a text stream.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Sampler, type SamplerOptions } from '../src/generate/sampler.js';
import { StopMatcher } from '../src/generate/stop.js';
import { expNonPositive } from '../src/util/exp.js';
import { Rng } from '../src/util/rng.js';

function randomLogits(rng: Rng, n: number, scale = 3): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function softmax(l: ArrayLike<number>, t = 1): number[] {
  const m = Math.max(...Array.from(l));
  const e = Array.from(l, (x) => Math.exp((x - m) / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

function counts(opts: SamplerOptions, logits: Float32Array, draws: number, recent: number[] = []): number[] {
  const s = new Sampler(opts);
  const c = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) c[s.sample(logits, recent)]++;
  return c;
}

/** Pearson chi-square of observed counts against expected probabilities; zero-probability ids must never occur. */
function chiSquare(c: number[], p: number[]): number {
  const n = c.reduce((a, b) => a + b, 0);
  let x2 = 0;
  for (let i = 0; i < c.length; i++) {
    if (p[i] === 0) assert.equal(c[i], 0, `id ${i} has probability 0 but was drawn ${c[i]} times`);
    else x2 += (c[i] - n * p[i]) ** 2 / (n * p[i]);
  }
  return x2;
}

// Hand-made distribution, deliberately not in id order.
const P = [0.1, 0.5, 0.05, 0.2, 0.15];
const PL = Float32Array.from(P, Math.log);

describe('Sampler', () => {
  test('temperature 0 is argmax (ties to the lowest id), and does not touch the logits', () => {
    const rng = new Rng(3);
    const s = new Sampler({ temperature: 0 });
    for (let k = 0; k < 200; k++) {
      const l = randomLogits(rng, 50);
      const copy = l.slice();
      let best = 0;
      for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
      assert.equal(s.sample(l, [1, 2, 3]), best);
      assert.deepEqual(l, copy);
    }
    assert.equal(s.sample(Float32Array.of(1, 3, 3, -Infinity, 3)), 1);
    assert.equal(s.sample(new Float32Array(7).fill(0.5)), 0);
  });

  test('a seeded sampler is reproducible; its PRNG state can be saved and restored', () => {
    const rng = new Rng(5);
    const logits = Array.from({ length: 20 }, () => randomLogits(rng, 100, 1));
    const run = (s: Sampler) => logits.map((l, i) => s.sample(l, [i]));
    const opts = { temperature: 0.9, topK: 40, topP: 0.95, minP: 0.01, repetitionPenalty: 1.1, seed: 42 };
    const a = run(new Sampler(opts));
    assert.deepEqual(run(new Sampler(opts)), a);
    assert.notDeepEqual(run(new Sampler({ ...opts, seed: 43 })), a);
    const s = new Sampler(opts);
    const state = s.getRngState();
    const first = run(s);
    s.setRngState(state);
    assert.deepEqual(run(s), first);
  });

  test('frequencies match softmax(logits / T)', () => {
    const l = Float32Array.of(1, 0.2, -0.5, 2, 0, 1.5);
    for (const t of [0.5, 1, 2]) {
      const x2 = chiSquare(counts({ temperature: t, seed: 9 }, l, 60000), softmax(l, t));
      assert.ok(x2 < 20.5, `T=${t}: chi-square ${x2.toFixed(2)} over the 0.001 critical value for 5 dof`);
    }
  });

  test('all-equal logits are uniform; -Infinity logits are never drawn', () => {
    const eq = new Float32Array(8).fill(-2);
    assert.ok(chiSquare(counts({ seed: 2 }, eq, 40000), new Array(8).fill(1 / 8)) < 24.3);
    const l = Float32Array.of(-Infinity, 0, -Infinity, 1, -Infinity);
    assert.ok(chiSquare(counts({ seed: 3, temperature: 1.3 }, l, 20000), softmax(l, 1.3)) < 10.8);
    assert.throws(() => new Sampler().sample(new Float32Array(4).fill(-Infinity)), /-Infinity/);
    assert.throws(() => new Sampler().sample(Float32Array.of(0, NaN)), /NaN/);
  });

  test('top-k = 1 equals greedy; top-k = 3 keeps the three most likely', () => {
    const rng = new Rng(8);
    const greedy = new Sampler({ temperature: 0 });
    const k1 = new Sampler({ temperature: 1.5, topK: 1, seed: 1 });
    for (let k = 0; k < 300; k++) {
      const l = randomLogits(rng, 64);
      assert.equal(k1.sample(l), greedy.sample(l));
    }
    const p3 = P.map((p) => (p >= 0.15 ? p / 0.85 : 0));
    assert.ok(chiSquare(counts({ topK: 3, seed: 4 }, PL, 30000), p3) < 16.3);
  });

  test('top-p keeps the smallest most-likely set with mass >= p', () => {
    for (const topP of [0.3, 0.65, 0.8, 0.9, 0.97]) {
      // Independent reference: walk ids by descending probability until the mass reaches topP.
      const order = P.map((p, i) => i).sort((a, b) => P[b] - P[a]);
      const keep = new Set<number>();
      let mass = 0;
      for (const i of order) {
        if (mass >= topP) break;
        keep.add(i);
        mass += P[i];
      }
      const expect = P.map((p, i) => (keep.has(i) ? p / mass : 0));
      const x2 = chiSquare(counts({ topP, seed: 5 }, PL, 30000), expect);
      assert.ok(x2 < 18.5, `topP=${topP}: chi-square ${x2.toFixed(2)}`);
    }
  });

  test('top-k / top-p keep exactly the set of a brute-force sort, ties to the lowest id', () => {
    const rng = new Rng(21);
    for (let c = 0; c < 300; c++) {
      const n = 30;
      const l = Float32Array.from({ length: n }, () => (rng.next() < 0.1 ? -Infinity : rng.int(7) - 3));
      const topK = rng.int(12), topP = [1, 0.999, 0.99, 0.9, 0.7, 0.4][rng.int(6)];
      // Reference: full sort by (logit desc, id asc), cut to k, then the shortest prefix with mass >= topP.
      let order = Array.from({ length: n }, (_, i) => i).filter((i) => l[i] > -Infinity);
      order.sort((a, b) => l[b] - l[a] || a - b);
      if (topK > 0) order = order.slice(0, topK);
      const e = order.map((i) => Math.exp(l[i] - l[order[0]]));
      const mass = e.reduce((a, b) => a + b, 0);
      let keep = 0;
      for (let cum = 0; keep < order.length && cum < topP * mass; ) cum += e[keep++];
      const expect = new Set(order.slice(0, keep));
      const got = new Set<number>();
      const s = new Sampler({ topK, topP, seed: c });
      for (let d = 0; d < 1500; d++) got.add(s.sample(l));
      for (const i of got) assert.ok(expect.has(i), `case ${c}: drew ${i}, outside the kept set`);
      for (let j = 0; j < keep; j++) if (e[j] / mass > 0.01) assert.ok(got.has(order[j]), `case ${c}: never drew ${order[j]}`);
    }
  });

  test('min-p keeps tokens with p >= minP * p_max, then temperature applies', () => {
    // minP = 0.25: threshold 0.125 keeps 0.5, 0.2, 0.15.
    const kept = P.map((p) => (p >= 0.125 ? p : 0));
    const t = 0.7;
    const w = kept.map((p) => (p > 0 ? p ** (1 / t) : 0));
    const z = w.reduce((a, b) => a + b, 0);
    const x2 = chiSquare(counts({ minP: 0.25, temperature: t, seed: 6 }, PL, 30000), w.map((x) => x / z));
    assert.ok(x2 < 16.3, `chi-square ${x2.toFixed(2)}`);
  });

  test('repetition penalty: CTRL style, once per distinct token, only inside the window', () => {
    const g = (o: SamplerOptions, l: number[], recent: number[]) => new Sampler({ temperature: 0, ...o }).sample(Float32Array.from(l), recent);
    assert.equal(g({}, [2, 1.5, -1], [0]), 0);
    assert.equal(g({ repetitionPenalty: 2 }, [2, 1.5, -1], [0]), 1); // 2 / 2 = 1 < 1.5
    assert.equal(g({ repetitionPenalty: 1.5 }, [-1, -1.2], [0]), 1); // -1 * 1.5 = -1.5 < -1.2
    assert.equal(g({ repetitionPenalty: 2 }, [2, 0.9], [0, 0, 0]), 0); // penalised once: 1 > 0.9
    const old = [0, ...new Array(64).fill(2)];
    assert.equal(g({ repetitionPenalty: 2 }, [2, 1.5, -5], old), 0); // token 0 fell out of the window
    assert.equal(g({ repetitionPenalty: 2, repetitionWindow: 65 }, [2, 1.5, -5], old), 1);
    assert.throws(() => g({ repetitionPenalty: 2 }, [1, 2], [5]), RangeError);
  });

  test('confidence: probability of the chosen token and entropy', () => {
    const s = new Sampler({ temperature: 0 });
    s.sample(new Float32Array(4).fill(1));
    assert.ok(Math.abs(s.lastProb - 0.25) < 1e-9);
    assert.ok(Math.abs(s.lastEntropy - Math.log(4)) < 1e-9);
    s.sample(PL);
    const h = -P.reduce((a, p) => a + p * Math.log(p), 0);
    assert.ok(Math.abs(s.lastProb - 0.5) < 1e-6);
    assert.ok(Math.abs(s.lastEntropy - h) < 1e-6);
  });

  test('a plain draw (temperature 1, nothing cut) is the inverse CDF of Math.exp softmax at the same PRNG draw', () => {
    // Oracle: the same seeded PRNG, the weights from Math.exp, the first id whose cumulative weight passes u.
    const rng = new Rng(7);
    for (let trial = 0; trial < 20; trial++) {
      const logits = randomLogits(rng, 259, 2 + trial / 4);
      for (let j = 0; j < 259; j += 17) logits[(j + trial) % 259] = -Infinity;
      const seed = 1000 + trial, s = new Sampler({ seed }), u = new Rng(seed);
      const m = Math.max(...logits), w = Array.from(logits, (x) => Math.exp(x - m)), z = w.reduce((a, b) => a + b, 0);
      for (let d = 0; d < 500; d++) {
        let x = u.next() * z, want = -1;
        for (let i = 0; i < w.length && want < 0; i++) if (w[i] > 0 && (x < w[i] || (x -= w[i]) < 0)) want = i;
        assert.equal(s.sample(logits), want, `trial ${trial}, draw ${d}`);
        assert.ok(Math.abs(s.lastProb - w[want] / z) < 1e-12 * Math.max(1, w[want] / z));
      }
    }
  });

  test('expNonPositive: Math.exp within 3e-15 relative on [-745, 0]; 0 below it, for -Infinity and NaN', () => {
    let worst = 0;
    for (let x = -745; x <= 0; x += 0.000731) {
      const want = Math.exp(x);
      if (want >= 2 ** -1022) worst = Math.max(worst, Math.abs(expNonPositive(x) - want) / want);
    }
    for (const x of [0, -1e-300, -0.01, -0.5, -1, -Math.LN2, -10, -87.3, -700]) worst = Math.max(worst, Math.abs(expNonPositive(x) - Math.exp(x)) / Math.exp(x));
    assert.ok(worst < 3e-15, `worst relative error ${worst}`);
    assert.equal(expNonPositive(0), 1);
    assert.ok(Math.abs(expNonPositive(-744) - Math.exp(-744)) < 2 ** -1074 * 2); // subnormal: within an ulp or two
    for (const x of [-746, -1e9, -Infinity, NaN]) assert.equal(expNonPositive(x), 0, String(x));
  });

  test('bad options throw clear errors', () => {
    assert.throws(() => new Sampler({ topP: 1.5 }), /topP must be in \(0, 1\], got 1.5/);
    assert.throws(() => new Sampler({ topP: 0 }), /topP/);
    assert.throws(() => new Sampler({ temperature: -1 }), /temperature must be .* got -1/);
    assert.throws(() => new Sampler({ temperature: NaN }), /temperature/);
    assert.throws(() => new Sampler({ topK: 2.5 }), /topK must be an integer >= 0, got 2.5/);
    assert.throws(() => new Sampler({ minP: 1.1 }), /minP must be in \[0, 1\], got 1.1/);
    assert.throws(() => new Sampler({ repetitionPenalty: 0 }), /repetitionPenalty/);
    assert.throws(() => new Sampler({ repetitionWindow: -1 }), /repetitionWindow/);
    assert.throws(() => new Sampler().sample(new Float32Array(0)), /empty/);
  });
});

describe('StopMatcher', () => {
  test('a stop string split across chunks is caught; text before it is emitted', () => {
    const m = new StopMatcher(['<|end|>']);
    assert.deepEqual(m.push('Hello <|'), { text: 'Hello ', stopped: false });
    assert.deepEqual(m.push('en'), { text: '', stopped: false });
    assert.deepEqual(m.push('d|> trailing'), { text: '', stopped: true, stop: '<|end|>' });
    assert.deepEqual(m.push('more'), { text: '', stopped: true, stop: '<|end|>' });
    assert.equal(m.flush(), '');
    assert.deepEqual(new StopMatcher(['\n\n', 'User:']).push('abc User: hi\n\n'), { text: 'abc ', stopped: true, stop: 'User:' });
  });

  test('false starts are released', () => {
    const m = new StopMatcher(['<|end|>']);
    assert.equal(m.push('a <|e').text, 'a ');
    assert.equal(m.push('x').text, '<|ex');
    assert.equal(m.push('tail <').text, 'tail ');
    assert.equal(m.push('<|en').text, '<');
    assert.equal(m.flush(), '<|en');
    assert.throws(() => new StopMatcher(['']), /non-empty/);
  });

  test('random chunking: emitted text is everything before the first stop string', () => {
    const rng = new Rng(12);
    const stops = ['aab', 'ba', 'cc'];
    for (let n = 0; n < 3000; n++) {
      const s = Array.from({ length: rng.int(20) }, () => 'abc'[rng.int(3)]).join('');
      let cut = -1;
      for (const st of stops) {
        const i = s.indexOf(st);
        if (i >= 0 && (cut < 0 || i < cut)) cut = i;
      }
      const m = new StopMatcher(stops);
      let out = '', stopped = false;
      for (let i = 0; i < s.length && !stopped; ) {
        const j = i + 1 + rng.int(4);
        const r = m.push(s.slice(i, j));
        out += r.text;
        stopped = r.stopped;
        i = j;
      }
      out += m.flush();
      assert.equal(stopped, cut >= 0, s);
      assert.equal(out, cut >= 0 ? s.slice(0, cut) : s, s);
    }
  });
});
