// The tiny tier: LocalModel over the embedded model (models/default.gguf) through the shared interface
// checks, against `stlm generate` (same seed, same text) and against score() on the same token ids.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import { Sampler } from '../src/generate/sampler.js';
import { score } from '../src/generate/score.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { LocalModel, entropyOf, plainChatTemplate, scoreTokens } from '../src/tiers/local.js';
import { modelTeacher } from '../src/tiers/teacher.js';
import { synthesizeCorpus } from '../src/train/synth.js';
import type { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { languageModelInterface } from './tiers-interface.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

let be: Backend;
let local: LocalModel;
before(async () => {
  be = await createWasmBackend({ threads: 1 });
  local = await LocalModel.open(MODEL, { backend: be });
});
after(async () => {
  await local.close();
  be.dispose();
});

languageModelInterface('LocalModel (models/default.gguf)', () => local);

describe('LocalModel', () => {
  test('info: the tiny tier in this process, with the file\'s parameters, size and context', () => {
    const i = local.info();
    assert.deepEqual(i, {
      name: 'default.gguf', tier: 'tiny', provider: 'local', parameters: local.handle.parameters, fileBytes: readFileSync(MODEL).length,
      contextLength: 256, quantization: 'f32', runsOn: 'this process',
    });
  });

  test('a seed gives the text `stlm generate` prints for it (the CLI\'s sampling defaults)', async () => {
    const prompt = 'JULIET:', seed = 5, maxTokens = 40;
    const cli = await new Promise<string>((res, rej) => execFile(process.execPath, [CLI, 'generate', '--prompt', prompt, '--max-tokens', String(maxTokens), '--seed', String(seed), '--threads', '1'], { encoding: 'utf8' },
      (err, stdout, stderr) => (err ? rej(new Error(stderr)) : res(stdout))));
    const pieces: string[] = [];
    const s = local.stream({ prompt }, { maxTokens, seed });
    for (let r = await s.next(); !r.done; r = await s.next()) pieces.push(r.value);
    assert.equal(cli, prompt + pieces.join('') + '\n');
  });

  test('meanLogprob is the mean log-probability of the sampled tokens (greedy: as score() has them)', async () => {
    const prompt = 'KING HENRY:';
    const g = await local.generate({ prompt }, { maxTokens: 20, temperature: 0 });
    assert.equal(g.usage.completionTokens, 20);
    const [s] = await local.score(prompt, [g.text]);
    assert.equal(s.tokens, 20);
    assert.equal(s.greedy, true);
    assert.ok(Math.abs(g.meanLogprob! - s.logprob / s.tokens) < 1e-4, `${g.meanLogprob} vs ${s.logprob / s.tokens}`);
  });

  test('onToken leaves the loop\'s output bit-identical', () => {
    const h = local.handle;
    const o = { maxTokens: 30, temperature: 0.9, topP: 0.95, seed: 3, addBos: h.addBos };
    const plain = generate(h.model, h.tokenizer, 'To be', o);
    const seen: number[] = [];
    const hooked = generate(h.model, h.tokenizer, 'To be', { ...o, onToken: (id, logits, p) => {
      assert.equal(logits.length, h.config.vocabSize);
      assert.ok(p > 0 && p <= 1);
      seen.push(id);
    } });
    assert.deepEqual(hooked.tokens, plain.tokens);
    assert.equal(hooked.text, plain.text);
    assert.deepEqual(seen, plain.tokens);
  });

  test('score equals score() on the same ids (context with BOS)', async () => {
    const context = 'First Citizen:\nWe are accounted poor', conts = [' citizens', ' men', ' kings and queens'];
    const got = await local.score(context, conts);
    const h = local.handle;
    const ids = scoreTokens(h, context, conts);
    assert.equal(ids.context[0], h.tokenizer.bos, 'the byte model takes BOS');
    const want = score(h.model, ids.context, ids.continuations).continuations;
    assert.deepEqual(got, want.map((w, i) => ({ logprob: w.logprob, greedy: w.greedy, tokens: ids.continuations[i].length })));
    await assert.rejects(local.score(context, ['']), /score: continuation 0 is empty/);
  });

  test('continuations are split as lm-evaluation-harness does: encode(context + c) minus encode(context), else encode(c)', () => {
    // A longest-match tokenizer where "ab" is one token: "a" + "b" does not split at the boundary.
    const pieces = ['a', 'b', 'ab', ' '];
    const tok = {
      kind: 'toy', vocabSize: 5, bos: 4, eos: null,
      encode(text: string, o: { bos?: boolean } = {}) {
        const out: number[] = o.bos ? [4] : [];
        for (let i = 0; i < text.length;) {
          const p = text.startsWith('ab', i) ? 2 : pieces.indexOf(text[i]);
          out.push(p);
          i += p === 2 ? 2 : 1;
        }
        return Int32Array.from(out);
      },
    } as unknown as Tokenizer;
    const h = { tokenizer: tok, addBos: true, model: { ownStart: false } } as Parameters<typeof scoreTokens>[0];
    assert.deepEqual(scoreTokens(h, 'a ', ['b', 'ab']), { context: [4, 0, 3], continuations: [[1], [2]] });
    assert.deepEqual(scoreTokens(h, 'a', ['b', ' b']), { context: [4, 0], continuations: [[1], [3, 1]] }, '"ab" merges: encode("b") alone');
    assert.deepEqual(scoreTokens(h, '', ['ab']).context, [4], 'an empty context is BOS');
  });

  test('chat: the plain template, a reply that ends at the next "\\nUser:" without leading space', async () => {
    assert.deepEqual(plainChatTemplate([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Bye' }]), {
      prompt: 'System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: Bye\nAssistant:', stop: ['\nUser:'],
    });
    assert.throws(() => plainChatTemplate([]), /no messages/);
    assert.throws(() => plainChatTemplate([{ role: 'robot' as 'user', content: 'x' }]), /message 0 has role 'robot'/);
    // A template whose reply must stop at once: the model's reply runs until "\nUser:" would appear.
    const m = new LocalModel(local.handle, { chatTemplate: () => ({ prompt: 'ROMEO:', stop: ['e'] }) });
    const r = await m.generate({ messages: [{ role: 'user', content: 'x' }] }, { maxTokens: 100, temperature: 0 });
    const free = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 100, temperature: 0 });
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.text, free.text.slice(0, free.text.indexOf('e')).replace(/^\s+/, ''));
    const c = await local.generate({ messages: [{ role: 'user', content: 'Good morrow.' }] }, { maxTokens: 60, seed: 2 });
    assert.doesNotMatch(c.text, /^\s/);
    assert.doesNotMatch(c.text, /\nUser:/);
  });

  test('opens from bytes (the browser path) and generates the same text as from the path', async () => {
    const m = await LocalModel.open(new Uint8Array(readFileSync(MODEL)), { backend: be });
    try {
      assert.equal(m.info().name, 'local model');
      const a = await m.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, seed: 4 });
      const b = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, seed: 4 });
      assert.equal(a.text, b.text);
    } finally {
      await m.close(); // frees the weights; the backend was given, so it stays
    }
    await assert.rejects(m.generate({ prompt: 'x' }), /^Error: local model: the model is closed$/);
    await m.close();
  });

  test('an abort during generate (from a timer: the loop lets the event loop run) rejects at once', async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 30);
    const t0 = performance.now();
    await assert.rejects(local.generate({ prompt: 'ROMEO:' }, { maxTokens: 250, signal: ctl.signal }), { name: 'AbortError' });
    assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
  });

  test('stlm synth takes any LanguageModel as its teacher (modelTeacher)', async () => {
    const teacher = modelTeacher(local);
    assert.equal(teacher.name, 'default.gguf');
    const r = await synthesizeCorpus(teacher, { bytes: 60, prompts: ['ROMEO:'], maxTokens: 20, temperature: 0 });
    const g = await local.generate({ prompt: 'ROMEO:' }, { maxTokens: 20, temperature: 0 });
    assert.ok(r.text.startsWith('ROMEO:' + g.text), r.text);
  });

  test('browser-safe: no static import of a node: module (or a package) anywhere below tiers/local.js and tiers/openai.js', () => {
    const seen = new Set<string>(), bad: string[] = [];
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/^\s*(?:import|export)\s(?:[^;]*?\sfrom\s)?\s*['"]([^'"]+)['"]/gm)) {
        if (m[1].startsWith('.')) walk(resolve(dirname(file), m[1]));
        else bad.push(`${file}: ${m[1]}`);
      }
    };
    for (const f of ['local.js', 'openai.js']) walk(fileURLToPath(new URL(`../src/tiers/${f}`, import.meta.url)));
    assert.ok(seen.size > 20, `${seen.size} modules`);
    assert.deepEqual(bad, []);
  });
});

test('entropyOf: a uniform distribution has log V, a certain one 0, random logits the textbook sum', () => {
  assert.ok(Math.abs(entropyOf(new Float32Array(259)) - Math.log(259)) < 1e-12);
  const oneHot = new Float32Array(8).fill(-Infinity);
  oneHot[3] = 5;
  assert.equal(entropyOf(oneHot), 0);
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 1.7) * 4);
  const z = logits.reduce((a, x) => a + Math.exp(x), 0);
  const textbook = -Array.from(logits).reduce((a, x) => a + (Math.exp(x) / z) * Math.log(Math.exp(x) / z), 0);
  assert.ok(Math.abs(entropyOf(logits) - textbook) < 1e-9);
});

test('the sampler\'s entropy (what LocalModel sums when no repetition penalty is set) equals entropyOf on the same logits, to the bit', () => {
  for (const seed of [1, 2, 3]) {
    // Masked entries as Generation.accept leaves them (-Infinity), and spreads wide enough that exp underflows.
    const logits = Float32Array.from({ length: 4096 }, (_, i) => (i % 97 === 0 ? -Infinity : Math.sin(i * 0.37 * seed) * 40));
    const s = new Sampler({ seed, temperature: 1 });
    s.sample(logits);
    assert.equal(s.lastEntropy, entropyOf(logits));
  }
});
