/**
 * The generation loop: prefill the prompt into the KV cache in one pass, then one token at a time
 * (the prefix is never recomputed), sampling, streaming text that never splits a UTF-8 character,
 * and stopping at EOS, a stop string or maxTokens.
 *
 * Context overflow is a sliding window: a prompt longer than the context keeps its last ctx − 1 tokens
 * (reported in `promptTruncated`), and when the cache fills during generation it is rebuilt from the
 * most recent half of the context, so generation can run past ctx tokens.
 */
import { KvCache, type Llama } from '../models/llama.js';
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
export function generate(model: Llama, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): GenerateResult {
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
export async function* generateStream(model: Llama, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): AsyncGenerator<string, GenerateResult> {
  const it = generateSteps(model, tok, prompt, o);
  let r = it.next();
  while (!r.done) {
    yield r.value;
    await new Promise<void>((res) => setTimeout(res, 0)); // let the consumer's I/O run between tokens
    r = it.next();
  }
  return r.value;
}

function* generateSteps(model: Llama, tok: Tokenizer, prompt: string, o: GenerateOptions): Generator<string, GenerateResult> {
  const maxTokens = maxTokensOf(o);
  const sampler = new Sampler(o);
  const ctx = model.config.ctx;
  let encoded = Array.from(tok.encode(prompt, { bos: o.addBos ?? false }));
  if (encoded.length === 0 && tok.bos !== null) encoded = [tok.bos];
  if (encoded.length === 0) throw new Error('generate: the prompt is empty and the tokenizer has no BOS token to start from');
  const promptTokens = encoded.length;
  const { ids, truncated: promptTruncated } = fitPrompt(encoded, ctx);
  const g = model.graph;
  const cache = new KvCache(g, model.config);
  const textStream = new TextStream(tok, o.stop ?? []);
  const out: number[] = [];
  const history = ids.slice();
  let finishReason: GenerateResult['finishReason'] = 'length';
  const t0 = performance.now();
  let logits = model.forward(Int32Array.from(ids), cache).toArray();
  g.release();
  const prefillSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  try {
    for (let i = 0; i < maxTokens; i++) {
      const next = sampler.sample(logits, history);
      if (next === tok.eos) {
        finishReason = 'eos';
        break;
      }
      out.push(next);
      history.push(next);
      // SentencePiece vocabularies mark word starts with a space; the text's first word has none.
      const afterBos = tok.kind === 'llama' && history[history.length - 2] === tok.bos;
      const piece = textStream.push(next, afterBos);
      if (piece.text) yield piece.text;
      if (piece.stopped) {
        finishReason = 'stop';
        break;
      }
      if (i === maxTokens - 1) break;
      if (cache.length >= ctx) {
        // Sliding window: rebuild the cache from the most recent half of the context.
        const keep = history.slice(history.length - Math.floor(ctx / 2));
        cache.reset();
        logits = model.forward(Int32Array.from(keep), cache).toArray();
      } else {
        logits = model.forward(Int32Array.of(next), cache).toArray();
      }
      g.release();
    }
    if (finishReason !== 'stop') {
      const rest = textStream.finish();
      if (rest.stopped) finishReason = 'stop';
      if (rest.text) yield rest.text;
    }
  } finally {
    g.release();
    cache.dispose();
  }
  return { text: textStream.text, tokens: out, promptTokens, promptTruncated, finishReason, prefillSeconds, decodeSeconds: (performance.now() - t1) / 1000 };
}
