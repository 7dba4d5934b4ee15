/**
 * Decoders (token strings -> text) and post-processors (the ids added around a sequence) of a Hugging
 * Face tokenizer.json, read from their JSON and run as the Rust `tokenizers` crate runs them.
 */
import { type JsonReader, findMatches } from './hf-read.js';
import { BYTE_CHARS, readMetaspace, utf8 } from './hf-pretokenize.js';
import { joinBytes } from './tokenizer.js';

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
          const bytes = joinBytes(parts);
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
          return mode === 'text' ? [tokens.map(textOf).join('')] : [joinBytes(tokens.map((t) => (typeof t === 'string' ? utf8.encode(t) : t)))];
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
