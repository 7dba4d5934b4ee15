/**
 * Fine-tuning on a real small task: BLiMP acceptability as prompt/completion. Each minimal pair gives
 * two examples, "<sentence>\nGrammatical?" -> " yes" (the good sentence) and " no" (the bad one); pairs
 * are split train/test per paradigm (never one pair on both sides). The embedded model is scored before
 * and after full fine-tuning and LoRA:
 *   - sentence accuracy: log p(" yes") > log p(" no") for the good sentence and the reverse for the bad
 *     one (balanced labels, chance 50%);
 *   - pair accuracy: the good sentence gets the larger yes-minus-no margin of its pair (chance 50%; free
 *     of the yes/no bias an untrained model has);
 *   - for reference, the base model's zero-shot BLiMP score on the same test pairs: log p(good) > log p(bad).
 *
 *   npm run bench -- finetune-blimp [--paradigms a,b,...] [--train-pairs 400] [--test-pairs 100]
 *     [--epochs 2] [--batch 16] [--threads 2] [--json]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBackend } from '../src/kernels/index.js';
import type { Backend } from '../src/kernels/backend.js';
import { type LoadedModel, loadModel } from '../src/io/model-file.js';
import { kvCacheFor, type KvCache, Llama } from '../src/models/llama.js';
import { DEFAULT_LORA_TARGETS, type LoraOptions } from '../src/models/lora.js';
import { Graph } from '../src/tensor/tensor.js';
import { DEFAULT_FINETUNE_LR, finetune } from '../src/train/finetune.js';
import { type CompletionExample, paddedLength, tokenizeExamples } from '../src/train/jsonl.js';
import { Rng } from '../src/util/rng.js';
import { arg } from './lib/torch.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BLIMP = join(ROOT, '../shared/fixtures/eval/blimp-dev');
/** Local, mostly morphological agreement phenomena: the kind a 0.9M-parameter byte model might pick up. */
const DEFAULT_PARADIGMS = ['determiner_noun_agreement_1', 'regular_plural_subject_verb_agreement_1', 'anaphor_gender_agreement', 'irregular_past_participle_verbs'];
const QUESTION = '\nGrammatical?';

interface Pair {
  good: string;
  bad: string;
}

interface Scores {
  sentenceAccuracy: number;
  pairAccuracy: number;
  /** Fraction of test sentences the model calls grammatical (shows a yes/no bias). */
  saidYes: number;
}

interface Row {
  method: string;
  steps: number;
  train_seconds: number;
  trainable_params: number;
  before: Scores;
  after: Scores;
}

/** Per paradigm: shuffled pairs, the first `train` for training and the next `test` for testing. */
function splitPairs(paradigms: string[], train: number, test: number, seed: number): { train: Pair[]; test: Pair[] } {
  const out = { train: [] as Pair[], test: [] as Pair[] };
  const rng = new Rng(seed);
  for (const p of paradigms) {
    const pairs = readFileSync(join(BLIMP, `${p}.jsonl`), 'utf8').trim().split('\n').map((l): Pair => {
      const o = JSON.parse(l) as { sentence_good: string; sentence_bad: string };
      return { good: o.sentence_good, bad: o.sentence_bad };
    });
    if (pairs.length < train + test) throw new Error(`${p}: ${pairs.length} pairs, fewer than ${train} + ${test}`);
    for (let i = pairs.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [pairs[i], pairs[j]] = [pairs[j], pairs[i]];
    }
    out.train.push(...pairs.slice(0, train));
    out.test.push(...pairs.slice(train, train + test));
  }
  return out;
}

const asExamples = (pairs: Pair[]): CompletionExample[] =>
  pairs.flatMap((p, i) => [
    { prompt: p.good + QUESTION, completion: ' yes', line: 2 * i + 1 },
    { prompt: p.bad + QUESTION, completion: ' no', line: 2 * i + 2 },
  ]);

/**
 * log p of each completion (with EOS) after `prompt`: the prompt runs once, each completion continues
 * from its cached keys and values. The prompt is right-padded to a few lengths (paddedLength) so that
 * scoring thousands of sentences allocates few distinct buffer sizes; causal attention keeps its real
 * positions exact, and the completions overwrite the padding's cache entries.
 */
function completionLogProbs(model: Llama, cache: KvCache, prompt: Int32Array, completions: Int32Array[], padId: number): number[] {
  const g = model.graph, V = model.config.vocabSize;
  const padded = new Int32Array(paddedLength(prompt.length, cache.capacity)).fill(padId);
  padded.set(prompt);
  cache.reset();
  const first = model.forward(padded, cache, false).toArray().slice((prompt.length - 1) * V, prompt.length * V);
  g.release();
  const logSoftmax = (row: Float32Array, id: number) => {
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let s = 0;
    for (const x of row) s += Math.exp(x - max);
    return row[id] - max - Math.log(s);
  };
  return completions.map((c) => {
    let lp = logSoftmax(first, c[0]);
    if (c.length > 1) {
      cache.length = prompt.length;
      const rows = model.forward(c.subarray(0, c.length - 1), cache, false).toArray();
      g.release();
      for (let t = 1; t < c.length; t++) lp += logSoftmax(rows.subarray((t - 1) * V, t * V), c[t]);
    }
    return lp;
  });
}

function scoreYesNo(model: Llama, m: LoadedModel, pairs: Pair[]): Scores {
  const tok = m.tokenizer, bos = m.vocab.addBos && tok.bos !== null ? [tok.bos] : [];
  const eos = tok.eos !== null ? [tok.eos] : [];
  const yes = Int32Array.from([...tok.encode(' yes'), ...eos]), no = Int32Array.from([...tok.encode(' no'), ...eos]);
  const cache = kvCacheFor(model.graph, model.config);
  let right = 0, pairsRight = 0, saidYes = 0;
  const margin = (s: string) => {
    const [y, n] = completionLogProbs(model, cache, Int32Array.from([...bos, ...tok.encode(s + QUESTION)]), [yes, no], tok.pad ?? 0);
    if (y > n) saidYes++;
    return y - n;
  };
  for (const p of pairs) {
    const [mg, mb] = [margin(p.good), margin(p.bad)];
    right += (mg > 0 ? 1 : 0) + (mb < 0 ? 1 : 0);
    if (mg > mb) pairsRight++;
  }
  cache.dispose();
  return { sentenceAccuracy: right / (2 * pairs.length), pairAccuracy: pairsRight / pairs.length, saidYes: saidYes / (2 * pairs.length) };
}

/** BLiMP's own score: log p(good) > log p(bad), each sentence after BOS. */
function zeroShotBlimp(model: Llama, m: LoadedModel, pairs: Pair[]): number {
  const tok = m.tokenizer;
  const start = Int32Array.of(tok.bos ?? tok.encode(' ')[0]);
  const cache = kvCacheFor(model.graph, model.config);
  let right = 0;
  for (const p of pairs) {
    const [g, b] = [p.good, p.bad].map((s) => completionLogProbs(model, cache, start, [tok.encode(s)], tok.pad ?? 0)[0]);
    if (g > b) right++;
  }
  cache.dispose();
  return right / pairs.length;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--batch', '--epochs', '--json', '--paradigms', '--test-pairs', '--threads', '--train-pairs'];

export async function main(argv: string[]): Promise<void> {
  const paradigms = arg(argv, '--paradigms', DEFAULT_PARADIGMS.join(',')).split(',');
  const trainPairs = Number(arg(argv, '--train-pairs', '400'));
  const testPairs = Number(arg(argv, '--test-pairs', '100'));
  const epochs = Number(arg(argv, '--epochs', '2'));
  const batch = Number(arg(argv, '--batch', '16'));
  const threads = Number(arg(argv, '--threads', '2'));
  const m = await loadModel(join(ROOT, 'models/default.gguf'));
  const split = splitPairs(paradigms, trainPairs, testPairs, 1);
  const enc = (pairs: Pair[], name: string) => tokenizeExamples(asExamples(pairs), m.tokenizer, { ctx: m.config.ctx, bos: m.vocab.addBos ?? false, fileName: name });
  const train = enc(split.train, 'blimp-train');
  const log = (s: string) => console.error(s);
  log(`BLiMP as yes/no completion: ${paradigms.join(', ')}; ${split.train.length} train pairs (${train.length} examples), ${split.test.length} test pairs; load ${readLoad()}`);
  const be: Backend = await createBackend('wasm', { threads });
  const rows: Row[] = [];
  let zeroShot = NaN, before: Scores | undefined;
  try {
    const t0 = performance.now();
    const baseModel = Llama.fromModel(new Graph(be), m);
    zeroShot = zeroShotBlimp(baseModel, m, split.test);
    before = scoreYesNo(baseModel, m, split.test);
    log(`base: zero-shot BLiMP ${pct(zeroShot)}, yes/no ${describe(before)} (${((performance.now() - t0) / 1000).toFixed(1)} s to score)`);
    const runs: { method: string; lr: number; lora?: LoraOptions }[] = [
      { method: 'full fine-tuning', lr: 3 * DEFAULT_FINETUNE_LR.full },
      { method: `LoRA r8 α16 ${DEFAULT_LORA_TARGETS.join('+')}`, lr: DEFAULT_FINETUNE_LR.lora, lora: { rank: 8, alpha: 16, targets: DEFAULT_LORA_TARGETS, seed: 1 } },
      { method: 'LoRA r8 α16 all projections', lr: DEFAULT_FINETUNE_LR.lora, lora: { rank: 8, alpha: 16, targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'], seed: 1 } },
    ];
    for (const run of runs) {
      const g = new Graph(be);
      let lastLog = performance.now();
      const r = finetune(g, m, {
        lora: run.lora, train, epochs, batch, lr: run.lr, weightDecay: 0, clip: 1, seed: 1, padId: m.tokenizer.pad ?? 0,
        onStep: (s) => {
          if (performance.now() - lastLog > 15_000 || s.step === s.totalSteps) {
            lastLog = performance.now();
            log(`  ${run.method}: step ${s.step}/${s.totalSteps}, loss ${s.loss.toFixed(4)}, ${s.elapsedSeconds.toFixed(0)} s`);
          }
        },
      });
      const after = scoreYesNo(r.model, m, split.test);
      const trainable = r.adapters ? r.adapters.params().reduce((s, p) => s + p.size, 0) : [...r.model.params.values()].reduce((s, p) => s + p.size, 0);
      rows.push({ method: run.method, steps: r.steps, train_seconds: r.seconds, trainable_params: trainable, before, after });
      log(`${run.method}: ${r.steps} steps in ${r.seconds.toFixed(1)} s (lr ${run.lr}); ${describe(after)}`);
      g.release();
    }
  } finally {
    be.dispose();
  }
  if (argv.includes('--json')) {
    console.log(JSON.stringify({ paradigms, trainPairs, testPairs, epochs, batch, threads, zeroShot, rows }));
    return;
  }
  console.log(`Base model zero-shot BLiMP (log p(good) > log p(bad)) on the ${split.test.length} test pairs: ${pct(zeroShot)}`);
  console.log('| method | trainable params | steps | train time | sentence acc. before → after | pair acc. before → after | says "yes" after |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.method} | ${r.trainable_params.toLocaleString('en-US')} | ${r.steps} | ${r.train_seconds.toFixed(0)} s | ${pct(r.before.sentenceAccuracy)} → ${pct(r.after.sentenceAccuracy)} | ${pct(r.before.pairAccuracy)} → ${pct(r.after.pairAccuracy)} | ${pct(r.after.saidYes)} |`);
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const describe = (s: Scores) => `sentence accuracy ${pct(s.sentenceAccuracy)}, pair accuracy ${pct(s.pairAccuracy)}, says yes ${pct(s.saidYes)}`;

function readLoad(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}
