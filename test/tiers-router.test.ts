// The router over fake tiers whose answers, confidences, costs and failures are set by the test:
// the choice under each constraint, the cascade's escalation by mean log-probability and by
// multiple-choice margin, fallback past a failing tier, streaming only the kept answer, and the
// decision records (why each tier answered, was skipped, escalated or failed).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EscalationModel, type EscalationExample } from '../src/tiers/escalation.js';
import { type RouteDecision, RouteError, type RouteTier, Router } from '../src/tiers/router.js';
import type { ContinuationScore, GenerateInput, GenerateOptions, GenerateResult, GenerateStream, LanguageModel, LanguageModelInfo, Tier } from '../src/tiers/types.js';

interface FakeBehaviour {
  text: string;
  meanLogprob?: number;
  meanEntropy?: number;
  fail?: string;
  /** Log-likelihood per choice, by choice text. */
  choices?: Record<string, number>;
  costUsd?: number;
}

class FakeModel implements LanguageModel {
  calls = 0;
  constructor(readonly name: string, readonly tier: Tier, readonly b: FakeBehaviour) {}
  info(): LanguageModelInfo {
    return { name: this.name, tier: this.tier, provider: 'local', runsOn: 'test' };
  }
  async generate(_input: GenerateInput, o: GenerateOptions = {}): Promise<GenerateResult> {
    this.calls++;
    if (this.b.fail) throw new Error(this.b.fail);
    for (const piece of this.b.text.split(/(?<= )/)) o.onText?.(piece);
    return { text: this.b.text, finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 4 }, timeToFirstTokenMs: 1, totalMs: 2, costUsd: this.b.costUsd ?? 0, model: this.name, meanLogprob: this.b.meanLogprob, meanEntropy: this.b.meanEntropy };
  }
  async *stream(input: GenerateInput, o: GenerateOptions = {}): GenerateStream {
    const r = await this.generate(input, o);
    yield r.text;
    return r;
  }
  async score(_context: string, continuations: string[]): Promise<ContinuationScore[]> {
    this.calls++;
    if (this.b.fail) throw new Error(this.b.fail);
    return continuations.map((c) => ({ logprob: this.b.choices?.[c] ?? -10, greedy: false, tokens: 1 }));
  }
  async tokenize(text: string): Promise<number[]> {
    return Array.from(new TextEncoder().encode(text));
  }
  async countTokens(text: string): Promise<number> {
    return (await this.tokenize(text)).length;
  }
  async close(): Promise<void> {}
}

const tiers = (b: Partial<Record<'tiny' | 'small' | 'large', FakeBehaviour>> = {}): RouteTier[] => [
  { name: 'large', tier: 'large', offline: false, price: { prompt: 3, completion: 15 }, latencyMs: 900, quality: 0.9, model: new FakeModel('large', 'large', b.large ?? { text: 'large answer', meanLogprob: -0.2, costUsd: 0.01 }) },
  { name: 'tiny', tier: 'tiny', offline: true, price: { prompt: 0, completion: 0 }, latencyMs: 50, memoryBytes: 5e6, quality: 0.4, model: new FakeModel('tiny', 'tiny', b.tiny ?? { text: 'tiny answer', meanLogprob: -0.5 }) },
  { name: 'small', tier: 'small', offline: true, price: { prompt: 0.01, completion: 0.01 }, latencyMs: 300, memoryBytes: 2e9, quality: 0.7, model: new FakeModel('small', 'small', b.small ?? { text: 'small answer', meanLogprob: -0.3 }) },
];
const calls = (t: RouteTier[], name: string) => (t.find((x) => x.name === name)!.model as FakeModel).calls;

describe('router: cheapest that fits', () => {
  test('the cheapest tier answers; constraints skip tiers, each with its reason', async () => {
    const t = tiers();
    const r = new Router(t, { policy: 'cheapest' });
    const a = await r.generate({ prompt: 'Hello' }, { maxTokens: 8 });
    assert.equal(a.model, 'tiny');
    assert.equal(a.text, 'tiny answer');
    assert.match(a.route.reason, /cheapest that fits/);
    const b = await r.generate({ prompt: 'Hello' }, { maxTokens: 8, constraints: { minQuality: 0.6 } });
    assert.equal(b.model, 'small');
    assert.deepEqual(b.route.attempts.find((x) => x.tier === 'tiny'), { tier: 'tiny', outcome: 'skipped', reason: 'quality 0.4 under the minimum 0.6', estimatedCostUsd: 0, estimatedLatencyMs: 50 });
    const c = await r.generate({ prompt: 'Hello' }, { constraints: { minQuality: 0.6, memoryBudgetBytes: 1e9 } });
    assert.equal(c.model, 'large');
    assert.match(c.route.attempts.find((x) => x.tier === 'small')!.reason, /over the memory budget of 1000000000/);
    await assert.rejects(r.generate({ prompt: 'Hello' }, { constraints: { minQuality: 0.8, offlineOnly: true } }), (e: RouteError) => {
      assert.ok(e instanceof RouteError);
      assert.match(e.message, /large: needs the network \(offline only\)/);
      assert.match(e.message, /tiny: quality 0.4 under the minimum 0.8/);
      return true;
    });
    const d = await r.generate({ prompt: 'x'.repeat(4000) }, { maxTokens: 1000, constraints: { maxCostUsd: 0.0001, minQuality: 0.5 } });
    assert.equal(d.model, 'small'); // large would cost 1000·3e-6 + 1000·15e-6 = $0.018
    assert.match(d.route.attempts.find((x) => x.tier === 'large')!.reason, /estimated \$0\.0180 over the maximum \$0\.0001/);
  });

  test('a failing tier falls back to the next, and the reason says so', async () => {
    const t = tiers({ tiny: { text: '', fail: 'tiny: model file missing' } });
    const decisions: RouteDecision[] = [];
    const r = new Router(t, { policy: 'cheapest', onDecision: (d) => decisions.push(d) });
    const a = await r.generate({ prompt: 'Hi' });
    assert.equal(a.model, 'small');
    assert.match(a.route.reason, /after tiny failed: tiny: model file missing/);
    assert.deepEqual(a.route.attempts.map((x) => [x.tier, x.outcome]), [['tiny', 'failed'], ['small', 'answered']]);
    assert.equal(decisions.length, 1);
  });
});

describe('router: cascade', () => {
  test('escalates while the mean log-probability is under the threshold; only the kept answer streams', async () => {
    const t = tiers({ tiny: { text: 'unsure tiny', meanLogprob: -3 }, small: { text: 'sure small ', meanLogprob: -0.4 } });
    const r = new Router(t, { policy: 'cascade', threshold: -1 });
    const pieces: string[] = [];
    const a = await r.generate({ prompt: 'Q' }, { onText: (p) => pieces.push(p) });
    assert.equal(a.model, 'small');
    assert.equal(pieces.join(''), 'sure small ');
    assert.deepEqual(a.route.attempts.map((x) => [x.tier, x.outcome]), [['tiny', 'escalated'], ['small', 'answered']]);
    assert.match(a.route.attempts[0].reason, /mean log-probability -3\.000 under the threshold -1/);
    assert.equal(calls(t, 'large'), 0);
    // Sure at once: the tiny tier answers and nothing else runs.
    const t2 = tiers({ tiny: { text: 'sure', meanLogprob: -0.1 } });
    const b = await new Router(t2, { policy: 'cascade', threshold: -1 }).generate({ prompt: 'Q' });
    assert.equal(b.model, 'tiny');
    assert.equal(calls(t2, 'small') + calls(t2, 'large'), 0);
  });

  test('the stream gives the kept answer, and the result carries the decision', async () => {
    const t = tiers({ tiny: { text: 'unsure', meanLogprob: -5 }, small: { text: 'also unsure', meanLogprob: -4 } });
    const it = new Router(t, { policy: 'cascade', threshold: -1 }).stream({ messages: [{ role: 'user', content: 'Q' }] });
    const got: string[] = [];
    let r = await it.next();
    while (!r.done) {
      got.push(r.value);
      r = await it.next();
    }
    assert.equal(got.join(''), 'large answer');
    assert.equal(r.value.model, 'large');
    assert.equal(r.value.costUsd, 0.01);
  });

  test('all stronger tiers fail after an unsure answer: the unsure answer is returned, not an error', async () => {
    const t = tiers({ tiny: { text: 'unsure', meanLogprob: -5 }, small: { text: '', fail: 'small: crashed' }, large: { text: '', fail: 'large: HTTP 503' } });
    const pieces: string[] = [];
    const r = await new Router(t, { policy: 'cascade', threshold: -1 }).generate({ prompt: 'Q' }, { onText: (p) => pieces.push(p) });
    assert.equal(r.model, 'tiny');
    assert.equal(pieces.join(''), 'unsure');
    assert.match(r.route.reason, /after small failed: small: crashed; large failed: large: HTTP 503/);
  });

  test('unsure answers and a failing last tier: the most confident unsure answer is kept; order and fallback from the config', async () => {
    const t = tiers({ tiny: { text: 'less unsure', meanLogprob: -3 }, small: { text: 'more unsure', meanLogprob: -5 }, large: { text: '', fail: 'large: down' } });
    const r = await new Router(t, { policy: 'cascade', threshold: -1 }).generate({ prompt: 'Q' });
    assert.deepEqual([r.model, r.text], ['tiny', 'less unsure']);
    // The last tier answers even when unsure: nothing stronger is left.
    const t2 = tiers({ tiny: { text: 'u', meanLogprob: -3 }, small: { text: 'u2', meanLogprob: -5 }, large: { text: 'weak large', meanLogprob: -4 } });
    const r2 = await new Router(t2, { policy: 'cascade', threshold: -1 }).generate({ prompt: 'Q' });
    assert.equal(r2.model, 'large');
    assert.match(r2.route.attempts[2].reason, /under the threshold -1; no stronger tier is left/);
    // A configured order replaces the cost order; fallback: false stops at the first failure.
    const t3 = tiers({ large: { text: '', fail: 'large: down' } });
    const ordered = new Router(t3, { policy: 'cheapest', order: ['large', 'small', 'tiny'], fallback: false });
    await assert.rejects(ordered.generate({ prompt: 'Q' }), /router: no tier answered \(large: large: down\)/);
    assert.equal(calls(t3, 'small') + calls(t3, 'tiny'), 0);
    assert.equal((await new Router(t3, { policy: 'cheapest', order: ['large', 'small', 'tiny'] }).generate({ prompt: 'Q' })).model, 'small');
    assert.throws(() => new Router(t3, { policy: 'cheapest', order: ['huge'] }), /order names 'huge', which is not a tier/);
  });

  test('confidence by entropy: escalates while the mean entropy is over the threshold', async () => {
    const t = tiers({ tiny: { text: 'unsure', meanLogprob: -0.1, meanEntropy: 3.2 }, small: { text: 'sure', meanLogprob: -5, meanEntropy: 0.4 } });
    const r = await new Router(t, { policy: 'cascade', threshold: 1.5, confidence: 'entropy' }).generate({ prompt: 'Q' });
    assert.equal(r.model, 'small');
    assert.deepEqual(r.route.attempts.map((a) => [a.tier, a.outcome, a.reason]), [
      ['tiny', 'escalated', 'mean entropy 3.200 over the threshold 1.5'],
      ['small', 'answered', 'mean entropy 0.400 at or under the threshold 1.5'],
    ]);
    // Every stronger tier fails: the least uncertain (lowest entropy) unsure answer is kept.
    const t2 = tiers({ tiny: { text: 'a', meanEntropy: 2.5 }, small: { text: 'b', meanEntropy: 2.0 }, large: { text: '', fail: 'large: down' } });
    const r2 = await new Router(t2, { policy: 'cascade', threshold: 1.5, confidence: 'entropy' }).generate({ prompt: 'Q' });
    assert.deepEqual([r2.model, r2.text], ['small', 'b']);
  });

  test('multiple choice: escalates when the margin between the two best choices is small', async () => {
    const t = tiers({
      tiny: { text: '', choices: { ' A': -2.0, ' B': -2.1 } },
      small: { text: '', choices: { ' A': -4, ' B': -1 } },
    });
    const r = new Router(t, { policy: 'cascade', choiceThreshold: 0.5 });
    const a = await r.choose('Question?', [' A', ' B']);
    assert.equal(a.index, 1);
    assert.equal(a.route.tier, 'small');
    assert.match(a.route.attempts[0].reason, /margin 0\.100 under the threshold 0\.5/);
    const t2 = tiers({ tiny: { text: '', choices: { ' A': -1, ' B': -3 } } });
    const b = await new Router(t2, { policy: 'cascade', choiceThreshold: 0.5 }).choose('Question?', [' A', ' B']);
    assert.deepEqual([b.index, b.route.tier], [0, 'tiny']);
  });

  test('multiple choice with a learned escalation model: escalates by predicted gain, not by margin', async () => {
    // Fit on items where the tiny tier is confidently wrong whenever a pair turns on 'ever', and right otherwise.
    const ex: EscalationExample[] = ['dog', 'cat', 'pilot', 'child', 'singer', 'farmer'].flatMap((n) => [
      { context: '', choices: [`No ${n} has ever left.`, `The ${n} has ever left.`], values: [-25, -20], weakRight: false, strongRight: true },
      { context: '', choices: [`The ${n}s are here.`, `The ${n}s is here.`], values: [-15, -15.2], weakRight: true, strongRight: false },
    ]);
    const escalation = EscalationModel.learn(ex, { weakTier: 'tiny', strongTier: 'small', source: 'test' });
    const sure = ['No doctor has ever left.', 'The doctor has ever left.'], unsure = ['The doctors are here.', 'The doctors is here.'];
    const t = tiers({
      tiny: { text: '', choices: { [sure[0]]: -26, [sure[1]]: -20, [unsure[0]]: -15, [unsure[1]]: -15.1 } },
      small: { text: '', choices: { [sure[0]]: -20, [sure[1]]: -26, [unsure[0]]: -16, [unsure[1]]: -15 } },
    });
    const r = new Router(t, { policy: 'cascade', choiceThreshold: 1, escalation: { tiny: escalation } });
    const a = await r.choose('', sure); // margin 6: a margin cascade would keep the tiny tier's wrong answer
    assert.deepEqual([a.index, a.route.tier], [0, 'small']);
    const p = escalation.predict({ context: '', choices: sure, values: [-26, -20] });
    assert.ok(p.gain > 0);
    assert.deepEqual(a.route.attempts[0].predicted, p);
    assert.equal(a.route.attempts[0].reason, `predicted gain of escalating ${p.gain.toFixed(3)} (P(right): small ${p.strong.toFixed(3)}, tiny ${p.weak.toFixed(3)}) over the threshold 0`);
    const b = await r.choose('', unsure); // margin 0.1: a margin cascade would escalate it
    assert.deepEqual([b.index, b.route.tier], [0, 'tiny']);
    assert.match(b.route.attempts[0].reason, /^predicted gain of escalating -0\.\d+ .* at or under the threshold 0$/);
    // A threshold of 1 (no gain is over it) keeps the tiny tier's answer. (The small tier, with no model, kept
    // the margin rule above: its margin 6 is over choiceThreshold 1, so it answered.)
    const high = await new Router(t, { policy: 'cascade', escalation: { tiny: escalation }, gainThreshold: 1 }).choose('', sure);
    assert.deepEqual([high.index, high.route.tier], [1, 'tiny']);
    assert.match(new Router(t, { policy: 'cascade', escalation: { tiny: escalation } }).explain({ prompt: 'x' }).reason, /^cascade \(escalates by the learned gain \(multiple choice\)\): tiny is/);
    assert.match(r.explain({ prompt: 'x' }).reason, /^cascade \(escalates under 1; multiple choice by the learned gain\): tiny is/);
    assert.throws(() => new Router(t, { policy: 'cascade', escalation: { huge: escalation } }), /an escalation model is given for 'huge', which is not a tier \(tiers: large, tiny, small\)/);
  });

  test('explain: the plan without running anything', () => {
    const t = tiers();
    const d = new Router(t, { policy: 'cascade', threshold: -1, constraints: { memoryBudgetBytes: 1e8 } }).explain({ prompt: 'Hello' }, { maxTokens: 100 });
    assert.equal(d.tier, 'tiny');
    assert.match(d.reason, /cascade \(escalates under -1\): tiny is the cheapest of 2 fitting tiers/);
    assert.deepEqual(d.attempts.map((a) => [a.tier, a.outcome]), [['small', 'skipped'], ['tiny', 'first'], ['large', 'next']]);
    assert.equal(calls(t, 'tiny') + calls(t, 'small') + calls(t, 'large'), 0);
  });

  test('bad setups are refused by name', () => {
    assert.throws(() => new Router([], { policy: 'cheapest' }), /router: no tiers/);
    assert.throws(() => new Router([...tiers(), tiers()[0]], { policy: 'cheapest' }), /two tiers are named 'large'/);
    assert.throws(() => new Router(tiers(), { policy: 'cascade' }), /cascade policy needs a threshold/);
  });
});
