// Models moving between formats, checked against implementations nobody here wrote:
// - llama2.c: stories260K greedy output equals run.c's recorded stdout and token ids;
// - llama.cpp (node-llama-cpp 3.21.1): the tiny-random GGUF's next-token log-probabilities, and the
//   greedy text of models stlm exports to GGUF (stories260K, a byte-level model);
// - round trips GGUF <-> llama2.c <-> Hugging Face keep every weight bit for bit;
// - malformed llama2.c checkpoints give clear errors (hand-made cases and a seeded fuzz).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import { type LlamaCppModel, openLlamaCpp } from '../src/interop/llamacpp.js';
import { createBackend } from '../src/kernels/index.js';
import type { Backend } from '../src/kernels/backend.js';
import { Llama2cError, readLlama2c, readLlama2cHeader, writeLlama2c } from '../src/formats/llama2c.js';
import { readLlama2cModel, writeLlama2cModel } from '../src/io/llama2c.js';
import { exportModel } from '../src/io/export.js';
import { PRESETS } from '../src/models/config.js';
import { type LoadedModel, loadModel, parseGgufModel, saveModel } from '../src/io/model-file.js';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2cTokenizer } from '../src/tokenizers/llama2c-tokenizer.js';
import { bpeToVocab, trainBpe } from '../src/tokenizers/bpe-train.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';
import { forwardLogits, greedyIds, logSoftmaxRows, maxAbsDiff } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const S260 = join(FIXTURES, 'models/stories260K');
const STORIES = join(S260, 'stories260K.bin');
const TOK512 = join(S260, 'tok512.bin');
const TINY_RANDOM = join(FIXTURES, 'models/tiny-random-llama/llama-2-tiny-random.gguf');
const SHAKESPEARE = join(FIXTURES, 'corpora/tinyshakespeare/input.txt');
const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

const absent = (p: string) => (existsSync(p) ? false : `fixture ${p} is absent (see ../shared/fixtures/README.md)`);
const ids = (path: string) => readFileSync(path, 'utf8').trim().split(/\s+/).map(Number);

let be: Backend;
let dir: string;
before(async () => {
  be = await createBackend('wasm', { threads: 1 });
  dir = mkdtempSync(join(tmpdir(), 'stlm-formats-'));
});
after(() => {
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Greedy ids after `prompt` (ids), with the KV cache, argmax taking the first maximum as run.c does. */
function greedy(m: LoadedModel, prompt: number[], n: number): number[] {
  const g = new Graph(be);
  const out = greedyIds(new Llama(g, m.config, m.weights), prompt, n);
  g.release();
  return out;
}

/** Log-softmax of every position of `ids` (fresh cache), as float64 rows. */
function logProbs(m: LoadedModel, input: number[]): Float64Array[] {
  return logSoftmaxRows(forwardLogits(new Llama(new Graph(be), m.config, m.weights), input), m.config.vocabSize);
}

function sameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, w] of a) assert.ok(Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(b.get(name)!.buffer, b.get(name)!.byteOffset, b.get(name)!.byteLength)), `tensor ${name} differs`);
}

describe('llama2.c: stories260K against run.c', { skip: absent(STORIES) || absent(TOK512) }, () => {
  test('greedy from BOS gives run.c\'s 200 token ids', async () => {
    const m = await loadModel(STORIES, { tokenizer: TOK512 });
    assert.equal(m.format, 'llama2c');
    assert.deepEqual(greedy(m, [1], 200), ids(join(S260, 'expected_llama2c_t0_n200.ids.txt')));
  });

  test('"Once upon a time" encodes and continues as recorded', async () => {
    const m = await loadModel(STORIES); // tok512.bin is found beside the model
    const prompt = Array.from(m.tokenizer.encode('Once upon a time', { bos: true }));
    assert.deepEqual(prompt, [1, 403, 407, 261, 378]);
    assert.deepEqual(greedy(m, prompt, 16), [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]);
    const g = new Graph(be);
    const r = generate(new Llama(g, m.config, m.weights), m.tokenizer, 'Once upon a time', { maxTokens: 16, temperature: 0, addBos: true });
    assert.equal(r.text, ', there was a little girl named Lily. She loved to play');
  });

  test('`stlm generate` prints run.c\'s stdout byte for byte', () => {
    const r = spawnSync(process.execPath, [CLI, 'generate', '--model', STORIES, '--tokenizer', TOK512, '--temperature', '0', '--max-tokens', '200', '--threads', '1'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // run.c ends with one newline, which the recording strips; stlm does the same.
    assert.equal(r.stdout, readFileSync(join(S260, 'expected_llama2c_t0_n200.txt'), 'utf8') + '\n');
  });

  test('write(read(file)) keeps every weight; the legacy layout is run.c\'s', () => {
    const bytes = new Uint8Array(readFileSync(STORIES));
    const m = readLlama2cModel(bytes, STORIES);
    const again = writeLlama2cModel(m.config, m.weights);
    assert.equal(again.length, bytes.length);
    sameWeights(readLlama2cModel(again, 'rewritten').weights, m.weights);
    // The header and every weight are identical; only run.c's unused freq_cis tables are recomputed.
    assert.ok(Buffer.from(again.subarray(0, 28)).equals(Buffer.from(bytes.subarray(0, 28))));
  });

  test('the byte container: header fields as read, run.c\'s tensors, and write(read(file)) is the file', () => {
    const bytes = new Uint8Array(readFileSync(STORIES));
    const file = readLlama2c(bytes, STORIES);
    assert.deepEqual(file.header, readLlama2cHeader(bytes, STORIES));
    assert.deepEqual({ ...file.header }, { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true, version: 0 });
    assert.deepEqual([...file.tensors.keys()], ['token_embedding_table', 'rms_att_weight', 'wq', 'wk', 'wv', 'wo', 'rms_ffn_weight', 'w1', 'w2', 'w3', 'rms_final_weight', 'freq_cis_real', 'freq_cis_imag']);
    assert.equal(file.tensors.get('wk')!.length, 5 * 32 * 64);
    assert.ok(Buffer.from(writeLlama2c(file.header, file.tensors)).equals(Buffer.from(bytes)));
    // The model writer's bytes are the container's with export.py's freq_cis tables.
    const m = readLlama2cModel(bytes, STORIES);
    const tensors = new Map(file.tensors);
    tensors.delete('freq_cis_real');
    tensors.delete('freq_cis_imag');
    assert.ok(Buffer.from(writeLlama2c(file.header, tensors)).equals(Buffer.from(writeLlama2cModel(m.config, m.weights))));
  });
});

describe('llama2.c reader: bad input', () => {
  const small = () => {
    const cfg = { vocabSize: 16, dModel: 8, nLayers: 1, nHeads: 2, nKvHeads: 1, mlpHidden: 12, ctx: 8, tieEmbeddings: false, ropeTheta: 10000, normEps: 1e-5, dropout: 0 };
    const w = new Map<string, Float32Array>();
    const rng = new Rng(3);
    for (const [name, n] of [['token_embd.weight', 128], ['blk.0.attn_norm.weight', 8], ['blk.0.attn_q.weight', 64], ['blk.0.attn_k.weight', 32], ['blk.0.attn_v.weight', 32], ['blk.0.attn_output.weight', 64], ['blk.0.ffn_norm.weight', 8], ['blk.0.ffn_gate.weight', 96], ['blk.0.ffn_up.weight', 96], ['blk.0.ffn_down.weight', 96], ['output_norm.weight', 8], ['output.weight', 128]] as const) {
      w.set(name, Float32Array.from({ length: n }, () => rng.normal()));
    }
    return { cfg, w, bytes: writeLlama2cModel(cfg, w) };
  };
  const rejects = (bytes: Uint8Array, re: RegExp) =>
    assert.throws(() => readLlama2cModel(bytes, 'bad.bin'), (e: unknown) => e instanceof Llama2cError && e.message.startsWith('bad.bin: ') && re.test(e.message));

  test('an untied model round-trips (negative vocab in the header)', () => {
    const { cfg, w, bytes } = small();
    assert.equal(new DataView(bytes.buffer).getInt32(20, true), -16);
    const m = readLlama2cModel(bytes, 'small.bin');
    assert.deepEqual(m.config, cfg);
    sameWeights(m.weights, w);
  });

  test('truncated, padded, absurd or invalid headers, non-finite weights', () => {
    const { bytes } = small();
    rejects(bytes.subarray(0, 10), /too short/);
    rejects(bytes.subarray(0, bytes.length - 4), /truncated/);
    rejects(new Uint8Array([...bytes, 0, 0, 0, 0]), /bytes after the last weight/);
    const huge = bytes.slice();
    new DataView(huge.buffer).setInt32(0, 1 << 30, true);
    rejects(huge, /dim = 1073741824 is not a plausible size/);
    const odd = bytes.slice();
    new DataView(odd.buffer).setInt32(12, 3, true); // 8 / 3 heads
    rejects(odd, /invalid model.*multiple of nHeads/);
    const nan = bytes.slice();
    new DataView(nan.buffer).setFloat32(28 + 4 * 5, NaN, true);
    rejects(nan, /token_embd.weight holds a non-finite value at index 5/);
  });

  test('version 1 (written by the container) reads back as the same model', () => {
    const { cfg, w, bytes } = small();
    const v0 = readLlama2c(bytes, 'small.bin');
    const tensors = new Map(v0.tensors);
    tensors.delete('freq_cis_real');
    tensors.delete('freq_cis_imag');
    const v1 = writeLlama2c({ ...v0.header, version: 1 }, tensors);
    assert.equal(v1.length, 256 + (bytes.length - 28) - 4 * 8 * 4); // no freq_cis tables (2 × 8 × 2 floats)
    assert.equal(new DataView(v1.buffer).getUint32(0, true), 0x616b3432);
    assert.equal(new DataView(v1.buffer).getInt32(28, true), 16, 'version 1 keeps the vocabulary positive');
    assert.equal(v1[36], 0, 'shared_classifier');
    const m = readLlama2cModel(v1, 'v1.bin');
    assert.equal(m.version, 1);
    assert.deepEqual(m.config, cfg);
    sameWeights(m.weights, w);
    assert.ok(Buffer.from(writeLlama2c(readLlama2c(v1, 'v1.bin').header, readLlama2c(v1, 'v1.bin').tensors)).equals(Buffer.from(v1)));
    assert.throws(() => writeLlama2c(v0.header, new Map([...tensors].filter(([k]) => k !== 'wq'))), /cannot write llama2.c: tensor wq is missing/);
  });

  test('fuzz: 3000 seeded flips and truncations either parse or raise a Llama2cError', () => {
    const { bytes } = small();
    const rng = new Rng(2026);
    for (let i = 0; i < 3000; i++) {
      let b = bytes.slice();
      if (i % 3 === 0) b = b.subarray(0, Math.floor(rng.next() * b.length));
      const flips = 1 + Math.floor(rng.next() * 4);
      for (let f = 0; f < flips && b.length; f++) b[Math.floor(rng.next() * Math.min(b.length, 64))] = Math.floor(rng.next() * 256);
      try {
        readLlama2cModel(b, 'fuzz.bin');
      } catch (e) {
        assert.ok(e instanceof Llama2cError, `case ${i}: ${String(e)}`);
      }
      try {
        readLlama2c(b, 'fuzz.bin'); // the byte container alone
      } catch (e) {
        assert.ok(e instanceof Llama2cError, `case ${i} (container): ${String(e)}`);
      }
    }
  });
});

describe('fuzz: every model and tokenizer reader fails cleanly', () => {
  /** Seeded byte flips in the first `span` bytes and truncations; each input loads or throws an Error naming the file. */
  const fuzz = (bytes: Uint8Array, span: number, cases: number, parse: (b: Uint8Array) => unknown, errorType: new (...a: never[]) => Error = Error) => {
    const rng = new Rng(7);
    let ok = 0;
    for (let i = 0; i < cases; i++) {
      let b = bytes.slice();
      if (i % 4 === 0) b = b.subarray(0, Math.floor(rng.next() * b.length));
      for (let f = 1 + Math.floor(rng.next() * 3); f > 0 && b.length; f--) b[Math.floor(rng.next() * Math.min(span, b.length))] = Math.floor(rng.next() * 256);
      try {
        parse(b);
        ok++;
      } catch (e) {
        assert.ok(e instanceof errorType, `case ${i}: ${String(e)}`);
        assert.match((e as Error).message, /^fuzz\.bin: |fuzz\.bin/, `case ${i}: the message names the file: ${(e as Error).message}`);
      }
    }
    return ok;
  };

  test('llama2.c tokenizer files (tok512.bin)', { skip: absent(TOK512) }, () => {
    const ok = fuzz(new Uint8Array(readFileSync(TOK512)), 6000, 3000, (b) => readLlama2cTokenizer(b, 'fuzz.bin', 512));
    assert.ok(ok > 0, 'some mutations (in scores) must still parse');
  });

  test('GGUF model files (the embedded model): header, metadata and tensor infos', { skip: absent(DEFAULT_MODEL) && 'the embedded default model is absent' }, () => {
    const bytes = new Uint8Array(readFileSync(DEFAULT_MODEL));
    const headerEnd = readGguf(bytes, 'x').dataOffset;
    fuzz(bytes, headerEnd, 600, (b) => parseGgufModel(b, 'fuzz.bin'));
  });
});

describe('llama.cpp as the oracle (node-llama-cpp 3.21.1)', () => {
  let cpp: ((path: string) => Promise<LlamaCppModel>) | undefined;
  let reason = '';
  const opened: LlamaCppModel[] = [];
  before(async () => {
    // Probe with the tiny-random fixture or the default model, whichever exists.
    const probe = existsSync(TINY_RANDOM) ? TINY_RANDOM : DEFAULT_MODEL;
    const r = await openLlamaCpp(probe);
    if (typeof r === 'string') reason = r;
    else {
      opened.push(r);
      cpp = async (p) => {
        const m = await openLlamaCpp(p);
        if (typeof m === 'string') throw new Error(m);
        opened.push(m);
        return m;
      };
    }
  });
  after(async () => {
    for (const m of opened) await m.dispose();
  });
  const need = (t: (c: NonNullable<typeof cpp>) => Promise<void>) => async (ctx: { skip(msg: string): void }) => {
    if (!cpp) return ctx.skip(reason);
    await t(cpp);
  };

  test('tiny-random GGUF (F16, SentencePiece vocab): tokens and next-token log-probs within 1e-3', { skip: absent(TINY_RANDOM) }, need(async (open) => {
    const ref = await open(TINY_RANDOM);
    const m = await loadModel(TINY_RANDOM);
    assert.equal(m.vocab.model, 'llama');
    let worst = 0;
    for (const text of ['Hello world', ' The quick brown fox jumps over the lazy dog.', 'Once upon a time, in a land far away', '1234 + 5678 = ?', 'ünïcödé 日本語 🙂']) {
      const ours = Array.from(m.tokenizer.encode(text));
      assert.deepEqual(ours, ref.tokenize(text), `tokens of ${JSON.stringify(text)}`);
      const input = [1, ...ours];
      const theirs = await ref.logProbs(input);
      const mine = logProbs(m, input);
      for (let i = 0; i < input.length; i++) worst = Math.max(worst, maxAbsDiff(mine[i], theirs[i]));
    }
    assert.ok(worst < 1e-3, `max |log p difference| ${worst}`);
  }));

  test('stories260K exported to GGUF: llama.cpp generates the same greedy text', { skip: absent(STORIES) || absent(TOK512) }, need(async (open) => {
    const m = await loadModel(STORIES, { tokenizer: TOK512 });
    const out = join(dir, 'stories260K.gguf');
    await exportModel(out, m);
    const ref = await open(out);
    const prompt = [1, ...m.tokenizer.encode('Once upon a time')];
    assert.deepEqual(ref.tokenize('Once upon a time'), prompt.slice(1));
    const theirs = await ref.greedy(prompt, 64);
    assert.deepEqual(greedy(m, prompt, theirs.length), theirs);
    assert.equal(theirs.length, 64);
    // And the file reads back into stlm with every weight intact.
    sameWeights((await loadModel(out)).weights, m.weights);
  }));

  test('a byte-level stlm model in llama.cpp: text tokenizes to bytes, same greedy text', { skip: absent(DEFAULT_MODEL) && 'the embedded default model is absent' }, need(async (open) => {
    const m = await loadModel(DEFAULT_MODEL);
    const ref = await open(DEFAULT_MODEL);
    const text = 'ROMEO: Où est-il? 🙂';
    assert.deepEqual(ref.tokenize(text), Array.from(new TextEncoder().encode(text)));
    const prompt = Array.from(m.tokenizer.encode('ROMEO:'));
    const theirs = await ref.greedy(prompt, 64);
    assert.equal(theirs.length, 64);
    assert.deepEqual(greedy(m, prompt, 64), theirs);
    const worst = (await ref.logProbs(prompt)).reduce((w, row, i) => Math.max(w, maxAbsDiff(logProbs(m, prompt)[i], row)), 0);
    assert.ok(worst < 1e-3, `max |log p difference| ${worst}`);
  }));

  test('a BPE vocabulary learned by stlm: llama.cpp tokenizes text as stlm does and generates the same', { skip: absent(SHAKESPEARE) }, need(async (open) => {
    const text = readFileSync(SHAKESPEARE, 'utf8').slice(0, 200_000);
    const vocab = bpeToVocab(trainBpe(text, { vocabSize: 600, specialTokens: ['<|endoftext|>'] }));
    const config = { ...PRESETS.nano, vocabSize: vocab.tokens.length };
    const g = new Graph(be);
    const weights = new Llama(g, config, undefined, 5).weights();
    const out = join(dir, 'bpe.gguf');
    await saveModel(out, { config, weights, vocab });
    const ref = await open(out);
    const m = await loadModel(out);
    for (const sample of [text.slice(5000, 6000), "KING RICHARD III:\nWhat's o'clock?  I'll   go -- 1234 ünïcödé 🙂 \t\n\n x"]) {
      assert.deepEqual(Array.from(m.tokenizer.encode(sample)), ref.tokenize(sample));
    }
    const prompt = Array.from(m.tokenizer.encode('ROMEO:'));
    const theirs = await ref.greedy(prompt, 32);
    assert.deepEqual(greedy(m, prompt, theirs.length), theirs);
  }));
});

describe('round trips between formats', () => {
  test('GGUF -> llama2.c -> Hugging Face -> GGUF (f32) keeps every weight; f16 GGUF is within f16 rounding', { skip: absent(STORIES) || absent(TOK512) }, async () => {
    const m = await loadModel(STORIES, { tokenizer: TOK512 });
    const gguf = join(dir, 'rt.gguf'), bin = join(dir, 'rt', 'model.bin'), hf = join(dir, 'rt-hf');
    await exportModel(gguf, m);
    const fromGguf = await loadModel(gguf);
    (await import('node:fs')).mkdirSync(join(dir, 'rt'), { recursive: true });
    const written = await exportModel(bin, fromGguf);
    assert.deepEqual(written, [bin, join(dir, 'rt', 'tok512.bin')]);
    const fromBin = await loadModel(bin);
    await exportModel(hf, fromBin);
    const fromHf = await loadModel(hf);
    sameWeights(fromHf.weights, m.weights);
    assert.deepEqual(fromHf.config, m.config);
    assert.deepEqual(Array.from(fromHf.tokenizer.encode('Once upon a time')), [403, 407, 261, 378]);
    await exportModel(join(dir, 'rt16.gguf'), m, { type: 'f16' });
    const half = await loadModel(join(dir, 'rt16.gguf'));
    for (const [name, w] of m.weights) {
      const h = half.weights.get(name)!;
      for (let i = 0; i < w.length; i++) assert.ok(Math.abs(h[i] - w[i]) <= Math.abs(w[i]) * 2 ** -11 + 6e-8, `${name}[${i}]`);
    }
  });

  test('`stlm convert` and `stlm info` on every format', { skip: absent(STORIES) || absent(TOK512) }, () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    const out = join(dir, 'cli.gguf');
    const c = run('convert', STORIES, out);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /llama2c.*-> .*cli\.gguf/);
    for (const p of [STORIES, out]) {
      const r = run('info', p, '--json');
      assert.equal(r.status, 0, r.stderr);
      const info = JSON.parse(r.stdout) as { parameters: number; tokenizer: { kind: string; vocabSize: number } };
      assert.equal(info.parameters, 264_128 - 512 * 4 * 2); // the file's floats minus run.c's unused freq_cis tables
      assert.deepEqual([info.tokenizer.kind, info.tokenizer.vocabSize], ['llama', 512]);
    }
    const bad = run('convert', STORIES, join(dir, 'x.gguf'), '--type', 'q3');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--type.*q3.*invalid|Allowed choices/i);
    writeFileSync(join(dir, 'junk.bin'), 'not a model at all');
    const junk = run('info', join(dir, 'junk.bin'));
    assert.equal(junk.status, 1);
    assert.match(junk.stderr, /^stlm: error: .*junk\.bin: not a model file stlm reads/);
  });
});
