/**
 * The pipeline parts of a Hugging Face tokenizer.json, read from their JSON and run as the Rust
 * `tokenizers` crate runs them: normalizers (text -> text), pre-tokenizers (pieces -> smaller pieces,
 * with NormalizedString::split's five delimiter behaviours), decoders (token strings -> text) and
 * post-processors (the ids added around a sequence). Every reader throws a VocabError naming the file,
 * the JSON path and, for an unknown `type`, the supported ones.
 */
import { byteToUnicode } from './gpt2.js';
import { RegexTranslateError, literalRegExp, onigRegExp } from './hf-regex.js';
import { VocabError } from './vocab.js';

// ---------------------------------------------------------------------------------------------------
// Reading JSON with paths in the errors

/** Reads values out of parsed JSON, failing with `${source}: ${path} ${problem}`. */
export class JsonReader {
  constructor(readonly source: string) {}

  fail(path: string, msg: string): never {
    throw new VocabError(`${this.source}: ${path} ${msg}`);
  }

  obj(v: unknown, path: string): Record<string, unknown> {
    if (v === undefined) this.fail(path, 'is missing');
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `should be an object, found ${describe(v)}`);
    return v as Record<string, unknown>;
  }

  arr(v: unknown, path: string): unknown[] {
    if (v === undefined) this.fail(path, 'is missing');
    if (!Array.isArray(v)) this.fail(path, `should be an array, found ${describe(v)}`);
    return v;
  }

  str(v: unknown, path: string): string {
    if (v === undefined) this.fail(path, 'is missing');
    if (typeof v !== 'string') this.fail(path, `should be a string, found ${describe(v)}`);
    return v;
  }

  bool(v: unknown, path: string, dflt?: boolean): boolean {
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(path, 'is missing');
    if (typeof v !== 'boolean') this.fail(path, `should be true or false, found ${describe(v)}`);
    return v;
  }

  int(v: unknown, path: string, dflt?: number): number {
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(path, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(path, `should be a non-negative integer, found ${describe(v)}`);
    return v;
  }

  /** A string or null / absent (null then). */
  optStr(v: unknown, path: string): string | null {
    return v === undefined || v === null ? null : this.str(v, path);
  }

  /** A component's `type`, checked against the supported ones. */
  type(o: Record<string, unknown>, path: string, what: string, supported: readonly string[]): string {
    const t = o.type;
    if (t === undefined) this.fail(path, `has no 'type' (supported ${what} types: ${supported.join(', ')})`);
    if (typeof t !== 'string') this.fail(`${path}.type`, `should be a string, found ${describe(t)}`);
    if (!supported.includes(t)) this.fail(path, `type '${t}' is not supported (supported: ${supported.join(', ')})`);
    return t;
  }

  /** A {String: s} or {Regex: r} pattern as a global RegExp. */
  pattern(v: unknown, path: string): RegExp {
    const p = this.obj(v, path);
    if (typeof p.String === 'string') return literalRegExp(p.String);
    if (typeof p.Regex === 'string') {
      try {
        return onigRegExp(p.Regex);
      } catch (e) {
        if (e instanceof RegexTranslateError) this.fail(`${path}.Regex`, `cannot be used: ${e.message} (pattern ${JSON.stringify(p.Regex)})`);
        throw e;
      }
    }
    return this.fail(path, 'should be {"String": ...} or {"Regex": ...}');
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

// ---------------------------------------------------------------------------------------------------
// Matching, as the Rust Pattern implementations and NormalizedString::split do it

/** [start, end, isMatch] over a string; together they cover it. */
type Span = [number, number, boolean];

/**
 * The spans of `re` (global) over `s`, as the onig crate's find_iter gives them: an empty match right
 * after the previous match is skipped (JavaScript would report it).
 */
export function findMatches(re: RegExp, s: string): Span[] {
  if (s.length === 0) return [[0, 0, false]];
  const out: Span[] = [];
  let prev = 0;
  let lastMatchEnd = -1;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      // JavaScript does not move past an empty match by itself.
      re.lastIndex = end + (s.codePointAt(end)! > 0xffff ? 2 : 1);
      if (end === lastMatchEnd) continue;
    }
    lastMatchEnd = end;
    if (prev !== start) out.push([prev, start, false]);
    out.push([start, end, true]);
    prev = end;
  }
  if (prev !== s.length) out.push([prev, s.length, false]);
  return out;
}

export const BEHAVIORS = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'] as const;
export type Behavior = (typeof BEHAVIORS)[number];

/** NormalizedString::split: which [start, end) pieces a split keeps. */
export function splitSpans(spans: Span[], behavior: Behavior): [number, number][] {
  switch (behavior) {
    case 'Isolated': return spans.map(([s, e]) => [s, e]);
    case 'Removed': return spans.filter(([, , m]) => !m).map(([s, e]) => [s, e]);
    case 'Contiguous': {
      const out: [number, number][] = [];
      let previous = false;
      for (const [s, e, m] of spans) {
        if (m === previous && out.length > 0) out[out.length - 1][1] = e;
        else out.push([s, e]);
        previous = m;
      }
      return out;
    }
    case 'MergedWithPrevious': {
      const out: [number, number][] = [];
      let previous = false;
      for (const [s, e, m] of spans) {
        if (m && !previous && out.length > 0) out[out.length - 1][1] = e;
        else out.push([s, e]);
        previous = m;
      }
      return out;
    }
    case 'MergedWithNext': {
      const out: [number, number][] = [];
      let previous = false;
      for (let i = spans.length - 1; i >= 0; i--) {
        const [s, e, m] = spans[i];
        if (m && !previous && out.length > 0) out[out.length - 1][0] = s;
        else out.push([s, e]);
        previous = m;
      }
      return out.reverse();
    }
  }
}

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

const BYTE_CHARS = byteToUnicode();
const utf8 = new TextEncoder();

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
function readMetaspace(r: JsonReader, o: Record<string, unknown>, path: string): { replacement: string; scheme: 'first' | 'always' | 'never'; split: boolean } {
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

// ---------------------------------------------------------------------------------------------------
// Decoders

/** A token on its way through the decoders: text, or raw bytes (streaming mode only). */
export type DecodeItem = string | Uint8Array;

/**
 * A decoder step over the token list. Mode 'text' is HF's decode_chain exactly; mode 'stream' is for one
 * token at a time (tokenBytes): byte tokens stay raw bytes instead of becoming U+FFFD, and the steps
 * that only affect the start of a text (Strip, Metaspace's first token) do nothing.
 */
export type Decoder = (tokens: DecodeItem[], mode: 'text' | 'stream') => DecodeItem[];

export const DECODERS = ['Sequence', 'ByteLevel', 'Metaspace', 'ByteFallback', 'Fuse', 'Strip', 'Replace'] as const;

export interface DecoderInfo {
  run: Decoder;
  /** Whether decoding drops a leading space of the text (Strip of ' ' at the start, or Metaspace prepending). */
  stripsLeadingSpace: boolean;
}

const CHAR_BYTE = new Map<string, number>(BYTE_CHARS.map((c, b) => [c, b]));
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const lossyUtf8 = new TextDecoder();

/** HF's ByteLevel decoding of one token: each character's byte, or (any character without one) the token's own UTF-8. */
export function byteLevelBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  let n = 0;
  for (const ch of token) {
    const b = CHAR_BYTE.get(ch);
    if (b === undefined) return utf8.encode(token);
    out[n++] = b;
  }
  return out.subarray(0, n);
}

function byteOf(token: string): number | undefined {
  if (token.length !== 6 || !token.startsWith('<0x') || !token.endsWith('>')) return undefined;
  const hex = token.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? Number.parseInt(hex, 16) : undefined;
}

const textOf = (t: DecodeItem): string => (typeof t === 'string' ? t : lossyUtf8.decode(t));

export function readDecoder(r: JsonReader, v: unknown, path: string): DecoderInfo | null {
  if (v === null || v === undefined) return null;
  const o = r.obj(v, path);
  switch (r.type(o, path, 'decoder', DECODERS)) {
    case 'Sequence': {
      const parts = r.arr(o.decoders, `${path}.decoders`).map((d, i) => readDecoder(r, d, `${path}.decoders[${i}]`));
      return {
        run: (tokens, mode) => parts.reduce((acc, d) => (d ? d.run(acc, mode) : acc), tokens),
        stripsLeadingSpace: parts.some((d) => d?.stripsLeadingSpace),
      };
    }
    case 'ByteLevel':
      return {
        run: (tokens, mode) => {
          const parts = tokens.map((t) => (typeof t === 'string' ? byteLevelBytes(t) : t));
          const bytes = concatBytes(parts);
          return mode === 'stream' ? [bytes] : [lossyUtf8.decode(bytes)];
        },
        stripsLeadingSpace: false,
      };
    case 'Metaspace': {
      const { replacement, scheme } = readMetaspace(r, o, path);
      return {
        run: (tokens, mode) => tokens.map((t, i) => {
          if (typeof t !== 'string') return t;
          // HF drops every replacement character of the first token, not only a leading one.
          return t.replaceAll(replacement, mode === 'text' && i === 0 && scheme !== 'never' ? '' : ' ');
        }),
        stripsLeadingSpace: scheme !== 'never',
      };
    }
    case 'ByteFallback':
      return {
        run: (tokens, mode) => {
          const out: DecodeItem[] = [];
          let pending: number[] = [];
          const flush = () => {
            if (pending.length === 0) return;
            try {
              out.push(strictUtf8.decode(Uint8Array.from(pending)));
            } catch {
              for (let i = 0; i < pending.length; i++) out.push('\uFFFD');
            }
            pending = [];
          };
          for (const t of tokens) {
            const b = typeof t === 'string' ? byteOf(t) : undefined;
            if (b === undefined) {
              flush();
              out.push(t);
            } else if (mode === 'stream') out.push(Uint8Array.of(b));
            else pending.push(b);
          }
          flush();
          return out;
        },
        stripsLeadingSpace: false,
      };
    case 'Fuse':
      return {
        run: (tokens, mode) => {
          if (tokens.length <= 1) return tokens;
          return mode === 'text' ? [tokens.map(textOf).join('')] : [concatBytes(tokens.map((t) => (typeof t === 'string' ? utf8.encode(t) : t)))];
        },
        stripsLeadingSpace: false,
      };
    case 'Strip': {
      const content = r.str(o.content, `${path}.content`);
      if ([...content].length !== 1) r.fail(`${path}.content`, `should be one character, found ${JSON.stringify(content)}`);
      const start = r.int(o.start, `${path}.start`);
      const stop = r.int(o.stop, `${path}.stop`);
      return {
        run: (tokens, mode) => (mode === 'stream' ? tokens : tokens.map((t) => {
          const chars = [...textOf(t)];
          let a = 0;
          while (a < start && a < chars.length && chars[a] === content) a++;
          let b = chars.length;
          for (let i = 0; i < stop && b > a && chars[b - 1] === content; i++) b--;
          return chars.slice(a, b).join('');
        })),
        stripsLeadingSpace: content === ' ' && start > 0,
      };
    }
    case 'Replace': {
      const re = r.pattern(o.pattern, `${path}.pattern`);
      const content = r.str(o.content, `${path}.content`);
      return {
        run: (tokens) => tokens.map((t) => (typeof t === 'string' ? findMatches(re, t).map(([a, b, m]) => (m ? content : t.slice(a, b))).join('') : t)),
        stripsLeadingSpace: false,
      };
    }
  }
  throw new Error('unreachable');
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Post-processors

/** What a post-processor puts around one sequence when special tokens are added: ids before and after. */
export interface Template {
  before: number[];
  after: number[];
}

export const POST_PROCESSORS = ['TemplateProcessing', 'ByteLevel', 'RobertaProcessing', 'BertProcessing', 'Sequence'] as const;

export function readPostProcessor(r: JsonReader, v: unknown, path: string): Template {
  const none: Template = { before: [], after: [] };
  if (v === null || v === undefined) return none;
  const o = r.obj(v, path);
  switch (r.type(o, path, 'post_processor', POST_PROCESSORS)) {
    case 'ByteLevel': return none;
    case 'Sequence': {
      const parts = r.arr(o.processors, `${path}.processors`).map((p, i) => readPostProcessor(r, p, `${path}.processors[${i}]`));
      // Each processor wraps what the previous ones produced.
      return parts.reduce((acc, t) => ({ before: [...t.before, ...acc.before], after: [...acc.after, ...t.after] }), none);
    }
    case 'RobertaProcessing':
    case 'BertProcessing': {
      const idOf = (key: string): number => {
        const pair = r.arr(o[key], `${path}.${key}`);
        r.str(pair[0], `${path}.${key}[0]`);
        return r.int(pair[1], `${path}.${key}[1]`);
      };
      return { before: [idOf('cls')], after: [idOf('sep')] };
    }
    case 'TemplateProcessing': {
      const specials = r.obj(o.special_tokens ?? {}, `${path}.special_tokens`);
      const single = r.arr(o.single, `${path}.single`);
      const out: Template = { before: [], after: [] };
      let seenA = false;
      single.forEach((item, i) => {
        const p = `${path}.single[${i}]`;
        const it = r.obj(item, p);
        if (it.Sequence !== undefined) {
          const seq = r.obj(it.Sequence, `${p}.Sequence`);
          if (r.str(seq.id, `${p}.Sequence.id`) !== 'A') r.fail(`${p}.Sequence.id`, "should be 'A' in the single template");
          if (seenA) r.fail(p, "repeats sequence 'A'");
          seenA = true;
        } else if (it.SpecialToken !== undefined) {
          const name = r.str(r.obj(it.SpecialToken, `${p}.SpecialToken`).id, `${p}.SpecialToken.id`);
          const entry = r.obj(specials[name], `${path}.special_tokens[${JSON.stringify(name)}]`);
          const ids = r.arr(entry.ids, `${path}.special_tokens[${JSON.stringify(name)}].ids`)
            .map((id, k) => r.int(id, `${path}.special_tokens[${JSON.stringify(name)}].ids[${k}]`));
          (seenA ? out.after : out.before).push(...ids);
        } else r.fail(p, 'should be {"Sequence": ...} or {"SpecialToken": ...}');
      });
      if (!seenA) r.fail(`${path}.single`, "has no sequence 'A'");
      return out;
    }
  }
  throw new Error('unreachable');
}
