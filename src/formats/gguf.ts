/**
 * GGUF reader and writer: our native model file format (the llama.cpp / ggml format).
 *
 * File layout (everything little-endian; written as GGUF v3, read as v3 or v2):
 *
 *   u32  magic            "GGUF" (bytes 47 47 55 46)
 *   u32  version          3 (2 reads the same way; v1 used 32-bit counts and is not supported)
 *   u64  tensor_count
 *   u64  metadata_kv_count
 *   metadata_kv_count x { string key, u32 value_type, value }
 *   tensor_count x      { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   zero padding up to a multiple of `general.alignment` (a u32 metadata value; 32 when absent)
 *   data section: tensor i lives at data_start + offset_i, every offset a multiple of the alignment;
 *                 writers pad each tensor's data with zeros up to the alignment.
 *
 *   string = u64 byte length + UTF-8 bytes (no terminator)
 *   value_type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte, 0 or 1), 8 string,
 *               9 array = { u32 item_type, u64 count, count items } (items may be strings or arrays),
 *               10 u64, 11 i64, 12 f64
 *   ne[0] is the contiguous (fastest-varying) dimension; a quantized row of ne[0] values is ne[0]/block
 *   blocks (every type's block geometry: dtypes/blocks.ts). Block layouts used here (from ggml-common.h):
 *     Q8_0 (32 values, 34 bytes): f16 d, then 32 x int8 q;            x = q * d
 *     Q4_0 (32 values, 18 bytes): f16 d, then 16 bytes; value j (0..15) is the low nibble of byte j,
 *                                 value j + 16 its high nibble;       x = (nibble - 8) * d
 *     Q4_K (256 values, 144 bytes): see kquants.ts;                   x = d * sc * q - dmin * m
 *
 * `readGguf` and `writeGguf` are pure functions on Uint8Array (they run in browsers); only
 * `readGgufFile` / `writeGgufFile` touch the file system, through a dynamic import of node:fs.
 *
 * Every malformed input throws a GgufError whose message names the file and the field, raised before
 * any allocation larger than the file itself: every count and length is checked against the bytes
 * that remain before it is used. The reader is a little stricter than llama.cpp's: it also rejects
 * n_dims = 0, zero-length dimensions, overlapping tensor data and bool bytes other than 0 or 1.
 * A file without tensors may end right after the tensor infos (llama.cpp's vocab-only files do);
 * the writer does the same, so write(read(x)) reproduces such files byte for byte.
 */
import { writeFileAtomic } from '../util/atomic-write.js';
import { bf16ToF32, f16ToF32Table, f32ToBf16, f32ToF16 } from '../dtypes/f16.js';
import { dequantizeQ4_K, quantizeQ4_K } from '../dtypes/kquants.js';
import { GGML_TYPE, QUANT_BLOCKS, blockGeometry } from '../dtypes/blocks.js';

// ---------------------------------------------------------------------------------------------------
// Types

/** A malformed GGUF file or an invalid value given to the writer. */
export class GgufError extends Error {
  override name = 'GgufError';
}

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigIntType = 'u64' | 'i64';
export type GgufItemType = GgufNumberType | GgufBigIntType | 'bool' | 'string' | 'array';

/** The JS representation of each array item type: numeric arrays are typed arrays (exact). */
export interface GgufArrayItems {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  u32: Uint32Array;
  i32: Int32Array;
  f32: Float32Array;
  f64: Float64Array;
  u64: BigUint64Array;
  i64: BigInt64Array;
  bool: boolean[];
  string: string[];
  array: GgufArray[];
}

export type GgufArray = { [K in GgufItemType]: { type: 'array'; itemType: K; value: GgufArrayItems[K] } }[GgufItemType];

/** A metadata value with its GGUF type, so that every value round-trips exactly. */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufArray;

export interface GgufTensorInfo {
  name: string;
  /** ne order, as in the file: shape[0] is the contiguous dimension. */
  shape: number[];
  /** ggml type id (see GGML_TYPE). */
  type: number;
  /** Byte offset inside the data section. */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  fileName: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute byte offset of the data section. */
  dataOffset: number;
  /** The file's bytes, or only its first part (header and metadata) when parsed with readGgufHeader. */
  bytes: Uint8Array;
  /** The whole file's size (bytes.length unless only the header was read). */
  fileSize: number;
}

export interface GgufTensorInput {
  name: string;
  /** ne order: shape[0] is the contiguous dimension. */
  shape: readonly number[];
  /** ggml type id (see GGML_TYPE). */
  type: number;
  /** Values to encode (any type with an encoder) or bytes already encoded in `type`. */
  data: Float32Array | Uint8Array;
}

export type GgufMetadataInput = Map<string, GgufValue> | ReadonlyArray<readonly [string, GgufValue]>;

// ---------------------------------------------------------------------------------------------------
// ggml tensor types

/** ggml type ids and every type's block geometry: one table, in dtypes/blocks.ts. */
export { GGML_TYPE };

/** The ggml name of a type id ('Q8_0'), or 'type N' for an unknown id. */
export function ggmlTypeName(type: number): string {
  return blockGeometry(type)?.name ?? `type ${type}`;
}

/** Bytes taken by `elements` values of a ggml type (elements must be a whole number of blocks). */
export function ggmlByteLength(type: number, elements: number): number {
  const t = blockGeometry(type);
  if (!t) throw new GgufError(`unknown ggml type ${type}`);
  if (elements % t.values !== 0) {
    throw new GgufError(`${elements} values are not a whole number of ${t.name} blocks of ${t.values}`);
  }
  return (elements / t.values) * t.bytes;
}

// ---------------------------------------------------------------------------------------------------
// Metadata value constructors: gguf.u32(5), gguf.str('llama'), gguf.arr('i32', [1, 2, 3]) ...

const VALUE_TYPE_IDS: Record<GgufItemType, number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
};
const VALUE_TYPE_BY_ID: GgufItemType[] = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];

/** Fewest bytes one item of each type takes in a file, to bound counts before allocating. */
const MIN_ITEM_BYTES: Record<GgufItemType, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, string: 8, array: 12, u64: 8, i64: 8, f64: 8,
};

const INT_RANGES: Record<string, [number, number]> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};
const BIGINT_RANGES: Record<GgufBigIntType, [bigint, bigint]> = {
  u64: [0n, 0xffffffffffffffffn],
  i64: [-0x8000000000000000n, 0x7fffffffffffffffn],
};

const TYPED_ARRAY_CTORS = {
  u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array, u32: Uint32Array, i32: Int32Array,
  f32: Float32Array, f64: Float64Array, u64: BigUint64Array, i64: BigInt64Array,
} as const;

/** Why `v` is not a valid value of numeric type `type`, or undefined when it is. */
function numberProblem(type: GgufNumberType, v: unknown): string | undefined {
  if (typeof v !== 'number') return `expected a number, got ${typeof v}`;
  const range = INT_RANGES[type];
  if (range && !(Number.isInteger(v) && v >= range[0] && v <= range[1])) {
    return `${v} is not a ${type} (an integer in ${range[0]}..${range[1]})`;
  }
  return undefined;
}

function bigIntProblem(type: GgufBigIntType, v: unknown): string | undefined {
  if (typeof v !== 'bigint') return `expected a bigint, got ${typeof v}`;
  const [lo, hi] = BIGINT_RANGES[type];
  return v >= lo && v <= hi ? undefined : `${v} is out of the ${type} range`;
}

function checked<T>(problem: string | undefined, v: T): T {
  if (problem) throw new GgufError(problem);
  return v;
}

function toBigInt(type: GgufBigIntType, v: bigint | number): bigint {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new GgufError(`${v} is not a safe integer for ${type}`);
  return checked(bigIntProblem(type, BigInt(v)), BigInt(v));
}

type ArrayInput = {
  [K in GgufItemType]: K extends 'bool' ? ArrayLike<boolean>
    : K extends 'string' ? ArrayLike<string>
    : K extends 'array' ? ArrayLike<GgufArray>
    : K extends GgufBigIntType ? ArrayLike<bigint | number>
    : ArrayLike<number>;
};

function makeArray<K extends GgufItemType>(itemType: K, values: ArrayInput[K]): Extract<GgufArray, { itemType: K }> {
  if (!(itemType in VALUE_TYPE_IDS)) throw new GgufError(`unknown array item type '${String(itemType)}'`);
  let value: unknown;
  if (itemType === 'u64' || itemType === 'i64') {
    const out = itemType === 'u64' ? new BigUint64Array(values.length) : new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = toBigInt(itemType, (values as ArrayLike<bigint | number>)[i]);
    value = out;
  } else if (itemType in TYPED_ARRAY_CTORS) {
    const t = itemType as GgufNumberType;
    for (let i = 0; i < values.length; i++) checked(numberProblem(t, (values as ArrayLike<number>)[i]), 0);
    value = TYPED_ARRAY_CTORS[t].from(values as ArrayLike<number>);
  } else {
    value = Array.from(values as ArrayLike<unknown>);
  }
  const arr = { type: 'array', itemType, value } as Extract<GgufArray, { itemType: K }>;
  validateValue(arr, 'array');
  return arr;
}

/** Typed constructors for metadata values (checked: an out-of-range integer throws). */
export const gguf = {
  u8: (v: number) => ({ type: 'u8', value: checked(numberProblem('u8', v), v) }) as const,
  i8: (v: number) => ({ type: 'i8', value: checked(numberProblem('i8', v), v) }) as const,
  u16: (v: number) => ({ type: 'u16', value: checked(numberProblem('u16', v), v) }) as const,
  i16: (v: number) => ({ type: 'i16', value: checked(numberProblem('i16', v), v) }) as const,
  u32: (v: number) => ({ type: 'u32', value: checked(numberProblem('u32', v), v) }) as const,
  i32: (v: number) => ({ type: 'i32', value: checked(numberProblem('i32', v), v) }) as const,
  /** Stored rounded to f32. */
  f32: (v: number) => ({ type: 'f32', value: Math.fround(checked(numberProblem('f32', v), v)) }) as const,
  f64: (v: number) => ({ type: 'f64', value: checked(numberProblem('f64', v), v) }) as const,
  u64: (v: bigint | number) => ({ type: 'u64', value: toBigInt('u64', v) }) as const,
  i64: (v: bigint | number) => ({ type: 'i64', value: toBigInt('i64', v) }) as const,
  bool: (v: boolean) => ({ type: 'bool', value: v }) as const,
  str: (v: string) => ({ type: 'string', value: v }) as const,
  arr: makeArray,
};

// ---------------------------------------------------------------------------------------------------
// Metadata accessors

function metaEntry(file: GgufFile, key: string): GgufValue {
  const v = file.metadata.get(key);
  if (!v) throw new GgufError(`${file.fileName}: metadata key '${key}' is missing`);
  return v;
}

/** A string metadata value; `fallback` when the key is absent (throws when absent without one). */
export function metaString(file: GgufFile, key: string, fallback?: string): string {
  if (fallback !== undefined && !file.metadata.has(key)) return fallback;
  const v = metaEntry(file, key);
  if (v.type !== 'string') throw new GgufError(`${file.fileName}: metadata '${key}': expected a string, found ${v.type}`);
  return v.value;
}

/** A numeric metadata value of any numeric type (u64/i64 must be safe integers). */
export function metaNumber(file: GgufFile, key: string, fallback?: number): number {
  if (fallback !== undefined && !file.metadata.has(key)) return fallback;
  const v = metaEntry(file, key);
  if (v.type === 'u64' || v.type === 'i64') {
    const n = Number(v.value);
    if (!Number.isSafeInteger(n)) throw new GgufError(`${file.fileName}: metadata '${key}': ${v.value} is too large`);
    return n;
  }
  if (typeof v.value !== 'number') throw new GgufError(`${file.fileName}: metadata '${key}': expected a number, found ${v.type}`);
  return v.value;
}

/** An array metadata value; `itemType` checks the item type. */
export function metaArray<K extends GgufItemType>(file: GgufFile, key: string, itemType: K): GgufArrayItems[K] {
  const v = metaEntry(file, key);
  if (v.type !== 'array' || v.itemType !== itemType) {
    const found = v.type === 'array' ? `an array of ${v.itemType}` : v.type;
    throw new GgufError(`${file.fileName}: metadata '${key}': expected an array of ${itemType}, found ${found}`);
  }
  return v.value as GgufArrayItems[K];
}

/** The tensor called `name` (throws when there is none). */
export function getTensor(file: GgufFile, name: string): GgufTensorInfo {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new GgufError(`${file.fileName}: no tensor named '${name}'`);
  return t;
}

// ---------------------------------------------------------------------------------------------------
// What a file holds (for `info` lines and the tiers)

/** llama.cpp's general.file_type (enum llama_ftype) names, lower case; ids 4–6 and 33–35 are retired. */
const LLAMA_FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'f32', 1: 'f16', 2: 'q4_0', 3: 'q4_1', 7: 'q8_0', 8: 'q5_0', 9: 'q5_1', 10: 'q2_k', 11: 'q3_k_s', 12: 'q3_k_m',
  13: 'q3_k_l', 14: 'q4_k_s', 15: 'q4_k_m', 16: 'q5_k_s', 17: 'q5_k_m', 18: 'q6_k', 19: 'iq2_xxs', 20: 'iq2_xs',
  21: 'q2_k_s', 22: 'iq3_xs', 23: 'iq3_xxs', 24: 'iq1_s', 25: 'iq4_nl', 26: 'iq3_s', 27: 'iq3_m', 28: 'iq2_s',
  29: 'iq2_m', 30: 'iq4_xs', 31: 'iq1_m', 32: 'bf16', 36: 'tq1_0', 37: 'tq2_0', 38: 'mxfp4_moe',
};

/**
 * The weight type a model file is run in, as llama.cpp names it ('q4_k_m', 'f16', …): general.file_type
 * where the file has a known one, else the type holding most of the matrices' bytes ('q8_0').
 */
export function ggufQuantization(file: GgufFile): string | undefined {
  const ftype = file.metadata.get('general.file_type');
  if (ftype && typeof ftype.value === 'number' && LLAMA_FILE_TYPES[ftype.value]) return LLAMA_FILE_TYPES[ftype.value];
  const bytes = new Map<number, number>();
  for (const t of file.tensors) if (t.shape.length >= 2) bytes.set(t.type, (bytes.get(t.type) ?? 0) + t.byteLength);
  let best: number | undefined;
  for (const [type, n] of bytes) if (best === undefined || n > bytes.get(best)!) best = type;
  return best === undefined ? undefined : ggmlTypeName(best).toLowerCase();
}

/** Values in all of a file's tensors (its parameter count, each stored tensor once). */
export function ggufParameterCount(file: GgufFile): number {
  return file.tensors.reduce((n, t) => n + elementCount(t.shape), 0);
}

// ---------------------------------------------------------------------------------------------------
// Reader

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 64;
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF

/** A bounds-checked little-endian reader: every read checks the remaining bytes first. */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly fileName: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(field: string, message: string): never {
    throw new GgufError(`${this.fileName}: ${field}: ${message}`);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  need(n: number, field: string): void {
    if (n > this.remaining) {
      this.fail(field, `needs ${n} bytes at offset ${this.pos} but the file ends at ${this.bytes.length} (truncated?)`);
    }
  }

  u32(field: string): number { this.need(4, field); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(field: string): bigint { this.need(8, field); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }

  /** A u64 count of items taking at least `minBytes` each, checked against the remaining bytes. */
  count(field: string, minBytes: number, what: string): number {
    const n = this.u64(field);
    if (n * BigInt(minBytes) > BigInt(this.remaining)) {
      this.fail(field, `${n} ${what} cannot fit in the ${this.remaining} bytes left (at least ${minBytes} bytes each)`);
    }
    return Number(n);
  }

  /** A length-prefixed UTF-8 string. `index` >= 0 names an array item in errors. */
  string(field: string, index = -1): string {
    if (this.remaining < 8) this.failAt(field, index, `string length needs 8 bytes at offset ${this.pos} but the file ends at ${this.bytes.length} (truncated?)`);
    const len = this.view.getBigUint64(this.pos, true);
    if (len > BigInt(this.remaining - 8)) {
      this.failAt(field, index, `string length ${len} at offset ${this.pos} is past the end of the file (${this.bytes.length} bytes)`);
    }
    const n = Number(len);
    const start = this.pos + 8;
    this.pos = start + n;
    const s = decodeUtf8(this.bytes.subarray(start, start + n));
    if (s === undefined) this.failAt(field, index, `string at offset ${start - 8} is not valid UTF-8`);
    return s;
  }

  private failAt(field: string, index: number, message: string): never {
    return this.fail(index >= 0 ? `${field}[${index}]` : field, message);
  }

  value(typeId: number, field: string, depth: number): GgufValue {
    const v = this.view;
    const type = VALUE_TYPE_BY_ID[typeId];
    if (type === undefined) this.fail(field, `unknown value type ${typeId}`);
    if (type === 'string') return { type, value: this.string(field) };
    if (type === 'array') return this.array(field, depth);
    this.need(MIN_ITEM_BYTES[type], field);
    const p = this.pos;
    this.pos += MIN_ITEM_BYTES[type];
    switch (type) {
      case 'u8': return { type, value: v.getUint8(p) };
      case 'i8': return { type, value: v.getInt8(p) };
      case 'u16': return { type, value: v.getUint16(p, true) };
      case 'i16': return { type, value: v.getInt16(p, true) };
      case 'u32': return { type, value: v.getUint32(p, true) };
      case 'i32': return { type, value: v.getInt32(p, true) };
      case 'f32': return { type, value: v.getFloat32(p, true) };
      case 'f64': return { type, value: v.getFloat64(p, true) };
      case 'u64': return { type, value: v.getBigUint64(p, true) };
      case 'i64': return { type, value: v.getBigInt64(p, true) };
      case 'bool': {
        const b = v.getUint8(p);
        if (b > 1) this.fail(field, `bool at offset ${p} is ${b}, not 0 or 1`);
        return { type, value: b === 1 };
      }
    }
  }

  array(field: string, depth: number): GgufArray {
    if (depth >= MAX_ARRAY_DEPTH) this.fail(field, `arrays nested more than ${MAX_ARRAY_DEPTH} deep`);
    const typeId = this.u32(`${field}: array item type`);
    const itemType = VALUE_TYPE_BY_ID[typeId];
    if (itemType === undefined) this.fail(field, `unknown array item type ${typeId}`);
    const n = this.count(`${field}: array length`, MIN_ITEM_BYTES[itemType], 'items');
    const v = this.view;
    const size = MIN_ITEM_BYTES[itemType];
    const p = this.pos;
    switch (itemType) {
      case 'string': {
        const out = new Array<string>(n);
        for (let i = 0; i < n; i++) out[i] = this.string(field, i);
        return { type: 'array', itemType, value: out };
      }
      case 'array': {
        const out = new Array<GgufArray>(n);
        for (let i = 0; i < n; i++) out[i] = this.array(`${field}[${i}]`, depth + 1);
        return { type: 'array', itemType, value: out };
      }
      case 'bool': {
        const out = new Array<boolean>(n);
        for (let i = 0; i < n; i++) {
          const b = this.bytes[p + i];
          if (b > 1) this.fail(`${field}[${i}]`, `bool at offset ${p + i} is ${b}, not 0 or 1`);
          out[i] = b === 1;
        }
        this.pos += n;
        return { type: 'array', itemType, value: out };
      }
    }
    this.pos += n * size; // count() checked that n * size bytes remain
    switch (itemType) {
      case 'u8': return { type: 'array', itemType, value: this.bytes.slice(p, p + n) };
      case 'i8': return { type: 'array', itemType, value: new Int8Array(this.bytes.slice(p, p + n).buffer) };
      case 'u16': { const o = new Uint16Array(n); for (let i = 0; i < n; i++) o[i] = v.getUint16(p + 2 * i, true); return { type: 'array', itemType, value: o }; }
      case 'i16': { const o = new Int16Array(n); for (let i = 0; i < n; i++) o[i] = v.getInt16(p + 2 * i, true); return { type: 'array', itemType, value: o }; }
      case 'u32': { const o = new Uint32Array(n); for (let i = 0; i < n; i++) o[i] = v.getUint32(p + 4 * i, true); return { type: 'array', itemType, value: o }; }
      case 'i32': { const o = new Int32Array(n); for (let i = 0; i < n; i++) o[i] = v.getInt32(p + 4 * i, true); return { type: 'array', itemType, value: o }; }
      case 'f32': { const o = new Float32Array(n); copyBytes32(this.bytes, p, o, n); return { type: 'array', itemType, value: o }; }
      case 'f64': { const o = new Float64Array(n); for (let i = 0; i < n; i++) o[i] = v.getFloat64(p + 8 * i, true); return { type: 'array', itemType, value: o }; }
      case 'u64': { const o = new BigUint64Array(n); for (let i = 0; i < n; i++) o[i] = v.getBigUint64(p + 8 * i, true); return { type: 'array', itemType, value: o }; }
      case 'i64': { const o = new BigInt64Array(n); for (let i = 0; i < n; i++) o[i] = v.getBigInt64(p + 8 * i, true); return { type: 'array', itemType, value: o }; }
    }
  }
}

/** Strict UTF-8 (a fatal TextDecoder); undefined when invalid. */
function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(b);
  } catch {
    return undefined;
  }
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Copies n little-endian 32-bit words from bytes[p..] into a 32-bit typed array, bit-exact (NaN payloads too). */
function copyBytes32(bytes: Uint8Array, p: number, out: Float32Array | Uint32Array, n: number): void {
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer, out.byteOffset, n * 4).set(bytes.subarray(p, p + n * 4));
  } else {
    const u = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0, q = p; i < n; i++, q += 4) u[i] = (bytes[q] | (bytes[q + 1] << 8) | (bytes[q + 2] << 16) | (bytes[q + 3] << 24)) >>> 0;
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/**
 * Parses a GGUF v3 (or v2) file. Tensor data is not copied: use tensorBytes / tensorToF32.
 * Throws GgufError naming `fileName` and the field on any malformed input.
 */
export function readGguf(input: Uint8Array, fileName = '<buffer>', fileSize?: number): GgufFile {
  if (!(input instanceof Uint8Array)) throw new GgufError(`${fileName}: expected the file's bytes as a Uint8Array`);
  // A plain Uint8Array view: subclasses such as Node's Buffer give slice() view semantics.
  const bytes = input.constructor === Uint8Array ? input : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const c: Cursor = new Cursor(bytes, fileName);
  // With fileSize, `bytes` may be the file's first part: tensor data is checked against the whole file.
  const size = fileSize ?? bytes.length;
  const magic = c.u32('magic');
  if (magic !== MAGIC) {
    const shown = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    c.fail('magic', `expected "GGUF" (47 47 55 46), found ${shown}: not a GGUF file`);
  }
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
    const hint = swapped === 2 || swapped === 3 ? ' (a big-endian GGUF file, which is not supported)'
      : version === 1 ? ' (GGUF v1 used 32-bit counts; only v2 and v3 are supported)' : ' (only v2 and v3 are supported)';
    c.fail('version', `unsupported version ${version}${hint}`);
  }
  // Smallest tensor info: name length 8 + n_dims 4 + one ne 8 + type 4 + offset 8. Smallest kv: 8 + 4 + 1.
  const tensorCount = c.count('tensor count', 32, 'tensor infos');
  const kvCount = c.count('metadata kv count', 13, 'metadata entries');

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`);
    if (metadata.has(key)) c.fail(`metadata '${key}'`, `duplicate key (entry #${i})`);
    const typeId = c.u32(`metadata '${key}': value type`);
    metadata.set(key, c.value(typeId, `metadata '${key}'`, 0));
  }

  let alignment = DEFAULT_ALIGNMENT;
  const alignValue = metadata.get('general.alignment');
  if (alignValue) {
    if (alignValue.type !== 'u32') c.fail(`metadata 'general.alignment'`, `expected a u32, found ${alignValue.type}`);
    alignment = alignValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      c.fail(`metadata 'general.alignment'`, `${alignment} is not a power of two`);
    }
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor #${i}: name`);
    const field = `tensor '${name}'`;
    if (names.has(name)) c.fail(field, `duplicate tensor name (tensor #${i})`);
    names.add(name);
    const nDims = c.u32(`${field}: n_dims`);
    if (nDims < 1 || nDims > MAX_DIMS) c.fail(`${field}: n_dims`, `${nDims} dimensions (expected 1 to ${MAX_DIMS})`);
    const shape: number[] = [];
    let elements = 1n;
    for (let d = 0; d < nDims; d++) {
      const ne = c.u64(`${field}: ne[${d}]`);
      if (ne === 0n) c.fail(`${field}: ne[${d}]`, 'dimension is zero');
      if (ne >= 1n << 63n) c.fail(`${field}: ne[${d}]`, `dimension is negative (${BigInt.asIntN(64, ne)})`);
      if (ne > BigInt(Number.MAX_SAFE_INTEGER)) c.fail(`${field}: ne[${d}]`, `dimension ${ne} is absurdly large`);
      shape.push(Number(ne));
      elements *= ne;
    }
    const type = c.u32(`${field}: type`);
    const traits = blockGeometry(type);
    if (!traits) c.fail(`${field}: type`, `unknown ggml type ${type}`);
    if (shape[0] % traits.values !== 0) {
      c.fail(field, `ne[0] = ${shape[0]} is not a multiple of the ${traits.name} block size ${traits.values}`);
    }
    const byteLength = (elements / BigInt(traits.values)) * BigInt(traits.bytes);
    const offset = c.u64(`${field}: offset`);
    if (offset % BigInt(alignment) !== 0n) c.fail(`${field}: offset`, `${offset} is not a multiple of the alignment ${alignment}`);
    if (offset + byteLength > BigInt(size)) {
      c.fail(field, `data offset ${offset} + ${byteLength} bytes is past the end of the file (${size} bytes)`);
    }
    tensors.push({ name, shape, type, offset: Number(offset), byteLength: Number(byteLength) });
  }

  const dataOffset = alignUp(c.pos, alignment);
  for (const t of tensors) {
    if (dataOffset + t.offset + t.byteLength > size) {
      c.fail(`tensor '${t.name}'`, `offset ${dataOffset + t.offset} + ${t.byteLength} bytes is past the end of the file (${size} bytes)`);
    }
  }
  checkNoOverlap(c, tensors);
  return { fileName, version, metadata, tensors, alignment, dataOffset, bytes, fileSize: size };
}

function checkNoOverlap(c: Cursor, tensors: GgufTensorInfo[]): void {
  const sorted = tensors.slice().sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1], b = sorted[i];
    if (a.offset + a.byteLength > b.offset) {
      c.fail(`tensor '${b.name}'`, `data (offset ${b.offset}) overlaps tensor '${a.name}' (offset ${a.offset}, ${a.byteLength} bytes)`);
    }
  }
}

/** The raw bytes of a tensor: a view into file.bytes, no copy. */
export function tensorBytes(file: GgufFile, info: GgufTensorInfo): Uint8Array {
  const start = file.dataOffset + info.offset;
  if (start + info.byteLength > file.bytes.length) throw new GgufError(`${file.fileName}: tensor '${info.name}': its data was not read (only the header was parsed)`);
  return file.bytes.subarray(start, start + info.byteLength);
}

/** Number of values in a tensor of this shape. */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A tensor's values as f32 (dequantized; F32 is copied). */
export function tensorToF32(file: GgufFile, info: GgufTensorInfo): Float32Array {
  const n = elementCount(info.shape);
  const supported = info.type in DECODERS;
  if (!supported) {
    throw new GgufError(`${file.fileName}: tensor '${info.name}': cannot dequantize ${ggmlTypeName(info.type)} (supported: ${Object.keys(DECODERS).map((t) => ggmlTypeName(Number(t))).join(', ')})`);
  }
  return decodeTensor(info.type, tensorBytes(file, info), n);
}

/**
 * Parses only the header, metadata and tensor infos of a GGUF file on disk (Node only), reading as
 * little of the file as that takes, so tensors can then be read one at a time (streaming loads).
 */
export async function readGgufHeader(path: string): Promise<GgufFile> {
  const fs = await import('node:fs/promises');
  const fh = await fs.open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    for (let want = Math.min(size, 1 << 20); ; want = Math.min(size, want * 4)) {
      const prefix = new Uint8Array(want);
      const { bytesRead } = await fh.read(prefix, 0, want, 0);
      try {
        return readGguf(prefix.subarray(0, bytesRead), path, size);
      } catch (e) {
        // A header longer than the prefix reads as truncated: read more, until the whole file.
        if (!(e instanceof GgufError) || want >= size) throw e;
      }
    }
  } finally {
    await fh.close();
  }
}

/** Reads and parses a GGUF file from disk (Node only). */
export async function readGgufFile(path: string): Promise<GgufFile> {
  const fs = await import('node:fs/promises');
  const buf = await fs.readFile(path);
  return readGguf(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

// ---------------------------------------------------------------------------------------------------
// Tensor encoders and decoders

/** Dequantizers by ggml type id: (bytes, n values) -> Float32Array. */
const DECODERS: Record<number, (b: Uint8Array, n: number) => Float32Array> = {
  [GGML_TYPE.F32]: decodeF32,
  [GGML_TYPE.F16]: decodeF16,
  [GGML_TYPE.BF16]: decodeBf16,
  [GGML_TYPE.Q8_0]: dequantizeQ8_0,
  [GGML_TYPE.Q4_0]: dequantizeQ4_0,
  [GGML_TYPE.Q4_K]: dequantizeQ4_K,
};

/** Encoders by ggml type id: Float32Array -> bytes. */
const ENCODERS: Record<number, (x: Float32Array) => Uint8Array> = {
  [GGML_TYPE.F32]: encodeF32,
  [GGML_TYPE.F16]: encodeF16,
  [GGML_TYPE.BF16]: encodeBf16,
  [GGML_TYPE.Q8_0]: quantizeQ8_0,
  [GGML_TYPE.Q4_0]: quantizeQ4_0,
  [GGML_TYPE.Q4_K]: quantizeQ4_K,
};

/** Decodes `n` values of ggml type `type` from `bytes` (exactly ggmlByteLength(type, n) bytes). */
export function decodeTensor(type: number, bytes: Uint8Array, n: number): Float32Array {
  const decode = DECODERS[type];
  if (!decode) throw new GgufError(`cannot dequantize ${ggmlTypeName(type)}`);
  const expected = ggmlByteLength(type, n);
  if (bytes.length !== expected) throw new GgufError(`${n} ${ggmlTypeName(type)} values take ${expected} bytes, got ${bytes.length}`);
  return decode(bytes, n);
}

/** Encodes f32 values as ggml type `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_K). */
export function encodeTensor(type: number, x: Float32Array): Uint8Array {
  const encode = ENCODERS[type];
  if (!encode) throw new GgufError(`cannot encode ${ggmlTypeName(type)} from f32 values; pass the encoded bytes`);
  ggmlByteLength(type, x.length); // checks whole blocks
  return encode(x);
}

export function encodeF32(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 4);
  if (HOST_LITTLE_ENDIAN) out.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  else { const v = new DataView(out.buffer); for (let i = 0; i < x.length; i++) v.setFloat32(4 * i, x[i], true); }
  return out;
}

export function decodeF32(b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  copyBytes32(b, 0, out, n);
  return out;
}

export function encodeF16(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 2);
  for (let i = 0; i < x.length; i++) { const h = f32ToF16(x[i]); out[2 * i] = h & 0xff; out[2 * i + 1] = h >>> 8; }
  return out;
}

export function decodeF16(b: Uint8Array, n: number): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = table[b[2 * i] | (b[2 * i + 1] << 8)];
  return out;
}

export function encodeBf16(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 2);
  for (let i = 0; i < x.length; i++) { const h = f32ToBf16(x[i]); out[2 * i] = h & 0xff; out[2 * i + 1] = h >>> 8; }
  return out;
}

export function decodeBf16(b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bf16ToF32(b[2 * i] | (b[2 * i + 1] << 8));
  return out;
}

const fround = Math.fround;
/** Values and bytes per block of Q8_0 and Q4_0 (dtypes/blocks.ts). */
const QK8_0 = QUANT_BLOCKS.q8_0.values, Q8_0_BYTES = QUANT_BLOCKS.q8_0.bytes;
const QK4_0 = QUANT_BLOCKS.q4_0.values, Q4_0_BYTES = QUANT_BLOCKS.q4_0.bytes;

/** Q8_0 as llama.cpp's reference quantizer: d = amax/127, q = round(x/d) (half away from zero), all in f32. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = ggmlByteLength(GGML_TYPE.Q8_0, x.length) / Q8_0_BYTES;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const src = b * QK8_0, dst = b * Q8_0_BYTES;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(x[src + j]));
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const h = f32ToF16(d);
    out[dst] = h & 0xff;
    out[dst + 1] = h >>> 8;
    for (let j = 0; j < QK8_0; j++) {
      const v = fround(x[src + j] * id);
      const q = v < 0 ? -Math.round(-v) : Math.round(v); // C roundf: halves away from zero
      out[dst + 2 + j] = q & 0xff;
    }
  }
  return out;
}

export function dequantizeQ8_0(b: Uint8Array, n: number): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(n);
  for (let blk = 0, src = 0, dst = 0; dst < n; blk++, src += Q8_0_BYTES, dst += QK8_0) {
    const d = table[b[src] | (b[src + 1] << 8)];
    for (let j = 0; j < QK8_0; j++) out[dst + j] = ((b[src + 2 + j] << 24) >> 24) * d;
  }
  return out;
}

/** Q4_0 as llama.cpp's reference quantizer: d = max/-8 (max = the value of largest |x|), q = min(15, trunc(x/d + 8.5)). */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = ggmlByteLength(GGML_TYPE.Q4_0, x.length) / Q4_0_BYTES;
  const out = new Uint8Array(nb * Q4_0_BYTES);
  const nibble = (v: number, id: number): number => {
    const q = Math.trunc(fround(fround(v * id) + 8.5));
    return q > 15 ? 15 : q >= 0 ? q : 0; // NaN -> 0
  };
  for (let b = 0; b < nb; b++) {
    const src = b * QK4_0, dst = b * Q4_0_BYTES;
    let amax = 0, max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = x[src + j];
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const h = f32ToF16(d);
    out[dst] = h & 0xff;
    out[dst + 1] = h >>> 8;
    for (let j = 0; j < 16; j++) out[dst + 2 + j] = nibble(x[src + j], id) | (nibble(x[src + 16 + j], id) << 4);
  }
  return out;
}

export function dequantizeQ4_0(b: Uint8Array, n: number): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(n);
  for (let src = 0, dst = 0; dst < n; src += Q4_0_BYTES, dst += QK4_0) {
    const d = table[b[src] | (b[src + 1] << 8)];
    for (let j = 0; j < 16; j++) {
      const q = b[src + 2 + j];
      out[dst + j] = ((q & 0x0f) - 8) * d;
      out[dst + 16 + j] = ((q >>> 4) - 8) * d;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writer

const LONE_SURROGATE = /\p{Cs}/u;

/** Throws unless `v` is a well-formed GgufValue that can be written exactly. */
function validateValue(v: GgufValue, field: string, depth = 0): void {
  const bad = (msg: string): never => { throw new GgufError(`${field}: ${msg}`); };
  if (typeof v !== 'object' || v === null || typeof v.type !== 'string' || !(v.type in VALUE_TYPE_IDS)) {
    bad(`not a GGUF value (expected {type, value}, e.g. gguf.u32(1) or gguf.str('x'))`);
  }
  switch (v.type) {
    case 'u64': case 'i64': { const p = bigIntProblem(v.type, v.value); if (p) bad(p); return; }
    case 'bool': { const b: unknown = v.value; if (typeof b !== 'boolean') bad(`expected a boolean, got ${typeof b}`); return; }
    case 'string': {
      const s: unknown = v.value;
      if (typeof s !== 'string') return bad(`expected a string, got ${typeof s}`);
      if (LONE_SURROGATE.test(s)) bad('string has a lone UTF-16 surrogate (not encodable as UTF-8)');
      return;
    }
    case 'array': return validateArray(v, field, depth);
    default: { const p = numberProblem(v.type, v.value); if (p) bad(p); }
  }
}

function validateArray(a: GgufArray, field: string, depth: number): void {
  const bad = (msg: string): never => { throw new GgufError(`${field}: ${msg}`); };
  if (depth >= MAX_ARRAY_DEPTH) bad(`arrays nested more than ${MAX_ARRAY_DEPTH} deep`);
  if (!(a.itemType in VALUE_TYPE_IDS)) bad(`unknown array item type '${String(a.itemType)}'`);
  const items = a.value as ArrayLike<unknown>;
  if (items === null || typeof items !== 'object' || typeof items.length !== 'number') bad('array value is not array-like');
  const t = a.itemType;
  if (t in TYPED_ARRAY_CTORS && items instanceof TYPED_ARRAY_CTORS[t as keyof typeof TYPED_ARRAY_CTORS]) return;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (t === 'array') validateArray(item as GgufArray, `${field}[${i}]`, depth + 1);
    else validateValue({ type: t, value: item } as GgufValue, `${field}[${i}]`, depth + 1);
  }
}

const utf8Encoder = new TextEncoder();

/** A growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const p = this.length;
    this.length += n;
    return p;
  }

  u8(v: number): void { const p = this.reserve(1); this.buf[p] = v; }
  u32(v: number): void { const p = this.reserve(4); this.view.setUint32(p, v, true); }
  u64(v: bigint | number): void { const p = this.reserve(8); this.view.setBigUint64(p, BigInt(v), true); }
  bytes(b: Uint8Array): void { const p = this.reserve(b.length); this.buf.set(b, p); }
  string(s: string): void { const b = utf8Encoder.encode(s); this.u64(b.length); this.bytes(b); }

  /** Writes a value's payload (not its type id). reserve() may replace this.view, so call it first. */
  value(v: GgufValue): void {
    switch (v.type) {
      case 'u8': this.u8(v.value); return;
      case 'i8': { const p = this.reserve(1); this.view.setInt8(p, v.value); return; }
      case 'u16': { const p = this.reserve(2); this.view.setUint16(p, v.value, true); return; }
      case 'i16': { const p = this.reserve(2); this.view.setInt16(p, v.value, true); return; }
      case 'u32': this.u32(v.value); return;
      case 'i32': { const p = this.reserve(4); this.view.setInt32(p, v.value, true); return; }
      case 'f32': { const p = this.reserve(4); this.view.setFloat32(p, v.value, true); return; }
      case 'f64': { const p = this.reserve(8); this.view.setFloat64(p, v.value, true); return; }
      case 'u64': this.u64(v.value); return;
      case 'i64': { const p = this.reserve(8); this.view.setBigInt64(p, v.value, true); return; }
      case 'bool': this.u8(v.value ? 1 : 0); return;
      case 'string': this.string(v.value); return;
      case 'array': {
        this.u32(VALUE_TYPE_IDS[v.itemType]);
        const items = v.value as ArrayLike<unknown>;
        this.u64(items.length);
        if (v.itemType === 'f32' && items instanceof Float32Array) {
          this.bytes(encodeF32(items)); // bit-exact, NaN payloads included
          return;
        }
        for (let i = 0; i < items.length; i++) {
          const item = items[i];
          this.value((v.itemType === 'array' ? item : { type: v.itemType, value: item }) as GgufValue);
        }
      }
    }
  }

  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

interface EncodedTensor { name: string; shape: number[]; type: number; bytes: Uint8Array }

function encodeTensorInput(t: GgufTensorInput, index: number): EncodedTensor {
  const field = `tensor #${index}${typeof t?.name === 'string' ? ` '${t.name}'` : ''}`;
  const bad = (msg: string): never => { throw new GgufError(`${field}: ${msg}`); };
  if (typeof t?.name !== 'string') bad('name must be a string');
  if (LONE_SURROGATE.test(t.name)) bad('name has a lone UTF-16 surrogate');
  const shape = Array.from(t.shape ?? []);
  if (shape.length < 1 || shape.length > MAX_DIMS) bad(`${shape.length} dimensions (expected 1 to ${MAX_DIMS})`);
  for (const d of shape) if (!Number.isSafeInteger(d) || d < 1) bad(`shape [${shape.join(', ')}] must hold positive integers`);
  const traits = blockGeometry(t.type);
  if (!traits) bad(`unknown ggml type ${t.type}`);
  if (shape[0] % traits!.values !== 0) bad(`ne[0] = ${shape[0]} is not a multiple of the ${traits!.name} block size ${traits!.values}`);
  const n = elementCount(shape);
  const expected = (n / traits!.values) * traits!.bytes;
  let bytes: Uint8Array;
  if (t.data instanceof Float32Array) {
    if (t.data.length !== n) bad(`${t.data.length} values given for shape [${shape.join(', ')}] (${n} values)`);
    if (!ENCODERS[t.type]) bad(`cannot encode ${traits!.name} from f32 values; pass the encoded bytes as a Uint8Array`);
    try {
      bytes = ENCODERS[t.type](t.data);
    } catch (e) {
      return bad((e as Error).message); // e.g. a non-finite value the quantizer refuses
    }
  } else if (t.data instanceof Uint8Array) {
    if (t.data.length !== expected) bad(`${t.data.length} bytes given; ${traits!.name} shape [${shape.join(', ')}] takes ${expected}`);
    bytes = t.data;
  } else {
    return bad('data must be a Float32Array (values) or a Uint8Array (encoded bytes)');
  }
  return { name: t.name, shape, type: t.type, bytes };
}

/**
 * Encodes a GGUF v3 file. Metadata keeps the given order. `alignment` defaults to the metadata's
 * `general.alignment` or 32; a non-default alignment missing from the metadata is added to it.
 * Tensors are laid out in the given order, each padded with zeros to the alignment. A file without
 * tensors ends right after the metadata (no padding), as llama.cpp's vocab-only files do.
 */
export function writeGguf(metadata: GgufMetadataInput, tensors: readonly GgufTensorInput[], alignment?: number): Uint8Array {
  const entries: Array<readonly [string, GgufValue]> = metadata instanceof Map ? Array.from(metadata) : Array.from(metadata);
  const keys = new Set<string>();
  for (const [key, value] of entries) {
    if (typeof key !== 'string') throw new GgufError(`metadata key ${String(key)} is not a string`);
    if (LONE_SURROGATE.test(key)) throw new GgufError(`metadata key '${key}' has a lone UTF-16 surrogate`);
    if (keys.has(key)) throw new GgufError(`metadata '${key}': duplicate key`);
    keys.add(key);
    validateValue(value, `metadata '${key}'`);
  }
  const given = entries.find(([k]) => k === 'general.alignment')?.[1];
  if (given && given.type !== 'u32') throw new GgufError(`metadata 'general.alignment': expected a u32, found ${given.type}`);
  const fromMeta = given ? (given.value as number) : undefined;
  if (alignment !== undefined && fromMeta !== undefined && alignment !== fromMeta) {
    throw new GgufError(`alignment ${alignment} differs from metadata 'general.alignment' = ${fromMeta}`);
  }
  const align = alignment ?? fromMeta ?? DEFAULT_ALIGNMENT;
  if (!Number.isInteger(align) || align < 1 || align > 0xffffffff || (align & (align - 1)) !== 0) {
    throw new GgufError(`alignment ${align} is not a power of two`);
  }
  if (fromMeta === undefined && align !== DEFAULT_ALIGNMENT) entries.push(['general.alignment', gguf.u32(align)]);

  const encoded = tensors.map(encodeTensorInput);
  const names = new Set<string>();
  for (const t of encoded) {
    if (names.has(t.name)) throw new GgufError(`tensor '${t.name}': duplicate tensor name`);
    names.add(t.name);
  }

  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(3);
  w.u64(encoded.length);
  w.u64(entries.length);
  for (const [key, value] of entries) {
    w.string(key);
    w.u32(VALUE_TYPE_IDS[value.type]);
    w.value(value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of encoded) {
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of t.shape) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    offset += alignUp(t.bytes.length, align);
  }
  const header = w.result();
  const dataOffset = encoded.length ? alignUp(header.length, align) : header.length;
  const out = new Uint8Array(dataOffset + offset);
  out.set(header);
  encoded.forEach((t, i) => out.set(t.bytes, dataOffset + offsets[i]));
  return out;
}

/**
 * Writes a GGUF file atomically (Node only): to `path.tmp-<pid>`, fsync, rename over `path`, then
 * fsync the directory where the platform allows it.
 */
export async function writeGgufFile(
  path: string, metadata: GgufMetadataInput, tensors: readonly GgufTensorInput[], alignment?: number,
): Promise<void> {
  await writeFileAtomic(path, writeGguf(metadata, tensors, alignment));
}
