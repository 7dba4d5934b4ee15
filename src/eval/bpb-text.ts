/**
 * Bits per byte of a text through `score()`, so any tier can be measured (a local model, a GGUF through
 * llama.cpp, a remote endpoint with echo + logprobs), and models with different tokenizers compare: the
 * bits are divided by the text's UTF-8 bytes, whatever the tokens.
 *
 * The text is cut into windows of at most `windowBytes` bytes (after a line break or a space where one
 * is near the end, so words are not split); each window is scored as a continuation of the empty context
 * (from BOS where the model takes one), independently of the others, like evaluateBpb's non-overlapping
 * windows (bpb.ts). With `maxTokens`, a window the model would read as more tokens is cut shorter.
 */
import type { ContinuationScorer } from './tasks.js';

export interface TextBpbOptions {
  /** Longest window in UTF-8 bytes (default 1024). */
  windowBytes?: number;
  /** Most tokens a window may take (the model's context less its BOS); checked with tokenize() when given. */
  maxTokens?: number;
  signal?: AbortSignal;
  /** Bytes scored so far, of all. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface TextBpb {
  /** Bits per UTF-8 byte of the text. */
  bpb: number;
  bytes: number;
  /** Tokens scored (the model's own), and bits per token. */
  tokens: number;
  bitsPerToken: number;
  windows: number;
}

const enc = new TextEncoder();

/** Bits per byte of `text` by the model's log-likelihood of it, window by window. */
export async function bitsPerByteOfText(model: ContinuationScorer & { tokenize(text: string): Promise<number[]> }, text: string, o: TextBpbOptions = {}): Promise<TextBpb> {
  let windowBytes = o.windowBytes ?? 1024;
  if (!(Number.isInteger(windowBytes) && windowBytes >= 1)) throw new Error(`bits per byte: windowBytes must be a positive integer, got ${windowBytes}`);
  const totalBytes = enc.encode(text).length;
  if (totalBytes === 0) throw new Error('bits per byte: the text is empty');
  let nats = 0, tokens = 0, bytes = 0, windows = 0, at = 0;
  while (at < text.length) {
    o.signal?.throwIfAborted();
    let end = windowEnd(text, at, windowBytes);
    if (o.maxTokens !== undefined) {
      // Shrink in proportion until the window fits (a window of one character that does not fit is the model's limit).
      for (let n = (await model.tokenize(text.slice(at, end))).length; n > o.maxTokens; n = (await model.tokenize(text.slice(at, end))).length) {
        const have = enc.encode(text.slice(at, end)).length;
        if (have <= 1 || end - at <= 1) throw new Error(`bits per byte: one character takes ${n} tokens, more than the ${o.maxTokens} a window may hold`);
        windowBytes = Math.max(1, Math.min(have - 1, Math.floor((have * o.maxTokens) / n * 0.9)));
        end = windowEnd(text, at, windowBytes);
      }
    }
    const piece = text.slice(at, end);
    const [s] = await model.score('', [piece], { signal: o.signal });
    nats -= s.logprob;
    tokens += s.tokens;
    bytes += enc.encode(piece).length;
    windows++;
    at = end;
    o.onProgress?.(bytes, totalBytes);
  }
  return { bpb: nats / Math.LN2 / bytes, bytes, tokens, bitsPerToken: nats / Math.LN2 / tokens, windows };
}

/**
 * Where a window from `start` ends (a string index): at most `maxBytes` UTF-8 bytes on, after the last
 * line break in the window's second half, else after its last space there, else at a character boundary.
 */
export function windowEnd(text: string, start: number, maxBytes: number): number {
  let end = start, bytes = 0;
  while (end < text.length) {
    const cp = text.codePointAt(end)!;
    const b = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + b > maxBytes) break;
    bytes += b;
    end += cp >= 0x10000 ? 2 : 1;
  }
  if (end === start) end += text.codePointAt(start)! >= 0x10000 ? 2 : 1; // one character, even when larger than maxBytes
  if (end >= text.length) return text.length;
  const half = start + Math.floor((end - start) / 2);
  const nl = text.lastIndexOf('\n', end - 1);
  if (nl >= half) return nl + 1;
  const sp = text.lastIndexOf(' ', end - 1);
  return sp >= half ? sp + 1 : end;
}
