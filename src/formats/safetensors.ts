/**
 * safetensors reader and writer: Hugging Face's tensor file format.
 *
 * File layout:
 *
 *   u64 LE  N             byte length of the header
 *   N bytes header        UTF-8 JSON object, starting with '{' and possibly padded at the end with
 *                         spaces (the reference writer pads so that the data starts on a multiple of 8):
 *                         { "__metadata__": { string: string, ... },          (optional)
 *                           "<tensor name>": { "dtype": "F32", "shape": [rows, cols],
 *                                              "data_offsets": [begin, end] }, ... }
 *   data                  the tensors' bytes, little-endian, row-major (shape[last] is contiguous);
 *                         data_offsets are relative to the start of the data.
 *
 * What a valid file is (the reference implementation, huggingface/safetensors tensor.rs, rejects the
 * same things): header length at most 100 MB and inside the file; a UTF-8 header starting with '{'; a
 * known dtype; shape dims that are non-negative integers; end - begin exactly the bytes the shape and
 * dtype need; and the tensors, sorted by offset, tiling the whole data section: the first begins at 0,
 * each begins where the previous one ended (no holes, no overlaps), the last ends at the end of the
 * file. The order of the entries in the header does not matter (the reference sorts them by offset).
 *
 * Stricter than the reference, on purpose: duplicate keys anywhere in the header are an error (JSON.parse
 * and serde both silently keep one of them, so two readers could disagree on which tensor a name means),
 * tensor entries may hold only dtype, shape and data_offsets, and nesting deeper than a header needs is
 * refused. The header is parsed by a small strict JSON parser below for that reason; objects become Maps,
 * so names such as "__proto__" are ordinary names.
 *
 * Every malformed input throws a SafetensorsError naming the file and the field, raised before any
 * allocation larger than the file itself.
 */
import { decodeBf16, decodeF16, decodeF32, encodeBf16, encodeF16, encodeF32 } from './gguf.js';

/** A malformed safetensors file or an invalid value given to the writer. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** Bits per element of every dtype the format defines (sub-byte types pack several per byte). */
const DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ['BOOL', 8], ['U8', 8], ['I8', 8], ['F8_E5M2', 8], ['F8_E4M3', 8], ['F8_E8M0', 8], ['F8_E4M3FNUZ', 8], ['F8_E5M2FNUZ', 8],
  ['I16', 16], ['U16', 16], ['F16', 16], ['BF16', 16],
  ['I32', 32], ['U32', 32], ['F32', 32],
  ['I64', 64], ['U64', 64], ['F64', 64], ['C64', 64],
  ['F4', 4], ['F6_E2M3', 6], ['F6_E3M2', 6],
]);

/** The dtypes stlm converts to and from f32. */
export type SafetensorsFloatDtype = 'F32' | 'F16' | 'BF16';

/** The reference implementation's limit on the header size. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Deepest nesting a header needs: { name: { shape: [ ] } }. Anything deeper is refused. */
const MAX_JSON_DEPTH = 8;

export interface SafetensorsTensorInfo {
  name: string;
  /** One of the format's dtypes ('F32', 'BF16', 'I64', ...). */
  dtype: string;
  /** Row-major: shape[shape.length - 1] is contiguous. [] is a scalar. */
  shape: number[];
  /** Byte offsets inside the data section (end exclusive). */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  fileName: string;
  /** In header order. */
  tensors: SafetensorsTensorInfo[];
  /** The `__metadata__` object (empty when absent). */
  metadata: Map<string, string>;
  /** Absolute byte offset of the data section (8 + header length). */
  dataOffset: number;
  bytes: Uint8Array;
}

export interface SafetensorsTensorInput {
  name: string;
  dtype: SafetensorsFloatDtype;
  /** Row-major, as in the file. */
  shape: readonly number[];
  /** Values to encode in `dtype`, or bytes already encoded in it. */
  data: Float32Array | Uint8Array;
}

// ---------------------------------------------------------------------------------------------------
// A strict JSON parser (RFC 8259) whose objects are Maps and which rejects duplicate keys.

export type Json = null | boolean | number | string | Json[] | JsonObject;
export type JsonObject = Map<string, Json>;

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class JsonParser {
  private pos = 0;

  constructor(private readonly text: string, private readonly fail: (message: string) => never) {}

  parseDocument(): Json {
    const value = this.value(0);
    this.skipWhitespace();
    if (this.pos < this.text.length) this.error('unexpected text after the JSON object');
    return value;
  }

  private error(message: string): never {
    return this.fail(`invalid JSON at character ${this.pos}: ${message}`);
  }

  private skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  private value(depth: number): Json {
    if (depth >= MAX_JSON_DEPTH) this.error(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    this.skipWhitespace();
    const c = this.text[this.pos];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === undefined) this.error('unexpected end of the header');
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (!m) this.error(`unexpected character ${JSON.stringify(c)}`);
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private expect(c: string): void {
    this.skipWhitespace();
    if (this.text[this.pos] !== c) this.error(`expected '${c}'`);
    this.pos++;
  }

  private object(depth: number): JsonObject {
    const out: JsonObject = new Map();
    this.pos++; // '{'
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.error('expected a key string');
      const key = this.string();
      if (out.has(key)) this.error(`duplicate key ${JSON.stringify(key)}`);
      this.expect(':');
      out.set(key, this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') {
        this.pos--;
        this.error("expected ',' or '}'");
      }
    }
  }

  private array(depth: number): Json[] {
    const out: Json[] = [];
    this.pos++; // '['
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') {
        this.pos--;
        this.error("expected ',' or ']'");
      }
    }
  }

  /** A string literal: its extent is found here, its escapes decoded by JSON.parse (exact, strict). */
  private string(): string {
    const t = this.text, start = this.pos;
    let i = start + 1, escaped = false;
    for (;; i++) {
      if (i >= t.length) this.error('unterminated string');
      const c = t.charCodeAt(i);
      if (c < 0x20) {
        this.pos = i;
        this.error('control character in a string');
      }
      if (c === 0x5c) {
        escaped = true;
        i++;
      } else if (c === 0x22) break;
    }
    this.pos = i + 1;
    if (!escaped) return t.slice(start + 1, i);
    try {
      return JSON.parse(t.slice(start, i + 1)) as string;
    } catch {
      this.pos = start;
      return this.error('invalid escape in a string');
    }
  }
}

/**
 * Parses JSON text strictly, as safetensors headers are: objects become Maps (so "__proto__" is an
 * ordinary key), a duplicate key anywhere is an error, nesting deeper than 8 levels is refused. For small
 * structured files where a silently dropped duplicate would change the meaning (a sharded checkpoint's
 * model.safetensors.index.json). Errors go to `fail` with a message giving the character position.
 */
export function parseJsonStrict(text: string, fail: (message: string) => never): Json {
  return new JsonParser(text, fail).parseDocument();
}

// ---------------------------------------------------------------------------------------------------
// Reader

const describe = (v: Json): string =>
  v instanceof Map ? 'an object' : Array.isArray(v) ? `an array of ${v.length}` : typeof v === 'number' ? String(v) : JSON.stringify(v);

/** The header's length, checked against the file and the reference's limit before anything is read. */
function readHeaderLength(bytes: Uint8Array, fail: (field: string, message: string) => never): number {
  if (bytes.length < 8) fail('header length', `the file has ${bytes.length} bytes, fewer than the 8 of the header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail('header length', `${n} bytes is absurd (the limit is ${MAX_HEADER_BYTES})`);
  if (n > BigInt(bytes.length - 8)) fail('header length', `${n} bytes runs past the end of the file (${bytes.length - 8} bytes follow the length)`);
  return Number(n);
}

function decodeHeaderText(bytes: Uint8Array, n: number, fail: (field: string, message: string) => never): string {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so that it fails the '{' check as in the reference.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    return fail('header', 'is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('header', `must start with '{', found ${JSON.stringify(text.slice(0, 8))}`);
  return text;
}

function readMetadata(value: Json, fail: (field: string, message: string) => never): Map<string, string> {
  if (!(value instanceof Map)) return fail('__metadata__', `must be an object of strings, found ${describe(value)}`);
  for (const [k, v] of value) if (typeof v !== 'string') fail(`__metadata__ '${k}'`, `value must be a string, found ${describe(v)}`);
  return value as Map<string, string>;
}

/** A non-negative integer an offset or a dim can be (exact in a double). */
const isCount = (v: Json): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Why `v` is not a count, for messages. */
const notCount = (v: Json): string => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? `${v} is too large (over 2^53)` : `${describe(v)} is not a non-negative integer`);

/** A shape for messages, shortened when a hostile file gives thousands of dims. */
const shapeText = (dims: number[]): string => `[${dims.slice(0, 8).join(', ')}${dims.length > 8 ? `, … (${dims.length} dims)` : ''}]`;

/** Bytes taken by a tensor of `shape` with `bits`-bit elements, or a message saying why there is no such length. */
function byteLengthOf(shape: number[], bits: number): bigint | string {
  // Stop multiplying once past 2^53 (a shape of many large dims must not grow a huge BigInt); a zero dim
  // anywhere still makes the count 0.
  let count = shape.includes(0) ? 0n : 1n;
  for (const d of shape) {
    if (count > BigInt(Number.MAX_SAFE_INTEGER)) break;
    count *= BigInt(d);
  }
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) return 'element count overflows (the product of the dims exceeds 2^53)';
  const totalBits = count * BigInt(bits);
  if (totalBits % 8n) return `${count} elements of ${bits} bits are not a whole number of bytes`;
  return totalBits / 8n;
}

function readTensorInfo(name: string, value: Json, dataLength: number, fail: (field: string, message: string) => never): SafetensorsTensorInfo {
  const field = `tensor '${name}'`;
  if (!(value instanceof Map)) return fail(field, `must be an object, found ${describe(value)}`);
  for (const k of value.keys()) if (k !== 'dtype' && k !== 'shape' && k !== 'data_offsets') fail(field, `unknown field '${k}'`);
  const dtype = value.get('dtype');
  if (typeof dtype !== 'string') return fail(`${field}: dtype`, dtype === undefined ? 'is missing' : `must be a string, found ${describe(dtype)}`);
  const bits = DTYPE_BITS.get(dtype);
  if (bits === undefined) return fail(`${field}: dtype`, `unknown dtype '${dtype}' (known: ${[...DTYPE_BITS.keys()].join(', ')})`);
  const shape = value.get('shape');
  if (!Array.isArray(shape)) return fail(`${field}: shape`, shape === undefined ? 'is missing' : `must be an array, found ${describe(shape)}`);
  shape.forEach((d, i) => { if (!isCount(d)) fail(`${field}: shape`, `dimension ${i}: ${notCount(d)}`); });
  const offsets = value.get('data_offsets');
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    return fail(`${field}: data_offsets`, offsets === undefined ? 'is missing' : `must be [begin, end], found ${describe(offsets)}`);
  }
  const [begin, end] = offsets;
  if (!isCount(begin)) return fail(`${field}: data_offsets`, `begin: ${notCount(begin)}`);
  if (!isCount(end)) return fail(`${field}: data_offsets`, `end: ${notCount(end)}`);
  if (end < begin) fail(`${field}: data_offsets`, `end ${end} is before begin ${begin}`);
  if (end > dataLength) fail(`${field}: data_offsets`, `[${begin}, ${end}] runs past the end of the data (${dataLength} bytes)`);
  const dims = shape as number[];
  const bytes = byteLengthOf(dims, bits);
  if (typeof bytes === 'string') fail(`${field}: shape`, `${shapeText(dims)}: ${bytes}`);
  if (bytes !== BigInt(end - begin)) fail(field, `shape ${shapeText(dims)} of ${dtype} needs ${bytes} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`);
  return { name, dtype, shape: dims, begin, end };
}

/** The tensors, sorted by offset, must tile the data section exactly (as the reference requires). */
function checkCoverage(tensors: SafetensorsTensorInfo[], dataLength: number, fail: (field: string, message: string) => never): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: SafetensorsTensorInfo | undefined;
  for (const t of sorted) {
    if (t.begin < covered) fail(`tensor '${t.name}': data_offsets`, `[${t.begin}, ${t.end}] overlaps tensor '${previous!.name}' [${previous!.begin}, ${previous!.end}]`);
    if (t.begin > covered) fail(`tensor '${t.name}': data_offsets`, `begins at ${t.begin}, leaving a hole: bytes ${covered}..${t.begin} of the data belong to no tensor`);
    covered = t.end;
    previous = t;
  }
  if (covered !== dataLength) fail('data', `the data section has ${dataLength} bytes but the tensors cover only the first ${covered}`);
}

/** Parses safetensors bytes (no copy of the data: views into `bytes`). */
export function readSafetensors(bytes: Uint8Array, fileName = '<buffer>'): SafetensorsFile {
  const fail = (field: string, message: string): never => {
    throw new SafetensorsError(`${fileName}: ${field}: ${message}`);
  };
  if (!(bytes instanceof Uint8Array)) fail('file', 'expected the bytes as a Uint8Array');
  const n = readHeaderLength(bytes, fail);
  const text = decodeHeaderText(bytes, n, fail);
  const header = new JsonParser(text, (m) => fail('header', m)).parseDocument() as JsonObject;
  const dataOffset = 8 + n;
  const dataLength = bytes.length - dataOffset;
  let metadata = new Map<string, string>();
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, value] of header) {
    if (name === '__metadata__') metadata = readMetadata(value, fail);
    else tensors.push(readTensorInfo(name, value, dataLength, fail));
  }
  checkCoverage(tensors, dataLength, fail);
  return { fileName, tensors, metadata, dataOffset, bytes };
}

/** Reads and parses a safetensors file from disk (Node only). */
export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  const fs = await import('node:fs/promises');
  let buf: Buffer;
  try {
    buf = await fs.readFile(path);
  } catch (e) {
    throw new SafetensorsError(`cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return readSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

/** The tensor named `name`. */
export function getTensorInfo(file: SafetensorsFile, name: string): SafetensorsTensorInfo {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new SafetensorsError(`${file.fileName}: no tensor named '${name}'`);
  return t;
}

/** The tensor's bytes (a view into the file). */
export function tensorBytes(file: SafetensorsFile, info: SafetensorsTensorInfo): Uint8Array {
  return file.bytes.subarray(file.dataOffset + info.begin, file.dataOffset + info.end);
}

const DECODERS: Record<SafetensorsFloatDtype, (b: Uint8Array, n: number) => Float32Array> = { F32: decodeF32, F16: decodeF16, BF16: decodeBf16 };
const ENCODERS: Record<SafetensorsFloatDtype, (x: Float32Array) => Uint8Array> = { F32: encodeF32, F16: encodeF16, BF16: encodeBf16 };
const isFloatDtype = (d: string): d is SafetensorsFloatDtype => d === 'F32' || d === 'F16' || d === 'BF16';

/** A tensor's values as f32 (exact for F32, F16 and BF16). */
export function tensorToF32(file: SafetensorsFile, name: string): Float32Array {
  const info = getTensorInfo(file, name);
  if (!isFloatDtype(info.dtype)) throw new SafetensorsError(`${file.fileName}: tensor '${name}': unsupported dtype ${info.dtype} (stlm reads F32, F16, BF16)`);
  const n = info.shape.reduce((a, b) => a * b, 1);
  return DECODERS[info.dtype](tensorBytes(file, info), n);
}

// ---------------------------------------------------------------------------------------------------
// Writer

function encodeTensorData(t: SafetensorsTensorInput, count: number): Uint8Array {
  const bytes = (count * DTYPE_BITS.get(t.dtype)!) / 8;
  if (t.data instanceof Float32Array) {
    if (t.data.length !== count) throw new SafetensorsError(`tensor '${t.name}': shape [${t.shape.join(', ')}] has ${count} elements, data has ${t.data.length}`);
    return ENCODERS[t.dtype](t.data);
  }
  if (t.data instanceof Uint8Array) {
    if (t.data.length !== bytes) throw new SafetensorsError(`tensor '${t.name}': shape [${t.shape.join(', ')}] of ${t.dtype} takes ${bytes} bytes, data has ${t.data.length}`);
    return t.data;
  }
  throw new SafetensorsError(`tensor '${t.name}': data must be a Float32Array or encoded bytes (Uint8Array)`);
}

function checkTensorInput(t: SafetensorsTensorInput, seen: Set<string>): number {
  if (typeof t.name !== 'string') throw new SafetensorsError(`tensor name must be a string, got ${typeof t.name}`);
  if (t.name === '__metadata__') throw new SafetensorsError("tensor name '__metadata__' is reserved for the metadata");
  if (seen.has(t.name)) throw new SafetensorsError(`tensor '${t.name}' is given twice`);
  seen.add(t.name);
  if (!isFloatDtype(t.dtype)) throw new SafetensorsError(`tensor '${t.name}': dtype must be F32, F16 or BF16, got ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`tensor '${t.name}': shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
  }
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count)) throw new SafetensorsError(`tensor '${t.name}': shape [${t.shape.join(', ')}] has too many elements`);
  return count;
}

function metadataEntries(metadata: Map<string, string> | Record<string, string> | undefined): [string, string][] {
  if (!metadata) return [];
  const entries = metadata instanceof Map ? [...metadata] : Object.entries(metadata);
  for (const [k, v] of entries) if (typeof v !== 'string') throw new SafetensorsError(`metadata '${k}': value must be a string, got ${typeof v}`);
  return entries;
}

/**
 * Serializes tensors, in the given order and contiguous, with optional string metadata. The header is
 * compact JSON ("__metadata__" first, as the reference writes it) padded with spaces so that the data
 * starts at a multiple of 8 bytes.
 */
export function writeSafetensors(tensors: readonly SafetensorsTensorInput[], metadata?: Map<string, string> | Record<string, string>): Uint8Array {
  const seen = new Set<string>();
  const parts: string[] = [];
  const meta = metadataEntries(metadata);
  if (meta.length) parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  const data: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const encoded = encodeTensorData(t, checkTensorInput(t, seen));
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + encoded.length}]}`);
    data.push(encoded);
    offset += encoded.length;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const d of data) {
    out.set(d, at);
    at += d.length;
  }
  return out;
}
