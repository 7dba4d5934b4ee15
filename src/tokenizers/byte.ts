/**
 * The byte-level tokenizer: token id = byte value (0..255), plus BOS = 256, EOS = 257, PAD = 258.
 * Every byte sequence round-trips exactly; strings are encoded as UTF-8.
 */
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

export { TokenStreamDecoder, Utf8StreamDecoder } from './tokenizer.js';

/** Beginning-of-sequence id of the byte tokenizer. */
export const BYTE_BOS = 256;
/** End-of-sequence id of the byte tokenizer. */
export const BYTE_EOS = 257;
/** Padding id of the byte tokenizer. */
export const BYTE_PAD = 258;

const EMPTY = new Uint8Array(0);
/** One shared view per byte token, so tokenBytes allocates nothing. */
const TOKEN_BYTES: Uint8Array[] = (() => {
  const all = new Uint8Array(256);
  const views: Uint8Array[] = [];
  for (let b = 0; b < 256; b++) {
    all[b] = b;
    views.push(all.subarray(b, b + 1));
  }
  return views;
})();

/** Byte-level tokenizer (vocabSize 259). */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte';
  readonly vocabSize = 259;
  readonly bos = BYTE_BOS;
  readonly eos = BYTE_EOS;
  readonly pad = BYTE_PAD;
  private readonly encoder = new TextEncoder();

  /** Encodes a string (as UTF-8) or raw bytes into ids, optionally framed by BOS / EOS. */
  encode(text: string | Uint8Array, opts: EncodeOptions = {}): Int32Array {
    const bytes = typeof text === 'string' ? this.encoder.encode(text) : text;
    const pre = opts.bos ? 1 : 0;
    const ids = new Int32Array(pre + bytes.length + (opts.eos ? 1 : 0));
    if (opts.bos) ids[0] = BYTE_BOS;
    ids.set(bytes, pre);
    if (opts.eos) ids[ids.length - 1] = BYTE_EOS;
    return ids;
  }

  /** Decodes ids to bytes, skipping BOS / EOS / PAD; throws on ids outside the vocabulary. */
  decode(ids: ArrayLike<number>): Uint8Array {
    let n = 0;
    for (let i = 0; i < ids.length; i++) if (this.check(ids[i]) < 256) n++;
    const out = new Uint8Array(n);
    let j = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] < 256) out[j++] = ids[i];
    return out;
  }

  /** Decodes ids to a string; invalid UTF-8 becomes U+FFFD. */
  decodeText(ids: ArrayLike<number>): string {
    return new TextDecoder().decode(this.decode(ids));
  }

  /** The single byte of a byte token, or empty for a special token (shared; do not modify). */
  tokenBytes(id: number): Uint8Array {
    return this.check(id) < 256 ? TOKEN_BYTES[id] : EMPTY;
  }

  private check(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`byte tokenizer: token id ${id} is outside [0, ${this.vocabSize})`);
    }
    return id;
  }
}
