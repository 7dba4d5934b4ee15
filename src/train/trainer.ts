/**
 * The training loop, in plain sight: sample windows -> forward -> backward (with accumulation) ->
 * clip -> AdamW with warmup + cosine -> progress, evaluation and atomic checkpoints.
 * Seeded: the same seed, backend and thread count give the same loss curve, and --resume continues it.
 */
import type { Backend } from '../kernels/backend.js';
import { evaluateBpb } from '../eval/bpb.js';
import type { LlamaConfig } from '../models/config.js';
import { Llama } from '../models/llama.js';
import type { TrainableModel } from '../models/model.js';
import * as ops from '../tensor/ops.js';
import { Graph, NonFiniteError, type Tensor } from '../tensor/tensor.js';
import type { VocabSpec } from '../tokenizers/vocab.js';
import { Rng } from '../util/rng.js';
import { AdamW } from './adamw.js';
import { type Checkpoint, checkpointExists, loadCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { accumulateGradients } from './accumulate.js';
import { WindowSampler, splitTrainVal } from './data.js';
import { type MemoryPlan, describePlan, planMemory } from './memory-plan.js';
import { type DropoutSchedule, dropoutRate, learningRate } from './schedule.js';

export interface TrainOptions {
  /** Training tokens (the whole corpus, split train/validation here, unless valTokens is given). */
  tokens: Int32Array | Uint8Array;
  config: LlamaConfig;
  /**
   * Checkpoint path (weights + optimizer + RNG + step). Absent: no checkpoint is written (a browser, which
   * has no files, takes the model from the result) and `resume` is refused.
   */
  checkpointPath?: string;
  steps?: number;
  minutes?: number;
  batch: number;
  seqLen: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  /** Batches of `batch` windows per optimizer step (gradient accumulation). */
  accum: number;
  /**
   * Bytes the backend's memory may reach (default: the backend's own limit, 4 GiB for WebAssembly; none
   * for a backend without one). Each batch then runs as micro-batches, with block activations recomputed
   * if need be (train/memory-plan.ts); the update stays the whole batch's.
   */
  memory?: number;
  /** Windows per forward/backward pass, overriding the memory plan (must divide `batch`). */
  microBatch?: number;
  /** Recompute block activations in backward, overriding the memory plan. */
  recompute?: boolean;
  seed: number;
  /** Validation bits per byte every this many steps (0 = only at the end). */
  evalEvery: number;
  /** Windows of validation per periodic evaluation (the final one uses all). */
  evalWindows: number;
  /** Checkpoint every this many steps (0 = only at the end). */
  saveEvery: number;
  resume: boolean;
  /** How the config's dropout rate varies over the run (default constant). */
  dropoutSchedule?: DropoutSchedule;
  /** Bytes of text each token id stands for, for bits per byte (absent: one byte each, the byte tokenizer). */
  tokenBytes?: ArrayLike<number>;
  /** Validation tokens; when given, `tokens` is the training split (else `tokens` is split 90/10 here). */
  valTokens?: Int32Array | Uint8Array;
  /** The vocabulary of the tokenizer the tokens came from (saved with the model). */
  vocab: VocabSpec;
  /** Knowledge distillation from a teacher with the same tokenizer (see DistillOptions). */
  distill?: DistillOptions;
  log?: (line: string) => void;
  /** Called after every step (for progress bars and tests). */
  onStep?: (s: StepInfo) => void;
  /** Polled after every step; true stops the run, saving a checkpoint (Ctrl-C). */
  shouldStop?: () => boolean;
}

/**
 * Distillation: the loss is (1 − w)·cross-entropy + w·T²·KL(teacher ‖ student) at temperature T, with
 * w on a schedule over the run ('constant', or 'linear-decay' from w to 0: lean on the teacher early,
 * on the data late). The teacher runs without gradient on the same windows.
 */
export interface DistillOptions {
  teacher: Llama;
  temperature: number;
  weight: number;
  schedule?: 'constant' | 'linear-decay';
}

export interface StepInfo {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  /** The dropout rate this step trained with. */
  dropout: number;
  gradNorm: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
  valBpb?: number;
}

/** What train() needs of a model (models/model.ts): any architecture, built by a ModelFactory. */
export type { TrainableModel };

/** Builds the model to train from the run's config (or a resumed checkpoint's) and the checkpoint's weights, if any. */
export type ModelFactory<M extends TrainableModel> = (graph: Graph, config: LlamaConfig, weights: Map<string, Float32Array> | undefined, seed: number) => M;

export interface TrainResult<M extends TrainableModel = Llama> {
  model: M;
  graph: Graph;
  steps: number;
  losses: number[];
  finalValBpb: number;
  seconds: number;
  stoppedEarly: boolean;
}

/** Trains (or resumes) a model; returns it with its loss curve and final validation bits per byte. */
export function train(be: Backend, o: TrainOptions): Promise<TrainResult>;
/** The same with the model built by `createModel` (another architecture, such as the byte-pooled model). */
export function train<M extends TrainableModel>(be: Backend, o: TrainOptions, createModel: ModelFactory<M>): Promise<TrainResult<M>>;
export async function train(be: Backend, o: TrainOptions, createModel: ModelFactory<TrainableModel> = (g, c, w, seed) => new Llama(g, c, w, seed)): Promise<TrainResult<TrainableModel>> {
  const log = o.log ?? (() => {});
  const { train: trainTokens, val: valTokens } = o.valTokens ? { train: o.tokens, val: o.valTokens } : splitTrainVal(o.tokens);
  if (valTokens.length < o.seqLen + 1) throw new Error(`data: the validation split has ${valTokens.length} tokens, fewer than one window of ${o.seqLen + 1}`);
  if (o.seqLen > o.config.ctx) throw new Error(`--ctx ${o.seqLen} exceeds the model context ${o.config.ctx}`);
  const g = new Graph(be);
  let ckpt: Checkpoint | null = null;
  if (o.resume) {
    if (o.checkpointPath === undefined) throw new Error('--resume: no checkpoint path given');
    if (!(await checkpointExists(o.checkpointPath))) throw new Error(`--resume: no checkpoint at '${o.checkpointPath}'`);
    ckpt = await loadCheckpoint(o.checkpointPath);
    log(`resuming from ${o.checkpointPath} at step ${ckpt.step}`);
  }
  const config = ckpt?.config ?? o.config;
  const model = createModel(g, config, ckpt?.weights, o.seed);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t), { weightDecay: o.weightDecay, clip: o.clip });
  const plan = trainingPlan(be, o, model, (dg) => createModel(dg, config, zeroWeights(model.params), o.seed));
  model.recompute = plan.recompute;
  const dataRng = new Rng(o.seed);
  const sampler = new WindowSampler(trainTokens, o.batch, o.seqLen, dataRng);
  let step = 0;
  let plannedSteps = o.steps ?? 0;
  const losses: number[] = [];
  if (ckpt) {
    opt.loadState(ckpt.optimizerStep, ckpt.moments);
    dataRng.setState(ckpt.dataRng);
    model.dropoutRng.setState(ckpt.dropoutRng);
    step = ckpt.step;
    plannedSteps = o.steps ?? ckpt.plannedSteps;
    losses.push(...ckpt.losses);
  }
  log(`model: ${params.reduce((s, p) => s + p.size, 0).toLocaleString('en-US')} parameters (d ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads, ctx ${config.ctx}); backend ${be.name} × ${be.threads} threads`);
  log(`data: ${trainTokens.length.toLocaleString('en-US')} train / ${valTokens.length.toLocaleString('en-US')} validation tokens; batch ${o.batch} × ${o.seqLen}${o.accum > 1 ? ` × ${o.accum} accumulated` : ''}`);

  const checkpointPath = o.checkpointPath;
  const save = async () => checkpointPath !== undefined &&
    saveCheckpoint(checkpointPath, {
      config, weights: model.weights(), moments: opt.state(), optimizerStep: opt.step, step, plannedSteps,
      dataRng: dataRng.getState(), dropoutRng: model.dropoutRng.getState(), losses,
    }, o.vocab);

  const tokensPerStep = o.batch * o.seqLen * o.accum;
  const t0 = performance.now();
  const startStep = step;
  const deadline = o.minutes ? t0 + o.minutes * 60_000 : Infinity;
  let stoppedEarly = false;

  if (o.distill && !model.trainLogits) throw new Error('distillation: the student must produce next-token logits (a Llama); this model does not');
  if (o.distill && o.distill.teacher.config.vocabSize !== config.vocabSize) {
    throw new Error(`distillation: the teacher's vocabulary (${o.distill.teacher.config.vocabSize}) differs from the student's (${config.vocabSize}); they must share a tokenizer`);
  }
  /** The training objective of one micro-batch: cross-entropy, mixed with the teacher's KL when distilling. */
  const objective = (kdWeight: number) => (ids: Int32Array, targets: Int32Array, windows: number): { loss: Tensor; ce: number } => {
    if (!o.distill || kdWeight === 0) {
      const loss = model.loss(ids, targets, windows);
      return { loss, ce: loss.item() };
    }
    const { teacher, temperature } = o.distill;
    const logits = model.trainLogits!(ids, windows); // present: checked above
    const ce = ops.crossEntropy(logits, targets);
    const teacherLogits = teacher.graph.noGrad(() => teacher.trainLogits(ids, windows).toArray());
    teacher.graph.release();
    const kd = ops.distillKl(logits, teacherLogits, temperature, targets);
    return { loss: ops.add(ops.scale(ce, 1 - kdWeight), ops.scale(kd, kdWeight)), ce: ce.item() };
  };

  /** One optimizer step's forward and backward passes (each batch in the plan's micro-batches); returns the mean cross-entropy. */
  const forwardBackward = (kdWeight: number): number => {
    let lossSum = 0;
    for (let a = 0; a < o.accum; a++) {
      sampler.next();
      lossSum += accumulateGradients(g, objective(kdWeight), sampler.ids, sampler.targets, o.batch, plan.microBatch, 1 / o.accum);
    }
    return lossSum / o.accum;
  };

  // With --minutes the run lasts until the deadline (like the PyTorch anchor): the planned length only
  // shapes the schedule, and steps past it run at minLr. With --steps (and no --minutes) it is exact.
  const timeBudgeted = !!o.minutes && !o.steps;
  let warmStart = t0, warmStep = step;
  let lastYield = performance.now();
  while (true) {
    if (plannedSteps && step >= plannedSteps && !timeBudgeted) break;
    if (performance.now() >= deadline) break;
    g.step = step;
    g.zeroGrad(params);
    const rngBefore = dataRng.getState();
    let loss: number, gradNorm: number;
    const lr = learningRate(step, { lr: o.lr, minLr: o.minLr, warmup: o.warmup, totalSteps: plannedSteps || step + 1 });
    model.dropoutRate = dropoutRate(step, plannedSteps || step + 1, config.dropout, o.dropoutSchedule ?? 'constant');
    const kdWeight = !o.distill ? 0 : o.distill.schedule === 'linear-decay' ? o.distill.weight * Math.max(0, 1 - step / (plannedSteps || step + 1)) : o.distill.weight;
    try {
      loss = forwardBackward(kdWeight);
      if (!Number.isFinite(loss)) throw new NonFiniteError('the loss', step, 'forward');
      gradNorm = opt.update(lr);
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      // Replay the same batch op by op to name the op that first produced NaN/Inf.
      g.release();
      dataRng.setState(rngBefore);
      g.detectAnomaly = true;
      g.zeroGrad(params);
      forwardBackward(kdWeight);
      throw e;
    }
    losses.push(loss);
    step++;
    const elapsed = (performance.now() - t0) / 1000;
    const done = step - startStep;
    const tps = (done * tokensPerStep) / elapsed;
    if (!plannedSteps && o.minutes) {
      // Time-budgeted run: fix the schedule's length from the speed measured after a few warm-up steps
      // (the first steps are slower while the JIT and the buffer pool warm up).
      if (done === 3) [warmStart, warmStep] = [performance.now(), step];
      if (done === 13) {
        const stepsPerSecond = (step - warmStep) / ((performance.now() - warmStart) / 1000);
        plannedSteps = step + Math.max(1, Math.floor(((deadline - performance.now()) / 1000) * stepsPerSecond));
        log(`planned ${plannedSteps} steps for ${o.minutes} minutes`);
      }
    }
    const total = Math.max(plannedSteps, step);
    const eta = o.minutes ? Math.max(0, (deadline - performance.now()) / 1000) : ((total - step) * elapsed) / done;
    let valBpb: number | undefined;
    if (o.evalEvery && step % o.evalEvery === 0 && step < total) {
      valBpb = evaluateBpb(model, valTokens, { batch: plan.microBatch, seqLen: o.seqLen, maxWindows: o.evalWindows, tokenBytes: o.tokenBytes }).bpb;
    }
    const info: StepInfo = { step, totalSteps: total, loss, lr, dropout: model.dropoutRate, gradNorm, tokensPerSecond: tps, elapsedSeconds: elapsed, etaSeconds: eta, valBpb };
    o.onStep?.(info);
    if (o.saveEvery && step % o.saveEvery === 0) await save();
    // A step never waits on I/O: yield to the event loop now and then so signal handlers (shouldStop's
    // Ctrl-C) run within a step or so, not only at the next checkpoint.
    if (o.shouldStop && performance.now() - lastYield > 100) {
      await new Promise<void>((r) => setTimeout(r, 0));
      lastYield = performance.now();
    }
    if (o.shouldStop?.()) {
      stoppedEarly = true;
      log(`stopping at step ${step}${checkpointPath !== undefined ? `: saving ${checkpointPath}` : ''}`);
      break;
    }
  }
  await save();
  const finalValBpb = evaluateBpb(model, valTokens, { batch: plan.microBatch, seqLen: o.seqLen, tokenBytes: o.tokenBytes }).bpb;
  return { model, graph: g, steps: step, losses, finalValBpb, seconds: (performance.now() - t0) / 1000, stoppedEarly };
}

/**
 * How each batch runs: as the options say (microBatch, recompute), else planned to fit the memory budget
 * (o.memory, else the backend's limit), else whole. Logs what it chose when it planned.
 */
function trainingPlan(be: Backend, o: TrainOptions, model: TrainableModel, build: (g: Graph) => TrainableModel): Pick<MemoryPlan, 'microBatch' | 'recompute'> {
  if (o.microBatch !== undefined || o.recompute !== undefined) {
    const microBatch = o.microBatch ?? o.batch;
    if (!(Number.isInteger(microBatch) && microBatch >= 1 && o.batch % microBatch === 0)) throw new Error(`micro-batch ${microBatch} must divide the batch of ${o.batch}`);
    return { microBatch, recompute: o.recompute ?? false };
  }
  const budget = o.memory ?? be.memoryLimit;
  if (budget === undefined) return { microBatch: o.batch, recompute: false };
  const plan = planMemory({ budget, batch: o.batch, seqLen: o.seqLen, heldBytes: be.memoryBytes(), build, flag: o.memory === undefined ? `the backend's memory limit,` : '--memory' });
  if (o.memory !== undefined || plan.microBatch !== o.batch || plan.recompute) o.log?.(describePlan(plan, o.batch, o.seqLen));
  return plan;
}

/** Zero-filled values for every parameter (one shared array per size): what a model built only to be measured is loaded with. */
function zeroWeights(params: Map<string, Tensor>): Map<string, Float32Array> {
  const bySize = new Map<number, Float32Array>();
  return new Map([...params].map(([name, p]) => {
    let z = bySize.get(p.size);
    if (!z) bySize.set(p.size, (z = new Float32Array(p.size)));
    return [name, z];
  }));
}
