// `stlm serve`'s continuous batching (generate/batch.ts behind LocalModel, slots in server/queue.ts): the
// oracle is the same request served alone (a server with one slot over its own copy of the model): every
// concurrent request's streamed text must equal it (each with its own seed, sampling, stop and
// max_tokens), on a quantized model (batched logits identical to alone) and on the f32 embedded model
// (batched logits within float summation order; the texts are still compared exactly). Also: slots and
// the bounded queue (429 with retry-after), a client that leaves mid-stream frees its slot, and the
// structured request log line (with the router's decision).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { createServer } from '../src/server/server.js';
import { LocalModel } from '../src/tiers/local.js';
import { Router } from '../src/tiers/router.js';
import type { LanguageModel } from '../src/tiers/types.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const skip = !existsSync(MODEL) && 'the embedded default model is absent';

let be: Backend;
let dir: string;
const closers: (() => Promise<void>)[] = [];
before(async () => {
  be = await createWasmBackend({ threads: 2 });
  dir = mkdtempSync(join(tmpdir(), 'stlm-serve-batch-'));
});
after(async () => {
  for (const c of closers.reverse()) await c();
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** A server over its own LocalModel of `file` named 'm' (plus the router over it as 'auto'), listening on loopback. */
async function serve(file: string, o: { slots: number; queueLimit?: number; logLines?: string[] }): Promise<{ url: string; lm: LocalModel; app: FastifyInstance }> {
  const lm = await LocalModel.open(file, { backend: be, name: 'm' });
  const router = new Router([{ name: 'm', tier: 'tiny', model: lm, offline: true }], { policy: 'cheapest' });
  const logger = o.logLines ? { stream: { write: (l: string) => void o.logLines!.push(l) } } : false;
  const app = createServer({ models: new Map<string, LanguageModel>([['m', lm], ['auto', router]]), slots: o.slots, queueLimit: o.queueLimit ?? 64, logger });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(async () => {
    await app.close();
    await lm.close();
  });
  return { url, lm, app };
}

/** A streamed completion's text (SSE chunks joined), its finish reason and usage. */
async function streamCompletion(url: string, body: Json, signal?: AbortSignal): Promise<{ status: number; text: string; finish: string | null; usage?: Json }> {
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }), signal });
  if (res.status !== 200) return { status: res.status, text: await res.text(), finish: null };
  const raw = await res.text();
  let text = '', finish: string | null = null, usage: Json | undefined;
  const events = raw.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events.at(-1), '[DONE]');
  for (const e of events.slice(0, -1)) {
    const j = JSON.parse(e);
    assert.equal(j.error, undefined, e);
    if (j.usage) usage = j.usage;
    for (const c of j.choices) {
      text += c.text;
      finish = c.finish_reason ?? finish;
    }
  }
  return { status: 200, text, finish, usage };
}

/** Requests of different prompts, seeds, sampling, stops and lengths. */
const REQUESTS: Json[] = Array.from({ length: 10 }, (_, i) => ({
  model: 'm', prompt: ['ROMEO:', 'The ', 'Once upon a time', 'JULIET:\nO', 'a', 'First Citizen:\nBefore we proceed any further, hear me speak.'][i % 6],
  max_tokens: [40, 7, 64, 25, 50][i % 5], seed: 1000 + i, temperature: [1, 0.8, 0.5, 1.2, 0][i % 5], top_p: i % 3 ? 0.95 : 1,
  ...(i % 4 === 1 ? { stop: ['\n'] } : {}),
}));

async function sameBatchedAsAlone(file: string): Promise<void> {
  const alone = await serve(file, { slots: 1 });
  const batched = await serve(file, { slots: 8 });
  const expected: Awaited<ReturnType<typeof streamCompletion>>[] = [];
  for (const r of REQUESTS) expected.push(await streamCompletion(alone.url, r));
  const batcher = batched.lm.enableBatching({ maxBatch: 8 });
  const got = await Promise.all(REQUESTS.map((r) => streamCompletion(batched.url, r)));
  got.forEach((g, i) => {
    assert.equal(g.status, 200, g.text);
    assert.deepEqual(g, expected[i], `request ${i} (seed ${REQUESTS[i].seed}) differs batched from alone`);
  });
  assert.ok(expected.some((e) => e.finish === 'stop') && expected.some((e) => e.finish === 'length'), 'both stop and length endings are covered');
  assert.ok(batcher.rows / batcher.steps > 2, `decode steps held ${batcher.rows} rows in ${batcher.steps} steps: requests ran together`);
}

describe('stlm serve: continuous batching', () => {
  test('concurrent streams equal each request served alone (Q8_0: batched logits are identical)', { skip }, async () => {
    const q8 = join(dir, 'q8.gguf');
    const r = spawnSync(process.execPath, [CLI, 'quantize', MODEL, q8, '--type', 'q8_0'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    await sameBatchedAsAlone(q8);
  });

  test('the same on the f32 embedded model', { skip }, async () => {
    await sameBatchedAsAlone(MODEL);
  });

  test('a generation admitted while others decode gets its first piece out before the next decode step', { skip }, async () => {
    const lm = await LocalModel.open(MODEL, { backend: be, name: 'm' });
    closers.push(() => lm.close());
    lm.enableBatching({ maxBatch: 4 });
    const model = lm.handle.model, push = model.pushBatch!.bind(model);
    let steps = 0;
    model.pushBatch = (sessions, ids) => {
      steps++;
      return push(sessions, ids);
    };
    const a = lm.stream({ prompt: 'ROMEO:' }, { maxTokens: 40, temperature: 0 });
    for (let i = 0; i < 3; i++) assert.equal((await a.next()).done, false);
    const b = lm.stream({ prompt: 'JULIET:' }, { maxTokens: 5, temperature: 0 });
    const before = steps;
    const first = await b.next();
    assert.equal(first.done, false);
    assert.equal(steps - before, 0, 'a decode step ran between the new generation\'s prefill and its first piece reaching the consumer');
    while (!(await b.next()).done);
    while (!(await a.next()).done);
  });

  test('a generation stepped alone gives the event loop a turn right after its first piece (so that piece is written at once)', { skip }, async () => {
    const lm = await LocalModel.open(MODEL, { backend: be, name: 'm' });
    closers.push(() => lm.close());
    await lm.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, temperature: 0 }); // warm: the first piece then comes well within 10 ms
    const it = lm.stream({ prompt: 'ROMEO:' }, { maxTokens: 20, temperature: 0 });
    assert.equal((await it.next()).done, false);
    let turned = false;
    setImmediate(() => (turned = true));
    assert.equal((await it.next()).done, false);
    assert.ok(turned, 'the second piece came before the event loop had a turn');
    while (!(await it.next()).done);
  });

  test('slots and the bounded queue: 2 run, 1 waits, the next gets 429 with retry-after; a client that leaves frees its slot', { skip }, async () => {
    const { url, lm } = await serve(MODEL, { slots: 2, queueLimit: 1 });
    const batcher = lm.enableBatching({ maxBatch: 2 });
    const long = { model: 'm', prompt: 'ROMEO:', max_tokens: 200, temperature: 1, seed: 5 };
    // Two streams take the slots; read their first chunk so both are running.
    const acs = [new AbortController(), new AbortController()];
    const readers = await Promise.all(acs.map(async (ac, i) => {
      const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...long, seed: i, stream: true }), signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      return reader;
    }));
    assert.equal(batcher.load.active, 2);
    const waiting = streamCompletion(url, { ...long, max_tokens: 3 });
    await new Promise((r) => setTimeout(r, 50));
    const refused = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(long) });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal((await refused.json()).error.code, 'rate_limit_exceeded');
    // The first client leaves: its generation stops, the waiting request takes its slot and completes.
    acs[0].abort();
    await readers[0].cancel().catch(() => undefined);
    const w = await waiting;
    assert.equal(w.status, 200);
    assert.equal(w.usage?.completion_tokens, 3);
    acs[1].abort();
    await readers[1].cancel().catch(() => undefined);
    for (let i = 0; i < 100 && batcher.load.active + batcher.load.waiting > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batcher.load, { active: 0, waiting: 0 }, 'every slot is free once its clients left');
    const after = await streamCompletion(url, { ...long, max_tokens: 2 });
    assert.equal(after.status, 200);
  });

  test('one JSON log line per request: model, status, tokens, time to first token, total ms; the router\'s decision', { skip }, async () => {
    const lines: string[] = [];
    const { url } = await serve(MODEL, { slots: 4, logLines: lines });
    const done = await streamCompletion(url, { model: 'm', prompt: 'ROMEO:', max_tokens: 5, temperature: 0 });
    assert.equal(done.status, 200);
    const chat = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }) });
    assert.equal(chat.status, 200);
    const missing = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nope', prompt: 'x' }) });
    assert.equal(missing.status, 404);
    await chat.text();
    await missing.text();
    for (let i = 0; i < 50 && lines.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    const logs = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    assert.equal(logs.length, 3, lines.join(''));
    const [cmpl, routed, notFound] = logs;
    assert.equal(cmpl.url, '/v1/completions');
    assert.equal(cmpl.status, 200);
    assert.equal(cmpl.model, 'm');
    assert.equal(cmpl.promptTokens, done.usage!.prompt_tokens);
    assert.equal(cmpl.completionTokens, 5);
    assert.ok(cmpl.ttftMs > 0 && cmpl.totalMs >= cmpl.ttftMs, JSON.stringify(cmpl));
    assert.equal(typeof cmpl.reqId, 'string');
    assert.equal(routed.model, 'auto');
    assert.equal(routed.route.tier, 'm');
    assert.equal(typeof routed.route.reason, 'string');
    assert.ok(routed.route.reason.length > 0);
    assert.equal(notFound.status, 404);
    assert.equal(notFound.model, 'nope');
  });
});
