// The learned escalation model (src/tiers/escalation.ts): the fit recovers known probabilities, the
// predictions put items the weak tier gets confidently wrong before items it is unsure but right about
// (what a margin cascade gets backwards), cross-fitting never predicts an item with a model that saw it,
// files round-trip and bad ones are refused naming the field, and the router escalates by the gain.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { EscalationModel, crossFitPredictions, type EscalationExample } from '../src/tiers/escalation.js';

const dir = mkdtempSync(join(tmpdir(), 'stlm-escalation-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const fit = { weakTier: 'tiny', strongTier: 'small', source: 'test' };

/** A seeded stream in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * Two kinds of items, as on BLiMP: 'ever' pairs (an NPI licensing contrast) the weak tier gets wrong with
 * large margins and the strong tier gets right; 'agree' pairs (number agreement) the weak tier gets right
 * with small margins and the strong tier only half the time. Escalating by margin sends the 'agree'
 * items first (a loss); the right order is every 'ever' item first.
 */
function twoKinds(n: number, seed: number): (EscalationExample & { kind: 'ever' | 'agree' })[] {
  const r = rng(seed);
  const nouns = ['dog', 'teacher', 'child', 'pilot', 'doctor', 'cat', 'farmer', 'singer'];
  return [...Array(n).keys()].map((i) => {
    const noun = nouns[Math.floor(r() * nouns.length)];
    if (i % 2 === 0) {
      const good = `No ${noun} has ever left.`, bad = `The ${noun} has ever left.`;
      const margin = 3 + 4 * r(); // the bad sentence, confidently
      return { kind: 'ever', context: '', choices: [good, bad], values: [-20 - margin, -20], weakRight: false, strongRight: true };
    }
    const good = `The ${noun}s are here.`, bad = `The ${noun}s is here.`;
    const margin = 0.05 + 0.5 * r();
    return { kind: 'agree', context: '', choices: [good, bad], values: [-15, -15 - margin], weakRight: true, strongRight: r() < 0.5 };
  });
}

describe('escalation model', () => {
  test('the fit recovers the empirical rates of a model with one indicator per kind (the MLE)', () => {
    // Two kinds told apart only by a word; values identical, so nothing else separates them. With the
    // regularisation this small, the fitted P(right) per kind is the kind's observed rate.
    const r = rng(7);
    const ex: EscalationExample[] = [...Array(400).keys()].map((i) => {
      const word = i % 2 ? 'apple' : 'pear';
      return { context: '', choices: [`a ${word}`, 'a b'], values: [-1, -2], weakRight: r() < (word === 'apple' ? 0.7 : 0.2), strongRight: r() < 0.5 };
    });
    const rate = (w: string, k: 'weakRight' | 'strongRight') => { const xs = ex.filter((e) => e.choices[0].endsWith(w)); return xs.filter((e) => e[k]).length / xs.length; };
    const m = EscalationModel.learn(ex, fit, { l2: 1e-6, steps: 2000 });
    for (const w of ['apple', 'pear']) {
      const p = m.predict({ context: '', choices: [`a ${w}`, 'a b'], values: [-1, -2] });
      assert.ok(Math.abs(p.weak - rate(w, 'weakRight')) < 0.01, `${w}: P(weak right) ${p.weak} vs observed ${rate(w, 'weakRight')}`);
      assert.ok(Math.abs(p.strong - rate(w, 'strongRight')) < 0.01, `${w}: P(strong right) ${p.strong} vs observed ${rate(w, 'strongRight')}`);
      assert.ok(Math.abs(p.gain - (p.strong - p.weak)) < 1e-15);
    }
  });

  test('held-out predictions escalate the confidently wrong kind first, where the margin would escalate it last', () => {
    const ex = twoKinds(400, 3);
    const held = crossFitPredictions(ex, { folds: 2, seed: 5 });
    const ever = ex.flatMap((e, i) => (e.kind === 'ever' ? [held[i].gain] : [])), agree = ex.flatMap((e, i) => (e.kind === 'agree' ? [held[i].gain] : []));
    assert.ok(Math.min(...ever) > 0, `every 'ever' item's predicted gain is positive (min ${Math.min(...ever)})`);
    assert.ok(Math.max(...agree) < 0, `every 'agree' item's predicted gain is negative (max ${Math.max(...agree)})`);
    // The margin puts every 'agree' item (margins < 0.6) before every 'ever' one (margins > 3).
    const margin = (e: EscalationExample) => Math.abs(e.values[0] - e.values[1]);
    assert.ok(Math.max(...ex.filter((e) => e.kind === 'agree').map(margin)) < Math.min(...ex.filter((e) => e.kind === 'ever').map(margin)));
  });

  test('cross-fitting: each item is predicted by a model fit on the other parts only', () => {
    const ex = twoKinds(60, 11);
    const groups = ex.map((_, i) => `g${i % 3}`);
    const held = crossFitPredictions(ex, { groups });
    for (const g of ['g0', 'g1', 'g2']) {
      const m = EscalationModel.learn(ex.filter((_, i) => groups[i] !== g), { ...fit, weakTier: 'weak', strongTier: 'strong', source: 'cross-fit' });
      ex.forEach((e, i) => groups[i] === g && assert.deepEqual(held[i], m.predict(e)));
    }
    assert.throws(() => crossFitPredictions(ex, { folds: 1 }), /folds must be an integer in 2\.\.60, got 1/);
    assert.throws(() => crossFitPredictions(ex, { groups: ['a'] }), /1 group labels for 60 examples/);
  });

  test('a file round-trips to the same predictions; a malformed one is refused naming the field', () => {
    const ex = twoKinds(80, 2);
    const m = EscalationModel.learn(ex, fit);
    const path = join(dir, 'esc.json');
    writeFileSync(path, JSON.stringify(m.toJSON()));
    const back = EscalationModel.read(path);
    for (const e of ex) assert.deepEqual(back.predict(e), m.predict(e));
    // A choice of probability 0 (log −∞) gives a prediction, not NaN.
    const p0 = m.predict({ context: '', choices: ex[0].choices, values: [-3, -Infinity] });
    assert.ok([p0.weak, p0.strong, p0.gain].every(Number.isFinite), JSON.stringify(p0));
    assert.deepEqual(back.fit, { ...fit, items: 80, accWeak: 0.5, accStrong: m.fit.accStrong });
    const file = m.toJSON();
    const bad = (patch: object, re: RegExp) => {
      writeFileSync(path, JSON.stringify({ ...file, ...patch }));
      assert.throws(() => EscalationModel.read(path), re);
    };
    bad({ format: 'gguf' }, /esc\.json: format is "gguf", not "stlm-escalation"/);
    bad({ version: 2 }, /version is 2; this stlm reads version 1/);
    bad({ buckets: 0 }, /buckets is 0, not an integer/);
    bad({ weak: [[0, 1], [99999999, 1]] }, /weak\[1\] is \[99999999,1\], not \[bucket in 0\.\.16383, finite weight\]/);
    bad({ strong: 'x' }, /strong is not a list/);
    bad({ fit: {} }, /fit needs weakTier and strongTier/);
    writeFileSync(path, '{"format": ');
    assert.throws(() => EscalationModel.read(path), /escalation: cannot read .*esc\.json: /);
    assert.throws(() => EscalationModel.read(join(dir, 'none.json')), /cannot read .*none\.json: ENOENT/);
    assert.throws(() => EscalationModel.learn([ex[0]], fit), /1 examples; fitting needs at least 2/);
    assert.throws(() => EscalationModel.learn([ex[0], { ...ex[1], values: [1] }], fit), /example 1 has 2 choices and 1 values/);
  });
});
