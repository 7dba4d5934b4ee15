/**
 * Generation with the byte-pooled model: byte by byte to the caller (text streams as soon as each UTF-8
 * character is complete), chunk by chunk inside (models/byte-pooled.ts PooledStream: the decoder runs
 * per byte with a KV cache over the current chunk; the core runs once per completed chunk, with a KV
 * cache over chunks, so the prefix is never recomputed).
 *
 * The same options and result as generate() (generate.ts); `tokens` are bytes. There is no BOS: the
 * model starts every context from its own start chunk, so `addBos` is ignored and an empty prompt works.
 * Context overflow is a sliding window over bytes: a prompt longer than the model's window keeps its
 * last ctx − 1 bytes, and when the context fills during generation it restarts from the most recent
 * half (re-chunked from there).
 */
import { type BytePooled, PooledStream } from '../models/byte-pooled.js';
import { BYTE_BOS, BYTE_PAD } from '../tokenizers/byte.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { type GenerateOptions, type GenerateResult, fitPrompt, maxTokensOf, runSteps } from './generate.js';
import { Sampler } from './sampler.js';
import { TextStream } from './stream-text.js';

/** Generates a continuation of `prompt`, calling onText as text streams. */
export function generatePooled(model: BytePooled, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): GenerateResult {
  return runSteps(generatePooledSteps(model, tok, prompt, o), o);
}

/** The same as an iterator of text pieces. */
export function* generatePooledSteps(model: BytePooled, tok: Tokenizer, prompt: string, o: GenerateOptions = {}): Generator<string, GenerateResult> {
  if (tok.kind !== 'byte') throw new Error(`generate: the byte-pooled model reads bytes; its tokenizer must be the byte tokenizer, not '${tok.kind}'`);
  const maxTokens = maxTokensOf(o);
  const sampler = new Sampler(o);
  const ctx = model.config.ctx;
  const encoded = Array.from(tok.encode(prompt));
  const promptTokens = encoded.length;
  const { ids: bytes, truncated: promptTruncated } = fitPrompt(encoded, ctx);
  const stream = new PooledStream(model);
  const textStream = new TextStream(tok, o.stop ?? []);
  const out: number[] = [];
  const history = bytes.slice();
  let finishReason: GenerateResult['finishReason'] = 'length';
  const t0 = performance.now();
  let logits = stream.reset(bytes);
  const prefillSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  try {
    for (let i = 0; i < maxTokens; i++) {
      // BOS and PAD are never predicted (never targets in training) and cannot be fed back as bytes.
      logits[BYTE_BOS] = logits[BYTE_PAD] = -Infinity;
      const next = sampler.sample(logits, history);
      if (next === tok.eos) {
        finishReason = 'eos';
        break;
      }
      out.push(next);
      history.push(next);
      const piece = textStream.push(next);
      if (piece.text) yield piece.text;
      if (piece.stopped) {
        finishReason = 'stop';
        break;
      }
      if (i === maxTokens - 1) break;
      // Sliding window: restart from the most recent half of the window once the context is full.
      logits = stream.contextBytes >= ctx ? stream.reset(history.slice(history.length - Math.floor(ctx / 2))) : stream.push(next);
    }
    if (finishReason !== 'stop') {
      const rest = textStream.finish();
      if (rest.stopped) finishReason = 'stop';
      if (rest.text) yield rest.text;
    }
  } finally {
    model.graph.release();
    stream.dispose();
  }
  return { text: textStream.text, tokens: out, promptTokens, promptTruncated, finishReason, prefillSeconds, decodeSeconds: (performance.now() - t1) / 1000 };
}
