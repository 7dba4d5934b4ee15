/**
 * WordPiece as llama.cpp runs it for tokenizer.ggml.model = 'bert' (llm_tokenizer_wpm). llama.cpp's bert
 * vocabularies mark word starts with '▁' (where BERT's own vocab.txt marks continuations with '##').
 *
 * Normalization, character by character: each code point is replaced by the first code point of its
 * NFD decomposition (which drops accents from precomposed letters), whitespace ends a word, control
 * characters (Unicode category C, which includes unassigned code points), NUL and U+FFFD are dropped,
 * letters are lowercased, and punctuation, ASCII symbols and CJK ideographs become one-character
 * words. Each word, prefixed with '▁', is then cut greedily into the longest tokens from the left; a
 * word that cannot be cut completely becomes the unknown token.
 */
import { IdCache, SPM_SPACE, checkId, decodeTokens, spacePieceBytes, tokenIndex, wellFormed, withBosEos } from './spm.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';
import { TOKEN_TYPE, type VocabSpec, VocabError, validateVocab } from './vocab.js';

const utf8 = new TextEncoder();
const WHITESPACE = /^\p{White_Space}$/u;
const CONTROL = /^\p{C}$/u;
const PUNCTUATION = /^\p{P}$/u;
const SYMBOL = /^\p{S}$/u;

/** The CJK ideograph blocks BERT splits on (llama.cpp keeps Hugging Face's 0x2B920 start for one of them). */
function isChinese(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df)
    || (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf)
    || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** The first code point of a character's NFD form, like llama.cpp's one-to-one NFD table. */
function firstOfNfd(ch: string): string {
  return String.fromCodePoint(ch.normalize('NFD').codePointAt(0)!);
}

/** The first code point of a character's lowercase form, like llama.cpp's unicode_tolower. */
function lowerFirst(ch: string): string {
  return String.fromCodePoint(ch.toLowerCase().codePointAt(0)!);
}

/** What preprocessing does with a character: end the word, drop it, make it a word of its own, or add it to the word. */
type CharRole = 'space' | 'drop' | 'alone' | 'word';

interface CharRule { role: CharRole; text: string }

/** Rules by code point, memoized: the regex tests cost far more than a map lookup. */
const charRules = new Map<number, CharRule>();

function ruleFor(original: string): CharRule {
  const key = original.codePointAt(0)!;
  let rule = charRules.get(key);
  if (rule === undefined) {
    const ch = firstOfNfd(original);
    const cp = ch.codePointAt(0)!;
    const text = lowerFirst(ch);
    if (WHITESPACE.test(ch)) rule = { role: 'space', text };
    else if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) rule = { role: 'drop', text };
    else if (PUNCTUATION.test(ch) || (cp < 0x7f && SYMBOL.test(ch)) || isChinese(cp)) rule = { role: 'alone', text };
    else rule = { role: 'word', text };
    charRules.set(key, rule);
  }
  return rule;
}

/** Splits text into the words WordPiece cuts (llama.cpp's llm_tokenizer_wpm_session::preprocess). */
export function bertWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  for (const ch of wellFormed(text)) {
    const { role, text: lower } = ruleFor(ch);
    if (role === 'word') {
      word += lower;
      continue;
    }
    if (role === 'drop') continue;
    if (word) words.push(word);
    word = '';
    if (role === 'alone') words.push(lower);
  }
  if (word) words.push(word);
  return words;
}

/** llama.cpp's WordPiece tokenizer (kind 'bert'). */
export class WordPieceTokenizer implements Tokenizer {
  readonly kind = 'bert';
  readonly vocabSize: number;
  /** BOS is BERT's [CLS]. */
  readonly bos: number | null;
  /** EOS is BERT's [SEP] unless the vocabulary names an EOS. */
  readonly eos: number | null;
  readonly pad: number | null;
  readonly unk: number | null;
  private readonly ids: Map<string, number>;
  /** Longest token in UTF-8 bytes: no match can be longer. */
  private readonly maxTokenBytes: number;
  private readonly pieces: Uint8Array[];
  /** Words remembered with their ids. */
  private readonly cache = new IdCache((word) => this.encodeWord(word));

  constructor(readonly vocab: VocabSpec) {
    validateVocab(vocab, 'vocabulary');
    if (vocab.model !== 'bert') throw new VocabError(`vocabulary: WordPieceTokenizer needs a 'bert' vocabulary, not '${vocab.model}'`);
    this.vocabSize = vocab.tokens.length;
    this.bos = vocab.bos ?? null;
    this.eos = vocab.eos ?? vocab.sep ?? null;
    this.pad = vocab.pad ?? null;
    this.unk = vocab.unk ?? null;
    this.ids = tokenIndex(vocab.tokens);
    this.maxTokenBytes = vocab.tokens.reduce((m, t) => Math.max(m, utf8.encode(t).length), 0);
    this.pieces = vocab.tokens.map((t, i) => spacePieceBytes(t, vocab.types?.[i] ?? TOKEN_TYPE.NORMAL));
  }

  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    return withBosEos(this, opts, (out) => {
      for (const word of bertWords(text)) this.cache.append(word, out);
    });
  }

  decode(ids: ArrayLike<number>): Uint8Array {
    return decodeTokens(ids, (id) => this.tokenBytes(id));
  }

  tokenBytes(id: number): Uint8Array {
    return this.pieces[checkId(this.kind, id, this.vocabSize)];
  }

  /** Greedy longest-match-first over the code points of '▁' + word. */
  private encodeWord(word: string): number[] {
    const out: number[] = [];
    const chars = Array.from(SPM_SPACE + word);
    const bytes = chars.map((c) => utf8.encode(c).length);
    for (let i = 0; i < chars.length;) {
      let end = i;
      let size = 0;
      while (end < chars.length && size + bytes[end] <= this.maxTokenBytes) size += bytes[end++];
      let id: number | undefined;
      for (; end > i; end--) {
        id = this.ids.get(chars.slice(i, end).join(''));
        if (id !== undefined) break;
      }
      if (id === undefined) {
        out.length = 0; // one piece that cannot be matched makes the whole word unknown
        break;
      }
      out.push(id);
      i = end;
    }
    if (out.length === 0) {
      if (this.unk === null) throw new VocabError(`bert tokenizer: cannot encode '${word}' and the vocabulary has no unknown token`);
      out.push(this.unk);
    }
    return out;
  }
}
