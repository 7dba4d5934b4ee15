// A Hugging Face directory as published (weights + config.json + tokenizer.json + tokenizer_config.json)
// opens through the one loader with its own tokenizer: ids equal swift-transformers' recorded ones for
// the LLaMA tokenizer, generation streams text, spare embedding rows (Phi-3: 32064 rows, 32011 tokens)
// are padded in the GGUF vocabulary and never sampled, and the GGUF written from it tokenizes like it.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import { exportHf } from '../src/io/hf-llama.js';
import { exportModel } from '../src/io/export.js';
import { loadModel } from '../src/io/model-file.js';
import { openModel } from '../src/io/open.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { PRESETS, type LlamaConfig, parameterShapes } from '../src/models/config.js';
import { Rng } from '../src/util/rng.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/hf-tokenizers/', import.meta.url));
const absent = (p: string) => (existsSync(p) ? false : `fixture ${p} is absent (see ../shared/fixtures/README.md)`);
const dir = mkdtempSync(join(tmpdir(), 'stlm-hfdir-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny random Llama with `vocab` rows, written as a Hugging Face directory with the fixture's tokenizer files. */
async function hfDir(name: string, tokenizer: string, vocab: number): Promise<string> {
  const config: LlamaConfig = { ...PRESETS.nano, vocabSize: vocab, dModel: 16, nHeads: 2, nKvHeads: 1, nLayers: 1, mlpHidden: 32, ctx: 64 };
  const rng = new Rng(3);
  const weights = new Map(parameterShapes(config).map(([n, s]) => [n, Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => (s.length === 1 ? 1 : rng.normal() * 0.5))]));
  const out = join(dir, name);
  await exportHf(config, weights, out);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURES, tokenizer, f), join(out, f));
  return out;
}

describe('Hugging Face directories with tokenizer.json', () => {
  test('the LLaMA tokenizer: recorded ids, generation, and a GGUF that tokenizes the same', { skip: absent(join(FIXTURES, 'llama-tokenizer')) }, async () => {
    const path = await hfDir('llama', 'llama-tokenizer', 32000);
    const m = await loadModel(path);
    assert.equal(m.tokenizer.kind, 'hf-bpe');
    const rec = JSON.parse(readFileSync(join(FIXTURES, 'llama-tokenizer/llama_encoded.json'), 'utf8')) as { text: string; token_ids: number[] };
    assert.deepEqual(Array.from(m.tokenizer.encode(rec.text, { bos: true })), rec.token_ids);
    const h = await openModel(path, { backend: new ReferenceBackend() });
    assert.equal(h.addBos, true);
    // The same directory as a browser would hand it over, file by file: the same tokens and logits.
    const files = await openModel({ name: 'dropped', files: async (f) => (existsSync(join(path, f)) ? new Uint8Array(readFileSync(join(path, f))) : undefined) }, { backend: new ReferenceBackend() });
    const ids = Array.from(h.tokenizer.encode('Hello world', { bos: true }));
    assert.deepEqual(Array.from(files.tokenizer.encode('Hello world', { bos: true })), ids);
    assert.deepEqual(files.model.session().reset(ids), h.model.session().reset(ids));
    files.dispose();
    await assert.rejects(openModel({ name: 'empty', files: async () => undefined }), /empty\/config\.json/);
    const r = generate(h.model, h.tokenizer, 'Hello world', { maxTokens: 5, temperature: 1, seed: 2, addBos: h.addBos });
    assert.equal(r.tokens.length + (r.finishReason === 'eos' ? 1 : 0), 5);
    h.dispose();
    // Written as GGUF, the vocabulary is SentencePiece's: stlm's own GGUF tokenizer gives the same ids.
    const gguf = join(dir, 'llama.gguf');
    await exportModel(gguf, m);
    const back = await loadModel(gguf);
    assert.equal(back.vocab.model, 'llama');
    assert.deepEqual(Array.from(back.tokenizer.encode(rec.text, { bos: true })), rec.token_ids);
  });

  test('Phi-3: spare embedding rows are padded in the vocabulary and never sampled', { skip: absent(join(FIXTURES, 'phi-3-mini-4k-instruct')) }, async () => {
    const path = await hfDir('phi3', 'phi-3-mini-4k-instruct', 32064);
    const h = await openModel(path, { backend: new ReferenceBackend() });
    assert.equal(h.tokenizer.vocabSize, 32011);
    assert.equal(h.bundle.vocab.tokens.length, 32064);
    assert.equal(h.bundle.vocab.tokens[32063], '[PAD32063]');
    const r = generate(h.model, h.tokenizer, '<|user|>\nHi<|end|>\n<|assistant|>', { maxTokens: 20, temperature: 2, seed: 1 });
    assert.ok(r.tokens.every((id) => id < 32011), `sampled ${r.tokens.filter((id) => id >= 32011)}`);
    // Phi-3 closes a turn with <|end|> (32007), not its EOS <|endoftext|> (32000): generation ends at either.
    assert.equal(h.tokenizer.eos, 32000);
    assert.ok(h.tokenizer.endOfGeneration?.includes(32007), `endOfGeneration ${h.tokenizer.endOfGeneration}`);
    const scripted = [450, 32007, 450];
    const fake = { ...h.model, session: () => {
      let step = 0;
      const next = () => Float32Array.from({ length: 32064 }, (_, id) => (id === scripted[Math.min(step, 2)] ? 10 : 0));
      return { length: 0, capacity: 64, reset: () => next(), push: () => (step++, next()), extend: () => next(), truncate: () => undefined, dispose: () => undefined };
    } } as typeof h.model;
    const ended = generate(fake, h.tokenizer, 'Hi', { maxTokens: 10, temperature: 0 });
    assert.deepEqual([ended.tokens, ended.finishReason], [[450], 'eos']);
    h.dispose();
  });

  test('a tokenizer with more tokens than the model has rows is refused by name', { skip: absent(join(FIXTURES, 'phi-2')) }, async () => {
    const path = await hfDir('phi2-small', 'phi-2', 1000);
    await assert.rejects(loadModel(path), /tokenizer\.json: the tokenizer has 50295 tokens but the model's vocabulary is 1000/);
  });
});
