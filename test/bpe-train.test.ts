// BPE trainer: the stanford-cs336 reference output on corpus.en (merges in order, vocab), hand-computed
// cases (tie-breaking, special tokens, repeated characters, errors, empty text), a seeded
// cross-check of the incremental algorithm against a slow recount-everything trainer, and the VocabSpec.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { byteToUnicode } from '../src/tokenizers/gpt2.js';
import {
  type BpeResult, type PretokenCounts, bpeToVocab, compareBytes, countPretokens, trainBpe, trainBpeFromCounts,
} from '../src/tokenizers/bpe-train.js';
import { tokenizerFromVocab } from '../src/tokenizers/from-vocab.js';
import { decodeText } from '../src/tokenizers/tokenizer.js';
import { TOKEN_TYPE, validateVocab } from '../src/tokenizers/vocab.js';
import { Rng } from '../src/util/rng.js';

// From dist/test/bpe-train.test.js: ../../ is the repository root; the fixtures sit beside it.
const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const ORACLE = join(FIXTURES, 'tokenizers/bpe-train-oracle');

function missing(path: string): string | false {
  return existsSync(path) ? false : `fixture ${path} is absent (see ../shared/fixtures/README.md)`;
}

const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const mergeTexts = (r: BpeResult) => r.merges.map(([a, b]) => [text(a), text(b)]);

/** GPT-2 bytes-to-unicode text → bytes. */
function unicodeToBytes(s: string): Uint8Array {
  const byChar = new Map(byteToUnicode().map((c, b) => [c, b]));
  return Uint8Array.from([...s], (c) => {
    const b = byChar.get(c);
    assert.ok(b !== undefined, `${JSON.stringify(c)} is not a bytes-to-unicode character`);
    return b;
  });
}

describe('trainBpe: the cs336 reference on corpus.en (vocab 500, <|endoftext|>)', () => {
  const corpus = join(ORACLE, 'corpus.en');
  const skip = missing(corpus) || missing(join(ORACLE, 'train-bpe-reference-merges.txt'));
  const result = skip
    ? undefined
    : trainBpe(readFileSync(corpus, 'utf8'), { vocabSize: 500, specialTokens: ['<|endoftext|>'] });

  test('merges equal the reference, in order', { skip }, () => {
    const lines = readFileSync(join(ORACLE, 'train-bpe-reference-merges.txt'), 'utf8').split('\n').filter((l) => l !== '');
    const expected = lines.map((line) => {
      const parts = line.split(' ');
      assert.equal(parts.length, 2, `merge line ${JSON.stringify(line)} should be "left right"`);
      return parts.map((p) => latin1(unicodeToBytes(p)));
    });
    const actual = result!.merges.map(([a, b]) => [latin1(a), latin1(b)]);
    assert.equal(actual.length, expected.length);
    for (let i = 0; i < expected.length; i++) assert.deepEqual(actual[i], expected[i], `merge ${i}`);
  });

  test('vocab equals the reference (as a set, and id for id)', { skip: skip || missing(join(ORACLE, 'train-bpe-reference-vocab.json')) }, () => {
    const json = JSON.parse(readFileSync(join(ORACLE, 'train-bpe-reference-vocab.json'), 'utf8')) as Record<string, number>;
    const expectedById: string[] = [];
    for (const [token, id] of Object.entries(json)) {
      expectedById[id] = token === '<|endoftext|>' ? token : latin1(unicodeToBytes(token));
    }
    const actualById = result!.vocab.map((bytes, id) => (id === 0 ? text(bytes) : latin1(bytes)));
    assert.deepEqual(new Set(actualById), new Set(expectedById));
    assert.deepEqual(actualById, expectedById);
  });
});

describe('trainBpe: hand-made cases', () => {
  test('equal counts: the greater right symbol wins; training stops when no pair is left', () => {
    // Pairs (a,b) and (a,z) both occur twice; '.' pre-tokens are single bytes.
    const r = trainBpe('ab.ab.az.az', { vocabSize: 300 });
    assert.deepEqual(mergeTexts(r), [['a', 'z'], ['a', 'b']]);
    assert.equal(r.vocab.length, 258);
  });

  test('equal counts: a left symbol that is a proper prefix of the other is smaller', () => {
    // After (a,b): (ab,c) and (a,d) both occur twice; "ab" > "a" decides, although 'd' > 'c'.
    const r = trainBpe('abc.abc.ad.ad.ab', { vocabSize: 300 });
    assert.deepEqual(mergeTexts(r), [['a', 'b'], ['ab', 'c'], ['a', 'd']]);
  });

  test('equal counts between three pairs, including the space', () => {
    // Pre-tokens "cd", " ab": pairs (c,d), (a,b), (' ',a) once each, then (' ',ab).
    const r = trainBpe('cd ab', { vocabSize: 259 });
    assert.deepEqual(mergeTexts(r), [['c', 'd'], ['a', 'b'], [' ', 'ab']]);
  });

  test('bytes compare unsigned (a UTF-8 lead byte is greater than ASCII)', () => {
    // "é" is C3 A9: (0xC3, 0xA9) beats (a, b) on a tie.
    const r = trainBpe('ab é', { vocabSize: 257 });
    assert.deepEqual(Array.from(r.merges[0][0]), [0xc3]);
    assert.deepEqual(Array.from(r.merges[0][1]), [0xa9]);
  });

  test('special tokens are cut out: no merge spans or touches one', () => {
    // Without the special "XYZ", "aXYZb" would be one pre-token with pairs (a,X), (Z,b), …
    const r = trainBpe('aXYZb aXYZb', { vocabSize: 300, specialTokens: ['XYZ'] });
    assert.deepEqual(mergeTexts(r), [[' ', 'a']]);
    assert.equal(text(r.vocab[0]), 'XYZ');
    const counts = countPretokens('aXYZb aXYZb', ['XYZ']);
    assert.deepEqual([...counts].sort(), [[' a', 1], ['a', 1], ['b', 2]]);
  });

  test('<|endoftext|> between documents: its pieces never become merges', () => {
    const doc = 'the cat sat on the mat';
    const r = trainBpe(Array(50).fill(doc).join('<|endoftext|>'), { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
    for (const [a, b] of r.merges) assert.ok(!/[<|>]/.test(text(a) + text(b)), `merge ${text(a)} ${text(b)}`);
    // The same documents as separate pieces of an iterable give the same result.
    const pieces = trainBpe(Array(50).fill(doc), { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
    assert.deepEqual(mergeTexts(pieces), mergeTexts(r));
  });

  test('of two special tokens where one contains the other, the longer is cut out whole', () => {
    const counts = countPretokens('x<a><a><b>y<a>z', ['<a>', '<a><b>']);
    assert.deepEqual([...counts].sort(), [['x', 1], ['y', 1], ['z', 1]]);
  });

  test('special tokens with regex syntax in them are matched literally', () => {
    const specials = ['<|im-start|>', '[.*+?^$]', '(a|b)/{2}\\'];
    const counts = countPretokens('x<|im-start|>y[.*+?^$]z(a|b)/{2}\\w', specials);
    assert.deepEqual([...counts].sort(), [['w', 1], ['x', 1], ['y', 1], ['z', 1]]);
  });

  test('one repeated character', () => {
    // a×10: (a,a) → aa×5; (aa,aa) twice → aaaa aaaa aa; tie (aaaa,aaaa) vs (aaaa,aa): the first is greater.
    const r = trainBpe('a'.repeat(10), { vocabSize: 1000 });
    assert.deepEqual(mergeTexts(r), [['a', 'a'], ['aa', 'aa'], ['aaaa', 'aaaa'], ['aaaaaaaa', 'aa']]);
    assert.equal(r.vocab.length, 260);
  });

  test('runs of one character of several lengths, as the full recount does', () => {
    // Overlapping pairs (a,a) inside runs: merged left to right, without overlap.
    const counts: PretokenCounts = new Map([['aaaaa', 2], ['aaaaaa', 1], ['aaa', 1], ['aaaaaaaaa', 3]]);
    const r = trainBpeFromCounts(counts, { vocabSize: 1000 });
    assert.deepEqual(r.merges.map(([x, y]) => [latin1(x), latin1(y)]), naiveMerges(counts, 1000 - 256));
    const tokens = r.vocab.map(latin1);
    assert.equal(new Set(tokens).size, tokens.length, 'no token twice');
  });

  test('vocabSize below 256 + specials is an error that says why', () => {
    assert.throws(() => trainBpe('abc', { vocabSize: 256, specialTokens: ['<|endoftext|>'] }), /vocabSize 256 is too small.*at least 257/);
    assert.throws(() => trainBpe('abc', { vocabSize: 100 }), /at least 256/);
    assert.throws(() => trainBpe('abc', { vocabSize: 300.5 }), /vocabSize/);
    assert.throws(() => trainBpe('abc', { vocabSize: 300, specialTokens: ['<s>', '<s>'] }), /twice/);
  });

  test('empty text: the bytes and the specials, no merges', () => {
    for (const input of ['', [] as string[], ['', '']]) {
      const r = trainBpe(input, { vocabSize: 1000, specialTokens: ['<|endoftext|>'] });
      assert.equal(r.merges.length, 0);
      assert.equal(r.vocab.length, 257);
      assert.deepEqual(new Set(r.vocab.slice(1).map((b) => b[0])).size, 256);
    }
    assert.equal(trainBpe('<|endoftext|><|endoftext|>', { vocabSize: 300, specialTokens: ['<|endoftext|>'] }).merges.length, 0);
  });

  test('onProgress counts up to the number of tokens wanted', () => {
    const seen: [number, number][] = [];
    trainBpe('the cat sat on the mat, the end', { vocabSize: 260, onProgress: (m, t) => seen.push([m, t]) });
    assert.deepEqual(seen, [[1, 4], [2, 4], [3, 4], [4, 4]]);
  });
});

// ------------------------------------------------------------------------------------------------
// A slow trainer that recounts every pair before each merge, on binary strings (one char per byte,
// so JavaScript's string order is the unsigned byte order). Independent of the incremental one.

function naiveMerges(counts: PretokenCounts, wanted: number): [string, string][] {
  const encoder = new TextEncoder();
  const words = [...counts].map(([w, freq]) => ({ symbols: Array.from(encoder.encode(w), (b) => String.fromCharCode(b)), freq }));
  const tokens = new Set<string>();
  const merges: [string, string][] = [];
  while (tokens.size < wanted) {
    const pairs = new Map<string, { a: string; b: string; count: number }>();
    for (const { symbols, freq } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = JSON.stringify([symbols[i], symbols[i + 1]]);
        const p = pairs.get(key) ?? { a: symbols[i], b: symbols[i + 1], count: 0 };
        p.count += freq;
        pairs.set(key, p);
      }
    }
    let best: { a: string; b: string; count: number } | undefined;
    for (const p of pairs.values()) {
      if (!best || p.count > best.count || (p.count === best.count && (p.a > best.a || (p.a === best.a && p.b > best.b)))) best = p;
    }
    if (!best) break;
    merges.push([best.a, best.b]);
    tokens.add(best.a + best.b);
    for (const word of words) {
      const out: string[] = [];
      for (let i = 0; i < word.symbols.length; i++) {
        if (i + 1 < word.symbols.length && word.symbols[i] === best.a && word.symbols[i + 1] === best.b) {
          out.push(best.a + best.b);
          i++;
        } else out.push(word.symbols[i]);
      }
      word.symbols = out;
    }
  }
  return merges;
}

describe('trainBpe: the incremental algorithm matches a full recount', () => {
  test('seeded random texts over small alphabets', () => {
    const rng = new Rng(20240611);
    const alphabets = ['ab', 'ab ', 'abc .', 'aab\n ', 'xyé€ ', "a's "];
    for (let trial = 0; trial < 150; trial++) {
      const alphabet = [...alphabets[trial % alphabets.length]];
      const length = 1 + rng.int(200);
      let s = '';
      for (let i = 0; i < length; i++) s += alphabet[rng.int(alphabet.length)];
      const vocabSize = 256 + 1 + rng.int(60);
      const counts = countPretokens(s);
      const fast = trainBpeFromCounts(counts, { vocabSize }).merges.map(([a, b]) => [latin1(a), latin1(b)]);
      const slow = naiveMerges(counts, vocabSize - 256);
      assert.deepEqual(fast, slow, `trial ${trial}: ${JSON.stringify(s)} vocab ${vocabSize}`);
    }
  });
});

describe('compareBytes', () => {
  test('unsigned, a proper prefix is smaller', () => {
    assert.ok(compareBytes(Uint8Array.of(0x80), Uint8Array.of(0x7f)) > 0);
    assert.ok(compareBytes(Uint8Array.of(1), Uint8Array.of(1, 0)) < 0);
    assert.equal(compareBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2)), 0);
  });
});

describe('bpeToVocab', () => {
  test('a gpt2 VocabSpec: bytes-to-unicode tokens and merges, CONTROL specials, <|endoftext|> as BOS and EOS', () => {
    const r = trainBpe('hello hello world<|endoftext|>hello', { vocabSize: 262, specialTokens: ['<|endoftext|>', '<pad>'] });
    const v = bpeToVocab(r);
    assert.equal(v.model, 'gpt2');
    assert.equal(v.pre, 'gpt-2');
    assert.equal(v.tokens.length, 262);
    assert.deepEqual(v.tokens.slice(0, 2), ['<|endoftext|>', '<pad>']);
    assert.equal(v.tokens[2], '!'); // the first byte in GPT-2's order
    assert.deepEqual(Array.from(v.types!.slice(0, 3)), [TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL, TOKEN_TYPE.NORMAL]);
    assert.equal(new Set(v.tokens.slice(2)).size, 260, 'byte tokens are the 256 bytes-to-unicode characters');
    assert.equal(v.merges!.length, r.merges.length);
    assert.equal(v.merges![0], 'l o');
    assert.ok(v.tokens.includes('Ġ'), 'the space byte is Ġ');
    for (let i = 0; i < r.merges.length; i++) {
      const [left, right] = v.merges![i].split(' ');
      assert.deepEqual([unicodeToBytes(left), unicodeToBytes(right)], r.merges[i]);
      assert.ok(v.tokens.includes(left + right), `merge ${i} makes a token`);
    }
    assert.equal(v.bos, 0);
    assert.equal(v.eos, 0);
    const noBos = bpeToVocab(r, { bosEos: null });
    assert.equal(noBos.bos, undefined);
    assert.equal(bpeToVocab(r, { bosEos: '<pad>' }).eos, 1);
    assert.throws(() => bpeToVocab(r, { bosEos: '<s>' }), /not one of the special tokens/);
    assert.equal(bpeToVocab(trainBpe('ab', { vocabSize: 257 })).bos, undefined);
  });

  test('the VocabSpec makes a working tokenizer: valid, learned tokens used, text round-trips', () => {
    const training = 'the quick brown fox jumps over the lazy dog. '.repeat(20) + 'Ünïcödé — 日本語 ✓';
    const spec = bpeToVocab(trainBpe(training, { vocabSize: 320, specialTokens: ['<|endoftext|>'] }));
    validateVocab(spec, 'trained vocab');
    const tok = tokenizerFromVocab(spec);
    const sample = 'the lazy fox — over the quick dog ✓ (unseen: Zebra 42)\n';
    const ids = tok.encode(sample);
    assert.equal(decodeText(tok, ids), sample);
    assert.ok(Array.from(ids).some((id) => id >= 257), 'some learned token is used');
    assert.ok(ids.length < new TextEncoder().encode(sample).length / 2, `${ids.length} ids: merges compress`);
  });
});
