// `stlm serve` through clients nobody here wrote, from npm (the official `openai` client has its own tests in
// server.test.ts): the Vercel AI SDK's OpenAI-compatible provider (@ai-sdk/openai-compatible 2.0.92, for
// `ai` 6: provider spec v3) and LangChain's @langchain/openai (ChatOpenAI, and the completions LLM). Each
// streams a chat whose text must be LocalModel's own for the same seed and sampling; scoring with
// log-probabilities goes through the clients that offer it (LangChain: chat logprobs, completions
// logprobs with echo, checked against score()); the AI SDK's provider has no log-probabilities, so it
// streams a completion instead.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI, OpenAI as LangChainOpenAI } from '@langchain/openai';
import { streamText } from 'ai';
import type { FastifyInstance } from 'fastify';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { createServer } from '../src/server/server.js';
import { LocalModel } from '../src/tiers/local.js';
import type { LanguageModel } from '../src/tiers/types.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const skip = !existsSync(MODEL) && 'the embedded default model is absent';

let be: Backend;
let lm: LocalModel;
let app: FastifyInstance;
let base: string;

before(async () => {
  if (skip) return;
  be = await createWasmBackend({ threads: 1 });
  lm = await LocalModel.open(MODEL, { backend: be, name: 'tiny' });
  app = createServer({ models: new Map<string, LanguageModel>([['tiny', lm]]) });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  if (skip) return;
  await app.close();
  await lm.close();
  be.dispose();
});

/** The server's sampling defaults are OpenAI's (min_p 0); LocalModel's direct call spells them out. */
const direct = (input: Parameters<LocalModel['generate']>[0], o: { maxTokens: number; seed: number; temperature: number; topP: number }) => lm.generate(input, { ...o, minP: 0 });

const messages = [{ role: 'system' as const, content: 'Speak as a king.' }, { role: 'user' as const, content: 'Who art thou?' }];

describe('the Vercel AI SDK (ai 6.0.333 + @ai-sdk/openai-compatible 2.0.92)', { skip }, () => {
  const provider = () => createOpenAICompatible({ name: 'stlm', baseURL: `${base}/v1`, apiKey: 'unused', includeUsage: true });

  test('streamText over the chat model: LocalModel\'s text for the seed; usage', async () => {
    const r = streamText({ model: provider().chatModel('tiny'), system: messages[0].content, messages: messages.slice(1), maxOutputTokens: 24, temperature: 0.8, topP: 0.95, seed: 11, maxRetries: 0 });
    let text = '';
    for await (const piece of r.textStream) text += piece;
    const d = await direct({ messages }, { maxTokens: 24, seed: 11, temperature: 0.8, topP: 0.95 });
    assert.equal(text, d.text);
    const usage = await r.usage;
    assert.equal(usage.outputTokens, d.usage.completionTokens);
    assert.equal(usage.inputTokens, d.usage.promptTokens);
    assert.equal(await r.finishReason, d.finishReason === 'length' ? 'length' : 'stop');
  });

  test('streamText over the completion model: LocalModel\'s text for the prompt the provider sent', async () => {
    // The provider writes the prompt as its own chat-like text ("user:\n…"): record what it sends.
    const sent: Record<string, unknown>[] = [];
    const recording: typeof fetch = (url, init) => {
      sent.push(JSON.parse(String(init?.body)));
      return fetch(url, init);
    };
    const p = createOpenAICompatible({ name: 'stlm', baseURL: `${base}/v1`, apiKey: 'unused', includeUsage: true, fetch: recording });
    const r = streamText({ model: p.completionModel('tiny'), prompt: 'ROMEO:', maxOutputTokens: 16, temperature: 1, topP: 1, seed: 4, maxRetries: 0 });
    let text = '';
    for await (const piece of r.textStream) text += piece;
    assert.equal(sent.length, 1);
    assert.equal(sent[0].stream, true);
    assert.equal(typeof sent[0].prompt, 'string');
    assert.match(sent[0].prompt as string, /ROMEO:/);
    const d = await direct({ prompt: sent[0].prompt as string }, { maxTokens: 16, seed: 4, temperature: 1, topP: 1 });
    assert.equal(text, d.text);
    assert.equal((await r.usage).outputTokens, d.usage.completionTokens);
  });
});

describe('LangChain (@langchain/openai 1.5.8, @langchain/core 1.2.10)', { skip }, () => {
  const configuration = () => ({ baseURL: `${base}/v1` });

  test('ChatOpenAI streams a chat: LocalModel\'s text for the seed', async () => {
    const chat = new ChatOpenAI({ model: 'tiny', apiKey: 'unused', configuration: configuration(), temperature: 0.8, topP: 0.95, maxTokens: 24, maxRetries: 0, modelKwargs: { seed: 12 } });
    let text = '';
    for await (const chunk of await chat.stream(messages)) text += typeof chunk.content === 'string' ? chunk.content : '';
    const d = await direct({ messages }, { maxTokens: 24, seed: 12, temperature: 0.8, topP: 0.95 });
    assert.equal(text, d.text);
  });

  test('ChatOpenAI with logprobs: the tokens concatenate to the reply, each log-probability as the raw reply has it', async () => {
    const chat = new ChatOpenAI({ model: 'tiny', apiKey: 'unused', configuration: configuration(), temperature: 1, topP: 1, maxTokens: 12, maxRetries: 0, logprobs: true, topLogprobs: 2, modelKwargs: { seed: 3 } });
    const msg = await chat.invoke(messages);
    const lp = msg.response_metadata.logprobs as { content: { token: string; logprob: number; top_logprobs: { token: string; logprob: number }[] }[] };
    const raw = await (await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages, temperature: 1, top_p: 1, max_tokens: 12, seed: 3, logprobs: true, top_logprobs: 2 }),
    })).json();
    assert.equal(msg.content, raw.choices[0].message.content);
    assert.equal(lp.content.map((t) => t.token).join(''), msg.content);
    assert.deepEqual(lp.content.map((t) => t.logprob), raw.choices[0].logprobs.content.map((t: { logprob: number }) => t.logprob));
    for (const t of lp.content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 2);
    }
  });

  test('the completions LLM scores with echo + logprobs: the continuation\'s sum equals score() within 1e-4', async () => {
    const llm = new LangChainOpenAI({ model: 'tiny', apiKey: 'unused', configuration: configuration(), maxTokens: 0, temperature: 0, maxRetries: 0, modelKwargs: { echo: true, logprobs: 1 } });
    const context = 'JULIET: O Romeo, Romeo,', continuation = ' wherefore art thou Romeo?';
    const r = await llm.generate([context + continuation]);
    const info = r.generations[0][0].generationInfo as { logprobs: { tokens: string[]; token_logprobs: (number | null)[]; text_offset: number[] } };
    const lp = info.logprobs;
    assert.equal(lp.tokens.join(''), context + continuation);
    const start = lp.text_offset.findIndex((o) => o >= context.length);
    const sum = lp.token_logprobs.slice(start).reduce<number>((a, x) => a + (x as number), 0);
    const [expected] = await lm.score(context, [continuation]);
    assert.ok(Math.abs(sum - expected.logprob) < 1e-4, `${sum} vs score() ${expected.logprob}`);
  });
});
