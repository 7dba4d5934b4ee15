/**
 * Reading tokenizer.json with the JSON path in every error, and the text matching shared by the
 * pipeline parts (as the Rust Pattern implementations and NormalizedString::split do it).
 */
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
export type Span = [number, number, boolean];

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

/** Parses a JSON file given as text (a leading BOM is allowed), or checks an already parsed object. */
export function parseJson(r: JsonReader, input: string | object): Record<string, unknown> {
  if (typeof input !== 'string') return r.obj(input, '(top level)');
  let v: unknown;
  try {
    v = JSON.parse(input.charCodeAt(0) === 0xfeff ? input.slice(1) : input);
  } catch (e) {
    throw new VocabError(`${r.source}: not valid JSON (${(e as Error).message})`);
  }
  return r.obj(v, '(top level)');
}
