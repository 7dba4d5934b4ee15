// GGUF reader/writer: f16 conversion, quantizers against hand-computed blocks, metadata and tensor round
// trips, malformed files (each must throw a GgufError naming the file and the field), the real fixtures
// (byte-identical re-write), and a seeded fuzz test.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../src/dtypes/f16.js';
import {
  GGML_TYPE, GgufError, type GgufFile, type GgufTensorInput, type GgufValue, decodeTensor, getTensor, gguf,
  metaArray, metaNumber, metaString, quantizeQ4_0, quantizeQ8_0, readGguf, readGgufFile, tensorBytes,
  tensorToF32, writeGguf, writeGgufFile,
} from '../src/formats/gguf.js';
import { Rng } from '../src/util/rng.js';

// From dist/test/gguf.test.js: ../../ is the repository root; the fixtures sit beside it.
const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const TINY_LLAMA = join(FIXTURES, 'models/tiny-random-llama/llama-2-tiny-random.gguf');
const VOCAB_DIR = join(FIXTURES, 'models/llamacpp-vocab');

function loadFixture(path: string): Uint8Array | undefined {
  return existsSync(path) ? new Uint8Array(readFileSync(path)) : undefined;
}
function missing(path: string): string {
  return `fixture ${path} is absent (see ../shared/fixtures/README.md)`;
}

/** Asserts that `fn` throws a GgufError whose message starts with `file: ` and matches `re`. */
function throwsGguf(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof GgufError, `expected a GgufError, got ${String(e)}`);
    assert.ok(e.message.startsWith(`${file}: `), `message should name ${file}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

// ------------------------------------------------------------------------------------------------
// A raw little-endian byte builder, independent of the writer, to hand-craft (bad) files.

class Raw {
  parts: number[] = [];
  u8(v: number): this { this.parts.push(v & 0xff); return this; }
  u32(v: number): this { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: bigint | number): this {
    const b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0n; i < 8n; i++) this.parts.push(Number((b >> (8n * i)) & 0xffn));
    return this;
  }
  bytes(b: ArrayLike<number>): this { for (let i = 0; i < b.length; i++) this.parts.push(b[i]); return this; }
  str(s: string): this { const b = new TextEncoder().encode(s); return this.u64(b.length).bytes(b); }
  header(tensors: number | bigint, kvs: number | bigint, version = 3): this {
    return this.bytes([0x47, 0x47, 0x55, 0x46]).u32(version).u64(tensors).u64(kvs);
  }
  kvU32(key: string, v: number): this { return this.str(key).u32(4).u32(v); }
  tensor(name: string, ne: Array<number | bigint>, type: number, offset: number | bigint): this {
    this.str(name).u32(ne.length);
    for (const d of ne) this.u64(d);
    return this.u32(type).u64(offset);
  }
  padTo(alignment: number): this { while (this.parts.length % alignment) this.parts.push(0); return this; }
  zeros(n: number): this { for (let i = 0; i < n; i++) this.parts.push(0); return this; }
  get length(): number { return this.parts.length; }
  build(): Uint8Array { return Uint8Array.from(this.parts); }
}

/** A valid file with one F32 tensor 'w' of shape [4], to mutate one field at a time. */
function oneTensorFile(opts: { ne?: Array<number | bigint>; type?: number; offset?: number | bigint; data?: number } = {}): Uint8Array {
  const r = new Raw().header(1, 1).kvU32('general.alignment', 32);
  r.tensor('w', opts.ne ?? [4], opts.type ?? GGML_TYPE.F32, opts.offset ?? 0).padTo(32).zeros(opts.data ?? 32);
  return r.build();
}

// ------------------------------------------------------------------------------------------------

describe('f16 and bf16 conversion', () => {
  test('known values', () => {
    assert.equal(f32ToF16(1), 0x3c00);
    assert.equal(f32ToF16(-2), 0xc000);
    assert.equal(f32ToF16(0.5), 0x3800);
    assert.equal(f32ToF16(65504), 0x7bff); // largest finite
    assert.equal(f32ToF16(65519), 0x7bff); // below the midpoint to 65536
    assert.equal(f32ToF16(65520), 0x7c00); // the midpoint: ties to even = Infinity
    assert.equal(f32ToF16(1e6), 0x7c00);
    assert.equal(f32ToF16(2 ** -14), 0x0400); // smallest normal, 6.1035e-5
    assert.equal(f32ToF16(6.1e-5), 0x03ff); // 6.1e-5 * 2^24 = 1023.4: the largest subnormal
    assert.equal(f32ToF16(5.96e-8), 0x0001); // ~2^-24: the smallest subnormal
    assert.equal(f32ToF16(2 ** -25), 0x0000); // exactly half the smallest subnormal: ties to even = 0
    assert.equal(f32ToF16(3 * 2 ** -26), 0x0001); // 0.75 of it: rounds up
    assert.equal(f32ToF16(3 * 2 ** -25), 0x0002); // 1.5 units: ties to even = 2
    assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie between 1 and 1+2^-10: even
    assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie between odd and even: up to even
    assert.equal(f32ToF16(0), 0x0000);
    assert.equal(f32ToF16(-0), 0x8000);
    assert.equal(f32ToF16(Infinity), 0x7c00);
    assert.equal(f32ToF16(-Infinity), 0xfc00);
    const nan = f32ToF16(NaN);
    assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, 'NaN stays NaN');
    assert.equal(f16ToF32(0x3c00), 1);
    assert.equal(f16ToF32(0xc000), -2);
    assert.equal(f16ToF32(0x7bff), 65504);
    assert.equal(f16ToF32(0x0001), 2 ** -24);
    assert.equal(f16ToF32(0x03ff), 1023 * 2 ** -24);
    assert.ok(Object.is(f16ToF32(0x8000), -0));
    assert.equal(f16ToF32(0xfc00), -Infinity);
    assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  });

  test('exhaustive: every f16 round-trips, and midpoints round to even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = f16ToF32(h);
      if (Number.isNaN(x)) { assert.ok(Number.isNaN(f16ToF32(f32ToF16(x))), `NaN ${h}`); continue; }
      assert.equal(f32ToF16(x), h, `f16 bits ${h.toString(16)}`);
    }
    // Between each pair of adjacent positive finite f16 values a < b (including 65504 -> 65536 = Inf):
    // the exact midpoint goes to the one with an even mantissa; anything off the midpoint to the nearer.
    for (let h = 0; h < 0x7c00; h++) {
      const a = f16ToF32(h), b = h + 1 === 0x7c00 ? 65536 : f16ToF32(h + 1);
      const mid = (a + b) / 2; // exact in f32: 12 significant bits
      assert.equal(f32ToF16(mid), (h & 1) === 0 ? h : h + 1, `midpoint after ${h.toString(16)}`);
      assert.equal(f32ToF16(-mid), ((h & 1) === 0 ? h : h + 1) | 0x8000);
      const up = Math.fround(mid + (b - a) / 1024), down = Math.fround(mid - (b - a) / 1024);
      assert.equal(f32ToF16(up), h + 1);
      assert.equal(f32ToF16(down), h);
    }
  });

  test('bf16', () => {
    assert.equal(f32ToBf16(1), 0x3f80);
    assert.equal(f32ToBf16(-2), 0xc000);
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie: even
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82); // tie: up to even
    assert.equal(f32ToBf16(Infinity), 0x7f80);
    assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
    assert.equal(bf16ToF32(0x3f80), 1);
    assert.equal(bf16ToF32(0x4049), 3.140625);
  });
});

describe('quantization', () => {
  // x_j = j - 16: amax 16, d = 16/127, 1/d = 7.9375 exactly, so q_j = round((j - 16) * 7.9375).
  const ramp = Float32Array.from({ length: 32 }, (_, j) => j - 16);

  test('Q8_0: hand-computed block', () => {
    const b = quantizeQ8_0(ramp);
    assert.equal(b.length, 34);
    // d = 16/127 = 0.12598...; nearest f16 is 1032 * 2^-13 = 0.1259765625: exponent 12, mantissa 8.
    assert.equal(b[0] | (b[1] << 8), 0x3008);
    const q = Array.from(b.subarray(2), (v) => (v << 24) >> 24);
    assert.equal(q[0], -127);
    assert.equal(q[16], 0);
    assert.equal(q[31], 119); // 15 * 7.9375 = 119.0625
    assert.equal(q[8], -64); // -63.5: halves round away from zero (C roundf)
    assert.equal(q[24], 64); // 63.5
    assert.equal(q[1], -119); // -119.0625
    for (let j = 0; j < 32; j++) {
      const v = (j - 16) * 7.9375;
      assert.equal(q[j], Math.sign(v) * Math.floor(Math.abs(v) + 0.5), `q[${j}]`);
    }
    const y = decodeTensor(GGML_TYPE.Q8_0, b, 32);
    const d16 = 1032 * 2 ** -13;
    for (let j = 0; j < 32; j++) assert.equal(y[j], Math.fround(q[j] * d16));
  });

  test('Q8_0: error within d/2 (plus the f16 rounding of d) on random data', () => {
    const rng = new Rng(7);
    const x = Float32Array.from({ length: 32 * 64 }, (_, i) => rng.normal() * (1 + (i >> 5)));
    const y = decodeTensor(GGML_TYPE.Q8_0, quantizeQ8_0(x), x.length);
    for (let blk = 0; blk < 64; blk++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]));
      const d = amax / 127, d16 = f16ToF32(f32ToF16(d));
      const bound = d / 2 + 127 * Math.abs(d16 - d) + 1e-6 * amax;
      for (let j = 0; j < 32; j++) {
        const i = blk * 32 + j;
        assert.ok(Math.abs(y[i] - x[i]) <= bound, `block ${blk} item ${j}: ${x[i]} -> ${y[i]} (bound ${bound})`);
      }
    }
  });

  test('Q4_0: hand-computed block', () => {
    // max = -16 (largest |x|), d = -16 / -8 = 2, 1/d = 0.5; q_j = min(15, trunc((j - 16) / 2 + 8.5)).
    const b = quantizeQ4_0(ramp);
    assert.equal(b.length, 18);
    assert.equal(b[0] | (b[1] << 8), 0x4000); // f16(2)
    const lo = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8];
    const hi = [8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15]; // the last is 16, clamped
    assert.deepEqual(Array.from(b.subarray(2)), lo.map((l, j) => l | (hi[j] << 4)));
    const y = decodeTensor(GGML_TYPE.Q4_0, b, 32);
    assert.deepEqual(Array.from(y), [...lo, ...hi].map((q) => (q - 8) * 2));
    assert.equal(y[0], -16);
    assert.equal(y[31], 14); // clamped: error d/2
  });

  test('Q4_0: positive max gives a negative scale; zeros give d = 0', () => {
    const x = new Float32Array(32);
    x[0] = 1; x[1] = 0.5; x[2] = -0.25;
    const b = quantizeQ4_0(x);
    assert.equal(f16ToF32(b[0] | (b[1] << 8)), -0.125);
    const y = decodeTensor(GGML_TYPE.Q4_0, b, 32);
    assert.equal(y[0], 1);
    assert.equal(y[1], 0.5);
    assert.equal(y[2], -0.25);
    assert.ok(y[3] === 0); // -0: (8 - 8) * -0.125
    const z = quantizeQ4_0(new Float32Array(32));
    assert.deepEqual(Array.from(z), [0x00, 0x80, ...new Array(16).fill(0x88)]); // d = 0 / -8 = -0 (as in C)
    assert.ok(decodeTensor(GGML_TYPE.Q4_0, z, 32).every((v) => v === 0));
  });

  test('Q4_0: error within |d|/2 except the clamped top value (|d|)', () => {
    const rng = new Rng(11);
    const x = Float32Array.from({ length: 32 * 64 }, () => rng.normal());
    const y = decodeTensor(GGML_TYPE.Q4_0, quantizeQ4_0(x), x.length);
    for (let blk = 0; blk < 64; blk++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]));
      const d = amax / 8, d16 = Math.abs(f16ToF32(f32ToF16(d)));
      const bound = d + 8 * Math.abs(d16 - d) + 1e-6 * amax;
      for (let j = 0; j < 32; j++) assert.ok(Math.abs(y[blk * 32 + j] - x[blk * 32 + j]) <= bound);
    }
  });

  test('block sizes are enforced', () => {
    assert.throws(() => quantizeQ8_0(new Float32Array(33)), GgufError);
    assert.throws(() => decodeTensor(GGML_TYPE.Q4_0, new Uint8Array(17), 32), GgufError);
  });
});

// ------------------------------------------------------------------------------------------------

const ALL_TYPES: Array<[string, GgufValue]> = [
  ['t.u8', gguf.u8(255)],
  ['t.i8', gguf.i8(-128)],
  ['t.u16', gguf.u16(65535)],
  ['t.i16', gguf.i16(-32768)],
  ['t.u32', gguf.u32(0xffffffff)],
  ['t.i32', gguf.i32(-0x80000000)],
  ['t.f32', gguf.f32(-1.5)],
  ['t.f32max', gguf.f32(3.4028234663852886e38)],
  ['t.f32nan', gguf.f32(NaN)],
  ['t.f64', gguf.f64(Math.PI)],
  ['t.f64neg0', gguf.f64(-0)],
  ['t.u64', gguf.u64(0xffffffffffffffffn)],
  ['t.i64', gguf.i64(-0x8000000000000000n)],
  ['t.true', gguf.bool(true)],
  ['t.false', gguf.bool(false)],
  ['t.str', gguf.str('llama')],
  ['t.empty', gguf.str('')],
  ['t.unicode', gguf.str('\uFEFFBOM kept, ▁word, 日本, 🦙, \u0000 nul')],
  ['a.u8', gguf.arr('u8', [0, 1, 255])],
  ['a.i8', gguf.arr('i8', [-128, 0, 127])],
  ['a.u16', gguf.arr('u16', [0, 65535])],
  ['a.i16', gguf.arr('i16', [-32768, 32767])],
  ['a.u32', gguf.arr('u32', [0, 0xffffffff])],
  ['a.i32', gguf.arr('i32', [-0x80000000, 0x7fffffff])],
  ['a.f32', gguf.arr('f32', [0.5, -0, Infinity])],
  ['a.f64', gguf.arr('f64', [Math.E, -1e300])],
  ['a.u64', gguf.arr('u64', [0n, 0xffffffffffffffffn, 5])],
  ['a.i64', gguf.arr('i64', [-0x8000000000000000n, 0x7fffffffffffffffn])],
  ['a.bool', gguf.arr('bool', [true, false, true])],
  ['a.str', gguf.arr('string', ['a', '', '🦙', '\uFEFF'])],
  ['a.empty', gguf.arr('i32', [])],
  ['a.nested', gguf.arr('array', [gguf.arr('string', ['x', 'y']), gguf.arr('f32', [1]), gguf.arr('array', [gguf.arr('u8', [7])])])],
  ['general.name', gguf.str('round trip')],
];

describe('writer -> reader round trip', () => {
  test('every metadata type, exactly', () => {
    const bytes = writeGguf(ALL_TYPES, []);
    const f = readGguf(bytes, 'meta.gguf');
    assert.equal(f.version, 3);
    assert.equal(f.tensors.length, 0);
    assert.deepEqual(Array.from(f.metadata.keys()), ALL_TYPES.map(([k]) => k));
    for (const [k, v] of ALL_TYPES) assert.deepEqual(f.metadata.get(k), v, k);
    assert.equal(metaString(f, 't.str'), 'llama');
    assert.equal(metaNumber(f, 't.u32'), 0xffffffff);
    assert.equal(metaNumber(f, 'missing', 42), 42);
    assert.deepEqual(metaArray(f, 'a.str', 'string'), ['a', '', '🦙', '\uFEFF']);
    throwsGguf(() => metaString(f, 't.u32'), 'meta.gguf', /'t\.u32': expected a string, found u32/);
    throwsGguf(() => metaArray(f, 'a.str', 'i32'), 'meta.gguf', /expected an array of i32, found an array of string/);
    // write(read(x)) is x
    assert.deepEqual(writeGguf(f.metadata, []), bytes);
  });

  test('F32, F16, BF16, Q8_0, Q4_0 tensors and raw bytes', () => {
    const rng = new Rng(3);
    const vals = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
    const f32 = vals(6), f16 = vals(64), bf16 = vals(3), q8 = vals(96), q4 = vals(64);
    const tensors: GgufTensorInput[] = [
      { name: 'a.f32', shape: [3, 2], type: GGML_TYPE.F32, data: f32 },
      { name: 'b.f16', shape: [32, 2], type: GGML_TYPE.F16, data: f16 },
      { name: 'c.bf16', shape: [3], type: GGML_TYPE.BF16, data: bf16 },
      { name: 'd.q8', shape: [32, 3], type: GGML_TYPE.Q8_0, data: q8 },
      { name: 'e.q4', shape: [64], type: GGML_TYPE.Q4_0, data: q4 },
      { name: 'f.q5k.raw', shape: [256], type: GGML_TYPE.Q5_K, data: new Uint8Array(176).fill(3) },
    ];
    const bytes = writeGguf([['general.architecture', gguf.str('test')]], tensors);
    const f = readGguf(bytes, 'tensors.gguf');
    assert.deepEqual(f.tensors.map((t) => [t.name, t.shape, t.type]), tensors.map((t) => [t.name, Array.from(t.shape), t.type]));
    for (const t of f.tensors) {
      assert.equal(t.offset % 32, 0);
      assert.equal((f.dataOffset + t.offset) % 32, 0);
    }
    assert.deepEqual(tensorToF32(f, getTensor(f, 'a.f32')), f32);
    assert.deepEqual(tensorToF32(f, getTensor(f, 'b.f16')), f16.map((x) => f16ToF32(f32ToF16(x))));
    assert.deepEqual(tensorToF32(f, getTensor(f, 'c.bf16')), bf16.map((x) => bf16ToF32(f32ToBf16(x))));
    assert.deepEqual(tensorBytes(f, getTensor(f, 'd.q8')), quantizeQ8_0(q8));
    assert.deepEqual(tensorToF32(f, getTensor(f, 'd.q8')), decodeTensor(GGML_TYPE.Q8_0, quantizeQ8_0(q8), 96));
    assert.deepEqual(tensorToF32(f, getTensor(f, 'e.q4')), decodeTensor(GGML_TYPE.Q4_0, quantizeQ4_0(q4), 64));
    assert.deepEqual(tensorBytes(f, getTensor(f, 'f.q5k.raw')), new Uint8Array(176).fill(3));
    throwsGguf(() => tensorToF32(f, getTensor(f, 'f.q5k.raw')), 'tensors.gguf', /'f\.q5k\.raw': cannot dequantize Q5_K/);
    // tensorBytes is a view, not a copy
    assert.equal(tensorBytes(f, f.tensors[0]).buffer, bytes.buffer);
    // re-write from the raw bytes: identical file
    const again = writeGguf(f.metadata, f.tensors.map((t) => ({ ...t, data: tensorBytes(f, t) })));
    assert.deepEqual(again, bytes);
  });

  test('alignment 64 is recorded as general.alignment and honoured', () => {
    const bytes = writeGguf([], [
      { name: 'x', shape: [3], type: GGML_TYPE.F32, data: new Float32Array([1, 2, 3]) },
      { name: 'y', shape: [1], type: GGML_TYPE.F32, data: new Float32Array([4]) },
    ], 64);
    const f = readGguf(bytes);
    assert.deepEqual(f.metadata.get('general.alignment'), gguf.u32(64));
    assert.equal(f.alignment, 64);
    assert.equal(f.dataOffset % 64, 0);
    assert.deepEqual(f.tensors.map((t) => t.offset), [0, 64]);
    assert.equal(bytes.length, f.dataOffset + 128);
    assert.deepEqual(tensorToF32(f, f.tensors[1]), new Float32Array([4]));
  });

  test('a Node Buffer from the shared pool (slice() would be a view there)', () => {
    const bytes = writeGguf([['a', gguf.arr('i8', [-1, 2])], ['b', gguf.arr('u8', [3])]], []);
    const buf = Buffer.from(bytes); // small Buffers live inside a larger pool ArrayBuffer
    const f = readGguf(buf);
    assert.deepEqual(f.metadata.get('a'), gguf.arr('i8', [-1, 2]));
    buf.fill(0);
    assert.deepEqual(f.metadata.get('b'), gguf.arr('u8', [3]), 'metadata arrays are copies');
  });

  test('a file inside a larger, unaligned buffer', () => {
    const bytes = writeGguf([], [{ name: 'x', shape: [3], type: GGML_TYPE.F32, data: new Float32Array([1, -2, 3]) }]);
    const big = new Uint8Array(bytes.length + 7);
    big.set(bytes, 3);
    const f = readGguf(big.subarray(3, 3 + bytes.length));
    assert.deepEqual(tensorToF32(f, f.tensors[0]), new Float32Array([1, -2, 3]));
  });

  test('writeGgufFile writes atomically and readGgufFile reads it back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stlm-gguf-'));
    try {
      const path = join(dir, 'm.gguf');
      await writeGgufFile(path, [['general.name', gguf.str('one')]], []);
      await writeGgufFile(path, [['general.name', gguf.str('two')]], [
        { name: 'x', shape: [2], type: GGML_TYPE.F32, data: new Float32Array([5, 6]) },
      ]);
      assert.deepEqual(readdirSync(dir), ['m.gguf'], 'no temporary file left behind');
      const f = await readGgufFile(path);
      assert.equal(f.fileName, path);
      assert.equal(metaString(f, 'general.name'), 'two');
      assert.deepEqual(tensorToF32(f, f.tensors[0]), new Float32Array([5, 6]));
      await assert.rejects(writeGgufFile(path, [['k', gguf.u8(1)], ['k', gguf.u8(2)]], []), /duplicate key/);
      assert.equal(metaString(await readGgufFile(path), 'general.name'), 'two', 'a failed write keeps the old file');
      assert.deepEqual(readdirSync(dir), ['m.gguf']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the writer rejects values it cannot write exactly', () => {
    assert.throws(() => gguf.u8(256), /256 is not a u8/);
    assert.throws(() => gguf.i32(1.5), /not a i32/);
    assert.throws(() => gguf.u64(-1), /out of the u64 range/);
    assert.throws(() => gguf.arr('u16', [1, 70000]), /70000 is not a u16/);
    const cases: Array<[() => unknown, RegExp]> = [
      [() => writeGguf([['k', { type: 'u8', value: 300 }]], []), /metadata 'k': 300 is not a u8/],
      [() => writeGguf([['k', { type: 'string', value: 'a\uD800b' }]], []), /lone UTF-16 surrogate/],
      [() => writeGguf([['k', gguf.u8(1)], ['k', gguf.u8(1)]], []), /metadata 'k': duplicate key/],
      [() => writeGguf([['k', { type: 'nope', value: 1 } as unknown as GgufValue]], []), /not a GGUF value/],
      [() => writeGguf([['general.alignment', gguf.u64(32)]], []), /general\.alignment': expected a u32/],
      [() => writeGguf([['general.alignment', gguf.u32(64)]], [], 32), /differs/],
      [() => writeGguf([], [], 48), /not a power of two/],
      [() => writeGguf([], [{ name: 'x', shape: [3], type: GGML_TYPE.F32, data: new Float32Array(2) }]), /2 values given/],
      [() => writeGguf([], [{ name: 'x', shape: [3], type: 99, data: new Float32Array(3) }]), /unknown ggml type 99/],
      [() => writeGguf([], [{ name: 'x', shape: [33], type: GGML_TYPE.Q8_0, data: new Float32Array(33) }]), /not a multiple of the Q8_0 block size 32/],
      [() => writeGguf([], [{ name: 'x', shape: [256], type: GGML_TYPE.Q5_K, data: new Float32Array(256) }]), /cannot encode Q5_K/],
      [() => writeGguf([], [{ name: 'x', shape: [256], type: GGML_TYPE.Q4_K, data: new Float32Array(256).fill(NaN) }]), /tensor #0 'x': Q4_K: value 0 is NaN/],
      [() => writeGguf([], [{ name: 'x', shape: [32], type: GGML_TYPE.Q8_0, data: new Uint8Array(33) }]), /33 bytes given; Q8_0 shape \[32\] takes 34/],
      [() => writeGguf([], [{ name: 'x', shape: [0], type: GGML_TYPE.F32, data: new Float32Array(0) }]), /positive integers/],
      [() => writeGguf([], [{ name: 'x', shape: [1, 1, 1, 1, 1], type: GGML_TYPE.F32, data: new Float32Array(1) }]), /5 dimensions/],
      [() => writeGguf([], [1, 2].map(() => ({ name: 'x', shape: [1], type: GGML_TYPE.F32, data: new Float32Array(1) }))), /'x': duplicate tensor name/],
    ];
    for (const [fn, re] of cases) assert.throws(fn, (e: unknown) => e instanceof GgufError && re.test(e.message), String(re));
  });
});

// ------------------------------------------------------------------------------------------------

describe('malformed files throw a clear GgufError naming the file and the field', () => {
  const F = 'bad.gguf';

  test('the hand-built base file is valid', () => {
    const f = readGguf(oneTensorFile(), F);
    assert.deepEqual(f.tensors, [{ name: 'w', shape: [4], type: 0, offset: 0, byteLength: 16 }]);
  });

  test('header', () => {
    throwsGguf(() => readGguf(new Uint8Array(0), F), F, /magic: needs 4 bytes at offset 0 but the file ends at 0/);
    throwsGguf(() => readGguf(new TextEncoder().encode('GGML\x03\0\0\0'), F), F, /magic: expected "GGUF".*found 47 47 4d 4c/);
    throwsGguf(() => readGguf(new Raw().header(0, 0, 1).build()), '<buffer>', /unsupported version 1 \(GGUF v1/);
    throwsGguf(() => readGguf(new Raw().header(0, 0, 4).build(), F), F, /version: unsupported version 4/);
    throwsGguf(() => readGguf(new Raw().header(0, 0, 0x03000000).build(), F), F, /big-endian/);
    throwsGguf(() => readGguf(new Raw().header(0, 0).build().subarray(0, 20), F), F, /metadata kv count: needs 8 bytes/);
    throwsGguf(() => readGguf(new Raw().header(1n << 40n, 0).build(), F), F, /tensor count: 1099511627776 tensor infos cannot fit/);
    throwsGguf(() => readGguf(new Raw().header(0, 0xffffffffffffffffn).build(), F), F, /metadata kv count: 18446744073709551615 metadata entries cannot fit/);
    assert.equal(readGguf(new Raw().header(0, 0, 2).build()).version, 2);
  });

  test('every truncation of a valid file', () => {
    const bytes = writeGguf(ALL_TYPES, [{ name: 'q', shape: [32], type: GGML_TYPE.Q8_0, data: new Float32Array(32) }]);
    const f = readGguf(bytes);
    const needed = f.dataOffset + f.tensors[0].byteLength; // the padding after the last tensor is optional
    assert.equal(readGguf(bytes.subarray(0, needed)).tensors.length, 1);
    for (let n = 0; n < needed; n++) throwsGguf(() => readGguf(bytes.subarray(0, n), F), F, /./);
  });

  test('metadata values', () => {
    const kv = (...parts: Array<(r: Raw) => Raw>): Uint8Array => {
      const r = new Raw().header(0, parts.length);
      for (const p of parts) p(r);
      return r.build();
    };
    throwsGguf(() => readGguf(kv((r) => r.u64(1n << 60n).zeros(16)), F), F, /metadata key #0: string length 1152921504606846976 at offset 24 is past the end/);
    throwsGguf(() => readGguf(kv((r) => r.str('s').u32(8).u64(1n << 60n)), F), F, /metadata 's': string length 1152921504606846976/);
    throwsGguf(() => readGguf(kv((r) => r.str('a').u32(9).u32(4).u64(1n << 40n)), F), F, /metadata 'a': array length: 1099511627776 items cannot fit/);
    throwsGguf(() => readGguf(kv((r) => r.str('a').u32(9).u32(8).u64(1n << 40n).zeros(64)), F), F, /metadata 'a': array length/);
    throwsGguf(() => readGguf(kv((r) => r.str('a').u32(9).u32(8).u64(3).str('ok').u64(2).bytes([0xc3, 0x28]).str('z')), F), F, /metadata 'a'\[1\]: string at offset \d+ is not valid UTF-8/);
    throwsGguf(() => readGguf(kv((r) => r.u64(2).bytes([0xed, 0xa0]).u32(4).u32(1)), F), F, /metadata key #0: string at offset 24 is not valid UTF-8/);
    throwsGguf(() => readGguf(kv((r) => r.str('a').u32(9).u32(13).u64(0)), F), F, /metadata 'a': unknown array item type 13/);
    throwsGguf(() => readGguf(kv((r) => r.str('v').u32(13)), F), F, /metadata 'v': unknown value type 13/);
    throwsGguf(() => readGguf(kv((r) => r.str('b').u32(7).u8(2)), F), F, /metadata 'b': bool at offset 37 is 2, not 0 or 1/);
    throwsGguf(() => readGguf(kv((r) => r.str('b').u32(9).u32(7).u64(2).bytes([1, 5])), F), F, /metadata 'b'\[1\]: bool/);
    throwsGguf(() => readGguf(kv((r) => r.kvU32('k', 1), (r) => r.kvU32('k', 2)), F), F, /metadata 'k': duplicate key \(entry #1\)/);
    throwsGguf(() => readGguf(kv((r) => r.str('general.alignment').u32(10).u64(32)), F), F, /'general.alignment': expected a u32, found u64/);
    throwsGguf(() => readGguf(kv((r) => r.kvU32('general.alignment', 0)), F), F, /'general.alignment': 0 is not a power of two/);
    throwsGguf(() => readGguf(kv((r) => r.kvU32('general.alignment', 24)), F), F, /24 is not a power of two/);
    // arrays nested 100 deep: bounded recursion, no stack overflow
    const deep = new Raw().header(0, 1).str('n').u32(9);
    for (let i = 0; i < 100; i++) deep.u32(9).u64(1);
    deep.u32(0).u64(0);
    throwsGguf(() => readGguf(deep.build(), F), F, /metadata 'n'(\[0\])+: arrays nested more than 64 deep/);
  });

  test('tensor infos', () => {
    throwsGguf(() => readGguf(oneTensorFile({ ne: [1, 1, 1, 1, 1] }), F), F, /tensor 'w': n_dims: 5 dimensions \(expected 1 to 4\)/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [] }), F), F, /tensor 'w': n_dims: 0 dimensions/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [4, 0] }), F), F, /tensor 'w': ne\[1\]: dimension is zero/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [-4n] }), F), F, /tensor 'w': ne\[0\]: dimension is negative \(-4\)/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [1n << 60n] }), F), F, /dimension 1152921504606846976 is absurdly large/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [1n << 20n, 1n << 20n] }), F), F,
      /tensor 'w': data offset 0 \+ 4398046511104 bytes is past the end of the file \(\d+ bytes\)/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [33], type: GGML_TYPE.Q8_0 }), F), F, /ne\[0\] = 33 is not a multiple of the Q8_0 block size 32/);
    throwsGguf(() => readGguf(oneTensorFile({ ne: [16, 2], type: GGML_TYPE.Q4_0 }), F), F, /ne\[0\] = 16 is not a multiple of the Q4_0 block size 32/);
    throwsGguf(() => readGguf(oneTensorFile({ type: 4 }), F), F, /tensor 'w': type: unknown ggml type 4/);
    throwsGguf(() => readGguf(oneTensorFile({ type: 1000 }), F), F, /unknown ggml type 1000/);
    throwsGguf(() => readGguf(oneTensorFile({ offset: 8 }), F), F, /tensor 'w': offset: 8 is not a multiple of the alignment 32/);
    throwsGguf(() => readGguf(oneTensorFile({ offset: 1n << 62n }), F), F, /data offset 4611686018427387904 \+ 16 bytes is past the end/);
    // fits the data-offset check but not once the data section start is added
    throwsGguf(() => readGguf(oneTensorFile({ offset: 64, data: 64 }), F), F, /tensor 'w': offset \d+ \+ 16 bytes is past the end of the file/);
    throwsGguf(() => readGguf(oneTensorFile({ data: 8 }), F), F, /tensor 'w': offset \d+ \+ 16 bytes is past the end/);
    const two = (name2: string, off2: number): Uint8Array =>
      new Raw().header(2, 0).tensor('a', [8], 0, 0).tensor(name2, [8], 0, off2).padTo(32).zeros(96).build();
    assert.equal(readGguf(two('b', 32)).tensors.length, 2);
    throwsGguf(() => readGguf(two('a', 32), F), F, /tensor 'a': duplicate tensor name \(tensor #1\)/);
    throwsGguf(() => readGguf(two('b', 0), F), F, /overlaps tensor/);
    throwsGguf(() => readGguf(new Raw().header(1, 0).u64(1n << 60n).zeros(40).build(), F), F, /tensor #0: name: string length/);
    throwsGguf(() => readGguf(new Raw().header(1, 0).str('w').u32(1).u64(4).zeros(14).build().subarray(0, 48), F), F, /tensor 'w': type: needs 4 bytes/);
  });
});

// ------------------------------------------------------------------------------------------------

describe('real fixtures', () => {
  const tiny = loadFixture(TINY_LLAMA);

  test('tiny-random-llama: metadata, tensors, F16 dequantization', { skip: tiny ? false : missing(TINY_LLAMA) }, () => {
    const f = readGguf(tiny!, 'llama-2-tiny-random.gguf');
    assert.equal(f.version, 3);
    assert.equal(metaString(f, 'general.architecture'), 'llama');
    assert.equal(metaNumber(f, 'llama.embedding_length'), 8);
    assert.equal(metaNumber(f, 'llama.block_count'), 1);
    assert.equal(metaNumber(f, 'llama.attention.head_count'), 2);
    assert.equal(metaNumber(f, 'llama.feed_forward_length'), 32);
    assert.equal(metaNumber(f, 'general.file_type'), 1); // MOSTLY_F16
    assert.equal(metaNumber(f, 'llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
    const tokens = metaArray(f, 'tokenizer.ggml.tokens', 'string');
    assert.equal(tokens.length, 32000);
    assert.deepEqual(tokens.slice(0, 3), ['<unk>', '<s>', '</s>']);
    assert.equal(tokens[29871], '▁'); // SentencePiece word-boundary token of the Llama-2 vocab
    assert.equal(metaArray(f, 'tokenizer.ggml.scores', 'f32').length, 32000);
    assert.equal(metaArray(f, 'tokenizer.ggml.token_type', 'i32').length, 32000);
    assert.deepEqual(f.tensors.map((t) => [t.name, t.shape.join('x'), t.type]), [
      ['token_embd.weight', '8x32000', GGML_TYPE.F16],
      ['blk.0.attn_q.weight', '8x8', GGML_TYPE.F16],
      ['blk.0.attn_k.weight', '8x8', GGML_TYPE.F16],
      ['blk.0.attn_v.weight', '8x8', GGML_TYPE.F16],
      ['blk.0.attn_output.weight', '8x8', GGML_TYPE.F16],
      ['blk.0.ffn_gate.weight', '8x32', GGML_TYPE.F16],
      ['blk.0.ffn_up.weight', '8x32', GGML_TYPE.F16],
      ['blk.0.ffn_down.weight', '32x8', GGML_TYPE.F16],
      ['blk.0.attn_norm.weight', '8', GGML_TYPE.F32],
      ['blk.0.ffn_norm.weight', '8', GGML_TYPE.F32],
      ['output_norm.weight', '8', GGML_TYPE.F32],
      ['output.weight', '8x32000', GGML_TYPE.F16],
    ]);
    for (const t of f.tensors) {
      const x = tensorToF32(f, t);
      assert.equal(x.length, t.shape.reduce((a, b) => a * b, 1));
      assert.ok(x.every(Number.isFinite), `${t.name} has non-finite values`);
      assert.ok(x.some((v) => v !== 0), `${t.name} is all zeros`);
    }
    // F16 dequantization agrees with a direct decode of the raw little-endian halves.
    const q = getTensor(f, 'blk.0.attn_q.weight');
    const raw = tensorBytes(f, q);
    assert.deepEqual(tensorToF32(f, q), Float32Array.from({ length: 64 }, (_, i) => f16ToF32(raw[2 * i] | (raw[2 * i + 1] << 8))));
  });

  test('tiny-random-llama: write(read(x)) is byte-identical', { skip: tiny ? false : missing(TINY_LLAMA) }, () => {
    const f = readGguf(tiny!, 'llama-2-tiny-random.gguf');
    const out = writeGguf(f.metadata, f.tensors.map((t) => ({ ...t, data: tensorBytes(f, t) })));
    assert.equal(out.length, tiny!.length);
    assert.ok(Buffer.from(out).equals(Buffer.from(tiny!)), 'bytes differ');
  });

  const vocabs: Array<[string, string, number, number | undefined]> = [
    ['ggml-vocab-llama-spm.gguf', 'llama', 32000, undefined],
    ['ggml-vocab-gpt-2.gguf', 'gpt2', 50257, 50000],
    ['ggml-vocab-bert-bge.gguf', 'bert', 30522, undefined],
  ];
  for (const [name, model, nTokens, nMerges] of vocabs) {
    const path = join(VOCAB_DIR, name);
    const bytes = loadFixture(path);
    test(`${name}: vocab-only file, ${nTokens} tokens`, { skip: bytes ? false : missing(path) }, () => {
      const f = readGguf(bytes!, name);
      assert.equal(f.version, 3);
      assert.equal(f.tensors.length, 0);
      assert.equal(metaString(f, 'tokenizer.ggml.model'), model);
      assert.equal(metaArray(f, 'tokenizer.ggml.tokens', 'string').length, nTokens);
      assert.equal(metaArray(f, 'tokenizer.ggml.token_type', 'i32').length, nTokens);
      if (nMerges !== undefined) assert.equal(metaArray(f, 'tokenizer.ggml.merges', 'string').length, nMerges);
      else assert.equal(f.metadata.has('tokenizer.ggml.merges'), false);
      // These files end right after the metadata (no padding), so the data section would start past the end.
      assert.ok(f.dataOffset >= bytes!.length);
      assert.ok(Buffer.from(writeGguf(f.metadata, [])).equals(Buffer.from(bytes!)), 'write(read(x)) differs');
    });
  }
});

// ------------------------------------------------------------------------------------------------

/** A mutation of `src`: byte or bit changes, an interesting u64 written anywhere, insertion, deletion, truncation. */
function mutate(rng: Rng, src: Uint8Array, hot: number): Uint8Array {
  // Most mutations land in the first `hot` bytes (header, metadata, tensor infos), where parsing decides things.
  const pos = (): number => (rng.next() < 0.8 ? rng.int(Math.min(hot, src.length)) : rng.int(src.length));
  const kind = rng.int(6);
  if (kind === 0) {
    const out = src.slice();
    for (let k = 1 + rng.int(4); k > 0; k--) out[pos()] = rng.int(256);
    return out;
  }
  if (kind === 1) {
    const out = src.slice();
    const p = pos();
    out[p] ^= 1 << rng.int(8);
    return out;
  }
  if (kind === 2) {
    const out = src.slice();
    const interesting = [0n, 1n, 2n, 31n, 0x7fn, 0xffn, 1n << 31n, 1n << 32n, 1n << 40n, 1n << 60n, 1n << 63n, (1n << 64n) - 1n];
    const v = interesting[rng.int(interesting.length)];
    const p = Math.min(pos(), out.length - 8);
    if (p >= 0) new DataView(out.buffer).setBigUint64(p, v, true);
    return out;
  }
  if (kind === 3) {
    const p = pos(), n = 1 + rng.int(8);
    const out = new Uint8Array(src.length + n);
    out.set(src.subarray(0, p));
    for (let i = 0; i < n; i++) out[p + i] = rng.int(256);
    out.set(src.subarray(p), p + n);
    return out;
  }
  if (kind === 4) {
    const p = pos(), tail = src.subarray(Math.min(src.length, p + 1 + rng.int(8)));
    const out = new Uint8Array(p + tail.length);
    out.set(src.subarray(0, p));
    out.set(tail, p);
    return out;
  }
  return src.slice(0, rng.next() < 0.5 ? pos() : rng.int(src.length));
}

/** Parses a mutant: it must either parse (and then dequantize and re-write) or throw a GgufError naming the file. */
function checkMutant(bytes: Uint8Array, name: string, deep: boolean): 'parsed' | 'rejected' {
  let f: GgufFile;
  try {
    f = readGguf(bytes, name);
  } catch (e) {
    if (!(e instanceof GgufError)) throw new Error(`non-GgufError on a mutant: ${String(e)}`, { cause: e });
    assert.ok(e.message.startsWith(`${name}: `), e.message);
    return 'rejected';
  }
  if (deep) {
    for (const t of f.tensors) {
      try {
        tensorToF32(f, t);
      } catch (e) {
        if (!(e instanceof GgufError && /cannot dequantize/.test(e.message))) throw e;
      }
    }
    // Whatever the reader accepts, the writer writes back, and the reader reads the same again.
    const again = readGguf(writeGguf(f.metadata, f.tensors.map((t) => ({ ...t, data: tensorBytes(f, t) }))), 'rewritten');
    assert.deepEqual(again.metadata, f.metadata);
    assert.deepEqual(again.tensors.map((t) => [t.name, t.shape, t.type]), f.tensors.map((t) => [t.name, t.shape, t.type]));
  }
  return 'parsed';
}

// STLM_FUZZ_SCALE=100 runs 100 times as many mutants (a longer hunt; the default takes about 2 s).
const FUZZ_SCALE = Math.max(1, Number(process.env.STLM_FUZZ_SCALE) || 1);

describe('fuzz: mutated files parse or throw a GgufError naming the file', () => {
  test(`a small written file, ${3000 * FUZZ_SCALE} mutants`, () => {
    const small = writeGguf([
      ['general.architecture', gguf.str('llama')],
      ['llama.embedding_length', gguf.u32(32)],
      ['x.f32', gguf.f32(0.5)],
      ['x.bool', gguf.bool(true)],
      ['x.i64', gguf.i64(-5)],
      ['x.tokens', gguf.arr('string', ['<s>', '▁a', 'b'])],
      ['x.nested', gguf.arr('array', [gguf.arr('i16', [1, 2]), gguf.arr('string', ['q'])])],
      ['x.scores', gguf.arr('f32', [0, -1, 2])],
    ], [
      { name: 'a', shape: [4, 2], type: GGML_TYPE.F32, data: new Float32Array(8).fill(1.5) },
      { name: 'b', shape: [32], type: GGML_TYPE.F16, data: new Float32Array(32).fill(-2) },
      { name: 'c', shape: [32, 2], type: GGML_TYPE.Q8_0, data: Float32Array.from({ length: 64 }, (_, i) => i - 30) },
      { name: 'd', shape: [32], type: GGML_TYPE.Q4_0, data: Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)) },
    ]);
    const rng = new Rng(2024);
    const counts = { parsed: 0, rejected: 0 };
    const hot = readGguf(small).dataOffset;
    for (let i = 0; i < 3000 * FUZZ_SCALE; i++) counts[checkMutant(mutate(rng, small, hot), 'small.gguf', true)]++;
    assert.ok(counts.rejected > 1000 * FUZZ_SCALE && counts.parsed > 100 * FUZZ_SCALE, JSON.stringify(counts));
    console.log(`small.gguf mutants: ${JSON.stringify(counts)}`);
  });

  const tiny = loadFixture(TINY_LLAMA);
  test(`tiny-random-llama, ${300 * FUZZ_SCALE} mutants`, { skip: tiny ? false : missing(TINY_LLAMA) }, () => {
    const f = readGguf(tiny!);
    // The tensor infos sit at the end of the metadata: fuzz around them too.
    const infoStart = f.dataOffset - 1024;
    const rng = new Rng(99);
    const counts = { parsed: 0, rejected: 0 };
    for (let i = 0; i < 300 * FUZZ_SCALE; i++) {
      let m: Uint8Array;
      if (i % 3 === 2) {
        // mutate the tensor-info region: splice a mutant of it back in
        const head = mutate(rng, tiny!.subarray(infoStart, f.dataOffset), 1024);
        m = new Uint8Array(infoStart + head.length + tiny!.length - f.dataOffset);
        m.set(tiny!.subarray(0, infoStart));
        m.set(head, infoStart);
        m.set(tiny!.subarray(f.dataOffset), infoStart + head.length);
      } else {
        m = mutate(rng, tiny!, 2048);
      }
      counts[checkMutant(m, 'llama-2-tiny-random.gguf', false)]++;
    }
    assert.ok(counts.rejected > 50 * FUZZ_SCALE, JSON.stringify(counts));
    console.log(`tiny-random-llama mutants: ${JSON.stringify(counts)}`);
  });
});
