/**
 * Fine-tuning on prompt/completion examples: full (every parameter) or LoRA (adapters on a frozen
 * base; only they have gradients and optimizer moments). Shuffled epochs of padded batches -> loss on
 * the completion tokens only -> backward -> AdamW with clipping, warmup + cosine. Seeded: the same
 * seed, data, backend and thread count give the same run.
 */
import type { LlamaConfig } from '../models/config.js';
import { kvCacheFor, type KvCache, Llama } from '../models/llama.js';
import { LoraAdapters, type LoraOptions, initLora } from '../models/lora.js';
import { type Graph, NonFiniteError } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { AdamW } from './adamw.js';
import { type TokenizedExample, completionBatch, paddedLength } from './jsonl.js';
import { learningRate } from './schedule.js';

/** Peak learning rates that work out of the box: adapters start at zero and need larger steps. */
export const DEFAULT_FINETUNE_LR = { full: 1e-4, lora: 1e-3 } as const;

export interface FinetuneOptions {
  /** Train LoRA adapters with these options; absent, fine-tune every parameter. */
  lora?: LoraOptions;
  train: readonly TokenizedExample[];
  /** Held-out examples, evaluated before and after training. */
  test?: readonly TokenizedExample[];
  /** Optimizer steps; otherwise `epochs` passes over the data (default 1). */
  steps?: number;
  epochs?: number;
  /** Examples per step. */
  batch: number;
  lr: number;
  /** Final learning rate of the cosine (default lr/10). */
  minLr?: number;
  /** Warmup steps (default a tenth of the run, at most 100). */
  warmup?: number;
  weightDecay: number;
  /** Clip the global gradient norm (0 = off). */
  clip: number;
  /** Seeds the data order (and the adapters' init unless lora.seed says otherwise). */
  seed: number;
  /** The id padding rows are filled with (targets there are ignored). */
  padId: number;
  /** Skip the evaluation of the untrained model (default: evaluate it when there is a test set). */
  skipEvalBefore?: boolean;
  onStep?: (s: FinetuneStep) => void;
  log?: (line: string) => void;
}

export interface FinetuneStep {
  step: number;
  totalSteps: number;
  epoch: number;
  /** Mean cross-entropy (nats) of this step's completion tokens. */
  loss: number;
  lr: number;
  gradNorm: number;
  elapsedSeconds: number;
}

/** How well a model produces the completions, with teacher forcing. */
export interface CompletionEval {
  /** Mean cross-entropy (nats) per completion token. */
  loss: number;
  /** Fraction of completion tokens that are the model's argmax. */
  tokenAccuracy: number;
  /** Fraction of examples whose every completion token is the argmax (greedy decoding reproduces it). */
  exactMatch: number;
  examples: number;
  tokens: number;
}

export interface FinetuneResult {
  model: Llama;
  /** The trained adapters (LoRA), or null (full fine-tuning). */
  adapters: LoraAdapters | null;
  steps: number;
  losses: number[];
  before?: CompletionEval;
  after?: CompletionEval;
  seconds: number;
}

/** Shuffled passes over n examples, `batch` at a time (the last batch of an epoch may be smaller). */
export class EpochBatcher {
  private order: number[] = [];
  private at = 0;
  epoch = 0;

  constructor(
    readonly n: number,
    readonly batch: number,
    private readonly rng: Rng,
  ) {
    if (n < 1) throw new Error('fine-tune: no training examples');
    if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`fine-tune: batch must be a positive integer, got ${batch}`);
  }

  get stepsPerEpoch(): number {
    return Math.ceil(this.n / this.batch);
  }

  /** The indices of the next batch. */
  next(): number[] {
    if (this.at >= this.order.length) {
      this.order = Array.from({ length: this.n }, (_, i) => i);
      for (let i = this.n - 1; i > 0; i--) {
        const j = this.rng.int(i + 1);
        [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
      }
      this.at = 0;
      this.epoch++;
    }
    const out = this.order.slice(this.at, this.at + this.batch);
    this.at += out.length;
    return out;
  }
}

/** Fine-tunes a model built from `base` (f32 weights); returns it with its adapters, loss curve and test scores. */
export function finetune(graph: Graph, base: { config: LlamaConfig; weights: Map<string, Float32Array> }, o: FinetuneOptions): FinetuneResult {
  const log = o.log ?? (() => {});
  const lora = o.lora;
  const model = new Llama(graph, base.config, base.weights, o.seed, !lora);
  let adapters: LoraAdapters | null = null;
  if (lora) {
    adapters = new LoraAdapters(graph, base.config, initLora(base.config, lora));
    model.adapters = adapters;
  }
  const params = adapters ? adapters.params() : [...model.params.values()];
  // Adapters are all matrices; in full fine-tuning norm gains are not decayed (as in pre-training).
  const opt = new AdamW(params, (t) => (adapters ? true : model.decayed(t)), { weightDecay: o.weightDecay, clip: o.clip });
  const batcher = new EpochBatcher(o.train.length, o.batch, new Rng(o.seed));
  const totalSteps = o.steps ?? (o.epochs ?? 1) * batcher.stepsPerEpoch;
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) throw new Error(`fine-tune: the run must have at least one step, got ${totalSteps}`);
  const warmup = o.warmup ?? Math.min(100, Math.floor(totalSteps / 10));
  const minLr = o.minLr ?? o.lr / 10;
  const trainable = params.reduce((s, p) => s + p.size, 0);
  log(`fine-tune: ${lora ? `LoRA rank ${lora.rank}, alpha ${lora.alpha} on ${lora.targets.join(',')}` : 'full'}: ${trainable.toLocaleString('en-US')} trainable parameters; ${o.train.length} examples, batch ${o.batch}, ${totalSteps} steps (${(totalSteps / batcher.stepsPerEpoch).toFixed(2)} epochs), lr ${o.lr}`);

  const before = o.test?.length && !o.skipEvalBefore ? evaluateCompletions(model, o.test, o.padId) : undefined;
  if (before) log(`test before: ${describeEval(before)}`);

  const t0 = performance.now();
  const losses: number[] = [];
  for (let step = 0; step < totalSteps; step++) {
    graph.step = step;
    graph.zeroGrad(params);
    // Fixed rows (an epoch's last, short batch gets empty rows) and bucketed lengths: few batch shapes.
    const b = completionBatch(batcher.next().map((i) => o.train[i]), { padId: o.padId, ctx: base.config.ctx, rows: Math.min(o.batch, o.train.length) });
    const lr = learningRate(step, { lr: o.lr, minLr, warmup, totalSteps });
    const lossT = model.loss(b.ids, b.targets, b.batch);
    const loss = lossT.item();
    if (!Number.isFinite(loss)) throw new NonFiniteError('the loss', step, 'forward');
    graph.backward(lossT);
    graph.release();
    const gradNorm = opt.update(lr);
    losses.push(loss);
    o.onStep?.({ step: step + 1, totalSteps, epoch: batcher.epoch, loss, lr, gradNorm, elapsedSeconds: (performance.now() - t0) / 1000 });
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = o.test?.length ? evaluateCompletions(model, o.test, o.padId) : undefined;
  if (after) log(`test after:  ${describeEval(after)}`);
  return { model, adapters, steps: totalSteps, losses, before, after, seconds };
}

/**
 * One example scored with teacher forcing: log p of its completion, and how many tokens are the argmax.
 * The input is right-padded to paddedLength (causal: the real positions are unchanged) so that scoring
 * many examples allocates few distinct buffer sizes. `cache` must hold that many positions.
 */
export function scoreExample(model: Llama, cache: KvCache, ex: TokenizedExample, padId = 0): { logProb: number; tokens: number; correct: number } {
  const n = ex.tokens.length, V = model.config.vocabSize, g = model.graph;
  const input = new Int32Array(paddedLength(n - 1, cache.capacity)).fill(padId);
  input.set(ex.tokens.subarray(0, n - 1));
  cache.reset();
  const logits = model.forward(input, cache, false).toArray();
  g.release();
  let logProb = 0, correct = 0;
  for (let t = ex.promptLength - 1; t < n - 1; t++) {
    const row = logits.subarray(t * V, (t + 1) * V), target = ex.tokens[t + 1];
    let best = 0;
    for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(row[j] - row[best]);
    logProb += row[target] - row[best] - Math.log(s);
    if (best === target) correct++;
  }
  return { logProb, tokens: n - ex.promptLength, correct };
}

/** Loss and accuracy of the completions (inference passes, no tape). */
export function evaluateCompletions(model: Llama, examples: readonly TokenizedExample[], padId = 0): CompletionEval {
  const longest = Math.max(...examples.map((e) => e.tokens.length - 1));
  const cache = kvCacheFor(model.graph, model.config, paddedLength(longest, model.config.ctx));
  let nats = 0, tokens = 0, correct = 0, exact = 0;
  try {
    for (const ex of examples) {
      const s = scoreExample(model, cache, ex, padId);
      nats -= s.logProb;
      tokens += s.tokens;
      correct += s.correct;
      if (s.correct === s.tokens) exact++;
    }
  } finally {
    cache.dispose();
  }
  return { loss: nats / tokens, tokenAccuracy: correct / tokens, exactMatch: exact / examples.length, examples: examples.length, tokens };
}

export function describeEval(e: CompletionEval): string {
  return `loss ${e.loss.toFixed(4)} nats/token, token accuracy ${(100 * e.tokenAccuracy).toFixed(1)}%, exact match ${(100 * e.exactMatch).toFixed(1)}% (${e.examples} examples)`;
}
