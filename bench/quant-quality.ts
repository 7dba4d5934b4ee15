/**
 * What quantization costs in quality: bits per byte of the embedded model and stories260K in F32 and
 * quantized by `stlm quantize` (Q8_0, Q4_0, Q4_K), on tinyshakespeare's validation split (last 10%) and
 * the TinyStories validation subset. Quantized files run from their quantized weights.
 *
 *   npm run bench -- quant-quality [--windows N] [--types q8_0,q4_0,q4_k] [--json]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateBpb } from '../src/eval/bpb.js';
import { createBackend } from '../src/kernels/index.js';
import { loadModel } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { splitTrainVal } from '../src/train/data.js';
import { arg } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = join(ROOT, '../shared/fixtures');
const CLI = join(ROOT, 'dist/src/cli/index.js');
const OUT = join(ROOT, 'bench-results/quant-quality');

interface Row {
  model: string;
  data: string;
  type: string;
  bpb: number;
  delta: number;
  file_mb: number;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--types', '--windows'];

export async function main(argv: string[]): Promise<void> {
  const windows = Number(arg(argv, '--windows', '0')) || undefined;
  const types = arg(argv, '--types', 'q8_0,q4_0,q4_k').split(',');
  const models = [
    { name: 'embedded (tiny, 0.89M)', path: join(ROOT, 'models/default.gguf') },
    { name: 'stories260K', path: join(FIXTURES, 'models/stories260K/stories260K.bin') },
  ];
  const texts = [
    { name: 'tinyshakespeare val', bytes: () => splitTrainVal(new Uint8Array(readFileSync(join(FIXTURES, 'corpora/tinyshakespeare/input.txt')))).val },
    { name: 'TinyStories subset', bytes: () => new Uint8Array(readFileSync(join(FIXTURES, 'corpora/tinystories/tinystories_val_subset.txt'))) },
  ];
  if (!models.every((m) => existsSync(m.path))) throw new Error(`needs ../shared/fixtures beside the project and models/default.gguf (${FIXTURES})`);
  mkdirSync(OUT, { recursive: true });
  const be = await createBackend('wasm');
  const rows: Row[] = [];
  try {
    for (const model of models) {
      const files: [string, string][] = [['f32', model.path]];
      for (const t of types) {
        const out = join(OUT, `${model.name.split(' ')[0]}-${t}.gguf`);
        execFileSync(process.execPath, [CLI, 'quantize', model.path, out, '--type', t], { stdio: ['ignore', 'ignore', 'inherit'] });
        files.push([t, out]);
      }
      for (const text of texts) {
        let base = NaN;
        for (const [type, path] of files) {
          const m = await loadModel(path, { keepQuantized: true });
          const ids = m.tokenizer.encode(new TextDecoder().decode(text.bytes()));
          const tokenBytes = Int32Array.from({ length: m.config.vocabSize }, (_, id) => m.tokenizer.tokenBytes(id).length);
          const g = new Graph(be);
          const llama = Llama.fromModel(g, m);
          const seqLen = Math.min(256, m.config.ctx);
          const bpb = evaluateBpb(llama, ids, { batch: 8, seqLen, tokenBytes, maxWindows: windows }).bpb;
          for (const q of llama.quantized.values()) q.dispose();
          g.release();
          if (type === 'f32') base = bpb;
          const row = { model: model.name, data: text.name, type, bpb, delta: bpb - base, file_mb: readFileSync(path).length / 1e6 };
          rows.push(row);
          console.error(`${row.model} | ${row.data} | ${type} | ${bpb.toFixed(4)} bits/byte | ${type === 'f32' ? '' : `${row.delta >= 0 ? '+' : ''}${row.delta.toFixed(4)}`}`);
        }
      }
    }
  } finally {
    be.dispose();
  }
  if (argv.includes('--json')) {
    for (const r of rows) console.log(JSON.stringify(r));
    return;
  }
  console.log('| model | text | type | file MB | bits/byte | change |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.model} | ${r.data} | ${r.type} | ${r.file_mb.toFixed(2)} | ${r.bpb.toFixed(4)} | ${r.type === 'f32' ? '' : (r.delta >= 0 ? '+' : '') + r.delta.toFixed(4)} |`);
}
