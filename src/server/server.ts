/**
 * `stlm serve`: an OpenAI-compatible HTTP server over any LanguageModel (a model file as a LocalModel,
 * every tier of a tiers config by name, and the router as `auto`), on fastify. Endpoints, in OpenAI's
 * shapes: `GET /health`, `GET /v1/models`, `POST /v1/completions` (prompt as text, texts or token ids; n;
 * stop; seed; `logprobs` top-N and `echo`, what lm-evaluation-harness's `local-completions` scores with)
 * and `POST /v1/chat/completions` (messages through the model's chat template; SSE streaming in OpenAI's
 * chunk format; `stream_options.include_usage`; logprobs).
 *
 * Bodies are checked by JSON Schema (`schemas.ts`) and every error, fastify's own included, is answered in
 * OpenAI's shape `{ error: { message, type, param, code } }`. An optional API key (Bearer) is compared in
 * constant time. A client that goes away mid-request aborts its generation (AbortSignal).
 *
 * Concurrency: a model stlm runs itself (a LocalModel) serves up to `slots` requests at once by continuous
 * batching (`generate/batch.ts`: one batched decode step per iteration for every running request, each
 * with its own KV cache, sampler, stop rules and stream), as many as the KV memory budget holds; other
 * tiers serve one request at a time. Beyond the slots, a bounded queue (`queue.ts`; 429 with retry-after
 * when full). The router's tiers are the same objects as the tiers served by name but the router's calls
 * do not pass through their queues.
 *
 * Logs (with `logger`): one JSON line per request when it ends (pino, fastify's logger): its id, method,
 * URL, model, status, prompt and completion tokens, time to first token and total milliseconds, and the
 * router's decision (tier, reason) where the router answered.
 *
 * The router's decision (tier, reason, each tier's cost and latency) comes back in an `x-stlm-route`
 * header (one line of JSON, ASCII) and in the body's extra field `stlm_route`; streamed, in the finishing
 * chunk's `stlm_route` only, since the headers leave before the router has decided.
 *
 * Log-probabilities and echo need the model's own numbers, so they are served for stlm's own models
 * (LocalModel, also as a tier); other tiers refuse them by name.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { LocalModel, type TokenLogprob } from '../tiers/local.js';
import { LazyModel } from '../tiers/open.js';
import type { RouteDecision } from '../tiers/router.js';
import type { ChatMessage, FinishReason, GenerateOptions, GenerateResult, LanguageModel } from '../tiers/types.js';
import { QueueFullError, RequestQueue } from './queue.js';
import { UNSUPPORTED, chatBody, completionsBody } from './schemas.js';
import { registerPlayground } from './static.js';

export interface ServerOptions {
  /** The models requests name (`model`); the router, if any, under its name `auto`. */
  models: Map<string, LanguageModel>;
  /** Requests must send `Authorization: Bearer <apiKey>` (except GET /health). */
  apiKey?: string;
  /** Requests that may wait for a model while it serves another (default 16). */
  queueLimit?: number;
  /** Largest request body in bytes (default 1 MiB): larger ones get 413. */
  bodyLimit?: number;
  /**
   * fastify's logger (pino): true logs one JSON line per request to stdout; `{ stream }` writes those
   * lines to a stream of your own. Default false.
   */
  logger?: boolean | { stream: { write(line: string): void }; level?: string };
  /**
   * Requests a LocalModel serves at once by continuous batching (default 32; 1 serves one at a time),
   * fewer where `kvMemoryBytes` does not hold that many KV caches.
   */
  slots?: number;
  /** Memory for the KV caches of one model's batched requests, in bytes (default 1 GiB). */
  kvMemoryBytes?: number;
  /** Origins a browser page may call from (CORS); '*' for any. Default none: no CORS headers. */
  cors?: string[];
  /** Serve the playground built in this folder at `/` (static.ts; `stlm serve` passes PLAYGROUND_DIR). Default: not served. */
  playground?: string;
}

/** The writer of an SSE answer. */
interface Sse {
  send(data: unknown): void;
  end(): void;
}

/** An error answered as itself: status, OpenAI type, the field it is about, a code. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 404 ? 'invalid_request_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

/** One request's structured log line. */
interface RequestLog {
  start: number;
  model?: string;
  promptTokens?: number;
  completionTokens?: number;
  ttftMs?: number;
  route?: { tier: string; reason: string; costUsd: number; latencyMs: number };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/**
 * Requests a LocalModel serves at once: `o.slots` (default 32), as many as `o.kvMemoryBytes` (default
 * 1 GiB) holds KV caches of the model's context; more than one turns on its continuous batching.
 */
function batchSlots(m: LocalModel, o: ServerOptions): number {
  const want = o.slots ?? 32;
  if (!(Number.isInteger(want) && want >= 1)) throw new Error(`server: slots must be an integer >= 1, got ${want}`);
  const fit = Math.floor((o.kvMemoryBytes ?? 1 << 30) / m.kvCacheBytes());
  const slots = Math.max(1, Math.min(want, fit));
  if (slots > 1) m.enableBatching({ maxBatch: slots });
  return slots;
}

interface Choice {
  text: string;
  finishReason: 'stop' | 'length';
  tokens: TokenLogprob[];
  usage: GenerateResult['usage'];
  route?: RouteDecision;
}

/** OpenAI's finish reasons: EOS and a stop string are both 'stop'. */
const finish = (r: FinishReason): 'stop' | 'length' => (r === 'length' ? 'length' : 'stop');

/** The error body OpenAI sends. */
const errorBody = (message: string, type: string, param: string | null, code: string | null) => ({ error: { message, type, param, code } });

/**
 * Drops the tokens of a reply's leading whitespace, which the reply's text leaves out: whitespace-only
 * tokens go, and the first kept token's text loses its leading whitespace; so the tokens' texts still
 * concatenate to the reply.
 */
function trimLeadingWhitespace(tokens: TokenLogprob[]): void {
  while (tokens.length && /^\s+$/.test(tokens[0].text)) tokens.shift();
  if (tokens.length) tokens[0] = { ...tokens[0], text: tokens[0].text.replace(/^\s+/, '') };
}

/** Characters as OpenAI's endpoints count them (code points), for text_offset. */
const codePoints = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/** A JSON value safe in one header line: ASCII only. */
const headerJson = (v: unknown): string => JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Ajv's instancePath ("/messages/0/role") as a field name ("messages[0].role"). */
function paramOf(path: string, missing?: string): string | null {
  const parts = path.split('/').filter(Boolean);
  if (missing) parts.push(missing);
  if (!parts.length) return null;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/**
 * How long a stream's events may wait to share one socket write: FLUSH_MS (a few decode steps' worth),
 * and FLUSH_MS_PER_STREAM per open stream beyond that, so the server makes about the same number of
 * socket writes a second (~2,000) however many streams are open. A write costs the server's thread
 * ~35 µs on loopback (writev, the receiving socket's work included); with every stream writing every
 * 2 ms the writes took 15% of its time at 8 clients and would take most of it at 32. The hold stops at
 * FLUSH_MS_MAX (a 60 Hz frame), so a reader never waits longer than that for text however many streams
 * are open (1 ms per stream instead of 0.5 measured no faster at 8 clients: 91–100 against 91–97 µs of
 * server CPU per token, three interleaved pairs).
 */
const FLUSH_MS = 2;
const FLUSH_MS_PER_STREAM = 0.5;
const FLUSH_MS_MAX = 16;

/**
 * A streamed chunk's JSON with its text left open: `event(text)` is exactly `JSON.stringify` of `chunk`
 * with TEXT_SLOT replaced by text (the chunk serialised once, then one string per token instead of an
 * object tree and a full stringify per token per stream).
 */
export const TEXT_SLOT = '\u0000stlm-text\u0000';
export function textChunkEvent(chunk: Json): (text: string) => string {
  const json = JSON.stringify(chunk), slot = JSON.stringify(TEXT_SLOT), at = json.indexOf(slot);
  if (at < 0 || json.indexOf(slot, at + 1) >= 0) throw new Error('textChunkEvent: the chunk must hold TEXT_SLOT once');
  const head = json.slice(0, at), tail = json.slice(at + slot.length);
  return (text) => head + JSON.stringify(text) + tail;
}

/** Builds the server (not listening: call `listen`). */
export function createServer(o: ServerOptions): FastifyInstance {
  const app = Fastify({
    bodyLimit: o.bodyLimit ?? 1 << 20,
    logger: typeof o.logger === 'object' ? { level: o.logger.level ?? 'info', stream: o.logger.stream } : o.logger ?? false,
    // One line per request, written when it ends (below), instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Wrong types are errors, not coerced; nothing is removed or defaulted behind the client's back.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });
  const created = Math.floor(Date.now() / 1000);
  const queues = new Map<string, RequestQueue>();
  for (const [name, m] of o.models) queues.set(name, new RequestQueue(o.queueLimit ?? 16, m instanceof LocalModel ? batchSlots(m, o) : 1));
  const keyDigest = o.apiKey !== undefined ? createHash('sha256').update(o.apiKey).digest() : undefined;

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: { instancePath: string; keyword: string; params: Record<string, unknown>; message?: string }[] }, req, reply) => {
    if (err instanceof HttpError) {
      if (err.status === 429) void reply.header('retry-after', '1');
      return reply.code(err.status).send(errorBody(err.message, err.type, err.param, err.code));
    }
    if (err.validation?.length) {
      // The deepest error names the field (an anyOf's branches fail at its own path or below); its
      // alternatives at the same path are listed together ("must be string or must be array").
      const v = err.validation.reduce((a, e) => (e.instancePath.length > a.instancePath.length ? e : a));
      const missing = v.keyword === 'required' ? String(v.params.missingProperty) : undefined;
      const param = paramOf(v.instancePath, missing);
      const why = [...new Set(err.validation.filter((e) => e.instancePath === v.instancePath && e.keyword !== 'anyOf' && e.keyword !== 'required').map((e) => e.message ?? 'invalid'))].join(' or ');
      const message = missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param ?? 'body'}': ${why || v.message || 'invalid'}.`;
      return reply.code(400).send(errorBody(message, 'invalid_request_error', param, missing ? 'missing_required_parameter' : 'invalid_value'));
    }
    // The client went away mid-request (its generation was aborted): nobody reads this answer.
    if (err.name === 'AbortError') return reply.code(499).send(errorBody('The client closed the request.', 'invalid_request_error', null, 'client_closed_request'));
    const status = err.statusCode ?? 500;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send(errorBody(`The request body is over the limit of ${app.initialConfig.bodyLimit} bytes.`, 'invalid_request_error', null, 'request_too_large'));
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply.code(415).send(errorBody(`Send the body as application/json (got '${req.headers['content-type'] ?? 'none'}').`, 'invalid_request_error', null, 'unsupported_media_type'));
    if (status === 400 && (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY')) {
      return reply.code(400).send(errorBody(`We could not parse the JSON body of your request: ${err.message}`, 'invalid_request_error', null, 'invalid_json'));
    }
    if (status >= 400 && status < 500) return reply.code(status).send(errorBody(err.message, 'invalid_request_error', null, err.code ?? null));
    req.log.error(err);
    return reply.code(500).send(errorBody(`The server had an error while processing your request: ${err.message}`, 'server_error', null, null));
  });

  // The request's log line, filled in by its route and written once when the connection is done with it.
  const logs = new WeakMap<FastifyRequest, RequestLog>();
  app.addHook('onRequest', async (req, reply) => {
    const line: RequestLog = { start: performance.now() };
    logs.set(req, line);
    reply.raw.once('close', () => {
      const status = reply.raw.writableFinished ? reply.raw.statusCode : 499;
      const { start, ...fields } = line;
      req.log.info({ reqId: req.id, method: req.method, url: req.url.split('?')[0], status, ...fields, totalMs: round(performance.now() - start) }, 'request');
    });
  });
  /** Notes the first piece of text sent (time to first token, from the request's arrival). */
  const firstToken = (req: FastifyRequest) => {
    const line = logs.get(req);
    if (line && line.ttftMs === undefined) line.ttftMs = round(performance.now() - line.start);
  };
  const noteUsage = (req: FastifyRequest, model: string, prompt: number, completion: number, route?: RouteDecision) => {
    const line = logs.get(req);
    if (!line) return;
    Object.assign(line, { model, promptTokens: prompt, completionTokens: completion });
    if (route) line.route = { tier: route.tier, reason: route.reason, costUsd: route.costUsd, latencyMs: round(route.latencyMs) };
  };

  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(`Unknown request URL: ${req.method} ${req.url.split('?')[0]}.`, 'invalid_request_error', null, 'unknown_url')));

  if (o.cors?.length) {
    void app.register(cors, {
      origin: o.cors.includes('*') ? true : o.cors, methods: ['GET', 'POST', 'OPTIONS'],
      allowedHeaders: ['content-type', 'authorization'], exposedHeaders: ['x-stlm-route'],
    });
  }

  if (keyDigest) {
    app.addHook('onRequest', async (req) => {
      // A browser's CORS preflight carries no credentials; the request it announces does.
      if (req.url === '/health' || req.method === 'OPTIONS' || (req.routeOptions.config as { public?: boolean }).public) return;
      const auth = req.headers.authorization ?? '';
      const given = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
      // Digests of equal length, compared in constant time: neither the key nor its length leaks by timing.
      if (given === undefined || !timingSafeEqual(createHash('sha256').update(given).digest(), keyDigest)) {
        throw new HttpError(401, given === undefined ? 'You did not provide an API key (Authorization: Bearer <key>).' : 'Incorrect API key provided.', null, 'invalid_api_key');
      }
    });
  }

  if (o.playground !== undefined) void app.register(async (scope) => registerPlayground(scope, o.playground!));

  app.get('/health', async () => ({ status: 'ok', models: [...o.models.keys()] }));

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [...o.models.entries()].map(([id, m]) => {
      const info = m.info();
      return { id, object: 'model', created, owned_by: 'stlm', context_length: info.contextLength ?? null };
    }),
  }));

  /** The model a request names, its queue, and the LocalModel behind it where there is one. */
  async function modelOf(name: string): Promise<{ model: LanguageModel; local?: LocalModel; queue: RequestQueue }> {
    const model = o.models.get(name);
    if (!model) throw new HttpError(404, `The model '${name}' does not exist (served: ${[...o.models.keys()].join(', ')}).`, 'model', 'model_not_found');
    const opened = model instanceof LazyModel ? await model.resolve() : model;
    return { model, local: opened instanceof LocalModel ? opened : undefined, queue: queues.get(name)! };
  }

  function refuseUnsupported(body: Json): void {
    for (const [name, isUsed] of Object.entries(UNSUPPORTED)) {
      const v = body[name];
      if (v !== undefined && v !== null && isUsed(v)) throw new HttpError(400, `'${name}' is not supported by this server.`, name, 'unsupported_parameter');
    }
  }

  /** The request's end: aborted when the client goes away before the answer is complete. */
  function abortOnClose(reply: FastifyReply): AbortController {
    const ac = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) ac.abort(Object.assign(new Error('the client disconnected'), { name: 'AbortError' }));
    });
    return ac;
  }

  async function acquire(queue: RequestQueue, signal: AbortSignal): Promise<() => void> {
    try {
      return await queue.acquire(signal);
    } catch (e) {
      if (e instanceof QueueFullError) throw new HttpError(429, e.message, null, 'rate_limit_exceeded');
      throw e;
    }
  }

  /** Checks max_tokens and the prompt's length against the model's context, where the model says what it is. */
  function checkLimits(ctx: number | undefined, maxTokens: number, promptTokens: number | undefined, param: string): void {
    if (maxTokens < 0) throw new HttpError(400, `Invalid '${param}': ${maxTokens}; it must be at least 0.`, param, 'invalid_value');
    if (ctx === undefined) return;
    if (maxTokens > ctx) throw new HttpError(400, `'${param}' is ${maxTokens}, beyond this model's context of ${ctx} tokens.`, param, 'invalid_value');
    const room = maxTokens > 0 ? ctx - 1 : ctx;
    if (promptTokens !== undefined && promptTokens > room) {
      throw new HttpError(400, `This model's maximum context length is ${ctx} tokens, however your prompt has ${promptTokens} tokens${maxTokens > 0 ? ' (at most ' + room + ' leave room to generate)' : ''}.`, null, 'context_length_exceeded');
    }
  }

  /**
   * Prompt tokens of a text on a model that is not a LocalModel, where it counts them exactly (llama.cpp);
   * a remote endpoint only estimates, so it judges its own prompts (unknown here).
   */
  async function countTokens(m: LanguageModel, text: string): Promise<number | undefined> {
    if (m.info().provider === 'openai' || m.info().provider === 'router') return undefined;
    try {
      return await m.countTokens(text);
    } catch {
      return undefined;
    }
  }

  interface RunSpec {
    model: LanguageModel;
    local?: LocalModel;
    input: { prompt: string } | { messages: ChatMessage[] };
    promptIds?: number[];
    opts: GenerateOptions;
    topLogprobs?: number;
    signal: AbortSignal;
    /** Streaming: each piece of text with the tokens it completes. */
    onPiece?: (text: string, tokens: TokenLogprob[]) => void;
    /** Called with each piece of text, streamed or not (the request log's time to first token). */
    onText?: () => void;
  }

  /** One choice: a generation (streamed pieces to onPiece), with its tokens' log-probabilities when asked. */
  async function runChoice(s: RunSpec): Promise<Choice> {
    const tokens: TokenLogprob[] = [];
    let pending: TokenLogprob[] = [];
    const want = s.topLogprobs !== undefined;
    // A chat reply's leading whitespace is not part of it (LocalModel drops it): nor are its tokens.
    const chat = 'messages' in s.input;
    const opts = {
      ...s.opts, signal: s.signal, ...(s.onText ? { onText: s.onText } : {}),
      ...(s.local && s.promptIds ? { promptIds: s.promptIds } : {}),
      ...(s.local && want ? { topLogprobs: s.topLogprobs, onTokenLogprob: (t: TokenLogprob) => { tokens.push(t); pending.push(t); } } : {}),
    };
    let r: GenerateResult;
    if (s.onPiece) {
      const it = s.model.stream(s.input as never, opts);
      let step = await it.next(), first = true;
      while (!step.done) {
        const piece = step.value;
        const done = pending;
        pending = [];
        if (chat && first) trimLeadingWhitespace(done);
        first = false;
        s.onPiece(piece, done);
        step = await it.next();
      }
      r = step.value;
      if (r.finishReason === 'abort') throw s.signal.reason ?? new Error('aborted');
    } else {
      r = await s.model.generate(s.input as never, opts);
    }
    if (chat) trimLeadingWhitespace(tokens);
    // A stop string ends the text inside the tokens generated: keep the tokens whose text the answer holds.
    let kept = 0, seen = 0;
    while (kept < tokens.length && seen < r.text.length) seen += tokens[kept++].text.length;
    tokens.length = kept;
    return { text: r.text, finishReason: finish(r.finishReason), tokens, usage: r.usage, route: (r as { route?: RouteDecision }).route };
  }

  const id = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;

  /** SSE answers being written now (the hold before a socket write grows with them). */
  let openStreams = 0;

  /** Starts an SSE answer (the reply is then ours to write); returns the writer. */
  function sse(reply: FastifyReply, signal: AbortSignal, headers: Record<string, string> = {}): Sse {
    reply.hijack();
    const raw = reply.raw;
    raw.on('error', () => undefined);
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no', ...headers });
    // After the first event, events are held for the hold above and go out in one write (one HTTP chunk,
    // one socket write): a batched decode step yields one token per stream, and one write per token per
    // stream was 17% of the server's time at 8 clients. Held as one string rather than corked writes, so
    // a token costs a string append, not a pass through the HTTP writer. end() writes whatever is held.
    let held = '', timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      if (held && !raw.destroyed && !raw.writableEnded) raw.write(held);
      held = '';
    };
    let first = true, open = true;
    openStreams++;
    const closed = () => {
      if (open) openStreams--;
      open = false;
    };
    raw.once('close', closed);
    return {
      send: (data: unknown) => {
        if (signal.aborted || raw.destroyed) return;
        const event = `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
        if (first) {
          first = false;
          raw.write(event);
          return;
        }
        held += event;
        timer ??= setTimeout(flush, Math.min(FLUSH_MS_MAX, Math.max(FLUSH_MS, openStreams * FLUSH_MS_PER_STREAM)));
      },
      end: () => {
        closed();
        if (timer) clearTimeout(timer);
        flush();
        if (!raw.destroyed) raw.end();
      },
    };
  }

  /** Ends a stream that failed: the error event (unless the client left), then [DONE]. */
  function failStream(out: Sse, e: unknown, signal: AbortSignal): void {
    if (!signal.aborted) out.send(streamError(e));
    out.send('[DONE]');
    out.end();
  }

  /**
   * Ends a finished request, the same for completions and chat: a stream gets its usage chunk (when
   * asked for) and [DONE]; a plain reply is the choices with usage, and the router's decision in the
   * `x-stlm-route` header and the body.
   */
  function finishReply(reply: FastifyReply, out: Sse | undefined, o: { chunk: (choices: Json[], extra?: Json) => Json; choices: Json[]; prompt: number; completion: number; route?: RouteDecision; includeUsage: boolean }) {
    const usage = { prompt_tokens: o.prompt, completion_tokens: o.completion, total_tokens: o.prompt + o.completion };
    if (out) {
      if (o.includeUsage) out.send(o.chunk([], { usage }));
      out.send('[DONE]');
      out.end();
      return reply;
    }
    if (o.route) void reply.header('x-stlm-route', headerJson(o.route));
    return o.chunk(o.choices, { usage, ...(o.route ? { stlm_route: o.route } : {}) });
  }

  /** An error once a stream has started: an error event in OpenAI's shape, then the end. */
  function streamError(e: unknown): Json {
    const err = e instanceof HttpError ? e : new HttpError(500, (e as Error)?.message ?? String(e));
    return errorBody(err.message, err.type, err.param, err.code);
  }

  function samplingOf(b: Json, seed: number): GenerateOptions {
    const stop = b.stop === undefined || b.stop === null ? [] : typeof b.stop === 'string' ? [b.stop] : (b.stop as string[]);
    return {
      temperature: (b.temperature as number | null) ?? 1, topP: (b.top_p as number | null) ?? 1, topK: (b.top_k as number | null) ?? 0,
      minP: (b.min_p as number | null) ?? 0, repetitionPenalty: (b.repetition_penalty as number | null) ?? 1, seed, stop: stop.filter((s) => s !== ''),
    };
  }

  const seedOf = (b: Json): number => (b.seed as number | null) ?? randomBytes(4).readUInt32BE(0) >>> 1;

  /**
   * The echoed prompt tokens with texts that add up to the prompt as sent, so text_offset indexes it: a
   * SentencePiece tokenizer's dummy prefix (the space encoding puts before the first word, which the
   * prompt does not have) is taken off the first token that carries it (a lone '▁' echoes as '').
   */
  function textsOfPrompt(tokens: TokenLogprob[], prompt: string): TokenLogprob[] {
    const joined = tokens.map((t) => t.text).join('');
    if (joined === prompt || joined !== ` ${prompt}`) return tokens;
    const i = tokens.findIndex((t) => t.text !== '');
    return tokens.map((t, j) => (j === i ? { ...t, text: t.text.slice(1) } : t));
  }

  /** OpenAI's completions `logprobs` object for tokens starting at character `offset`. */
  function completionLogprobs(tokens: TokenLogprob[], offset: number): Json {
    const textOffset: number[] = [];
    let at = offset;
    for (const t of tokens) {
      textOffset.push(at);
      at += codePoints(t.text);
    }
    return {
      tokens: tokens.map((t) => t.text),
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: tokens.map((t) => (t.logprob === null ? null : Object.fromEntries(t.top.map((x) => [x.text, x.logprob])))),
      text_offset: textOffset,
    };
  }

  app.post('/v1/completions', { schema: { body: completionsBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as Json;
    logs.get(req)!.model = b.model as string;
    refuseUnsupported(b);
    const { model, local, queue } = await modelOf(b.model as string);
    const name = b.model as string;
    const logprobs = (b.logprobs as number | null | undefined) ?? undefined;
    const echo = b.echo === true;
    if (!local && logprobs !== undefined) throw new HttpError(400, `'logprobs' needs one of stlm's own models; '${name}' does not report log-probabilities here.`, 'logprobs', 'unsupported_parameter');
    if (!local && echo) throw new HttpError(400, `'echo' needs one of stlm's own models; '${name}' cannot echo its prompt here.`, 'echo', 'unsupported_parameter');
    const raw = b.prompt as string | string[] | number[] | number[][];
    const prompts: (string | number[])[] = typeof raw === 'string' ? [raw] : typeof raw[0] === 'number' ? [raw as number[]] : (raw as (string | number[])[]);
    if (!local && prompts.some((p) => typeof p !== 'string')) throw new HttpError(400, `Token-id prompts need one of stlm's own models; send '${name}' text.`, 'prompt', 'unsupported_parameter');
    const maxTokens = (b.max_tokens as number | null | undefined) ?? 16;
    const ctx = model.info().contextLength ?? local?.info().contextLength;
    const vocab = local?.handle.model.config.vocabSize;
    // Each prompt as the model sees it: its ids (for stlm's own models) and its text.
    const seen = await Promise.all(prompts.map(async (p) => {
      if (typeof p !== 'string') {
        const bad = p.find((x) => vocab !== undefined && x >= vocab);
        if (bad !== undefined) throw new HttpError(400, `Token id ${bad} is outside the model's vocabulary of ${vocab}.`, 'prompt', 'invalid_value');
        return { ids: p, text: new TextDecoder().decode(local!.handle.tokenizer.decode(p)) };
      }
      return { ids: local?.promptIds(p), text: p, count: local ? undefined : ctx !== undefined ? await countTokens(model, p) : undefined };
    }));
    for (const p of seen) checkLimits(ctx, maxTokens, p.ids?.length ?? p.count, 'max_tokens');
    const n = (b.n as number | null) ?? 1, seed = seedOf(b), sampling = samplingOf(b, seed);
    const stream = b.stream === true, includeUsage = (b.stream_options as Json | null)?.include_usage === true;

    const ac = abortOnClose(reply);
    const release = await acquire(queue, ac.signal);
    const cid = id('cmpl'), now = Math.floor(Date.now() / 1000);
    const chunk = (choices: Json[], extra: Json = {}) => ({ id: cid, object: 'text_completion', created: now, model: name, choices, ...extra });
    try {
      const promptLogprobs = seen.map((p) => (echo && logprobs !== undefined && local ? textsOfPrompt(local.tokenLogprobs(p.ids!, logprobs), p.text) : undefined));
      const out = stream ? sse(reply, ac.signal) : undefined;
      const choices: Json[] = [];
      let promptTokens = 0, completionTokens = 0;
      let firstRoute: RouteDecision | undefined;
      try {
        for (const [pi, p] of seen.entries()) {
          let promptCounted = false;
          for (let j = 0; j < n; j++) {
            const index = pi * n + j;
            const head = echo ? p.text : '';
            const headLogprobs = promptLogprobs[pi];
            if (out && echo) out.send(chunk([{ text: head, index, logprobs: headLogprobs ? completionLogprobs(headLogprobs, 0) : null, finish_reason: null }]));
            let offset = codePoints(p.text); // generated text starts after the prompt, echoed or not
            const textEvent = textChunkEvent(chunk([{ text: TEXT_SLOT, index, logprobs: null, finish_reason: null }]));
            const c = await runChoice({
              model, local, input: { prompt: p.text }, promptIds: typeof prompts[pi] === 'string' ? undefined : p.ids,
              opts: { ...sampling, maxTokens, seed: seed + j }, topLogprobs: logprobs, signal: ac.signal, onText: () => firstToken(req),
              onPiece: out ? (text, toks) => {
                if (logprobs === undefined) out.send(textEvent(text));
                else out.send(chunk([{ text, index, logprobs: completionLogprobs(toks, offset), finish_reason: null }]));
                offset += toks.reduce((s, t) => s + codePoints(t.text), 0);
              } : undefined,
            });
            firstRoute ??= c.route;
            if (!promptCounted) promptTokens += c.usage.promptTokens;
            promptCounted = true;
            completionTokens += c.usage.completionTokens;
            const route = c.route ? { stlm_route: c.route } : {};
            if (out) {
              out.send(chunk([{ text: '', index, logprobs: null, finish_reason: c.finishReason, ...route }]));
              continue;
            }
            const lp = logprobs === undefined ? null : completionLogprobs([...(headLogprobs ?? []), ...c.tokens], headLogprobs ? 0 : codePoints(head || (echo ? '' : p.text)));
            choices.push({ text: head + c.text, index, logprobs: lp, finish_reason: c.finishReason, ...route });
          }
        }
      } catch (e) {
        if (!out) throw e;
        failStream(out, e, ac.signal);
        return reply;
      }
      noteUsage(req, name, promptTokens, completionTokens, firstRoute);
      return finishReply(reply, out, { chunk, choices, prompt: promptTokens, completion: completionTokens, route: firstRoute, includeUsage });
    } finally {
      release();
    }
  });

  /** OpenAI's chat `logprobs` object. */
  function chatLogprobs(tokens: TokenLogprob[]): Json {
    const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
    return {
      content: tokens.map((t) => ({
        token: t.text, logprob: t.logprob, bytes: bytes(t.text),
        top_logprobs: t.top.map((x) => ({ token: x.text, logprob: x.logprob, bytes: bytes(x.text) })),
      })),
      refusal: null,
    };
  }

  app.post('/v1/chat/completions', { schema: { body: chatBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as Json;
    logs.get(req)!.model = b.model as string;
    refuseUnsupported(b);
    const name = b.model as string;
    const { model, local, queue } = await modelOf(name);
    const messages: ChatMessage[] = (b.messages as { role: string; content: string | { text: string }[] }[]).map((m) => ({
      role: m.role === 'developer' ? 'system' : (m.role as ChatMessage['role']),
      content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
    }));
    const wantLogprobs = b.logprobs === true;
    if (wantLogprobs && !local) throw new HttpError(400, `'logprobs' needs one of stlm's own models; '${name}' does not report log-probabilities here.`, 'logprobs', 'unsupported_parameter');
    const topLogprobs = wantLogprobs ? (b.top_logprobs as number | null | undefined) ?? 0 : undefined;
    const ctx = model.info().contextLength ?? local?.info().contextLength;
    let promptTokens: number | undefined;
    if (local) {
      try {
        const r = local.renderChat(messages);
        promptTokens = local.promptIds(r.prompt, { addBos: r.addBos }).length;
      } catch (e) {
        throw new HttpError(400, (e as Error).message, 'messages', 'invalid_value');
      }
    } else if (ctx !== undefined) promptTokens = await countTokens(model, messages.map((m) => m.content).join('\n'));
    const param = b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
    const asked = (b[param] as number | null | undefined) ?? undefined;
    checkLimits(ctx, asked ?? 0, promptTokens, param);
    const maxTokens = asked ?? (ctx !== undefined && promptTokens !== undefined ? Math.max(1, Math.min(1024, ctx - promptTokens)) : 256);
    if (asked === undefined) checkLimits(ctx, maxTokens, promptTokens, param);
    const n = (b.n as number | null) ?? 1, seed = seedOf(b), sampling = samplingOf(b, seed);
    const stream = b.stream === true, includeUsage = (b.stream_options as Json | null)?.include_usage === true;

    const ac = abortOnClose(reply);
    const release = await acquire(queue, ac.signal);
    const cid = id('chatcmpl'), now = Math.floor(Date.now() / 1000);
    const chunk = (choices: Json[], extra: Json = {}) => ({ id: cid, object: stream ? 'chat.completion.chunk' : 'chat.completion', created: now, model: name, system_fingerprint: null, choices, ...extra });
    try {
      const out = stream ? sse(reply, ac.signal) : undefined;
      const nullUsage = includeUsage ? { usage: null } : {};
      const choices: Json[] = [];
      let prompt = 0, completion = 0;
      let firstRoute: RouteDecision | undefined;
      try {
        for (let j = 0; j < n; j++) {
          if (out) out.send(chunk([{ index: j, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], nullUsage));
          const textEvent = textChunkEvent(chunk([{ index: j, delta: { content: TEXT_SLOT }, logprobs: null, finish_reason: null }], nullUsage));
          const c = await runChoice({
            model, local, input: { messages }, opts: { ...sampling, maxTokens, seed: seed + j }, topLogprobs, signal: ac.signal, onText: () => firstToken(req),
            onPiece: out ? (text, toks) => out.send(wantLogprobs ? chunk([{ index: j, delta: { content: text }, logprobs: chatLogprobs(toks), finish_reason: null }], nullUsage) : textEvent(text)) : undefined,
          });
          firstRoute ??= c.route;
          if (j === 0) prompt = c.usage.promptTokens;
          completion += c.usage.completionTokens;
          const route = c.route ? { stlm_route: c.route } : {};
          if (out) {
            out.send(chunk([{ index: j, delta: {}, logprobs: null, finish_reason: c.finishReason, ...route }], nullUsage));
            continue;
          }
          choices.push({ index: j, message: { role: 'assistant', content: c.text, refusal: null }, logprobs: wantLogprobs ? chatLogprobs(c.tokens) : null, finish_reason: c.finishReason, ...route });
        }
      } catch (e) {
        if (!out) throw e;
        failStream(out, e, ac.signal);
        return reply;
      }
      noteUsage(req, name, prompt, completion, firstRoute);
      return finishReply(reply, out, { chunk, choices, prompt, completion, route: firstRoute, includeUsage });
    } finally {
      release();
    }
  });

  return app;
}
