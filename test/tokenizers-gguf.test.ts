// Tokenizers built from vocabularies: GGUF tokenizer.ggml.* metadata both ways, llama.cpp's SentencePiece
// BPE, byte-level BPE and WordPiece checked id for id against llama.cpp's own test vectors, and llama2.c's
// tokenizer file with run.c's printing rules checked against the recorded stories260K output.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type GgufValue, gguf, readGguf, writeGguf } from '../src/formats/gguf.js';
import { ByteTokenizer } from '../src/tokenizers/byte.js';
import { tokenizerFromVocab } from '../src/tokenizers/from-vocab.js';
import { Gpt2Tokenizer, byteToUnicode, byteVocab } from '../src/tokenizers/gpt2.js';
import {
  decodeLlama2c, decodePieceLlama2c, readLlama2cTokenizer, writeLlama2cTokenizer,
} from '../src/tokenizers/llama2c-tokenizer.js';
import { SpmTokenizer } from '../src/tokenizers/spm.js';
import { TokenStreamDecoder, type Tokenizer } from '../src/tokenizers/tokenizer.js';
import { vocabFromGguf, vocabToGguf } from '../src/io/vocab-gguf.js';
import { TOKEN_TYPE, type VocabSpec, VocabError, validateVocab } from '../src/tokenizers/vocab.js';
import { WordPieceTokenizer, bertWords } from '../src/tokenizers/wordpiece.js';

// From dist/test/: ../../ is the repository root; the fixtures sit beside it.
const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const VOCAB_DIR = join(FIXTURES, 'models/llamacpp-vocab');
const STORIES_DIR = join(FIXTURES, 'models/stories260K');
const TOK512 = join(STORIES_DIR, 'tok512.bin');
const SHAKESPEARE = join(FIXTURES, 'corpora/tinyshakespeare/input.txt');
const TEST_INPUTS = join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf.inp');

function missing(...paths: string[]): string | false {
  const absent = paths.find((p) => !existsSync(p));
  return absent ? `fixture ${absent} is absent (see ../shared/fixtures/README.md)` : false;
}

const utf8 = new TextEncoder();
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** Asserts that `fn` throws a VocabError whose message starts with `source: ` and matches `re`. */
function throwsVocab(fn: () => unknown, source: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VocabError, `expected a VocabError, got ${String(e)}`);
    assert.ok(e.message.startsWith(`${source}: `), `message should name ${source}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

/** Writes the vocabulary's metadata to GGUF bytes and reads it back. */
function throughGguf(entries: [string, GgufValue][], fileName = 'vocab.gguf'): VocabSpec {
  return vocabFromGguf(readGguf(writeGguf(entries, []), fileName));
}

// ------------------------------------------------------------------------------------------------
// Small vocabularies built by hand

const BYTE_TOKENS = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

/** A SentencePiece vocabulary: unk, BOS, EOS, 256 byte tokens, then pieces with their scores. */
function spmVocab(pieces: [string, number][], extra: Partial<VocabSpec> = {}): VocabSpec {
  const tokens = ['<unk>', '<s>', '</s>', ...BYTE_TOKENS, ...pieces.map(([p]) => p)];
  const scores = Float32Array.from(tokens, (_, i) => (i < 259 ? 0 : pieces[i - 259][1]));
  const types = Int32Array.from(tokens, (_, i) =>
    i === 0 ? TOKEN_TYPE.UNKNOWN : i < 3 ? TOKEN_TYPE.CONTROL : i < 259 ? TOKEN_TYPE.BYTE : TOKEN_TYPE.NORMAL);
  return { model: 'llama', tokens, scores, types, unk: 0, bos: 1, eos: 2, addBos: true, addEos: false, ...extra };
}

/** A byte-level BPE vocabulary: the 256 byte tokens, the merged tokens in merge order, then <|endoftext|>. */
function gpt2Vocab(merges: string[], pre = 'gpt-2'): VocabSpec {
  const merged = merges.map((m) => m.replace(' ', ''));
  const tokens = [...byteToUnicode(), ...merged, '<|endoftext|>'];
  const types = Int32Array.from(tokens, (_, i) => (i === tokens.length - 1 ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.NORMAL));
  return { model: 'gpt2', tokens, types, merges, pre, bos: tokens.length - 1, eos: tokens.length - 1 };
}

function bertVocab(): VocabSpec {
  const tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '▁hello', '▁world', '▁un', 'aff', 'able', '▁!', '▁,', '▁cafe', '▁中', '▁a', 'b'];
  const types = Int32Array.from(tokens, (t) => (t.startsWith('[') ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.NORMAL));
  return { model: 'bert', tokens, types, pad: 0, unk: 1, bos: 2, sep: 3 };
}

const ids = (tok: Tokenizer, s: string, opts = {}): number[] => Array.from(tok.encode(s, opts));

// ------------------------------------------------------------------------------------------------

describe('VocabSpec <-> GGUF metadata', () => {
  const kinds: [string, VocabSpec][] = [
    ['byte', byteVocab()],
    ['llama', spmVocab([['▁', -1], ['ab', -2], ['▁ab', -3]], { addSpacePrefix: false, pre: 'default' })],
    ['gpt2', gpt2Vocab(['a b', 'Ġ ab'])],
    ['bert', bertVocab()],
  ];
  for (const [kind, spec] of kinds) {
    test(`${kind}: vocabToGguf -> writeGguf -> readGguf -> vocabFromGguf gives the vocabulary back`, () => {
      assert.deepEqual(throughGguf(vocabToGguf(spec)), spec);
    });
  }

  test("byte: written as a gpt2 vocabulary without merges, marked stlm.tokenizer = 'byte'", () => {
    const meta = new Map(vocabToGguf(byteVocab()));
    assert.deepEqual(meta.get('tokenizer.ggml.model'), gguf.str('gpt2'));
    assert.deepEqual(meta.get('tokenizer.ggml.merges'), gguf.arr('string', []));
    assert.deepEqual(meta.get('stlm.tokenizer'), gguf.str('byte'));
    assert.equal((meta.get('tokenizer.ggml.tokens')!.value as string[])[32], 'Ġ');
    assert.ok(tokenizerFromVocab(byteVocab()) instanceof ByteTokenizer);
  });

  test('bert: a missing bos id falls back to tokenizer.ggml.cls_token_id; sep uses llama.cpp spelling', () => {
    const entries = vocabToGguf({ ...bertVocab(), bos: undefined });
    assert.ok(entries.some(([k]) => k === 'tokenizer.ggml.seperator_token_id'));
    entries.push(['tokenizer.ggml.cls_token_id', gguf.u32(2)]);
    assert.equal(throughGguf(entries).bos, 2);
  });

  const base = (): Map<string, GgufValue> => new Map(vocabToGguf(spmVocab([['ab', -1]])));
  const broken: [string, (m: Map<string, GgufValue>) => void, RegExp][] = [
    ['tokens missing', (m) => m.delete('tokenizer.ggml.tokens'), /^bad\.gguf: tokenizer\.ggml\.tokens is missing$/],
    ['model missing', (m) => m.delete('tokenizer.ggml.model'), /tokenizer\.ggml\.model is missing/],
    ['unknown model', (m) => m.set('tokenizer.ggml.model', gguf.str('t5')), /tokenizer\.ggml\.model 't5' is not supported \(supported: llama, gpt2, bert\)/],
    ['tokens of the wrong type', (m) => m.set('tokenizer.ggml.tokens', gguf.arr('i32', [1, 2])), /tokenizer\.ggml\.tokens should be an array of strings, found an array of i32/],
    ['scores too short', (m) => m.set('tokenizer.ggml.scores', gguf.arr('f32', [0, 1])), /tokenizer\.ggml\.scores has 2 values for 260 tokens/],
    ['token types too long', (m) => m.set('tokenizer.ggml.token_type', gguf.arr('i32', new Int32Array(261))), /tokenizer\.ggml\.token_type has 261 values for 260 tokens/],
    ['bos outside the vocabulary', (m) => m.set('tokenizer.ggml.bos_token_id', gguf.u32(260)), /tokenizer\.ggml\.bos_token_id 260 is outside the 260 tokens/],
    ['add_bos_token not a bool', (m) => m.set('tokenizer.ggml.add_bos_token', gguf.u8(1)), /tokenizer\.ggml\.add_bos_token should be a bool, found u8/],
    ['merges with an unknown token', (m) => m.set('tokenizer.ggml.merges', gguf.arr('string', ['ab zz'])), /tokenizer\.ggml\.merges is invalid: merge 0 'ab zz' uses 'zz', which is not a token/],
    ['malformed merge', (m) => m.set('tokenizer.ggml.merges', gguf.arr('string', ['ab'])), /merge 0 'ab' is not of the form 'left right'/],
    ['gpt2 without merges', (m) => { m.set('tokenizer.ggml.model', gguf.str('gpt2')); m.delete('tokenizer.ggml.merges'); }, /tokenizer\.ggml\.merges is missing/],
    ['byte marker on a llama vocabulary', (m) => m.set('stlm.tokenizer', gguf.str('byte')), /stlm\.tokenizer is 'byte' but tokenizer\.ggml\.model is 'llama'/],
  ];
  for (const [name, breakIt, re] of broken) {
    test(`bad metadata: ${name} -> an error naming the file and the key`, () => {
      const m = base();
      breakIt(m);
      throwsVocab(() => throughGguf([...m], 'bad.gguf'), 'bad.gguf', re);
    });
  }

  test('validateVocab and tokenizerFromVocab reject inconsistent vocabularies', () => {
    throwsVocab(() => validateVocab({ model: 'llama', tokens: [] }, 'v'), 'v', /no tokens/);
    throwsVocab(() => validateVocab({ model: 'xx' as 'llama', tokens: ['a'] }, 'v'), 'v', /unknown tokenizer model 'xx'/);
    throwsVocab(() => validateVocab({ model: 'llama', tokens: ['a'], eos: 1 }, 'v'), 'v', /eos id 1 is outside \[0, 1\)/);
    throwsVocab(() => tokenizerFromVocab({ ...byteVocab(), tokens: [...byteVocab().tokens, 'x'], types: undefined }), 'vocabulary', /'byte' vocabulary has 259 tokens, this one 260/);
    throwsVocab(() => tokenizerFromVocab({ ...byteVocab(), bos: 1 }), 'vocabulary', /bos id is 1, expected 256/);
    throwsVocab(() => vocabToGguf({ model: 'byte', tokens: ['a'] }), 'vocabulary', /259 tokens/);
    throwsVocab(() => new Gpt2Tokenizer({ ...gpt2Vocab([]), pre: 'llama-bpe' }), 'vocabulary', /pre-tokenizer 'llama-bpe' is not supported \(supported: gpt-2, default\)/);
  });
});

describe('SpmTokenizer (hand-made vocabulary)', () => {
  const spec = spmVocab([['▁', -1], ['a', -2], ['b', -3], ['ab', -4], ['▁ab', -5], ['ba', -4], ['▁a', -10]]);
  const tok = new SpmTokenizer(spec);
  const id = (t: string): number => spec.tokens.indexOf(t);

  test('prefixes a space, merges best score first, leftmost on ties', () => {
    // "▁ab": ▁a (-10) vs ab (-4): ab first, then ▁ + ab = ▁ab.
    assert.deepEqual(ids(tok, 'ab'), [id('▁ab')]);
    // "▁aba": ab (-4) and ba (-4) tie: the leftmost (ab) wins, then ▁ab; the last a stays.
    assert.deepEqual(ids(tok, 'aba'), [id('▁ab'), id('a')]);
    assert.deepEqual(ids(tok, ''), []);
    assert.deepEqual(ids(tok, '', { bos: true, eos: true }), [1, 2]);
    assert.deepEqual(ids(tok, 'b', { bos: true }), [1, id('▁'), id('b')]);
  });

  test('characters without a token fall back to their UTF-8 bytes; without byte tokens to unk', () => {
    assert.deepEqual(ids(tok, 'é'), [id('▁'), 3 + 0xc3, 3 + 0xa9]);
    const noBytes: VocabSpec = { model: 'llama', tokens: ['<unk>', '▁', 'a'], unk: 0 };
    assert.deepEqual(ids(new SpmTokenizer(noBytes), 'aé'), [1, 2, 0, 0]);
    assert.throws(() => new SpmTokenizer({ ...noBytes, unk: undefined }).encode('é'), /no token <0xC3> and no unknown token/);
  });

  test('decode: ▁ is a space (kept), bytes are bytes, control tokens are nothing; detokenize drops the prefix', () => {
    const enc = tok.encode('ab é', { bos: true, eos: true });
    assert.equal(text(tok.decode(enc)), ' ab é');
    assert.equal(text(tok.detokenize(tok.encode('ab é'))), 'ab é');
    assert.equal(text(tok.detokenize(enc)), ' ab é', 'as in llama.cpp, a leading BOS uses up the strip');
    assert.equal(tok.tokenBytes(1).length, 0);
    assert.throws(() => tok.tokenBytes(spec.tokens.length), RangeError);
  });

  test('addSpacePrefix = false encodes the text as it is', () => {
    const plain = new SpmTokenizer({ ...spec, addSpacePrefix: false });
    assert.deepEqual(ids(plain, 'ab'), [id('ab')]);
    assert.equal(text(plain.detokenize(plain.encode('ab'))), 'ab');
  });
});

describe('Gpt2Tokenizer (hand-made vocabulary)', () => {
  test('merges lowest rank first on pre-tokens spelled in bytes-to-unicode', () => {
    const spec = gpt2Vocab(['l l', 'h e', 'he ll', 'hell o', 'Ġ w', 'Ġw o']);
    const tok = new Gpt2Tokenizer(spec);
    const id = (t: string): number => spec.tokens.indexOf(t);
    assert.deepEqual(ids(tok, 'hello wo'), [id('hello'), id('Ġwo')]);
    assert.deepEqual(ids(tok, 'hello', { bos: true, eos: true }), [spec.bos, id('hello'), spec.eos]);
    // Special tokens are not parsed out of the text.
    assert.deepEqual(ids(tok, '<|endoftext|>').includes(spec.eos!), false);
    assert.equal(text(tok.decode(tok.encode('hello wo\u00ff\n', { bos: true }))), 'hello wo\u00ff\n');
  });

  test("pre-tokenizer 'gpt-2' keeps digit runs whole; llama.cpp's 'default' splits them into threes", () => {
    const merges = ['1 2', '12 3', '123 4'];
    assert.deepEqual(ids(new Gpt2Tokenizer(gpt2Vocab(merges, 'gpt-2')), '1234'), [258]);
    assert.deepEqual(ids(new Gpt2Tokenizer(gpt2Vocab(merges, 'default')), '1234'), [257, 0x34]);
  });
});

describe('WordPieceTokenizer (hand-made vocabulary)', () => {
  const spec = bertVocab();
  const tok = new WordPieceTokenizer(spec);
  const id = (t: string): number => spec.tokens.indexOf(t);

  test('lowercases, drops accents, splits punctuation and CJK, longest match first, unknown words as [UNK]', () => {
    assert.deepEqual(bertWords('Hello,  CAFÉ!中\u0007x'), ['hello', ',', 'cafe', '!', '中', 'x']);
    assert.deepEqual(ids(tok, 'Hello, world! Unaffable café 中'), [
      id('▁hello'), id('▁,'), id('▁world'), id('▁!'), id('▁un'), id('aff'), id('able'), id('▁cafe'), id('▁中'),
    ]);
    assert.deepEqual(ids(tok, 'ab abc'), [id('▁a'), id('b'), 1]);
    assert.deepEqual(ids(tok, 'hello', { bos: true, eos: true }), [2, id('▁hello'), 3]);
    assert.equal(text(tok.decode(tok.encode('hello world', { bos: true }))), ' hello world');
  });
});

// ------------------------------------------------------------------------------------------------
// llama.cpp's tokenizer test vectors

/** llama.cpp's vocabulary files and the tokenizer model each holds. */
const ORACLES: [string, VocabSpec['model']][] = [['llama-spm', 'llama'], ['gpt-2', 'gpt2'], ['bert-bge', 'bert']];

describe("llama.cpp's ggml-vocab-*.gguf test vectors", () => {
  const inputs = (): string[] => {
    const pieces = readFileSync(TEST_INPUTS, 'utf8').split('\n__ggml_vocab_test__\n');
    assert.equal(pieces.pop(), '', 'the file ends with a separator');
    return pieces;
  };

  for (const [name, model] of ORACLES) {
    const gguf = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
    const out = `${gguf}.out`;
    const skip = missing(TEST_INPUTS, gguf, out);
    test(`${name}: all 46 strings encode to llama.cpp's ids (no BOS / EOS)`, { skip }, () => {
      const vocab = vocabFromGguf(readGguf(new Uint8Array(readFileSync(gguf)), gguf));
      assert.equal(vocab.model, model);
      const tok = tokenizerFromVocab(vocab);
      const expected = readFileSync(out, 'utf8').split('\n');
      const strings = inputs();
      assert.equal(strings.length, 46);
      const failures = strings.flatMap((s, i) => {
        const got = ids(tok, s).map((x) => ` ${x}`).join('');
        return got === expected[i] ? [] : [`#${i} ${JSON.stringify(s)}: expected '${expected[i]}', got '${got}'`];
      });
      assert.deepEqual(failures, []);
    });
  }

  test('gpt-2: decode(encode(s)) gives every string back exactly', { skip: missing(TEST_INPUTS, join(VOCAB_DIR, 'ggml-vocab-gpt-2.gguf')) }, () => {
    const path = join(VOCAB_DIR, 'ggml-vocab-gpt-2.gguf');
    const tok = tokenizerFromVocab(vocabFromGguf(readGguf(new Uint8Array(readFileSync(path)), path)));
    for (const s of inputs()) {
      assert.deepEqual(tok.decode(tok.encode(s)), utf8.encode(s), JSON.stringify(s));
      const stream = new TokenStreamDecoder(tok);
      assert.equal(Array.from(tok.encode(s), (t) => stream.push(t)).join('') + stream.flush(), s);
    }
  });

  test('llama-spm: decode(encode(s)) is s after the one added space; detokenize gives s', { skip: missing(TEST_INPUTS, join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf')) }, () => {
    const path = join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf');
    const tok = tokenizerFromVocab(vocabFromGguf(readGguf(new Uint8Array(readFileSync(path)), path)));
    assert.ok(tok instanceof SpmTokenizer);
    for (const s of inputs()) {
      const enc = tok.encode(s);
      assert.deepEqual(tok.decode(enc), utf8.encode(s === '' ? '' : ` ${s}`), JSON.stringify(s));
      assert.deepEqual(tok.detokenize(enc), utf8.encode(s), JSON.stringify(s));
    }
  });

  for (const name of ['llama-spm', 'gpt-2']) {
    const path = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
    test(`${name}: vocabToGguf(vocabFromGguf(file)) rewrites the file byte for byte`, { skip: missing(path) }, () => {
      const bytes = new Uint8Array(readFileSync(path));
      const file = readGguf(bytes, path);
      const others = [...file.metadata].filter(([k]) => !k.startsWith('tokenizer.ggml.'));
      assert.deepEqual(writeGguf([...others, ...vocabToGguf(vocabFromGguf(file))], []), bytes);
    });
  }

  test('tinyshakespeare (1.1 MB): gpt-2 and llama-spm encode it in well under 5 s and decode it back exactly',
    { skip: missing(SHAKESPEARE, join(VOCAB_DIR, 'ggml-vocab-gpt-2.gguf'), join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf')) }, (t) => {
      const corpus = readFileSync(SHAKESPEARE, 'utf8');
      for (const name of ['gpt-2', 'llama-spm']) {
        const path = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
        const tok = tokenizerFromVocab(vocabFromGguf(readGguf(new Uint8Array(readFileSync(path)), path)));
        const t0 = performance.now();
        const enc = tok.encode(corpus);
        const ms = performance.now() - t0;
        t.diagnostic(`${name}: ${enc.length} tokens in ${ms.toFixed(0)} ms`);
        assert.ok(ms < 5000, `${name} took ${ms.toFixed(0)} ms`);
        const back = tok instanceof SpmTokenizer ? tok.detokenize(enc) : tok.decode(enc);
        assert.ok(Buffer.from(back).equals(Buffer.from(corpus)), `${name}: the corpus does not round-trip`);
      }
    });
});

// ------------------------------------------------------------------------------------------------
// llama2.c

/** A llama2.c tokenizer file from pieces (written by hand, independently of writeLlama2cTokenizer). */
function llama2cFile(pieces: string[], maxLength = 8, scores?: number[]): Uint8Array {
  const parts: number[] = [];
  const i32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); parts.push(...b); };
  const f32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); parts.push(...b); };
  i32(maxLength);
  pieces.forEach((p, i) => {
    const b = utf8.encode(p);
    f32(scores?.[i] ?? -i);
    i32(b.length);
    parts.push(...b);
  });
  return Uint8Array.from(parts);
}

describe('llama2.c tokenizer file', () => {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', ...BYTE_TOKENS, ' ', 'a', ' a', 'é'];

  test('reads as a llama vocabulary (▁ for space, <s> / </s>, typed) and writes back byte for byte', () => {
    const bytes = llama2cFile(pieces, 6);
    const spec = readLlama2cTokenizer(bytes, 'tok.bin', pieces.length);
    assert.equal(spec.model, 'llama');
    assert.deepEqual(spec.tokens.slice(0, 3), ['<unk>', '<s>', '</s>']);
    assert.deepEqual(spec.tokens.slice(259), ['▁', 'a', '▁a', 'é']);
    assert.deepEqual([spec.unk, spec.bos, spec.eos, spec.addSpacePrefix], [0, 1, 2, true]);
    assert.deepEqual(Array.from(spec.types!.slice(0, 4)), [TOKEN_TYPE.UNKNOWN, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL, TOKEN_TYPE.BYTE]);
    assert.equal(spec.types![260], TOKEN_TYPE.NORMAL);
    assert.deepEqual(writeLlama2cTokenizer(spec), bytes);
    assert.deepEqual(readLlama2cTokenizer(writeLlama2cTokenizer(throughGguf(vocabToGguf(spec))), 'x', pieces.length), spec);
  });

  test("run.c's printing: no space after BOS, raw bytes for <0xXX>, unprintable single bytes skipped", () => {
    const spec = readLlama2cTokenizer(llama2cFile(pieces), 'tok.bin', pieces.length);
    const show = (prev: number, id: number): string => text(decodePieceLlama2c(spec, prev, id));
    assert.equal(show(1, 261), 'a');
    assert.equal(show(260, 261), ' a');
    assert.equal(show(1, 3 + 0x41), 'A');
    assert.equal(show(1, 3 + 0x0a), '\n');
    assert.equal(show(1, 3 + 0x07), '');
    assert.equal(show(1, 3 + 0xc3), '', 'a lone byte >= 0x80 is not printable in the C locale');
    assert.equal(show(1, 262), 'é');
    assert.equal(show(5, 2), '\n</s>\n');
    assert.equal(text(decodeLlama2c(spec, [261, 261, 3 + 0x21])), 'a a!');
  });

  const bad: [string, () => Uint8Array, number, RegExp][] = [
    ['too short for the header', () => new Uint8Array(3), 1, /truncated: 3 bytes/],
    ['negative max_token_length', () => llama2cFile(['a'], -1), 1, /max_token_length is -1/],
    ['fewer tokens than the vocabulary', () => llama2cFile(['a', 'b']), 3, /truncated: 3 tokens need at least 28 bytes/],
    ['a token cut short', () => llama2cFile(['a', 'bcd']).subarray(0, 23), 2, /token 1 is 3 bytes long at offset 21, past the end of the file \(23 bytes\)/],
    ['a negative length', () => { const b = llama2cFile(['a', 'b']); b.set([0xff, 0xff, 0xff, 0xff], 17); return b; }, 2, /token 1 has a negative length -1/],
    ['a huge length', () => { const b = llama2cFile(['a', 'b']); b.set([0xff, 0xff, 0xff, 0x7f], 17); return b; }, 2, /token 1 is 2147483647 bytes long/],
    ['more tokens than the vocabulary', () => llama2cFile(['a', 'b', 'c']), 2, /9 bytes follow the 2 tokens/],
    ['invalid UTF-8', () => { const b = llama2cFile(['a', 'b']); b[21] = 0xff; return b; }, 2, /token 1 \(offset 21\) is not valid UTF-8/],
  ];
  for (const [name, make, vocabSize, re] of bad) {
    test(`bad file: ${name} -> an error naming the file`, () => {
      throwsVocab(() => readLlama2cTokenizer(make(), 'tok.bin', vocabSize), 'tok.bin', re);
    });
  }

  test('writing refuses vocabularies run.c cannot use', () => {
    throwsVocab(() => writeLlama2cTokenizer(gpt2Vocab([])), 'vocabulary', /SentencePiece-style \('llama'\), not 'gpt2'/);
    throwsVocab(() => writeLlama2cTokenizer(spmVocab([], { bos: 2, eos: 1 })), 'vocabulary', /run\.c hard-codes bos id 1, this vocabulary's is 2/);
  });

  test('tok512.bin: rewrites byte for byte; "Once upon a time" encodes as llama2.c does', { skip: missing(TOK512) }, () => {
    const bytes = new Uint8Array(readFileSync(TOK512));
    const spec = readLlama2cTokenizer(bytes, TOK512, 512);
    assert.deepEqual(writeLlama2cTokenizer(spec), bytes);
    const tok = new SpmTokenizer(spec);
    assert.deepEqual(ids(tok, 'Once upon a time', { bos: true }), [1, 403, 407, 261, 378]);
    throwsVocab(() => readLlama2cTokenizer(bytes, TOK512, 511), TOK512, /bytes follow the 511 tokens/);
  });

  for (const steps of ['200', '256']) {
    const idsFile = join(STORIES_DIR, `expected_llama2c_t0_n${steps}.ids.txt`);
    const textFile = join(STORIES_DIR, `expected_llama2c_t0_n${steps}.txt`);
    test(`stories260K: run.c's greedy ${steps}-token output decodes to the recorded text byte for byte`, { skip: missing(TOK512, idsFile, textFile) }, () => {
      const spec = readLlama2cTokenizer(new Uint8Array(readFileSync(TOK512)), TOK512, 512);
      const generated = readFileSync(idsFile, 'utf8').trim().split(/\s+/).map(Number);
      assert.equal(generated.length, Number(steps));
      assert.deepEqual(decodeLlama2c(spec, generated), new Uint8Array(readFileSync(textFile)));
    });
  }
});
