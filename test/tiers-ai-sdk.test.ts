// The Vercel AI SDK adapter with the real `ai` package (6, the one for Node 18+; and 7 as `ai-v7`):
// generateText and streamText over the embedded model give LocalModel's own text for the same input and
// settings, chat messages with a system message, abort, warnings for what stlm does not support, and the
// Router through the SDK with its decision in providerMetadata.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateText, streamText } from 'ai';
import type { LanguageModel as LanguageModelAi7 } from 'ai-v7';
import * as ai7 from 'ai-v7';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { aiSdkModel } from '../src/tiers/ai-sdk.js';
import { LocalModel } from '../src/tiers/local.js';
import { type RouteDecision, Router } from '../src/tiers/router.js';
import type { GenerateInput, GenerateOptions, LanguageModel } from '../src/tiers/types.js';

// The SDK logs every warning to the console; the tests read them from the results instead.
(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));

let be: Backend;
let local: LocalModel, cheap: LocalModel, dear: LocalModel;
before(async () => {
  be = await createWasmBackend({ threads: 1 });
  local = await LocalModel.open(MODEL, { backend: be });
  cheap = await LocalModel.open(MODEL, { backend: be, name: 'cheap' });
  dear = await LocalModel.open(MODEL, { backend: be, name: 'dear' });
});
after(async () => {
  await Promise.all([local.close(), cheap.close(), dear.close()]);
  be.dispose();
});

const stlmMeta = (m: unknown) => (m as { stlm: Record<string, unknown> }).stlm;

describe('aiSdkModel: the AI SDK (ai 6) over LocalModel', () => {
  test('the model is a v3 spec model named after the stlm model', () => {
    const m = aiSdkModel(local);
    assert.equal(m.specificationVersion, 'v3');
    assert.equal(m.provider, 'stlm.local');
    assert.equal(m.modelId, 'default.gguf');
    assert.equal(aiSdkModel(local, { modelId: 'tiny' }).modelId, 'tiny');
  });

  test('generateText: a seed gives LocalModel.generate\'s text, usage and finish reason; stlm\'s extras in providerMetadata', async () => {
    const prompt = 'ROMEO:', settings = { maxTokens: 30, seed: 7, temperature: 0.7, topP: 0.9, topK: 40 };
    const want = await local.generate({ prompt }, settings);
    const r = await generateText({ model: aiSdkModel(local), prompt, maxOutputTokens: 30, seed: 7, temperature: 0.7, topP: 0.9, topK: 40 });
    assert.ok(want.text.length > 10, want.text);
    assert.equal(r.text, want.text);
    assert.equal(r.finishReason, 'length');
    assert.equal(r.rawFinishReason, 'length');
    assert.equal(r.usage.inputTokens, want.usage.promptTokens);
    assert.equal(r.usage.outputTokens, 30);
    assert.equal(r.usage.totalTokens, want.usage.promptTokens + 30);
    assert.deepEqual(r.warnings, []);
    const meta = stlmMeta(r.providerMetadata);
    assert.equal(meta.model, 'default.gguf');
    assert.equal(meta.costUsd, 0);
    assert.equal(typeof meta.timeToFirstTokenMs, 'number');
    assert.equal(typeof meta.totalMs, 'number');
    assert.ok(Math.abs((meta.meanLogprob as number) - want.meanLogprob!) < 1e-9, `${meta.meanLogprob} vs ${want.meanLogprob}`);
    assert.equal(r.response.modelId, 'default.gguf');
  });

  test('generateText: a stop sequence ends the text before it (finish reason stop)', async () => {
    const want = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 60, temperature: 0 });
    const cut = want.text.indexOf(' ', 5);
    assert.ok(cut > 0, want.text);
    const stop = want.text.slice(cut, cut + 3);
    const r = await generateText({ model: aiSdkModel(local), prompt: 'ROMEO:', maxOutputTokens: 60, temperature: 0, stopSequences: [stop] });
    assert.equal(r.text, want.text.slice(0, want.text.indexOf(stop)));
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.rawFinishReason, 'stop');
  });

  test('streamText: the same pieces as LocalModel.stream, then finish reason, usage and metadata', async () => {
    const prompt = 'JULIET:', pieces: string[] = [];
    const s = local.stream({ prompt }, { maxTokens: 25, seed: 3 });
    let end = await s.next();
    for (; !end.done; end = await s.next()) pieces.push(end.value);
    const r = streamText({ model: aiSdkModel(local), prompt, maxOutputTokens: 25, seed: 3 });
    const got: string[] = [];
    for await (const t of r.textStream) got.push(t);
    assert.deepEqual(got, pieces);
    assert.equal(await r.text, end.value.text);
    assert.equal(await r.finishReason, 'length');
    const u = await r.usage;
    assert.equal(u.inputTokens, end.value.usage.promptTokens);
    assert.equal(u.outputTokens, 25);
    assert.equal(stlmMeta(await r.providerMetadata).model, 'default.gguf');
    assert.deepEqual(await r.warnings, []);
  });

  test('streamText: fullStream parts in the spec\'s order (start, text-start, deltas, text-end, finish)', async () => {
    const r = streamText({ model: aiSdkModel(local), prompt: 'ROMEO:', maxOutputTokens: 5, temperature: 0 });
    const types: string[] = [];
    for await (const p of r.fullStream) if (types.at(-1) !== p.type) types.push(p.type);
    assert.deepEqual(types, ['start', 'start-step', 'text-start', 'text-delta', 'text-end', 'finish-step', 'finish']);
  });

  test('messages with a system message go through the chat template (as LocalModel.generate renders them)', async () => {
    const messages = [{ role: 'system' as const, content: 'You are terse.' }, { role: 'user' as const, content: 'Who art thou?' }];
    const want = await local.generate({ messages }, { maxTokens: 20, seed: 11 });
    const r = await generateText({ model: aiSdkModel(local), messages, allowSystemInMessages: true, maxOutputTokens: 20, seed: 11 });
    assert.equal(r.text, want.text);
    assert.equal(r.usage.inputTokens, want.usage.promptTokens);
    // The SDK's `system` option is the same system message.
    const r2 = await generateText({ model: aiSdkModel(local), system: 'You are terse.', messages: [messages[1]], maxOutputTokens: 20, seed: 11 });
    assert.equal(r2.text, want.text);
    // A multi-turn chat, the assistant's earlier turn included.
    const turns = [...messages, { role: 'assistant' as const, content: 'A friend.' }, { role: 'user' as const, content: 'Whose?' }];
    const want3 = await local.generate({ messages: turns }, { maxTokens: 15, temperature: 0 });
    const r3 = await generateText({ model: aiSdkModel(local), messages: turns, allowSystemInMessages: true, maxOutputTokens: 15, temperature: 0 });
    assert.equal(r3.text, want3.text);
  });

  test('a single user message is plain text to continue; chat: \'always\' sends it through the chat template', async () => {
    const prompt = 'KING HENRY:';
    const asText = await local.generate({ prompt }, { maxTokens: 12, temperature: 0 });
    const asChat = await local.generate({ messages: [{ role: 'user', content: prompt }] }, { maxTokens: 12, temperature: 0 });
    assert.notEqual(asText.usage.promptTokens, asChat.usage.promptTokens);
    const r = await generateText({ model: aiSdkModel(local), messages: [{ role: 'user', content: prompt }], maxOutputTokens: 12, temperature: 0 });
    assert.equal(r.text, asText.text);
    const r2 = await generateText({ model: aiSdkModel(local, { chat: 'always' }), prompt, maxOutputTokens: 12, temperature: 0 });
    assert.equal(r2.text, asChat.text);
    assert.equal(r2.usage.inputTokens, asChat.usage.promptTokens);
    const r3 = await generateText({ model: aiSdkModel(local), prompt, maxOutputTokens: 12, temperature: 0, providerOptions: { stlm: { chat: 'always' } } });
    assert.equal(r3.text, asChat.text);
  });

  test('unsupported settings and prompt parts: left out, each with the spec\'s warning', async () => {
    const r = await generateText({
      model: aiSdkModel(local), maxOutputTokens: 5, temperature: 0, frequencyPenalty: 0.5, presencePenalty: 0.1,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'ROMEO:' }, { type: 'image', image: new Uint8Array([137, 80, 78, 71]), mediaType: 'image/png' }] }],
    });
    const want = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 5, temperature: 0 });
    assert.equal(r.text, want.text);
    assert.deepEqual(r.warnings, [
      { type: 'unsupported', feature: 'presencePenalty', details: 'stlm has a repetition penalty instead: providerOptions.stlm.repetitionPenalty' },
      { type: 'unsupported', feature: 'frequencyPenalty', details: 'stlm has a repetition penalty instead: providerOptions.stlm.repetitionPenalty' },
      { type: 'unsupported', feature: 'file parts (image/png)', details: 'left out of the prompt: stlm models take text only' },
    ]);
    // stlm's own sampling settings through providerOptions.
    const rp = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, temperature: 0, repetitionPenalty: 1.5 });
    const r2 = await generateText({ model: aiSdkModel(local), prompt: 'ROMEO:', maxOutputTokens: 20, temperature: 0, providerOptions: { stlm: { repetitionPenalty: 1.5 } } });
    assert.equal(r2.text, rp.text);
  });

  test('a tool the model cannot call: a warning, and the text as without it', async () => {
    const { tool, jsonSchema } = await import('ai');
    const weather = tool({ description: 'Weather', inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } } }) });
    const r = await generateText({ model: aiSdkModel(local), prompt: 'ROMEO:', maxOutputTokens: 5, temperature: 0, tools: { weather } });
    assert.deepEqual((r.warnings ?? []).map((w) => w.type === 'unsupported' && w.feature), ['tools']);
  });

  test('abort: streamText stops when the signal fires; generateText rejects with the AbortError', async () => {
    const ac = new AbortController();
    const r = streamText({ model: aiSdkModel(local), prompt: 'ROMEO:', maxOutputTokens: 200, temperature: 0, abortSignal: ac.signal });
    let n = 0;
    const types: string[] = [];
    for await (const p of r.fullStream) {
      types.push(p.type);
      if (p.type === 'text-delta' && ++n === 3) ac.abort();
    }
    assert.ok(types.includes('abort'), types.join(' '));
    assert.ok(n < 10, `${n} deltas after the abort`);

    // The model aborts the request itself once it has its first piece of text (no timer: deterministic).
    const ac2 = new AbortController();
    const abortsAtFirstText: LanguageModel = Object.assign(Object.create(local) as LocalModel, {
      generate: (input: GenerateInput, o: GenerateOptions = {}) => local.generate(input, { ...o, onText: () => ac2.abort() }),
    });
    await assert.rejects(generateText({ model: aiSdkModel(abortsAtFirstText), prompt: 'ROMEO:', maxOutputTokens: 200, temperature: 0, abortSignal: ac2.signal, maxRetries: 0 }), (e: Error) => e.name === 'AbortError');
    assert.ok(ac2.signal.aborted);
  });

  test('doStream directly: an abort ends the stream with finish reason other (raw \'abort\'); a cancel frees the session', async () => {
    const m = aiSdkModel(local);
    const ac = new AbortController();
    const { stream } = await m.doStream({ prompt: [{ role: 'user', content: [{ type: 'text', text: 'ROMEO:' }] }], maxOutputTokens: 200, temperature: 0, abortSignal: ac.signal });
    const parts: { type: string; finishReason?: unknown }[] = [];
    const rd = stream.getReader();
    for (let x = await rd.read(); !x.done; x = await rd.read()) {
      const p = x.value;
      parts.push(p);
      if (p.type === 'text-delta' && parts.length === 4) ac.abort();
    }
    assert.deepEqual(parts.map((p) => p.type), ['stream-start', 'text-start', 'text-delta', 'text-delta', 'text-end', 'response-metadata', 'finish']);
    assert.deepEqual(parts.at(-1)!.finishReason, { unified: 'other', raw: 'abort' });
    // A reader that stops early cancels the stream; the model is free for the next request.
    const { stream: s2 } = await m.doStream({ prompt: [{ role: 'user', content: [{ type: 'text', text: 'ROMEO:' }] }], maxOutputTokens: 200, temperature: 0 });
    const reader = s2.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    const after = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 3, temperature: 0 });
    assert.equal(after.usage.completionTokens, 3);
  });

  test('an error from the model is an error part in the stream, and a rejection from generateText', async () => {
    const closed = await LocalModel.open(MODEL, { backend: be });
    await closed.close();
    const errors: unknown[] = [];
    const r = streamText({ model: aiSdkModel(closed), prompt: 'ROMEO:', onError: ({ error }) => void errors.push(error) });
    const types: string[] = [];
    for await (const p of r.fullStream) types.push(p.type);
    assert.ok(types.includes('error'), types.join(' '));
    assert.match(String((errors[0] as Error).message), /closed/);
    await assert.rejects(generateText({ model: aiSdkModel(closed), prompt: 'ROMEO:', maxRetries: 0 }), /closed/);
  });
});

describe('aiSdkModel: the Router through the AI SDK', () => {
  const router = () => new Router([
    { name: 'dear', tier: 'small', offline: true, price: { prompt: 2, completion: 4 }, model: dear },
    { name: 'cheap', tier: 'tiny', offline: true, price: { prompt: 0.1, completion: 0.2 }, model: cheap },
  ], { policy: 'cheapest' });

  test('generateText: the cheapest tier answers, and the decision is in providerMetadata.stlm.route', async () => {
    const want = await cheap.generate({ prompt: 'ROMEO:' }, { maxTokens: 15, seed: 2 });
    const m = aiSdkModel(router());
    assert.equal(m.provider, 'stlm.router');
    assert.equal(m.modelId, 'auto');
    const r = await generateText({ model: m, prompt: 'ROMEO:', maxOutputTokens: 15, seed: 2 });
    assert.equal(r.text, want.text);
    assert.equal(r.response.modelId, 'cheap');
    const meta = stlmMeta(r.providerMetadata);
    assert.equal(meta.model, 'cheap');
    const route = meta.route as unknown as RouteDecision;
    assert.equal(route.tier, 'cheap');
    assert.equal(route.reason, 'cheapest that fits');
    assert.deepEqual(route.attempts.map((a) => [a.tier, a.outcome]), [['cheap', 'answered']]);
    assert.equal(typeof route.attempts[0].estimatedCostUsd, 'number');
  });

  test('providerOptions.stlm.constraints are the request\'s constraints (here: the cheap tier is over the memory budget)', async () => {
    const r = new Router([
      { name: 'dear', tier: 'small', offline: true, price: { prompt: 2, completion: 4 }, memoryBytes: 1e6, model: dear },
      { name: 'cheap', tier: 'tiny', offline: true, price: { prompt: 0.1, completion: 0.2 }, memoryBytes: 1e9, model: cheap },
    ], { policy: 'cheapest' });
    const g = await generateText({ model: aiSdkModel(r), prompt: 'ROMEO:', maxOutputTokens: 5, temperature: 0, providerOptions: { stlm: { constraints: { memoryBudgetBytes: 1e7 } } } });
    const route = stlmMeta(g.providerMetadata).route as unknown as RouteDecision;
    assert.equal(route.tier, 'dear');
    assert.deepEqual(route.attempts.map((a) => [a.tier, a.outcome]), [['cheap', 'skipped'], ['dear', 'answered']]);
    assert.match(route.attempts[0].reason, /over the memory budget/);
  });

  test('streamText: the chosen tier\'s text streams, the decision arrives with the finish', async () => {
    const want = await cheap.generate({ prompt: 'JULIET:' }, { maxTokens: 12, temperature: 0 });
    const r = streamText({ model: aiSdkModel(router()), prompt: 'JULIET:', maxOutputTokens: 12, temperature: 0 });
    let text = '';
    for await (const t of r.textStream) text += t;
    assert.equal(text, want.text);
    assert.equal((await r.response).modelId, 'cheap');
    const route = stlmMeta(await r.providerMetadata).route as unknown as RouteDecision;
    assert.equal(route.tier, 'cheap');
  });

  test('abort through the Router (which rejects with the AbortError): the SDK\'s stream ends, aborted', async () => {
    const ac = new AbortController();
    const r = streamText({ model: aiSdkModel(router()), prompt: 'ROMEO:', maxOutputTokens: 300, temperature: 0, abortSignal: ac.signal });
    const types: string[] = [];
    let n = 0;
    for await (const p of r.fullStream) {
      types.push(p.type);
      if (p.type === 'text-delta' && ++n === 2) ac.abort();
    }
    assert.ok(types.includes('abort'), types.join(' '));
    assert.ok(!types.includes('error'), types.join(' '));
  });
});

describe('aiSdkModel: ai 7 (spec v4) takes the v3 model as it is', () => {
  test('generateText and streamText give the same text as ai 6, with no compatibility warning', async () => {
    const model: LanguageModelAi7 = aiSdkModel(local); // the types accept it too
    const want = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, seed: 9 });
    const g = await ai7.generateText({ model, prompt: 'ROMEO:', maxOutputTokens: 20, seed: 9 });
    assert.equal(g.text, want.text);
    assert.deepEqual(g.warnings, []);
    assert.equal(g.usage.outputTokens, 20);
    assert.equal(stlmMeta(g.providerMetadata).model, 'default.gguf');
    const s = ai7.streamText({ model, prompt: 'ROMEO:', maxOutputTokens: 20, seed: 9 });
    let text = '';
    for await (const t of s.textStream) text += t;
    assert.equal(text, want.text);
    assert.equal(await s.finishReason, 'length');
  });
});

test('browser-safe: the compiled adapter imports nothing (its @ai-sdk/provider imports are types only)', () => {
  const file = fileURLToPath(new URL('../src/tiers/ai-sdk.js', import.meta.url));
  const seen = new Set<string>(), bad: string[] = [];
  const walk = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const m of readFileSync(f, 'utf8').matchAll(/^\s*(?:import|export)\s(?:[^;]*?\sfrom\s)?\s*['"]([^'"]+)['"]/gm)) {
      if (m[1].startsWith('.')) walk(resolve(dirname(f), m[1]));
      else bad.push(`${f}: ${m[1]}`);
    }
  };
  walk(file);
  assert.deepEqual(bad, []);
  assert.equal(seen.size, 1, [...seen].join(', '));
});
