// Hugging Face checkpoints as people publish them (test/fixtures/hf/, made by test/fixtures-gen/make-hf-llama.py):
// sharded with an index, tied by lm_head alone / embed_tokens alone / equal copies / safetensors alias
// metadata, BF16 and F16, grouped-query attention, MistralForCausalLM without a sliding window. Our loader
// and our forward are compared against logits recorded from an independent float64 forward of transformers'
// Llama equations (numpy, cross-checked there with torch). Then every refusal, each one line naming what.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type HfFileLookup, HfFormatError, importHf, importHfFromFiles } from '../src/io/hf-llama.js';
import { SafetensorsError, readSafetensors, tensorBytes } from '../src/formats/safetensors.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import type { LlamaConfig } from '../src/models/config.js';
import { loadModel } from '../src/io/model-file.js';
import { Llama, kvCacheFor } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/hf/', import.meta.url));

interface Expected {
  reference: string;
  cases: Record<string, { ids: number[]; logits: number[][] }>;
}

/** What each fixture must load as (the rest of the config is the generator's BASE). */
const SHAPES: Record<string, Partial<LlamaConfig>> = {
  'untied-f32': { nKvHeads: 4, tieEmbeddings: false },
  'gqa-sharded-f32': { nKvHeads: 1, tieEmbeddings: false, ropeTheta: 500000 },
  'tied-lm-head-only-f32': { nKvHeads: 2, tieEmbeddings: true },
  'tied-bf16': { nKvHeads: 2, tieEmbeddings: true, vocabSize: 259 },
  'both-equal-f16': { nKvHeads: 2, tieEmbeddings: true },
  'mistral-alias-f32': { nKvHeads: 2, tieEmbeddings: true, ctx: 128 },
};

function logitsOf(be: Backend, m: { config: LlamaConfig; weights: Map<string, Float32Array> }, ids: number[]): Float32Array {
  const g = new Graph(be);
  const model = Llama.fromModel(g, m);
  const cache = kvCacheFor(g, m.config, ids.length);
  const out = model.forward(Int32Array.from(ids), cache, false).toArray();
  g.release();
  cache.dispose();
  return out;
}

function maxDiff(ours: Float32Array, expected: number[][]): number {
  const flat = expected.flat();
  assert.equal(ours.length, flat.length);
  let d = 0;
  for (let i = 0; i < flat.length; i++) d = Math.max(d, Math.abs(ours[i] - flat[i]));
  return d;
}

/** A fixture's files in memory, as a browser would have them after a drop. */
async function filesOf(name: string): Promise<Map<string, Uint8Array>> {
  const dir = join(FIXTURES, name);
  const out = new Map<string, Uint8Array>();
  for (const f of await readdir(dir)) out.set(f, new Uint8Array(await readFile(join(dir, f))));
  return out;
}

const lookup = (files: Map<string, Uint8Array>, asked: string[] = []): HfFileLookup => async (name) => {
  asked.push(name);
  return files.get(name);
};

const enc = new TextEncoder(), dec = new TextDecoder();
const jsonOf = (files: Map<string, Uint8Array>, name: string) => JSON.parse(dec.decode(files.get(name)!)) as Record<string, unknown>;
const withJson = (files: Map<string, Uint8Array>, name: string, patch: Record<string, unknown>) =>
  new Map([...files, [name, enc.encode(JSON.stringify({ ...jsonOf(files, name), ...patch }))]]);

interface RawTensor { name: string; dtype: string; shape: number[]; bytes: Uint8Array }

/** A safetensors file from raw entries (any dtype name), written here by hand, not by our writer. */
function rawSafetensors(tensors: RawTensor[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    at += t.bytes.length;
  }
  const text = enc.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  let p = 8 + text.length;
  for (const t of tensors) {
    out.set(t.bytes, p);
    p += t.bytes.length;
  }
  return out;
}

/** A fixture's safetensors file with its tensors edited (as raw entries). */
function editTensors(files: Map<string, Uint8Array>, file: string, edit: (ts: RawTensor[]) => RawTensor[], metadata?: Record<string, string>): Map<string, Uint8Array> {
  const f = readSafetensors(files.get(file)!, file);
  const ts = f.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: tensorBytes(f, t) }));
  return new Map([...files, [file, rawSafetensors(edit(ts), metadata ?? Object.fromEntries(f.metadata))]]);
}

/** Loading `files` fails with one line that matches every pattern (and names the directory's file). */
async function refuses(files: Map<string, Uint8Array>, ...patterns: RegExp[]): Promise<string> {
  let message = '';
  await assert.rejects(importHfFromFiles(lookup(files), 'ckpt'), (e: unknown) => {
    assert.ok(e instanceof HfFormatError || e instanceof SafetensorsError, `expected a format error, got ${String(e)}`);
    message = e.message;
    return true;
  });
  assert.ok(!message.includes('\n'), `not one line: ${message}`);
  assert.match(message, /ckpt/, `does not name the file: ${message}`);
  for (const p of patterns) assert.match(message, p);
  return message;
}

describe('Hugging Face checkpoints as published', () => {
  let be: Backend;
  let expected: Expected;
  before(async () => {
    be = await createWasmBackend({ threads: 1 });
    expected = JSON.parse(await readFile(join(FIXTURES, 'expected.json'), 'utf8')) as Expected;
  });
  after(() => be.dispose());

  test('every fixture loads and gives the reference logits (max |diff| < 1e-4)', async (t) => {
    assert.deepEqual(Object.keys(expected.cases).sort(), Object.keys(SHAPES).sort());
    for (const [name, c] of Object.entries(expected.cases)) {
      const m = await importHf(join(FIXTURES, name));
      assert.deepEqual(m.config, { vocabSize: 32, dModel: 16, nLayers: 2, nHeads: 4, mlpHidden: 24, ctx: 64, ropeTheta: 10000, normEps: 1e-5, dropout: 0, ...SHAPES[name] } as LlamaConfig, name);
      assert.equal(m.weights.has('output.weight'), !m.config.tieEmbeddings, name);
      const diff = maxDiff(logitsOf(be, m, c.ids), c.logits);
      t.diagnostic(`${name}: max |ours - reference| = ${diff.toExponential(2)}`);
      assert.ok(diff < 1e-4, `${name}: max |ours - reference| = ${diff}`);
    }
  });

  test('loadModel opens a published directory (the byte vocabulary: 259 tokens) and gives the same logits', async () => {
    const c = expected.cases['tied-bf16'];
    const m = await loadModel(join(FIXTURES, 'tied-bf16'));
    assert.equal(m.format, 'safetensors');
    assert.ok(maxDiff(logitsOf(be, m, c.ids), c.logits) < 1e-4);
  });

  test('importHfFromFiles reads from a lookup (as a browser would), each file once, shards one after another', async () => {
    const files = await filesOf('gqa-sharded-f32');
    const asked: string[] = [];
    const m = await importHfFromFiles(lookup(files, asked), 'dropped');
    assert.equal(m.dir, 'dropped');
    assert.deepEqual(asked, ['config.json', 'model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    const c = expected.cases['gqa-sharded-f32'];
    assert.ok(maxDiff(logitsOf(be, m, c.ids), c.logits) < 1e-4);
    // The first shard is let go before the second is asked for: nothing keeps the bytes it was given.
    let inFlight = 0, most = 0;
    await importHfFromFiles(async (name) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      return files.get(name);
    }, 'dropped');
    assert.equal(most, 1);
  });

  test('tie_word_embeddings absent: the tensors decide', async () => {
    const untied = await filesOf('untied-f32');
    const noFlag = withJson(untied, 'config.json', { tie_word_embeddings: undefined });
    assert.equal((await importHfFromFiles(lookup(noFlag), 'ckpt')).config.tieEmbeddings, false); // both, different
    const lmOnly = withJson(await filesOf('tied-lm-head-only-f32'), 'config.json', { tie_word_embeddings: null });
    const m = await importHfFromFiles(lookup(lmOnly), 'ckpt');
    assert.equal(m.config.tieEmbeddings, true);
    const c = expected.cases['tied-lm-head-only-f32'];
    assert.ok(maxDiff(logitsOf(be, m, c.ids), c.logits) < 1e-4);
    // Both present and equal with tie_word_embeddings false: kept as two matrices, as declared.
    const equalUntied = withJson(await filesOf('both-equal-f16'), 'config.json', { tie_word_embeddings: false });
    assert.equal((await importHfFromFiles(lookup(equalUntied), 'ckpt')).config.tieEmbeddings, false);
  });

  test('refused: contradictory or missing embeddings', async () => {
    const embedOnly = await filesOf('tied-bf16');
    await refuses(withJson(embedOnly, 'config.json', { tie_word_embeddings: false }),
      /^ckpt\/config\.json: tie_word_embeddings: false, but ckpt\/model\.safetensors\.index\.json has no lm_head\.weight, only model\.embed_tokens\.weight: that is a tied checkpoint$/);
    await refuses(withJson(await filesOf('tied-lm-head-only-f32'), 'config.json', { tie_word_embeddings: false }),
      /^ckpt\/config\.json: tie_word_embeddings: false, but ckpt\/model\.safetensors has no model\.embed_tokens\.weight, only lm_head\.weight/);
    await refuses(withJson(await filesOf('mistral-alias-f32'), 'config.json', { tie_word_embeddings: false }),
      /tie_word_embeddings: false, but .* \(its metadata names lm_head\.weight as an alias of model\.embed_tokens\.weight\)/);
    await refuses(withJson(await filesOf('untied-f32'), 'config.json', { tie_word_embeddings: true }),
      /^ckpt\/config\.json: tie_word_embeddings: true, but ckpt\/model\.safetensors holds both model\.embed_tokens\.weight and lm_head\.weight, and they differ$/);
    await refuses(editTensors(await filesOf('tied-lm-head-only-f32'), 'model.safetensors', (ts) => ts.filter((t) => t.name !== 'lm_head.weight')),
      /^ckpt\/model\.safetensors: tensor 'model\.embed_tokens\.weight' is missing \(and there is no lm_head\.weight either\)$/);
  });

  test('refused: config.json settings stlm does not compute, each naming the field, the value and the file', async () => {
    const llama = await filesOf('untied-f32');
    const mistral = await filesOf('mistral-alias-f32');
    const cfg = (files: Map<string, Uint8Array>, patch: Record<string, unknown>, pattern: RegExp) => refuses(withJson(files, 'config.json', patch), /^ckpt\/config\.json: /, pattern);
    await cfg(llama, { rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling: \{"rope_type":"llama3","factor":8\} is not supported/);
    await cfg(llama, { rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling: \{"type":"linear","factor":2\} is not supported/);
    await cfg(llama, { attention_bias: true }, /attention_bias: true is not supported \(stlm's attention has no biases\)$/);
    await cfg(llama, { mlp_bias: true }, /mlp_bias: true is not supported \(stlm's MLP has no biases\)$/);
    await cfg(llama, { head_dim: 8 }, /head_dim: 8 is not hidden_size \/ num_attention_heads = 4/);
    await cfg(llama, { num_key_value_heads: 3 }, /num_key_value_heads: 3 does not divide num_attention_heads 4$/);
    await cfg(llama, { hidden_act: 'gelu' }, /hidden_act: "gelu" is not supported/);
    await cfg(llama, { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, /architectures: \["Qwen2ForCausalLM"\] is not supported \(stlm reads LlamaForCausalLM, MistralForCausalLM\)$/);
    await cfg(llama, { architectures: undefined, model_type: 'gemma' }, /model_type: "gemma" is not supported \(expected 'llama' or 'mistral'\)$/);
    await cfg(llama, { model_type: 'mistral' }, /model_type: "mistral" is not supported with LlamaForCausalLM \(expected 'llama'\)$/);
    await cfg(mistral, { sliding_window: 4096 }, /sliding_window: 4096 is not supported: stlm reads MistralForCausalLM only without a sliding window \(sliding_window: null\)/);
    await cfg(mistral, { sliding_window: undefined }, /sliding_window: is absent \(MistralConfig then uses 4096\)/);
    await cfg(llama, { tie_word_embeddings: 'yes' }, /tie_word_embeddings: must be true or false, got "yes"$/);
    // head_dim equal to hidden / heads is fine; so is rope_scaling null; a Mistral with architectures absent too.
    await importHfFromFiles(lookup(withJson(llama, 'config.json', { head_dim: 4, rope_scaling: null })), 'ckpt');
    await importHfFromFiles(lookup(withJson(mistral, 'config.json', { architectures: undefined })), 'ckpt');
  });

  test('refused: tensors that are not F32/F16/BF16, unexpected tensors, wrong shapes', async () => {
    const llama = await filesOf('untied-f32');
    const swap = (name: string, dtype: string, bytesPer: number) => editTensors(llama, 'model.safetensors', (ts) => ts.map((t) => (t.name === name ? { ...t, dtype, bytes: new Uint8Array(t.shape.reduce((a, b) => a * b, 1) * bytesPer) } : t)));
    await refuses(swap('model.norm.weight', 'F8_E4M3', 1), /^ckpt\/model\.safetensors: tensor 'model\.norm\.weight': unsupported dtype F8_E4M3 \(stlm reads F32, F16, BF16\)$/);
    await refuses(swap('model.layers.1.mlp.up_proj.weight', 'I64', 8), /tensor 'model\.layers\.1\.mlp\.up_proj\.weight': unsupported dtype I64/);
    const bias: RawTensor = { name: 'model.layers.0.self_attn.q_proj.bias', dtype: 'F32', shape: [16], bytes: new Uint8Array(64) };
    const extra: RawTensor = { name: 'model.vision_tower.weight', dtype: 'F32', shape: [1], bytes: new Uint8Array(4) };
    await refuses(editTensors(llama, 'model.safetensors', (ts) => [...ts, bias, extra]),
      /^ckpt\/model\.safetensors: unexpected tensors 'model\.layers\.0\.self_attn\.q_proj\.bias', 'model\.vision_tower\.weight' \(not parameters of a Llama of this config\.json\)$/);
    // k_proj of a grouped-query model has kv heads' rows: a checkpoint with the query heads' count is refused.
    const gqa = await filesOf('gqa-sharded-f32');
    const kShard = (jsonOf(gqa, 'model.safetensors.index.json').weight_map as Record<string, string>)['model.layers.0.self_attn.k_proj.weight'];
    await refuses(editTensors(gqa, kShard, (ts) => ts.map((t) => (t.name === 'model.layers.0.self_attn.k_proj.weight' ? { ...t, shape: [16, 16], bytes: new Uint8Array(16 * 16 * 4) } : t))),
      /tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \[16, 16\], config\.json needs \[4, 16\]$/);
    // Missing parameter.
    await refuses(editTensors(llama, 'model.safetensors', (ts) => ts.filter((t) => t.name !== 'model.layers.1.post_attention_layernorm.weight')),
      /^ckpt\/model\.safetensors: tensor 'model\.layers\.1\.post_attention_layernorm\.weight' is missing$/);
  });

  test('refused: an index and its shards that disagree', async () => {
    const files = await filesOf('gqa-sharded-f32');
    const index = jsonOf(files, 'model.safetensors.index.json');
    const map = index.weight_map as Record<string, string>;
    const withMap = (m: Record<string, string> | string) => new Map([...files, ['model.safetensors.index.json', enc.encode(typeof m === 'string' ? m : JSON.stringify({ ...index, weight_map: m }))]]);
    const shard1 = 'model-00001-of-00003.safetensors', shard2 = 'model-00002-of-00003.safetensors', shard3 = 'model-00003-of-00003.safetensors';
    const inShard1 = Object.keys(map).find((n) => map[n] === shard1)!;
    // A listed shard that is not there.
    const noShard = new Map(files);
    noShard.delete(shard3);
    await refuses(noShard, /^ckpt\/model\.safetensors\.index\.json: weight_map: shard 'model-00003-of-00003\.safetensors' \(holding '.*'\) is not in ckpt$/);
    // The index puts a tensor in another shard than the one holding it.
    await refuses(withMap({ ...map, [inShard1]: shard2 }), new RegExp(`^ckpt/${shard1}: tensor '${inShard1}' is here, but ckpt/model\\.safetensors\\.index\\.json puts it in ${shard2}`));
    // A tensor in two shards (the index names one of them).
    const dup = editTensors(files, shard2, (ts) => [...ts, ...readSafetensors(files.get(shard1)!).tensors.filter((t) => t.name === inShard1).map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(t.end - t.begin) }))]);
    await refuses(dup, new RegExp(`^ckpt/${shard2}: tensor '${inShard1}' is here, but .* puts it in ${shard1}`));
    // A tensor listed twice in weight_map (a duplicate JSON key).
    const text = JSON.stringify({ weight_map: map });
    await refuses(withMap(text.replace('{"weight_map":{', `{"weight_map":{"${inShard1}":"${shard2}",`)), /^ckpt\/model\.safetensors\.index\.json: invalid JSON at character \d+: duplicate key "/);
    // The index lists a tensor its shard does not hold; a shard holds a tensor the index does not list.
    await refuses(withMap({ ...map, 'model.layers.0.mlp.gate_proj.weight_scale': shard1 }), /weight_map 'model\.layers\.0\.mlp\.gate_proj\.weight_scale': model-00001-of-00003\.safetensors has no such tensor$/);
    const fewer = { ...map };
    delete fewer[inShard1];
    await refuses(withMap(fewer), new RegExp(`^ckpt/${shard1}: tensor '${inShard1}' is not listed in ckpt/model\\.safetensors\\.index\\.json$`));
    // Names outside the directory, and no weights at all.
    await refuses(withMap({ ...map, [inShard1]: '../model-00001-of-00003.safetensors' }), /weight_map '.*': '\.\.\/model-00001-of-00003\.safetensors' is not a plain file name/);
    await refuses(withMap({}), /weight_map: must be a non-empty object/);
    await refuses(new Map([['config.json', files.get('config.json')!]]), /^ckpt: neither model\.safetensors nor model\.safetensors\.index\.json is there$/);
    await refuses(new Map(), /^ckpt\/config\.json: no such file$/);
  });
});
