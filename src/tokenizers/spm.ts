/**
 * SentencePiece-style BPE exactly as llama.cpp runs it for tokenizer.ggml.model = 'llama'
 * (llm_tokenizer_spm): spaces become '▁', a '▁' is put in front of non-empty text, the text is cut into
 * characters, and adjacent symbols are merged best-score-first for as long as their concatenation is a
 * token. Symbols left that are no token come out as byte tokens <0xXX>, one per UTF-8 byte.
 *
 * Also home of what the other vocabulary tokenizers share: BigramQueue (the priority queue of candidate
 * merges) and runMerges, the '▁'-spelling decode rules, the id cache, and small id and byte helpers.
 */
import { type EncodeOptions, type Tokenizer, joinBytes } from './tokenizer.js';
import { TOKEN_TYPE, type VocabSpec, VocabError, validateVocab } from './vocab.js';

/** U+2581, SentencePiece's visible stand-in for a space. */
export const SPM_SPACE = '\u2581';

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------------
// The merge queue

/** A candidate merge of the symbols `left` and `right`, whose texts were `size` code units long together. */
export interface Bigram {
  priority: number;
  left: number;
  right: number;
  size: number;
}

/**
 * A binary min-heap of candidate merges ordered by priority, then by left position, so that equal
 * priorities merge leftmost first (llama.cpp's comparators). Entries go stale as symbols merge; the
 * tokenizers skip those when popped, which is cheaper than removing them.
 */
export class BigramQueue {
  private readonly heap: Bigram[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(priority: number, left: number, right: number, size: number): void {
    const h = this.heap;
    const item: Bigram = { priority, left, right, size };
    let i = h.length;
    h.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, h[parent])) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = item;
  }

  /** Removes and returns the first entry, or undefined when empty. */
  pop(): Bigram | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && before(h[r], h[l]) ? r : l;
      if (!before(h[child], last)) break;
      h[i] = h[child];
      i = child;
    }
    h[i] = last;
    return top;
  }
}

function before(a: Bigram, b: Bigram): boolean {
  return a.priority < b.priority || (a.priority === b.priority && a.left < b.left);
}

/**
 * Pops merges off `queue` until it is empty, over symbols kept as a linked list (`len`: code units, 0 once
 * merged into its left neighbour; `prev` / `next`: neighbours, -1 at the ends). Stale entries (a side
 * already merged away or grown since) are skipped; after each merge `tryMerge` queues the new symbol's
 * candidates with both neighbours.
 */
export function runMerges(queue: BigramQueue, len: Int32Array, prev: Int32Array, next: Int32Array, tryMerge: (left: number, right: number) => void): void {
  for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
    const { left, right } = b;
    if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== b.size) continue; // stale
    len[left] += len[right];
    len[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    tryMerge(prev[left], left);
    tryMerge(left, next[left]);
  }
}

// ---------------------------------------------------------------------------------------------------
// Shared helpers for vocabularies whose tokens spell spaces as '▁' (llama and bert)

/** Lone UTF-16 surrogates become U+FFFD, as TextEncoder (and so llama.cpp, which sees UTF-8) has them. */
export function wellFormed(text: string): string {
  return /\p{Cs}/u.test(text) ? text.replace(/\p{Cs}/gu, '\uFFFD') : text;
}

/** The byte a BYTE token "<0xXX>" stands for, read as llama.cpp does (two hex digits after "<0x"; 0 if none). */
export function byteOfToken(text: string): number {
  const v = Number.parseInt(text.slice(3, 5), 16);
  return Number.isNaN(v) ? 0 : v & 0xff;
}

/**
 * The bytes llama.cpp's token_to_piece gives for a token of a '▁'-spelled vocabulary (special = false):
 * nothing for control, unknown and unused tokens, the raw text for user-defined ones, the byte of a
 * byte token, and otherwise the text with '▁' turned back into spaces.
 */
export function spacePieceBytes(text: string, type: number): Uint8Array {
  switch (type) {
    case TOKEN_TYPE.CONTROL: case TOKEN_TYPE.UNKNOWN: case TOKEN_TYPE.UNUSED: return EMPTY;
    case TOKEN_TYPE.USER_DEFINED: return utf8.encode(text);
    case TOKEN_TYPE.BYTE: return Uint8Array.of(byteOfToken(text));
    default: return utf8.encode(text.replaceAll(SPM_SPACE, ' '));
  }
}

/** Token text to id; a text listed twice maps to its last id, as in llama.cpp's token_to_id. */
export function tokenIndex(tokens: readonly string[]): Map<string, number> {
  const index = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) index.set(tokens[i], i);
  return index;
}

/** Checks a token id and returns it; `kind` names the tokenizer in the error. */
export function checkId(kind: string, id: number, vocabSize: number): number {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`${kind} tokenizer: token id ${id} is outside [0, ${vocabSize})`);
  }
  return id;
}


/** The bytes of the tokens `ids`, one after another (a Tokenizer's decode), each from `tokenBytes`. */
export function decodeTokens(ids: ArrayLike<number>, tokenBytes: (id: number) => Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < ids.length; i++) parts.push(tokenBytes(ids[i]));
  return joinBytes(parts);
}

/** The ids `body` writes, after the BOS and before the EOS that `opts` asks for (where the vocabulary has them). */
export function withBosEos(tok: { readonly bos: number | null; readonly eos: number | null }, opts: EncodeOptions, body: (out: number[]) => void): Int32Array {
  const out: number[] = [];
  if (opts.bos && tok.bos !== null) out.push(tok.bos);
  body(out);
  if (opts.eos && tok.eos !== null) out.push(tok.eos);
  return Int32Array.from(out);
}

/**
 * Pieces of text (pre-tokens, words, segments) remembered with their ids, as computed once by `encode`;
 * emptied when it reaches `limit` entries, which bounds its memory.
 */
export class IdCache {
  private readonly map = new Map<string, number[]>();

  constructor(private readonly encode: (piece: string) => number[], private readonly limit = 65536) {}

  /** Appends the ids of `piece` to `out`. */
  append(piece: string, out: number[]): void {
    let ids = this.map.get(piece);
    if (ids === undefined) {
      ids = this.encode(piece);
      if (this.map.size >= this.limit) this.map.clear();
      this.map.set(piece, ids);
    }
    for (const id of ids) out.push(id);
  }
}

// ---------------------------------------------------------------------------------------------------
// The tokenizer

/** Options for {@link SpmTokenizer.detokenize}. */
export interface DetokenizeOptions {
  /** Drop the one space that encoding put in front (llama.cpp's default when addSpacePrefix). */
  stripSpacePrefix?: boolean;
}

/** llama.cpp's SentencePiece BPE tokenizer (kind 'llama'). */
export class SpmTokenizer implements Tokenizer {
  readonly kind = 'llama';
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly eos: number | null;
  readonly pad: number | null;
  readonly addSpacePrefix: boolean;
  private readonly ids: Map<string, number>;
  private readonly scores: Float32Array;
  /** Token id for each byte when no symbol covers it; -1 when the vocabulary cannot spell the byte. */
  private readonly byteTokens: Int32Array;
  private readonly pieces: Uint8Array[];
  /** Every two characters that stand side by side in some token; text splits between any other two. */
  private readonly pairs = new Set<string>();
  /** Segments remembered with their ids. */
  private readonly cache = new IdCache((segment) => this.mergeSegment(segment));

  constructor(readonly vocab: VocabSpec) {
    validateVocab(vocab, 'vocabulary');
    if (vocab.model !== 'llama') throw new VocabError(`vocabulary: SpmTokenizer needs a 'llama' vocabulary, not '${vocab.model}'`);
    const n = vocab.tokens.length;
    this.vocabSize = n;
    this.bos = vocab.bos ?? null;
    this.eos = vocab.eos ?? null;
    this.pad = vocab.pad ?? null;
    this.addSpacePrefix = vocab.addSpacePrefix ?? true;
    this.ids = tokenIndex(vocab.tokens);
    this.scores = vocab.scores ?? new Float32Array(n);
    this.byteTokens = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      // llama.cpp's byte_to_token: the <0xXX> token, else the byte itself as a one-character token.
      const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      this.byteTokens[b] = this.ids.get(hex) ?? (b < 0x80 ? this.ids.get(String.fromCharCode(b)) : undefined) ?? vocab.unk ?? -1;
    }
    this.pieces = vocab.tokens.map((t, i) => spacePieceBytes(t, vocab.types?.[i] ?? TOKEN_TYPE.NORMAL));
    for (const token of vocab.tokens) {
      let prev = '';
      for (const ch of token) {
        if (prev) this.pairs.add(prev + ch);
        prev = ch;
      }
    }
  }

  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    return withBosEos(this, opts, (out) => {
      if (text.length > 0) this.encodeText(text, out);
    });
  }

  decode(ids: ArrayLike<number>): Uint8Array {
    return decodeTokens(ids, (id) => this.tokenBytes(id));
  }

  /**
   * llama.cpp's llama_detokenize (remove_special = unparse_special = false): like decode, but with
   * `stripSpacePrefix` (default: addSpacePrefix) one leading space of the first token is dropped, so
   * detokenize(encode(s)) === s. As in llama.cpp, a leading BOS uses up that chance.
   */
  detokenize(ids: ArrayLike<number>, opts: DetokenizeOptions = {}): Uint8Array {
    const bytes = this.decode(ids);
    const strip = (opts.stripSpacePrefix ?? this.addSpacePrefix) && ids.length > 0;
    return strip && this.tokenBytes(ids[0])[0] === 0x20 ? bytes.subarray(1) : bytes;
  }

  tokenBytes(id: number): Uint8Array {
    return this.pieces[checkId(this.kind, id, this.vocabSize)];
  }

  /** The id of a token text, or undefined. */
  tokenId(text: string): number | undefined {
    return this.ids.get(text);
  }

  private encodeText(text: string, out: number[]): void {
    const s = ((this.addSpacePrefix ? ' ' : '') + wellFormed(text)).replaceAll(' ', SPM_SPACE);
    // Cut the text between two characters that no token holds side by side: no merge can ever join
    // them, so each segment merges on its own exactly as inside the whole text (merges in different
    // segments never compete for a symbol), and repeated segments (words, mostly) come from the cache.
    let segmentStart = 0;
    let prevStart = 0;
    for (let i = 0; i < s.length;) {
      const width = s.codePointAt(i)! > 0xffff ? 2 : 1;
      if (i > 0 && !this.pairs.has(s.slice(prevStart, i + width))) {
        this.cache.append(s.slice(segmentStart, i), out);
        segmentStart = i;
      }
      prevStart = i;
      i += width;
    }
    this.cache.append(s.slice(segmentStart), out);
  }

  /** llm_tokenizer_spm_session::tokenize on one segment (spaces already spelled '▁'). */
  private mergeSegment(s: string): number[] {
    const out: number[] = [];
    // One symbol per character; a merged symbol keeps its left part's start and grows its length.
    const start: number[] = [];
    for (let i = 0; i < s.length; i++) {
      start.push(i);
      const c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xdc00) i++; // the two halves of a surrogate pair are one character
    }
    const n = start.length;
    const len = new Int32Array(n);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      len[k] = (k + 1 < n ? start[k + 1] : s.length) - start[k];
      prev[k] = k - 1;
      next[k] = k + 1 < n ? k + 1 : -1;
    }

    const queue = new BigramQueue();
    const tryMerge = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const size = len[left] + len[right];
      const id = this.ids.get(s.substr(start[left], size));
      if (id !== undefined) queue.push(-this.scores[id], left, right, size); // best score pops first
    };
    for (let k = 1; k < n; k++) tryMerge(k - 1, k);
    runMerges(queue, len, prev, next, tryMerge);

    // Every merge formed a token, so a symbol that is no token is a single character the vocabulary
    // lacks (llama.cpp's resegment step never finds anything to split back).
    for (let k = 0; k >= 0; k = next[k]) {
      const piece = s.substr(start[k], len[k]);
      const id = this.ids.get(piece);
      if (id !== undefined) out.push(id);
      else for (const byte of utf8.encode(piece)) out.push(this.byteToken(byte, piece));
    }
    return out;
  }

  private byteToken(byte: number, piece: string): number {
    const id = this.byteTokens[byte];
    if (id < 0) {
      const hex = byte.toString(16).toUpperCase().padStart(2, '0');
      throw new VocabError(`llama tokenizer: cannot encode '${piece}': the vocabulary has no token <0x${hex}> and no unknown token`);
    }
    return id;
  }
}
