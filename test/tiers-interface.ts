// The checks every LanguageModel passes, whatever the tier (not a test file itself: tiers-local.test.ts
// and tiers-openai.test.ts apply it to their models). Generation must be reproducible for a given seed.
import assert from 'node:assert/strict';
import { describe, test as nodeTest } from 'node:test';
import type { GenerateResult, GenerateStream, LanguageModel } from '../src/tiers/types.js';

export interface InterfaceOptions {
  prompt?: string;
  seed?: number;
  maxTokens?: number;
  /** Whether tokenize() works (an endpoint without /tokenize throws instead). */
  tokenizes?: boolean;
  /** Why the model cannot be had here (checked when each test runs: the tests then skip, saying so). */
  unavailable?: () => string | false;
}

/** Drains a stream: its pieces and its result. */
export async function drain(s: GenerateStream): Promise<{ pieces: string[]; result: GenerateResult }> {
  const pieces: string[] = [];
  for (;;) {
    const r = await s.next();
    if (r.done) return { pieces, result: r.value };
    pieces.push(r.value);
  }
}

/** A result's fields have the right types and agree with each other. */
export function assertResultShape(r: GenerateResult, maxTokens: number): void {
  assert.equal(typeof r.text, 'string');
  assert.ok(['stop', 'length', 'eos', 'abort'].includes(r.finishReason), r.finishReason);
  for (const k of ['promptTokens', 'completionTokens'] as const) assert.ok(Number.isInteger(r.usage[k]) && r.usage[k] >= 0, `usage.${k} = ${r.usage[k]}`);
  assert.ok(r.usage.completionTokens <= maxTokens, `${r.usage.completionTokens} completion tokens > maxTokens ${maxTokens}`);
  assert.ok(r.timeToFirstTokenMs >= 0 && r.timeToFirstTokenMs <= r.totalMs, `ttft ${r.timeToFirstTokenMs} > total ${r.totalMs}`);
  assert.ok(Number.isFinite(r.costUsd) && r.costUsd >= 0);
  assert.equal(typeof r.model, 'string');
  if (r.meanLogprob !== undefined) assert.ok(Number.isFinite(r.meanLogprob) && r.meanLogprob <= 0, `meanLogprob ${r.meanLogprob}`);
  if (r.meanEntropy !== undefined) assert.ok(Number.isFinite(r.meanEntropy) && r.meanEntropy >= 0, `meanEntropy ${r.meanEntropy}`);
}

/** The shared checks, as a describe block over the model `get()` returns (made in the caller's before()). */
export function languageModelInterface(label: string, get: () => LanguageModel, o: InterfaceOptions = {}): void {
  const prompt = o.prompt ?? 'ROMEO:', seed = o.seed ?? 11, maxTokens = o.maxTokens ?? 24;
  // Each check skips, with the reason, where the model cannot be had (a provider whose engine is missing).
  const test = (name: string, fn: () => unknown) =>
    nodeTest(name, async (t) => {
      const why = o.unavailable?.();
      if (why) return t.skip(why);
      await fn();
    });
  describe(`LanguageModel interface: ${label}`, () => {
    test('info() names the model, its tier, provider and where it runs', () => {
      const i = get().info();
      assert.ok(i.name && i.runsOn);
      assert.ok(['tiny', 'small', 'large'].includes(i.tier));
      assert.ok(['local', 'llamacpp', 'openai', 'router'].includes(i.provider));
    });

    test('generate: a well-formed result; stream and onText give the same text for the same seed', async () => {
      const m = get();
      const g = await m.generate({ prompt }, { maxTokens, seed });
      assertResultShape(g, maxTokens);
      assert.ok(g.text.length > 0, 'some text');
      assert.ok(g.usage.promptTokens > 0);
      const s = await drain(m.stream({ prompt }, { maxTokens, seed }));
      assert.equal(s.pieces.join(''), g.text);
      assert.equal(s.result.text, g.text);
      assertResultShape(s.result, maxTokens);
      assert.deepEqual(s.result.usage, g.usage);
      const seen: string[] = [];
      const c = await m.generate({ prompt }, { maxTokens, seed, onText: (t) => seen.push(t) });
      assert.equal(seen.join(''), g.text);
      assert.equal(c.text, g.text);
    });

    test('generate: chat messages get a reply', async () => {
      const r = await get().generate({ messages: [{ role: 'system', content: 'Speak as a player.' }, { role: 'user', content: 'Who goes there?' }] }, { maxTokens, seed });
      assertResultShape(r, maxTokens);
      assert.ok(r.usage.promptTokens > 0);
    });

    test('score: one result per continuation; the greedy continuation is greedy and likelier', async () => {
      const m = get();
      const greedy = (await m.generate({ prompt }, { maxTokens: 6, temperature: 0 })).text;
      assert.ok(greedy.length > 0);
      const scores = await m.score(prompt, [greedy, ' zqxv']);
      assert.equal(scores.length, 2);
      for (const s of scores) {
        assert.ok(Number.isFinite(s.logprob) && s.logprob <= 0, `logprob ${s.logprob}`);
        assert.ok(Number.isInteger(s.tokens) && s.tokens >= 1);
        assert.equal(typeof s.greedy, 'boolean');
      }
      assert.equal(scores[0].greedy, true, `the greedy text ${JSON.stringify(greedy)} scores as greedy`);
      assert.equal(scores[1].greedy, false);
      assert.ok(scores[0].logprob > scores[1].logprob);
    });

    test('abort: a stream ends with finishReason abort; generate rejects with an AbortError', async () => {
      const m = get();
      const ctl = new AbortController();
      const s = m.stream({ prompt }, { maxTokens: 200, seed, signal: ctl.signal });
      const first = await s.next();
      assert.equal(first.done, false);
      ctl.abort();
      const rest = await drain(s);
      assert.equal(rest.result.finishReason, 'abort');
      assert.ok(rest.result.text.startsWith(first.value as string));
      assert.ok(rest.pieces.length <= 2, `${rest.pieces.length} pieces after the abort`);
      const gone = new AbortController();
      gone.abort();
      await assert.rejects(m.generate({ prompt }, { maxTokens, signal: gone.signal }), { name: 'AbortError' });
      await assert.rejects(m.score(prompt, [' a'], { signal: gone.signal }), { name: 'AbortError' });
    });

    if (o.tokenizes !== false) {
      test('tokenize and countTokens agree', async () => {
        const m = get();
        const ids = await m.tokenize('To be, or not to be');
        assert.ok(ids.length > 0 && ids.every((id) => Number.isInteger(id) && id >= 0));
        assert.equal(await m.countTokens('To be, or not to be'), ids.length);
      });
    }
  });
}
