/**
 * Proves the Hugging Face export against PyTorch: random-weight stlm Llamas (GQA, tied and untied) are
 * exported with exportHf, bench/torch_llama.py (an HF-style Llama forward in plain PyTorch: rotate_half
 * RoPE, repeated kv heads) computes logits from the exported directory, and stlm computes them from its
 * own weights. The largest |difference| must be under 1e-4. Then importHf must give back the weights
 * bit for bit (F32) or exactly their f16/bf16 roundings. As a check that the comparison can fail, one
 * export skips the q/k row permutation: its difference must be large.
 *
 *   npm run bench -- torch-logits [--tokens 32] [--dtypes F32,F16,BF16] [--threads 1] [--keep]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../src/formats/gguf.js';
import { exportHf, importHf, permuteQkHfToGguf } from '../src/io/hf-llama.js';
import type { SafetensorsFloatDtype } from '../src/formats/safetensors.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { type LlamaConfig, PRESETS, parameterShapes } from '../src/models/config.js';
import { kvCacheFor, Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { Rng } from '../src/util/rng.js';
import { PY, arg, ensureTorch } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'bench', 'torch_llama.py');
const TOLERANCE = 1e-4;

/** The models compared: the tiny preset with grouped-query attention, tied and untied. */
const CASES: { label: string; config: LlamaConfig }[] = [
  { label: 'tiny, 4 heads / 2 kv, tied', config: { ...PRESETS.tiny, nHeads: 4, nKvHeads: 2 } },
  { label: 'tiny, 8 heads / 2 kv, untied', config: { ...PRESETS.tiny, nHeads: 8, nKvHeads: 2, tieEmbeddings: false } },
];

/**
 * Random weights large enough that a layout mistake shows: matrices N(0, 1/in) (q and k twice that
 * scale, so attention is far from uniform and RoPE matters), norm gains 1 + N(0, 0.1²), embedding
 * N(0, 0.2²) (so that tied logits stay around ±15, where f32 rounding is well under the tolerance).
 */
function randomWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of parameterShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const w = new Float32Array(n);
    const std = shape.length === 1 ? 0.1 : name === 'token_embd.weight' ? 0.2 : (/attn_[qk]\./.test(name) ? 2 : 1) / Math.sqrt(shape[1]);
    for (let i = 0; i < n; i++) w[i] = (shape.length === 1 ? 1 : 0) + std * rng.normal();
    weights.set(name, w);
  }
  return weights;
}

/** stlm's logits [ids.length · vocab] for one sequence from position 0. */
function stlmLogits(be: Backend, config: LlamaConfig, weights: Map<string, Float32Array>, ids: Int32Array): Float32Array {
  const g = new Graph(be);
  const model = new Llama(g, config, weights);
  const cache = kvCacheFor(g, config, ids.length);
  const logits = model.forward(ids, cache, false).toArray();
  g.release();
  cache.dispose();
  return logits;
}

/** bench/torch_llama.py's logits for the exported directory, flattened. */
function torchLogits(dir: string, idsFile: string, dtype: 'float32' | 'float64'): Float64Array {
  const r = spawnSync(PY, [SCRIPT, dir, '--ids-file', idsFile, '--dtype', dtype], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20, env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  if (r.status !== 0) throw new Error(`${SCRIPT} failed (exit ${r.status})`);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { logits: number[][] };
  return Float64Array.from(out.logits.flat());
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`logit counts differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const maxAbs = (a: ArrayLike<number>): number => maxAbsDiff(a, new Float64Array(a.length));

/** What importHf must return for weights stored in `dtype`: the values themselves or their roundings. */
function storedValues(w: Float32Array, dtype: SafetensorsFloatDtype): Float32Array {
  if (dtype === 'F16') return decodeF16(encodeF16(w), w.length);
  if (dtype === 'BF16') return decodeBf16(encodeBf16(w), w.length);
  return w;
}

const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** importHf gives back exactly what was stored: the names of what differs (none), and the weights read. */
async function checkImport(dir: string, config: LlamaConfig, weights: Map<string, Float32Array>, dtype: SafetensorsFloatDtype): Promise<{ bad: string[]; imported: Map<string, Float32Array> }> {
  const back = await importHf(dir);
  const bad: string[] = [];
  const expected: LlamaConfig = { ...config, dropout: 0 };
  if ((Object.keys(expected) as (keyof LlamaConfig)[]).some((k) => back.config[k] !== expected[k])) bad.push('config');
  for (const [name, w] of weights) if (!sameBits(back.weights.get(name) ?? new Float32Array(), storedValues(w, dtype))) bad.push(name);
  return { bad, imported: back.weights };
}

/** Our weights with q/k rows already in HF order, so exportHf's permutation undoes it: a wrong export. */
function withoutQkPermutation(config: LlamaConfig, weights: Map<string, Float32Array>): Map<string, Float32Array> {
  const out = new Map(weights);
  for (const [name, w] of weights) {
    if (/attn_q\./.test(name)) out.set(name, permuteQkHfToGguf(w, config.nHeads, config.dModel));
    if (/attn_k\./.test(name)) out.set(name, permuteQkHfToGguf(w, config.nKvHeads, config.dModel));
  }
  return out;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--dtypes', '--keep', '--threads', '--tokens'];

export async function main(argv: string[]): Promise<void> {
  const tokens = Number(arg(argv, '--tokens', '32'));
  const dtypes = arg(argv, '--dtypes', 'F32,F16,BF16').split(',') as SafetensorsFloatDtype[];
  const threads = Number(arg(argv, '--threads', '1'));
  ensureTorch();
  const be = await createWasmBackend({ threads });
  const root = mkdtempSync(join(tmpdir(), 'stlm-torch-logits-'));
  let failed = false;
  const row = (cells: string[]) => console.log(cells.map((c, i) => c.padEnd([30, 6, 8, 14, 11, 0][i])).join(' | '));
  try {
    row(['model', 'stored', 'torch', 'max |Δ logit|', 'max |logit|', 'result']);
    for (const [ci, { label, config }] of CASES.entries()) {
      const weights = randomWeights(config, 100 + ci);
      const rng = new Rng(7 + ci);
      const ids = Int32Array.from({ length: tokens }, () => rng.int(config.vocabSize));
      const idsFile = join(root, `ids-${ci}.json`);
      writeFileSync(idsFile, JSON.stringify([...ids]));
      for (const dtype of dtypes) {
        const dir = join(root, `case${ci}-${dtype}`);
        await exportHf(config, weights, dir, { dtype, tokenIds: { bosTokenId: 256, eosTokenId: 257, padTokenId: 258 } });
        const { bad, imported } = await checkImport(dir, config, weights, dtype);
        // stlm runs on the weights as stored, so F16/BF16 rows compare the same rounded model on both sides.
        const ours = stlmLogits(be, config, imported, ids);
        for (const torchDtype of dtype === 'F32' ? (['float32', 'float64'] as const) : (['float32'] as const)) {
          const diff = maxAbsDiff(ours, torchLogits(dir, idsFile, torchDtype));
          const pass = diff < TOLERANCE;
          failed ||= !pass;
          row([label, dtype, torchDtype, diff.toExponential(2), maxAbs(ours).toFixed(2), pass ? 'PASS' : 'FAIL']);
        }
        const what = dtype === 'F32' ? 'bit-identical to the originals' : `exactly the ${dtype} roundings of the originals`;
        console.log(`  importHf(${dtype}): ${bad.length ? `FAIL, differ: ${bad.join(', ')}` : `PASS, ${weights.size} tensors ${what}`}`);
        failed ||= bad.length > 0;
      }
      const wrongDir = join(root, `case${ci}-unpermuted`);
      await exportHf(config, withoutQkPermutation(config, weights), wrongDir);
      const wrong = maxAbsDiff(stlmLogits(be, config, weights, ids), torchLogits(wrongDir, idsFile, 'float32'));
      const sensitive = wrong > 1e-2;
      failed ||= !sensitive;
      console.log(`  control, export without the q/k permutation: max |Δ logit| ${wrong.toExponential(2)} ${sensitive ? '(large, as it must be: PASS)' : '(small: the comparison cannot see RoPE layout errors, FAIL)'}`);
    }
  } finally {
    be.dispose();
    if (argv.includes('--keep')) console.log(`exports kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
  console.log(failed ? 'torch-logits: FAIL' : `torch-logits: PASS (every max |Δ logit| < ${TOLERANCE})`);
  if (failed) process.exitCode = 1;
}
