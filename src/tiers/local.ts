/**
 * The tiny tier: any model stlm's own engine opens (`openModel`: GGUF f32 or quantized, flat or
 * byte-pooled, llama2.c, a Hugging Face directory), as a `LanguageModel`. Generation is the one loop
 * (`generateSteps`), scoring is `score()` on token ids; nothing here touches a `node:` module, so it runs
 * in a browser too (open a model from its bytes there; a path goes through openModel's Node branch).
 *
 * Sampling defaults are `stlm generate`'s (temperature 0.8, top-p 0.95, min-p 0.05, seed 1), so a seed
 * gives the same text here as on the command line.
 */
import { jinjaChatTemplate } from '../generate/chat-template.js';
import { DecodeBatcher } from '../generate/batch.js';
import { type GenerateOptions as LoopOptions, Generation, generateSteps, type GenerateResult as LoopResult } from '../generate/generate.js';
import { continuationTokens, extendAligned, score as scoreIds, tokenLogSoftmax } from '../generate/score.js';
import { metaString } from '../formats/gguf.js';
import { effectiveDepth, headDim } from '../models/config.js';
import { type ModelHandle, type OpenOptions, openModel } from '../io/open.js';
import { expNonPositive } from '../util/exp.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import type {
  ChatMessage, ContinuationScore, GenerateInput, GenerateOptions, GenerateResult, GenerateStream, LanguageModel, LanguageModelInfo, Tier,
} from './types.js';

/** A chat rendered as a prompt: the prompt, and the strings that end the reply. */
export interface RenderedChat {
  prompt: string;
  stop: string[];
  /**
   * Whether BOS goes before the prompt's tokens; absent: as the model takes it (its add_bos_token). A
   * template that writes `bos_token` itself sets it: false when the tokenizer reads that text as the BOS
   * token (transformers' rule: no second BOS), else true with the text taken off the prompt.
   */
  addBos?: boolean;
}

/** Turns chat messages into a prompt to continue. */
export type ChatTemplate = (messages: readonly ChatMessage[]) => RenderedChat;

const ROLE_LABEL: Record<ChatMessage['role'], string> = { system: 'System', user: 'User', assistant: 'Assistant' };

/**
 * The plain template for models trained on plain text (stlm's tiny models have no chat template): one
 * `Role: content` line per message, then `Assistant:` for the reply, which ends at the next `\nUser:`.
 *
 *     System: You are terse.
 *     User: Hi
 *     Assistant:
 */
export const plainChatTemplate: ChatTemplate = (messages) => {
  if (!messages.length) throw new Error('chat: there are no messages to answer');
  const lines = messages.map((m, i) => {
    if (!(m.role in ROLE_LABEL)) throw new Error(`chat: message ${i} has role '${String(m.role)}'; expected system, user or assistant`);
    if (typeof m.content !== 'string') throw new Error(`chat: message ${i} has no text content`);
    return `${ROLE_LABEL[m.role]}: ${m.content}\n`;
  });
  return { prompt: lines.join('') + 'Assistant:', stop: ['\nUser:'] };
};

/** One token with its log-probability, as an OpenAI `logprobs` answer reports it. */
export interface TokenLogprob {
  id: number;
  /**
   * Its text: the characters its bytes complete, so a sequence's token texts concatenate to its text (a
   * character split over several tokens comes with its last one; the others are '').
   */
  text: string;
  /** log p(token | the tokens before it), natural log; null for a sequence's first token (nothing predicts it). */
  logprob: number | null;
  /** The most likely tokens at its position, best first (`topN` of them; none for the first token). */
  top: { id: number; text: string; logprob: number }[];
}

/** LocalModel's generation options: the tiers' ones, plus what an OpenAI-compatible server needs. */
export interface LocalGenerateOptions extends GenerateOptions {
  /** Token ids to continue, taken as they are, instead of the prompt's text (a tokenized completions prompt). */
  promptIds?: readonly number[];
  /**
   * Called with each generated token and its log-probability (temperature 1, over the tokens the sampler
   * may draw), with the `topLogprobs` most likely alternatives.
   */
  onTokenLogprob?: (t: TokenLogprob) => void;
  topLogprobs?: number;
}

export interface LocalModelOptions {
  /** The name requests and results use (default: the file name, or 'local model' for bytes). */
  name?: string;
  /** Default 'tiny'. */
  tier?: Tier;
  /**
   * How chat messages become a prompt. Default with {@link LocalModel.open} / {@link LocalModel.fromHandle}:
   * the model's own Jinja template where it carries one (GGUF `tokenizer.chat_template`, or a Hugging
   * Face tokenizer_config.json `chat_template`: see {@link modelChatTemplate}), else
   * {@link plainChatTemplate}; the constructor's default is {@link plainChatTemplate}.
   */
  chatTemplate?: ChatTemplate;
  /** Where `chatTemplate` came from, for {@link LocalModel.chatTemplateSource} (default 'option'). */
  chatTemplateSource?: ChatTemplateSource;
}

/** Where a LocalModel's chat template came from. */
export type ChatTemplateSource = 'gguf' | 'tokenizer_config' | 'plain' | 'option';

/**
 * The model's own chat template as a {@link ChatTemplate}, or undefined when it has none: GGUF
 * `tokenizer.chat_template` first, else the Hugging Face tokenizer's `chat_template` (tokenizer_config.json).
 * Rendered as transformers' apply_chat_template renders it (add_generation_prompt true, the vocabulary's
 * BOS and EOS texts as bos_token and eos_token); the reply ends at EOS (no stop strings). When the
 * rendered text begins with the BOS token's text, no BOS is added before it (the template put it there).
 */
export async function modelChatTemplate(h: Pick<ModelHandle, 'bundle' | 'tokenizer'>): Promise<{ template: ChatTemplate; source: 'gguf' | 'tokenizer_config' } | undefined> {
  const file = h.bundle.file;
  let text: string | undefined, source: 'gguf' | 'tokenizer_config';
  let where: string;
  if (file?.metadata.has('tokenizer.chat_template')) {
    text = metaString(file, 'tokenizer.chat_template');
    source = 'gguf';
    where = `${file.fileName}: tokenizer.chat_template`;
  } else {
    const t = (h.tokenizer as { chatTemplate?: unknown }).chatTemplate;
    if (typeof t !== 'string' || t === '') return undefined;
    text = t;
    source = 'tokenizer_config';
    where = 'tokenizer_config.json: chat_template';
  }
  const tok = h.tokenizer;
  const bos = specialText(h, tok.bos), eos = specialText(h, tok.eos);
  const render = await jinjaChatTemplate(text, { bos, eos }, where);
  const readsAsBos = bos !== undefined && bos !== '' && sameIds(tok.encode(bos), [tok.bos!]);
  const template: ChatTemplate = (messages) => {
    if (!messages.length) throw new Error('chat: there are no messages to answer');
    messages.forEach((m, i) => {
      if (typeof m.content !== 'string') throw new Error(`chat: message ${i} has no text content`);
    });
    const prompt = render(messages.map((m) => ({ role: m.role, content: m.content })), { addGenerationPrompt: true });
    if (bos === undefined || bos === '' || !prompt.startsWith(bos)) return { prompt, stop: [] };
    // The template wrote BOS: the tokenizer reads it from the text (Hugging Face added tokens), or it
    // becomes the BOS id here (a GGUF vocabulary reads special tokens' texts as plain text).
    return readsAsBos ? { prompt, stop: [], addBos: false } : { prompt: prompt.slice(bos.length), stop: [], addBos: true };
  };
  return { template, source };
}

function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A special token's text: the tokenizer's own spelling (Hugging Face), else the vocabulary's. */
function specialText(h: Pick<ModelHandle, 'bundle' | 'tokenizer'>, id: number | null): string | undefined {
  if (id === null) return undefined;
  const own = (h.tokenizer as { tokenText?: (id: number) => string | undefined }).tokenText?.(id);
  return own ?? h.bundle.vocab.tokens[id];
}

/** A model run by stlm's own engine in this process, behind the tiers' interface. */
export class LocalModel implements LanguageModel {
  readonly name: string;
  readonly tier: Tier;
  private readonly chatTemplate: ChatTemplate;
  /**
   * Where chat messages' template came from: 'gguf' (the file's `tokenizer.chat_template`),
   * 'tokenizer_config' (a Hugging Face tokenizer's `chat_template`), 'plain' ({@link plainChatTemplate}:
   * the model has none) or 'option' (the `chatTemplate` option).
   */
  readonly chatTemplateSource: ChatTemplateSource;
  private closed = false;
  /** Set by {@link enableBatching}: generations then advance together, one batched decode step at a time. */
  private batcher: DecodeBatcher | undefined;

  /**
   * Wraps an opened model; `close()` disposes it. Chats use `o.chatTemplate`, else the plain template:
   * {@link LocalModel.fromHandle} (and {@link LocalModel.open}) find the model's own.
   */
  constructor(readonly handle: ModelHandle, o: LocalModelOptions = {}) {
    this.name = o.name ?? (handle.source === '<bytes>' ? 'local model' : baseName(handle.source));
    this.tier = o.tier ?? 'tiny';
    this.chatTemplate = o.chatTemplate ?? plainChatTemplate;
    this.chatTemplateSource = o.chatTemplate ? o.chatTemplateSource ?? 'option' : 'plain';
  }

  /**
   * Wraps an opened model with its own chat template where it carries one (unless `o.chatTemplate` is
   * given). A template that does not parse rejects, with one line naming where it came from.
   */
  static async fromHandle(handle: ModelHandle, o: LocalModelOptions = {}): Promise<LocalModel> {
    if (o.chatTemplate) return new LocalModel(handle, o);
    const own = await modelChatTemplate(handle);
    return new LocalModel(handle, own ? { ...o, chatTemplate: own.template, chatTemplateSource: own.source } : o);
  }

  /** Opens a model file (a path in Node, or the file's bytes anywhere) as a LocalModel, with its own chat template where it has one. */
  static async open(source: string | Uint8Array, o: OpenOptions & LocalModelOptions = {}): Promise<LocalModel> {
    const { name, tier, chatTemplate, chatTemplateSource, ...open } = o;
    const handle = await openModel(source, open);
    try {
      return await LocalModel.fromHandle(handle, { name, tier, chatTemplate, chatTemplateSource });
    } catch (e) {
      handle.dispose();
      throw e;
    }
  }

  /**
   * From now on, concurrent generations share the model through continuous batching (`generate/batch.ts`):
   * up to `maxBatch` decode together, one step for all, each with its own KV cache; more wait their turn.
   * A seed gives the same text as without batching. Returns the batcher (its counters say how full steps
   * ran); where batching is on already, the batcher as it is (several servers may share one model).
   */
  enableBatching(o: { maxBatch: number; prefillTokens?: number }): DecodeBatcher {
    this.batcher ??= new DecodeBatcher(this.handle.model, o);
    return this.batcher;
  }

  /** Bytes of one generation's KV cache (its keys and values at full context), for a memory budget. */
  kvCacheBytes(): number {
    const c = this.handle.config;
    return effectiveDepth(c) * c.ctx * c.nKvHeads * headDim(c) * 2 * 4;
  }

  info(): LanguageModelInfo {
    const h = this.handle;
    const types = new Set<string>([...h.bundle.quantized.values()].map((q) => q.type));
    if (h.bundle.weights.size) types.add('f32');
    return {
      name: this.name, tier: this.tier, provider: 'local', parameters: h.parameters,
      fileBytes: h.bundle.file?.fileSize, contextLength: h.config.ctx,
      quantization: [...types].sort().join('+') || undefined, runsOn: 'this process',
    };
  }

  async generate(input: GenerateInput, o: LocalGenerateOptions = {}): Promise<GenerateResult> {
    const it = this.run(input, o, 'throw');
    let r = await it.next();
    while (!r.done) r = await it.next();
    return r.value;
  }

  stream(input: GenerateInput, o: LocalGenerateOptions = {}): GenerateStream {
    return this.run(input, o, 'end');
  }

  /**
   * The generation, token by token: each piece goes to `o.onText` and is yielded; between pieces the
   * abort signal is checked, and every ~10 ms the event loop gets a turn (so timers and I/O can abort).
   * An abort rejects (`'throw'`, generate) or ends the stream with finishReason 'abort' (`'end'`).
   */
  private async *run(input: GenerateInput, o: LocalGenerateOptions, onAbort: 'throw' | 'end'): GenerateStream {
    if (this.closed) throw new Error(`${this.name}: the model is closed`);
    const t0 = performance.now();
    const { prompt, stop, chat, addBos } = this.render(input);
    const h = this.handle;
    let logprobSum = 0, entropySum = 0, generated = 0;
    const tokenText = new TextDecoder();
    const onLogprob = o.onTokenLogprob, topN = o.topLogprobs ?? 0;
    const loopOptions: LoopOptions = {
      maxTokens: o.maxTokens, temperature: o.temperature ?? 0.8, topK: o.topK ?? 0, topP: o.topP ?? 0.95, minP: o.minP ?? 0.05,
      repetitionPenalty: o.repetitionPenalty ?? 1, seed: o.seed ?? 1, stop: [...(o.stop ?? []), ...stop], addBos: addBos ?? h.addBos,
      onToken: (id, logits, p, entropy) => {
        logprobSum += Math.log(p);
        // The sampler's entropy is of the logits as they are unless a repetition penalty changed them.
        entropySum += loopOptions.repetitionPenalty === 1 ? entropy : entropyOf(logits);
        generated++;
        if (onLogprob) {
          const r = tokenLogSoftmax(logits, id, undefined, topN);
          const text = tokenText.decode(h.tokenizer.decode([id]), { stream: true });
          onLogprob({ id, text, logprob: r.logprob, top: r.top.map((t) => ({ ...t, text: this.tokenText(t.id) })) });
        }
      },
    };
    const source = o.promptIds ?? prompt;
    const pieces = this.batcher ? batchedPieces(this.batcher, new Generation(h.model, h.tokenizer, source, loopOptions), o.signal) : alonePieces(generateSteps(h.model, h.tokenizer, source, loopOptions), o.signal);
    let text = '', ttft: number | undefined, loop: LoopResult | undefined;
    let leading = chat; // a reply's leading whitespace (after "Assistant:") is not part of it
    let finished = false;
    try {
      for (;;) {
        const r = await pieces.next();
        if (r.done) {
          loop = r.value;
          finished = true;
          break;
        }
        let piece = r.value;
        if (leading) {
          piece = piece.replace(/^\s+/, '');
          if (piece) leading = false;
        }
        if (piece) {
          ttft ??= performance.now() - t0;
          text += piece;
          o.onText?.(piece);
          yield piece;
        }
      }
    } finally {
      if (!finished) await pieces.return(undefined); // a consumer that stopped early frees the session (or the batch slot)
    }
    if (!loop && onAbort === 'throw') throw o.signal!.reason;
    const totalMs = performance.now() - t0;
    const promptTokens = loop ? loop.promptTokens : o.promptIds ? o.promptIds.length : promptTokenCount(h, prompt, addBos ?? h.addBos);
    return {
      text, finishReason: loop ? loop.finishReason : 'abort',
      usage: { promptTokens, completionTokens: loop ? loop.tokens.length : generated },
      timeToFirstTokenMs: ttft ?? totalMs, totalMs, costUsd: 0, model: this.name,
      meanLogprob: generated ? logprobSum / generated : undefined,
      meanEntropy: generated ? entropySum / generated : undefined,
    };
  }

  /** The prompt a chat becomes (this model's chat template), and the strings that end its reply. */
  renderChat(messages: readonly ChatMessage[]): RenderedChat {
    return this.chatTemplate(messages);
  }

  /**
   * A prompt's token ids as generation and scoring see them: with BOS when the model takes it (or as
   * `o.addBos`, a rendered chat's, says); BOS alone for an empty text.
   */
  promptIds(text: string, o: { addBos?: boolean } = {}): number[] {
    const h = this.handle;
    const ids = Array.from(h.tokenizer.encode(text, { bos: !h.model.ownStart && (o.addBos ?? h.addBos) }));
    return ids.length === 0 && !h.model.ownStart && h.tokenizer.bos !== null ? [h.tokenizer.bos] : ids;
  }

  /** One token's text on its own (a piece of a character decodes to U+FFFD). */
  tokenText(id: number): string {
    return new TextDecoder().decode(this.handle.tokenizer.decode([id]));
  }

  /**
   * The log-probability of each token of `ids` given the tokens before it (the first has none: null), and
   * the `topN` most likely tokens at each position: what an OpenAI completions request with `echo` and
   * `logprobs` reports of its prompt. One pass through the model (float64 log-softmax over the whole
   * vocabulary, as `score()` computes it, so the sums equal score()'s). At most the model's context.
   */
  tokenLogprobs(ids: readonly number[], topN = 0): TokenLogprob[] {
    if (this.closed) throw new Error(`${this.name}: the model is closed`);
    const { model, tokenizer } = this.handle;
    const ctx = model.config.ctx, vocab = model.config.vocabSize;
    if (ids.length > ctx) throw new Error(`tokenLogprobs: ${ids.length} tokens do not fit the model's context of ${ctx}`);
    for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`tokenLogprobs: token id ${id} is outside the vocabulary of ${vocab}`);
    if (!(Number.isInteger(topN) && topN >= 0)) throw new Error(`tokenLogprobs: topN must be an integer >= 0, got ${topN}`);
    const dec = new TextDecoder();
    const texts = ids.map((id) => dec.decode(tokenizer.decode([id]), { stream: true }));
    const out: TokenLogprob[] = ids.map((id, i) => ({ id, text: texts[i], logprob: null, top: [] }));
    if (ids.length < 2) return out;
    const session = model.session(ids.length);
    try {
      // The blocks score() feeds (extendAligned), so the numbers are score()'s to the last bit.
      const first = session.reset([ids[0]]);
      const rest = extendAligned(session, ids, 1, ids.length - 1, vocab);
      for (let i = 1; i < ids.length; i++) {
        const row = i === 1 ? first : rest.subarray((i - 2) * vocab, (i - 1) * vocab);
        const r = tokenLogSoftmax(row, ids[i], undefined, topN);
        out[i].logprob = r.logprob;
        out[i].top = r.top.map((t) => ({ ...t, text: this.tokenText(t.id) }));
      }
    } finally {
      session.dispose();
    }
    return out;
  }

  /** A prompt, or chat messages through the chat template. */
  private render(input: GenerateInput): RenderedChat & { chat: boolean } {
    if (input.messages !== undefined) return { ...this.chatTemplate(input.messages), chat: true };
    if (typeof input.prompt !== 'string') throw new Error('generate: give a prompt (text) or messages');
    return { prompt: input.prompt, stop: [], chat: false };
  }

  /**
   * `score()` on token ids: the context with BOS when the model takes BOS, each continuation as
   * lm-evaluation-harness tokenizes it (encode(context + continuation) minus encode(context) when that
   * is a prefix, else encode(continuation)).
   */
  async score(context: string, continuations: string[], o: { signal?: AbortSignal } = {}): Promise<ContinuationScore[]> {
    o.signal?.throwIfAborted();
    if (this.closed) throw new Error(`${this.name}: the model is closed`);
    const h = this.handle;
    const { context: ctxIds, continuations: contIds } = scoreTokens(h, context, continuations);
    const r = scoreIds(h.model, ctxIds, contIds);
    return r.continuations.map((c, i) => ({ logprob: c.logprob, greedy: c.greedy, tokens: contIds[i].length }));
  }

  /** Token ids of the text (no BOS). */
  async tokenize(text: string): Promise<number[]> {
    return Array.from(this.handle.tokenizer.encode(text));
  }

  /** Exact: the length of {@link tokenize}. */
  async countTokens(text: string): Promise<number> {
    return this.handle.tokenizer.encode(text).length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handle.dispose();
  }
}

/**
 * The token ids `LocalModel.score` hands to `score()`: the context (with BOS when the model takes it; BOS
 * alone for an empty context) and each continuation as lm-evaluation-harness splits it.
 */
export function scoreTokens(h: Pick<ModelHandle, 'tokenizer' | 'addBos' | 'model'>, context: string, continuations: readonly string[]): { context: number[]; continuations: number[][] } {
  const tok = h.tokenizer;
  let ctxIds = Array.from(tok.encode(context, { bos: h.addBos }));
  if (ctxIds.length === 0 && !h.model.ownStart && tok.bos !== null) ctxIds = [tok.bos];
  // The context as the split sees it: encoded with BOS as a prompt would be (before an empty one becomes [BOS]).
  const encode = (text: string) => tok.encode(text, { bos: h.addBos }), head = encode(context);
  const conts = continuations.map((c, i) => {
    if (typeof c !== 'string' || c === '') throw new Error(`score: continuation ${i} is empty (nothing to score)`);
    return continuationTokens(encode, head, context, c, (text) => tok.encode(text));
  });
  return { context: ctxIds, continuations: conts };
}

/** Prompt tokens as the loop counts them (for an aborted generation, which has no loop result). */
function promptTokenCount(h: ModelHandle, prompt: string, bos: boolean): number {
  const n = h.tokenizer.encode(prompt, { bos: bos && !h.model.ownStart }).length;
  return n === 0 && !h.model.ownStart && h.tokenizer.bos !== null ? 1 : n;
}

/**
 * One generation stepped alone (generateSteps) as async pieces: the abort signal is checked between
 * pieces and every ~10 ms the event loop gets a turn (so timers and I/O can abort), and once right after
 * the first piece (so a consumer's write of it reaches the socket now, not with the next ~10 ms of
 * pieces: a small model's whole answer took less than that). Returns the loop's result, or undefined
 * when aborted.
 */
async function* alonePieces(steps: Generator<string, LoopResult>, signal: AbortSignal | undefined): AsyncGenerator<string, LoopResult | undefined> {
  let lastTurn = performance.now(), first = true;
  let loop: LoopResult | undefined;
  try {
    for (;;) {
      if (signal?.aborted) return undefined;
      const r = steps.next();
      if (r.done) return (loop = r.value);
      yield r.value;
      if (first || performance.now() - lastTurn > 10) {
        first = false;
        await nextTurn();
        lastTurn = performance.now();
      }
    }
  } finally {
    if (!loop) steps.return(undefined as never); // frees the session
  }
}

/**
 * One generation in the model's batch as async pieces; returns the result, or undefined when aborted.
 * A consumer that stops early (or a signal that aborts) drops the generation from the batch, freeing its slot.
 */
async function* batchedPieces(batcher: DecodeBatcher, gen: Generation, signal: AbortSignal | undefined): AsyncGenerator<string, LoopResult | undefined> {
  const cancel = new AbortController();
  const onAbort = () => cancel.abort(signal!.reason);
  if (signal?.aborted) return undefined;
  signal?.addEventListener('abort', onAbort, { once: true });
  const queued: string[] = [];
  let wake: (() => void) | null = null, settled = false, result: LoopResult | undefined, error: unknown;
  void batcher.run(gen, { signal: cancel.signal, onText: (t) => { queued.push(t); wake?.(); } }).then(
    (r) => { result = r; },
    (e) => { error = e; },
  ).finally(() => { settled = true; wake?.(); });
  try {
    for (;;) {
      if (queued.length) {
        yield queued.shift()!;
        continue;
      }
      if (settled) break;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
    if (result) return result;
    if (cancel.signal.aborted) return undefined;
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!settled) cancel.abort(new Error('the stream was closed'));
  }
}

/** A turn of the event loop (setImmediate in Node: no 1 ms timer clamp; a timer elsewhere). */
function nextTurn(): Promise<void> {
  return new Promise((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));
}

function baseName(path: string): string {
  return path.replace(/[/\\]+$/, '').split(/[/\\]/).pop() || path;
}

/** Entropy in nats of softmax(logits) (−∞ logits take no part), in float64. */
export function entropyOf(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0, weighted = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] === -Infinity) continue;
    const d = logits[i] - max, e = expNonPositive(d); // the sampler's exp: its entropy equals this to the bit
    sum += e;
    weighted += e * d;
  }
  return Math.log(sum) - weighted / sum;
}
