/** `stlm finetune`: fine-tunes a model on prompt/completion JSONL, writing a LoRA adapter or a whole model. */
import type { Backend } from '../kernels/backend.js';
import { loadModel, saveModel } from '../io/model-file.js';
import { saveLoraAdapter } from '../io/lora-file.js';
import { DEFAULT_LORA_TARGETS, parseLoraTargets } from '../models/lora.js';
import { Graph } from '../tensor/tensor.js';
import { DEFAULT_FINETUNE_LR, type FinetuneStep, finetune } from '../train/finetune.js';
import { loadExamples } from '../train/jsonl.js';
import { formatDuration, log } from './progress.js';

export interface FinetuneCliOptions {
  model: string;
  tokenizer?: string;
  data: string;
  test?: string;
  out: string;
  lora: boolean;
  rank: number;
  alpha: number;
  targets?: string;
  steps?: number;
  epochs?: number;
  lr?: number;
  minLr?: number;
  warmup?: number;
  batch: number;
  weightDecay: number;
  clip: number;
  seed: number;
}

export async function runFinetune(o: FinetuneCliOptions, be: Backend): Promise<void> {
  if (o.steps !== undefined && o.epochs !== undefined) throw new Error('finetune: give --steps or --epochs, not both');
  if (!o.lora && (o.targets !== undefined)) throw new Error('finetune: --targets applies to LoRA: add --lora');
  const targets = parseLoraTargets(o.targets ?? DEFAULT_LORA_TARGETS.join(','));
  if (o.lora && !(o.alpha > 0)) throw new Error(`--alpha must be positive, got ${o.alpha}`);
  const base = await loadModel(o.model, { tokenizer: o.tokenizer });
  const train = loadExamples(o.data, base, log);
  const test = o.test ? loadExamples(o.test, base, log) : undefined;
  const lr = o.lr ?? (o.lora ? DEFAULT_FINETUNE_LR.lora : DEFAULT_FINETUNE_LR.full);
  const g = new Graph(be);
  let lastLine = 0;
  const onStep = (s: FinetuneStep) => {
    if (s.step === 1 || s.step === s.totalSteps || performance.now() - lastLine > 5_000) {
      lastLine = performance.now();
      const eta = (s.elapsedSeconds / s.step) * (s.totalSteps - s.step);
      log(`step ${s.step}/${s.totalSteps} | epoch ${s.epoch} | loss ${s.loss.toFixed(4)} | lr ${s.lr.toExponential(2)} | ${formatDuration(s.elapsedSeconds)} elapsed | ETA ${formatDuration(eta)}`);
    }
  };
  try {
    const r = finetune(g, base, {
      lora: o.lora ? { rank: o.rank, alpha: o.alpha, targets, seed: o.seed } : undefined,
      train, test, steps: o.steps, epochs: o.epochs, batch: o.batch, lr, minLr: o.minLr, warmup: o.warmup,
      weightDecay: o.weightDecay, clip: o.clip, seed: o.seed, padId: base.tokenizer.pad ?? 0, log, onStep,
    });
    const recent = r.losses.slice(-Math.max(1, Math.floor(r.losses.length / 10)));
    log(`done: ${r.steps} steps in ${formatDuration(r.seconds)}, train loss ${(recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(4)} (mean of the last ${recent.length} steps)`);
    if (r.adapters) {
      await saveLoraAdapter(o.out, r.adapters.data());
      log(`wrote ${o.out} (LoRA adapter: apply with llama.cpp --lora, or fold in with 'stlm merge ${o.model} ${o.out} <out.gguf>')`);
    } else {
      await saveModel(o.out, { config: r.model.config, weights: r.model.weights(), vocab: base.vocab }, { name: 'stlm finetune' });
      log(`wrote ${o.out} (model)`);
    }
  } finally {
    be.dispose();
  }
}
