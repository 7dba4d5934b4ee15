// The large tier: OpenAIModel against a local mock server (node:http on 127.0.0.1) that misbehaves on
// demand — slow first byte, 429 with retry-after, 500s, malformed JSON, SSE split mid-line and
// mid-character, comments and keep-alives, truncated and stalled streams, aborts — and that, in its
// 'real' mode, serves the embedded model through a LocalModel, so the shared interface checks run on
// real numbers. Also the SSE parser on its own.
import assert from 'node:assert/strict';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { LocalModel } from '../src/tiers/local.js';
import { OpenAIModel, type OpenAIModelOptions, estimateTokens, retryAfterMs } from '../src/tiers/openai.js';
import { SseParser, readSse } from '../src/tiers/sse.js';
import { type ChatMessage, type GenerateOptions, ScoreUnsupportedError } from '../src/tiers/types.js';
import { drain, languageModelInterface } from './tiers-interface.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
type Json = Record<string, unknown>;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A regex source for a literal string. */
const lit = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

let be: Backend;
let lm: LocalModel;
let server: Server;
let base: string;
/** Every request the mock got: its mode, route, body, auth header and arrival time. */
const seen: { mode: string; route: string; body: Json; auth?: string; at: number }[] = [];
const attempts = (mode: string) => seen.filter((s) => s.mode === mode).length;
/** Connections the mock saw closed by the client, per mode. */
const closed = new Map<string, number>();

function json(res: ServerResponse, status: number, o: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(o));
}
function sse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
}
const event = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const textChunk = (text: string, finish: string | null = null) => event({ choices: [{ index: 0, text, finish_reason: finish }] });

// --- The canned echo + logprobs answers (known numbers) ---------------------------------------------

/** "The cat" + " sat": one continuation token, the best of its top_logprobs. */
const ECHO_SAT = { tokens: ['The', ' cat', ' sat'], token_logprobs: [null, -2.5, -0.75], text_offset: [0, 3, 7], top_logprobs: [null, { ' dog': -2.0 }, { ' sat': -0.75 }] };
/** "The cat" + " ran": two tokens, the first not the best. */
const ECHO_RAN = { tokens: ['The', ' cat', ' r', 'an'], token_logprobs: [null, -2.5, -3.25, -0.5], text_offset: [0, 3, 7, 9], top_logprobs: [null, { ' dog': -2.0 }, { ' s': -1.0 }, { an: -0.5 }] };
/** With max_tokens 1 an endpoint adds one generated token after the echo: it is not the continuation's. */
const plusGenerated = (l: typeof ECHO_RAN, at: number) => ({ tokens: [...l.tokens, '.'], token_logprobs: [...l.token_logprobs, -9], text_offset: [...l.text_offset, at], top_logprobs: [...l.top_logprobs, { '.': -9 }] });

// --- The 'real' mode: the embedded model behind an OpenAI-compatible API -------------------------------

/** Echoed tokens of each prompt with the model's own log-probabilities and top-1 alternatives. */
function echoOf(prompt: string): Json {
  const h = lm.handle, tok = h.tokenizer, vocab = h.config.vocabSize;
  const text = Array.from(tok.encode(prompt));
  const full = h.addBos ? [tok.bos!, ...text] : text;
  const session = h.model.session(full.length);
  try {
    const rows = [session.reset(full.slice(0, 1)).slice()];
    if (full.length > 2) {
      const rest = session.extend(full.slice(1, -1));
      for (let i = 0; i < full.length - 2; i++) rows.push(rest.slice(i * vocab, (i + 1) * vocab));
    }
    const piece = (id: number) => new TextDecoder().decode(tok.tokenBytes(id));
    const out = { tokens: [] as string[], token_logprobs: [] as (number | null)[], text_offset: [] as number[], top_logprobs: [] as (Record<string, number> | null)[] };
    let offset = 0;
    text.forEach((id, j) => {
      const k = j + full.length - text.length;
      out.tokens.push(piece(id));
      out.text_offset.push(offset);
      offset += [...piece(id)].length;
      if (k === 0) {
        out.token_logprobs.push(null);
        out.top_logprobs.push(null);
        return;
      }
      const row = rows[k - 1];
      let max = -Infinity, best = 0;
      for (let v = 0; v < vocab; v++) {
        if (row[v] > max) max = row[v];
        if (!h.model.neverPredicted.includes(v) && row[v] > row[best]) best = v;
      }
      let sum = 0;
      for (let v = 0; v < vocab; v++) sum += Math.exp(row[v] - max);
      const lp = (v: number) => row[v] - max - Math.log(sum);
      out.token_logprobs.push(lp(id));
      out.top_logprobs.push({ [piece(best)]: lp(best) });
    });
    return out;
  } finally {
    session.dispose();
  }
}

async function real(route: string, body: Json, res: ServerResponse): Promise<void> {
  if (route === '/tokenize') return json(res, 200, { tokens: await lm.tokenize(String(body.content)) });
  const chat = route === '/v1/chat/completions';
  if (!chat && route !== '/v1/completions') return json(res, 404, { error: { message: `no route ${route}` } });
  if (body.echo) {
    const prompts = body.prompt as string[];
    return json(res, 200, { choices: prompts.map((p, index) => ({ index, text: p, logprobs: echoOf(p), finish_reason: 'length' })) });
  }
  const input = chat ? { messages: body.messages as ChatMessage[] } : { prompt: String(body.prompt) };
  const o: GenerateOptions = {
    maxTokens: body.max_tokens as number, temperature: body.temperature as number, topP: body.top_p as number | undefined, topK: body.top_k as number | undefined,
    minP: body.min_p as number | undefined, seed: body.seed as number | undefined, stop: body.stop as string[] | undefined,
  };
  const finish = (r: string) => (r === 'length' ? 'length' : 'stop');
  if (!body.stream) {
    const r = await lm.generate(input, o);
    const choice = chat ? { index: 0, message: { role: 'assistant', content: r.text }, finish_reason: finish(r.finishReason) } : { index: 0, text: r.text, finish_reason: finish(r.finishReason) };
    return json(res, 200, { id: 'x', model: 'mock', choices: [choice], usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: 0 } });
  }
  const ctl = new AbortController();
  res.on('close', () => ctl.abort());
  sse(res);
  const s = lm.stream(input, { ...o, signal: ctl.signal });
  if (chat) res.write(event({ choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }));
  for (let r = await s.next(); ; r = await s.next()) {
    if (res.destroyed) { // the client went away: the abort ends the stream at its next step
      if (r.done) return;
      continue;
    }
    if (r.done) {
      res.write(event({ choices: [{ index: 0, ...(chat ? { delta: {} } : { text: '' }), finish_reason: finish(r.value.finishReason) }] }));
      const usage = (body.stream_options as Json | undefined)?.include_usage;
      if (usage) res.write(event({ choices: [], usage: { prompt_tokens: r.value.usage.promptTokens, completion_tokens: r.value.usage.completionTokens } }));
      res.end('data: [DONE]\n\n');
      return;
    }
    res.write(event({ choices: [{ index: 0, ...(chat ? { delta: { content: r.value } } : { text: r.value }), finish_reason: null }] }));
  }
}

// --- The misbehaving modes --------------------------------------------------------------------------

async function handle(mode: string, route: string, body: Json, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const n = attempts(mode);
  const ok = (text = ' fine', extra: Json = {}) => json(res, 200, { choices: [{ index: 0, text, finish_reason: 'length' }], ...extra });
  const onClose = (f: () => void) => res.on('close', () => {
    if (!res.writableFinished) closed.set(mode, (closed.get(mode) ?? 0) + 1);
    f();
  });
  if (route === '/tokenize' && mode !== 'real') return json(res, 404, { error: { message: 'not found' } });
  switch (mode) {
    case 'real':
      return real(route, body, res);
    case 'ok':
      return ok();
    case 'slow': { // the first byte after 5 s
      const t = setTimeout(() => ok(), 5000);
      return void onClose(() => clearTimeout(t));
    }
    case 'rate': // 429 (retry after 1 s) on the first request, then an answer
      return n === 1 ? json(res, 429, { error: { message: 'slow down' } }, { 'retry-after': '1' }) : ok(' after the wait');
    case 'ratelong':
      return json(res, 429, { error: { message: 'quota exceeded' } }, { 'retry-after': '3600' });
    case 'flaky': // 500 twice, then an answer
      return n <= 2 ? json(res, 500, { error: { message: `crash ${n}` } }) : ok(' third time');
    case 'flakystream': // 503 twice, then a stream
      if (n <= 2) return json(res, 503, { error: 'overloaded' });
      sse(res);
      return void res.end(textChunk('streamed', 'length') + 'data: [DONE]\n\n');
    case 'badjson':
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"choices": [ {"text": "cut');
    case 'badevent':
      sse(res);
      return void res.end(textChunk('a') + 'data: {"choices": [ oops\n\n');
    case 'streamerror':
      sse(res);
      return void res.end(textChunk('a') + event({ error: { message: 'the model fell over' } }));
    case 'split': { // CRLF line ends, comments and keep-alives, written 3 bytes at a time
      const body = ': hello\r\n\r\n' + [' Ça', ' va', ' ✓ — ', '🙂', '!'].map((t) => `data: ${JSON.stringify({ choices: [{ index: 0, text: t, finish_reason: null }] })}\r\n: keep-alive\r\n\r\n`).join('') +
        ':\r\n' + textChunk('', 'stop').replace(/\n/g, '\r\n') + 'data: [DONE]\r\n\r\n';
      const bytes = Buffer.from(body, 'utf8');
      sse(res);
      for (let i = 0; i < bytes.length && !res.destroyed; i += 3) {
        res.write(bytes.subarray(i, i + 3));
        await sleep(1);
      }
      return void res.end();
    }
    case 'multiline': // one event's data over two data: lines (JSON allows the line break)
      sse(res);
      return void res.end('data: {"choices": [{"index": 0,\ndata: "text": "two lines", "finish_reason": "length"}]}\n\ndata: [DONE]\n\n');
    case 'truncated': // text, then the connection ends: no finish_reason, no [DONE]
      sse(res);
      res.write(textChunk('half a'));
      await sleep(20);
      return void res.end(textChunk(' sentence'));
    case 'empty': // a stream that ends before any text: retried, then reported
      sse(res);
      return void res.end(': nothing here\n\n');
    case 'stall': { // one piece, then silence with the connection open
      sse(res);
      res.write(textChunk('and then'));
      const t = setTimeout(() => res.end(), 10_000);
      return void onClose(() => clearTimeout(t));
    }
    case 'drip': { // a piece every 20 ms for a long while
      sse(res);
      let i = 0;
      const t = setInterval(() => res.write(textChunk(` ${i++}`)), 20);
      return void onClose(() => clearInterval(t));
    }
    case 'usage': // prices: the answer's usage
      if (body.stream) {
        sse(res);
        return void res.end(textChunk('a') + textChunk('b', 'length') + event({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 3 } }) + 'data: [DONE]\n\n');
      }
      return ok(' costly', { usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 } });
    case 'nousage':
      sse(res);
      return void res.end(textChunk('x') + textChunk('y') + textChunk('z', 'stop') + 'data: [DONE]\n\n');
    case 'logprobs': // a completion with the sampled tokens' logprobs
      return ok(' a b', { choices: [{ index: 0, text: ' a b', finish_reason: 'stop', logprobs: { tokens: [' a', ' b'], token_logprobs: [-0.5, -1.5] } }] });
    case 'echo': {
      if (body.max_tokens !== 0 || body.echo !== true || body.logprobs !== 1) return json(res, 400, { error: { message: 'expected echo, logprobs 1, max_tokens 0' } });
      const [sat, ran] = body.prompt as string[];
      assert.deepEqual([sat, ran], ['The cat sat', 'The cat ran']);
      // Choices out of order: matched by index.
      return json(res, 200, { choices: [{ index: 1, text: ran, logprobs: ECHO_RAN }, { index: 0, text: sat, logprobs: ECHO_SAT }] });
    }
    case 'echo1': // refuses max_tokens 0; with 1 it adds a generated token
      if (body.max_tokens === 0) return json(res, 400, { error: { message: 'max_tokens must be at least 1' } });
      return json(res, 200, { choices: [{ index: 0, text: 'The cat ran.', logprobs: plusGenerated(ECHO_RAN, 11) }] });
    case 'noecho':
      return json(res, 400, { error: { message: "'echo' is not supported with this model" } });
    case 'nologprobs':
      return json(res, 200, { choices: [{ index: 0, text: 'The cat sat', logprobs: null }] });
    default:
      return json(res, 404, { error: { message: `no mode ${mode}` } });
  }
}

before(async () => {
  be = await createWasmBackend({ threads: 1 });
  lm = await LocalModel.open(MODEL, { backend: be });
  server = createServer((req, res) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (data += c));
    req.on('end', () => {
      const [, mode, ...rest] = (req.url ?? '/').split('/');
      const route = '/' + rest.join('/');
      let body: Json = {};
      try {
        body = JSON.parse(data) as Json;
      } catch {
        // recorded as {}
      }
      seen.push({ mode, route, body, auth: req.headers.authorization, at: performance.now() });
      handle(mode, route, body, req, res).catch((e: Error) => {
        if (!res.headersSent) json(res, 599, { error: { message: `mock failed: ${e.message}` } });
        else res.destroy();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  server.close();
  await lm.close();
  be.dispose();
});

/** A client of one mock mode, with quick retries. */
const client = (mode: string, o: Partial<OpenAIModelOptions> = {}) => new OpenAIModel({ baseUrl: `${base}/${mode}/v1`, model: 'mock-model', retryBaseMs: 20, ...o });
const url = (mode: string, route = 'completions') => lit(`${base}/${mode}/v1/${route}`);

let realClient: OpenAIModel | undefined;
/** The client of the mode that serves the embedded model (made once the server listens). */
const realModel = () => (realClient ??= client('real', { prices: { prompt: 0.5, completion: 1.5 } }));
languageModelInterface('OpenAIModel (the mock serving the embedded model)', realModel);

describe('OpenAIModel against the embedded model', () => {
  test('the same numbers as LocalModel: generation, chat, score and tokens', async () => {
    const o = { maxTokens: 30, seed: 9, temperature: 0.7 };
    const [remote, local] = [await realModel().generate({ prompt: 'ROMEO:' }, o), await lm.generate({ prompt: 'ROMEO:' }, o)];
    assert.equal(remote.text, local.text);
    assert.deepEqual(remote.usage, local.usage);
    assert.equal(remote.costUsd, (local.usage.promptTokens * 0.5 + local.usage.completionTokens * 1.5) / 1e6);
    const messages: ChatMessage[] = [{ role: 'user', content: 'Speak.' }];
    assert.equal((await realModel().generate({ messages }, o)).text, (await lm.generate({ messages }, o)).text);
    const conts = [' Good morrow', ' What say you?', 'x'];
    const [rs, ls] = [await realModel().score('ROMEO: ', conts), await lm.score('ROMEO: ', conts)];
    rs.forEach((r, i) => {
      assert.equal(r.tokens, ls[i].tokens);
      assert.equal(r.greedy, ls[i].greedy);
      assert.ok(Math.abs(r.logprob - ls[i].logprob) < 1e-4, `${r.logprob} vs ${ls[i].logprob}`);
    });
    assert.deepEqual(await realModel().tokenize('To be'), await lm.tokenize('To be'));
    const body = seen.filter((s) => s.mode === 'real' && s.body.echo).at(-1)!.body;
    assert.deepEqual(body, { model: 'mock-model', prompt: conts.map((c) => 'ROMEO: ' + c), max_tokens: 0, temperature: 0, echo: true, logprobs: 1 });
  });

  test('a stream asks for usage; its chat stream skips the role-only chunk', async () => {
    const s = await drain(realModel().stream({ messages: [{ role: 'user', content: 'Hail.' }] }, { maxTokens: 12, seed: 1 }));
    const body = seen.at(-1)!.body;
    assert.equal(body.stream, true);
    assert.deepEqual(body.stream_options, { include_usage: true });
    assert.ok(s.pieces.every((p) => p.length > 0));
    assert.equal(s.result.usage.completionTokens, 12);
  });
});

describe('OpenAIModel: time limits, retries and errors', () => {
  test('a slow first byte: the time limit fires, each retry too, and nothing hangs', async () => {
    const t0 = performance.now();
    await assert.rejects(client('slow', { timeoutMs: 150, maxRetries: 1 }).generate({ prompt: 'x' }), new RegExp(`^Error: endpoint ${url('slow')}: no response within 0\\.15 s$`));
    const ms = performance.now() - t0;
    assert.equal(attempts('slow'), 2);
    assert.ok(ms >= 300 && ms < 2000, `${ms} ms`);
    await sleep(50);
    assert.equal(closed.get('slow'), 2, 'each timed-out request closed its connection');
    // Streaming has the same limit on the headers.
    await assert.rejects(drain(client('slow', { timeoutMs: 100, maxRetries: 0 }).stream({ prompt: 'x' })), /no response within 0\.1 s$/);
  });

  test('429 with retry-after: 1 is retried once, after the second the server asked for', async () => {
    const r = await client('rate').generate({ prompt: 'x' });
    assert.equal(r.text, ' after the wait');
    const times = seen.filter((s) => s.mode === 'rate').map((s) => s.at);
    assert.equal(times.length, 2);
    const gap = times[1] - times[0];
    assert.ok(gap >= 950 && gap < 2500, `waited ${gap} ms`);
    assert.ok(r.totalMs >= 950);
  });

  test('a retry-after longer than maxRetryDelayMs fails at once, saying so', async () => {
    const t0 = performance.now();
    await assert.rejects(client('ratelong').generate({ prompt: 'x' }),
      new RegExp(`^Error: endpoint ${url('ratelong')}: HTTP 429 Too Many Requests: quota exceeded \\(retry-after 3600 s is longer than the 30 s this client waits\\)$`));
    assert.equal(attempts('ratelong'), 1);
    assert.ok(performance.now() - t0 < 1000);
  });

  test('500 twice then success: three attempts with growing, jittered waits; the last error when retries run out', async () => {
    const r = await client('flaky').generate({ prompt: 'x' });
    assert.equal(r.text, ' third time');
    const times = seen.filter((s) => s.mode === 'flaky').map((s) => s.at);
    assert.equal(times.length, 3);
    assert.ok(times[1] - times[0] >= 9 && times[2] - times[1] >= 19, `waits ${times[1] - times[0]}, ${times[2] - times[1]} ms (base 20 ms: 10–20, then 20–40)`);
    // A stream retries too, before any text.
    const s = await drain(client('flakystream').stream({ prompt: 'x' }));
    assert.equal(s.result.text, 'streamed');
    assert.equal(attempts('flakystream'), 3);
    // With one retry only, the second 500 is the error.
    seen.length = 0;
    await assert.rejects(client('flaky', { maxRetries: 1 }).generate({ prompt: 'x' }), new RegExp(`^Error: endpoint ${url('flaky')}: HTTP 500 Internal Server Error: crash 2$`));
  });

  test('malformed JSON, a malformed event, an error event: one line naming the URL, not retried', async () => {
    await assert.rejects(client('badjson').generate({ prompt: 'x' }), new RegExp(`^Error: endpoint ${url('badjson')}: the response is not JSON: \\{"choices": \\[ \\{"text": "cut$`));
    assert.equal(attempts('badjson'), 1);
    await assert.rejects(drain(client('badevent').stream({ prompt: 'x' })), new RegExp(`^Error: endpoint ${url('badevent')}: a stream event is not JSON: \\{"choices": \\[ oops$`));
    await assert.rejects(drain(client('streamerror').stream({ prompt: 'x' })), new RegExp(`^Error: endpoint ${url('streamerror')}: the stream reported an error: the model fell over$`));
    await assert.rejects(client('nothing').generate({ prompt: 'x' }), new RegExp(`^Error: endpoint ${url('nothing')}: HTTP 404 Not Found: no mode nothing$`));
    // A port nobody listens on.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await assert.rejects(new OpenAIModel({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'm', retryBaseMs: 5 }).generate({ prompt: 'x' }), /^Error: endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/completions: request failed: ECONNREFUSED$/);
  });

  test('bad options: one line each', () => {
    assert.throws(() => new OpenAIModel({ baseUrl: 'localhost:8080', model: 'm' }), /only http and https/);
    assert.throws(() => new OpenAIModel({ baseUrl: 'not a url', model: 'm' }), /'not a url' is not a URL/);
    assert.throws(() => new OpenAIModel({ baseUrl: base, model: '' }), /no model name given/);
    assert.throws(() => new OpenAIModel({ baseUrl: base, model: 'm', prices: { prompt: -1, completion: 0 } }), /prices\.prompt must be a number >= 0 .*got -1$/);
    assert.throws(() => new OpenAIModel({ baseUrl: base, model: 'm', timeoutMs: 0 }), /timeoutMs must be a number > 0/);
    assert.throws(() => new OpenAIModel({ baseUrl: base, model: 'm', apiKeyEnv: 'STLM_TIERS_UNSET_KEY' }), /the environment variable STLM_TIERS_UNSET_KEY \(apiKeyEnv\) is not set$/);
  });

  test('the API key from the environment goes in the Authorization header and nowhere else', async () => {
    process.env.STLM_TIERS_TEST_KEY = 'sk-very-secret-1234';
    try {
      const m = client('ok', { apiKeyEnv: 'STLM_TIERS_TEST_KEY' });
      await m.generate({ prompt: 'x' });
      assert.equal(seen.at(-1)!.auth, 'Bearer sk-very-secret-1234');
      const failing = client('nothing', { apiKeyEnv: 'STLM_TIERS_TEST_KEY' });
      const err = await failing.generate({ prompt: 'x' }).catch((e: Error) => e);
      for (const shown of [inspect(m, { depth: 5, showHidden: true }), JSON.stringify(m), JSON.stringify(m.info()), String(err), inspect(err)]) assert.ok(!shown.includes('sk-very-secret'), shown);
      const direct = client('ok', { apiKey: 'sk-direct-5678' });
      await direct.generate({ prompt: 'x' });
      assert.equal(seen.at(-1)!.auth, 'Bearer sk-direct-5678');
      assert.ok(!inspect(direct, { depth: 5, showHidden: true }).includes('sk-direct'));
    } finally {
      delete process.env.STLM_TIERS_TEST_KEY;
    }
  });
});

describe('OpenAIModel: streaming', () => {
  test('SSE split mid-line and mid-character, CRLF, comments and keep-alives: the exact text', async () => {
    const pieces: string[] = [];
    const r = await client('split').generate({ prompt: 'x' }, { onText: (t) => pieces.push(t) });
    assert.deepEqual(pieces, [' Ça', ' va', ' ✓ — ', '🙂', '!']);
    assert.equal(r.text, ' Ça va ✓ — 🙂!');
    assert.equal(r.finishReason, 'eos', "'stop' without stop strings is the model's own end");
    const multi = await drain(client('multiline').stream({ prompt: 'x' }));
    assert.equal(multi.result.text, 'two lines');
    assert.equal(multi.result.finishReason, 'length');
  });

  test('a stream cut without [DONE] or finish_reason is an error naming the URL, after the text it gave; not retried', async () => {
    const got: string[] = [];
    const s = client('truncated').stream({ prompt: 'x' });
    await assert.rejects(async () => {
      for (let r = await s.next(); !r.done; r = await s.next()) got.push(r.value);
    }, new RegExp(`^Error: endpoint ${url('truncated')}: the stream ended without \\[DONE\\] or a finish_reason \\(truncated after 15 characters\\)$`));
    assert.deepEqual(got, ['half a', ' sentence']);
    assert.equal(attempts('truncated'), 1, 'text was streamed: no retry');
    // Before any text, a truncated stream is retried, then reported.
    await assert.rejects(client('empty', { maxRetries: 1 }).generate({ prompt: 'x' }, { onText: () => undefined }), /the stream ended without \[DONE\] or a finish_reason \(truncated after 0 characters\)$/);
    assert.equal(attempts('empty'), 2);
  });

  test('a stream that stalls: the idle time limit ends it (no hang), and the connection is closed', async () => {
    const t0 = performance.now();
    const got: string[] = [];
    await assert.rejects(async () => {
      const s = client('stall', { idleTimeoutMs: 200 }).stream({ prompt: 'x' });
      for (let r = await s.next(); !r.done; r = await s.next()) got.push(r.value);
    }, new RegExp(`^Error: endpoint ${url('stall')}: the stream stalled: no data for 0\\.2 s$`));
    assert.deepEqual(got, ['and then']);
    assert.ok(performance.now() - t0 < 2000);
    await sleep(50);
    assert.equal(closed.get('stall'), 1);
  });

  test('abort mid-stream: the stream ends with finishReason abort and the connection closes; generate rejects', async () => {
    const ctl = new AbortController();
    const s = client('drip').stream({ prompt: 'x' }, { signal: ctl.signal });
    const first = await s.next();
    assert.deepEqual(first, { done: false, value: ' 0' });
    ctl.abort();
    const rest = await drain(s);
    assert.deepEqual(rest.pieces, []);
    assert.equal(rest.result.finishReason, 'abort');
    assert.equal(rest.result.text, ' 0');
    await sleep(50);
    assert.equal(closed.get('drip'), 1);
    const late = new AbortController();
    setTimeout(() => late.abort(), 100);
    await assert.rejects(client('drip').generate({ prompt: 'x' }, { signal: late.signal, onText: () => undefined }), { name: 'AbortError' });
    const slow = new AbortController();
    setTimeout(() => slow.abort(), 100);
    await assert.rejects(client('slow').generate({ prompt: 'x' }, { signal: slow.signal }), { name: 'AbortError' }, 'an abort before the headers');
  });
});

describe('OpenAIModel: usage and cost', () => {
  const prices = { prompt: 2, completion: 10 };
  test('cost = usage × prices, from the answer and from the stream\'s usage chunk', async () => {
    const r = await client('usage', { prices }).generate({ prompt: 'x' });
    assert.deepEqual(r.usage, { promptTokens: 1000, completionTokens: 500 });
    assert.equal(r.costUsd, (1000 * 2 + 500 * 10) / 1e6);
    const s = await drain(client('usage', { prices }).stream({ prompt: 'x' }));
    assert.deepEqual(s.result.usage, { promptTokens: 12, completionTokens: 3 });
    assert.equal(s.result.costUsd, (12 * 2 + 3 * 10) / 1e6);
    assert.deepEqual(client('usage', { prices }).info().pricePerMillion, prices);
  });

  test('without usage: the stream\'s chunks count the completion, the prompt is estimated', async () => {
    const s = await drain(client('nousage', { prices }).stream({ prompt: 'a prompt of some length' }));
    assert.deepEqual(s.result.usage, { promptTokens: estimateTokens('a prompt of some length'), completionTokens: 3 });
    assert.equal(estimateTokens('abcdefgh'), 2);
  });

  test('meanLogprob from the answer\'s logprobs; requested only when asked', async () => {
    const r = await client('logprobs', { logprobs: true }).generate({ prompt: 'x' });
    assert.equal(r.meanLogprob, -1);
    assert.equal(seen.at(-1)!.body.logprobs, 1);
    await client('ok').generate({ prompt: 'x' });
    assert.equal(seen.at(-1)!.body.logprobs, undefined);
  });

  test('a generate request carries only the fields set (what stlm synth sends)', async () => {
    await client('ok').generate({ prompt: 'Hi' }, { maxTokens: 5, temperature: 0.5, seed: 2 });
    assert.deepEqual(seen.at(-1)!.body, { model: 'mock-model', prompt: 'Hi', max_tokens: 5, temperature: 0.5, seed: 2 });
    await client('ok').generate({ prompt: 'Hi' }, { topP: 0.9, topK: 4, minP: 0.1, repetitionPenalty: 1.1, stop: ['\n'] });
    assert.deepEqual(seen.at(-1)!.body, { model: 'mock-model', prompt: 'Hi', max_tokens: 256, temperature: 0.8, top_p: 0.9, top_k: 4, min_p: 0.1, repetition_penalty: 1.1, stop: ['\n'] });
  });
});

describe('OpenAIModel: score through echo + logprobs', () => {
  test('known numbers: tokens from text_offset >= len(context), summed logprobs, greedy from top_logprobs', async () => {
    const scores = await client('echo').score('The cat', [' sat', ' ran']);
    assert.deepEqual(scores, [{ logprob: -0.75, greedy: true, tokens: 1 }, { logprob: -3.75, greedy: false, tokens: 2 }]);
  });

  test('max_tokens 0 refused: asks again with 1 and leaves out the generated token (and remembers)', async () => {
    const m = client('echo1');
    assert.deepEqual(await m.score('The cat', [' ran']), [{ logprob: -3.75, greedy: false, tokens: 2 }]);
    assert.deepEqual(seen.filter((s) => s.mode === 'echo1').map((s) => s.body.max_tokens), [0, 1]);
    await m.score('The cat', [' ran']);
    assert.deepEqual(seen.filter((s) => s.mode === 'echo1').map((s) => s.body.max_tokens), [0, 1, 1]);
  });

  test('an endpoint that refuses or ignores echo + logprobs: ScoreUnsupportedError saying so', async () => {
    await assert.rejects(client('noecho').score('The cat', [' sat']), (e: Error) => {
      assert.ok(e instanceof ScoreUnsupportedError);
      assert.equal(e.message, `endpoint ${base}/noecho/v1/completions cannot score continuations: it refused echo + logprobs (HTTP 400 Bad Request: 'echo' is not supported with this model)`);
      return true;
    });
    await assert.rejects(client('nologprobs').score('The cat', [' sat']), (e: Error) => e instanceof ScoreUnsupportedError && /has no choices\[0\]\.logprobs\.tokens/.test(e.message));
    await assert.rejects(client('echo').score('The cat', ['']), /score: continuation 0 is empty/);
  });

  test('tokenize: a clear error where the endpoint has no /tokenize; countTokens then estimates', async () => {
    const m = client('ok');
    await assert.rejects(m.tokenize('hello'), new RegExp(`^Error: endpoint ${lit(`${base}/ok/tokenize`)}: this endpoint has no tokenizer API \\(POST /tokenize answered HTTP 404\\)`));
    assert.equal(await m.countTokens('hello world!'), 3);
  });
});

describe('SSE parser', () => {
  const STREAM = '\uFEFF: comment\n\ndata: a\ndata: b\n\nevent: note\nid: 7\ndata: c\r\n\r\ndata: d\r\rdata:e\n\ndata\n\n: ping\ndata: é🙂\r\n\r\n';
  const EVENTS = [{ data: 'a\nb' }, { data: 'c', event: 'note', id: '7' }, { data: 'd', id: '7' }, { data: 'e', id: '7' }, { data: '', id: '7' }, { data: 'é🙂', id: '7' }];

  test('fields (an id lasts until the next), comments, multi-line data, CRLF / CR / LF, a BOM', () => {
    assert.deepEqual(new SseParser().push(STREAM), EVENTS);
  });

  test('the same events however the bytes are split (every split point, and one byte at a time)', () => {
    const bytes = new TextEncoder().encode(STREAM);
    for (let k = 0; k <= bytes.length; k++) {
      const p = new SseParser();
      assert.deepEqual([...p.push(bytes.subarray(0, k)), ...p.push(bytes.subarray(k)), ...p.end()], EVENTS, `split at ${k}`);
    }
    const p = new SseParser();
    const out = [];
    for (const b of bytes) out.push(...p.push(Uint8Array.of(b)));
    assert.deepEqual(out, EVENTS);
  });

  test('a CR ending one chunk and an LF starting the next are one line end', () => {
    const p = new SseParser();
    assert.deepEqual([...p.push('data: a\r'), ...p.push('\ndata: b\r\n\r\n')], [{ data: 'a\nb' }]);
  });

  test('at the end: a last event whose lines ended is kept; an unfinished line is dropped', () => {
    const a = new SseParser();
    assert.deepEqual([...a.push('data: x\n\ndata: [DONE]\n'), ...a.end()], [{ data: 'x' }, { data: '[DONE]' }]);
    const b = new SseParser();
    assert.deepEqual([...b.push('data: x\n\ndata: {"cho'), ...b.end()], [{ data: 'x' }]);
  });

  test('readSse: an idle time limit between chunks, and the abort signal', async () => {
    const never = () => new ReadableStream<Uint8Array>({ start(c) {
      c.enqueue(new TextEncoder().encode('data: 1\n\n'));
    } });
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const e of readSse(never(), { idleTimeoutMs: 50, url: 'http://x/v1/completions' })) got.push(e.data);
    }, /^Error: endpoint http:\/\/x\/v1\/completions: the stream stalled: no data for 0\.05 s$/);
    assert.deepEqual(got, ['1']);
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 30);
    await assert.rejects(async () => {
      for await (const e of readSse(never(), { idleTimeoutMs: 5000, url: 'u', signal: ctl.signal })) void e;
    }, { name: 'AbortError' });
  });

  test('retry-after: seconds, an HTTP date, retry-after-ms', () => {
    const date = 'Wed, 21 Oct 2015 07:28:00 GMT', at = Date.parse(date);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '3' })), 3000);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': date }), at - 4000), 4000);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': date }), at + 4000), 0, 'a date in the past: at once');
    assert.equal(retryAfterMs(new Headers({ 'retry-after-ms': '250', 'retry-after': '1' })), 250);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': 'soon' })), undefined);
    assert.equal(retryAfterMs(new Headers()), undefined);
  });
});
