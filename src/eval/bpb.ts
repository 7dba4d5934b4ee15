/**
 * Bits per byte on held-out tokens: the mean next-token cross-entropy over non-overlapping windows,
 * in bits, divided by the bytes of text the scored tokens stand for. Comparable across tokenizers,
 * unlike loss, and across architectures: the byte-pooled model (models/byte-pooled.ts) takes the same
 * windows as raw bytes and scores the same targets, so its number compares directly with a flat byte
 * model's. The trainer's validation, `stlm eval bpb` and the benchmarks all call this one function.
 */
import type { LossModel } from '../models/model.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

/** What evaluation needs of a model: its graph and training loss (models/model.ts; every architecture has them). */
export type BpbModel = LossModel;

export interface BpbOptions {
  batch: number;
  seqLen: number;
  /** Evaluate at most this many windows (from the start of the split); default all. */
  maxWindows?: number;
  /**
   * Bytes of text each token id stands for (tokenizer.tokenBytes(id).length), so the divisor is the
   * exact byte count of the scored targets; absent, every token is one byte (the byte tokenizer).
   */
  tokenBytes?: ArrayLike<number>;
}

export function evaluateBpb(model: BpbModel, tokens: ArrayLike<number>, o: BpbOptions): { bpb: number; tokens: number } {
  const T = o.seqLen;
  let windows = Math.floor((tokens.length - 1) / T);
  if (windows < 1) throw new Error(`eval: ${tokens.length} tokens are fewer than one window of ${T + 1}`);
  if (o.maxWindows) windows = Math.min(windows, o.maxWindows);
  const g = model.graph;
  let nats = 0, count = 0, bytes = 0;
  for (let w0 = 0; w0 < windows; w0 += o.batch) {
    const b = Math.min(o.batch, windows - w0);
    const ids = new Int32Array(b * T), targets = new Int32Array(b * T);
    for (let i = 0; i < b; i++) {
      const s = (w0 + i) * T;
      for (let t = 0; t < T; t++) {
        ids[i * T + t] = tokens[s + t];
        targets[i * T + t] = tokens[s + t + 1];
        bytes += o.tokenBytes ? o.tokenBytes[tokens[s + t + 1]] : 1;
      }
    }
    const loss = g.noGrad(() => model.loss(ids, targets, b)).item();
    g.release();
    nats += loss * b * T;
    count += b * T;
  }
  if (bytes === 0) throw new Error('eval: the scored tokens stand for no bytes of text (only special tokens)');
  return { bpb: nats / Math.LN2 / bytes, tokens: count };
}

/** Bytes of text per token id, for `BpbOptions.tokenBytes` (special tokens: 0). */
export function tokenByteLengths(tok: Tokenizer, vocabSize = tok.vocabSize): Int32Array {
  return Int32Array.from({ length: vocabSize }, (_, id) => tok.tokenBytes(id).length);
}

/** Text as evaluateBpb takes it through a tokenizer: the token ids and the bytes each id stands for. */
export function tokenizeForBpb(tok: Tokenizer, text: Uint8Array, vocabSize = tok.vocabSize): { ids: Int32Array; tokenBytes: Int32Array } {
  return { ids: tok.encode(new TextDecoder().decode(text)), tokenBytes: tokenByteLengths(tok, vocabSize) };
}

/**
 * The window length to evaluate `tokens` ids with: `ctx` (default the model's), at most the model's
 * context and the ids less one; an error naming `what` when not even one window fits.
 */
export function bpbWindowLength(tokens: number, modelCtx: number, o: { ctx?: number; what?: string; unit?: string } = {}): number {
  const seqLen = Math.min(o.ctx ?? modelCtx, modelCtx, tokens - 1);
  if (seqLen < 1) throw new Error(`eval: ${o.what ?? 'the text'} is too short: ${tokens} ${o.unit ?? 'tokens'}`);
  return seqLen;
}
