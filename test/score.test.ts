// score(): the summed log-probability of each continuation and whether it is greedy, checked against
// (1) token-by-token log-softmax through the step interface (push), for the flat Llama (f32 and
// quantized, sharing and repeated blocks) and the byte-pooled model, and (2) llama.cpp's own
// log-probabilities on the same GGUF (node-llama-cpp 3.21.1), the tiny-random fixture and the embedded model.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { score } from '../src/generate/score.js';
import { openModel, type ModelHandle } from '../src/io/open.js';
import { type LlamaCppModel, openLlamaCpp } from '../src/interop/llamacpp.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { BytePooled, resolvePooledConfig } from '../src/models/byte-pooled.js';
import { PRESETS, type LlamaConfig } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import type { CausalLM } from '../src/models/model.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';
import { logSoftmaxRows } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const TINY_RANDOM = `${FIXTURES}models/tiny-random-llama/llama-2-tiny-random.gguf`;
const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const absent = (p: string) => (existsSync(p) ? false : `fixture ${p} is absent (see ../shared/fixtures/README.md)`);

/** The reference: feed context then continuation one id at a time, log-softmax each row in float64. */
function stepwise(model: CausalLM, context: number[], cont: number[]): { logprob: number; greedy: boolean } {
  const s = model.session();
  const V = model.config.vocabSize;
  try {
    let row = s.reset(context);
    let logprob = 0, greedy = true;
    for (const id of cont) {
      const lp = logSoftmaxRows(row, V)[0];
      logprob += lp[id];
      let best = -Infinity;
      for (let j = 0; j < V; j++) if (!model.neverPredicted.includes(j)) best = Math.max(best, row[j]);
      greedy &&= row[id] >= best;
      row = s.push(id);
    }
    return { logprob, greedy };
  } finally {
    s.dispose();
  }
}

const ids = (rng: Rng, n: number, vocab: number) => Array.from({ length: n }, () => rng.int(vocab));

describe('score() against token-by-token log-softmax', () => {
  const cases: [string, LlamaConfig][] = [
    ['flat Llama', { ...PRESETS.nano, vocabSize: 40, ctx: 32 }],
    ['shared FFN + repeated block with per-position adapters', { ...PRESETS.nano, vocabSize: 40, ctx: 32, nLayers: 2, shareFfn: true, blockRepeat: 2, sharedLoraRank: 2 }],
  ];
  for (const [name, config] of cases) {
    test(name, () => {
      const model = new Llama(new Graph(new ReferenceBackend()), config, undefined, 3);
      const rng = new Rng(5);
      const context = ids(rng, 7, 40), conts = [ids(rng, 1, 40), ids(rng, 5, 40), ids(rng, 9, 40)];
      const r = score(model, context, conts);
      assert.equal(r.contextTruncated, 0);
      r.continuations.forEach((c, i) => {
        const ref = stepwise(model, context, conts[i]);
        assert.ok(Math.abs(c.logprob - ref.logprob) < 1e-4, `${c.logprob} vs ${ref.logprob}`);
        assert.equal(c.greedy, ref.greedy);
        assert.equal(c.tokenLogprobs.length, conts[i].length);
      });
    });
  }

  test('a greedy continuation is reported greedy, and its log-probability is the sum of the greedy steps', () => {
    const model = new Llama(new Graph(new ReferenceBackend()), { ...PRESETS.nano, vocabSize: 40, ctx: 32 }, undefined, 9);
    const context = [1, 2, 3];
    const s = model.session();
    const cont: number[] = [];
    let row = s.reset(context);
    for (let i = 0; i < 6; i++) {
      const next = row.indexOf(Math.max(...row));
      cont.push(next);
      row = s.push(next);
    }
    s.dispose();
    const [greedy, other] = score(model, context, [cont, [...cont.slice(0, 5), (cont[5] + 1) % 40]]).continuations;
    assert.equal(greedy.greedy, true);
    assert.equal(other.greedy, false);
    assert.ok(greedy.logprob > other.logprob);
  });

  test('the byte-pooled model (fixed and SpaceByte chunks), empty context included', () => {
    for (const chunk of ['fixed:3', 'space:4']) {
      const c = resolvePooledConfig({ preset: 'nano', dModel: 16, nHeads: 2, mlpHidden: 24, ctx: 48, byte_dim: 8, decoder_heads: 2, decoder_mlp_hidden: 12 }, chunk);
      const model = new BytePooled(new Graph(new ReferenceBackend()), c, undefined, 4);
      const text = (s: string) => Array.from(new TextEncoder().encode(s));
      for (const context of [text('The cat sat on '), []]) {
        const conts = [text('the mat.'), text('a hat'), text('x')];
        score(model, context, conts).continuations.forEach((r, i) => {
          const ref = stepwise(model, context, conts[i]);
          assert.ok(Math.abs(r.logprob - ref.logprob) < 1e-4, `${chunk}: ${r.logprob} vs ${ref.logprob}`);
          assert.equal(r.greedy, ref.greedy);
        });
      }
    }
  });

  test('context longer than the model context is cut from the front; bad input is refused by name', () => {
    const model = new Llama(new Graph(new ReferenceBackend()), { ...PRESETS.nano, vocabSize: 40, ctx: 16 }, undefined, 3);
    const rng = new Rng(1);
    const context = ids(rng, 20, 40), cont = ids(rng, 4, 40);
    const r = score(model, context, [cont]);
    assert.equal(r.contextTruncated, 8);
    const ref = stepwise(model, context.slice(8), cont);
    assert.ok(Math.abs(r.continuations[0].logprob - ref.logprob) < 1e-4);
    assert.throws(() => score(model, [], [cont]), /context is empty/);
    assert.throws(() => score(model, [1], [[]]), /continuation is empty/);
    assert.throws(() => score(model, [1], [[40]]), /token id 40 is outside the vocabulary of 40/);
    assert.throws(() => score(model, [1], [ids(rng, 16, 40)]), /16 tokens does not fit the model's context of 16/);
  });
});

describe('score() against llama.cpp log-probabilities (node-llama-cpp 3.21.1)', () => {
  let reason = '';
  const opened: { cpp: LlamaCppModel; ours: ModelHandle }[] = [];
  const open = async (path: string): Promise<{ cpp: LlamaCppModel; ours: ModelHandle } | undefined> => {
    const cpp = await openLlamaCpp(path);
    if (typeof cpp === 'string') {
      reason = cpp;
      return undefined;
    }
    const ours = await openModel(path, { backend: await createWasmBackend({ threads: 1 }) });
    opened.push({ cpp, ours });
    return { cpp, ours };
  };
  after(async () => {
    for (const o of opened) {
      await o.cpp.dispose();
      o.ours.dispose();
    }
  });

  for (const [name, path, context, conts] of [
    ['tiny-random GGUF (F16, SentencePiece)', TINY_RANDOM, 'Once upon a time,', [' there was', ' in a land far away', '!']],
    ['the embedded byte-level model', DEFAULT_MODEL, 'ROMEO:\nWhat', [' light through yonder window', ' say you?', 'x']],
  ] as const) {
    test(name, { skip: absent(path) }, async (t) => {
      const m = await open(path);
      if (!m) return t.skip(reason);
      const tok = m.ours.tokenizer;
      const ctxIds = [...(m.ours.addBos && tok.bos !== null ? [tok.bos] : []), ...tok.encode(context)];
      const contIds = conts.map((c) => Array.from(tok.encode(c)));
      const r = score(m.ours.model, ctxIds, contIds);
      for (const [i, cont] of contIds.entries()) {
        const all = [...ctxIds, ...cont];
        const rows: Float64Array[] = await m.cpp.logProbs(all);
        let theirs = 0, greedy = true;
        for (let j = 0; j < cont.length; j++) {
          const row: Float64Array = rows[ctxIds.length - 1 + j];
          theirs += row[cont[j]];
          greedy &&= row[cont[j]] >= Math.max(...row);
        }
        assert.ok(Math.abs(r.continuations[i].logprob - theirs) < 2e-3 * cont.length, `${JSON.stringify(conts[i])}: ours ${r.continuations[i].logprob}, llama.cpp ${theirs}`);
        assert.equal(r.continuations[i].greedy, greedy);
      }
    });
  }
});
