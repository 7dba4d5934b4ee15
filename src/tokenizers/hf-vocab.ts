/**
 * A Hugging Face tokenizer as a stlm VocabSpec, in one of the two forms GGUF (llama.cpp) knows, when it
 * maps onto that form faithfully; otherwise a VocabError says what does not fit.
 *
 * - 'llama' (SentencePiece BPE): a BPE model with byte_fallback, spaces spelled '▁' by the normalizer
 *   Sequence[Prepend('▁'), Replace(' ', '▁')] (or Replace alone: no space prefix) or by a Metaspace
 *   pre-tokenizer with split = false, and ByteFallback in the decoder. llama.cpp merges by token score,
 *   HF by merge rank, so each token's score is minus the rank of the first merge that makes it (tokens
 *   no merge makes score below all others). This is the same order as the SentencePiece scores of the
 *   Llama vocabulary. It is exact when, as for SentencePiece-converted merges, every split of a token
 *   into two tokens is a merge rule and every multi-character token is made by some merge; both are
 *   checked. Files that interleave the merges of different tokens (published Llama files do, for 14
 *   runs of '▁') could in principle still differ on ties.
 * - 'gpt2' (byte-level BPE): a BPE model without byte fallback, no normalizer, GPT-2's pre-tokenizer
 *   (ByteLevel with use_regex and no prefix space, or a Split with GPT-2's regex before a ByteLevel
 *   without regex; GGUF pre 'gpt-2') and the ByteLevel decoder. Other pre-tokenizer regexes (Llama 3,
 *   Qwen2, ...) are refused: stlm's Gpt2Tokenizer implements only 'gpt-2' and llama.cpp's default.
 *
 * Token types: the model's unk token UNKNOWN, special added tokens CONTROL, other added tokens
 * USER_DEFINED (llama.cpp matches those in the text, as HF does), <0xXX> BYTE, the rest NORMAL; ids no
 * token has become '[PAD<id>]', UNUSED (as llama.cpp's converter writes them). stlm's own SpmTokenizer and
 * Gpt2Tokenizer do not match added tokens in the text.
 */
import { BYTE_LEVEL_REGEX } from './hf-pretokenize.js';
import type { HfTokenizer } from './hf-json.js';
import { TOKEN_TYPE, type VocabSpec, VocabError } from './vocab.js';

const SPACE = '\u2581';
type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeOf = (v: unknown): string | null => (isObj(v) && typeof v.type === 'string' ? v.type : null);
const describe = (v: unknown): string => (v === null ? 'none' : typeOf(v) ?? 'an untyped component');

/** {String: s} or {Regex: r} as [kind, text]. */
function patternOf(v: unknown): [string, string] | null {
  if (!isObj(v)) return null;
  if (typeof v.String === 'string') return ['String', v.String];
  if (typeof v.Regex === 'string') return ['Regex', v.Regex];
  return null;
}

/** The components of a decoder (a Sequence flattened). */
function flatDecoders(v: unknown): Json[] {
  if (!isObj(v)) return [];
  if (v.type === 'Sequence' && Array.isArray(v.decoders)) return v.decoders.flatMap(flatDecoders);
  return [v];
}

/**
 * The VocabSpec of `tok` in GGUF's 'llama' or 'gpt2' form (see the module comment); throws a VocabError
 * naming tok.source and the component that does not fit.
 */
export function vocabFromHfTokenizer(tok: HfTokenizer): VocabSpec {
  const fail = (msg: string): never => {
    throw new VocabError(`${tok.source}: cannot be written as a GGUF vocabulary: ${msg}`);
  };
  const m = tok.parts.model;
  if (m.continuingSubwordPrefix || m.endOfWordSuffix) fail('model.continuing_subword_prefix / end_of_word_suffix have no GGUF equivalent');
  if (m.ignoreMerges) fail('model.ignore_merges has no GGUF equivalent that stlm implements');
  return m.byteFallback ? llamaVocab(tok, fail) : gpt2Vocab(tok, fail);
}

/** Tokens by id, types and the special ids shared by both forms. */
function baseSpec(tok: HfTokenizer, model: VocabSpec['model'], byteTokens: boolean): VocabSpec {
  const n = tok.vocabSize;
  const tokens: string[] = new Array(n);
  const types = new Int32Array(n).fill(TOKEN_TYPE.NORMAL);
  for (let id = 0; id < n; id++) {
    const text = tok.tokenText(id);
    if (text === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.UNUSED;
      continue;
    }
    tokens[id] = text;
    if (byteTokens && /^<0x[0-9A-F]{2}>$/.test(text)) types[id] = TOKEN_TYPE.BYTE;
  }
  for (const t of tok.parts.addedTokens) types[t.id] = tok.isSpecial(t.id) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  for (let id = 0; id < n; id++) if (tok.isSpecial(id)) types[id] = TOKEN_TYPE.CONTROL;
  const unk = tok.parts.model.unkToken === null ? undefined : tok.parts.model.vocab.get(tok.parts.model.unkToken);
  if (unk !== undefined) types[unk] = TOKEN_TYPE.UNKNOWN;
  const spec: VocabSpec = { model, tokens, types, addBos: tok.addBos, addEos: tok.addEos };
  if (tok.bos !== null) spec.bos = tok.bos;
  if (tok.eos !== null) spec.eos = tok.eos;
  if (tok.pad !== null) spec.pad = tok.pad;
  const unkId = tok.unk ?? unk;
  if (unkId !== null && unkId !== undefined) spec.unk = unkId;
  return spec;
}

function llamaVocab(tok: HfTokenizer, fail: (msg: string) => never): VocabSpec {
  const m = tok.parts.model;
  for (let b = 0; b < 256; b++) {
    const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (!m.vocab.has(hex)) fail(`model.byte_fallback is set but model.vocab has no ${hex}`);
  }
  const addSpacePrefix = spaceHandling(tok, fail);
  const decoders = flatDecoders(tok.parts.decoder).map(typeOf);
  if (!decoders.includes('ByteFallback')) fail(`the decoder (${describe(tok.parts.decoder)}) has no ByteFallback, so <0xXX> tokens would not decode to bytes`);

  // Score: minus the rank of the first merge making the token; checks that merges are SentencePiece's.
  const stride = tok.vocabSize;
  const rules = new Set<number>(); // left id * stride + right id
  const firstRank = new Int32Array(stride).fill(-1);
  m.merges.forEach(([a, b], rank) => {
    // HfBpe checked that both parts and the merged token are in the vocabulary.
    rules.add(m.vocab.get(a)! * stride + m.vocab.get(b)!);
    const made = m.vocab.get(a + b)!;
    if (firstRank[made] < 0) firstRank[made] = rank;
  });
  const added = new Set(tok.parts.addedTokens.map((t) => t.content));
  const spec = baseSpec(tok, 'llama', true);
  const scores = new Float32Array(spec.tokens.length).fill(-m.merges.length);
  for (const [text, id] of m.vocab) {
    const rank = firstRank[id];
    if (rank >= 0) scores[id] = -rank;
    if (spec.types![id] !== TOKEN_TYPE.NORMAL || added.has(text)) continue;
    const first = text.codePointAt(0)! > 0xffff ? 2 : 1;
    if (text.length <= first) continue; // one character
    if (rank < 0) fail(`token ${JSON.stringify(text)} (${id}) is made by no merge, but llama.cpp would build it from its characters`);
    for (let k = first; k < text.length; k += text.codePointAt(k)! > 0xffff ? 2 : 1) {
      const left = m.vocab.get(text.slice(0, k));
      const right = m.vocab.get(text.slice(k));
      if (left !== undefined && right !== undefined && !rules.has(left * stride + right)) {
        fail(`the merges are not SentencePiece's: ${JSON.stringify(text.slice(0, k))} + ${JSON.stringify(text.slice(k))} makes the token ${JSON.stringify(text)} but is no merge rule, and llama.cpp merges any two symbols that make a token`);
      }
    }
  }
  spec.scores = scores;
  spec.addSpacePrefix = addSpacePrefix;
  return spec;
}

/** Whether the normalizer / pre-tokenizer spell spaces as SentencePiece does; whether they prepend '▁'. */
function spaceHandling(tok: HfTokenizer, fail: (msg: string) => never): boolean {
  const { normalizer, preTokenizer } = tok.parts;
  const isReplaceSpace = (v: unknown): boolean => {
    const p = isObj(v) && v.type === 'Replace' ? patternOf(v.pattern) : null;
    return p !== null && p[0] === 'String' && p[1] === ' ' && (v as Json).content === SPACE;
  };
  const isPrepend = (v: unknown): boolean => isObj(v) && v.type === 'Prepend' && v.prepend === SPACE;
  if (normalizer !== null) {
    if (preTokenizer !== null) fail(`a normalizer and a pre-tokenizer (${describe(preTokenizer)}) together have no SentencePiece equivalent`);
    if (isReplaceSpace(normalizer)) return false;
    const parts = isObj(normalizer) && normalizer.type === 'Sequence' && Array.isArray(normalizer.normalizers) ? normalizer.normalizers : [];
    if (parts.length === 2 && isPrepend(parts[0]) && isReplaceSpace(parts[1])) return true;
    if (parts.length === 1 && isReplaceSpace(parts[0])) return false;
    return fail(`normalizer ${describe(normalizer)} is not SentencePiece's (Sequence[Prepend '▁', Replace ' ' -> '▁'])`);
  }
  if (isObj(preTokenizer) && preTokenizer.type === 'Metaspace') {
    if (preTokenizer.replacement !== SPACE) fail(`pre_tokenizer Metaspace replaces spaces with ${JSON.stringify(preTokenizer.replacement)}, not '▁'`);
    if (preTokenizer.split !== false) fail('pre_tokenizer Metaspace splits the text at spaces (split is not false), which SentencePiece does not');
    const scheme = preTokenizer.prepend_scheme ?? (preTokenizer.add_prefix_space === false ? 'never' : 'always');
    return scheme !== 'never';
  }
  return fail(`with byte_fallback, spaces must become '▁' (normalizer Sequence[Prepend, Replace] or pre_tokenizer Metaspace), found normalizer ${describe(normalizer)} and pre_tokenizer ${describe(preTokenizer)}`);
}

function gpt2Vocab(tok: HfTokenizer, fail: (msg: string) => never): VocabSpec {
  const { normalizer, preTokenizer, decoder } = tok.parts;
  if (normalizer !== null) fail(`normalizer ${describe(normalizer)}: llama.cpp's byte-level BPE does not normalize`);
  if (!isGpt2PreTokenizer(preTokenizer)) {
    fail(`pre_tokenizer ${describe(preTokenizer)} is not GPT-2's (ByteLevel with use_regex and no prefix space, or Split with GPT-2's regex then ByteLevel); stlm knows no other GGUF pre-tokenizer`);
  }
  if (!flatDecoders(decoder).some((d) => d.type === 'ByteLevel')) fail(`decoder ${describe(decoder)} is not ByteLevel`);
  const spec = baseSpec(tok, 'gpt2', false);
  spec.merges = tok.parts.model.merges.map(([a, b], i) => {
    if (a.includes(' ') || b.includes(' ')) fail(`model.merges[${i}] has a part with a space, which GGUF's "left right" merges cannot hold`);
    return `${a} ${b}`;
  });
  spec.pre = 'gpt-2';
  return spec;
}

function isGpt2PreTokenizer(v: unknown): boolean {
  const byteLevel = (x: unknown, regex: boolean): boolean => isObj(x) && x.type === 'ByteLevel' && x.add_prefix_space === false && (x.use_regex ?? true) === regex;
  if (byteLevel(v, true)) return true;
  if (!isObj(v) || v.type !== 'Sequence' || !Array.isArray(v.pretokenizers) || v.pretokenizers.length !== 2) return false;
  const [split, bl] = v.pretokenizers;
  const p = isObj(split) && split.type === 'Split' ? patternOf(split.pattern) : null;
  return p !== null && p[0] === 'Regex' && p[1] === BYTE_LEVEL_REGEX && (split as Json).behavior === 'Isolated' && (split as Json).invert === false && byteLevel(bl, false);
}
