/**
 * A tokenizer's vocabulary as data: what a GGUF file's tokenizer.ggml.* keys, a llama2.c tokenizer file
 * or our BPE trainer produce, and what a Tokenizer is built from. Formats convert to and from this one
 * shape, so every tokenizer moves between every file format (GGUF's keys: io/vocab-gguf.ts).
 */

/** GGUF / llama.cpp token types (tokenizer.ggml.token_type). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * One vocabulary. `model` names the algorithm as GGUF's tokenizer.ggml.model does:
 * - 'byte': stlm's byte tokenizer (ids 0..255 are bytes; written to GGUF as a gpt2 vocab with no merges).
 * - 'llama': SentencePiece-style BPE (score-ordered merges, '▁' for space, <0xXX> byte fallback).
 * - 'gpt2': byte-level BPE (GPT-2's bytes-to-unicode tokens, ranked merges, a pre-tokenizer regex).
 * - 'bert': WordPiece.
 */
export interface VocabSpec {
  model: 'byte' | 'llama' | 'gpt2' | 'bert';
  /** Token strings, index = id (gpt2: in bytes-to-unicode form; llama: with '▁' for space). */
  tokens: string[];
  /** Per-token scores (llama: merge priority, higher merges first). */
  scores?: Float32Array;
  /** Per-token TOKEN_TYPE values. */
  types?: Int32Array;
  /** gpt2: merges in rank order, each "left right" in bytes-to-unicode form. */
  merges?: string[];
  /** gpt2: pre-tokenizer name (tokenizer.ggml.pre), e.g. 'default' or 'gpt-2'. */
  pre?: string;
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  sep?: number;
  /** Whether encoding for a model prepends BOS by default (tokenizer.ggml.add_bos_token). */
  addBos?: boolean;
  addEos?: boolean;
  /** llama: prepend a space ('▁') to the text before encoding (tokenizer.ggml.add_space_prefix, default true). */
  addSpacePrefix?: boolean;
  /**
   * Set when the tokenizer this describes (one read from tokenizer.json) has no faithful GGUF form:
   * the model still runs with its own tokenizer, and writing the vocabulary refuses with this reason.
   */
  exportBlocker?: string;
}

// ---------------------------------------------------------------------------------------------------
// Validation

/** A vocabulary that cannot be used: inconsistent lengths, ids out of range, malformed merges. */
export class VocabError extends Error {
  override name = 'VocabError';
}

const MODELS: readonly VocabSpec['model'][] = ['byte', 'llama', 'gpt2', 'bert'];

/**
 * Splits a merge rule "left right" the way llama.cpp does (at the first space after the first
 * character, so a left part may itself be a space); undefined when there is no such space.
 */
export function splitMerge(merge: string): [string, string] | undefined {
  const at = merge.indexOf(' ', 1);
  if (at < 0 || at === merge.length - 1) return undefined;
  return [merge.slice(0, at), merge.slice(at + 1)];
}

/**
 * Throws a VocabError, prefixed with `source` (a file name, or 'vocabulary'), unless `spec` is
 * consistent: a known model, at least one token, per-token arrays as long as the token list, special
 * ids inside it, and merges of the form "left right" whose parts are both tokens.
 */
export function validateVocab(spec: VocabSpec, source: string): void {
  const bad = (msg: string): never => { throw new VocabError(`${source}: ${msg}`); };
  if (!MODELS.includes(spec.model)) bad(`unknown tokenizer model '${String(spec.model)}' (supported: ${MODELS.join(', ')})`);
  const n = spec.tokens.length;
  if (n === 0) bad('the vocabulary has no tokens');
  for (let i = 0; i < n; i++) if (typeof spec.tokens[i] !== 'string') bad(`token ${i} is not a string`);
  if (spec.scores && spec.scores.length !== n) bad(`${spec.scores.length} scores for ${n} tokens`);
  if (spec.types && spec.types.length !== n) bad(`${spec.types.length} token types for ${n} tokens`);
  for (const key of ['bos', 'eos', 'unk', 'pad', 'sep'] as const) {
    const id = spec[key];
    if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id < n)) bad(`${key} id ${id} is outside [0, ${n})`);
  }
  if (spec.merges) {
    const problem = mergeProblem(spec.tokens, spec.merges);
    if (problem) bad(`merges: ${problem}`);
  }
}

/** Why `merges` do not fit `tokens` (a rule not of the form "left right", or a part that is no token), or undefined. */
export function mergeProblem(tokens: readonly string[], merges: readonly string[]): string | undefined {
  const known = new Set(tokens);
  for (let i = 0; i < merges.length; i++) {
    const m = merges[i];
    const parts = typeof m === 'string' ? splitMerge(m) : undefined;
    if (!parts) return `merge ${i} '${String(m)}' is not of the form 'left right'`;
    for (const part of parts) if (!known.has(part)) return `merge ${i} '${m}' uses '${part}', which is not a token`;
  }
  return undefined;
}
