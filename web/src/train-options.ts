/**
 * The trainer's options for a playground run: the page's settings plus the fixed choices made here
 * (byte tokenizer, warmup, evaluation cadence). Shared by the worker and the test that trains the same
 * run in Node.
 */
import { resolveConfig } from '../../src/models/config.js';
import { byteVocab } from '../../src/tokenizers/gpt2.js';
import type { TrainOptions } from '../../src/train/trainer.js';
import type { TrainSettings } from './protocol.js';

/** A tenth of the text is kept for validation, and it must hold one window of at least this many bytes. */
const MIN_WINDOW = 16;

export function playgroundTrainOptions(s: TrainSettings): TrainOptions {
  const data = new TextEncoder().encode(s.text);
  const config = resolveConfig(s.preset);
  // Windows as long as the context, or shorter when the text is short.
  const seqLen = Math.min(config.ctx, Math.floor(data.length * 0.1) - 1);
  if (seqLen < MIN_WINDOW) throw new Error(`the text is too short to train on: ${data.length} bytes; give at least ${(MIN_WINDOW + 1) * 10}`);
  return {
    tokens: data, config, vocab: byteVocab(), steps: s.steps || undefined, minutes: s.minutes, batch: s.batch, seqLen,
    lr: s.lr, minLr: s.lr / 10, warmup: Math.min(20, s.steps || 20), weightDecay: 0.1, clip: 1, accum: 1, seed: s.seed,
    evalEvery: 10, evalWindows: 8, saveEvery: 0, resume: false,
  };
}
