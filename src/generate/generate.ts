/**
 * The generation loop, one for every architecture (it drives a model's InferenceSession): prefill the
 * prompt in one pass, then one token at a time (the prefix is never recomputed), sampling, streaming
 * text that never splits a UTF-8 character, and stopping at EOS, a stop string or maxTokens.
 *
 * Context overflow is a sliding window: a prompt longer than the context keeps its last ctx − 1 tokens
 * (reported in `promptTruncated`), and when the context fills during generation the session restarts
 * from the most recent half of it, so generation can run past ctx tokens.
 *
 * A model that starts every context itself (the byte-pooled model: `ownStart`) gets no BOS, so
 * `addBos` is ignored and an empty prompt works; its `tokens` are bytes.
 */
import type { CausalLM, InferenceSession } from '../models/model.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { Sampler, type SamplerOptions } from './sampler.js';
import { TextStream } from './stream-text.js';

export interface GenerateOptions extends SamplerOptions {
  /** Tokens to generate at most. Default 256. */
  maxTokens?: number;
  /** Generation ends before any of these strings; the stop string is not returned. */
  stop?: string[];
  /**
   * Prepend BOS to the prompt. Default false (stlm's byte models train on raw text windows; pass the
   * vocabulary's addBos for models that expect it); an empty prompt starts from BOS.
   */
  addBos?: boolean;
  /** Called with each piece of text as soon as it is complete. */
  onText?: (text: string) => void;
  /**
   * Called with each generated token (EOS, which ends generation, is not one), the logits it was drawn
   * from (the session's buffer: read it during the call only) and its probability under the sampler's
   * temperature-1 softmax after the repetition penalty (computed by the sampler anyway, so free): the
   * model's own probability when the penalty is off; and the entropy in nats of that same distribution
   * (the sampler's too: equal to `entropyOf(logits)` when the penalty is off). For confidence signals;
   * it changes nothing.
   */
  onToken?: (id: number, logits: Float32Array, prob: number, entropy: number) => void;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  promptTokens: number;
  /** Prompt tokens dropped from the front because the prompt was longer than the context. */
  promptTruncated: number;
  finishReason: 'stop' | 'length' | 'eos';
  /** Seconds spent in the prompt pass and in decoding. */
  prefillSeconds: number;
  decodeSeconds: number;
}

/** Generates a continuation of `prompt`, calling onText as text streams. */
export function generate(model: CausalLM, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): GenerateResult {
  return runSteps(generateSteps(model, tok, prompt, o), o);
}

/** Runs a generation's steps to the end, handing each piece of text to `o.onText`; returns the result. */
export function runSteps(it: Generator<string, GenerateResult>, o: GenerateOptions): GenerateResult {
  let r = it.next();
  while (!r.done) {
    o.onText?.(r.value);
    r = it.next();
  }
  return r.value;
}

/** `o.maxTokens` (default 256), checked. */
export function maxTokensOf(o: GenerateOptions): number {
  const maxTokens = o.maxTokens ?? 256;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) throw new Error(`maxTokens must be an integer >= 0, got ${maxTokens}`);
  return maxTokens;
}

/** A prompt fitted to a context of `ctx` positions: its last ctx − 1 ids, and how many were dropped from the front. */
export function fitPrompt(ids: number[], ctx: number): { ids: number[]; truncated: number } {
  const truncated = Math.max(0, ids.length - (ctx - 1));
  return { ids: truncated > 0 ? ids.slice(truncated) : ids, truncated };
}

/** The same as an async iterator of text pieces (for `for await` streaming). */
export async function* generateStream(model: CausalLM, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): AsyncGenerator<string, GenerateResult> {
  const it = generateSteps(model, tok, prompt, o);
  let r = it.next();
  while (!r.done) {
    yield r.value;
    await new Promise<void>((res) => setTimeout(res, 0)); // let the consumer's I/O run between tokens
    r = it.next();
  }
  return r.value;
}

/**
 * The generation as an iterator of text pieces, returning the result. The prompt is text, or token ids
 * taken as they are (no BOS added: an OpenAI-style request that sends ids sends the ones it means).
 */
export function* generateSteps(model: CausalLM, tok: Tokenizer, prompt: string | readonly number[], o: GenerateOptions = {}): Generator<string, GenerateResult> {
  const gen = new Generation(model, tok, prompt, o);
  const session = model.session();
  try {
    const t0 = performance.now();
    let logits = session.reset(gen.ids);
    gen.prefillSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    while (!gen.done) {
      const { text, next } = gen.accept(logits);
      if (text) yield text;
      if (next === null) break;
      logits = gen.full(session) ? session.reset(gen.window()) : session.push(next);
    }
    const rest = gen.end();
    if (rest) yield rest;
    gen.decodeSeconds = (performance.now() - t1) / 1000;
    return gen.result();
  } finally {
    session.dispose();
  }
}

/**
 * One generation's state between model steps, apart from the model's session: the prompt to prefill,
 * the sampler, the text stream and the stop rules. A driver feeds it each next-token logits row
 * (`accept`) and feeds the model the id it returns; `generateSteps` drives one session, a batched driver
 * (`generate/batch.ts`) drives many in one step. Both see the same numbers, so a seed gives the same text.
 */
export class Generation {
  /** The prompt's ids to prefill (its last ctx − 1 ids). */
  readonly ids: number[];
  readonly promptTokens: number;
  readonly promptTruncated: number;
  /** Generated ids (EOS not included). */
  readonly tokens: number[] = [];
  finishReason: GenerateResult['finishReason'] = 'length';
  /** True once no further logits are wanted (maxTokens 0, EOS, a stop string, maxTokens reached). */
  done: boolean;
  prefillSeconds = 0;
  decodeSeconds = 0;
  private readonly maxTokens: number;
  private readonly sampler: Sampler;
  private readonly textStream: TextStream;
  private readonly history: number[];
  private ended = false;

  constructor(
    readonly model: CausalLM,
    private readonly tok: Tokenizer,
    prompt: string | readonly number[],
    private readonly o: GenerateOptions = {},
  ) {
    if (model.tokenizerKind && tok.kind !== model.tokenizerKind) throw new Error(`generate: this ${model.architecture} model reads its tokenizer kind '${model.tokenizerKind}', not '${tok.kind}'`);
    this.maxTokens = maxTokensOf(o);
    this.sampler = new Sampler(o);
    let encoded = typeof prompt === 'string' ? Array.from(tok.encode(prompt, { bos: !model.ownStart && (o.addBos ?? false) })) : Array.from(prompt);
    if (encoded.length === 0 && !model.ownStart && tok.bos !== null) encoded = [tok.bos];
    if (encoded.length === 0 && !model.ownStart) throw new Error('generate: the prompt is empty and the tokenizer has no BOS token to start from');
    this.promptTokens = encoded.length;
    const fitted = fitPrompt(encoded, model.config.ctx);
    this.ids = fitted.ids;
    this.promptTruncated = fitted.truncated;
    this.history = this.ids.slice();
    this.textStream = new TextStream(tok, o.stop ?? []);
    this.done = this.maxTokens === 0;
  }

  /**
   * Takes the logits of the next position (modified in place: tokens never predicted are masked),
   * samples, and returns the text completed now and the id to feed the model next (null when done).
   */
  accept(logits: Float32Array): { text: string; next: number | null } {
    if (this.done) throw new Error('generate: the generation is already done');
    const { model, tok } = this;
    for (const id of model.neverPredicted) logits[id] = -Infinity;
    // Rows past the tokenizer's vocabulary (a published model's spare embedding rows) stand for no text.
    for (let id = tok.vocabSize; id < logits.length; id++) logits[id] = -Infinity;
    const next = this.sampler.sample(logits, this.history);
    if (next === tok.eos || tok.endOfGeneration?.includes(next)) return this.finish('eos', '');
    this.tokens.push(next);
    this.history.push(next);
    this.o.onToken?.(next, logits, this.sampler.lastProb, this.sampler.lastEntropy);
    // SentencePiece vocabularies mark word starts with a space; the text's first word has none.
    const afterBos = (tok.kind === 'llama' || tok.stripsLeadingSpace === true) && this.history[this.history.length - 2] === tok.bos;
    const piece = this.textStream.push(next, afterBos);
    if (piece.stopped) return this.finish('stop', piece.text);
    if (this.tokens.length >= this.maxTokens) return this.finish('length', piece.text);
    return { text: piece.text, next };
  }

  /** Whether the session is full, so the next step restarts it from {@link window} instead of a push. */
  full(session: InferenceSession): boolean {
    return session.length >= session.capacity;
  }

  /** Sliding window: the most recent half of the context, to restart a full session from. */
  window(): number[] {
    return this.history.slice(this.history.length - Math.floor(this.model.config.ctx / 2));
  }

  /** Once done: the text held back to the end (by the UTF-8 decoder or a possible stop string). */
  end(): string {
    if (this.ended || this.finishReason === 'stop') return '';
    this.ended = true;
    const rest = this.textStream.finish();
    if (rest.stopped) this.finishReason = 'stop';
    return rest.text;
  }

  result(): GenerateResult {
    const { promptTokens, promptTruncated, finishReason, prefillSeconds, decodeSeconds } = this;
    return { text: this.textStream.text, tokens: this.tokens, promptTokens, promptTruncated, finishReason, prefillSeconds, decodeSeconds };
  }

  private finish(reason: GenerateResult['finishReason'], text: string): { text: string; next: null } {
    this.finishReason = reason;
    this.done = true;
    return { text, next: null };
  }
}
