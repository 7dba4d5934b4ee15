/** `stlm train`: parses its flags, prepares the run (src/train/prepare.ts), trains with a progress display, writes the model and its checkpoint. */
import type { Backend } from '../kernels/backend.js';
import { saveModel } from '../io/model-file.js';
import { createModel } from '../models/architectures.js';
import type { SpecNames } from '../train/config-spec.js';
import { type TeacherNames, prepareTraining } from '../train/prepare.js';
import type { DropoutSchedule } from '../train/schedule.js';
import { type ModelFactory, type StepInfo, type TrainableModel, train } from '../train/trainer.js';
import { Progress, formatDuration, log } from './progress.js';

export interface TrainCliOptions {
  data: string;
  config: string;
  /** 'llama' (the default) or 'pooled' (the byte-pooled model, models/byte-pooled.ts). */
  arch: 'llama' | 'pooled';
  /** Chunking of the pooled model: 'fixed:P' or 'space[:M]'. */
  chunk?: string;
  tokenizer: string;
  out: string;
  steps?: number;
  minutes?: number;
  resume: boolean;
  batch: number;
  ctx?: number;
  accum: number;
  /** Bytes the engine may use (--memory). */
  memory?: number;
  lr: number;
  minLr?: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  dropout?: number;
  dropoutSchedule: DropoutSchedule;
  teacher?: string;
  distillWeight: number;
  distillTemperature: number;
  distillSchedule: 'constant' | 'linear-decay';
  evalEvery: number;
  evalWindows: number;
  saveEvery: number;
}

/** What the library's messages call each setting, as this command's flags. */
export const TRAIN_FLAGS: SpecNames & TeacherNames = { config: '--config', arch: '--arch', chunk: '--chunk', tokenizer: '--tokenizer', teacher: '--teacher', ctx: '--ctx' };

/** Builds the model train() trains, by the config's kind (a resumed checkpoint's config decides). */
/** Builds the model train() trains, by the config's architecture (a resumed checkpoint's config decides). */
const modelFactory: ModelFactory<TrainableModel> = (g, c, weights, seed) => createModel(g, c, { weights, seed });

export async function runTrain(o: TrainCliOptions, be: Backend): Promise<void> {
  if (!o.steps && !o.minutes) throw new Error('train: give --steps N or --minutes N');
  const checkpointPath = `${o.out}.ckpt`;
  try {
    const run = await prepareTraining({
      data: o.data, config: o.config, arch: o.arch, chunk: o.chunk, tokenizer: o.tokenizer, dropout: o.dropout, seqLen: o.ctx, checkpointPath, resume: o.resume,
      teacher: o.teacher ? { path: o.teacher, weight: o.distillWeight, temperature: o.distillTemperature, schedule: o.distillSchedule } : undefined,
      names: TRAIN_FLAGS, log,
    }, be);
    // Installed only now: until here Ctrl-C quits at once (learning a BPE vocabulary does not yield to signal handlers).
    const progress = new Progress({
      barFormat: 'step {value}/{total} |{bar}| loss {loss} | val bpb {bpb} | {tps} tok/s | {elapsed} elapsed | ETA {eta}',
      interruptMessage: 'interrupted: finishing this step and saving the checkpoint (Ctrl-C again to quit without saving)',
    });
    try {
      let lastBpb = '-';
      const onStep = (s: StepInfo) => {
        if (s.valBpb !== undefined) lastBpb = s.valBpb.toFixed(3);
        const payload = { loss: s.loss.toFixed(4), bpb: lastBpb, tps: Math.round(s.tokensPerSecond).toLocaleString('en-US'), elapsed: formatDuration(s.elapsedSeconds), eta: formatDuration(s.etaSeconds) };
        progress.update({
          value: s.step, total: s.totalSteps, payload, force: s.valBpb !== undefined || s.step === 1 || s.step === s.totalSteps,
          line: () => `step ${s.step}/${s.totalSteps} | loss ${payload.loss} | val bpb ${payload.bpb} | lr ${s.lr.toExponential(2)} | ${payload.tps} tok/s | ${payload.elapsed} elapsed | ETA ${payload.eta}`,
        });
      };
      const r = await train(be, {
        ...run, dropoutSchedule: o.dropoutSchedule, checkpointPath, steps: o.steps, minutes: o.minutes, batch: o.batch,
        lr: o.lr, minLr: o.minLr ?? o.lr / 10, warmup: o.warmup, weightDecay: o.weightDecay, clip: o.clip, accum: o.accum, memory: o.memory, seed: o.seed,
        evalEvery: o.evalEvery, evalWindows: o.evalWindows, saveEvery: o.saveEvery, resume: o.resume,
        log, onStep, shouldStop: progress.shouldStop,
      }, modelFactory);
      progress.stop();
      await saveModel(o.out, { config: r.model.config, weights: r.model.weights(), vocab: run.vocab });
      log(`${r.stoppedEarly ? 'stopped' : 'done'}: ${r.steps} steps in ${formatDuration(r.seconds)}, final loss ${r.losses.at(-1)?.toFixed(4)}, validation ${r.finalValBpb.toFixed(4)} bits/byte`);
      log(`wrote ${o.out} (model) and ${o.out}.ckpt (checkpoint for --resume)`);
    } finally {
      progress.close();
    }
  } finally {
    be.dispose();
  }
}
