/**
 * Chunk boundaries for the byte-pooled model (./byte-pooled.ts): where a byte stream is cut into the
 * chunks that its encoder pools into one vector each.
 *
 * Every rule is prefix-decidable: whether a chunk ends after a byte depends only on that chunk's bytes
 * so far, never on a later byte. Two things rest on that. Generation knows a chunk is complete the
 * moment it emits the byte that completes it (no look-ahead, no "end of chunk" to predict). And the
 * model stays causal: the chunking of a text's first n bytes never changes when bytes are appended.
 *
 * - 'fixed': every `chunkBytes` bytes (MegaByte's patches).
 * - 'space': SpaceByte's rule (Slagle 2024; kjslag/spacebyte `patch_method = 'utf8'`). A byte is
 *   spacelike unless it is an ASCII letter, an ASCII digit or a UTF-8 continuation byte (0x80-0xBF), so
 *   UTF-8 lead bytes (0xC0-0xFF) are spacelike. SpaceByte runs its global blocks right after each
 *   spacelike byte that follows a non-spacelike byte; here that byte ends the chunk. A chunk is thus
 *   leading spacelike bytes, a word, and the spacelike byte after it: "Hello," | " world." | "\n\nThe ".
 *   A chunk is also cut at `chunkBytes` bytes (long words, runs of spaces). One difference from
 *   SpaceByte: after such a cut the next chunk starts fresh (its first byte never ends it), so that
 *   whether a chunk has ended is a function of its own bytes.
 *   With UTF-8 text the rule cuts after a lead byte that follows a letter or a continuation byte:
 *   "café " is "caf\xC3" | "\xA9 ", and CJK text gets one cut per character (as SpaceByte's global
 *   blocks do). The model never needs chunks to be whole characters; streaming output is decoded per
 *   byte, holding back incomplete characters.
 */

export type ChunkRule = 'fixed' | 'space';

export const CHUNK_RULES: readonly ChunkRule[] = ['fixed', 'space'];

export interface Chunking {
  rule: ChunkRule;
  /** Bytes per chunk ('fixed'), or the most a chunk may hold ('space'). */
  chunkBytes: number;
}

/** SpaceByte's spacelike bytes: everything but ASCII letters, ASCII digits and UTF-8 continuation bytes. */
export function isSpacelike(byte: number): boolean {
  const letterOrDigit = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
  const continuation = byte >= 0x80 && byte <= 0xbf;
  return !letterOrDigit && !continuation;
}

/** Whether a chunk whose bytes so far are `bytes[start, end)` is complete (ends after bytes[end − 1]). */
export function chunkComplete(c: Chunking, bytes: ArrayLike<number>, start: number, end: number): boolean {
  const length = end - start;
  if (length >= c.chunkBytes) return true;
  if (c.rule === 'fixed' || length < 2) return false;
  return isSpacelike(bytes[end - 1]) && !isSpacelike(bytes[end - 2]);
}

/**
 * Cuts `bytes` into chunks; returns each chunk's end offset (exclusive), in order. The last chunk ends
 * at bytes.length and may be incomplete (cut by the end of the bytes, not by the rule): see
 * chunkComplete. Every chunk holds 1 to chunkBytes bytes.
 */
export function chunkEnds(c: Chunking, bytes: ArrayLike<number>): number[] {
  const ends: number[] = [];
  let start = 0;
  for (let i = 1; i <= bytes.length; i++) {
    if (i === bytes.length || chunkComplete(c, bytes, start, i)) {
      ends.push(i);
      start = i;
    }
  }
  return ends;
}

/** The chunks themselves (for tests and display). */
export function splitChunks(c: Chunking, bytes: Uint8Array): Uint8Array[] {
  let start = 0;
  return chunkEnds(c, bytes).map((end) => bytes.subarray(start, (start = end)));
}

/** Parses a chunking spec: 'fixed:P' (P bytes per chunk) or 'space' / 'space:M' (at most M bytes, default 8). */
export function parseChunking(spec: string): Chunking {
  const m = /^(fixed|space)(?::(\d+))?$/.exec(spec.trim());
  if (!m || (m[1] === 'fixed' && m[2] === undefined)) {
    throw new Error(`chunking must be 'fixed:<bytes>' (e.g. fixed:4) or 'space' / 'space:<max bytes>' (e.g. space:8), got '${spec}'`);
  }
  return validateChunking({ rule: m[1] as ChunkRule, chunkBytes: m[2] === undefined ? 8 : Number(m[2]) });
}

export function validateChunking(c: Chunking): Chunking {
  if (!CHUNK_RULES.includes(c.rule)) throw new Error(`chunking rule must be one of ${CHUNK_RULES.join(', ')}, got ${JSON.stringify(c.rule)}`);
  if (!(Number.isInteger(c.chunkBytes) && c.chunkBytes >= 1 && c.chunkBytes <= 64)) {
    throw new Error(`chunkBytes must be an integer from 1 to 64 for '${c.rule}' chunks, got ${JSON.stringify(c.chunkBytes)}`);
  }
  return c;
}

export function formatChunking(c: Chunking): string {
  return `${c.rule}:${c.chunkBytes}`;
}
