/**
 * Log-likelihood of continuations, the request an evaluation harness (lm-evaluation-harness's
 * `loglikelihood`) and a router's confidence check make of a model: for each continuation of a context,
 * the summed log-probability of its tokens and whether greedy decoding would have produced it.
 *
 * The context runs once; each continuation then goes through the model from the context's cached state
 * (less the context's last partial block of SCORE_BLOCK ids, read again so that every path through the
 * model feeds the same blocks), so choices that share a context share its prefill.
 */
import type { CausalLM, InferenceSession } from '../models/model.js';

export interface ContinuationScore {
  /** Σ log p(continuation token | everything before it), natural log. */
  logprob: number;
  /** Whether every continuation token is the model's most likely next token (ties count as greedy). */
  greedy: boolean;
  /** Log-probability of each continuation token. */
  tokenLogprobs: number[];
}

export interface ScoreResult {
  continuations: ContinuationScore[];
  /** Context tokens dropped from the front to fit the model's context (as lm-evaluation-harness truncates). */
  contextTruncated: number;
}

/**
 * Scores each of `continuations` (token ids) after `context` (token ids). A model that does not start
 * contexts itself needs at least one context token (BOS for an empty text; the caller decides).
 */
export function score(model: CausalLM, context: ArrayLike<number>, continuations: readonly ArrayLike<number>[]): ScoreResult {
  const ctx = model.config.ctx, vocab = model.config.vocabSize;
  const longest = continuations.reduce((m, c) => Math.max(m, c.length), 0);
  if (continuations.some((c) => c.length === 0)) throw new Error('score: a continuation is empty (nothing to score)');
  const minContext = model.ownStart ? 0 : 1;
  if (longest + minContext > ctx) throw new Error(`score: a continuation of ${longest} tokens does not fit the model's context of ${ctx} (with ${minContext} context token)`);
  if (context.length < minContext) throw new Error('score: the context is empty; this model needs at least one token to start from (BOS)');
  for (const c of [context, ...continuations]) {
    for (let i = 0; i < c.length; i++) if (!(Number.isInteger(c[i]) && c[i] >= 0 && c[i] < vocab)) throw new Error(`score: token id ${c[i]} is outside the vocabulary of ${vocab}`);
  }
  // Keep the context's most recent tokens: the longest continuation must fit after them.
  const contextTruncated = Math.max(0, context.length - (ctx - longest));
  const kept = Array.from(context).slice(contextTruncated);
  const banned = new Set(model.neverPredicted);
  const session = model.session(Math.min(ctx, kept.length + longest));
  try {
    // The first id alone, the rest of the context in aligned blocks up to `base`; each continuation then
    // runs from `base` (re-reading the context's last partial block): the blocks of extendAligned.
    const s0 = Math.min(1, kept.length);
    const first = session.reset(kept.slice(0, s0)); // the row at position s0 − 1
    const base = Math.max(s0, Math.floor(kept.length / SCORE_BLOCK) * SCORE_BLOCK);
    const shared = extendAligned(session, kept, s0, base, vocab);
    const out = continuations.map((cont) => {
      session.truncate(base);
      const seq = kept.concat(Array.from(cont));
      const rows = extendAligned(session, seq, base, seq.length - 1, vocab);
      // The row at position p predicts seq[p + 1].
      const rowAt = (p: number) => (p >= base ? rows.subarray((p - base) * vocab, (p - base + 1) * vocab) : p === s0 - 1 ? first : shared.subarray((p - s0) * vocab, (p - s0 + 1) * vocab));
      const tokenLogprobs: number[] = [];
      let greedy = true;
      for (let i = 0; i < cont.length; i++) {
        const r = tokenLogSoftmax(rowAt(kept.length + i - 1), cont[i], banned);
        tokenLogprobs.push(r.logprob);
        greedy &&= r.isMax;
      }
      return { logprob: tokenLogprobs.reduce((a, b) => a + b, 0), greedy, tokenLogprobs };
    });
    return { continuations: out, contextTruncated };
  } finally {
    session.dispose();
  }
}

/**
 * After its first id, a sequence is fed to a session in blocks ending at multiples of this position,
 * wherever a caller's context ends. A row's float arithmetic depends on the rows computed with it (the
 * kernels pick their path by the number of rows), so fixed blocks make score() and
 * LocalModel.tokenLogprobs (a server's echo + logprobs) give bit-identical log-probabilities for the
 * same ids: an evaluation in-process and through `stlm serve` agree to the last digit.
 */
export const SCORE_BLOCK = 32;

/**
 * Feeds ids[from .. to) to a session that holds ids[0 .. from), in blocks that end at multiples of
 * SCORE_BLOCK; returns their logits [(to − from) × vocab] (row i predicts ids[from + i + 1]).
 */
export function extendAligned(session: InferenceSession, ids: ArrayLike<number>, from: number, to: number, vocab: number): Float32Array {
  const out = new Float32Array(Math.max(0, to - from) * vocab);
  for (let p = from; p < to;) {
    const end = Math.min(to, (Math.floor(p / SCORE_BLOCK) + 1) * SCORE_BLOCK);
    out.set(session.extend(Array.prototype.slice.call(ids, p, end) as number[]), (p - from) * vocab);
    p = end;
  }
  return out;
}

/** What `tokenLogSoftmax` finds of one row. */
export interface RowLogprob {
  /** log softmax(row)[target], in float64. */
  logprob: number;
  /** Whether target has the largest logit among the ids not banned (ties count). */
  isMax: boolean;
  /** The `topN` most likely ids with their log-probabilities, best first. */
  top: { id: number; logprob: number }[];
}

const NONE: ReadonlySet<number> = new Set();

/** One row of next-token logits: the target's log-probability, whether it is the greedy choice, and the top N. */
export function tokenLogSoftmax(row: Float32Array, target: number, banned: ReadonlySet<number> = NONE, topN = 0): RowLogprob {
  let max = -Infinity;
  for (let j = 0; j < row.length; j++) if (row[j] > max) max = row[j];
  let sum = 0, best = -Infinity;
  for (let j = 0; j < row.length; j++) {
    sum += Math.exp(row[j] - max);
    if (!banned.has(j) && row[j] > best) best = row[j];
  }
  const z = max + Math.log(sum);
  const top: number[] = []; // ids, best first
  for (let j = 0; topN > 0 && j < row.length; j++) {
    if (top.length === topN && !(row[j] > row[top[topN - 1]])) continue;
    let k = top.length < topN ? top.length : topN - 1;
    while (k > 0 && row[top[k - 1]] < row[j]) k--;
    top.splice(k, 0, j);
    if (top.length > topN) top.pop();
  }
  return { logprob: row[target] - z, isMax: row[target] >= best, top: top.map((id) => ({ id, logprob: row[id] - z })) };
}

/**
 * A continuation's tokens as lm-evaluation-harness takes them: encode(context + continuation) minus
 * encode(context) (`contextIds`, encoded the same way) where that is a prefix of it (a word split across
 * the boundary tokenizes as in running text), else encode(continuation) alone.
 */
export function continuationTokens(encode: (text: string) => ArrayLike<number>, contextIds: ArrayLike<number>, context: string, continuation: string, encodeAlone: (text: string) => ArrayLike<number> = encode): number[] {
  const whole = encode(context + continuation);
  let prefix = contextIds.length < whole.length;
  for (let i = 0; prefix && i < contextIds.length; i++) prefix = whole[i] === contextIds[i];
  return prefix ? Array.from(whole).slice(contextIds.length) : Array.from(encodeAlone(continuation));
}
