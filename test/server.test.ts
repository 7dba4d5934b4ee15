// `stlm serve` (src/server/) on loopback, port 0, serving the embedded model as 'tiny', the router over it
// as 'auto', and a stub model ('slow') that streams until it is told to stop: the official `openai` npm
// client (chat, streaming chat, completions with logprobs and echo), our own OpenAIModel (the served text
// for a seed is LocalModel's own), lm-evaluation-harness's loglikelihood request against score(), raw
// HTTP for every error case, a client that disconnects mid-stream, and a bounded fuzz run.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { score } from '../src/generate/score.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { TEXT_SLOT, createServer, textChunkEvent } from '../src/server/server.js';
import { RequestQueue } from '../src/server/queue.js';
import { LocalModel } from '../src/tiers/local.js';
import { OpenAIModel } from '../src/tiers/openai.js';
import { Router } from '../src/tiers/router.js';
import type { GenerateInput, GenerateOptions, GenerateResult, GenerateStream, LanguageModel, LanguageModelInfo } from '../src/tiers/types.js';
import { drain, languageModelInterface } from './tiers-interface.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A model that streams 'x' every 5 ms until maxTokens or its signal: counts its runs and its aborts. */
class SlowModel implements LanguageModel {
  runs = 0;
  aborts = 0;
  active = 0;
  info(): LanguageModelInfo {
    return { name: 'slow', tier: 'tiny', provider: 'local', runsOn: 'this test' };
  }
  async *stream(_input: GenerateInput, o: GenerateOptions = {}): GenerateStream {
    this.runs++;
    this.active++;
    let text = '';
    try {
      for (let i = 0; i < (o.maxTokens ?? 16); i++) {
        if (o.signal?.aborted) {
          this.aborts++;
          return this.result(text, 'abort');
        }
        await sleep(5);
        text += 'x';
        yield 'x';
      }
      return this.result(text, 'length');
    } finally {
      this.active--;
    }
  }
  async generate(input: GenerateInput, o: GenerateOptions = {}): Promise<GenerateResult> {
    const { result } = await drain(this.stream(input, o));
    if (result.finishReason === 'abort') throw o.signal!.reason;
    return result;
  }
  private result(text: string, finishReason: GenerateResult['finishReason']): GenerateResult {
    return { text, finishReason, usage: { promptTokens: 1, completionTokens: text.length }, timeToFirstTokenMs: 0, totalMs: 0, costUsd: 0, model: 'slow' };
  }
  async score(): Promise<never> {
    throw new Error('no');
  }
  async tokenize(t: string) {
    return [...t].map((c) => c.charCodeAt(0));
  }
  async countTokens(t: string) {
    return t.length;
  }
  async close() {}
}

let be: Backend;
let lm: LocalModel;
let slow: SlowModel;
let app: FastifyInstance, keyed: FastifyInstance;
let base: string, keyedBase: string;

before(async () => {
  be = await createWasmBackend({ threads: 1 });
  lm = await LocalModel.open(MODEL, { backend: be, name: 'tiny' });
  slow = new SlowModel();
  const router = new Router([{ name: 'tiny', tier: 'tiny', model: lm, offline: true }], { policy: 'cheapest' });
  app = createServer({ models: new Map<string, LanguageModel>([['tiny', lm], ['auto', router], ['slow', slow]]), queueLimit: 1, bodyLimit: 64 * 1024 });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  keyed = createServer({ models: new Map<string, LanguageModel>([['slow', slow]]), apiKey: 'sk-test-123' });
  keyedBase = await keyed.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await app.close();
  await keyed.close();
  await lm.close();
  be.dispose();
});

async function post(path: string, body: unknown, o: { raw?: boolean; headers?: Record<string, string>; url?: string } = {}): Promise<{ status: number; json: Json; headers: Headers }> {
  const res = await fetch(`${o.url ?? base}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...o.headers }, body: o.raw ? (body as string) : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsed: text };
  }
  return { status: res.status, json, headers: res.headers };
}

/** An OpenAI error reply: the status, and `{ error: { message, type, param, code } }`. */
function assertError(r: { status: number; json: Json }, status: number, o: { param?: string | null; code?: string | null; message?: RegExp } = {}): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  const e = r.json.error;
  assert.ok(e && typeof e === 'object', `no error object: ${JSON.stringify(r.json)}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.equal(typeof e.type, 'string');
  if (o.param !== undefined) assert.equal(e.param, o.param, e.message);
  if (o.code !== undefined) assert.equal(e.code, o.code, e.message);
  if (o.message) assert.match(e.message, o.message);
}

/** LocalModel's own sampling, spelled out as the server's request fields (the server's defaults are OpenAI's). */
const sampling = { temperature: 0.8, top_p: 0.95, min_p: 0.05 };
const localSampling = { temperature: 0.8, topP: 0.95, minP: 0.05 };

describe('stlm serve: the official openai client', () => {
  const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });

  test('lists the models; /health answers', async () => {
    const models = await client().models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny', 'auto', 'slow']);
    assert.equal(models.data[0].object, 'model');
    const h = await (await fetch(`${base}/health`)).json();
    assert.equal(h.status, 'ok');
  });

  test('chat: the reply is LocalModel\'s for the same seed; usage and finish_reason', async () => {
    const messages = [{ role: 'system' as const, content: 'Speak as a king.' }, { role: 'user' as const, content: 'Who art thou?' }];
    const r = await client().chat.completions.create({ model: 'tiny', messages, max_tokens: 20, seed: 5, ...sampling } as never) as OpenAI.Chat.ChatCompletion;
    const direct = await lm.generate({ messages }, { maxTokens: 20, seed: 5, ...localSampling });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, direct.text);
    assert.equal(r.choices[0].finish_reason, direct.finishReason === 'length' ? 'length' : 'stop');
    assert.equal(r.usage?.prompt_tokens, direct.usage.promptTokens);
    assert.equal(r.usage?.completion_tokens, direct.usage.completionTokens);
    assert.equal(r.usage?.total_tokens, direct.usage.promptTokens + direct.usage.completionTokens);
  });

  test('chat: content as text parts; n choices with seeds seed, seed+1', async () => {
    const r = await client().chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 'Good ' }, { type: 'text', text: 'morrow' }] }], max_tokens: 8, seed: 9, n: 2, ...sampling } as never) as OpenAI.Chat.ChatCompletion;
    assert.equal(r.choices.length, 2);
    for (const [j, c] of r.choices.entries()) {
      const direct = await lm.generate({ messages: [{ role: 'user', content: 'Good morrow' }] }, { maxTokens: 8, seed: 9 + j, ...localSampling });
      assert.equal(c.index, j);
      assert.equal(c.message.content, direct.text);
    }
  });

  test('streaming chat: role first, then content, finish_reason, a usage chunk with no choices, then the end', async () => {
    const messages = [{ role: 'user' as const, content: 'Speak.' }];
    const stream = await client().chat.completions.create({ model: 'tiny', messages, max_tokens: 16, seed: 3, stream: true, stream_options: { include_usage: true }, ...sampling } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const finishAt = chunks.findIndex((c) => c.choices[0]?.finish_reason);
    assert.ok(finishAt > 0);
    const last = chunks.at(-1)!;
    assert.equal(finishAt, chunks.length - 2);
    assert.deepEqual(last.choices, []);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const direct = await lm.generate({ messages }, { maxTokens: 16, seed: 3, ...localSampling });
    assert.equal(text, direct.text);
    assert.equal(last.usage?.completion_tokens, direct.usage.completionTokens);
    assert.equal(last.usage?.prompt_tokens, direct.usage.promptTokens);
    for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
  });

  test('completions: logprobs (top-N) and echo, several prompts', async () => {
    const r = await client().completions.create({ model: 'tiny', prompt: ['ROMEO:', 'To be'], max_tokens: 6, logprobs: 3, echo: true, temperature: 0, seed: 1 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 2);
    for (const [i, p] of ['ROMEO:', 'To be'].entries()) {
      const c = r.choices.find((x) => x.index === i)!;
      assert.ok(c.text.startsWith(p), c.text);
      const lp = c.logprobs!;
      assert.equal(lp.tokens!.join(''), c.text);
      assert.equal(lp.token_logprobs![0], null);
      assert.equal(lp.top_logprobs![0], null);
      assert.equal(lp.text_offset![0], 0);
      for (let k = 1; k < lp.tokens!.length; k++) {
        assert.ok((lp.token_logprobs![k] as number) <= 0);
        assert.ok(Object.keys(lp.top_logprobs![k]!).length >= 1 && Object.keys(lp.top_logprobs![k]!).length <= 3);
        assert.ok(lp.text_offset![k] >= lp.text_offset![k - 1]);
      }
      // Greedy (temperature 0): each generated token is the best of its top_logprobs.
      const promptLen = lm.promptIds(p).length;
      for (let k = promptLen; k < lp.tokens!.length; k++) {
        const best = Math.max(...Object.values(lp.top_logprobs![k]!));
        assert.ok(Math.abs((lp.token_logprobs![k] as number) - best) < 1e-9, `token ${k}`);
      }
      const direct = await lm.generate({ prompt: p }, { maxTokens: 6, temperature: 0 });
      assert.equal(c.text, p + direct.text);
    }
  });

  test('completions without echo: text_offset starts after the prompt; stop strings end the text', async () => {
    const r = await client().completions.create({ model: 'tiny', prompt: 'ROMEO:', max_tokens: 30, logprobs: 1, temperature: 0, stop: ['\n\n'] });
    const c = r.choices[0];
    assert.equal(c.logprobs!.text_offset![0], 'ROMEO:'.length);
    assert.ok(!c.text.includes('\n\n'));
    assert.equal(c.logprobs!.tokens!.join('').startsWith(c.text), true);
  });
});

describe('stlm serve: our own clients', () => {
  let remote: OpenAIModel;
  before(() => {
    remote = new OpenAIModel({ baseUrl: `${base}/v1`, model: 'tiny', retryBaseMs: 5 });
  });

  test('OpenAIModel against stlm serve: the served text for a seed equals LocalModel\'s directly', async () => {
    for (const seed of [1, 2, 3]) {
      const o = { maxTokens: 24, seed, ...localSampling };
      assert.equal((await remote.generate({ prompt: 'KING:' }, o)).text, (await lm.generate({ prompt: 'KING:' }, o)).text);
      const messages = [{ role: 'user' as const, content: 'Hark' }];
      assert.equal((await remote.generate({ messages }, o)).text, (await lm.generate({ messages }, o)).text);
      const streamed = await drain(remote.stream({ prompt: 'KING:' }, o));
      assert.equal(streamed.pieces.join(''), (await lm.generate({ prompt: 'KING:' }, o)).text);
    }
  });

  test('OpenAIModel.score through echo + logprobs equals LocalModel.score within 1e-4', async () => {
    const ctx = 'ROMEO: What light through yonder', conts = [' window breaks', ' door', ' sun'];
    const a = await remote.score(ctx, conts), b = await lm.score(ctx, conts);
    for (let i = 0; i < conts.length; i++) {
      assert.ok(Math.abs(a[i].logprob - b[i].logprob) < 1e-4, `${conts[i]}: ${a[i].logprob} vs ${b[i].logprob}`);
      assert.equal(a[i].greedy, b[i].greedy);
    }
  });
});

describe('stlm serve: lm-evaluation-harness loglikelihood', () => {
  test('tokenLogprobs equals score() token by token', () => {
    const ids = lm.promptIds('JULIET: O Romeo, Romeo, wherefore art thou Romeo?');
    const lp = lm.tokenLogprobs(ids, 2);
    assert.equal(lp[0].logprob, null);
    for (const split of [1, 5, ids.length - 1]) {
      const s = score(lm.handle.model, ids.slice(0, split), [ids.slice(split)]).continuations[0];
      s.tokenLogprobs.forEach((x, k) => assert.ok(Math.abs(x - (lp[split + k].logprob as number)) < 1e-4, `split ${split} token ${k}`));
    }
    for (const t of lp.slice(1)) assert.ok(t.top.length === 2 && t.top[0].logprob >= t.top[1].logprob && t.top[0].logprob >= (t.logprob as number) - 1e-12);
  });

  test('echo, max_tokens 0, logprobs 1 (ids and text): the continuation\'s sum equals score() within 1e-4', async () => {
    const context = 'HAMLET: To be, or not to be', continuation = ': that is the question';
    const ids = lm.promptIds(context + continuation), ctxlen = lm.promptIds(context).length;
    const want = score(lm.handle.model, ids.slice(0, ctxlen), [ids.slice(ctxlen)]).continuations[0];
    for (const prompt of [ids, context + continuation]) {
      const r = await post('/v1/completions', { model: 'tiny', prompt, echo: true, max_tokens: 0, logprobs: 1, temperature: 0 });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const lp = r.json.choices[0].logprobs;
      assert.equal(lp.token_logprobs.length, ids.length);
      const got = lp.token_logprobs.slice(ctxlen).reduce((a: number, b: number) => a + b, 0);
      assert.ok(Math.abs(got - want.logprob) < 1e-4, `${got} vs ${want.logprob}`);
      // is_greedy as the harness computes it: each token is the best of its top_logprobs.
      const greedy = lp.top_logprobs.slice(ctxlen).every((top: Json, k: number) => Math.max(...(Object.values(top) as number[])) <= lp.token_logprobs[ctxlen + k] + 1e-12);
      assert.equal(greedy, want.greedy);
      assert.equal(r.json.usage.completion_tokens, 0);
    }
    // The harness's newer form: max_tokens 1, the last (generated) token dropped.
    const r1 = await post('/v1/completions', { model: 'tiny', prompt: [ids], echo: true, max_tokens: 1, logprobs: 1, temperature: 0 });
    const lp1 = r1.json.choices[0].logprobs.token_logprobs;
    assert.equal(lp1.length, ids.length + 1);
    assert.ok(Math.abs(lp1.slice(ctxlen, -1).reduce((a: number, b: number) => a + b, 0) - want.logprob) < 1e-4);
  });
});

describe('stlm serve: the router as auto', () => {
  test('the decision in x-stlm-route (one line of JSON) and in stlm_route', async () => {
    const r = await post('/v1/chat/completions', { model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, seed: 1 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const header = r.headers.get('x-stlm-route')!;
    assert.ok(header && !header.includes('\n'));
    assert.equal(JSON.parse(header).tier, 'tiny');
    assert.equal(r.json.stlm_route.tier, 'tiny');
    assert.equal(r.json.model, 'auto');
    const c = await post('/v1/completions', { model: 'auto', prompt: 'Hi', max_tokens: 4, seed: 1 });
    assert.equal(c.json.stlm_route.tier, 'tiny');
    const s = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true }) });
    const body = await s.text();
    assert.match(body, /"stlm_route":\{"tier":"tiny"/);
    assert.ok(body.trimEnd().endsWith('data: [DONE]'));
  });
});

describe('stlm serve: errors and limits (raw HTTP)', () => {
  const chat = (extra: Json = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...extra });

  test('invalid JSON, an empty body, another content type: 400/400/415', async () => {
    assertError(await post('/v1/chat/completions', '{"model": "tiny", ', { raw: true }), 400, { code: 'invalid_json', param: null });
    assertError(await post('/v1/chat/completions', '', { raw: true }), 400, { code: 'invalid_json' });
    assertError(await post('/v1/chat/completions', 'model=tiny', { raw: true, headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415);
  });

  test('missing fields and wrong types: 400 naming the field', async () => {
    assertError(await post('/v1/chat/completions', { model: 'tiny' }), 400, { param: 'messages', code: 'missing_required_parameter' });
    assertError(await post('/v1/completions', { prompt: 'x' }), 400, { param: 'model' });
    assertError(await post('/v1/chat/completions', chat({ temperature: 'hot' })), 400, { param: 'temperature' });
    assertError(await post('/v1/chat/completions', chat({ temperature: 3 })), 400, { param: 'temperature' });
    assertError(await post('/v1/chat/completions', chat({ messages: [{ role: 'user' }] })), 400, { param: 'messages[0].content' });
    assertError(await post('/v1/chat/completions', chat({ messages: [{ role: 'wizard', content: 'x' }] })), 400, { param: 'messages[0].role' });
    assertError(await post('/v1/chat/completions', chat({ messages: [] })), 400, { param: 'messages' });
    assertError(await post('/v1/chat/completions', chat({ n: 0 })), 400, { param: 'n' });
    assertError(await post('/v1/chat/completions', chat({ max_tokens: '5' })), 400, { param: 'max_tokens' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 5 }), 400, { param: 'prompt' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x', stop: [1] }), 400, { param: 'stop[0]' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x', logprobs: 99 }), 400, { param: 'logprobs' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: [1e9] }), 400, { param: 'prompt', message: /vocabulary/ });
    assertError(await post('/v1/completions', [1, 2]), 400);
  });

  test('an unknown model: 404; an unknown URL: 404', async () => {
    assertError(await post('/v1/chat/completions', chat({ model: 'gpt-9' })), 404, { param: 'model', code: 'model_not_found' });
    const r = await fetch(`${base}/v1/engines`);
    assertError({ status: r.status, json: await r.json() }, 404);
  });

  test('max_tokens negative or beyond the context; a prompt longer than the context (with the numbers)', async () => {
    const ctx = lm.info().contextLength!;
    assertError(await post('/v1/chat/completions', chat({ max_tokens: -1 })), 400, { param: 'max_tokens' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x', max_tokens: -5 }), 400, { param: 'max_tokens' });
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x', max_tokens: ctx + 1 }), 400, { param: 'max_tokens', message: new RegExp(`${ctx + 1}.*${ctx}`) });
    assertError(await post('/v1/chat/completions', chat({ max_completion_tokens: ctx * 2 })), 400, { param: 'max_completion_tokens' });
    const long = 'a'.repeat(ctx * 2);
    const n = lm.promptIds(long).length;
    assertError(await post('/v1/completions', { model: 'tiny', prompt: long, max_tokens: 1 }), 400, { code: 'context_length_exceeded', message: new RegExp(`${ctx} tokens.*${n} tokens`) });
    assertError(await post('/v1/chat/completions', chat({ messages: [{ role: 'user', content: long }] })), 400, { code: 'context_length_exceeded' });
  });

  test('a body over the size limit: 413', async () => {
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x'.repeat(100 * 1024) }), 413, { code: 'request_too_large' });
  });

  test('unsupported parameters: 400 unsupported_parameter naming each', async () => {
    for (const [k, v] of Object.entries({ tools: [{ type: 'function', function: { name: 'f' } }], functions: [{ name: 'f' }], logit_bias: { '5': 10 }, response_format: { type: 'json_object' }, tool_choice: 'auto', presence_penalty: 0.5 })) {
      assertError(await post('/v1/chat/completions', chat({ [k]: v })), 400, { param: k, code: 'unsupported_parameter', message: new RegExp(k) });
    }
    assertError(await post('/v1/completions', { model: 'tiny', prompt: 'x', suffix: 'y' }), 400, { param: 'suffix', code: 'unsupported_parameter' });
    assertError(await post('/v1/completions', { model: 'slow', prompt: 'x', logprobs: 1 }), 400, { param: 'logprobs', code: 'unsupported_parameter' });
    // Their no-op values are accepted.
    const ok = await post('/v1/chat/completions', chat({ logit_bias: {}, response_format: { type: 'text' }, presence_penalty: 0, tools: [] }));
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
  });

  test('API key: 401 without it or with a wrong one (compared in constant time); /health stays open', async () => {
    const body = { model: 'slow', prompt: 'x', max_tokens: 2 };
    assertError(await post('/v1/completions', body, { url: keyedBase }), 401, { code: 'invalid_api_key' });
    assertError(await post('/v1/completions', body, { url: keyedBase, headers: { authorization: 'Bearer sk-test-12' } }), 401, { code: 'invalid_api_key' });
    assertError(await post('/v1/completions', body, { url: keyedBase, headers: { authorization: 'Bearer sk-test-1234' } }), 401);
    const r = await fetch(`${keyedBase}/v1/models`);
    assert.equal(r.status, 401);
    const ok = await post('/v1/completions', body, { url: keyedBase, headers: { authorization: 'Bearer sk-test-123' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.choices[0].text, 'xx');
    assert.equal((await fetch(`${keyedBase}/health`)).status, 200);
  });

  test('the queue: one runs, one waits (limit 1), the next gets 429 with retry-after; the waiting one then answers', async () => {
    const ac = new AbortController();
    const running = fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow', prompt: 'x', max_tokens: 100000, stream: true }), signal: ac.signal });
    const res = await running;
    const reader = res.body!.getReader();
    await reader.read(); // it runs
    const waiting = post('/v1/completions', { model: 'slow', prompt: 'x', max_tokens: 3 });
    await sleep(50);
    const refused = await post('/v1/completions', { model: 'slow', prompt: 'x', max_tokens: 3 });
    assertError(refused, 429, { code: 'rate_limit_exceeded' });
    assert.equal(refused.headers.get('retry-after'), '1');
    ac.abort();
    await reader.cancel().catch(() => undefined);
    const w = await waiting;
    assert.equal(w.status, 200);
    assert.equal(w.json.choices[0].text, 'xxx');
  });

  test('RequestQueue: a waiting request whose signal aborts leaves the queue', async () => {
    const q = new RequestQueue(2);
    const release = await q.acquire();
    const ac = new AbortController();
    const waiting = q.acquire(ac.signal);
    assert.equal(q.pending, 1);
    ac.abort(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    assert.equal(q.pending, 0);
    release();
    assert.equal(q.running, false);
  });
});

describe('stlm serve: disconnects and fuzz', () => {
  test('a client that disconnects mid-stream stops its generation and frees the model', async () => {
    for (const model of ['slow', 'tiny']) {
      const abortsBefore = slow.aborts;
      const ac = new AbortController();
      const body = model === 'slow' ? { model, prompt: 'x', max_tokens: 100000, stream: true } : { model, prompt: 'ROMEO:', max_tokens: 250, stream: true, temperature: 1 };
      const res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      ac.abort();
      await reader.cancel().catch(() => undefined);
      const t0 = performance.now();
      const next = await post('/v1/completions', { model, prompt: 'x', max_tokens: 2, temperature: 0 });
      assert.equal(next.status, 200, JSON.stringify(next.json));
      assert.ok(performance.now() - t0 < 5000);
      if (model === 'slow') {
        assert.equal(slow.aborts, abortsBefore + 1);
        assert.equal(slow.active, 0);
      }
    }
  });

  test('500 random and malformed bodies (< 20 s) get 4xx OpenAI errors or answers, never a crash; a valid request answers after', async () => {
    let state = 12345;
    const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const values: unknown[] = [null, true, false, 0, -1, 1, 2.5, 1e308, -1e308, '', 'x', 'tiny', '\u0000', '💥', [], [1], ['a'], [[1, 2]], {}, { type: 'text' }, { a: { b: [] } }, 'a'.repeat(300)];
    const fields = ['model', 'prompt', 'messages', 'max_tokens', 'temperature', 'top_p', 'seed', 'stop', 'n', 'stream', 'logprobs', 'echo', 'stream_options', 'top_logprobs', 'max_completion_tokens', 'tools', 'logit_bias', '__proto__', 'constructor'];
    const t0 = performance.now();
    const statuses = new Map<number, number>();
    for (let i = 0; i < 500; i++) {
      const path = pick(['/v1/completions', '/v1/chat/completions', '/v1/chat/completions', '/v1/completions', '/v1/models', '/nope']);
      let body: string;
      const kind = rand();
      if (kind < 0.15) body = Array.from({ length: Math.floor(rand() * 40) }, () => String.fromCharCode(Math.floor(rand() * 128))).join('');
      else if (kind < 0.25) body = JSON.stringify(pick(values));
      else {
        const b: Json = path.includes('chat') ? { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 } : { model: 'tiny', prompt: 'Hi', max_tokens: 1 };
        for (let k = Math.floor(rand() * 3) + 1; k > 0; k--) {
          const f = pick(fields);
          if (f === 'max_tokens' || f === 'max_completion_tokens' || f === 'n') b[f] = pick([-1, 0, 1, 2, 1e9, 'x', null, 2.5, 17]);
          else if (f === 'messages') b[f] = pick([[{ role: 'user', content: pick(values) }], [{ role: pick(values), content: 'x' }], pick(values), [{ role: 'user', content: [{ type: 'text', text: pick(values) }] }]]);
          else b[f] = pick(values);
        }
        body = JSON.stringify(b);
        if (rand() < 0.1) body = body.slice(0, Math.floor(rand() * body.length));
      }
      const res = await fetch(`${base}${path}`, { method: rand() < 0.9 ? 'POST' : 'GET', headers: { 'content-type': rand() < 0.95 ? 'application/json' : 'text/plain' }, body, signal: AbortSignal.timeout(10000) }).catch((e) => e as Error);
      if (res instanceof Error) {
        // GET with a body is refused by fetch itself; that never reaches the server.
        assert.match(res.message, /GET|HEAD|body/i);
        continue;
      }
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      assert.ok(res.status < 500, `status ${res.status} for ${path} ${body.slice(0, 200)}: ${text.slice(0, 300)}`);
      if (res.status >= 400) {
        const j = JSON.parse(text);
        assert.equal(typeof j.error?.message, 'string', text);
      }
    }
    assert.ok(performance.now() - t0 < 20000, `took ${performance.now() - t0} ms`);
    const r = await post('/v1/chat/completions', chat());
    assert.equal(r.status, 200);
    assert.ok((statuses.get(400) ?? 0) > 100, JSON.stringify([...statuses]));
  });

  const chat = () => ({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
});

// The shared LanguageModel checks, on OpenAIModel talking to stlm serve.
let remoteForInterface: OpenAIModel | undefined;
languageModelInterface('OpenAIModel against stlm serve', () => (remoteForInterface ??= new OpenAIModel({ baseUrl: `${base}/v1`, model: 'tiny', retryBaseMs: 5 })), { tokenizes: false });

describe('stlm serve: CORS', () => {
  test('allowed origins get CORS headers on the preflight and the request (the key is not asked of the preflight); others get none', async () => {
    const c = createServer({ models: new Map<string, LanguageModel>([['slow', new SlowModel()]]), apiKey: 'sk-cors', cors: ['http://localhost:5173'] });
    const url = await c.listen({ host: '127.0.0.1', port: 0 });
    try {
      const pre = await fetch(`${url}/v1/chat/completions`, {
        method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
      });
      assert.ok(pre.status === 204 || pre.status === 200, `preflight ${pre.status}`);
      assert.equal(pre.headers.get('access-control-allow-origin'), 'http://localhost:5173');
      assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
      const models = await fetch(`${url}/v1/models`, { headers: { origin: 'http://localhost:5173', authorization: 'Bearer sk-cors' } });
      assert.equal(models.status, 200);
      assert.equal(models.headers.get('access-control-allow-origin'), 'http://localhost:5173');
      const other = await fetch(`${url}/v1/models`, { headers: { origin: 'http://evil.example', authorization: 'Bearer sk-cors' } });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      const noKey = await fetch(`${url}/v1/models`, { headers: { origin: 'http://localhost:5173' } });
      assert.equal(noKey.status, 401);
    } finally {
      await c.close();
    }
    // Without --cors no CORS header at all.
    const r = await fetch(`${base}/v1/models`, { headers: { origin: 'http://localhost:5173' } });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });
});

describe('stlm serve: streamed chunk events', () => {
  test('a text chunk event is exactly JSON.stringify of the chunk holding that text', () => {
    const texts = ['', 'a', ' Once upon', '"quoted" \\ back', 'line\nbreak\ttab\r', '\u0000\u001f\u007f', '\u2028\u2029', 'é漢字🙂', '\ud800 lone', 'x'.repeat(300)];
    const chunks = [
      (t: string) => ({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'tiny "m"', choices: [{ text: t, index: 3, logprobs: null, finish_reason: null }] }),
      (t: string) => ({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 2, model: 'm', system_fingerprint: null, choices: [{ index: 0, delta: { content: t }, logprobs: null, finish_reason: null }], usage: null }),
    ];
    for (const make of chunks) {
      const event = textChunkEvent(make(TEXT_SLOT));
      for (const t of texts) assert.equal(event(t), JSON.stringify(make(t)));
    }
    assert.throws(() => textChunkEvent({ a: 'no slot' }), /TEXT_SLOT once/);
    assert.throws(() => textChunkEvent({ a: TEXT_SLOT, b: TEXT_SLOT }), /TEXT_SLOT once/);
  });
});
