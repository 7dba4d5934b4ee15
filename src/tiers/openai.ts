/**
 * The large tier: any OpenAI-compatible endpoint (OpenAI, llama.cpp's server, vLLM, `stlm serve`, …) as
 * a `LanguageModel`. A prompt goes to `{baseUrl}/completions`, chat messages to
 * `{baseUrl}/chat/completions`; `stream` reads server-sent events (`sse.ts`).
 *
 * Every request has a time limit (`timeoutMs` for the response's headers and for a whole non-streamed
 * body, `idleTimeoutMs` between a stream's chunks). 429, 408 and 5xx answers, network errors and time-outs are
 * retried `maxRetries` times with jittered exponential backoff, honouring `retry-after` (seconds or an
 * HTTP date) and `retry-after-ms`, but only before any text has been streamed: after that the caller has
 * seen text and a retry would repeat it. Errors are one line, `endpoint <url>: <what>`, and never show
 * the API key.
 */
import { readSse } from './sse.js';
import { formatSeconds } from './sse.js';
import {
  type ChatMessage, type ContinuationScore, type FinishReason, type GenerateInput, type GenerateOptions, type GenerateResult,
  type GenerateStream, type LanguageModel, type LanguageModelInfo, ScoreUnsupportedError, type Tier, type Usage,
} from './types.js';

export interface OpenAIModelOptions {
  /** The API base, e.g. https://api.openai.com/v1 or http://localhost:8080/v1 (requests go to {baseUrl}/completions). */
  baseUrl: string;
  /** The `model` field of each request. */
  model: string;
  /** Name of the environment variable that holds the API key (sent as `Authorization: Bearer`); read once, at construction. */
  apiKeyEnv?: string;
  /** The key itself, where there is no environment (a browser). Never logged, never in info() or errors. */
  apiKey?: string;
  /** Longest wait for a response's headers, and for a whole non-streamed response, in ms (default 300000). */
  timeoutMs?: number;
  /** Longest silence between a stream's chunks, in ms (default 60000, at most timeoutMs). */
  idleTimeoutMs?: number;
  /** Retries after a 429/408/5xx answer, a network error or a time-out (default 2: three attempts in all). */
  maxRetries?: number;
  /** The first retry waits about this long (ms, default 500; doubled per retry, jittered to 50–100%). */
  retryBaseMs?: number;
  /** Longest wait before a retry (ms, default 30000); a longer `retry-after` fails at once, saying so. */
  maxRetryDelayMs?: number;
  /** US dollars per million prompt and completion tokens (default 0: a free or local endpoint). */
  prices?: { prompt: number; completion: number };
  /** Ask for the sampled tokens' log-probabilities (`logprobs`), giving `meanLogprob`; not every endpoint accepts it. */
  logprobs?: boolean;
  /** The name results use (default: the model name). */
  name?: string;
  /** Default 'large'. */
  tier?: Tier;
  /** Positions of context, where known (for info()). */
  contextLength?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** A failed request: one line naming the URL; `status` is the HTTP status where there was one. */
export class EndpointError extends Error {
  // The name stays 'Error': the message ("endpoint <url>: …") says what failed.
  constructor(message: string, readonly url: string, readonly status?: number, readonly retryable = false, readonly retryAfterMs?: number) {
    super(message);
  }
}

/** What one streamed or non-streamed completion gathers. */
interface Gathered {
  text: string;
  finish?: string;
  usage?: Usage;
  /** Completion tokens should the endpoint give no usage: a stream's chunks (about one per token), else an estimate. */
  pieces: number;
  logprobs: number[];
}

type Json = Record<string, unknown>;

/** An OpenAI-compatible endpoint behind the tiers' interface. */
export class OpenAIModel implements LanguageModel {
  readonly baseUrl: string;
  readonly name: string;
  /** The key, kept private so printing the model never shows it. */
  readonly #key: string | undefined;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly fetchFn: typeof fetch;
  /** max_tokens for an echo request: 0, or 1 once the endpoint refused 0. */
  private echoMaxTokens = 0;
  /** Set once /tokenize failed: why. */
  private noTokenizer: string | undefined;

  /** The options, less the key. */
  private readonly o: Omit<OpenAIModelOptions, 'apiKey'>;

  constructor(options: OpenAIModelOptions) {
    const { apiKey, ...o } = options;
    this.o = o;
    let base: URL;
    try {
      base = new URL(o.baseUrl);
    } catch {
      throw new Error(`endpoint '${o.baseUrl}' is not a URL (expected e.g. http://localhost:8080/v1)`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`endpoint '${o.baseUrl}': only http and https URLs are supported`);
    if (typeof o.model !== 'string' || !o.model) throw new Error(`endpoint ${o.baseUrl}: no model name given`);
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.name = o.name ?? o.model;
    if (o.apiKeyEnv !== undefined) {
      const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
      const key = env?.[o.apiKeyEnv];
      if (!key) throw new Error(`endpoint ${this.baseUrl}: the environment variable ${o.apiKeyEnv} (apiKeyEnv) is not set`);
      this.#key = key;
    } else {
      this.#key = apiKey;
    }
    this.timeoutMs = positive(o.timeoutMs ?? 300_000, 'timeoutMs');
    this.idleTimeoutMs = Math.min(this.timeoutMs, positive(o.idleTimeoutMs ?? 60_000, 'idleTimeoutMs'));
    this.maxRetries = o.maxRetries ?? 2;
    if (!(Number.isInteger(this.maxRetries) && this.maxRetries >= 0)) throw new Error(`endpoint ${this.baseUrl}: maxRetries must be an integer >= 0, got ${o.maxRetries}`);
    for (const k of ['prompt', 'completion'] as const) {
      const p = o.prices?.[k];
      if (p !== undefined && !(Number.isFinite(p) && p >= 0)) throw new Error(`endpoint ${this.baseUrl}: prices.${k} must be a number >= 0 (US dollars per million tokens), got ${p}`);
    }
    this.fetchFn = o.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a));
  }

  info(): LanguageModelInfo {
    return {
      name: this.name, tier: this.o.tier ?? 'large', provider: 'openai', contextLength: this.o.contextLength, runsOn: this.baseUrl,
      pricePerMillion: this.o.prices ? { ...this.o.prices } : undefined,
    };
  }

  /**
   * One request; with `o.onText` it streams (and calls onText per piece), else it waits for the whole
   * answer (then timeToFirstTokenMs is the total time: the text arrives at once).
   */
  async generate(input: GenerateInput, o: GenerateOptions = {}): Promise<GenerateResult> {
    if (o.onText) {
      const it = this.run(input, o, 'throw');
      let r = await it.next();
      while (!r.done) r = await it.next();
      return r.value;
    }
    const t0 = performance.now();
    const { url, body } = this.request(input, o, false);
    const json = await this.withRetries(() => this.postJson(url, body, o.signal), o.signal);
    const g = gather(json, url, input.messages !== undefined);
    const totalMs = performance.now() - t0;
    return this.result(g, input, o, totalMs, totalMs);
  }

  stream(input: GenerateInput, o: GenerateOptions = {}): GenerateStream {
    return this.run(input, o, 'end');
  }

  /**
   * The streamed request. Before the first piece of text, a failure is retried; an abort rejects
   * (`'throw'`) or ends the stream with finishReason 'abort' (`'end'`).
   */
  private async *run(input: GenerateInput, o: GenerateOptions, onAbort: 'throw' | 'end'): GenerateStream {
    const t0 = performance.now();
    const { url, body } = this.request(input, o, true);
    let g: Gathered = { text: '', pieces: 0, logprobs: [] };
    let ttft: number | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        g = { text: '', pieces: 0, logprobs: [] };
        try {
          for await (const piece of this.streamAttempt(url, body, g, o.signal)) {
            ttft ??= performance.now() - t0;
            o.onText?.(piece);
            yield piece;
          }
          break;
        } catch (e) {
          if (g.text || !this.retryable(e, attempt, o.signal)) throw e;
          await backoff(e, attempt, this.o, o.signal);
        }
      }
    } catch (e) {
      if (!o.signal?.aborted) throw e;
      if (onAbort === 'throw') throw o.signal.reason;
      const totalMs = performance.now() - t0;
      return { ...this.result(g, input, o, ttft ?? totalMs, totalMs), finishReason: 'abort' };
    }
    const totalMs = performance.now() - t0;
    return this.result(g, input, o, ttft ?? totalMs, totalMs);
  }

  /** One streamed attempt: yields text pieces, fills `g`; throws on a truncated or malformed stream. */
  private async *streamAttempt(url: string, body: Json, g: Gathered, signal: AbortSignal | undefined): AsyncGenerator<string, void> {
    const { res, done } = await this.post(url, body, signal, true);
    try {
      if (!res.body) throw new EndpointError(`endpoint ${url}: the response has no body`, url, res.status, true);
      let sawDone = false;
      for await (const ev of readSse(res.body, { idleTimeoutMs: this.idleTimeoutMs, url, signal })) {
        if (ev.data === '[DONE]') {
          sawDone = true;
          break;
        }
        let chunk: Json;
        try {
          chunk = JSON.parse(ev.data) as Json;
        } catch {
          throw new EndpointError(`endpoint ${url}: a stream event is not JSON: ${snippet(ev.data)}`, url);
        }
        if (chunk?.error !== undefined) throw new EndpointError(`endpoint ${url}: the stream reported an error: ${snippet(errorText(chunk))}`, url);
        signal?.throwIfAborted(); // (a chunk may hold several events: none is taken after an abort)
        const piece = take(chunk, g, url, body.messages !== undefined);
        if (piece) yield piece;
      }
      if (!sawDone && g.finish === undefined) {
        throw new EndpointError(`endpoint ${url}: the stream ended without [DONE] or a finish_reason (truncated after ${g.text.length} characters)`, url, undefined, true);
      }
    } finally {
      done();
    }
  }

  /** The URL and JSON body of a generation request; fields the caller did not set are left out. */
  private request(input: GenerateInput, o: GenerateOptions, stream: boolean): { url: string; body: Json } {
    const chat = input.messages !== undefined;
    if (!chat && typeof input.prompt !== 'string') throw new Error('generate: give a prompt (text) or messages');
    if (chat) checkMessages(input.messages);
    const body: Json = { model: this.o.model };
    if (chat) body.messages = input.messages.map((m: ChatMessage) => ({ role: m.role, content: m.content }));
    else body.prompt = input.prompt;
    body.max_tokens = o.maxTokens ?? 256;
    body.temperature = o.temperature ?? 0.8;
    if (o.topP !== undefined) body.top_p = o.topP;
    // Not OpenAI's own fields, but llama.cpp's server and vLLM read them (and OpenAI ignores them).
    if (o.topK !== undefined) body.top_k = o.topK;
    if (o.minP !== undefined) body.min_p = o.minP;
    if (o.repetitionPenalty !== undefined) body.repetition_penalty = o.repetitionPenalty;
    if (o.seed !== undefined) body.seed = o.seed;
    if (o.stop?.length) body.stop = o.stop;
    if (this.o.logprobs) body.logprobs = chat ? true : 1;
    if (stream) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return { url: `${this.baseUrl}/${chat ? 'chat/completions' : 'completions'}`, body };
  }

  private result(g: Gathered, input: GenerateInput, o: GenerateOptions, ttft: number, totalMs: number): GenerateResult {
    // Without the endpoint's usage: its chunks count the completion (about one token each), the prompt is estimated.
    const usage = g.usage ?? { promptTokens: estimateTokens(input.prompt ?? input.messages!.map((m) => m.content).join('\n')), completionTokens: g.pieces };
    const prices = this.o.prices ?? { prompt: 0, completion: 0 };
    return {
      text: g.text, finishReason: finishReasonOf(g.finish, !!o.stop?.length), usage, timeToFirstTokenMs: ttft, totalMs,
      costUsd: (usage.promptTokens * prices.prompt + usage.completionTokens * prices.completion) / 1e6, model: this.name,
      meanLogprob: g.logprobs.length ? g.logprobs.reduce((a, b) => a + b, 0) / g.logprobs.length : undefined,
    };
  }

  /**
   * Log-likelihoods through `/completions` with `echo: true, logprobs: 1, max_tokens: 0` (or 1 where 0
   * is refused), all continuations in one request: a continuation's tokens are the echoed tokens whose
   * `text_offset` (in characters, as the endpoints count them: code points) lies in it, its logprob the
   * sum of their `token_logprobs`, and it is greedy when each is the best of its `top_logprobs`. An
   * empty context works where the endpoint echoes a BOS first (a first token with no text).
   */
  async score(context: string, continuations: string[], o: { signal?: AbortSignal } = {}): Promise<ContinuationScore[]> {
    const url = `${this.baseUrl}/completions`;
    continuations.forEach((c, i) => {
      if (typeof c !== 'string' || c === '') throw new Error(`score: continuation ${i} is empty (nothing to score)`);
    });
    if (!continuations.length) return [];
    const body = (maxTokens: number): Json => ({
      model: this.o.model, prompt: continuations.map((c) => context + c), max_tokens: maxTokens, temperature: 0, echo: true, logprobs: 1,
    });
    let json: Json;
    try {
      json = await this.withRetries(() => this.postJson(url, body(this.echoMaxTokens), o.signal), o.signal);
    } catch (e) {
      if (!(e instanceof EndpointError && (e.status === 400 || e.status === 422))) throw e;
      if (this.echoMaxTokens === 1) throw refused(url, e);
      try {
        json = await this.withRetries(() => this.postJson(url, body(1), o.signal), o.signal);
        this.echoMaxTokens = 1;
      } catch (e2) {
        if (e2 instanceof EndpointError && (e2.status === 400 || e2.status === 422)) throw refused(url, e2);
        throw e2;
      }
    }
    const choices = json.choices;
    if (!Array.isArray(choices) || choices.length !== continuations.length) {
      throw new EndpointError(`endpoint ${url}: expected ${continuations.length} choices (one per continuation), got ${Array.isArray(choices) ? choices.length : 'no choices array'}`, url);
    }
    const byIndex = new Map<number, Json>();
    choices.forEach((c: Json, k) => byIndex.set(typeof c?.index === 'number' ? c.index : k, c));
    const ctxLen = codePoints(context);
    return continuations.map((cont, i) => {
      const choice = byIndex.get(i);
      if (!choice) throw new EndpointError(`endpoint ${url}: no choice with index ${i}`, url);
      return echoScore(choice, ctxLen, ctxLen + codePoints(cont), url, i);
    });
  }

  /**
   * Token ids from the endpoint's `/tokenize` extension (llama.cpp's server and vLLM have one, beside
   * the /v1 routes); an endpoint without it throws, saying so.
   */
  async tokenize(text: string): Promise<number[]> {
    const url = `${this.baseUrl.replace(/\/v\d+$/, '')}/tokenize`;
    if (this.noTokenizer) throw new Error(`endpoint ${url}: ${this.noTokenizer}`);
    let json: Json;
    try {
      json = await this.withRetries(() => this.postJson(url, { model: this.o.model, content: text, prompt: text, add_special: false }, undefined), undefined);
    } catch (e) {
      if (e instanceof EndpointError && e.status !== undefined && e.status >= 400 && e.status < 500) {
        this.noTokenizer = `this endpoint has no tokenizer API (POST /tokenize answered HTTP ${e.status}); OpenAI-compatible APIs do not tokenize`;
        throw new Error(`endpoint ${url}: ${this.noTokenizer}`);
      }
      throw e;
    }
    const tokens = json.tokens;
    if (!Array.isArray(tokens)) throw new Error(`endpoint ${url}: the /tokenize response has no tokens array`);
    return tokens.map((t: unknown, i) => {
      const id = typeof t === 'object' && t !== null ? (t as Json).id : t;
      if (!Number.isInteger(id)) throw new Error(`endpoint ${url}: /tokenize token ${i} is not an integer id`);
      return id as number;
    });
  }

  /**
   * The endpoint's count where it has a `/tokenize` extension; elsewhere an ESTIMATE: ⌈UTF-8 bytes / 4⌉
   * (OpenAI's rule of thumb for English text), good for budgeting, not for fitting a context exactly.
   */
  async countTokens(text: string): Promise<number> {
    if (!this.noTokenizer) {
      try {
        return (await this.tokenize(text)).length;
      } catch {
        // no tokenizer API: estimate
      }
    }
    return estimateTokens(text);
  }

  async close(): Promise<void> {
    // Nothing held: fetch pools connections itself.
  }

  // --- HTTP -------------------------------------------------------------------------------------------

  /** Runs `attempt()` until it succeeds, retrying what may be retried, waiting with backoff between. */
  private async withRetries<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (e) {
        if (!this.retryable(e, n, signal)) throw e;
        await backoff(e, n, this.o, signal);
      }
    }
  }

  private retryable(e: unknown, attempt: number, signal: AbortSignal | undefined): boolean {
    if (signal?.aborted || attempt >= this.maxRetries || !(e instanceof EndpointError) || !e.retryable) return false;
    const wait = e.retryAfterMs;
    return wait === undefined || wait <= (this.o.maxRetryDelayMs ?? 30_000);
  }

  /** A non-streamed POST: its JSON body, read within the time limit. */
  private async postJson(url: string, body: Json, signal: AbortSignal | undefined): Promise<Json> {
    const { res, done, fail } = await this.post(url, body, signal, false);
    try {
      let text: string;
      try {
        text = await res.text();
      } catch (e) {
        throw fail(e, 'reading the response');
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new EndpointError(`endpoint ${url}: the response is not JSON: ${snippet(text) || '(empty body)'}`, url, res.status);
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new EndpointError(`endpoint ${url}: the response is not a JSON object: ${snippet(text)}`, url, res.status);
      return json as Json;
    } finally {
      done();
    }
  }

  /**
   * POSTs `body`; resolves once an OK response's headers are in (an error status throws, its body read
   * for the message). The time limit runs until `done()` for a non-streamed request, until the headers
   * for a stream (whose chunks have the idle limit instead).
   */
  private async post(url: string, body: Json, signal: AbortSignal | undefined, stream: boolean) {
    signal?.throwIfAborted();
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort(new Error('timeout'));
    }, this.timeoutMs);
    const onAbort = () => ctl.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    /** The error for a failed fetch or body read: the caller's abort as it is, else one line. */
    const fail = (e: unknown, what: string): unknown => {
      if (signal?.aborted) return signal.reason;
      if (timedOut) return new EndpointError(`endpoint ${url}: no response within ${formatSeconds(this.timeoutMs)}`, url, undefined, true);
      const err = e as Error & { cause?: { code?: string; message?: string } };
      return new EndpointError(`endpoint ${url}: ${what} failed: ${err.cause?.code || err.cause?.message || err.message}`, url, undefined, true);
    };
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' };
    if (this.#key) headers.authorization = `Bearer ${this.#key}`;
    let res: Response;
    try {
      res = await this.fetchFn(url, { method: 'POST', headers, body: JSON.stringify(body), signal: ctl.signal });
    } catch (e) {
      done();
      throw fail(e, 'request');
    }
    if (!res.ok) {
      let text = '';
      try {
        text = await res.text();
      } catch {
        // the status says enough
      }
      done();
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      const wait = retryAfterMs(res.headers);
      const limit = this.o.maxRetryDelayMs ?? 30_000;
      const note = retryable && wait !== undefined && wait > limit ? ` (retry-after ${formatSeconds(wait)} is longer than the ${formatSeconds(limit)} this client waits)` : '';
      const message = `endpoint ${url}: HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}${text.trim() ? ': ' + snippet(errorText(text)) : ''}${note}`;
      throw new EndpointError(message, url, res.status, retryable, wait);
    }
    if (stream) clearTimeout(timer);
    return { res, done, fail };
  }
}

// --- Responses ---------------------------------------------------------------------------------------

/** A whole (non-streamed) response as one gathered completion. */
function gather(json: Json, url: string, chat: boolean): Gathered {
  const g: Gathered = { text: '', pieces: 0, logprobs: [] };
  const choices = json.choices;
  const c = (Array.isArray(choices) ? choices[0] : undefined) as Json | undefined;
  const text = chat ? (c?.message as Json | undefined)?.content : c?.text;
  if (typeof text !== 'string' && !(chat && text === null)) {
    throw new EndpointError(`endpoint ${url}: the response has no choices[0].${chat ? 'message.content' : 'text'} (is this an OpenAI-compatible ${chat ? 'chat ' : ''}completions endpoint?): ${snippet(JSON.stringify(json))}`, url);
  }
  g.text = text ?? '';
  if (!c) return g;
  g.pieces = estimateTokens(g.text); // the completion's size should the endpoint give no usage
  if (typeof c.finish_reason === 'string') g.finish = c.finish_reason;
  g.usage = usageOf(json.usage);
  g.logprobs = logprobsOf(c.logprobs, chat);
  return g;
}

/** Adds one stream chunk to `g`; returns its text. */
function take(chunk: Json, g: Gathered, url: string, chat: boolean): string {
  const usage = usageOf(chunk.usage);
  if (usage) g.usage = usage;
  const choices = chunk.choices;
  if (!Array.isArray(choices) || !choices.length) return ''; // the usage chunk has none
  const c = choices[0] as Json;
  const raw = chat ? (c.delta as Json | undefined)?.content : c.text;
  if (raw !== undefined && raw !== null && typeof raw !== 'string') throw new EndpointError(`endpoint ${url}: a stream chunk's choices[0].${chat ? 'delta.content' : 'text'} is not a string`, url);
  if (typeof c.finish_reason === 'string') g.finish = c.finish_reason;
  g.logprobs.push(...logprobsOf(c.logprobs, chat));
  const text = raw ?? '';
  if (text) {
    g.text += text;
    g.pieces++;
  }
  return text;
}

function usageOf(u: unknown): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined;
  const { prompt_tokens: p, completion_tokens: c } = u as Json;
  return Number.isFinite(p) && Number.isFinite(c) ? { promptTokens: p as number, completionTokens: c as number } : undefined;
}

/** The sampled tokens' log-probabilities: completions' `token_logprobs`, chat's `content[].logprob`. */
function logprobsOf(l: unknown, chat: boolean): number[] {
  if (typeof l !== 'object' || l === null) return [];
  const list = chat ? ((l as Json).content as Json[] | undefined)?.map((t) => t?.logprob) : (l as Json).token_logprobs;
  return Array.isArray(list) ? list.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)) : [];
}

/**
 * OpenAI's finish reasons in the interface's terms: 'length' stays; 'stop' is EOS when no stop strings
 * were sent (nothing else could have stopped it), else a stop string or EOS, reported as 'stop' (OpenAI
 * does not say which); anything else (content_filter, tool_calls) is 'stop'.
 */
function finishReasonOf(finish: string | undefined, stopStrings: boolean): FinishReason {
  if (finish === 'length') return 'length';
  if (finish === undefined || finish === 'stop' || finish === 'eos') return stopStrings ? 'stop' : 'eos';
  return 'stop';
}

/** One continuation's score from an echoed choice: the tokens whose text_offset lies in [from, to). */
function echoScore(choice: Json, from: number, to: number, url: string, i: number): ContinuationScore {
  const lp = choice.logprobs as Json | null | undefined;
  const tokens = lp?.tokens, logprobs = lp?.token_logprobs, offsets = lp?.text_offset, top = lp?.top_logprobs;
  if (!Array.isArray(tokens) || !Array.isArray(logprobs) || !Array.isArray(offsets)) {
    throw new ScoreUnsupportedError(`endpoint ${url} cannot score continuations: its answer to echo + logprobs has no choices[${i}].logprobs.tokens/token_logprobs/text_offset`);
  }
  if (!Array.isArray(top)) throw new ScoreUnsupportedError(`endpoint ${url} cannot score continuations: its answer has no choices[${i}].logprobs.top_logprobs (needed to tell greedy continuations)`);
  let logprob = 0, greedy = true, n = 0;
  for (let j = 0; j < tokens.length; j++) {
    const at = offsets[j];
    if (typeof at !== 'number') throw new EndpointError(`endpoint ${url}: choices[${i}].logprobs.text_offset[${j}] is not a number`, url);
    if (at < from || at >= to) continue;
    const l = logprobs[j];
    // A first token with no text and no log-probability is a BOS the endpoint put before the prompt
    // (stlm serve, llama.cpp's server): it stands for no text, so an empty context is scored from it.
    if (j === 0 && l === null && tokens[0] === '') continue;
    if (typeof l !== 'number') throw new EndpointError(`endpoint ${url}: choices[${i}].logprobs.token_logprobs[${j}] is ${JSON.stringify(l)}${j === 0 ? ' (the first token has no log-probability: give a context)' : ''}`, url);
    logprob += l;
    n++;
    const alts = top[j] as Record<string, number> | null;
    if (typeof alts !== 'object' || alts === null) throw new EndpointError(`endpoint ${url}: choices[${i}].logprobs.top_logprobs[${j}] is not an object`, url);
    let best = -Infinity, bestToken: string | undefined;
    for (const [t, v] of Object.entries(alts)) if (v > best) [best, bestToken] = [v, t];
    greedy &&= bestToken === tokens[j] || l >= best;
  }
  if (n === 0) throw new EndpointError(`endpoint ${url}: no echoed token starts inside continuation ${i} (its text joined the context's last token)`, url);
  return { logprob, greedy, tokens: n };
}

function refused(url: string, e: EndpointError): ScoreUnsupportedError {
  return new ScoreUnsupportedError(`endpoint ${url} cannot score continuations: it refused echo + logprobs (${e.message.slice(`endpoint ${url}: `.length)})`);
}

// --- Small helpers -----------------------------------------------------------------------------------

/** Waits before retry `attempt` + 1: the server's retry-after, else base·2^attempt jittered to 50–100%. */
function backoff(e: unknown, attempt: number, o: Pick<OpenAIModelOptions, 'retryBaseMs' | 'maxRetryDelayMs'>, signal: AbortSignal | undefined): Promise<void> {
  const cap = o.maxRetryDelayMs ?? 30_000;
  const after = e instanceof EndpointError ? e.retryAfterMs : undefined;
  const ms = after ?? Math.min(cap, (o.retryBaseMs ?? 500) * 2 ** attempt) * (0.5 + 0.5 * Math.random());
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `retry-after-ms`, or `retry-after` in seconds or as an HTTP date, in milliseconds (never negative). */
export function retryAfterMs(h: Headers, now = Date.now()): number | undefined {
  const ms = h.get('retry-after-ms');
  if (ms !== null && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Number(ms);
  const v = h.get('retry-after');
  if (v === null) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function checkMessages(messages: unknown): void {
  if (!Array.isArray(messages) || !messages.length) throw new Error('chat: there are no messages to answer');
  messages.forEach((m: ChatMessage, i) => {
    if (!['system', 'user', 'assistant'].includes(m?.role)) throw new Error(`chat: message ${i} has role '${String(m?.role)}'; expected system, user or assistant`);
    if (typeof m.content !== 'string') throw new Error(`chat: message ${i} has no text content`);
  });
}

/** An OpenAI-style error body's message, else the text itself. */
function errorText(body: string | Json): string {
  try {
    const j = (typeof body === 'string' ? JSON.parse(body) : body) as { error?: { message?: unknown } | string; message?: unknown };
    const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message);
    if (typeof m === 'string') return m;
  } catch {
    // not JSON: show the text
  }
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/** One line of at most 200 characters. */
function snippet(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? one.slice(0, 200) + '…' : one;
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

const utf8 = new TextEncoder();

/** ⌈UTF-8 bytes / 4⌉: an estimate of a text's tokens (see countTokens). */
export function estimateTokens(text: string): number {
  return Math.ceil(utf8.encode(text).length / 4);
}

function positive(v: number, what: string): number {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`${what} must be a number > 0 (milliseconds), got ${v}`);
  return v;
}
