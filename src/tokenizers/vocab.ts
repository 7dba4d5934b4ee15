/**
 * A tokenizer's vocabulary as data: what a GGUF file's tokenizer.ggml.* keys, a llama2.c tokenizer file
 * or our BPE trainer produce, and what a Tokenizer is built from. Formats convert to and from this one
 * shape, so every tokenizer moves between every file format.
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
}
