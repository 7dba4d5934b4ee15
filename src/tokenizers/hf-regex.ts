/**
 * Hugging Face `tokenizers` compiles Split and Replace patterns with Oniguruma (Ruby syntax); this turns
 * such a pattern into an equivalent JavaScript RegExp (flags 'gu'), or throws naming what it cannot
 * translate. What changes:
 * - \s \S \d \D \w \W \h \H and \b \B get Oniguruma's Unicode meanings (\s is White_Space, which JS's \s
 *   is not: it adds U+FEFF and lacks U+0085; \d is Nd; \w is Alphabetic, marks, Nd and Pc, plus the
 *   Latin-1 digits and fractions Oniguruma's ctype table counts as word characters).
 * - `.` excludes only \n; `^` and `$` are line anchors (Ruby syntax); \A \z \Z; \x{HHHH}; \R.
 * - `(?i:...)` and `(?i)` (not in Node 20's RegExp) become explicit case alternatives: [sS] for s.
 *   Only simple one-to-one case pairs are produced, not full Unicode case folding.
 * - Possessive quantifiers (`X*+`, `X++`, `X?+`) and atomic groups `(?>X)` become the exact lookahead
 *   emulation `(?=(?<a>X))\k<a>`, so no backtracking into them (JS has neither construct).
 * - In Ruby syntax `X{n,m}+` is not possessive but a second quantifier: it becomes `(?:X{n,m})+`.
 * - A `{` or `}` that does not form a quantifier is a literal; identity escapes of non-syntax
 *   characters become the plain character (JS 'u' mode rejects them).
 * Refused: backreferences, nested classes and `&&` intersections, POSIX brackets, \G \K \X, conditionals.
 */

const WORD_IN_CLASS = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\u00B2\\u00B3\\u00B9\\u00BC-\\u00BE';
const WORD = `[${WORD_IN_CLASS}]`;
const NON_WORD = `[^${WORD_IN_CLASS}]`;

const ESCAPES: Record<string, string> = {
  s: '\\p{White_Space}',
  S: '\\P{White_Space}',
  d: '\\p{Nd}',
  D: '\\P{Nd}',
  w: WORD,
  W: NON_WORD,
  h: '[0-9A-Fa-f]',
  H: '[^0-9A-Fa-f]',
  A: '(?<![\\s\\S])',
  z: '(?![\\s\\S])',
  Z: '(?=\\n?(?![\\s\\S]))',
  b: `(?:(?<!${WORD})(?=${WORD})|(?<=${WORD})(?!${WORD}))`,
  B: `(?:(?<!${WORD})(?!${WORD})|(?<=${WORD})(?=${WORD}))`,
  R: '(?:\\r\\n|[\\n\\v\\f\\r\\u0085\\u2028\\u2029])',
};

const CLASS_ESCAPES: Record<string, string> = {
  s: '\\p{White_Space}',
  S: '\\P{White_Space}',
  d: '\\p{Nd}',
  D: '\\P{Nd}',
  w: WORD_IN_CLASS,
  h: '0-9A-Fa-f',
};

const CONTROL_ESCAPES: Record<string, string> = { n: '\\n', r: '\\r', t: '\\t', f: '\\f', v: '\\v', a: '\\x07', e: '\\x1B', '0': '\\0' };

/** Characters that must be escaped to be literal outside a class in a 'u' RegExp. */
const SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));

/** Thrown for a pattern this module cannot translate faithfully. */
export class RegexTranslateError extends Error {
  override name = 'RegexTranslateError';
}

class Parser {
  private i = 0;
  private atomics = 0;

  constructor(private readonly src: string) {}

  translate(): string {
    const out = this.alternation(false);
    if (this.i < this.src.length) this.fail(`unbalanced ')' at offset ${this.i}`);
    return out;
  }

  private fail(msg: string): never {
    throw new RegexTranslateError(msg);
  }

  private peek(k = 0): string {
    return this.src[this.i + k] ?? '';
  }

  /** Alternatives up to an unmatched ')' or the end. `ci`: case-insensitive at the start. */
  private alternation(ci: boolean): string {
    const branches: string[] = [];
    for (;;) {
      const [branch, ciAfter] = this.sequence(ci);
      branches.push(branch);
      if (this.peek() !== '|') break;
      this.i++;
      ci = ciAfter; // an inline (?i) lasts to the end of its group, across alternatives
    }
    return branches.join('|');
  }

  /** One alternative; returns it and the case-insensitivity in force at its end. */
  private sequence(ci: boolean): [string, boolean] {
    let out = '';
    while (this.i < this.src.length && this.peek() !== '|' && this.peek() !== ')') {
      const flag = this.inlineFlags();
      if (flag !== undefined) {
        ci = flag;
        continue;
      }
      let atom = this.atom(ci);
      if (atom === null) continue; // a comment
      // Quantifiers: possessive '+' after * + ?; Ruby stacks a second quantifier after {n,m}.
      for (;;) {
        const q = this.quantifier();
        if (q === null) break;
        if (atom.quantified) atom = { text: `(?:${atom.text})`, quantified: false, assertion: false };
        if (atom.assertion) this.fail(`a quantifier after an anchor or look-around at offset ${this.i}`);
        let text: string = atom.text + q.text;
        if (q.lazy) text += '?';
        else if (q.possessive) text = this.atomic(text);
        atom = { text, quantified: true, assertion: false };
      }
      out += atom.text;
    }
    return [out, ci];
  }

  /** `(?i)` / `(?-i)` at the current position: consumes it and returns the new setting. */
  private inlineFlags(): boolean | undefined {
    const m = /^\(\?(-?)i\)/.exec(this.src.slice(this.i, this.i + 5));
    if (!m) return undefined;
    this.i += m[0].length;
    return m[1] === '';
  }

  private atomic(inner: string): string {
    const name = `_atomic${this.atomics++}`;
    return `(?=(?<${name}>${inner}))\\k<${name}>`;
  }

  private quantifier(): { text: string; lazy: boolean; possessive: boolean } | null {
    const c = this.peek();
    let text: string;
    let interval = false;
    if (c === '*' || c === '+' || c === '?') {
      text = c;
      this.i++;
    } else if (c === '{') {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(this.src.slice(this.i, this.i + 24));
      if (!m || (m[1] === '' && m[3] === '') || (m[1] === '' && m[2] === '')) return null;
      this.i += m[0].length;
      text = m[1] === '' ? `{0,${m[3]}}` : m[0];
      interval = true;
    } else return null;
    let lazy = false;
    let possessive = false;
    if (this.peek() === '?') {
      lazy = true;
      this.i++;
    } else if (this.peek() === '+' && !interval) {
      possessive = true;
      this.i++;
    }
    return { text, lazy, possessive };
  }

  private atom(ci: boolean): { text: string; quantified: boolean; assertion: boolean } | null {
    const c = this.peek();
    const plain = (text: string) => ({ text, quantified: false, assertion: false });
    const assertion = (text: string) => ({ text, quantified: false, assertion: true });
    switch (c) {
      case '(': return this.group(ci);
      case '[': return plain(this.charClass(ci));
      case '.': this.i++; return plain('[^\\n]');
      case '^': this.i++; return assertion('(?:(?<![\\s\\S])|(?<=\\n))');
      case '$': this.i++; return assertion('(?:(?=\\n)|(?![\\s\\S]))');
      case '\\': {
        const anchor = 'AbBzZ'.includes(this.peek(1));
        const e = this.escape(ci);
        return anchor ? assertion(e) : plain(e);
      }
      case '*': case '+': case '?':
        return this.fail(`nothing to repeat at offset ${this.i}`);
      case '{': {
        if (/^\{\d*,?\d*\}/.test(this.src.slice(this.i, this.i + 24)) && /\d/.test(this.src.slice(this.i, this.i + 3))) {
          this.fail(`nothing to repeat at offset ${this.i}`);
        }
        this.i++;
        return plain('\\{');
      }
      default: {
        const cp = this.src.codePointAt(this.i)!;
        const ch = String.fromCodePoint(cp);
        this.i += ch.length;
        return plain(literal(ch, ci));
      }
    }
  }

  private group(ci: boolean): { text: string; quantified: boolean; assertion: boolean } | null {
    const rest = this.src.slice(this.i, this.i + 40);
    let open: string;
    let consumed: number;
    let close = ')';
    let innerCi = ci;
    let assertion = false;
    let m: RegExpExecArray | null;
    if (rest.startsWith('(?#')) {
      const end = this.src.indexOf(')', this.i);
      if (end < 0) this.fail('unterminated comment group');
      this.i = end + 1;
      return null;
    } else if (rest.startsWith('(?:')) {
      open = '(?:';
      consumed = 3;
    } else if (rest.startsWith('(?=') || rest.startsWith('(?!')) {
      open = rest.slice(0, 3);
      consumed = 3;
      assertion = true;
    } else if (rest.startsWith('(?<=') || rest.startsWith('(?<!')) {
      open = rest.slice(0, 4);
      consumed = 4;
      assertion = true;
    } else if (rest.startsWith('(?>')) {
      const name = `_atomic${this.atomics++}`;
      open = `(?=(?<${name}>`;
      close = `))\\k<${name}>`;
      consumed = 3;
    } else if ((m = /^\(\?(-?)i:/.exec(rest))) {
      open = '(?:';
      consumed = m[0].length;
      innerCi = m[1] === '';
    } else if ((m = /^\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest))) {
      open = `(?<${m[1]}>`; // (?P<name> is Python's spelling of (?<name>
      consumed = m[0].length;
    } else if (rest.startsWith('(?')) {
      return this.fail(`group syntax '${rest.slice(0, 4)}' at offset ${this.i}`);
    } else {
      open = '(';
      consumed = 1;
    }
    this.i += consumed;
    const inner = this.alternation(innerCi);
    if (this.peek() !== ')') this.fail('missing )');
    this.i++;
    return { text: open + inner + close, quantified: false, assertion };
  }

  /** An escape outside a class (the backslash is at the current position). */
  private escape(ci: boolean): string {
    this.i++;
    const c = this.peek();
    if (c === '') this.fail('a pattern cannot end with a backslash');
    this.i++;
    if (ESCAPES[c] !== undefined) return ESCAPES[c];
    if (CONTROL_ESCAPES[c] !== undefined) return CONTROL_ESCAPES[c];
    if (c === 'p' || c === 'P') return this.property(c);
    if (c === 'x' || c === 'u') return literal(String.fromCodePoint(this.hexEscape(c)), ci);
    if (/[1-9k]/.test(c)) this.fail(`backreference '\\${c}' at offset ${this.i - 2}`);
    if (/[GKXyYgcCM]/.test(c)) this.fail(`escape '\\${c}' at offset ${this.i - 2}`);
    if (/[A-Za-z0-9]/.test(c)) this.fail(`unknown escape '\\${c}' at offset ${this.i - 2}`);
    const cp = this.src.codePointAt(this.i - 1)!;
    const ch = String.fromCodePoint(cp);
    this.i += ch.length - 1;
    return literal(ch, ci);
  }

  /** \p{Name} / \P{Name} / \p{^Name}: JS names, else a script name (Oniguruma accepts bare script names). */
  private property(c: string): string {
    const m = /^\{(\^?)([A-Za-z0-9_ =-]+)\}/.exec(this.src.slice(this.i, this.i + 64));
    if (!m) this.fail(`malformed \\${c} at offset ${this.i - 2}`);
    this.i += m[0].length;
    const negated = (c === 'P') !== (m[1] === '^');
    const name = jsPropertyName(m[2]);
    if (name === undefined) this.fail(`unknown Unicode property '${m[2]}'`);
    return `\\${negated ? 'P' : 'p'}{${name}}`;
  }

  private hexEscape(c: string): number {
    const rest = this.src.slice(this.i, this.i + 12);
    const m = /^\{([0-9A-Fa-f]{1,8})\}/.exec(rest) ?? (c === 'x' ? /^([0-9A-Fa-f]{1,2})/.exec(rest) : /^([0-9A-Fa-f]{4})/.exec(rest));
    if (!m) this.fail(`malformed \\${c} escape at offset ${this.i - 2}`);
    this.i += m[0].length;
    const cp = Number.parseInt(m[1], 16);
    if (cp > 0x10ffff) this.fail(`code point \\${c}${m[0]} is out of range`);
    return cp;
  }

  /** A bracket expression, as a JS class. */
  private charClass(ci: boolean): string {
    this.i++; // [
    let negated = false;
    if (this.peek() === '^') {
      negated = true;
      this.i++;
    }
    const items: string[] = [];
    /** Code point ranges of literal members, for case-insensitive completion. */
    const ranges: [number, number][] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === '') this.fail('unterminated character class');
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      if (c === '[') this.fail(`nested character class or POSIX bracket at offset ${this.i}`);
      if (c === '&' && this.peek(1) === '&') this.fail(`class intersection '&&' at offset ${this.i}`);
      const lo = this.classAtom();
      if (typeof lo === 'string') {
        items.push(lo);
        continue;
      }
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== '') {
        const save = this.i;
        this.i++;
        const hi = this.classAtom();
        if (typeof hi === 'string') {
          // "a-\d": the '-' is literal (as in Oniguruma when a range end is a set).
          this.i = save;
          items.push(classLiteral(lo));
          continue;
        }
        if (hi < lo) this.fail(`empty range in character class at offset ${save}`);
        items.push(`${classLiteral(lo)}-${classLiteral(hi)}`);
        ranges.push([lo, hi]);
      } else {
        items.push(classLiteral(lo));
        ranges.push([lo, lo]);
      }
    }
    if (ci) for (const extra of caseCounterparts(ranges)) items.push(extra);
    if (items.length === 0) return negated ? '[\\s\\S]' : '[^\\s\\S]';
    return `[${negated ? '^' : ''}${items.join('')}]`;
  }

  /** One class member: a code point (possibly a range end), or a set such as \s, as JS class text. */
  private classAtom(): number | string {
    const cp = this.src.codePointAt(this.i)!;
    if (cp !== 0x5c) {
      this.i += cp > 0xffff ? 2 : 1;
      return cp;
    }
    this.i++;
    const c = this.peek();
    if (c === '') this.fail('a pattern cannot end with a backslash');
    this.i++;
    if (CLASS_ESCAPES[c] !== undefined) return CLASS_ESCAPES[c];
    if (c === 'W' || c === 'H') this.fail(`'\\${c}' inside a character class`);
    if (c === 'p' || c === 'P') return this.property(c);
    if (c === 'x' || c === 'u') return this.hexEscape(c);
    const control = { n: 10, r: 13, t: 9, f: 12, v: 11, a: 7, e: 27, b: 8, '0': 0 }[c];
    if (control !== undefined) return control;
    if (/[A-Za-z0-9]/.test(c)) this.fail(`unknown escape '\\${c}' in a character class`);
    const esc = this.src.codePointAt(this.i - 1)!;
    this.i += esc > 0xffff ? 1 : 0;
    return esc;
  }
}

/** A literal character outside a class; `ci` spells out its other case. */
function literal(ch: string, ci: boolean): string {
  if (ci) {
    const others = caseVariants(ch);
    if (others.length > 0) return `[${[ch, ...others].map((c) => classLiteral(c.codePointAt(0)!)).join('')}]`;
  }
  if (SYNTAX.has(ch)) return `\\${ch}`;
  if (ch === '\n') return '\\n';
  return ch;
}

function classLiteral(cp: number): string {
  const ch = String.fromCodePoint(cp);
  if ('\\]^-['.includes(ch)) return `\\${ch}`;
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
  return ch;
}

/** The other cases of one character (single code points only). */
function caseVariants(ch: string): string[] {
  const out = new Set<string>();
  for (const v of [ch.toLowerCase(), ch.toUpperCase()]) {
    if (v !== ch && [...v].length === 1) out.add(v);
  }
  return [...out];
}

/** Class members adding the other case of the letters in `ranges` (ranges are completed for ASCII letters). */
function caseCounterparts(ranges: [number, number][]): string[] {
  const out: string[] = [];
  for (const [lo, hi] of ranges) {
    if (hi - lo > 256) continue; // large (non-ASCII) ranges are left as they are
    for (let cp = lo; cp <= hi; cp++) {
      for (const v of caseVariants(String.fromCodePoint(cp))) out.push(classLiteral(v.codePointAt(0)!));
    }
  }
  return out;
}

const propertyCache = new Map<string, string | undefined>();

function jsPropertyName(name: string): string | undefined {
  if (propertyCache.has(name)) return propertyCache.get(name);
  let found: string | undefined;
  for (const candidate of [name, `Script=${name}`, `General_Category=${name}`]) {
    try {
      new RegExp(`\\p{${candidate}}`, 'u');
      found = candidate;
      break;
    } catch {
      // not this spelling
    }
  }
  propertyCache.set(name, found);
  return found;
}

/** Translates an Oniguruma pattern to JavaScript source for `new RegExp(source, 'gu')`; throws RegexTranslateError. */
export function translateOnigRegex(pattern: string): string {
  const source = new Parser(pattern).translate();
  try {
    new RegExp(source, 'gu');
  } catch (e) {
    throw new RegexTranslateError(`the translated pattern is not valid JavaScript (${(e as Error).message})`);
  }
  return source;
}

/** A global Unicode RegExp for an Oniguruma pattern (a {Regex} pattern in tokenizer.json). */
export function onigRegExp(pattern: string): RegExp {
  return new RegExp(translateOnigRegex(pattern), 'gu');
}

/** A global Unicode RegExp matching the literal string `s` (a {String} pattern in tokenizer.json). */
export function literalRegExp(s: string): RegExp {
  return new RegExp(s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&'), 'gu');
}
