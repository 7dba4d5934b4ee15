// Byte tokenizer round trips and the streaming UTF-8 decoder, checked against TextDecoder.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BYTE_BOS, BYTE_EOS, BYTE_PAD, ByteTokenizer } from '../src/tokenizers/byte.js';
import { TokenStreamDecoder, Utf8StreamDecoder, decodeText } from '../src/tokenizers/tokenizer.js';
import { Rng } from '../src/util/rng.js';

const tok = new ByteTokenizer();
const SAMPLE = 'héllo wörld 日本語 🎉';

/** Random bytes mixing ASCII, valid multi-byte characters, and arbitrary (often invalid) bytes. */
function randomBytes(rng: Rng, maxLen: number): Uint8Array {
  const out: number[] = [];
  const len = rng.int(maxLen + 1);
  const chars = ['a', 'é', '日', '🎉', '\u{10FFFF}', '\u07FF', '\uFFFF'];
  while (out.length < len) {
    const r = rng.next();
    if (r < 0.3) out.push(rng.int(256));
    else if (r < 0.45) out.push(0x80 + rng.int(0x80)); // lead / continuation bytes
    else if (r < 0.6) {
      const c = new TextEncoder().encode(chars[rng.int(chars.length)]);
      out.push(...c.subarray(0, 1 + rng.int(c.length))); // often truncated
    } else if (r < 0.7) out.push([0xe0, 0xed, 0xf0, 0xf4, 0xc0, 0xc1, 0xf5, 0xff][rng.int(8)]);
    else out.push(...new TextEncoder().encode(chars[rng.int(chars.length)]));
  }
  return Uint8Array.from(out.slice(0, len));
}

describe('ByteTokenizer', () => {
  test('vocabulary and specials', () => {
    assert.equal(tok.vocabSize, 259);
    assert.deepEqual([tok.bos, tok.eos, tok.pad], [256, 257, 258]);
    assert.deepEqual([BYTE_BOS, BYTE_EOS, BYTE_PAD], [256, 257, 258]);
    assert.equal(tok.kind, 'byte');
  });

  test('strings encode as UTF-8 and round-trip', () => {
    const ids = tok.encode(SAMPLE, { bos: true, eos: true });
    const utf8 = new TextEncoder().encode(SAMPLE);
    assert.equal(ids.length, utf8.length + 2);
    assert.equal(ids[0], BYTE_BOS);
    assert.equal(ids[ids.length - 1], BYTE_EOS);
    assert.deepEqual(Array.from(ids.subarray(1, -1)), Array.from(utf8));
    assert.equal(tok.decodeText(ids), SAMPLE);
    assert.equal(decodeText(tok, ids), SAMPLE);
    assert.deepEqual(tok.encode(''), new Int32Array(0));
  });

  test('random byte sequences (incl. invalid UTF-8) round-trip exactly', () => {
    const rng = new Rng(7);
    for (let n = 0; n < 5000; n++) {
      const bytes = randomBytes(rng, 40);
      const ids = tok.encode(bytes, { bos: n % 2 === 0, eos: n % 3 === 0 });
      assert.deepEqual(tok.decode(ids), bytes);
    }
  });

  test('special tokens decode to nothing; bad ids throw', () => {
    assert.deepEqual(tok.decode([BYTE_BOS, 104, BYTE_PAD, 105, BYTE_EOS]), Uint8Array.of(104, 105));
    assert.equal(tok.tokenBytes(BYTE_PAD).length, 0);
    assert.deepEqual(tok.tokenBytes(200), Uint8Array.of(200));
    assert.throws(() => tok.decode([259]), /outside \[0, 259\)/);
    assert.throws(() => tok.decode([-1]), RangeError);
    assert.throws(() => tok.tokenBytes(1.5), RangeError);
  });
});

describe('streaming decoder', () => {
  test('valid UTF-8 one token at a time: never U+FFFD, always a prefix', () => {
    const dec = new TokenStreamDecoder(tok);
    let text = '';
    for (const id of tok.encode(SAMPLE, { bos: true, eos: true })) {
      const piece = dec.push(id);
      assert.ok(!piece.includes('\uFFFD'), `broken character emitted: ${JSON.stringify(piece)}`);
      text += piece;
      assert.ok(SAMPLE.startsWith(text));
    }
    text += dec.flush();
    assert.equal(text, SAMPLE);
  });

  test('valid UTF-8 split into two chunks at every position', () => {
    const bytes = new TextEncoder().encode(SAMPLE);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const dec = new Utf8StreamDecoder();
      const a = dec.write(bytes.subarray(0, cut));
      const b = dec.write(bytes.subarray(cut));
      assert.ok(!(a + b).includes('\uFFFD'));
      assert.equal(a + b + dec.flush(), SAMPLE);
    }
  });

  test('invalid bytes do not stall the stream', () => {
    const dec = new Utf8StreamDecoder();
    assert.equal(dec.write([0x80]), '\uFFFD'); // stray continuation: replaced at once
    assert.equal(dec.write([0xe6]), ''); // could still become 日
    assert.equal(dec.write([0x97]), '');
    assert.equal(dec.write([0x41]), '\uFFFDA'); // truncated, then ASCII: both out now
    assert.equal(dec.write([0xf0, 0x9f]), '');
    assert.equal(dec.flush(), '\uFFFD');
    assert.equal(dec.write([0xe0, 0x80]), '\uFFFD\uFFFD'); // overlong: 0x80 cannot follow 0xE0
    assert.equal(dec.write([0xed, 0xa0]), '\uFFFD\uFFFD'); // surrogate range
    assert.equal(dec.write([0xf4, 0x90]), '\uFFFD\uFFFD'); // above U+10FFFF
    assert.equal(dec.write([0xc0, 0xf5, 0xff]), '\uFFFD\uFFFD\uFFFD');
    assert.equal(dec.flush(), '');
  });

  test('arbitrary bytes: outputs + flush equal TextDecoder, chunk by chunk as in its stream mode', () => {
    const rng = new Rng(11);
    for (let n = 0; n < 3000; n++) {
      const bytes = randomBytes(rng, 48);
      const dec = new TokenStreamDecoder(tok);
      const ref = new TextDecoder();
      let text = '';
      for (const b of bytes) {
        const piece = dec.push(b);
        assert.equal(piece, ref.decode(Uint8Array.of(b), { stream: true }));
        text += piece;
      }
      text += dec.flush();
      assert.equal(text, new TextDecoder().decode(bytes));
    }
  });
});
