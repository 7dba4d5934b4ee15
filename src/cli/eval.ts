/**
 * `stlm eval`: `bpb` and `tasks`.
 *
 * `stlm eval bpb`: bits per byte of a model on a text (quantized models run from their quantized
 * weights). A Llama reads the text through its tokenizer; the byte-pooled model reads the raw bytes,
 * as its trainer does, so the number equals the trainer's validation bits per byte on the same split
 * and window length.
 */
import type { Backend } from '../kernels/backend.js';
import { bpbWindowLength, evaluateBpb, tokenizeForBpb } from '../eval/bpb.js';
import { openModel } from '../io/open.js';
import { architectureOf } from '../models/architectures.js';
import { splitTrainVal } from '../train/data.js';
import { readTextData } from '../train/data-files.js';
import { bitsPerByteOfText } from '../eval/bpb-text.js';
import { TaskFileError, readTasks } from '../eval/task-files.js';
import { evaluateTaskFiles, resultsTable } from '../eval/tasks.js';
import { loadTiersConfig, openTier } from '../tiers/config.js';
import { routerFromConfig } from '../tiers/open.js';
import { LocalModel } from '../tiers/local.js';
import type { LanguageModel } from '../tiers/types.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { Progress, formatDuration } from './progress.js';
import { UsageError } from './route.js';

export interface EvalBpbCliOptions {
  model: string;
  tokenizer?: string;
  data: string;
  split: 'val' | 'all';
  ctx?: number;
  batch: number;
  json: boolean;
}

export async function runEvalBpb(o: EvalBpbCliOptions, be: Backend): Promise<void> {
  try {
    const m = await openModel(o.model, { tokenizer: o.tokenizer, backend: be });
    const bytes = readTextData(o.data);
    const text = o.split === 'val' ? splitTrainVal(bytes).val : bytes;
    const arch = architectureOf(m.config);
    const weights = m.bundle.quantized.size ? [...new Set([...m.bundle.quantized.values()].map((q) => q.type))].join('+') : 'f32';
    // A model that reads bytes gets the file's bytes as they are (exactly what its trainer evaluates);
    // any other reads the text through its tokenizer, and bits are divided by the bytes each token stands for.
    const input = arch.readsBytes
      ? { ids: text, tokenBytes: undefined, unit: 'bytes' as const, description: `${weights}, byte-pooled, ${String(arch.extraInfo().chunking)} chunks` }
      : { ...tokenizeForBpb(m.tokenizer, text, m.config.vocabSize), unit: 'tokens' as const, description: weights };
    const seqLen = bpbWindowLength(input.ids.length, m.config.ctx, { ctx: o.ctx, what: `'${o.data}' (${o.split === 'val' ? 'its last 10%' : 'all of it'})`, unit: input.unit });
    const t0 = performance.now();
    const r = evaluateBpb(m.model, input.ids, { batch: o.batch, seqLen, tokenBytes: input.tokenBytes });
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      process.stdout.write(JSON.stringify({
        model: o.model, data: o.data, split: o.split, architecture: arch.name, weights, bpb: r.bpb, tokens: r.tokens, ctx: seqLen, seconds,
      }) + '\n');
    } else {
      process.stdout.write(`${o.model} (${input.description}) on ${o.data} [${o.split}]: ${r.bpb.toFixed(4)} bits/byte over ${r.tokens.toLocaleString('en-US')} ${input.unit} ` +
        `(windows of ${seqLen}; ${seconds.toFixed(1)} s)\n`);
    }
  } finally {
    be.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------
// Any tier: `stlm eval tasks` and `stlm eval bpb --tiers`

/** Which model an evaluation runs on: a model file (stlm's engine), or one tier of a tiers config. */
export interface EvalModelOptions {
  model: string;
  tokenizer?: string;
  tiers?: string;
  tier?: string;
}

/** The model to evaluate, as a LanguageModel (the caller closes it). */
export async function openEvalModel(o: EvalModelOptions, backend: () => Promise<Backend>): Promise<LanguageModel> {
  if (o.tier !== undefined && o.tiers === undefined) throw new UsageError('eval: --tier needs --tiers <config>');
  if (o.tiers === undefined) return LocalModel.open(o.model, { tokenizer: o.tokenizer, backend: await backend() });
  let config;
  try {
    config = await loadTiersConfig(o.tiers);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const names = config.tiers.map((t) => t.name);
  if (o.tier === undefined) throw new UsageError(`eval: --tiers needs --tier <name>, one of: ${names.join(', ')}`);
  const entry = config.tiers.find((t) => t.name === o.tier);
  // 'auto': the router itself (as `stlm serve` names it), so a cascade's accuracy is measured as it answers.
  if (!entry && o.tier === 'auto') return routerFromConfig(config);
  if (!entry) throw new UsageError(`eval: ${o.tiers} has no tier '${o.tier}'; its tiers: ${names.join(', ')}, or auto (the router)`);
  return openTier(entry);
}

export interface EvalTasksCliOptions extends EvalModelOptions {
  limit?: number;
  seed?: number;
  json: boolean;
  out?: string;
}

/** `stlm eval tasks <file-or-folder>`: accuracy on task files, as a markdown table (or JSON), and optionally a JSON file. */
export async function runEvalTasks(path: string, o: EvalTasksCliOptions, backend: () => Promise<Backend>): Promise<void> {
  let files;
  try {
    files = readTasks(path);
  } catch (e) {
    if (e instanceof TaskFileError) throw new UsageError(e.message);
    throw e;
  }
  const model = await openEvalModel(o, backend);
  const progress = new Progress({ barFormat: 'eval {value}/{total} items |{bar}| {task}', interruptMessage: 'Stopping after this item (Ctrl-C again to quit now)' });
  const stop = new AbortController();
  const poll = setInterval(() => progress.stopRequested && stop.abort(), 100);
  let task = '';
  try {
    const t0 = performance.now();
    const results = await evaluateTaskFiles(model, files, {
      limit: o.limit, seed: o.seed, signal: stop.signal,
      onItem: (f) => (task = f.task),
      onProgress: (done, total) => progress.update({ value: done, total, payload: { task }, line: () => `eval: ${done}/${total} items (${task}, ${formatDuration((performance.now() - t0) / 1000)})`, force: done === total }),
    });
    progress.stop();
    const report = { model: model.info().name, provider: model.info().provider, path, limit: o.limit ?? null, seed: o.seed ?? null, results };
    if (o.out) await writeFileAtomic(o.out, JSON.stringify(report, null, 2) + '\n');
    process.stdout.write(o.json ? JSON.stringify(report) + '\n' : `${report.model} (${report.provider}) on ${path}${o.limit ? `, at most ${o.limit} items per task${o.seed !== undefined ? ` (seed ${o.seed})` : ''}` : ''}\n\n${resultsTable(results)}\n`);
  } finally {
    clearInterval(poll);
    progress.close();
    await model.close();
  }
}

export interface EvalTierBpbCliOptions extends EvalModelOptions {
  data: string;
  split: 'val' | 'all';
  windowBytes?: number;
  json: boolean;
}

/**
 * `stlm eval bpb --tiers <config> --tier <name>`: bits per byte through score(), for any tier. The text
 * must be valid UTF-8 (tiers take text); raw bytes go through the local path (`--model`), unchanged.
 */
export async function runEvalTierBpb(o: EvalTierBpbCliOptions, backend: () => Promise<Backend>): Promise<void> {
  const bytes = readTextData(o.data);
  const raw = o.split === 'val' ? splitTrainVal(bytes).val : bytes;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new UsageError(`eval: '${o.data}' is not valid UTF-8, which a tier cannot read as text; evaluate a model file with --model instead (it scores the raw bytes)`);
  }
  const model = await openEvalModel(o, backend);
  try {
    const ctx = model.info().contextLength;
    const t0 = performance.now();
    const r = await bitsPerByteOfText(model, text, { windowBytes: o.windowBytes ?? (ctx ? Math.max(1, ctx - 1) : 1024), maxTokens: ctx ? ctx - 1 : undefined });
    const seconds = (performance.now() - t0) / 1000;
    const name = model.info().name;
    if (o.json) {
      process.stdout.write(JSON.stringify({ model: name, provider: model.info().provider, data: o.data, split: o.split, ...r, seconds }) + '\n');
    } else {
      process.stdout.write(`${name} (${model.info().provider}) on ${o.data} [${o.split}]: ${r.bpb.toFixed(4)} bits/byte, ${r.bitsPerToken.toFixed(4)} bits/token over ` +
        `${r.bytes.toLocaleString('en-US')} bytes, ${r.tokens.toLocaleString('en-US')} tokens (${r.windows} windows; ${seconds.toFixed(1)} s)\n`);
    }
  } finally {
    await model.close();
  }
}
