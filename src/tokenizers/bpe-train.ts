/**
 * Byte-level BPE training, with the semantics of stanford-cs336 assignment 1's `train_bpe` (whose
 * reference output is our test oracle):
 * - special tokens are cut out of the text first, so no pre-token (and so no merge) spans one or touches
 *   its neighbours across it;
 * - each remaining segment is split into pre-tokens by GPT-2's regex, and pre-tokens are counted;
 * - the most frequent adjacent pair of symbols inside pre-tokens is merged, again and again; equal counts
 *   go to the lexicographically greater pair (compared as byte strings, first the left then the right);
 * - training stops when the vocabulary (special tokens + 256 bytes + learned tokens) reaches vocabSize, or
 *   when no pre-token has two symbols left.
 *
 * Token ids follow the reference's layout (which is also GPT-2's encoder.json layout after the specials):
 * special tokens first, in the order given; then the 256 single bytes, ordered by their GPT-2
 * bytes-to-unicode character (printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' first, then the remapped
 * ones); then learned tokens in the order they were learned.
 *
 * Symbols are identified by their bytes (as in the reference, whose words are tuples of bytes): should a
 * merge rebuild a byte string that is already a token, the merge rule is recorded but no second token is
 * added, and training goes on until the vocabulary is full. (Greedy left-to-right merging seems to make
 * that impossible in practice: 300,000 random trials never hit it; it is handled all the same.)
 *
 * Speed: the standard incremental algorithm. Unique pre-tokens are counted once; each becomes a word (an
 * array of symbol ids) with a frequency; pair counts live in a Map keyed by one integer, with an index
 * pair → words that (may) contain it; a merge rewrites only those words and adjusts only the pair counts
 * that touch the merged positions; the best pair comes from a max-heap with lazy deletion.
 */
import { byteToUnicode } from './gpt2.js';
import { pretokenizeGpt2 } from './pretokenize.js';
import { TOKEN_TYPE, type VocabSpec } from './vocab.js';

export interface BpeTrainOptions {
  /** Final vocabulary size: special tokens + 256 bytes + learned tokens. */
  vocabSize: number;
  /** Special tokens (ids 0, 1, …): cut out of the training text, never merged, kept whole in the vocab. */
  specialTokens?: string[];
  /** Called after each merge with the number of tokens learned so far and the number wanted. */
  onProgress?: (merges: number, total: number) => void;
}

export interface BpeResult {
  /** id → token bytes (for a special token: its UTF-8 bytes). */
  vocab: Uint8Array[];
  /** Merge rules in the order learned (= rank order), as (left, right) byte strings. */
  merges: [Uint8Array, Uint8Array][];
  /** The special tokens; special token i has id i. */
  specialTokens: string[];
}

/** Unique pre-tokens and how often each occurs. */
export type PretokenCounts = Map<string, number>;

/**
 * Trains a byte-level BPE vocabulary. `text` is one string, or an iterable of strings that are
 * independent pieces (documents, or chunks cut at document boundaries): no pre-token spans two pieces.
 */
export function trainBpe(text: string | Iterable<string>, opts: BpeTrainOptions): BpeResult {
  const specials = checkedSpecialTokens(opts);
  return trainBpeFromCounts(countPretokens(text, specials), opts);
}

/**
 * The first phase of `trainBpe`: splits the text on the special tokens, pre-tokenizes each segment with
 * GPT-2's regex and counts the pre-tokens. Counts of several texts can be added together before
 * `trainBpeFromCounts` (e.g. counted in parallel).
 */
export function countPretokens(text: string | Iterable<string>, specialTokens: string[] = []): PretokenCounts {
  const counts: PretokenCounts = new Map();
  const splitter = specialTokenSplitter(specialTokens);
  // A string is itself iterable (by character), so it must be recognised before the iterable case.
  const pieces = typeof text === 'string' ? [text] : text;
  for (const piece of pieces) {
    for (const segment of splitter ? piece.split(splitter) : [piece]) {
      for (const pretoken of pretokenizeGpt2(segment)) counts.set(pretoken, (counts.get(pretoken) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * The second phase of `trainBpe`: learns the merges from pre-token counts. `opts.specialTokens` only
 * reserves ids here: they must already have been cut out of the counted text (`countPretokens` does).
 */
export function trainBpeFromCounts(counts: PretokenCounts, opts: BpeTrainOptions): BpeResult {
  const specials = checkedSpecialTokens(opts);
  const wanted = opts.vocabSize - specials.length - 256;
  const state = new MergeState(counts, opts.vocabSize);
  const merges: [Uint8Array, Uint8Array][] = [];
  let learned = 0;
  while (learned < wanted) {
    const best = state.popBestPair();
    if (!best) break; // no pre-token has two symbols left
    const [left, right] = best;
    merges.push([state.symbolBytes[left], state.symbolBytes[right]]);
    if (state.merge(left, right)) learned++;
    opts.onProgress?.(learned, wanted);
  }
  return { vocab: assembleVocab(specials, state.symbolBytes), merges, specialTokens: specials };
}

function checkedSpecialTokens(opts: BpeTrainOptions): string[] {
  const specials = opts.specialTokens ?? [];
  const seen = new Set<string>();
  for (const s of specials) {
    if (s === '') throw new Error('trainBpe: a special token is the empty string');
    if (seen.has(s)) throw new Error(`trainBpe: special token ${JSON.stringify(s)} is listed twice`);
    seen.add(s);
  }
  const { vocabSize } = opts;
  const minimum = 256 + specials.length;
  if (!Number.isInteger(vocabSize) || vocabSize < minimum) {
    throw new Error(
      `trainBpe: vocabSize ${vocabSize} is too small: the vocabulary holds the 256 bytes and ` +
        `${specials.length} special token(s), so it needs at least ${minimum}`,
    );
  }
  // Pair keys are left * vocabSize + right and must stay exact doubles.
  if (vocabSize > 2 ** 26) throw new Error(`trainBpe: vocabSize ${vocabSize} is larger than 2^26`);
  return [...specials];
}

/** A regex matching any special token, longest first (so one that contains another wins), or null. */
function specialTokenSplitter(specials: string[]): RegExp | null {
  if (specials.length === 0) return null;
  const alternatives = [...specials]
    .sort((x, y) => y.length - x.length)
    .map((s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')); // the characters that u-mode lets (and needs) us escape
  return new RegExp(alternatives.join('|'), 'u');
}

/** Specials, then the bytes in GPT-2's bytes-to-unicode order, then the learned tokens. */
function assembleVocab(specials: string[], symbolBytes: Uint8Array[]): Uint8Array[] {
  const encoder = new TextEncoder();
  const vocab: Uint8Array[] = specials.map((s) => encoder.encode(s));
  for (const byte of bytesInGpt2Order()) vocab.push(symbolBytes[byte]);
  for (let s = 256; s < symbolBytes.length; s++) vocab.push(symbolBytes[s]);
  return vocab;
}

/** The 256 byte values sorted by the character bytes-to-unicode maps them to. */
function bytesInGpt2Order(): number[] {
  const chars = byteToUnicode();
  const code = (b: number) => chars[b].codePointAt(0)!;
  return Array.from({ length: 256 }, (_, b) => b).sort((x, y) => code(x) - code(y));
}

// ------------------------------------------------------------------------------------------------
// The merge loop's state

/**
 * Words (unique pre-tokens as symbol-id arrays), pair counts, the pair → words index and the heap.
 * Symbol ids: 0..255 are the bytes, 256… learned tokens in order; a symbol is unique per byte string.
 */
class MergeState {
  readonly symbolBytes: Uint8Array[] = [];
  /** Byte string (as a binary string) → symbol id, to find a merge that rebuilds an existing token. */
  private readonly symbolByBytes = new Map<string, number>();
  private readonly words: Int32Array[] = [];
  /** A word's live length: merges shrink words in place. */
  private readonly wordLength: Int32Array;
  private readonly wordFreq: Float64Array;
  private readonly pairCount = new Map<number, number>();
  /** Pair → words that contained it when it appeared there; a word may have lost it since (checked on use). */
  private readonly pairWords = new Map<number, Set<number>>();
  /** Pairs whose count grew during the current merge: each gets one fresh heap entry afterwards. */
  private readonly grown = new Set<number>();
  private readonly heap: PairHeap;
  /**
   * Multiplier of the left symbol in a pair key. Symbols number at most vocabSize, so keys stay below
   * vocabSize²: small integers (fast Map keys in V8) for vocabularies up to 32768.
   */
  private readonly keyBase: number;

  constructor(counts: PretokenCounts, vocabSize: number) {
    this.keyBase = vocabSize;
    for (let b = 0; b < 256; b++) this.addSymbol(Uint8Array.of(b));
    this.heap = new PairHeap(this.symbolBytes);
    this.wordLength = new Int32Array(counts.size);
    this.wordFreq = new Float64Array(counts.size);
    const encoder = new TextEncoder();
    for (const [pretoken, freq] of counts) {
      const w = this.words.length;
      const bytes = encoder.encode(pretoken);
      this.words.push(Int32Array.from(bytes));
      this.wordLength[w] = bytes.length;
      this.wordFreq[w] = freq;
      for (let i = 0; i + 1 < bytes.length; i++) this.addToPair(bytes[i], bytes[i + 1], freq, w);
    }
    this.pushGrownPairs();
  }

  /** The pair to merge next (left, right), or null when no pair is left. */
  popBestPair(): [number, number] | null {
    for (;;) {
      const top = this.heap.pop();
      if (!top) return null;
      const [count, left, right] = top;
      const current = this.pairCount.get(left * this.keyBase + right) ?? 0;
      if (current === count) return [left, right];
      // A stale entry: the count dropped since it was pushed (a rise always pushes a new entry).
      if (current > 0) this.heap.push(current, left, right);
    }
  }

  /**
   * Replaces every occurrence of (left, right) by their concatenation. Returns whether that is a new
   * token (false when the bytes were already a symbol).
   */
  merge(left: number, right: number): boolean {
    const bytes = concatBytes(this.symbolBytes[left], this.symbolBytes[right]);
    const existing = this.symbolByBytes.get(binaryString(bytes));
    const merged = existing ?? this.addSymbol(bytes);
    const key = left * this.keyBase + right;
    const words = this.pairWords.get(key);
    if (words) for (const w of words) this.mergeInWord(w, left, right, merged);
    this.pairWords.delete(key);
    this.pushGrownPairs();
    return existing === undefined;
  }

  /**
   * Rewrites one word in place, merging left to right without overlap (as the reference does), and
   * adjusts only the pair counts around each merged position: for an occurrence at r, the old pairs
   * (prev, left), (left, right), (right, next) go and (prev', merged), (merged, next') come, where a
   * neighbour that is itself merged is counted once, by the occurrence on its right.
   */
  private mergeInWord(w: number, left: number, right: number, merged: number): void {
    const s = this.words[w];
    const n = this.wordLength[w];
    const freq = this.wordFreq[w];
    let read = 0;
    let write = 0;
    let previousMerged = false;
    while (read < n) {
      if (read + 1 < n && s[read] === left && s[read + 1] === right) {
        const nextMerges = read + 3 < n && s[read + 2] === left && s[read + 3] === right;
        if (read > 0 && !previousMerged) this.addToPair(s[read - 1], left, -freq, w);
        this.addToPair(left, right, -freq, w);
        if (read + 2 < n) this.addToPair(right, s[read + 2], -freq, w);
        if (write > 0) this.addToPair(s[write - 1], merged, freq, w);
        if (read + 2 < n && !nextMerges) this.addToPair(merged, s[read + 2], freq, w);
        s[write++] = merged;
        read += 2;
        previousMerged = true;
      } else {
        s[write++] = s[read++];
        previousMerged = false;
      }
    }
    this.wordLength[w] = write;
  }

  private addToPair(left: number, right: number, delta: number, word: number): void {
    const key = left * this.keyBase + right;
    const count = (this.pairCount.get(key) ?? 0) + delta;
    if (delta > 0) {
      this.pairCount.set(key, count);
      let words = this.pairWords.get(key);
      if (!words) this.pairWords.set(key, (words = new Set()));
      words.add(word);
      this.grown.add(key);
    } else if (count > 0) {
      this.pairCount.set(key, count);
    } else {
      this.pairCount.delete(key);
      this.pairWords.delete(key);
    }
  }

  private pushGrownPairs(): void {
    for (const key of this.grown) {
      const count = this.pairCount.get(key);
      if (count) this.heap.push(count, Math.floor(key / this.keyBase), key % this.keyBase);
    }
    this.grown.clear();
  }

  private addSymbol(bytes: Uint8Array): number {
    const id = this.symbolBytes.length;
    this.symbolBytes.push(bytes);
    this.symbolByBytes.set(binaryString(bytes), id);
    return id;
  }
}

/**
 * Max-heap of (count, left, right) in parallel typed arrays. Order: higher count first; equal counts,
 * the lexicographically greater pair of byte strings first. Entries can be stale; the caller checks.
 */
class PairHeap {
  private counts = new Float64Array(1024);
  private lefts = new Int32Array(1024);
  private rights = new Int32Array(1024);
  private size = 0;

  constructor(private readonly symbolBytes: Uint8Array[]) {}

  push(count: number, left: number, right: number): void {
    if (this.size === this.counts.length) this.grow();
    let i = this.size++;
    // Sift up, moving parents down into the hole instead of swapping.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(count, left, right, this.counts[parent], this.lefts[parent], this.rights[parent])) break;
      this.moveEntry(parent, i);
      i = parent;
    }
    this.setEntry(i, count, left, right);
  }

  pop(): [number, number, number] | null {
    if (this.size === 0) return null;
    const top: [number, number, number] = [this.counts[0], this.lefts[0], this.rights[0]];
    const last = --this.size;
    if (last > 0) this.siftDown(this.counts[last], this.lefts[last], this.rights[last], last);
    return top;
  }

  /** Places (count, left, right) from the root down, among the first `size` slots. */
  private siftDown(count: number, left: number, right: number, size: number): void {
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      const sibling = child + 1;
      if (sibling < size && this.before(this.counts[sibling], this.lefts[sibling], this.rights[sibling], this.counts[child], this.lefts[child], this.rights[child])) {
        child = sibling;
      }
      if (!this.before(this.counts[child], this.lefts[child], this.rights[child], count, left, right)) break;
      this.moveEntry(child, i);
      i = child;
    }
    this.setEntry(i, count, left, right);
  }

  /** Whether entry (count, left, right) goes before entry (count2, left2, right2). */
  private before(count: number, left: number, right: number, count2: number, left2: number, right2: number): boolean {
    if (count !== count2) return count > count2;
    const bytes = this.symbolBytes;
    const byLeft = left === left2 ? 0 : compareBytes(bytes[left], bytes[left2]);
    if (byLeft !== 0) return byLeft > 0;
    return compareBytes(bytes[right], bytes[right2]) > 0;
  }

  private moveEntry(from: number, to: number): void {
    this.setEntry(to, this.counts[from], this.lefts[from], this.rights[from]);
  }

  private setEntry(i: number, count: number, left: number, right: number): void {
    this.counts[i] = count;
    this.lefts[i] = left;
    this.rights[i] = right;
  }

  private grow(): void {
    const capacity = this.counts.length * 2;
    const counts = new Float64Array(capacity);
    const lefts = new Int32Array(capacity);
    const rights = new Int32Array(capacity);
    counts.set(this.counts);
    lefts.set(this.lefts);
    rights.set(this.rights);
    this.counts = counts;
    this.lefts = lefts;
    this.rights = rights;
  }
}

/** Unsigned byte-string order (a proper prefix is smaller), like Python's bytes comparison. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** One char per byte: a Map key that identifies a byte string (no Buffer, so this runs in browsers). */
function binaryString(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return s;
}

// ------------------------------------------------------------------------------------------------
// Conversion to a VocabSpec

export interface BpeToVocabOptions {
  /**
   * The special token used as BOS and as EOS. Default: '<|endoftext|>' when it is among the special
   * tokens (GPT-2 uses it for both), else none. null: none.
   */
  bosEos?: string | null;
}

/**
 * The trained vocabulary as a 'gpt2' VocabSpec: learned and byte tokens in bytes-to-unicode form (type
 * NORMAL), special tokens as their own text (type CONTROL: the encoder matches them before
 * pre-tokenizing, as GPT-2's does), merges as "left right" in bytes-to-unicode form, pre-tokenizer
 * 'gpt-2' (llama.cpp's name for GPT-2's regex, as in its ggml-vocab-gpt-2.gguf).
 */
export function bpeToVocab(result: BpeResult, opts: BpeToVocabOptions = {}): VocabSpec {
  const chars = byteToUnicode();
  const toUnicode = (bytes: Uint8Array) => Array.from(bytes, (b) => chars[b]).join('');
  const nSpecial = result.specialTokens.length;
  const tokens = result.vocab.map((bytes, id) => (id < nSpecial ? result.specialTokens[id] : toUnicode(bytes)));
  const types = Int32Array.from(tokens, (_, id) => (id < nSpecial ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.NORMAL));
  const merges = result.merges.map(([left, right]) => `${toUnicode(left)} ${toUnicode(right)}`);
  const spec: VocabSpec = { model: 'gpt2', tokens, types, merges, pre: 'gpt-2' };
  const bosEos = opts.bosEos === undefined ? defaultBosEos(result.specialTokens) : opts.bosEos;
  if (bosEos !== null) {
    const id = result.specialTokens.indexOf(bosEos);
    if (id < 0) throw new Error(`bpeToVocab: BOS/EOS ${JSON.stringify(bosEos)} is not one of the special tokens`);
    spec.bos = id;
    spec.eos = id;
  }
  return spec;
}

function defaultBosEos(specials: string[]): string | null {
  return specials.includes('<|endoftext|>') ? '<|endoftext|>' : null;
}
