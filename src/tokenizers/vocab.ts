/**
 * A tokenizer's vocabulary as data: what a GGUF file's tokenizer.ggml.* keys, a llama2.c tokenizer file
 * or our BPE trainer produce, and what a Tokenizer is built from. Formats convert to and from this one
 * shape, so every tokenizer moves between every file format.
 */
import { type GgufFile, type GgufValue, gguf } from '../formats/gguf.js';

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

// ---------------------------------------------------------------------------------------------------
// GGUF (tokenizer.ggml.* keys, as llama.cpp reads and writes them)

const KEY = {
  model: 'tokenizer.ggml.model',
  pre: 'tokenizer.ggml.pre',
  tokens: 'tokenizer.ggml.tokens',
  scores: 'tokenizer.ggml.scores',
  types: 'tokenizer.ggml.token_type',
  merges: 'tokenizer.ggml.merges',
  bos: 'tokenizer.ggml.bos_token_id',
  eos: 'tokenizer.ggml.eos_token_id',
  unk: 'tokenizer.ggml.unknown_token_id',
  sep: 'tokenizer.ggml.seperator_token_id', // sic: llama.cpp's spelling
  pad: 'tokenizer.ggml.padding_token_id',
  cls: 'tokenizer.ggml.cls_token_id',
  addBos: 'tokenizer.ggml.add_bos_token',
  addEos: 'tokenizer.ggml.add_eos_token',
  addSpacePrefix: 'tokenizer.ggml.add_space_prefix',
  /** stlm's own key: which stlm tokenizer a gpt2-form vocabulary really is. */
  stlmTokenizer: 'stlm.tokenizer',
} as const;

/** The special token ids and their keys, in the order they are written. */
const ID_KEYS = [['bos', KEY.bos], ['eos', KEY.eos], ['unk', KEY.unk], ['sep', KEY.sep], ['pad', KEY.pad]] as const;

/** GGUF tokenizer.ggml.model values stlm can tokenize with. */
const GGUF_MODELS = ['llama', 'gpt2', 'bert'] as const;

/**
 * Reads a GGUF file's tokenizer.ggml.* keys into a VocabSpec. A gpt2-form vocabulary marked
 * `stlm.tokenizer = 'byte'` reads back as model 'byte'. For bert, a missing bos id falls back to
 * tokenizer.ggml.cls_token_id (llama.cpp uses CLS as BERT's BOS). Throws a VocabError naming the file
 * and the key when a key is missing, has the wrong type, or is inconsistent.
 */
export function vocabFromGguf(file: GgufFile): VocabSpec {
  const name = file.fileName;
  const problem = (key: string, msg: string) => new VocabError(`${name}: ${key} ${msg}`);
  const bad = (key: string, msg: string): never => { throw problem(key, msg); };
  const found = (v: GgufValue): string => (v.type === 'array' ? `an array of ${v.itemType}` : v.type);

  const get = (key: string): GgufValue | undefined => file.metadata.get(key);
  const str = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'string' ? v.value : bad(key, `should be a string, found ${found(v)}`);
  };
  const bool = (key: string): boolean | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'bool' ? v.value : bad(key, `should be a bool, found ${found(v)}`);
  };
  const id = (key: string): number | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    const n = v.type === 'u64' || v.type === 'i64' ? Number(v.value) : typeof v.value === 'number' ? v.value : NaN;
    if (v.type === 'f32' || v.type === 'f64' || !Number.isSafeInteger(n)) bad(key, `should be an integer token id, found ${found(v)}`);
    return n;
  };
  const strings = (key: string): string[] | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'array' && v.itemType === 'string' ? v.value : bad(key, `should be an array of strings, found ${found(v)}`);
  };

  const ggufModel = str(KEY.model) ?? bad(KEY.model, 'is missing');
  if (!(GGUF_MODELS as readonly string[]).includes(ggufModel)) {
    bad(KEY.model, `'${ggufModel}' is not supported (supported: ${GGUF_MODELS.join(', ')})`);
  }
  const tokens = strings(KEY.tokens) ?? bad(KEY.tokens, 'is missing');
  const n = tokens.length;
  if (n === 0) bad(KEY.tokens, 'is empty');

  const spec: VocabSpec = { model: ggufModel as VocabSpec['model'], tokens };
  if (str(KEY.stlmTokenizer) === 'byte') {
    if (ggufModel !== 'gpt2') bad(KEY.stlmTokenizer, `is 'byte' but ${KEY.model} is '${ggufModel}', not 'gpt2'`);
    spec.model = 'byte';
  }

  const pre = str(KEY.pre);
  if (pre !== undefined) spec.pre = pre;

  const scores = get(KEY.scores);
  if (scores !== undefined) {
    if (scores.type !== 'array' || scores.itemType !== 'f32') throw problem(KEY.scores, `should be an array of f32, found ${found(scores)}`);
    if (scores.value.length !== n) bad(KEY.scores, `has ${scores.value.length} values for ${n} tokens`);
    spec.scores = scores.value as Float32Array;
  }
  const types = get(KEY.types);
  if (types !== undefined) {
    if (types.type !== 'array' || (types.itemType !== 'i32' && types.itemType !== 'u32')) {
      throw problem(KEY.types, `should be an array of i32, found ${found(types)}`);
    }
    if (types.value.length !== n) bad(KEY.types, `has ${types.value.length} values for ${n} tokens`);
    spec.types = Int32Array.from(types.value as Int32Array);
  }
  const merges = strings(KEY.merges);
  if (merges !== undefined) spec.merges = merges;
  else if (ggufModel === 'gpt2') bad(KEY.merges, 'is missing (a gpt2 vocabulary needs its merges)');

  for (const [field, key] of ID_KEYS) {
    const v = id(key);
    if (v === undefined) continue;
    if (v < 0 || v >= n) bad(key, `${v} is outside the ${n} tokens`);
    spec[field] = v;
  }
  if (spec.model === 'bert' && spec.bos === undefined) {
    const cls = id(KEY.cls);
    if (cls !== undefined) {
      if (cls < 0 || cls >= n) bad(KEY.cls, `${cls} is outside the ${n} tokens`);
      spec.bos = cls;
    }
  }

  const addBos = bool(KEY.addBos);
  if (addBos !== undefined) spec.addBos = addBos;
  const addEos = bool(KEY.addEos);
  if (addEos !== undefined) spec.addEos = addEos;
  const addSpacePrefix = bool(KEY.addSpacePrefix);
  if (addSpacePrefix !== undefined) spec.addSpacePrefix = addSpacePrefix;

  if (spec.merges) {
    const issue = mergeProblem(tokens, spec.merges);
    if (issue) bad(KEY.merges, `is invalid: ${issue}`);
  }
  validateVocab(spec, name);
  return spec;
}

/**
 * The tokenizer.ggml.* metadata entries for a vocabulary, in the order llama.cpp's converters write
 * them. Model 'byte' is written as a gpt2 vocabulary without merges plus `stlm.tokenizer = 'byte'`
 * (llama.cpp then reads it as byte-level BPE, which it is); its tokens must be those of byteVocab().
 */
export function vocabToGguf(spec: VocabSpec): [string, GgufValue][] {
  validateVocab(spec, 'vocabulary');
  const isByte = spec.model === 'byte';
  if (isByte && spec.tokens.length !== 259) {
    throw new VocabError(`vocabulary: a 'byte' vocabulary has 259 tokens, not ${spec.tokens.length} (build it with byteVocab())`);
  }
  const out: [string, GgufValue][] = [[KEY.model, gguf.str(isByte ? 'gpt2' : spec.model)]];
  if (spec.pre !== undefined) out.push([KEY.pre, gguf.str(spec.pre)]);
  out.push([KEY.tokens, gguf.arr('string', spec.tokens)]);
  if (spec.scores) out.push([KEY.scores, gguf.arr('f32', spec.scores)]);
  if (spec.types) out.push([KEY.types, gguf.arr('i32', spec.types)]);
  if (spec.merges || isByte || spec.model === 'gpt2') out.push([KEY.merges, gguf.arr('string', spec.merges ?? [])]);
  for (const [field, key] of ID_KEYS) {
    const v = spec[field];
    if (v !== undefined) out.push([key, gguf.u32(v)]);
  }
  if (spec.addBos !== undefined) out.push([KEY.addBos, gguf.bool(spec.addBos)]);
  if (spec.addEos !== undefined) out.push([KEY.addEos, gguf.bool(spec.addEos)]);
  if (spec.addSpacePrefix !== undefined) out.push([KEY.addSpacePrefix, gguf.bool(spec.addSpacePrefix)]);
  if (isByte) out.push([KEY.stlmTokenizer, gguf.str('byte')]);
  return out;
}
