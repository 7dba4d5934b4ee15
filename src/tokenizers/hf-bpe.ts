/**
 * The BPE model of Hugging Face `tokenizers` (models/bpe: merge_word and Word::merge_all), over ids:
 * a pre-token is cut into characters, each looked up in the vocabulary (else its UTF-8 bytes as
 * <0xXX> tokens when byte_fallback, else the unknown token, fused with unknown neighbours when
 * fuse_unk), then adjacent symbols are merged lowest merge rank first, leftmost first on equal ranks,
 * with the same staleness test as the Rust code (the pair must still map to the same new token).
 *
 * Speed: long pre-tokens (a whole SentencePiece-style text, which has no pre-tokenizer) are cut
 * between two characters that no merge joins (no merge's left part ends with the first while its
 * right part starts with the second). No merge can ever cross such a cut, so the pieces merge
 * independently, exactly as inside the whole, and repeated pieces come from a cache.
 */
import { IdCache } from './spm.js';
import { VocabError } from './vocab.js';

/** What a BPE model needs from tokenizer.json's "model" (already checked). */
export interface HfBpeConfig {
  vocab: Map<string, number>;
  /** Merge rules in rank order. */
  merges: [string, string][];
  unkToken: string | null;
  fuseUnk: boolean;
  byteFallback: boolean;
  ignoreMerges: boolean;
  continuingSubwordPrefix: string | null;
  endOfWordSuffix: string | null;
}

const utf8 = new TextEncoder();
const POS_BITS = 2 ** 26;
/** Pre-tokens at least this long (UTF-16 units) are cut at merge-free boundaries before merging. */
const CUT_MIN = 48;

export class HfBpe {
  readonly vocab: Map<string, number>;
  /** (left id, right id) -> rank; a pair listed twice keeps its last rank, as the Rust HashMap does. */
  private readonly pairRank: PairTable;
  /** rank -> id of the merged token. */
  private readonly mergedId: Int32Array;
  /** Scratch arrays for mergeAll, grown as needed. */
  private sym = new Int32Array(64);
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  private alive = new Uint8Array(64);
  private readonly heap = new MergeHeap();
  /** Per BMP code point: 0 not looked up yet, 1 a token of its own, 2 not. */
  private readonly charKnown = new Uint8Array(0x10000);
  private readonly byteIds: Int32Array;
  private readonly prefix: string;
  private readonly suffix: string;
  /** Code point pairs (first * 0x110000 + second) some merge joins; null when words are never cut. */
  private readonly junctions: Set<number> | null;
  /** Whether some merge involves a byte-fallback or unknown token (then unknown characters never cut). */
  private readonly fallbackMerges: boolean;
  /** Whether every character can fall back to byte tokens, so no unknown token (which may fuse) is ever made. */
  private readonly allBytes: boolean;
  private readonly cache = new IdCache((word) => this.mergeWord(word));
  private readonly unkId: number | undefined;

  /**
   * `fail` reports a merge (by index) whose parts or result are not in the vocabulary; `source` names the
   * file in errors thrown while encoding.
   */
  constructor(private readonly config: HfBpeConfig, fail: (path: string, msg: string) => never, private readonly source = 'tokenizer.json') {
    this.vocab = config.vocab;
    this.prefix = config.continuingSubwordPrefix ?? '';
    this.suffix = config.endOfWordSuffix ?? '';
    this.unkId = config.unkToken === null ? undefined : this.vocab.get(config.unkToken);
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      this.byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
    }
    this.allBytes = config.byteFallback && this.byteIds.every((id) => id >= 0);
    const special = new Set<number>(this.byteIds.filter((id) => id >= 0));
    if (this.unkId !== undefined) special.add(this.unkId);
    let fallbackMerges = false;
    const junctions = new Set<number>();
    this.mergedId = new Int32Array(config.merges.length);
    this.pairRank = new PairTable(config.merges.length);
    config.merges.forEach(([a, b], rank) => {
      const aId = this.vocab.get(a);
      const bId = this.vocab.get(b);
      if (aId === undefined) fail(`model.merges[${rank}]`, `uses '${a}', which is not in model.vocab`);
      if (bId === undefined) fail(`model.merges[${rank}]`, `uses '${b}', which is not in model.vocab`);
      const merged = a + (b.startsWith(this.prefix) ? b.slice(this.prefix.length) : b);
      const newId = this.vocab.get(merged);
      if (newId === undefined) fail(`model.merges[${rank}]`, `makes '${merged}', which is not in model.vocab`);
      this.pairRank.set(aId, bId, rank);
      this.mergedId[rank] = newId;
      if (special.has(aId) || special.has(bId)) fallbackMerges = true;
      if (a.length > 0 && b.length > 0) junctions.add(a.codePointAt(a.length - (isLowSurrogate(a, a.length - 1) ? 2 : 1))! * 0x110000 + b.codePointAt(0)!);
    });
    this.fallbackMerges = fallbackMerges;
    // Cutting needs symbols spelled as the text is: no subword prefix or suffix, and whole-word
    // lookups (ignore_merges) must see the whole word.
    this.junctions = this.prefix === '' && this.suffix === '' && !config.ignoreMerges ? junctions : null;
  }

  /** Appends the ids of one pre-token (a non-empty word) to `out`. */
  tokenize(word: string, out: number[]): void {
    if (word.length === 0) return;
    if (this.config.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    if (word.length < CUT_MIN || this.junctions === null) {
      this.cache.append(word, out);
      return;
    }
    let start = 0;
    let prev = word.codePointAt(0)!;
    let prevKnown = this.isToken(prev);
    for (let i = prev > 0xffff ? 2 : 1; i < word.length;) {
      const cp = word.codePointAt(i)!;
      const known = this.isToken(cp);
      let cut: boolean;
      if (prevKnown && known) cut = !this.junctions.has(prev * 0x110000 + cp);
      else if (prevKnown || known) cut = !this.fallbackMerges; // a byte-fallback/unknown symbol next to a known one
      else cut = this.allBytes && !this.fallbackMerges; // two unknown characters: unless both become bytes, their unknown tokens may fuse
      if (cut) {
        this.cache.append(word.slice(start, i), out);
        start = i;
      }
      prev = cp;
      prevKnown = known;
      i += cp > 0xffff ? 2 : 1;
    }
    this.cache.append(word.slice(start), out);
  }

  /** Whether the character `cp` alone is a token. */
  private isToken(cp: number): boolean {
    if (cp > 0xffff) return this.vocab.has(String.fromCodePoint(cp));
    let k = this.charKnown[cp];
    if (k === 0) this.charKnown[cp] = k = this.vocab.has(String.fromCharCode(cp)) ? 1 : 2;
    return k === 1;
  }

  /** merge_word + merge_all for one word: its ids. */
  private mergeWord(w: string): number[] {
    const ids: number[] = [];
    let unk: number | undefined; // id of a pending unknown token (fuse_unk grows it instead of adding another)
    const chars = Array.from(w);
    for (let k = 0; k < chars.length; k++) {
      let s = chars[k];
      if (k > 0) s = this.prefix + s;
      if (k === chars.length - 1) s += this.suffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (unk !== undefined) {
          ids.push(unk);
          unk = undefined;
        }
        ids.push(id);
        continue;
      }
      if (this.config.byteFallback) {
        const bytes = utf8.encode(s);
        let all = true;
        for (const b of bytes) if (this.byteIds[b] < 0) all = false;
        if (all) {
          // As in the Rust code, a pending unknown token is not flushed here: it lands after these bytes.
          for (const b of bytes) ids.push(this.byteIds[b]);
          continue;
        }
      }
      if (this.config.unkToken !== null) {
        if (this.unkId === undefined) {
          // The Rust code fails here too (UnkTokenOutOfVocabulary).
          throw new VocabError(`${this.source}: cannot encode ${JSON.stringify(s)}: model.unk_token ${JSON.stringify(this.config.unkToken)} is not in model.vocab`);
        }
        if (unk !== undefined && !this.config.fuseUnk) ids.push(unk);
        if (unk === undefined || !this.config.fuseUnk) unk = this.unkId;
      }
      // No unknown token: the character is dropped, as in the Rust code.
    }
    if (unk !== undefined) ids.push(unk);
    return this.mergeAll(ids);
  }

  /** Word::merge_all: merges lowest rank first, leftmost first; returns the ids left. */
  private mergeAll(c: number[]): number[] {
    const n = c.length;
    if (n < 2) return c;
    if (n >= POS_BITS) throw new VocabError(`${this.source}: a pre-token of ${n} symbols is too long to merge`);
    if (this.sym.length < n) {
      const size = Math.max(n, 2 * this.sym.length);
      this.sym = new Int32Array(size);
      this.prev = new Int32Array(size);
      this.next = new Int32Array(size);
      this.alive = new Uint8Array(size);
    }
    const { sym, prev, next, alive, heap, pairRank, mergedId } = this;
    for (let i = 0; i < n; i++) {
      sym[i] = c[i];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
      alive[i] = 1;
    }
    heap.clear();
    for (let i = 0; i + 1 < n; i++) {
      const rank = pairRank.get(sym[i], sym[i + 1]);
      if (rank >= 0) heap.push(rank * POS_BITS + i, mergedId[rank]);
    }
    while (heap.size > 0) {
      const key = heap.topKey();
      const newId = heap.topValue();
      heap.pop();
      const pos = key % POS_BITS;
      if (!alive[pos]) continue;
      const right = next[pos];
      if (right < 0) continue;
      const rank = pairRank.get(sym[pos], sym[right]);
      if (rank < 0 || mergedId[rank] !== newId) continue; // stale entry
      sym[pos] = newId;
      alive[right] = 0;
      next[pos] = next[right];
      if (next[right] >= 0) prev[next[right]] = pos;
      const p = prev[pos];
      if (p >= 0) {
        const r = pairRank.get(sym[p], newId);
        if (r >= 0) heap.push(r * POS_BITS + p, mergedId[r]);
      }
      const q = next[pos];
      if (q >= 0) {
        const r = pairRank.get(newId, sym[q]);
        if (r >= 0) heap.push(r * POS_BITS + pos, mergedId[r]);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

/** An open-addressing hash table from a pair of ids to a rank (-1 when absent). */
class PairTable {
  private readonly mask: number;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly value: Int32Array;

  constructor(entries: number) {
    let cap = 16;
    while (cap < entries * 2) cap *= 2;
    this.mask = cap - 1;
    this.left = new Int32Array(cap).fill(-1);
    this.right = new Int32Array(cap);
    this.value = new Int32Array(cap);
  }

  private slot(a: number, b: number): number {
    let i = (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) & this.mask;
    while (this.left[i] !== -1 && (this.left[i] !== a || this.right[i] !== b)) i = (i + 1) & this.mask;
    return i;
  }

  set(a: number, b: number, v: number): void {
    const i = this.slot(a, b);
    this.left[i] = a;
    this.right[i] = b;
    this.value[i] = v;
  }

  get(a: number, b: number): number {
    const i = this.slot(a, b);
    return this.left[i] === -1 ? -1 : this.value[i];
  }
}

function isLowSurrogate(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  return c >= 0xdc00 && c < 0xe000 && i > 0;
}

/** A binary min-heap of (key, value) pairs on plain arrays. */
class MergeHeap {
  private readonly keys: number[] = [];
  private readonly values: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  clear(): void {
    this.keys.length = 0;
    this.values.length = 0;
  }

  topKey(): number {
    return this.keys[0];
  }

  topValue(): number {
    return this.values[0];
  }

  push(key: number, value: number): void {
    const k = this.keys;
    const v = this.values;
    let i = k.length;
    k.push(key);
    v.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (k[parent] <= key) break;
      k[i] = k[parent];
      v[i] = v[parent];
      i = parent;
    }
    k[i] = key;
    v[i] = value;
  }

  pop(): void {
    const k = this.keys;
    const v = this.values;
    const lastKey = k.pop()!;
    const lastValue = v.pop()!;
    const n = k.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && k[r] < k[l] ? r : l;
      if (k[child] >= lastKey) break;
      k[i] = k[child];
      v[i] = v[child];
      i = child;
    }
    k[i] = lastKey;
    v[i] = lastValue;
  }
}
