/**
 * Added tokens of a tokenizer.json and how they are cut out of a text: AddedVocabulary::find_matches
 * (the leftmost, then longest, match; then single_word, lstrip and rstrip as the Rust code applies them).
 */
import type { JsonReader } from './hf-read.js';

/** One entry of tokenizer.json's added_tokens. */
export interface HfAddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/** Rust regex's \w, for single_word added tokens. */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const TRAILING_WS = /\p{White_Space}*$/u;
const LEADING_WS = /^\p{White_Space}*/u;

/** A segment of text: plain text (id null) or an added token's span. */
export interface Segment {
  start: number;
  end: number;
  id: number | null;
}

interface TrieNode {
  next: Map<number, TrieNode>;
  token: number; // index into the matcher's tokens, -1 if none ends here
}

/** AddedVocabulary::find_matches over one trie (leftmost-longest matches, then the strip rules). */
export class AddedMatcher {
  private readonly root: TrieNode = { next: new Map(), token: -1 };

  constructor(private readonly tokens: { pattern: string; tok: HfAddedToken }[]) {
    tokens.forEach(({ pattern }, k) => {
      let node = this.root;
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) {
          child = { next: new Map(), token: -1 };
          node.next.set(c, child);
        }
        node = child;
      }
      // Two tokens with the same pattern: the trie keeps one (the later).
      node.token = k;
    });
  }

  get empty(): boolean {
    return this.tokens.length === 0;
  }

  segments(s: string, skipSpecial: boolean): Segment[] {
    if (s.length === 0 || this.tokens.length === 0) return [{ start: 0, end: s.length, id: null }];
    const out: Segment[] = [];
    let startOffset = 0;
    for (let i = 0; i < s.length;) {
      // Longest token starting at i (leftmost-longest: the leftmost start wins, then the longest).
      let node: TrieNode | undefined = this.root;
      let best = -1;
      let bestEnd = -1;
      for (let j = i; j < s.length; j++) {
        node = node.next.get(s.charCodeAt(j));
        if (!node) break;
        if (node.token >= 0) {
          best = node.token;
          bestEnd = j + 1;
        }
      }
      if (best < 0) {
        i++;
        continue;
      }
      const tok = this.tokens[best].tok;
      let start = i;
      let stop = bestEnd;
      i = bestEnd;
      if (skipSpecial && tok.special) continue;
      if (tok.singleWord) {
        const startSpace = start === 0 || !WORD_CHAR.test(lastChar(s, start));
        const stopSpace = stop === s.length || !WORD_CHAR.test(String.fromCodePoint(s.codePointAt(stop)!));
        if (!startSpace || !stopSpace) continue;
      }
      if (tok.lstrip) start = Math.max(s.slice(0, start).search(TRAILING_WS), startOffset);
      if (tok.rstrip) stop += LEADING_WS.exec(s.slice(stop))![0].length;
      if (startOffset < start) out.push({ start: startOffset, end: start, id: null });
      out.push({ start, end: stop, id: tok.id });
      startOffset = stop;
    }
    if (startOffset !== s.length) out.push({ start: startOffset, end: s.length, id: null });
    return out;
  }
}

function lastChar(s: string, end: number): string {
  const c = s.charCodeAt(end - 1);
  return c >= 0xdc00 && c < 0xe000 && end >= 2 ? s.slice(end - 2, end) : s.slice(end - 1, end);
}

export function readAddedToken(r: JsonReader, v: unknown, path: string, id: number): HfAddedToken {
  const o = r.obj(v, path);
  const special = r.bool(o.special, `${path}.special`, false);
  return {
    id,
    content: r.str(o.content, `${path}.content`),
    special,
    lstrip: r.bool(o.lstrip, `${path}.lstrip`, false),
    rstrip: r.bool(o.rstrip, `${path}.rstrip`, false),
    singleWord: r.bool(o.single_word, `${path}.single_word`, false),
    normalized: r.bool(o.normalized, `${path}.normalized`, !special),
  };
}
