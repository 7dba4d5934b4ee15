/**
 * Ablations of the STLM techniques against the plain byte-level model, same data, same steps, same seed
 * (tinyshakespeare, first 90% train, validation bits per byte on the last 10%):
 *   sharing:  FFN shared across layers, blocks repeated (MobileLLM), each with and without per-position
 *             LoRA adapters on the shared weights, vs plain models of similar parameter count or depth:
 *             bits/byte against parameters;
 *   dropout:  none, constant, linear ramp-up, triangular;
 *   distill:  a student alone vs the same student distilled from the embedded model (the teacher), by
 *             its logits (KL at a temperature) or by its text (sequence-level: trained on the real text
 *             plus a corpus sampled from the teacher, as when only a remote tier's text is available).
 *
 *   npm run bench -- stlm-ablations [--study sharing|dropout|distill|all] [--only <text in the variant name>]
 *     [--steps N] [--seeds 1,2,3] [--threads N] [--json]
 *
 * With several seeds (init, data order and dropout all follow the seed) each variant runs once per seed
 * and the table gives the mean and the spread (sample standard deviation) of validation bits/byte.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { type LlamaConfig, PRESETS, effectiveDepth, parameterCount } from '../src/models/config.js';
import { byteVocab, loadModel } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import type { DropoutSchedule } from '../src/train/schedule.js';
import { splitTrainVal } from '../src/train/data.js';
import { LocalTeacher, synthesizeCorpus } from '../src/train/synth.js';
import { type DistillOptions, train } from '../src/train/trainer.js';
import { arg } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CORPUS = join(ROOT, '../shared/fixtures/corpora/tinyshakespeare/input.txt');
const TEACHER = join(ROOT, 'models/default.gguf');

interface Variant {
  study: string;
  name: string;
  config: LlamaConfig;
  dropoutSchedule?: DropoutSchedule;
  distill?: () => Promise<DistillOptions>;
  /** Text added to the training split (the validation split stays the real one). */
  extraText?: () => Promise<Uint8Array>;
}

/** Bytes of teacher text sampled for the sequence-level distillation variant (cached in bench-results/). */
const SYNTH_BYTES = 300_000;

interface Result {
  study: string;
  variant: string;
  params: number;
  depth: number;
  steps: number;
  val_bpb: number;
  seconds: number;
  seed: number;
}

function variants(be: Backend): Variant[] {
  const tiny = PRESETS.tiny;
  const teacher = async (): Promise<DistillOptions> => {
    const t = await loadModel(TEACHER, { keepQuantized: true });
    return { teacher: Llama.fromModel(new Graph(be), t), temperature: 2, weight: 0.5 };
  };
  const student: LlamaConfig = { ...tiny, dModel: 64, nHeads: 4, nKvHeads: 4, mlpHidden: 192, nLayers: 2 };
  const teacherText = async (): Promise<Uint8Array> => {
    const file = join(ROOT, 'bench-results', `synth-embedded-${SYNTH_BYTES}.txt`);
    if (!existsSync(file)) {
      const seedText = new TextDecoder().decode(splitTrainVal(new Uint8Array(readFileSync(CORPUS))).train);
      const teacher = new LocalTeacher(await loadModel(TEACHER, { keepQuantized: true }), be, 'embedded model');
      const t0 = performance.now();
      const r = await synthesizeCorpus(teacher, { bytes: SYNTH_BYTES, seedText, maxTokens: 256, temperature: 1, seed: 1 });
      teacher.close?.();
      console.error(`sampled ${r.bytes.toLocaleString('en-US')} bytes of teacher text (${r.samples} samples) in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      writeFileSync(file, r.text);
    }
    return new Uint8Array(readFileSync(file));
  };
  return [
    { study: 'sharing', name: 'plain tiny (4 layers)', config: tiny },
    { study: 'sharing', name: 'tiny, FFN shared by 4 layers', config: { ...tiny, shareFfn: true } },
    { study: 'sharing', name: 'plain 2 layers', config: { ...tiny, nLayers: 2 } },
    { study: 'sharing', name: '2 layers, each run twice (4 deep)', config: { ...tiny, nLayers: 2, blockRepeat: 2 } },
    { study: 'sharing', name: '2 layers run twice, FFN shared', config: { ...tiny, nLayers: 2, blockRepeat: 2, shareFfn: true } },
    { study: 'sharing', name: 'tiny, FFN shared + per-position LoRA r8', config: { ...tiny, shareFfn: true, sharedLoraRank: 8 } },
    { study: 'sharing', name: '2 layers run twice + per-position LoRA r8', config: { ...tiny, nLayers: 2, blockRepeat: 2, sharedLoraRank: 8 } },
    { study: 'dropout', name: 'no dropout', config: tiny },
    { study: 'dropout', name: 'dropout 0.1 constant', config: { ...tiny, dropout: 0.1 }, dropoutSchedule: 'constant' },
    { study: 'dropout', name: 'dropout 0.1 linear ramp-up', config: { ...tiny, dropout: 0.1 }, dropoutSchedule: 'linear' },
    { study: 'dropout', name: 'dropout 0.1 triangular', config: { ...tiny, dropout: 0.1 }, dropoutSchedule: 'triangular' },
    { study: 'distill', name: 'student alone (d 64, 2 layers)', config: student },
    { study: 'distill', name: 'student distilled from the embedded model (w 0.5, T 2)', config: student, distill: teacher },
    { study: 'distill', name: `student on real + ${SYNTH_BYTES / 1000} KB of teacher-sampled text`, config: student, extraText: teacherText },
  ];
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--only', '--seeds', '--steps', '--study', '--threads'];

export async function main(argv: string[]): Promise<void> {
  if (!existsSync(CORPUS)) throw new Error(`needs ../shared/fixtures beside the project (${CORPUS})`);
  const study = arg(argv, '--study', 'all');
  const steps = Number(arg(argv, '--steps', '300'));
  const threads = Number(arg(argv, '--threads', '2'));
  const seeds = arg(argv, '--seeds', '1').split(',').map(Number);
  if (!seeds.every((x) => Number.isInteger(x) && x >= 0)) throw new Error(`--seeds: a comma-separated list of integers, got '${arg(argv, '--seeds', '1')}'`);
  const be = await createBackend('wasm', { threads });
  const tokens = new Uint8Array(readFileSync(CORPUS));
  const results: Result[] = [];
  try {
    const only = arg(argv, '--only', '');
    for (const v of variants(be).filter((x) => (study === 'all' || x.study === study) && x.name.includes(only))) {
      for (const seed of seeds) {
        const t0 = performance.now();
        // With extra text, the split is made here so that validation stays the real corpus's last 10%.
        const split = v.extraText ? splitTrainVal(tokens) : undefined;
        const extra = v.extraText ? await v.extraText() : undefined;
        const r = await train(be, {
          tokens: split ? concatBytes(split.train, extra!) : tokens, valTokens: split?.val, config: v.config, checkpointPath: join(ROOT, 'bench-results', `ablation-${results.length}.ckpt`), steps, batch: 16, seqLen: 128,
          lr: 2e-3, minLr: 2e-4, warmup: 30, weightDecay: 0.1, clip: 1, accum: 1, seed, evalEvery: 0, evalWindows: 1, saveEvery: 0, resume: false,
          vocab: byteVocab(), dropoutSchedule: v.dropoutSchedule, distill: v.distill ? await v.distill() : undefined,
        });
        const res = { study: v.study, variant: v.name, params: parameterCount(v.config), depth: effectiveDepth(v.config), steps, val_bpb: r.finalValBpb, seconds: (performance.now() - t0) / 1000, seed };
        results.push(res);
        if (argv.includes('--json')) console.log(JSON.stringify(res)); // as it comes: a long run interrupted keeps its rows
        console.error(`${res.study} | ${res.variant} | seed ${seed} | ${res.params.toLocaleString('en-US')} params | depth ${res.depth} | ${res.val_bpb.toFixed(4)} bits/byte | ${res.seconds.toFixed(0)} s`);
      }
    }
  } finally {
    be.dispose();
  }
  if (argv.includes('--json')) return;
  console.log(`| study | variant | parameters | depth | val bits/byte (mean${seeds.length > 1 ? ` ± sd over ${seeds.length} seeds` : ''}) | per seed | wall s (mean) |`);
  console.log('|---|---|---|---|---|---|---|');
  const byVariant = new Map<string, Result[]>();
  for (const r of results) byVariant.set(`${r.study}/${r.variant}`, [...(byVariant.get(`${r.study}/${r.variant}`) ?? []), r]);
  for (const rs of byVariant.values()) {
    const bpb = rs.map((r) => r.val_bpb), mean = bpb.reduce((a, b) => a + b, 0) / bpb.length;
    const sd = bpb.length > 1 ? Math.sqrt(bpb.reduce((a, b) => a + (b - mean) ** 2, 0) / (bpb.length - 1)) : 0;
    const secs = rs.reduce((a, r) => a + r.seconds, 0) / rs.length, r = rs[0];
    console.log(`| ${r.study} | ${r.variant} | ${r.params.toLocaleString('en-US')} | ${r.depth} | ${mean.toFixed(4)}${bpb.length > 1 ? ` ± ${sd.toFixed(4)}` : ''} | ${bpb.map((x) => x.toFixed(4)).join(', ')} | ${secs.toFixed(0)} |`);
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
