/**
 * LoRA adapter files: llama.cpp's LoRA adapter GGUF (what convert_lora_to_gguf.py writes and
 * llama-adapter.cpp reads): general.type = adapter, adapter.type = lora, adapter.lora.alpha (f32), tensors
 * `<base tensor>.lora_a` with ne [in, r] and `.lora_b` with ne [r, out] (our row-major [r, in] and
 * [out, r]). The adapters themselves (their math, attaching and merging) are models/lora.ts.
 */
import { GGML_TYPE, type GgufFile, type GgufTensorInput, type GgufValue, gguf, metaNumber, metaString, readGguf, tensorToF32, writeGgufFile } from '../formats/gguf.js';
import type { LlamaConfig } from '../models/config.js';
import { type LoraData, type LoraPair, validateLora } from '../models/lora.js';

/** The adapter as GGUF metadata and tensors, in llama.cpp's LoRA adapter layout. */
export function loraGguf(data: LoraData, name = 'stlm LoRA adapter'): { metadata: [string, GgufValue][]; tensors: GgufTensorInput[] } {
  const metadata: [string, GgufValue][] = [
    ['general.architecture', gguf.str('llama')],
    ['general.type', gguf.str('adapter')],
    ['general.name', gguf.str(name)],
    ['adapter.type', gguf.str('lora')],
    ['adapter.lora.alpha', gguf.f32(data.alpha)],
  ];
  const tensors: GgufTensorInput[] = [];
  for (const [base, p] of data.pairs) {
    const inp = p.a.length / p.rank, out = p.b.length / p.rank;
    tensors.push({ name: `${base}.lora_a`, shape: [inp, p.rank], type: GGML_TYPE.F32, data: p.a });
    tensors.push({ name: `${base}.lora_b`, shape: [p.rank, out], type: GGML_TYPE.F32, data: p.b });
  }
  return { metadata, tensors };
}

/** Writes an adapter file (atomically: temporary file, then rename). */
export async function saveLoraAdapter(path: string, data: LoraData): Promise<void> {
  const { metadata, tensors } = loraGguf(data);
  await writeGgufFile(path, metadata, tensors);
}

/** Reads a llama.cpp LoRA adapter GGUF (F32/F16/BF16/Q8_0 tensors) and checks it against the base config. */
export function parseLoraAdapter(bytes: Uint8Array, fileName: string, config: LlamaConfig): LoraData {
  const file = readGguf(bytes, fileName);
  const expect = (key: string, want: string) => {
    const got = metaString(file, key, '');
    if (got !== want) throw new Error(`${fileName}: not a LoRA adapter for a Llama model (${key} is '${got || 'missing'}', expected '${want}')`);
  };
  expect('general.type', 'adapter');
  expect('adapter.type', 'lora');
  expect('general.architecture', 'llama');
  const alpha = metaNumber(file, 'adapter.lora.alpha', 0);
  const halves = new Map<string, { a?: ReturnType<typeof tensorOf>; b?: ReturnType<typeof tensorOf> }>();
  for (const info of file.tensors) {
    const m = /^(.*)\.lora_([ab])$/.exec(info.name);
    if (!m) throw new Error(`${fileName}: tensor '${info.name}' is not a LoRA tensor (<base>.lora_a / .lora_b)`);
    const h = halves.get(m[1]) ?? {};
    h[m[2] as 'a' | 'b'] = tensorOf(file, info.name);
    halves.set(m[1], h);
  }
  const pairs = new Map<string, LoraPair>();
  for (const [base, { a, b }] of halves) {
    if (!a || !b) throw new Error(`${fileName}: adapter for '${base}' lacks its ${a ? 'lora_b' : 'lora_a'} tensor`);
    // ne: A [in, r], B [r, out]; the rank is shared.
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0]) {
      throw new Error(`${fileName}: adapter for '${base}': lora_a ne [${a.shape.join(', ')}] and lora_b ne [${b.shape.join(', ')}] do not share a rank (expected ne [in, r] and [r, out])`);
    }
    pairs.set(base, { a: a.values, b: b.values, rank: b.shape[0] });
  }
  const data = { alpha, pairs };
  validateLora(data, config, fileName);
  return data;
}

function tensorOf(file: GgufFile, name: string): { shape: number[]; values: Float32Array } {
  const info = file.tensors.find((t) => t.name === name)!;
  return { shape: info.shape, values: tensorToF32(file, info) };
}

/** Reads an adapter file from disk (Node). */
export async function readLoraAdapter(path: string, config: LlamaConfig): Promise<LoraData> {
  const { readFile } = await import('node:fs/promises');
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new Error(`cannot read adapter file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseLoraAdapter(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path, config);
}
