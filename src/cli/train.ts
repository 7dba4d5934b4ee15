/** `stlm train`: reads data, trains with a progress display, writes the model and its checkpoint. */
import cliProgress from 'cli-progress';
import { existsSync, readFileSync } from 'node:fs';
import type { Backend } from '../kernels/backend.js';
import { BytePooled, describePooled, isPooledConfig, resolvePooledConfig } from '../models/byte-pooled.js';
import { type LlamaConfig, parameterCount, resolveConfig } from '../models/config.js';
import { byteVocab, loadModel, saveModel } from '../io/model-file.js';
import { bpeToVocab, trainBpe } from '../tokenizers/bpe-train.js';
import { tokenizerFromVocab } from '../tokenizers/from-vocab.js';
import type { VocabSpec } from '../tokenizers/vocab.js';
import { readTextData, splitTrainVal } from '../train/data.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import type { DropoutSchedule } from '../train/schedule.js';
import { type DistillOptions, type ModelFactory, type StepInfo, type TrainableModel, train } from '../train/trainer.js';
import { createModel } from '../models/architectures.js';
import { Llama } from '../models/llama.js';
import { Graph } from '../tensor/tensor.js';

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

/** --config as a preset name, or as preset + overrides (inline JSON or a JSON file), not yet resolved. */
export function parseConfigSpec(arg: string): string | Record<string, unknown> {
  const text = arg.trim();
  if (text.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new Error(`--config: invalid JSON: ${(e as Error).message}`);
    }
    return obj as Record<string, unknown>;
  }
  if (text.endsWith('.json')) {
    if (!existsSync(text)) throw new Error(`--config: file '${text}' does not exist`);
    return parseConfigSpec(readFileSync(text, 'utf8'));
  }
  return text;
}

/** --config: a preset name, inline JSON, or a JSON file. */
export function parseConfigArg(arg: string): LlamaConfig {
  return resolveConfig(parseConfigSpec(arg));
}

/** --arch and --chunk with --config: a Llama config, or a byte-pooled one (core from --config, plus its pooling keys). */
export function parseArchConfig(o: Pick<TrainCliOptions, 'arch' | 'config' | 'chunk' | 'tokenizer'>): LlamaConfig {
  if (o.arch !== 'pooled') {
    if (o.chunk !== undefined) throw new Error('--chunk applies to --arch pooled only');
    return parseConfigArg(o.config);
  }
  if (parseTokenizerArg(o.tokenizer).kind !== 'byte') throw new Error(`--arch pooled reads raw bytes: use --tokenizer byte, not '${o.tokenizer}'`);
  return resolvePooledConfig(parseConfigSpec(o.config), o.chunk);
}

/** Builds the model train() trains, by the config's kind (a resumed checkpoint's config decides). */
const modelFactory: ModelFactory<TrainableModel> = (g, c, weights, seed) => createModel(g, c, { weights, seed });

/** --tokenizer: 'byte' or 'bpe:<vocab size>'. */
export function parseTokenizerArg(arg: string): { kind: 'byte' } | { kind: 'bpe'; size: number } {
  if (arg === 'byte') return { kind: 'byte' };
  const m = /^bpe:(\d+)$/.exec(arg);
  if (!m) throw new Error(`--tokenizer must be 'byte' or 'bpe:<vocab size>' (e.g. bpe:2048), got '${arg}'`);
  const size = Number(m[1]);
  if (size < 258 || size > 65536) throw new Error(`--tokenizer bpe:${size}: the vocabulary must hold 256 bytes + 1 special token and at most 65536 tokens`);
  return { kind: 'bpe', size };
}

/**
 * The vocabulary and token streams for training. A BPE vocabulary is learned from the training split
 * only (the validation text stays unseen), then both splits are encoded separately. On --resume the
 * checkpoint's vocabulary is reused, so the token ids cannot drift.
 */
async function tokenize(o: TrainCliOptions, bytes: Uint8Array, log: (l: string) => void): Promise<{ vocab: VocabSpec; train: Int32Array | Uint8Array; val?: Int32Array; tokenBytes?: Int32Array }> {
  const spec = parseTokenizerArg(o.tokenizer);
  const ckptPath = `${o.out}.ckpt`;
  const resumed = o.resume && existsSync(ckptPath) ? (await loadCheckpoint(ckptPath)).vocab : undefined;
  if (spec.kind === 'byte' && (!resumed || resumed.model === 'byte')) return { vocab: byteVocab(), train: bytes };
  const { train, val } = splitTrainVal(bytes);
  const decoder = new TextDecoder();
  const trainText = decoder.decode(train), valText = decoder.decode(val);
  let vocab = resumed;
  if (!vocab) {
    const t0 = performance.now();
    if (spec.kind !== 'bpe') throw new Error('unreachable');
    const r = trainBpe(trainText, { vocabSize: spec.size, specialTokens: ['<|endoftext|>'] });
    vocab = bpeToVocab(r);
    log(`tokenizer: learned ${vocab.tokens.length} BPE tokens from ${train.length.toLocaleString('en-US')} bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const tok = tokenizerFromVocab(vocab);
  const trainIds = tok.encode(trainText), valIds = tok.encode(valText);
  const tokenBytes = Int32Array.from({ length: vocab.tokens.length }, (_, id) => tok.tokenBytes(id).length);
  log(`tokenizer: ${(train.length / trainIds.length).toFixed(2)} bytes per token on the training split`);
  return { vocab, train: trainIds, val: valIds, tokenBytes };
}

/** The --teacher model, checked to share the student's tokenizer and to cover its windows. */
async function loadTeacher(o: TrainCliOptions, vocab: VocabSpec, be: Backend, seqLen: number, log: (l: string) => void): Promise<DistillOptions> {
  const t = await loadModel(o.teacher!, { keepQuantized: true });
  const same = t.vocab.model === vocab.model && t.vocab.tokens.length === vocab.tokens.length && t.vocab.tokens.every((tok, i) => tok === vocab.tokens[i]);
  if (!same) throw new Error(`--teacher ${o.teacher}: its tokenizer (${t.vocab.model}, ${t.vocab.tokens.length} tokens) differs from the student's (${vocab.model}, ${vocab.tokens.length}); distillation needs the same tokens`);
  if (t.config.ctx < seqLen) throw new Error(`--teacher ${o.teacher}: its context ${t.config.ctx} is shorter than the training windows (${seqLen}); use --ctx ${t.config.ctx}`);
  log(`distilling from ${o.teacher} (${parameterCount(t.config).toLocaleString('en-US')} parameters): weight ${o.distillWeight} (${o.distillSchedule}), temperature ${o.distillTemperature}`);
  return { teacher: Llama.fromModel(new Graph(be), t), weight: o.distillWeight, temperature: o.distillTemperature, schedule: o.distillSchedule };
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export async function runTrain(o: TrainCliOptions, be: Backend): Promise<void> {
  if (!o.steps && !o.minutes) throw new Error('train: give --steps N or --minutes N');
  let config = parseArchConfig(o);
  if (o.dropout !== undefined) config = { ...config, dropout: o.dropout };
  const log = (line: string) => process.stderr.write(line + '\n');
  if (isPooledConfig(config) && o.teacher) throw new Error('--teacher: distillation needs a Llama student; the byte-pooled model has no next-token logits to match');
  if (isPooledConfig(config)) log(describePooled(config));
  const data = await tokenize(o, readTextData(o.data), log);
  const { vocab } = data;
  if (config.vocabSize !== vocab.tokens.length) {
    // Presets are sized for the byte vocabulary; a learned vocabulary sets the size, unless the config insists otherwise.
    if (/vocab/i.test(o.config)) throw new Error(`--config vocabSize ${config.vocabSize} does not match the tokenizer's ${vocab.tokens.length} tokens`);
    config = { ...config, vocabSize: vocab.tokens.length };
  }
  const seqLen = o.ctx ?? config.ctx;
  const distill = o.teacher ? await loadTeacher(o, vocab, be, seqLen, log) : undefined;
  const tty = process.stderr.isTTY;
  const bar = tty
    ? new cliProgress.SingleBar({
        format: 'step {value}/{total} |{bar}| loss {loss} | val bpb {bpb} | {tps} tok/s | {elapsed} elapsed | ETA {eta}',
        hideCursor: true, clearOnComplete: false, barsize: 20,
      }, cliProgress.Presets.shades_classic)
    : null;
  let lastBpb = '-', lastLine = 0, barStarted = false;
  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    log('\ninterrupted: finishing this step and saving the checkpoint (Ctrl-C again to quit without saving)');
  };
  process.on('SIGINT', onSigint);
  const onStep = (s: StepInfo) => {
    if (s.valBpb !== undefined) lastBpb = s.valBpb.toFixed(3);
    const payload = { loss: s.loss.toFixed(4), bpb: lastBpb, tps: Math.round(s.tokensPerSecond).toLocaleString('en-US'), elapsed: formatDuration(s.elapsedSeconds), eta: formatDuration(s.etaSeconds) };
    if (bar) {
      // Started on the first step this run sees (a resumed run's first step is not 1).
      if (!barStarted) {
        bar.start(s.totalSteps, s.step, payload);
        barStarted = true;
      }
      bar.setTotal(s.totalSteps);
      bar.update(s.step, payload);
    } else if (s.valBpb !== undefined || s.step === 1 || s.step === s.totalSteps || performance.now() - lastLine > 10_000) {
      lastLine = performance.now();
      log(`step ${s.step}/${s.totalSteps} | loss ${payload.loss} | val bpb ${payload.bpb} | lr ${s.lr.toExponential(2)} | ${payload.tps} tok/s | ${payload.elapsed} elapsed | ETA ${payload.eta}`);
    }
  };
  try {
    const r = await train(be, {
      distill, dropoutSchedule: o.dropoutSchedule, tokens: data.train, valTokens: data.val, tokenBytes: data.tokenBytes, config, checkpointPath: `${o.out}.ckpt`, steps: o.steps, minutes: o.minutes, batch: o.batch, seqLen,
      lr: o.lr, minLr: o.minLr ?? o.lr / 10, warmup: o.warmup, weightDecay: o.weightDecay, clip: o.clip, accum: o.accum, seed: o.seed,
      evalEvery: o.evalEvery, evalWindows: o.evalWindows, saveEvery: o.saveEvery, resume: o.resume, vocab,
      log, onStep, shouldStop: () => stopRequested,
    }, modelFactory);
    bar?.stop();
    await saveModel(o.out, { config: r.model.config, weights: r.model.weights(), vocab });
    log(`${r.stoppedEarly ? 'stopped' : 'done'}: ${r.steps} steps in ${formatDuration(r.seconds)}, final loss ${r.losses.at(-1)?.toFixed(4)}, validation ${r.finalValBpb.toFixed(4)} bits/byte`);
    log(`wrote ${o.out} (model) and ${o.out}.ckpt (checkpoint for --resume)`);
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    be.dispose();
  }
}
