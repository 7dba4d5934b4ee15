/**
 * The interface every tokenizer (byte, BPE, SentencePiece) implements, plus streaming decoders that
 * turn a token stream into text without ever printing half a UTF-8 character.
 */

/** Options for {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS token (ignored if the tokenizer has none). */
  bos?: boolean;
  /** Append the EOS token (ignored if the tokenizer has none). */
  eos?: boolean;
}

/** A tokenizer: text to token ids and token ids back to bytes. */
export interface Tokenizer {
  /** A short name of the scheme, e.g. 'byte', 'bpe'. */
  readonly kind: string;
  /** Number of token ids; valid ids are 0 .. vocabSize - 1. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, or null if none. */
  readonly bos: number | null;
  /** End-of-sequence id, or null if none. */
  readonly eos: number | null;
  /** Padding id, or null / absent if none. */
  readonly pad?: number | null;
  /**
   * Ids besides EOS that end a generation (end-of-turn tokens such as `<|end|>` or `<|eot_id|>`, which
   * chat templates close a reply with); absent or empty for a tokenizer without them.
   */
  readonly endOfGeneration?: readonly number[];
  /** Whether decoding drops the space a text's first word carries (SentencePiece's dummy prefix; kind 'llama' always does). */
  readonly stripsLeadingSpace?: boolean;
  /** Encodes text (UTF-8) into token ids. */
  encode(text: string, opts?: EncodeOptions): Int32Array;
  /** Decodes ids to the bytes they stand for; special tokens decode to nothing. */
  decode(ids: ArrayLike<number>): Uint8Array;
  /** The bytes of one token (empty for special tokens); callers must not modify the result. */
  tokenBytes(id: number): Uint8Array;
}

/** Decodes ids to a string; invalid UTF-8 becomes U+FFFD, like TextDecoder. */
export function decodeText(tok: Tokenizer, ids: ArrayLike<number>): string {
  return new TextDecoder().decode(tok.decode(ids));
}

const REPLACEMENT = 0xfffd;

/**
 * Incremental UTF-8 decoder following the WHATWG decoding algorithm, so its output matches
 * `new TextDecoder().decode(allBytes)` exactly. It holds back only a prefix that can still become a
 * valid character; any byte that cannot continue it yields U+FFFD at once and is then reprocessed.
 */
export class Utf8StreamDecoder {
  private cp = 0;
  private needed = 0;
  private seen = 0;
  private lower = 0x80;
  private upper = 0xbf;
  private out: number[] = [];

  /** Feeds bytes; returns the text completed by them (possibly ''). */
  write(bytes: ArrayLike<number>): string {
    for (let i = 0; i < bytes.length; i++) this.byte(bytes[i]);
    return this.take();
  }

  /** Ends the stream: a pending truncated sequence becomes U+FFFD. The decoder is reset. */
  flush(): string {
    if (this.needed !== 0) {
      this.reset();
      this.out.push(REPLACEMENT);
    }
    return this.take();
  }

  /** True while a partial character is held back. */
  get pending(): boolean {
    return this.needed !== 0;
  }

  private byte(b: number): void {
    if (this.needed === 0) {
      if (b <= 0x7f) this.out.push(b);
      else if (b >= 0xc2 && b <= 0xdf) this.start(1, b & 0x1f);
      else if (b >= 0xe0 && b <= 0xef) {
        if (b === 0xe0) this.lower = 0xa0; // no overlong 3-byte forms
        if (b === 0xed) this.upper = 0x9f; // no surrogates
        this.start(2, b & 0x0f);
      } else if (b >= 0xf0 && b <= 0xf4) {
        if (b === 0xf0) this.lower = 0x90; // no overlong 4-byte forms
        if (b === 0xf4) this.upper = 0x8f; // nothing above U+10FFFF
        this.start(3, b & 0x07);
      } else this.out.push(REPLACEMENT);
      return;
    }
    if (b < this.lower || b > this.upper) {
      // The pending sequence is broken: replace it, then treat this byte as a fresh start.
      this.reset();
      this.out.push(REPLACEMENT);
      this.byte(b);
      return;
    }
    this.lower = 0x80;
    this.upper = 0xbf;
    this.cp = (this.cp << 6) | (b & 0x3f);
    if (++this.seen === this.needed) {
      this.out.push(this.cp);
      this.reset();
    }
  }

  private start(needed: number, bits: number): void {
    this.needed = needed;
    this.cp = bits;
  }

  private reset(): void {
    this.cp = this.needed = this.seen = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }

  private take(): string {
    if (this.out.length === 0) return '';
    let s = '';
    for (let i = 0; i < this.out.length; i += 4096) s += String.fromCodePoint(...this.out.slice(i, i + 4096));
    this.out.length = 0;
    return s;
  }
}

/** Streams token ids to text through a tokenizer's {@link Tokenizer.tokenBytes}; never emits a split character. */
export class TokenStreamDecoder {
  private readonly utf8 = new Utf8StreamDecoder();

  constructor(private readonly tok: Tokenizer) {}

  /**
   * Feeds one token; returns the text that is complete so far (possibly ''). `afterBos` drops a
   * leading space, as SentencePiece does for the dummy prefix at the start of a text.
   */
  push(id: number, afterBos = false): string {
    const bytes = this.tok.tokenBytes(id);
    return this.utf8.write(afterBos && bytes[0] === 0x20 ? bytes.subarray(1) : bytes);
  }

  /** Ends the stream, emitting what is held back (a truncated sequence becomes U+FFFD). */
  flush(): string {
    return this.utf8.flush();
  }
}

/** Concatenates byte strings into a new array (per-token bytes into a text's). */
export function joinBytes(parts: Uint8Array[]): Uint8Array {
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

/**
 * Token texts that end a generation wherever a vocabulary has them as special tokens, as llama.cpp's
 * end-of-generation list does: chat templates close a turn with them rather than with EOS.
 */
export const END_OF_GENERATION_TEXTS: readonly string[] = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<EOT>', '<|END_OF_TURN_TOKEN|>', '<|eom_id|>'];
