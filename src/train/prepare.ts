/**
 * Everything a training run needs before its first step, from text specs and a data path: the config
 * (a Llama or the byte-pooled model), the text read and split, the vocabulary (bytes, a BPE learned from
 * the training split, or a resumed checkpoint's), the token streams, and the teacher to distill from.
 * `stlm train` is this plus `train()` and a progress display; a library caller can do the same.
 */
import { existsSync } from 'node:fs';
import { tokenByteLengths } from '../eval/bpb.js';
import type { Backend } from '../kernels/backend.js';
import { architectureOf } from '../models/architectures.js';
import { type LlamaConfig, parameterCount } from '../models/config.js';
import { byteVocab, loadModel } from '../io/model-file.js';
import { Llama } from '../models/llama.js';
import { Graph } from '../tensor/tensor.js';
import { bpeToVocab, trainBpe } from '../tokenizers/bpe-train.js';
import { tokenizerFromVocab } from '../tokenizers/from-vocab.js';
import type { VocabSpec } from '../tokenizers/vocab.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { type ArchSpec, SPEC_NAMES, type SpecNames, type TokenizerSpec, parseArchConfig, parseTokenizerArg } from './config-spec.js';
import { splitTrainVal } from './data.js';
import { readTextData } from './data-files.js';
import type { DistillOptions } from './trainer.js';

/** The vocabulary and token streams of a run (what `train()` takes as vocab, tokens, valTokens, tokenBytes). */
export interface TrainingData {
  vocab: VocabSpec;
  /** With a byte vocabulary, the whole text (train() splits it); otherwise the training split's ids. */
  train: Int32Array | Uint8Array;
  /** The validation split's ids (learned vocabularies only). */
  val?: Int32Array;
  /** Bytes of text per token id (learned vocabularies only; absent, one byte each). */
  tokenBytes?: Int32Array;
}

/**
 * The vocabulary and token streams for training. A BPE vocabulary is learned from the training split
 * only (the validation text stays unseen), then both splits are encoded separately. A resumed run passes
 * its checkpoint's vocabulary (`resumedVocab`), which is reused so the token ids cannot drift.
 */
export function tokenizeTrainingData(bytes: Uint8Array, spec: TokenizerSpec, o: { resumedVocab?: VocabSpec; log?: (line: string) => void } = {}): TrainingData {
  const log = o.log ?? (() => {});
  const resumed = o.resumedVocab;
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
  const tokenBytes = tokenByteLengths(tok, vocab.tokens.length);
  log(`tokenizer: ${(train.length / trainIds.length).toFixed(2)} bytes per token on the training split`);
  return { vocab, train: trainIds, val: valIds, tokenBytes };
}

/** How to distill from a teacher model file (see DistillOptions). */
export interface TeacherSpec {
  /** The teacher's model file (any format loadModel reads; quantized files run quantized). */
  path: string;
  weight: number;
  temperature: number;
  schedule: 'constant' | 'linear-decay';
}

/** What error messages call the teacher and the window length: the option names, or the CLI's flags. */
export interface TeacherNames {
  teacher: string;
  ctx: string;
}

/** The teacher model, loaded on `be` and checked to share the student's tokenizer and to cover its windows. */
export async function loadTeacher(t: TeacherSpec, vocab: VocabSpec, be: Backend, seqLen: number, o: { names?: TeacherNames; log?: (line: string) => void } = {}): Promise<DistillOptions> {
  const names = o.names ?? { teacher: 'teacher', ctx: 'seqLen' };
  const m = await loadModel(t.path, { keepQuantized: true });
  const same = m.vocab.model === vocab.model && m.vocab.tokens.length === vocab.tokens.length && m.vocab.tokens.every((tok, i) => tok === vocab.tokens[i]);
  if (!same) throw new Error(`${names.teacher} ${t.path}: its tokenizer (${m.vocab.model}, ${m.vocab.tokens.length} tokens) differs from the student's (${vocab.model}, ${vocab.tokens.length}); distillation needs the same tokens`);
  if (m.config.ctx < seqLen) throw new Error(`${names.teacher} ${t.path}: its context ${m.config.ctx} is shorter than the training windows (${seqLen}); use ${names.ctx} ${m.config.ctx}`);
  o.log?.(`distilling from ${t.path} (${parameterCount(m.config).toLocaleString('en-US')} parameters): weight ${t.weight} (${t.schedule}), temperature ${t.temperature}`);
  return { teacher: Llama.fromModel(new Graph(be), m), weight: t.weight, temperature: t.temperature, schedule: t.schedule };
}

export interface PrepareTrainingOptions extends ArchSpec {
  /** A text file, or a folder of text files (read in sorted order), or the text's bytes. */
  data: string | Uint8Array;
  /** Overrides the config's dropout rate. */
  dropout?: number;
  /** Window length (default: the config's context). */
  seqLen?: number;
  /** The run's checkpoint; with `resume`, its vocabulary is reused (when the file exists). */
  checkpointPath?: string;
  resume?: boolean;
  /** Distill from this teacher (a Llama student only). */
  teacher?: TeacherSpec;
  /** What error messages call the settings (default: the option names; the CLI passes its flags). */
  names?: SpecNames & TeacherNames;
  log?: (line: string) => void;
}

/** A run ready for `train()`: spread it into TrainOptions (config, vocab, tokens, valTokens, tokenBytes, seqLen, distill). */
export interface PreparedTraining {
  config: LlamaConfig;
  vocab: VocabSpec;
  tokens: Int32Array | Uint8Array;
  valTokens?: Int32Array;
  tokenBytes?: Int32Array;
  seqLen: number;
  distill?: DistillOptions;
}

/** Parses the config and tokenizer specs, reads and tokenizes the data, and loads the teacher (on `be`). */
export async function prepareTraining(o: PrepareTrainingOptions, be: Backend): Promise<PreparedTraining> {
  const names = o.names ?? { ...SPEC_NAMES, teacher: 'teacher', ctx: 'seqLen' };
  const log = o.log ?? (() => {});
  let config = parseArchConfig(o, names);
  if (o.dropout !== undefined) config = { ...config, dropout: o.dropout };
  const arch = architectureOf(config);
  if (o.teacher && !arch.distillable) throw new Error(`${names.teacher}: distillation needs a Llama student; the ${arch.name} model has no next-token logits to match`);
  if (arch.summary) log(arch.summary);
  const bytes = typeof o.data === 'string' ? readTextData(o.data) : o.data;
  const spec = parseTokenizerArg(o.tokenizer ?? 'byte', names);
  const resumedVocab = o.resume && o.checkpointPath !== undefined && existsSync(o.checkpointPath) ? (await loadCheckpoint(o.checkpointPath)).vocab : undefined;
  const data = tokenizeTrainingData(bytes, spec, { resumedVocab, log });
  const { vocab } = data;
  if (config.vocabSize !== vocab.tokens.length) {
    // Presets are sized for the byte vocabulary; a learned vocabulary sets the size, unless the config insists otherwise.
    if (/vocab/i.test(o.config)) throw new Error(`${names.config} vocabSize ${config.vocabSize} does not match the tokenizer's ${vocab.tokens.length} tokens`);
    config = { ...config, vocabSize: vocab.tokens.length };
  }
  const seqLen = o.seqLen ?? config.ctx;
  const distill = o.teacher ? await loadTeacher(o.teacher, vocab, be, seqLen, { names, log }) : undefined;
  return { config, vocab, tokens: data.train, valTokens: data.val, tokenBytes: data.tokenBytes, seqLen, distill };
}
