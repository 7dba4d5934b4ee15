/**
 * The `llamacpp` tier: any GGUF file run by llama.cpp in this process, through node-llama-cpp (an optional
 * dependency, loaded on demand by `src/interop/llamacpp.ts`). Small on-device models (Phi-3, Llama 3,
 * Qwen, … quantized) and stlm's own exported models run here alike.
 *
 * - generate: text is continued after BOS where the vocabulary asks for one; chat messages are rendered
 *   by the model's own chat template (node-llama-cpp's chat wrapper resolved from the GGUF's
 *   tokenizer.chat_template, or its best guess where the file has none), whose stop triggers end the
 *   reply. Sampling is llama.cpp's (penalty, top-k, top-p, min-p, temperature; 0 = greedy).
 * - meanLogprob: the mean log of llama.cpp's probability of each chosen token under the distribution it
 *   was drawn from; at temperature 0 that is the model's own full-vocabulary softmax, above it the
 *   truncated, temperature-scaled distribution (node-llama-cpp exposes no other).
 * - score: context and continuation evaluated in one sequence, the continuation's log-probabilities
 *   summed (greedy when each token is llama.cpp's most likely one); the context is evaluated once for
 *   all continuations. Continuations are tokenized as lm-evaluation-harness does.
 *
 * Requests run one at a time on one llama.cpp context; a request whose tokens start with what the
 * context already holds (the next chat turn, the same scoring context) reuses that prefix.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { ggufParameterCount, ggufQuantization, readGgufHeader } from '../formats/gguf.js';
import { maxTokensOf } from '../generate/generate.js';
import { resolveSamplerOptions } from '../generate/sampler.js';
import { continuationTokens } from '../generate/score.js';
import { StopMatcher } from '../generate/stop.js';
import {
  type LlamaCppOptions, type NlcChatHistoryItem, type NlcChatWrapper, type NlcContext, type NlcModel, type NlcSequence,
  type NlcText, contextOptions, loadLlamaCpp, nextTokenProbabilities,
} from '../interop/llamacpp.js';
import type {
  ContinuationScore, FinishReason, GenerateInput, GenerateOptions, GenerateResult, LanguageModel, LanguageModelInfo, Tier,
} from './types.js';

export interface LlamaCppModelOptions extends LlamaCppOptions {
  /** The model's name in requests and results (default: the file's name). */
  name?: string;
  /** Default 'small'. */
  tier?: Tier;
  /** US dollars per million tokens, for cost accounting (default none: costUsd 0). */
  price?: { prompt: number; completion: number };
}

/** A generation's result, with the generated token ids. */
export interface LlamaCppGenerateResult extends GenerateResult {
  tokens: number[];
}

/** A continuation's score, with each token's log-probability. */
export interface LlamaCppScore extends ContinuationScore {
  tokenLogprobs: number[];
}

/** node-llama-cpp is not installed or does not load here (the message says how to install it). */
export class LlamaCppUnavailableError extends Error {
  override name = 'LlamaCppUnavailableError';
}

/** Where the KV cache would grow past what a default context should take (a 128k-context model). */
const DEFAULT_MAX_CONTEXT = 4096;
/** Recent tokens the repetition penalty looks at (stlm's sampler default). */
const PENALTY_WINDOW = 64;

/** Opens a GGUF file as a LanguageModel run by llama.cpp. */
export function openLlamaCppModel(path: string, o: LlamaCppModelOptions = {}): Promise<LlamaCppModel> {
  return LlamaCppModel.open(path, o);
}

/** A GGUF model run by llama.cpp in this process. */
export class LlamaCppModel implements LanguageModel {
  private queue: Promise<void> = Promise.resolve();
  private context: Promise<{ ctx: NlcContext; seq: NlcSequence }> | undefined;
  private wrapper: NlcChatWrapper | undefined;
  private closed = false;

  private constructor(
    private readonly model: NlcModel,
    private readonly resolveChatWrapper: (m: NlcModel) => NlcChatWrapper,
    private readonly about: LanguageModelInfo,
    private readonly o: LlamaCppModelOptions,
  ) {}

  /** Opens `path`; throws one line naming the file when it is missing or not a GGUF, or saying how to install node-llama-cpp. */
  static async open(path: string, o: LlamaCppModelOptions = {}): Promise<LlamaCppModel> {
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw new Error(`${path}: no such model file (the llamacpp tier runs a GGUF file)`);
    const header = await readGgufHeader(path);
    const nlc = await loadLlamaCpp();
    if (typeof nlc === 'string') throw new LlamaCppUnavailableError(nlc);
    let model: NlcModel;
    try {
      model = await nlc.llama.loadModel({ modelPath: path, gpuLayers: 0 });
    } catch (e) {
      throw new Error(`${path}: llama.cpp cannot load this model (${(e as Error).message.split('\n')[0]})`);
    }
    const contextSize = o.contextSize ?? Math.min(model.trainContextSize, DEFAULT_MAX_CONTEXT);
    const info: LanguageModelInfo = {
      name: o.name ?? basename(path).replace(/\.gguf$/i, ''),
      tier: o.tier ?? 'small',
      provider: 'llamacpp',
      parameters: ggufParameterCount(header),
      fileBytes: header.fileSize,
      contextLength: contextSize,
      quantization: ggufQuantization(header),
      runsOn: 'llama.cpp in this process',
      ...(o.price ? { pricePerMillion: { ...o.price } } : {}),
    };
    return new LlamaCppModel(model, nlc.resolveChatWrapper, info, { ...o, contextSize });
  }

  info(): LanguageModelInfo {
    return { ...this.about };
  }

  /** The name of the chat template in use (node-llama-cpp's wrapper: 'Jinja', 'Llama3', 'General', …). */
  chatTemplate(): string {
    return this.chatWrapper().wrapperName;
  }

  async tokenize(text: string): Promise<number[]> {
    return this.model.tokenize(text, false);
  }

  async countTokens(text: string): Promise<number> {
    return this.model.tokenize(text, false).length;
  }

  async generate(input: GenerateInput, o: GenerateOptions = {}): Promise<LlamaCppGenerateResult> {
    const it = this.run(input, o);
    let r = await it.next();
    while (!r.done) r = await it.next();
    if (r.value.finishReason === 'abort') throw abortError();
    return r.value;
  }

  stream(input: GenerateInput, o: GenerateOptions = {}): AsyncGenerator<string, LlamaCppGenerateResult> {
    return this.run(input, o);
  }

  async score(context: string, continuations: string[], o: { signal?: AbortSignal } = {}): Promise<LlamaCppScore[]> {
    if (continuations.length === 0) return [];
    const ctxText = this.model.tokenize(context, false);
    const conts = continuations.map((c, i) => {
      const ids = continuationTokens((text) => this.model.tokenize(text, false), ctxText, context, c);
      if (ids.length === 0) throw new Error(`score: continuation ${i} is empty (nothing to score)`);
      return ids;
    });
    const { bos, shouldPrependBosToken } = this.model.tokens;
    const start = bos !== null && (shouldPrependBosToken || ctxText.length === 0) ? [bos] : [];
    if (start.length + ctxText.length === 0) throw new Error('score: the context is empty and this model has no BOS token to start from');
    const longest = conts.reduce((m, c) => Math.max(m, c.length), 0);
    const size = this.o.contextSize!;
    if (longest + 1 > size) throw new Error(`score: a continuation of ${longest} tokens does not fit the context of ${size} (with 1 context token)`);
    // Keep the context's most recent tokens, as lm-evaluation-harness truncates: the longest continuation must fit after them.
    let ctxIds = [...start, ...ctxText];
    ctxIds = ctxIds.slice(Math.max(0, ctxIds.length - (size - longest)));
    return this.locked(async () => {
      throwIfAborted(o.signal);
      const seq = await this.sequence();
      const kept = await reusePrefix(seq, ctxIds);
      // The last context token's row predicts every continuation's first token.
      const [first] = await nextTokenProbabilities(seq, ctxIds.slice(kept), ctxIds.length - kept - 1);
      const out: LlamaCppScore[] = [];
      for (const cont of conts) {
        throwIfAborted(o.signal);
        if (seq.nextTokenIndex > ctxIds.length) await seq.eraseContextTokenRanges([{ start: ctxIds.length, end: seq.nextTokenIndex }]);
        const rows = [first, ...(cont.length > 1 ? await nextTokenProbabilities(seq, cont.slice(0, -1)) : [])];
        const tokenLogprobs: number[] = [];
        let greedy = true;
        cont.forEach((t, i) => {
          const p = rows[i].get(t) ?? 0;
          tokenLogprobs.push(Math.log(p));
          greedy &&= p >= rows[i].values().next().value!; // rows are sorted, most likely first
        });
        out.push({ logprob: tokenLogprobs.reduce((a, b) => a + b, 0), greedy, tokens: cont.length, tokenLogprobs });
      }
      return out;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locked(async () => {
      if (this.context) await (await this.context).ctx.dispose();
      await this.model.dispose();
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Generation

  /** The generation loop: yields text pieces, returns the result (finishReason 'abort' when the signal fired). */
  private async *run(input: GenerateInput, o: GenerateOptions): AsyncGenerator<string, LlamaCppGenerateResult> {
    const t0 = performance.now();
    const maxTokens = maxTokensOf(o);
    const temperature = o.temperature ?? 0.8;
    const s = resolveSamplerOptions({ ...o, temperature, seed: o.seed ?? 1 }); // validates every option
    const { tokens: prompt, stopStrings, stopTokens } = this.render(input);
    const matcher = new StopMatcher([...(o.stop ?? []), ...stopStrings]);
    const out: number[] = [];
    let text = '', firstMs: number | undefined, logprobSum = 0;
    let finishReason: FinishReason = 'length';
    const emit = (piece: string) => {
      text += piece;
      firstMs ??= performance.now() - t0;
      o.onText?.(piece);
    };
    const release = await this.acquire();
    try {
      if (o.signal?.aborted) finishReason = 'abort';
      else if (maxTokens > 0) {
        const size = this.o.contextSize!;
        const fitted = prompt.slice(Math.max(0, prompt.length - (size - 1)));
        const seq = await this.sequence();
        const kept = await reusePrefix(seq, fitted);
        const history = fitted.slice();
        const decoder = new TextDecoderFor(this.model, fitted);
        const options: Record<string, unknown> = {
          temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP,
          ...(o.seed !== undefined ? { seed: o.seed } : {}),
          ...(s.repetitionPenalty !== 1 ? { repeatPenalty: { punishTokens: () => history.slice(-PENALTY_WINDOW), maxPunishTokens: PENALTY_WINDOW, penalty: s.repetitionPenalty } } : {}),
        };
        finishReason = 'eos'; // llama.cpp ends the evaluation at an end-of-generation token
        for await (const { token, confidence } of seq.evaluateWithMetadata(fitted.slice(kept), { confidence: true }, options)) {
          if (o.signal?.aborted) { finishReason = 'abort'; break; }
          if (stopTokens.has(token)) { finishReason = 'stop'; break; }
          out.push(token);
          history.push(token);
          logprobSum += Math.log(confidence ?? NaN);
          const piece = matcher.push(decoder.push(token));
          if (piece.text) { emit(piece.text); yield piece.text; }
          if (piece.stopped) { finishReason = 'stop'; break; }
          if (out.length >= maxTokens) { finishReason = 'length'; break; }
        }
        if (finishReason === 'eos' || finishReason === 'length') {
          const tail = matcher.push(decoder.flush());
          const rest = tail.text + (tail.stopped ? '' : matcher.flush());
          if (tail.stopped) finishReason = 'stop';
          if (rest) { emit(rest); yield rest; }
        }
      }
    } finally {
      release();
    }
    const totalMs = performance.now() - t0;
    const price = this.about.pricePerMillion;
    return {
      text, finishReason, tokens: out,
      usage: { promptTokens: prompt.length, completionTokens: out.length },
      timeToFirstTokenMs: firstMs ?? totalMs, totalMs,
      costUsd: price ? (prompt.length * price.prompt + out.length * price.completion) / 1e6 : 0,
      model: this.about.name,
      ...(out.length > 0 ? { meanLogprob: logprobSum / out.length } : {}),
    };
  }

  /** The prompt's tokens: BOS (where the vocabulary adds one) and the text, or the chat rendered by the template. */
  private render(input: GenerateInput): { tokens: number[]; stopStrings: string[]; stopTokens: Set<number> } {
    const { bos, shouldPrependBosToken } = this.model.tokens;
    if (input.messages === undefined) {
      const tokens = [...(bos !== null && shouldPrependBosToken ? [bos] : []), ...this.model.tokenize(input.prompt, false)];
      if (tokens.length === 0) throw new Error('generate: the prompt is empty and this model has no BOS token to start from');
      return { tokens, stopStrings: [], stopTokens: new Set() };
    }
    const history: NlcChatHistoryItem[] = input.messages.map((m) => (m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content }));
    // A last assistant message is a reply to continue; otherwise the reply starts empty.
    if (input.messages.at(-1)?.role !== 'assistant') history.push({ type: 'model', response: [] });
    const state = this.chatWrapper().generateContextState({ chatHistory: history });
    const stopStrings: string[] = [], stopTokens = new Set<number>();
    for (const trigger of state.stopGenerationTriggers) {
      const ids = trigger.tokenize(this.model.tokenizer);
      // A single control token (EOS, <|im_end|>, …) never shows in the text: stop on its id. Text stops on its string.
      if (ids.length === 1 && this.model.detokenize(ids, false) === '') stopTokens.add(ids[0]);
      else if (trigger.values.every((v) => typeof v === 'string' || (v as { type?: string }).type === 'specialTokensText')) {
        const s = textOf(trigger);
        if (s) stopStrings.push(s);
      }
    }
    return { tokens: state.contextText.tokenize(this.model.tokenizer), stopStrings, stopTokens };
  }

  private chatWrapper(): NlcChatWrapper {
    this.wrapper ??= this.resolveChatWrapper(this.model);
    return this.wrapper;
  }

  // -------------------------------------------------------------------------------------------------
  // The one context, one request at a time

  private sequence(): Promise<NlcSequence> {
    if (this.closed) throw new Error(`${this.about.name}: the model is closed`);
    this.context ??= this.model.createContext(contextOptions(this.o, this.o.contextSize!)).then((ctx) => ({ ctx, seq: ctx.getSequence() }));
    return this.context.then((c) => c.seq);
  }

  /** Waits for the requests before this one; returns the function that lets the next one run. */
  private async acquire(): Promise<() => void> {
    let release!: () => void;
    const prev = this.queue;
    this.queue = new Promise<void>((res) => (release = res));
    await prev;
    return release;
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/**
 * Keeps what the sequence already holds of `tokens` (the longest common prefix, leaving at least the last
 * token to evaluate) and erases the rest; returns how many tokens were kept.
 */
async function reusePrefix(seq: NlcSequence, tokens: readonly number[]): Promise<number> {
  const have = seq.contextTokens;
  const max = Math.min(have.length, seq.nextTokenIndex, tokens.length - 1);
  let keep = 0;
  while (keep < max && have[keep] === tokens[keep]) keep++;
  if (keep === 0 && seq.nextTokenIndex > 0) await seq.clearHistory();
  else if (seq.nextTokenIndex > keep) await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
  return keep;
}

/**
 * Generated tokens to streamed text: llama.cpp detokenizes the tokens since the last clean break (with
 * the tokens before them as context, so a SentencePiece word start keeps or drops its space correctly),
 * and a trailing U+FFFD (a character whose bytes are still arriving) is held back until it completes.
 */
class TextDecoderFor {
  private tokens: number[] = [];
  private before: number[];
  private emitted = '';

  constructor(private readonly model: NlcModel, prompt: readonly number[]) {
    this.before = prompt.slice(-8);
  }

  push(token: number): string {
    this.tokens.push(token);
    const all = this.model.detokenize(this.tokens, false, this.before);
    let hold = 0;
    while (hold < 4 && hold < all.length && all[all.length - 1 - hold] === '\uFFFD') hold++;
    const stable = all.slice(0, all.length - hold);
    const piece = stable.slice(this.emitted.length);
    this.emitted = stable;
    if (hold === 0) {
      // A clean break: start the next window here.
      this.before = [...this.before, ...this.tokens].slice(-8);
      this.tokens = [];
      this.emitted = '';
    }
    return piece;
  }

  /** The text held back at the end (an incomplete character stays U+FFFD). */
  flush(): string {
    const all = this.tokens.length ? this.model.detokenize(this.tokens, false, this.before) : '';
    const rest = all.slice(this.emitted.length);
    this.tokens = [];
    this.emitted = '';
    return rest;
  }
}

/** A stop trigger's text (its strings and special-token texts). */
function textOf(t: NlcText): string {
  return t.values.map((v) => (typeof v === 'string' ? v : String((v as { value?: unknown }).value ?? ''))).join('');
}

function abortError(): Error {
  return new DOMException('the request was aborted', 'AbortError');
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError();
}
