/**
 * Normalizers (text -> text) and pre-tokenizers (pieces -> smaller pieces) of a Hugging Face
 * tokenizer.json, read from their JSON and run as the Rust `tokenizers` crate runs them.
 */
import { byteToUnicode } from './gpt2.js';
import { literalRegExp, onigRegExp } from './hf-regex.js';
import { type Behavior, BEHAVIORS, type JsonReader, findMatches, splitSpans } from './hf-read.js';

// ---------------------------------------------------------------------------------------------------
// Normalizers

/** Text being normalized; `droppedLead` records that characters were removed from its start. */
export interface NormState {
  text: string;
  droppedLead: boolean;
}
export type Normalizer = (s: NormState) => void;

export const NORMALIZERS = ['Sequence', 'Prepend', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase', 'Strip'] as const;

const LEADING_SPACE = /^\p{White_Space}+/u;
const TRAILING_SPACE = /\p{White_Space}+$/u;

export function readNormalizer(r: JsonReader, v: unknown, path: string): Normalizer | null {
  if (v === null || v === undefined) return null;
  const o = r.obj(v, path);
  switch (r.type(o, path, 'normalizer', NORMALIZERS)) {
    case 'Sequence': {
      const parts = r.arr(o.normalizers, `${path}.normalizers`).map((n, i) => readNormalizer(r, n, `${path}.normalizers[${i}]`));
      return (s) => { for (const n of parts) n?.(s); };
    }
    case 'Prepend': {
      const prepend = r.str(o.prepend, `${path}.prepend`);
      return (s) => { if (s.text.length > 0) s.text = prepend + s.text; };
    }
    case 'Replace': {
      const re = r.pattern(o.pattern, `${path}.pattern`);
      const content = r.str(o.content, `${path}.content`);
      return (s) => {
        const spans = findMatches(re, s.text);
        if (content === '' && spans[0][2] && spans[0][1] > 0) s.droppedLead = true;
        s.text = spans.map(([a, b, m]) => (m ? content : s.text.slice(a, b))).join('');
      };
    }
    case 'NFC': return (s) => { s.text = s.text.normalize('NFC'); };
    case 'NFD': return (s) => { s.text = s.text.normalize('NFD'); };
    case 'NFKC': return (s) => { s.text = s.text.normalize('NFKC'); };
    case 'NFKD': return (s) => { s.text = s.text.normalize('NFKD'); };
    case 'Lowercase':
      // Per character (Rust's char::to_lowercase): no final-sigma rule.
      return (s) => { s.text = s.text.replace(/\p{Changes_When_Lowercased}/gu, (c) => c.toLowerCase()); };
    case 'Strip': {
      const left = r.bool(o.strip_left, `${path}.strip_left`);
      const right = r.bool(o.strip_right, `${path}.strip_right`);
      return (s) => {
        if (left && LEADING_SPACE.test(s.text)) {
          s.text = s.text.replace(LEADING_SPACE, '');
          s.droppedLead = true;
        }
        if (right) s.text = s.text.replace(TRAILING_SPACE, '');
      };
    }
  }
  throw new Error('unreachable');
}

// ---------------------------------------------------------------------------------------------------
// Pre-tokenizers

/** A piece of normalized text; `atStart`: it begins where the original input begins (Metaspace 'first'). */
export interface Piece {
  text: string;
  atStart: boolean;
}
export type PreTokenizer = (pieces: Piece[]) => Piece[];

export const PRE_TOKENIZERS = ['Sequence', 'ByteLevel', 'Split', 'Metaspace', 'Whitespace', 'WhitespaceSplit', 'Digits', 'Punctuation'] as const;

/** GPT-2's pre-tokenizer regex, as the ByteLevel pre-tokenizer has it (Oniguruma syntax). */
export const BYTE_LEVEL_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

export const BYTE_CHARS = byteToUnicode();
export const utf8 = new TextEncoder();

/** A text's UTF-8 bytes spelled in GPT-2's byte stand-ins. */
export function byteLevelSpelling(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_CHARS[b];
  return out;
}

/** Applies `split` (text -> kept [start, end) ranges) to every piece; empty pieces are dropped, as PreTokenizedString does. */
function splitEach(pieces: Piece[], split: (text: string) => [number, number][]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    for (const [s, e] of split(p.text)) {
      if (e > s) out.push({ text: p.text.slice(s, e), atStart: p.atStart && s === 0 });
    }
  }
  return out;
}

/** Rust regex's \w (the Whitespace pre-tokenizer uses the regex crate, not Oniguruma). */
const RUST_WORD = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}';
const WHITESPACE_RE = new RegExp(`[${RUST_WORD}]+|[^${RUST_WORD}\\p{White_Space}]+`, 'gu');
const WHITE_SPACE_CHAR = /\p{White_Space}/gu;
const NUMERIC_CHAR = /\p{N}/gu;
/** Rust's is_ascii_punctuation or Unicode punctuation. */
const PUNCTUATION_CHAR = /[\p{P}!-/:-@[-`{-~]/gu;

function readBehavior(r: JsonReader, v: unknown, path: string, dflt?: Behavior): Behavior {
  if (v === undefined && dflt !== undefined) return dflt;
  const b = r.str(v, path);
  if (!(BEHAVIORS as readonly string[]).includes(b)) r.fail(path, `'${b}' is not a split behavior (supported: ${BEHAVIORS.join(', ')})`);
  return b as Behavior;
}

/** Metaspace's options, shared by the pre-tokenizer and the decoder. */
export function readMetaspace(r: JsonReader, o: Record<string, unknown>, path: string): { replacement: string; scheme: 'first' | 'always' | 'never'; split: boolean } {
  const replacement = r.str(o.replacement, `${path}.replacement`);
  if ([...replacement].length !== 1) r.fail(`${path}.replacement`, `should be one character, found ${JSON.stringify(replacement)}`);
  let scheme: 'first' | 'always' | 'never' = 'always';
  if (o.prepend_scheme !== undefined) {
    const s = r.str(o.prepend_scheme, `${path}.prepend_scheme`);
    if (s !== 'first' && s !== 'always' && s !== 'never') r.fail(`${path}.prepend_scheme`, `'${s}' is not one of first, always, never`);
    scheme = s;
  }
  if (o.add_prefix_space === false) {
    if (o.prepend_scheme !== undefined && scheme !== 'never') r.fail(`${path}.add_prefix_space`, 'is false but prepend_scheme is not never');
    scheme = 'never';
  }
  return { replacement, scheme, split: r.bool(o.split, `${path}.split`, true) };
}

export interface PreTokenizerInfo {
  run: PreTokenizer;
  /** Whether pieces come out in byte-level spelling (a ByteLevel pre-tokenizer ran). */
  byteLevel: boolean;
}

export function readPreTokenizer(r: JsonReader, v: unknown, path: string): PreTokenizerInfo | null {
  if (v === null || v === undefined) return null;
  const o = r.obj(v, path);
  switch (r.type(o, path, 'pre_tokenizer', PRE_TOKENIZERS)) {
    case 'Sequence': {
      const parts = r.arr(o.pretokenizers, `${path}.pretokenizers`).map((p, i) => readPreTokenizer(r, p, `${path}.pretokenizers[${i}]`));
      return {
        run: (pieces) => parts.reduce((acc, p) => (p ? p.run(acc) : acc), pieces),
        byteLevel: parts.some((p) => p?.byteLevel),
      };
    }
    case 'ByteLevel': {
      const addPrefixSpace = r.bool(o.add_prefix_space, `${path}.add_prefix_space`);
      const useRegex = r.bool(o.use_regex, `${path}.use_regex`, true);
      const re = onigRegExp(BYTE_LEVEL_REGEX);
      return {
        run: (pieces) => {
          const prefixed = addPrefixSpace ? pieces.map((p) => (p.text.startsWith(' ') ? p : { text: ` ${p.text}`, atStart: p.atStart })) : pieces;
          const split = useRegex ? splitEach(prefixed, (t) => splitSpans(findMatches(re, t), 'Isolated')) : prefixed;
          return split.map((p) => ({ text: byteLevelSpelling(p.text), atStart: p.atStart }));
        },
        byteLevel: true,
      };
    }
    case 'Split': {
      const re = r.pattern(o.pattern, `${path}.pattern`);
      const behavior = readBehavior(r, o.behavior, `${path}.behavior`);
      const invert = r.bool(o.invert, `${path}.invert`);
      return {
        run: (pieces) => splitEach(pieces, (t) => {
          const spans = findMatches(re, t);
          return splitSpans(invert ? spans.map(([a, b, m]) => [a, b, !m]) : spans, behavior);
        }),
        byteLevel: false,
      };
    }
    case 'Metaspace': {
      const { replacement, scheme, split } = readMetaspace(r, o, path);
      const rep = literalRegExp(replacement);
      return {
        run: (pieces) => {
          const out: Piece[] = [];
          for (const p of pieces) {
            let text = p.text.replaceAll(' ', replacement);
            if (!text.startsWith(replacement) && (scheme === 'always' || (scheme === 'first' && p.atStart))) text = replacement + text;
            if (!split) {
              out.push({ text, atStart: p.atStart });
              continue;
            }
            for (const [s, e] of splitSpans(findMatches(rep, text), 'MergedWithNext')) {
              if (e > s) out.push({ text: text.slice(s, e), atStart: p.atStart && s === 0 });
            }
          }
          return out;
        },
        byteLevel: false,
      };
    }
    case 'Whitespace':
      return { run: (pieces) => splitEach(pieces, (t) => splitSpans(findMatches(WHITESPACE_RE, t).map(([a, b, m]) => [a, b, !m]), 'Removed')), byteLevel: false };
    case 'WhitespaceSplit':
      return { run: (pieces) => splitEach(pieces, (t) => splitSpans(findMatches(WHITE_SPACE_CHAR, t), 'Removed')), byteLevel: false };
    case 'Digits': {
      const behavior: Behavior = r.bool(o.individual_digits, `${path}.individual_digits`, false) ? 'Isolated' : 'Contiguous';
      return { run: (pieces) => splitEach(pieces, (t) => splitSpans(findMatches(NUMERIC_CHAR, t), behavior)), byteLevel: false };
    }
    case 'Punctuation': {
      const behavior = readBehavior(r, o.behavior, `${path}.behavior`, 'Isolated');
      return { run: (pieces) => splitEach(pieces, (t) => splitSpans(findMatches(PUNCTUATION_CHAR, t), behavior)), byteLevel: false };
    }
  }
  throw new Error('unreachable');
}
