// safetensors reading and writing (round trips, the reference implementation's bytes, every malformed
// input, a seeded fuzz) and the Hugging Face Llama layout (names, the q/k RoPE permutation, config.json,
// export/import directories, and logits: ours against a float64 HF-style reference forward).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../src/formats/gguf.js';
import {
  HfFormatError, exportHf, ggufTensorName, hfConfigFromLlama, hfTensorName, hfWeightsFromLlama, importHf, llamaFromHfConfig,
  permuteQkGgufToHf, permuteQkHfToGguf,
} from '../src/io/hf-llama.js';
import {
  MAX_HEADER_BYTES, SafetensorsError, type SafetensorsTensorInput, getTensorInfo, readSafetensors, tensorToF32, writeSafetensors,
} from '../src/formats/safetensors.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { type LlamaConfig, PRESETS, parameterShapes } from '../src/models/config.js';
import { kvCacheFor, Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';
import { maxAbsDiff } from './helpers.js';

const FILE = 'bad.safetensors';
const enc = new TextEncoder();

/** A file from a header (text or an object to stringify) and data, with an optional forged length. */
function fileFrom(header: string | Uint8Array | object, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const text = header instanceof Uint8Array ? header : enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

function rejects(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => readSafetensors(bytes, FILE), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected a SafetensorsError, got ${String(e)}`);
    assert.ok(e.message.startsWith(`${FILE}: `), `message does not name the file: ${e.message}`);
    assert.match(e.message, message);
    return true;
  });
}

const f32Bytes = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);
const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function randomArray(rng: Rng, n: number, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * std);
}

describe('safetensors', () => {
  test('F32, F16 and BF16 round trips with metadata; the data starts at a multiple of 8', () => {
    const rng = new Rng(1);
    const values = randomArray(rng, 24);
    values[0] = 0;
    values[1] = -0;
    values[2] = Infinity;
    values[3] = 1e-7; // an f16 subnormal
    for (let nameLength = 1; nameLength <= 9; nameLength++) {
      const name = 'w'.repeat(nameLength); // varies the header length over every remainder mod 8
      const tensors: SafetensorsTensorInput[] = [
        { name, dtype: 'F32', shape: [4, 6], data: values },
        { name: 'half', dtype: 'F16', shape: [2, 3, 4], data: values },
        { name: 'brain', dtype: 'BF16', shape: [24], data: values },
        { name: 'empty', dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
        { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.of(3.5) },
      ];
      const bytes = writeSafetensors(tensors, { format: 'pt', note: 'ünïcode ✓' });
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      assert.equal((8 + n) % 8, 0);
      const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
      assert.match(header, /^\{"__metadata__":\{"format":"pt","note":"ünïcode ✓"\},/);
      assert.match(header, /\} *$/, 'the padding is spaces');
      const file = readSafetensors(bytes, 'rt.safetensors');
      assert.equal(file.dataOffset, 8 + n);
      assert.deepEqual([...file.metadata], [['format', 'pt'], ['note', 'ünïcode ✓']]);
      assert.deepEqual(file.tensors.map((t) => t.name), [name, 'half', 'brain', 'empty', 'scalar']);
      assert.deepEqual(getTensorInfo(file, 'half').shape, [2, 3, 4]);
      assert.ok(sameBits(tensorToF32(file, name), values));
      assert.ok(sameBits(tensorToF32(file, 'half'), decodeF16(encodeF16(values), 24)));
      assert.ok(sameBits(tensorToF32(file, 'brain'), decodeBf16(encodeBf16(values), 24)));
      assert.equal(tensorToF32(file, 'empty').length, 0);
      assert.deepEqual([...tensorToF32(file, 'scalar')], [3.5]);
      // Rewriting what was read gives the same bytes.
      const again = writeSafetensors(file.tensors.map((t) => ({ name: t.name, dtype: t.dtype as 'F32', shape: t.shape, data: file.bytes.subarray(file.dataOffset + t.begin, file.dataOffset + t.end) })), file.metadata);
      assert.deepEqual(again, bytes);
    }
  });

  test("the writer produces the reference implementation's bytes (its serialization test vectors)", () => {
    // huggingface/safetensors tensor.rs tests: test_serialization, test_serialization_forced_alignement, test_empty.
    const data = f32Bytes([0, 1, 2, 3, 4, 5]);
    const expect = (json: string, padding: number, tail: Uint8Array) => {
      const header = json + ' '.repeat(padding);
      return fileFrom(header, tail);
    };
    assert.deepEqual(
      writeSafetensors([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: Float32Array.of(0, 1, 2, 3, 4, 5) }]),
      expect('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', 0, data),
    );
    assert.equal(expect('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', 0, data)[0], 64);
    const aligned = writeSafetensors([{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data: Float32Array.of(0, 1, 2, 3, 4, 5) }]);
    assert.deepEqual(aligned, expect('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}', 7, data));
    assert.equal(aligned[0], 72);
    assert.deepEqual(writeSafetensors([]), Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32));
    const meta = writeSafetensors([], { framework: 'pt' });
    assert.equal(meta[0], 40);
    assert.deepEqual(meta, expect('{"__metadata__":{"framework":"pt"}}', 5, new Uint8Array(0)));
    // And the reader accepts the reference's own doc example (I32, no padding).
    const doc = readSafetensors(fileFrom('{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', new Uint8Array(16)));
    assert.deepEqual(doc.tensors[0], { name: 'test', dtype: 'I32', shape: [2, 2], begin: 0, end: 16 });
  });

  test('header order does not matter; zero-size tensors, scalars, sub-byte dtypes and "__proto__" are fine', () => {
    const f = readSafetensors(fileFrom({
      b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      z: { dtype: 'F16', shape: [0], data_offsets: [4, 4] },
      a: { dtype: 'F32', shape: [], data_offsets: [0, 4] },
      q: { dtype: 'F4', shape: [4], data_offsets: [8, 10] },
    }, new Uint8Array(10)));
    assert.deepEqual(f.tensors.map((t) => t.name), ['b', 'z', 'a', 'q']);
    const proto = writeSafetensors([{ name: '__proto__', dtype: 'F32', shape: [1], data: Float32Array.of(2) }, { name: 'constructor', dtype: 'F32', shape: [1], data: Float32Array.of(3) }], new Map([['__proto__', 'x']]));
    const p = readSafetensors(proto);
    assert.deepEqual([...p.metadata], [['__proto__', 'x']]);
    assert.deepEqual([...tensorToF32(p, '__proto__')], [2]);
    assert.deepEqual([...tensorToF32(p, 'constructor')], [3]);
  });

  test('malformed files: each a SafetensorsError naming the file and the field', () => {
    const w = (extra: object = {}) => ({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8], ...extra } });
    const eight = new Uint8Array(8);
    rejects(new Uint8Array(5), /header length: the file has 5 bytes/);
    rejects(fileFrom('{}', new Uint8Array(0), BigInt(MAX_HEADER_BYTES + 1)), /header length: 100000001 bytes is absurd/);
    rejects(fileFrom('{}', new Uint8Array(0), 0xffffffffffffffffn), /header length: 18446744073709551615 bytes is absurd/);
    rejects(fileFrom('{}', new Uint8Array(0), 100n), /header length: 100 bytes runs past the end of the file \(2 bytes follow/);
    rejects(fileFrom(Uint8Array.from([...enc.encode('{"'), 0xff, ...enc.encode('":1}')])), /header: is not valid UTF-8/);
    rejects(fileFrom(' {}'), /header: must start with '\{'/);
    rejects(fileFrom('[]'), /header: must start with '\{'/);
    rejects(fileFrom('\ufeff{}'), /header: must start with '\{'/);
    rejects(fileFrom('{"w":'), /header: invalid JSON at character 5: unexpected end/);
    rejects(fileFrom('{} x'), /header: invalid JSON at character 3: unexpected text after/);
    rejects(fileFrom('{"w":{"dtype":"F32",}}'), /header: invalid JSON .*expected a key string/);
    rejects(fileFrom('{"w\n":1}'), /header: invalid JSON .*control character/);
    rejects(fileFrom('{"w\\x":1}'), /header: invalid JSON .*invalid escape/);
    rejects(fileFrom('{"w":01}'), /header: invalid JSON/);
    rejects(fileFrom(`{"a":${'['.repeat(100)}${']'.repeat(100)}}`), /header: invalid JSON .*nested deeper than 8 levels/);
    rejects(fileFrom('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', eight), /header: invalid JSON .*duplicate key "w"/);
    rejects(fileFrom('{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}', eight), /duplicate key "dtype"/);
    rejects(fileFrom('{"__metadata__":{"format":"pt","format":"np"}}'), /duplicate key "format"/);
    rejects(fileFrom(w({ dtype: 'F33' }), eight), /tensor 'w': dtype: unknown dtype 'F33' \(known: BOOL, U8/);
    rejects(fileFrom(w({ dtype: 3 }), eight), /tensor 'w': dtype: must be a string, found 3/);
    rejects(fileFrom({ w: { shape: [2], data_offsets: [0, 8] } }, eight), /tensor 'w': dtype: is missing/);
    rejects(fileFrom(w({ shape: [-2] }), eight), /tensor 'w': shape: dimension 0: -2 is not a non-negative integer/);
    rejects(fileFrom(w({ shape: [2, 1.5] }), eight), /tensor 'w': shape: dimension 1: 1.5 is not a non-negative integer/);
    rejects(fileFrom(w({ shape: ['2'] }), eight), /tensor 'w': shape: dimension 0: "2" is not/);
    rejects(fileFrom(w({ shape: [2 ** 60] }), eight), /tensor 'w': shape: dimension 0: 1152921504606847000 is too large \(over 2\^53\)/);
    rejects(fileFrom(w({ shape: 2 }), eight), /tensor 'w': shape: must be an array, found 2/);
    rejects(fileFrom(w({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }), eight), /tensor 'w': shape: \[1073741824, 1073741824, 1073741824\]: element count overflows/);
    rejects(fileFrom(w({ shape: [0, ...Array(2000).fill(2 ** 52)] }), eight), /tensor 'w': shape \[0, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, … \(2001 dims\)\] of F32 needs 0 bytes, data_offsets \[0, 8\] hold 8/);
    rejects(fileFrom(w({ shape: Array(100000).fill(2 ** 52) }), eight), /tensor 'w': shape: \[4503599627370496, .*, … \(100000 dims\)\]: element count overflows \(the product of the dims exceeds 2\^53\)/);
    rejects(fileFrom(w({ shape: [3] }), eight), /tensor 'w': shape \[3\] of F32 needs 12 bytes, data_offsets \[0, 8\] hold 8/);
    rejects(fileFrom(w({ dtype: 'F4', shape: [3], data_offsets: [0, 2] }), new Uint8Array(2)), /tensor 'w': shape: \[3\]: 3 elements of 4 bits are not a whole number of bytes/);
    rejects(fileFrom(w({ data_offsets: [0, 16] }), eight), /tensor 'w': data_offsets: \[0, 16\] runs past the end of the data \(8 bytes\)/);
    rejects(fileFrom(w({ data_offsets: [8, 0] }), eight), /tensor 'w': data_offsets: end 0 is before begin 8/);
    rejects(fileFrom(w({ data_offsets: [0] }), eight), /tensor 'w': data_offsets: must be \[begin, end\], found an array of 1/);
    rejects(fileFrom(w({ data_offsets: [0, -8] }), eight), /tensor 'w': data_offsets: end: -8 is not a non-negative integer/);
    rejects(fileFrom('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,1e400]}}', eight), /tensor 'w': data_offsets: end: Infinity is not a non-negative integer/);
    rejects(fileFrom(w({ extra: 1 }), eight), /tensor 'w': unknown field 'extra'/);
    rejects(fileFrom({ w: [1] }), /tensor 'w': must be an object, found an array of 1/);
    const a = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
    rejects(fileFrom({ a, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)), /tensor 'b': data_offsets: \[4, 12\] overlaps tensor 'a' \[0, 8\]/);
    rejects(fileFrom({ a, b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] } }, new Uint8Array(16)), /tensor 'b': data_offsets: begins at 12, leaving a hole: bytes 8\.\.12/);
    rejects(fileFrom({ b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight), /tensor 'b': data_offsets: begins at 4, leaving a hole: bytes 0\.\.4/);
    rejects(fileFrom({ a }, new Uint8Array(12)), /data: the data section has 12 bytes but the tensors cover only the first 8/);
    rejects(fileFrom({ __metadata__: { n: 1 } }), /__metadata__ 'n': value must be a string, found 1/);
    rejects(fileFrom({ __metadata__: ['pt'] }), /__metadata__: must be an object of strings, found an array of 1/);
  });

  test('tensorToF32 and the writer reject what they cannot do, naming the tensor', () => {
    const f = readSafetensors(fileFrom({ ints: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), 'i.safetensors');
    assert.throws(() => tensorToF32(f, 'ints'), /^SafetensorsError: i\.safetensors: tensor 'ints': unsupported dtype I32 \(stlm reads F32, F16, BF16\)/);
    assert.throws(() => tensorToF32(f, 'nope'), /i\.safetensors: no tensor named 'nope'/);
    const t = (extra: Partial<SafetensorsTensorInput>): SafetensorsTensorInput => ({ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2), ...extra });
    assert.throws(() => writeSafetensors([t({}), t({})]), /tensor 'w' is given twice/);
    assert.throws(() => writeSafetensors([t({ name: '__metadata__' })]), /reserved/);
    assert.throws(() => writeSafetensors([t({ shape: [3] })]), /tensor 'w': shape \[3\] has 3 elements, data has 2/);
    assert.throws(() => writeSafetensors([t({ shape: [-1] })]), /tensor 'w': shape must be non-negative integers/);
    assert.throws(() => writeSafetensors([t({ dtype: 'I8' as 'F32' })]), /tensor 'w': dtype must be F32, F16 or BF16/);
    assert.throws(() => writeSafetensors([t({ dtype: 'F16', data: new Uint8Array(3) })]), /tensor 'w': shape \[2\] of F16 takes 4 bytes, data has 3/);
    assert.throws(() => writeSafetensors([], { n: 1 as unknown as string }), /metadata 'n': value must be a string/);
  });

  test('fuzz: 4000 random byte flips and truncations either parse or throw SafetensorsError', () => {
    const rng = new Rng(2024);
    const valid = writeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2, 3], data: randomArray(rng, 6) },
      { name: 'b', dtype: 'F16', shape: [4], data: randomArray(rng, 4) },
      { name: 'c', dtype: 'BF16', shape: [2, 2], data: randomArray(rng, 4) },
    ], { format: 'pt' });
    const headerEnd = 8 + Number(new DataView(valid.buffer).getBigUint64(0, true));
    let parsed = 0, rejected = 0;
    const t0 = performance.now();
    for (let i = 0; i < 4000; i++) {
      let bytes = valid.slice();
      // Modes: 0 flips in the header (where the structure is), 1 truncates, 2 flips in the data (the
      // file stays valid), 3 flips anywhere and sometimes appends bytes.
      const mode = rng.int(4);
      const flip = (from: number, to: number) => {
        for (let k = 1 + rng.int(3); k > 0; k--) {
          const at = from + rng.int(to - from);
          bytes[at] = rng.next() < 0.5 ? rng.int(256) : bytes[at] ^ (1 << rng.int(8));
        }
      };
      if (mode === 0) flip(0, headerEnd);
      if (mode === 1) bytes = bytes.slice(0, rng.int(bytes.length));
      if (mode === 2) flip(headerEnd, bytes.length);
      if (mode === 3) flip(0, bytes.length);
      if (mode === 3 && rng.next() < 0.3) bytes = Uint8Array.from([...bytes, ...Array.from({ length: 1 + rng.int(8) }, () => rng.int(256))]);
      try {
        const f = readSafetensors(bytes, 'fuzz.safetensors');
        for (const t of f.tensors) if (['F32', 'F16', 'BF16'].includes(t.dtype)) tensorToF32(f, t.name);
        parsed++;
      } catch (e) {
        if (!(e instanceof SafetensorsError)) assert.fail(`case ${i} threw ${String(e)}`);
        assert.match(e.message, /^fuzz\.safetensors: /);
        rejected++;
      }
    }
    assert.ok(parsed > 800 && rejected > 2000, `parsed ${parsed}, rejected ${rejected}`);
  });
});

// ---------------------------------------------------------------------------------------------------
// Hugging Face Llama

/** A small GQA config: 4 query heads, 2 kv heads of 8 dims. */
const SMALL: LlamaConfig = { ...PRESETS.nano, vocabSize: 40, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, mlpHidden: 48, ctx: 16, tieEmbeddings: false };

/** Weights large enough that attention is far from uniform, so a RoPE layout error shows in the logits. */
function randomWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  return new Map(parameterShapes(config).map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 1) return [name, Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal())];
    const std = name === 'token_embd.weight' ? 1 : (/attn_[qk]\./.test(name) ? 2 : 1) / Math.sqrt(shape[1]);
    return [name, randomArray(rng, n, std)];
  }));
}

function logitsOf(be: Backend, config: LlamaConfig, weights: Map<string, Float32Array>, ids: Int32Array): Float32Array {
  const g = new Graph(be);
  const cache = kvCacheFor(g, config, ids.length);
  const out = new Llama(g, config, weights).forward(ids, cache, false).toArray();
  g.release();
  cache.dispose();
  return out;
}

/**
 * A float64 Llama forward written the Hugging Face way, on HF-named, HF-layout weights: rotate_half RoPE
 * (dim i rotates with i + headDim/2), kv head of query head h = floor(h / (heads / kvHeads)).
 */
function hfReferenceLogits(c: LlamaConfig, w: Map<string, Float32Array>, ids: Int32Array): Float64Array {
  const hd = c.dModel / c.nHeads, half = hd / 2, T = ids.length, get = (n: string) => w.get(n)!;
  const matvec = (m: Float32Array, x: Float64Array, rows: number) => {
    const cols = x.length, y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) { let s = 0; for (let i = 0; i < cols; i++) s += m[r * cols + i] * x[i]; y[r] = s; }
    return y;
  };
  const rmsNorm = (x: Float64Array, g: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const inv = 1 / Math.sqrt(ss / x.length + c.normEps);
    return x.map((v, i) => v * inv * g[i]);
  };
  const rotateHalf = (x: Float64Array, heads: number, pos: number) => {
    const out = new Float64Array(x.length);
    for (let h = 0; h < heads; h++) for (let i = 0; i < half; i++) {
      const angle = pos * c.ropeTheta ** (-(2 * i) / hd), cos = Math.cos(angle), sin = Math.sin(angle);
      const a = x[h * hd + i], b = x[h * hd + i + half];
      out[h * hd + i] = a * cos - b * sin;
      out[h * hd + i + half] = b * cos + a * sin;
    }
    return out;
  };
  const emb = get('model.embed_tokens.weight');
  let xs = Array.from(ids, (id) => Float64Array.from(emb.subarray(id * c.dModel, (id + 1) * c.dModel)));
  const kvDim = c.nKvHeads * hd;
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    const hs = xs.map((x) => rmsNorm(x, get(p + 'input_layernorm.weight')));
    const qs = hs.map((h, t) => rotateHalf(matvec(get(p + 'self_attn.q_proj.weight'), h, c.dModel), c.nHeads, t));
    const ks = hs.map((h, t) => rotateHalf(matvec(get(p + 'self_attn.k_proj.weight'), h, kvDim), c.nKvHeads, t));
    const vs = hs.map((h) => matvec(get(p + 'self_attn.v_proj.weight'), h, kvDim));
    xs = xs.map((x, t) => {
      const att = new Float64Array(c.dModel);
      for (let h = 0; h < c.nHeads; h++) {
        const kv = Math.floor(h / (c.nHeads / c.nKvHeads));
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qs[t][h * hd + i] * ks[s][kv * hd + i];
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...scores), e = scores.map((s) => Math.exp(s - m)), z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) for (let i = 0; i < hd; i++) att[h * hd + i] += (e[s] / z) * vs[s][kv * hd + i];
      }
      const y = x.map((v, i) => v + matvec(get(p + 'self_attn.o_proj.weight'), att, c.dModel)[i]);
      const h2 = rmsNorm(y, get(p + 'post_attention_layernorm.weight'));
      const gate = matvec(get(p + 'mlp.gate_proj.weight'), h2, c.mlpHidden), up = matvec(get(p + 'mlp.up_proj.weight'), h2, c.mlpHidden);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = matvec(get(p + 'mlp.down_proj.weight'), act, c.dModel);
      return y.map((v, i) => v + down[i]);
    });
  }
  const head = c.tieEmbeddings ? emb : get('lm_head.weight');
  const out = new Float64Array(T * c.vocabSize);
  xs.forEach((x, t) => out.set(matvec(head, rmsNorm(x, get('model.norm.weight')), c.vocabSize), t * c.vocabSize));
  return out;
}

const hfValues = (config: LlamaConfig, weights: Map<string, Float32Array>) => new Map([...hfWeightsFromLlama(config, weights)].map(([n, t]) => [n, t.data]));

describe('hugging face llama layout', () => {
  let be: Backend;
  let dir: string;
  before(async () => {
    be = await createWasmBackend({ threads: 1 });
    dir = await mkdtemp(join(tmpdir(), 'stlm-hf-test-'));
  });
  after(async () => {
    be.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  test('tensor names map both ways', () => {
    const config = { ...SMALL, tieEmbeddings: false };
    for (const [name] of parameterShapes(config)) assert.equal(ggufTensorName(hfTensorName(name)), name);
    assert.deepEqual(parameterShapes({ ...config, nLayers: 1 }).map(([n]) => hfTensorName(n)), [
      'model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.k_proj.weight', 'model.layers.0.self_attn.v_proj.weight', 'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.post_attention_layernorm.weight', 'model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight',
      'model.layers.0.mlp.down_proj.weight', 'model.norm.weight', 'lm_head.weight',
    ]);
    assert.equal(hfTensorName('blk.11.ffn_down.weight'), 'model.layers.11.mlp.down_proj.weight');
    assert.throws(() => hfTensorName('blk.0.attn_qkv.weight'), HfFormatError);
    assert.equal(ggufTensorName('model.layers.0.self_attn.rotary_emb.inv_freq'), undefined);
    assert.equal(ggufTensorName('model.layers.0.self_attn.q_proj.bias'), undefined);
  });

  test('q/k permutation: a hand-made example, per head, and inverse ∘ permute = identity', () => {
    // One head of 4 dims, 1 input column: HF rows [x0 x1 | y0 y1] rotate (x0,y0) and (x1,y1); ours pairs
    // neighbours, so the rows become [x0 y0 x1 y1].
    assert.deepEqual([...permuteQkHfToGguf(Float32Array.of(10, 11, 20, 21), 1, 1)], [10, 20, 11, 21]);
    // headDim 6: [0 1 2 | 3 4 5] -> [0 3 1 4 2 5]; two heads are permuted separately; rows move whole.
    assert.deepEqual([...permuteQkHfToGguf(Float32Array.of(0, 1, 2, 3, 4, 5), 1, 1)], [0, 3, 1, 4, 2, 5]);
    assert.deepEqual([...permuteQkHfToGguf(Float32Array.of(0, 1, 2, 3, 4, 5, 6, 7), 2, 1)], [0, 2, 1, 3, 4, 6, 5, 7]);
    assert.deepEqual([...permuteQkHfToGguf(Float32Array.of(0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5), 1, 2)], [0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5]);
    // The reshape(heads, 2, hd/2, in).swapaxes(1, 2) of llama.cpp's converter, written out as indices.
    const heads = 3, hd = 8, cols = 5, rng = new Rng(3);
    const w = randomArray(rng, heads * hd * cols);
    const p = permuteQkHfToGguf(w, heads, cols);
    for (let h = 0; h < heads; h++) for (let i = 0; i < hd / 2; i++) for (let j = 0; j < 2; j++) for (let c = 0; c < cols; c++) {
      assert.equal(p[((h * hd) + 2 * i + j) * cols + c], w[((h * hd) + j * (hd / 2) + i) * cols + c]);
    }
    assert.ok(sameBits(permuteQkGgufToHf(p, heads, cols), w));
    assert.ok(sameBits(permuteQkHfToGguf(permuteQkGgufToHf(w, heads, cols), heads, cols), w));
    assert.throws(() => permuteQkHfToGguf(new Float32Array(6), 1, 2), /not \[heads 1 × even headDim, 2\]/);
  });

  test('config.json: written for LlamaForCausalLM, read back; unsupported settings are clear errors', () => {
    const hf = hfConfigFromLlama(SMALL, { bosTokenId: 256, eosTokenId: 257 });
    assert.deepEqual(hf.architectures, ['LlamaForCausalLM']);
    assert.equal(hf.model_type, 'llama');
    assert.equal(hf.hidden_act, 'silu');
    assert.equal(hf.torch_dtype, 'float32');
    assert.equal(hf.num_key_value_heads, 2);
    assert.equal(hf.bos_token_id, 256);
    assert.equal(hf.pad_token_id, undefined);
    assert.deepEqual(llamaFromHfConfig(JSON.parse(JSON.stringify(hf)), 'c.json'), { ...SMALL, dropout: 0 });
    const bad = (patch: Record<string, unknown>, message: RegExp) => assert.throws(() => llamaFromHfConfig({ ...hf, ...patch }, 'c.json'), (e: unknown) => {
      assert.ok(e instanceof HfFormatError);
      assert.match(e.message, /^c\.json: /);
      assert.match(e.message, message);
      return true;
    });
    bad({ hidden_size: undefined }, /hidden_size: is missing/);
    bad({ num_hidden_layers: 1.5 }, /num_hidden_layers: must be a positive integer, got 1.5/);
    bad({ rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling: .*linear.* is not supported/);
    bad({ rope_parameters: { rope_type: 'llama3', rope_theta: 5e5 } }, /rope_parameters: .*llama3.* is not supported/);
    bad({ hidden_act: 'gelu' }, /hidden_act: "gelu" is not supported/);
    bad({ head_dim: 16 }, /head_dim: 16 is not hidden_size \/ num_attention_heads = 8/);
    bad({ model_type: 'mistral' }, /model_type: "mistral" is not supported/);
    bad({ architectures: ['GPT2LMHeadModel'] }, /architectures: \["GPT2LMHeadModel"\] is not supported \(stlm reads LlamaForCausalLM, MistralForCausalLM\)/);
    bad({ attention_bias: true }, /attention_bias: true is not supported \(stlm's attention has no biases\)/);
    bad({ num_key_value_heads: 3 }, /num_key_value_heads: 3 does not divide num_attention_heads 4/);
    // transformers' defaults fill what is absent; rope_parameters (newer transformers) carries rope_theta.
    const minimal = { model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 40, rope_parameters: { rope_type: 'default', rope_theta: 500000 } };
    assert.deepEqual(llamaFromHfConfig(minimal, 'm.json'), { vocabSize: 40, dModel: 32, nLayers: 1, nHeads: 4, nKvHeads: 4, mlpHidden: 48, ctx: 2048, tieEmbeddings: false, ropeTheta: 500000, normEps: 1e-6, dropout: 0 });
  });

  test('exportHf / importHf: bit-exact in F32, the exact roundings in F16 and BF16, tied and untied', async () => {
    for (const tie of [true, false]) {
      const config = { ...SMALL, tieEmbeddings: tie };
      const weights = randomWeights(config, tie ? 11 : 12);
      for (const dtype of ['F32', 'F16', 'BF16'] as const) {
        const out = join(dir, `rt-${tie}-${dtype}`);
        await exportHf(config, weights, out, { dtype, tokenIds: { bosTokenId: 1, eosTokenId: 2 }, extraFiles: { 'tokenizer_config.json': '{}' } });
        assert.deepEqual((await readdir(out)).sort(), ['config.json', 'model.safetensors', 'tokenizer_config.json']);
        const file = readSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
        assert.equal(file.metadata.get('format'), 'pt');
        assert.equal(file.tensors.some((t) => t.name === 'lm_head.weight'), !tie);
        assert.ok(file.tensors.every((t) => t.dtype === dtype));
        const back = await importHf(out);
        assert.deepEqual(back.config, { ...config, dropout: 0 });
        assert.equal(back.hfConfig.eos_token_id, 2);
        assert.equal(back.dir, out);
        const round = (w: Float32Array) => (dtype === 'F16' ? decodeF16(encodeF16(w), w.length) : dtype === 'BF16' ? decodeBf16(encodeBf16(w), w.length) : w);
        assert.deepEqual([...back.weights.keys()], [...weights.keys()]);
        for (const [name, w] of weights) assert.ok(sameBits(back.weights.get(name)!, round(w)), `${dtype} ${name}`);
      }
    }
  });

  test('importHf reads a sharded checkpoint (model.safetensors.index.json)', async () => {
    const weights = randomWeights(SMALL, 13);
    const out = join(dir, 'sharded');
    await exportHf(SMALL, weights, out);
    const single = readSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
    await rm(join(out, 'model.safetensors'));
    const shardOf = (i: number) => `model-0000${(i % 2) + 1}-of-00002.safetensors`;
    const weightMap: Record<string, string> = {};
    for (const shard of [0, 1]) {
      const mine = single.tensors.filter((_, i) => i % 2 === shard);
      for (const t of mine) weightMap[t.name] = shardOf(shard);
      await writeFile(join(out, shardOf(shard)), writeSafetensors(mine.map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, data: tensorToF32(single, t.name) })), { format: 'pt' }));
    }
    await writeFile(join(out, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const back = await importHf(out);
    for (const [name, w] of weights) assert.ok(sameBits(back.weights.get(name)!, w), name);
    await writeFile(join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, 'model.norm.weight': '../escape.safetensors' } }));
    await assert.rejects(importHf(out), /weight_map 'model\.norm\.weight': '\.\.\/escape\.safetensors' is not a plain file name/);
  });

  test('importHf errors: missing, misshapen and unexpected tensors, no weights file', async () => {
    const config = { ...SMALL, nLayers: 1 };
    const out = join(dir, 'broken');
    await exportHf(config, randomWeights(config, 14), out);
    const hf = hfValues(config, randomWeights(config, 14));
    const save = async (entries: [string, Float32Array, number[]][]) =>
      writeFile(join(out, 'model.safetensors'), writeSafetensors(entries.map(([name, data, shape]) => ({ name, dtype: 'F32', shape, data })), { format: 'pt' }));
    const shapes = new Map(parameterShapes(config).map(([n, s]) => [hfTensorName(n), s]));
    const all = () => [...hf].map(([n, d]) => [n, d, shapes.get(n)!] as [string, Float32Array, number[]]);
    await save(all().filter(([n]) => n !== 'model.norm.weight'));
    await assert.rejects(importHf(out), /tensor 'model\.norm\.weight' is missing/);
    await save(all().map(([n, d, s]) => (n === 'model.layers.0.self_attn.k_proj.weight' ? [n, d, [s[1], s[0]]] : [n, d, s])));
    await assert.rejects(importHf(out), /tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \[32, 16\], config\.json needs \[16, 32\]/);
    await save([...all(), ['model.layers.1.mlp.up_proj.weight', new Float32Array(1), [1]]]);
    await assert.rejects(importHf(out), /unexpected tensor 'model\.layers\.1\.mlp\.up_proj\.weight'/);
    await save([...all(), ['model.layers.0.self_attn.rotary_emb.inv_freq', new Float32Array(4), [4]]]);
    await importHf(out); // old checkpoints' RoPE frequencies are ignored
    await rm(join(out, 'model.safetensors'));
    await assert.rejects(importHf(out), /neither model\.safetensors nor model\.safetensors\.index\.json/);
    await assert.rejects(importHf(join(dir, 'absent')), /absent\/config\.json: no such file/);
  });

  test('a Llama built from imported weights gives exactly the original logits', async () => {
    for (const config of [SMALL, { ...SMALL, tieEmbeddings: true, nKvHeads: 1 }]) {
      const weights = randomWeights(config, 15);
      const out = join(dir, `logits-${config.nKvHeads}`);
      await exportHf(config, weights, out);
      const back = await importHf(out);
      const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % config.vocabSize);
      assert.ok(sameBits(logitsOf(be, back.config, back.weights, ids), logitsOf(be, config, weights, ids)));
    }
  });

  test('the permutation is right: our forward on our layout = a float64 rotate_half reference on the HF layout', () => {
    for (const config of [{ ...SMALL, nLayers: 1 }, { ...SMALL, nLayers: 1, nHeads: 2, nKvHeads: 1, tieEmbeddings: true }]) {
      const weights = randomWeights(config, 16);
      const ids = Int32Array.from({ length: 10 }, (_, i) => (i * 11 + 5) % config.vocabSize);
      const ours = logitsOf(be, config, weights, ids);
      const reference = hfReferenceLogits(config, hfValues(config, weights), ids);
      const diff = maxAbsDiff(ours, reference);
      assert.ok(diff < 1e-5, `max |ours - HF reference| = ${diff}`);
      // The check can fail: our layout fed to the HF-style reference without the permutation is far off.
      const unpermuted = new Map([...weights].map(([n, w]) => [hfTensorName(n), w]));
      const wrong = maxAbsDiff(ours, hfReferenceLogits(config, unpermuted, ids));
      assert.ok(wrong > 1e-2, `without the permutation the logits differ by only ${wrong}`);
    }
  });
});
