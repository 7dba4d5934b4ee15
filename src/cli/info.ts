/**
 * `stlm info`: what a model file holds. Three kinds of file: a Llama (any format), the byte-pooled
 * model (GGUF with general.architecture stlm-pooled), and a LoRA adapter (GGUF with general.type =
 * adapter), which is described from its header alone: no base model needed.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type GgufFile, elementCount, ggmlTypeName, metaNumber, metaString, readGgufHeader } from '../formats/gguf.js';
import { architectureOf } from '../models/architectures.js';
import { headDim } from '../models/config.js';
import { type LoadedModel, loadModel, modelParameterShapes } from '../io/model-file.js';
import { loraScale } from '../models/lora.js';

const count = (n: number) => n.toLocaleString('en-US');
import { BYTE_PAD } from '../tokenizers/byte.js';

const FORMAT_NAMES = { gguf: 'GGUF', llama2c: 'llama2.c checkpoint', safetensors: 'Hugging Face safetensors' };

export interface InfoCliOptions {
  json: boolean;
  tokenizer?: string;
}

export async function runInfo(path: string, o: InfoCliOptions): Promise<void> {
  // An adapter is no model (loadModel would look for a config it does not have): read its header only.
  const header = await ggufHeaderOf(path);
  if (header && metaString(header, 'general.type', '') === 'adapter') return printAdapterInfo(path, header, o.json);
  const m = await loadModel(path, { tokenizer: o.tokenizer, keepQuantized: true });
  const info = modelInfo(path, m);
  if (o.json) return writeJson(info);
  const lines = [
    `${path}: ${info.format}, ${info.bytes.toLocaleString('en-US')} bytes${info.checkpoint ? ' (training checkpoint)' : ''}`,
    ...architectureOf(m.config).describe(),
    tokenizerLine(m),
    `tensors:    ${info.tensors} (${info.tensorTypes.join(', ')})`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** The --json object of a model: the same keys for both architectures, plus the breakdown and chunking of a pooled one. */
function modelInfo(path: string, m: LoadedModel) {
  const { config, tokenizer, file, format } = m;
  const arch = architectureOf(config);
  return {
    file: path,
    format: file ? `GGUF v${file.version}` : FORMAT_NAMES[format],
    bytes: sizeOf(path),
    name: file ? metaString(file, 'general.name', '') : '',
    architecture: arch.name,
    parameters: arch.parameters,
    tensors: file ? file.tensors.length : modelParameterShapes(config).length,
    tensorTypes: file ? [...new Set(file.tensors.map((t) => ggmlTypeName(t.type)))] : ['F32'],
    tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize, bos: tokenizer.bos, eos: tokenizer.eos },
    config: { ...config, headDim: headDim(config) },
    checkpoint: file?.metadata.has('stlm.train.step') ?? false,
    ...arch.extraInfo(),
  };
}

function tokenizerLine({ config, tokenizer: t }: LoadedModel): string {
  // The pooled model's vocabulary is the bytes plus its specials; it never tokenizes.
  if (architectureOf(config).readsBytes) return `tokenizer:  none, reads raw bytes (vocab ${t.vocabSize}: 256 bytes + bos ${t.bos}, eos ${t.eos}, pad ${BYTE_PAD})`;
  return `tokenizer:  ${t.kind}, vocab ${t.vocabSize} (bos ${t.bos}, eos ${t.eos})`;
}

/** What a LoRA adapter file holds, from its header: the pairs by base tensor, ranks, targets, positions. */
export interface AdapterInfo {
  file: string;
  format: string;
  bytes: number;
  name: string;
  type: 'adapter';
  adapterType: string;
  /** general.architecture of the base the adapter is for. */
  architecture: string;
  alpha: number;
  /** The distinct ranks of the pairs, ascending (one, for stlm's adapters). */
  ranks: number[];
  /** llama.cpp's scale per rank: alpha / rank (1 when alpha is 0). */
  scales: number[];
  /** The adapted projections (attn_q, …), or the base tensor's name for anything outside blk.N. */
  targets: string[];
  /** The block positions adapted, ascending. */
  positions: number[];
  pairs: number;
  parameters: number;
  tensors: number;
  tensorTypes: string[];
  /** Tensors that are not half of a complete .lora_a/.lora_b pair (none in a well-formed file). */
  unpaired: string[];
}

export function adapterInfo(path: string, file: GgufFile): AdapterInfo {
  const adapterType = metaString(file, 'adapter.type', '');
  if (adapterType !== 'lora') throw new Error(`${path}: an adapter of type '${adapterType || 'missing'}' (adapter.type); stlm reads LoRA adapters only`);
  const alpha = metaNumber(file, 'adapter.lora.alpha', 0);
  const halves = new Map<string, { a?: number[]; b?: number[] }>();
  const unpaired: string[] = [];
  for (const t of file.tensors) {
    const m = /^(.*)\.lora_([ab])$/.exec(t.name);
    if (!m) unpaired.push(t.name);
    else halves.set(m[1], { ...halves.get(m[1]), [m[2]]: t.shape });
  }
  const ranks = new Set<number>(), targets = new Set<string>(), positions = new Set<number>();
  let pairs = 0, parameters = 0;
  for (const [base, { a, b }] of halves) {
    if (!a || !b) {
      unpaired.push(`${base}.lora_${a ? 'a' : 'b'}`);
      continue;
    }
    pairs++;
    // ne: A [in, r], B [r, out]; llama.cpp takes the rank from B.
    ranks.add(b[0]);
    parameters += elementCount(a) + elementCount(b);
    const block = /^blk\.(\d+)\.(.+)\.weight$/.exec(base);
    if (block) positions.add(Number(block[1]));
    targets.add(block ? block[2] : base);
  }
  const sortedRanks = [...ranks].sort((x, y) => x - y);
  return {
    file: path, format: `GGUF v${file.version}`, bytes: sizeOf(path), name: metaString(file, 'general.name', ''), type: 'adapter', adapterType,
    architecture: metaString(file, 'general.architecture', ''), alpha, ranks: sortedRanks, scales: sortedRanks.map((r) => loraScale(alpha, r)),
    targets: [...targets], positions: [...positions].sort((x, y) => x - y), pairs, parameters,
    tensors: file.tensors.length, tensorTypes: [...new Set(file.tensors.map((t) => ggmlTypeName(t.type)))], unpaired,
  };
}

function printAdapterInfo(path: string, file: GgufFile, json: boolean): void {
  const a = adapterInfo(path, file);
  if (json) return writeJson(a);
  const ranks = a.ranks.map((r, i) => `${r} (scale alpha/rank = ${a.scales[i]})`).join(', ');
  const lines = [
    `${path}: ${a.format}, ${count(a.bytes)} bytes`,
    `adapter:    LoRA for a ${a.architecture || 'unknown'} model (apply it with stlm merge <base> ${path} <out.gguf>)`,
    `alpha:      ${a.alpha}, rank${a.ranks.length > 1 ? 's' : ''} ${ranks || 'none'}`,
    `targets:    ${a.targets.join(', ') || 'none'}`,
    `positions:  ${a.positions.length ? `blocks ${formatRanges(a.positions)}` : 'none'}`,
    `pairs:      ${a.pairs} (A and B per adapted tensor), ${count(a.parameters)} parameters`,
    `tensors:    ${a.tensors} (${a.tensorTypes.join(', ')})`,
    ...(a.unpaired.length ? [`unpaired:   ${a.unpaired.join(', ')} (not part of a .lora_a/.lora_b pair)`] : []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'. */
function formatRanges(sorted: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

function writeJson(x: unknown): void {
  process.stdout.write(JSON.stringify(x, null, 1) + '\n');
}

/** A file's size, or the total of a directory's files (a Hugging Face export). */
function sizeOf(path: string): number {
  const s = statSync(path);
  return s.isDirectory() ? readdirSync(path).reduce((n, f) => n + statSync(join(path, f)).size, 0) : s.size;
}

/** The parsed header of a GGUF file; undefined for anything else (a directory, another format, a missing path: loadModel names those). */
async function ggufHeaderOf(path: string): Promise<GgufFile | undefined> {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    return undefined;
  }
  if (!isFile) return undefined;
  const magic = new Uint8Array(4);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, magic, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  return String.fromCharCode(...magic) === 'GGUF' ? readGgufHeader(path) : undefined;
}
