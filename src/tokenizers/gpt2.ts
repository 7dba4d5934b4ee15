/**
 * Byte-level BPE exactly as llama.cpp runs it for tokenizer.ggml.model = 'gpt2' (llm_tokenizer_bpe):
 * the text is pre-tokenized, each piece's UTF-8 bytes are spelled with GPT-2's printable stand-ins
 * (bytes-to-unicode), and adjacent symbols are merged lowest-rank-first by the merge list.
 *
 * Pre-tokenizers (tokenizer.ggml.pre): 'gpt-2' is GPT-2's regex; 'default' (also when the key is absent)
 * is llama.cpp's default chain, which first cuts out runs of punctuation and later splits digit runs
 * into threes. Character classes are JavaScript's Unicode properties, which agree with llama.cpp's
 * tables except perhaps for rare or newly assigned characters.
 */
import { BigramQueue, IdCache, checkId, decodeTokens, runMerges, tokenIndex, wellFormed, withBosEos } from './spm.js';
import { pretokenizeGpt2 } from './pretokenize.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';
import { TOKEN_TYPE, type VocabSpec, VocabError, validateVocab } from './vocab.js';

/**
 * GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the other
 * 68 (controls, space, DEL, NBSP, soft hyphen...) get U+0100 onwards in byte order. Every stand-in is
 * one UTF-16 code unit, and none is a space.
 */
export function byteToUnicode(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return out;
}

const BYTE_CHARS = byteToUnicode();
/** Code unit of a stand-in character to its byte; -1 for characters that stand for no byte. */
const CHAR_BYTES: Int16Array = (() => {
  const table = new Int16Array(256 + 68).fill(-1);
  BYTE_CHARS.forEach((c, b) => { table[c.charCodeAt(0)] = b; });
  return table;
})();

/**
 * stlm's byte tokenizer as a vocabulary: 256 byte tokens in GPT-2 form, then '<s>', '</s>', '<pad>'
 * (BOS 256, EOS 257, PAD 258), no merges. llama.cpp reads it as a byte-level BPE without merges, so it
 * tokenizes text to bytes too. Byte models train on raw text windows, so no BOS is added by default.
 */
export function byteVocab(): VocabSpec {
  const tokens = [...BYTE_CHARS, '<s>', '</s>', '<pad>'];
  return {
    model: 'byte',
    tokens,
    types: Int32Array.from(tokens, (_, i) => (i < 256 ? TOKEN_TYPE.NORMAL : TOKEN_TYPE.CONTROL)),
    merges: [],
    pre: 'default',
    bos: 256,
    eos: 257,
    pad: 258,
    addBos: false,
  };
}

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------------
// Pre-tokenizers

/** Splits every piece at the matches of `re` (global), keeping the text between matches as pieces. */
function splitEach(pieces: string[], re: RegExp): string[] {
  const out: string[] = [];
  for (const piece of pieces) {
    let last = 0;
    for (const m of piece.matchAll(re)) {
      if (m.index > last) out.push(piece.slice(last, m.index));
      out.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < piece.length) out.push(piece.slice(last));
  }
  return out;
}

const PUNCTUATION_RUNS = /[\p{P}$+<=>^~|]+/gu;
const NUMBER_RUNS = /\p{N}+/gu;
const DIGIT_TRIPLES = /[0-9][0-9][0-9]/g;

/** llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT chain of regexes, each splitting the pieces of the last. */
function pretokenizeDefault(text: string): string[] {
  let pieces = splitEach([text], PUNCTUATION_RUNS);
  pieces = pieces.flatMap(pretokenizeGpt2);
  pieces = splitEach(pieces, NUMBER_RUNS);
  return splitEach(pieces, DIGIT_TRIPLES);
}

/** Pre-tokenizer names stlm implements. */
export const GPT2_PRETOKENIZERS = ['gpt-2', 'default'] as const;

function pretokenizerFor(pre: string | undefined): (text: string) => string[] {
  if (pre === 'gpt-2') return pretokenizeGpt2;
  if (pre === undefined || pre === 'default') return pretokenizeDefault;
  throw new VocabError(`vocabulary: gpt2 pre-tokenizer '${pre}' is not supported (supported: ${GPT2_PRETOKENIZERS.join(', ')})`);
}

// ---------------------------------------------------------------------------------------------------
// The tokenizer

/** The bytes a token stands for in llama.cpp's token_to_piece (special = false). */
function gpt2PieceBytes(text: string, type: number): Uint8Array {
  switch (type) {
    case TOKEN_TYPE.NORMAL: {
      const out = new Uint8Array(text.length * 3);
      let n = 0;
      for (const ch of text) {
        const code = ch.charCodeAt(0);
        const b = ch.length === 1 && code < CHAR_BYTES.length ? CHAR_BYTES[code] : -1;
        if (b >= 0) out[n++] = b;
        else for (const x of utf8.encode(ch)) out[n++] = x; // no stand-in: keep the character itself
      }
      return out.slice(0, n);
    }
    case TOKEN_TYPE.USER_DEFINED: return utf8.encode(text);
    default: return EMPTY; // control, unknown; llama.cpp also prints nothing for byte and unused tokens here
  }
}

/** llama.cpp's byte-level BPE tokenizer (kind 'gpt2'). Special tokens in the text are not parsed out. */
export class Gpt2Tokenizer implements Tokenizer {
  readonly kind = 'gpt2';
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly eos: number | null;
  readonly pad: number | null;
  private readonly ids: Map<string, number>;
  /** Merge rule "left right" to rank; a rule listed twice keeps its first rank, as in llama.cpp. */
  private readonly ranks = new Map<string, number>();
  private readonly pretokenize: (text: string) => string[];
  /** Pre-tokens remembered with their ids. */
  private readonly cache = new IdCache((piece) => this.bpe(encodeBytes(piece)));
  private readonly pieces: Uint8Array[];

  constructor(readonly vocab: VocabSpec) {
    validateVocab(vocab, 'vocabulary');
    if (vocab.model !== 'gpt2') throw new VocabError(`vocabulary: Gpt2Tokenizer needs a 'gpt2' vocabulary, not '${vocab.model}'`);
    this.vocabSize = vocab.tokens.length;
    this.bos = vocab.bos ?? null;
    this.eos = vocab.eos ?? null;
    this.pad = vocab.pad ?? null;
    this.ids = tokenIndex(vocab.tokens);
    // Symbols are spelled in stand-ins, which contain no space, so "left right" is an unambiguous key.
    (vocab.merges ?? []).forEach((m, rank) => { if (!this.ranks.has(m)) this.ranks.set(m, rank); });
    this.pretokenize = pretokenizerFor(vocab.pre);
    this.pieces = vocab.tokens.map((t, i) => gpt2PieceBytes(t, vocab.types?.[i] ?? TOKEN_TYPE.NORMAL));
  }

  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    return withBosEos(this, opts, (out) => {
      for (const piece of this.pretokenize(wellFormed(text))) this.cache.append(piece, out);
    });
  }

  decode(ids: ArrayLike<number>): Uint8Array {
    return decodeTokens(ids, (id) => this.tokenBytes(id));
  }

  tokenBytes(id: number): Uint8Array {
    return this.pieces[checkId(this.kind, id, this.vocabSize)];
  }

  /** The id of a token text (in stand-in spelling), or undefined. */
  tokenId(text: string): number | undefined {
    return this.ids.get(text);
  }

  /** Merges one pre-token (in stand-in spelling: one code unit per byte) and returns its ids. */
  private bpe(word: string): number[] {
    const n = word.length;
    const whole = this.ids.get(word);
    if (n === 1 && whole !== undefined) return [whole];
    const start = new Int32Array(n);
    const len = new Int32Array(n).fill(1);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      start[k] = k;
      prev[k] = k - 1;
      next[k] = k + 1 < n ? k + 1 : -1;
    }
    const queue = new BigramQueue();
    const tryMerge = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const rank = this.ranks.get(`${word.substr(start[left], len[left])} ${word.substr(start[right], len[right])}`);
      if (rank !== undefined) queue.push(rank, left, right, len[left] + len[right]);
    };
    for (let k = 1; k < n; k++) tryMerge(k - 1, k);
    runMerges(queue, len, prev, next, tryMerge);

    const out: number[] = [];
    for (let k = 0; k >= 0; k = next[k]) {
      const symbol = word.substr(start[k], len[k]);
      const id = this.ids.get(symbol);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // llama.cpp looks each UTF-8 byte of the unknown symbol up as a one-byte token; only ASCII
      // stand-ins can match, the bytes of the others are never valid UTF-8 on their own.
      for (const ch of symbol) {
        const single = ch.charCodeAt(0) < 0x80 ? this.ids.get(ch) : undefined;
        if (single !== undefined) out.push(single);
      }
    }
    return out;
  }
}

/** A text's UTF-8 bytes spelled in GPT-2 stand-ins. */
function encodeBytes(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_CHARS[b];
  return out;
}
