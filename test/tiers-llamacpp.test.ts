// The llamacpp tier (src/tiers/llamacpp.ts): a GGUF file through node-llama-cpp as a LanguageModel,
// checked against stlm's own engine on the same file (the tiny-random fixture with its Llama-2
// vocabulary, and the embedded byte-level model): greedy generation gives stlm's greedy tokens, score
// gives stlm's score() within 2e-3 per token; streaming, stop strings, abort, chat templates, seeds,
// tokenize and info; a missing file and a missing package each give one clear line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import { score } from '../src/generate/score.js';
import { type ModelHandle, openModel } from '../src/io/open.js';
import { contextOptions, loadLlamaCpp } from '../src/interop/llamacpp.js';
import { LlamaCppModel, openLlamaCppModel } from '../src/tiers/llamacpp.js';
import { languageModelInterface } from './tiers-interface.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const TINY_RANDOM = `${FIXTURES}models/tiny-random-llama/llama-2-tiny-random.gguf`;
const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const TIERS_MODULE = fileURLToPath(new URL('../src/tiers/llamacpp.js', import.meta.url));

// Both files prepend BOS to a prompt in llama.cpp (a SentencePiece vocabulary; add_bos_token = true).
const MODELS = [
  { name: 'tiny-random (F16, Llama-2 vocabulary)', path: TINY_RANDOM, prompt: 'Once upon a time, in a land far away', context: 'The capital of France is', choices: [' Paris', ' London', ' a city by the sea', 'Paris'] },
  { name: 'the embedded model (byte-level)', path: DEFAULT_MODEL, prompt: 'ROMEO:', context: 'KING RICHARD III:\nWhat', choices: [" o'clock?", ' is', ' news', 'ünïcödé 🙂'] },
];

let unavailable = '';
before(async () => {
  const r = await loadLlamaCpp();
  if (typeof r === 'string') unavailable = `skipped: ${r}`;
});

for (const m of MODELS) {
  describe(`llamacpp tier: ${m.name}`, { skip: !existsSync(m.path) && `fixture ${m.path} is absent` }, () => {
    let cpp: LlamaCppModel | undefined;
    let stlm: ModelHandle;
    before(async () => {
      stlm = await openModel(m.path);
      if (!unavailable) cpp = await openLlamaCppModel(m.path, { kvCacheType: 'F32', threads: 1 });
    });
    after(async () => {
      stlm?.dispose();
      await cpp?.close();
    });
    const need = (t: (c: LlamaCppModel) => Promise<void>) => async (ctx: { skip(msg: string): void }) => (cpp ? t(cpp) : ctx.skip(unavailable));

    test('info: tier, parameters, file bytes, context, quantization', need(async (c) => {
      const i = c.info();
      assert.equal(i.provider, 'llamacpp');
      assert.equal(i.tier, 'small');
      assert.equal(i.runsOn, 'llama.cpp in this process');
      assert.equal(i.parameters, stlm.parameters);
      assert.equal(i.fileBytes, statSync(m.path).size);
      assert.equal(i.contextLength, Math.min(stlm.config.ctx, 4096));
      assert.equal(i.quantization, m.path === TINY_RANDOM ? 'f16' : 'f32');
      assert.equal(i.pricePerMillion, undefined);
    }));

    test('tokenize and countTokens equal stlm\'s tokenizer', need(async (c) => {
      for (const text of [m.prompt, m.context + m.choices[2], 'ünïcödé 日本語 🙂']) {
        assert.deepEqual(await c.tokenize(text), Array.from(stlm.tokenizer.encode(text)));
        assert.equal(await c.countTokens(text), stlm.tokenizer.encode(text).length);
      }
    }));

    test('greedy generate equals stlm\'s greedy tokens and text; the stream gives the same pieces', need(async (c) => {
      const ours = generate(stlm.model, stlm.tokenizer, m.prompt, { temperature: 0, maxTokens: 40, addBos: true });
      const pieces: string[] = [];
      const r = await c.generate({ prompt: m.prompt }, { temperature: 0, maxTokens: 40, onText: (t) => pieces.push(t) });
      assert.deepEqual(r.tokens, ours.tokens);
      assert.equal(r.text, ours.text);
      assert.equal(pieces.join(''), r.text);
      assert.deepEqual(r.usage, { promptTokens: ours.promptTokens, completionTokens: ours.tokens.length });
      assert.equal(r.finishReason, 'length');
      assert.equal(r.model, c.info().name);
      assert.equal(r.costUsd, 0);
      assert.ok(r.timeToFirstTokenMs >= 0 && r.timeToFirstTokenMs <= r.totalMs);
      assert.ok(r.meanLogprob! < 0 && Number.isFinite(r.meanLogprob!), `meanLogprob ${r.meanLogprob}`);
      // The same through stream(): pieces, then the result as the iterator's return value.
      const it = c.stream({ prompt: m.prompt }, { temperature: 0, maxTokens: 40 });
      const streamed: string[] = [];
      let n = await it.next();
      while (!n.done) { streamed.push(n.value); n = await it.next(); }
      assert.equal(streamed.join(''), r.text);
      assert.deepEqual(n.value.usage, r.usage);
      assert.ok(streamed.length > 1);
    }));

    test('score equals stlm\'s score() within 2e-3 per token (lm-evaluation-harness continuation tokens)', need(async (c) => {
      // The greedy continuation itself is one choice: greedy in both engines (where its text tokenizes back to the same tokens).
      const g = generate(stlm.model, stlm.tokenizer, m.context, { temperature: 0, maxTokens: 6, addBos: true });
      const choices = [...m.choices, g.text];
      const theirs = await c.score(m.context, choices);
      const ctxIds = [stlm.tokenizer.bos!, ...stlm.tokenizer.encode(m.context)];
      const contIds = choices.map((ch) => {
        const whole = Array.from(stlm.tokenizer.encode(m.context + ch)), ctx = ctxIds.slice(1);
        return ctx.every((t, i) => whole[i] === t) ? whole.slice(ctx.length) : Array.from(stlm.tokenizer.encode(ch));
      });
      const ours = score(stlm.model, ctxIds, contIds).continuations;
      let worst = 0;
      theirs.forEach((t, i) => {
        assert.equal(t.tokens, contIds[i].length, `tokens of choice ${i}`);
        assert.equal(t.greedy, ours[i].greedy, `greedy of choice ${i}`);
        t.tokenLogprobs.forEach((lp, j) => (worst = Math.max(worst, Math.abs(lp - ours[i].tokenLogprobs[j]))));
        assert.ok(Math.abs(t.logprob - t.tokenLogprobs.reduce((a, b) => a + b, 0)) < 1e-9);
      });
      assert.ok(worst < 2e-3, `max |log p difference| per token ${worst}`);
      if (contIds.at(-1)!.join() === g.tokens.join()) assert.equal(theirs.at(-1)!.greedy, true);
      assert.ok(m.path === TINY_RANDOM || theirs.at(-1)!.greedy, 'the byte-level model\'s greedy text is greedy');
      // A context the sequence already holds is reused: the same request again gives the same numbers.
      const again = await c.score(m.context, choices);
      again.forEach((t, i) => assert.ok(Math.abs(t.logprob - theirs[i].logprob) < 1e-4));
      await assert.rejects(c.score(m.context, ['']), /continuation 0 is empty/);
    }));

    test('stop strings end the text before them; maxTokens 0 gives the prompt\'s usage only', need(async (c) => {
      const full = await c.generate({ prompt: m.prompt }, { temperature: 0, maxTokens: 40 });
      const stop = full.text.slice(6, 9);
      const r = await c.generate({ prompt: m.prompt }, { temperature: 0, maxTokens: 40, stop: [stop] });
      assert.equal(r.finishReason, 'stop');
      assert.equal(r.text, full.text.slice(0, full.text.indexOf(stop)));
      const none = await c.generate({ prompt: m.prompt }, { maxTokens: 0 });
      assert.deepEqual([none.text, none.usage.completionTokens, none.usage.promptTokens], ['', 0, full.usage.promptTokens]);
      await assert.rejects(c.generate({ prompt: m.prompt }, { temperature: -1 }), /temperature must be/);
    }));

    test('seed: the same seed repeats a sampled generation, another seed changes it', need(async (c) => {
      const o = { temperature: 1, topK: 0, topP: 1, maxTokens: 24 };
      const a = await c.generate({ prompt: m.prompt }, { ...o, seed: 7 });
      const b = await c.generate({ prompt: m.prompt }, { ...o, seed: 7 });
      const d = await c.generate({ prompt: m.prompt }, { ...o, seed: 8 });
      assert.deepEqual(a.tokens, b.tokens);
      assert.notDeepEqual(a.tokens, d.tokens);
      const p = await c.generate({ prompt: m.prompt }, { ...o, seed: 7, topK: 5, minP: 0.01, topP: 0.9, repetitionPenalty: 1.3 });
      assert.equal(p.usage.completionTokens, 24);
    }));

    test('abort: a stream ends, generate and score reject with an AbortError', need(async (c) => {
      const ac = new AbortController();
      const it = c.stream({ prompt: m.prompt }, { temperature: 0, maxTokens: 200, signal: ac.signal });
      const first = await it.next();
      assert.equal(first.done, false);
      ac.abort();
      let n = await it.next();
      while (!n.done) n = await it.next();
      assert.equal(n.value.finishReason, 'abort');
      assert.ok(n.value.usage.completionTokens < 200);
      const ac2 = new AbortController();
      await assert.rejects(c.generate({ prompt: m.prompt }, { temperature: 0, maxTokens: 200, signal: ac2.signal, onText: () => ac2.abort() }), { name: 'AbortError' });
      await assert.rejects(c.generate({ prompt: m.prompt }, { signal: AbortSignal.abort() }), { name: 'AbortError' });
      await assert.rejects(c.score(m.context, m.choices, { signal: AbortSignal.abort() }), { name: 'AbortError' });
      // The model still answers afterwards, as before.
      const ours = generate(stlm.model, stlm.tokenizer, m.prompt, { temperature: 0, maxTokens: 8, addBos: true });
      assert.deepEqual((await c.generate({ prompt: m.prompt }, { temperature: 0, maxTokens: 8 })).tokens, ours.tokens);
    }));

    test('chat messages go through the model\'s chat template', need(async (c) => {
      const messages = [{ role: 'system' as const, content: 'Answer briefly.' }, { role: 'user' as const, content: 'Who are you?' }];
      const r = await c.generate({ messages }, { temperature: 0, maxTokens: 16 });
      const content = messages.reduce((n, x) => n + stlm.tokenizer.encode(x.content).length, 0);
      assert.ok(r.usage.promptTokens > content, `the template adds tokens: ${r.usage.promptTokens} > ${content}`);
      assert.ok(['length', 'eos', 'stop'].includes(r.finishReason));
      assert.ok(c.chatTemplate().length > 0);
      // The template's own stop triggers end the reply: none is in the text.
      assert.ok(!/### Human|\[INST\]/.test(r.text), JSON.stringify(r.text));
    }));
  });
}

test('llama.cpp gets one thread per core unless told: never node-llama-cpp\'s default of at least 4', () => {
  // With 4 threads on this 2-core machine llama.cpp's threads spun at its barriers: 32 greedy tokens of
  // a 13M model took 21.6 s, against 0.40 s with 2 threads.
  assert.equal(contextOptions({}, 256).threads, availableParallelism());
  assert.equal(contextOptions({ threads: 1 }, 256).threads, 1);
});

describe('llamacpp tier: bad input', () => {
  test('a missing file gives one line naming it', async () => {
    const err = await openLlamaCppModel('/nonexistent/model.gguf').catch((e: Error) => e);
    assert.ok(err instanceof Error);
    assert.equal(err.message, '/nonexistent/model.gguf: no such model file (the llamacpp tier runs a GGUF file)');
  });

  test('a file that is not GGUF gives one line naming it', async () => {
    const err = await openLlamaCppModel(fileURLToPath(import.meta.url)).catch((e: Error) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /tiers-llamacpp\.test\.js/);
    assert.ok(!err.message.includes('\n'), err.message);
  });

  test('without node-llama-cpp: one line saying how to install it', { skip: !existsSync(TINY_RANDOM) && 'the tiny-random fixture is absent' }, () => {
    // A module resolve hook hides the package, as an install without optional dependencies would.
    const hook = `export async function resolve(s, c, next) { if (s === 'node-llama-cpp') { const e = new Error("Cannot find package 'node-llama-cpp'"); e.code = 'ERR_MODULE_NOT_FOUND'; throw e; } return next(s, c); }`;
    const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`;
    const script = `const { openLlamaCppModel } = await import(${JSON.stringify(TIERS_MODULE)}); try { await openLlamaCppModel(${JSON.stringify(TINY_RANDOM)}); console.log('opened'); } catch (e) { console.log(e.name + ': ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.stdout, 'LlamaCppUnavailableError: node-llama-cpp is not installed; install it with: npm install node-llama-cpp@3.21.1\n', r.stderr);
  });
});

// The same interface checks every tier passes (tiers-interface.ts), on the embedded model through llama.cpp.
describe('llamacpp tier: the shared interface', { skip: !existsSync(DEFAULT_MODEL) && `${DEFAULT_MODEL} is absent` }, () => {
  let shared: LlamaCppModel | undefined;
  before(async () => {
    if (!unavailable) shared = await openLlamaCppModel(DEFAULT_MODEL, { kvCacheType: 'F32', threads: 1 });
  });
  after(async () => shared?.close());
  languageModelInterface('LlamaCppModel (models/default.gguf through llama.cpp)', () => shared!, { unavailable: () => unavailable || false });
});
