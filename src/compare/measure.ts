/**
 * Measures one opened tier, in the process that runs it: generation speed from the bench prompt (time
 * to first token, prefill and decode tokens/s), the CPU time it takes (for the energy estimate), bits per
 * byte on held-out text and accuracy on task files (both through `score()`, src/eval). Memory and load
 * time are the caller's (child.ts measures them around the whole process).
 */
import { bitsPerByteOfText } from '../eval/bpb-text.js';
import { evaluateTasks } from '../eval/tasks.js';
import { splitTrainVal } from '../train/data.js';
import { readTextData } from '../train/data-files.js';
import type { LanguageModel } from '../tiers/types.js';
import type { BenchSettings, EnergyEstimate, SpeedFigures, TaskFigures, TextBpbFigures } from './types.js';

/** What to measure of a tier (a tier measured before may need only its missing tasks). */
export interface MeasurePlan {
  speed: boolean;
  texts: string[];
  tasks: string[];
}

/** Progress of one tier's measurement: which part, and how far. */
export type MeasureProgress = (what: string, done: number, total: number) => void;

export interface MeasuredParts {
  speed: SpeedFigures | null;
  /** CPU seconds of the speed runs: per generated token after the first, and per prompt token. */
  cpu: { perToken: number | null; perPromptToken: number | null } | null;
  bpb: TextBpbFigures[];
  tasks: TaskFigures[];
  notes: string[];
}

/** CPU seconds this process has used (every thread, user + system). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * The bench prompt cut (at a word) so that it and `maxTokens` fit the tier's context; maxTokens itself
 * shrinks to half the context when the context is shorter than it.
 */
export async function fitPrompt(model: LanguageModel, prompt: string, maxTokens: number): Promise<{ prompt: string; maxTokens: number }> {
  const ctx = model.info().contextLength;
  if (!ctx) return { prompt, maxTokens };
  const gen = Math.min(maxTokens, Math.floor(ctx / 2));
  const room = ctx - gen - 2; // BOS, and one to spare
  let text = prompt;
  while ((await model.countTokens(text)) > room) {
    const cut = text.lastIndexOf(' ', Math.floor(text.length * 0.8));
    if (cut <= 0) throw new Error(`the bench prompt does not fit a context of ${ctx} tokens`);
    text = text.slice(0, cut);
  }
  return { prompt: text, maxTokens: gen };
}

/** Greedy generation from the bench prompt: one warm-up run, then `repeats` measured ones (medians). */
export async function measureSpeed(model: LanguageModel, s: BenchSettings, onProgress?: MeasureProgress): Promise<{ speed: SpeedFigures; cpu: MeasuredParts['cpu'] }> {
  const { prompt, maxTokens } = await fitPrompt(model, s.prompt, s.maxTokens);
  await model.generate({ prompt }, { maxTokens: Math.min(4, maxTokens), temperature: 0 }); // warm-up: compiled code paths, caches, a connection
  const runs: { ttft: number; prefill: number; decode: number | null; prompt: number; gen: number; cpuTok: number | null; cpuPrompt: number }[] = [];
  for (let i = 0; i < s.repeats; i++) {
    onProgress?.('speed', i, s.repeats);
    let cpuAtFirst: number | undefined;
    const cpu0 = cpuSeconds();
    const r = await model.generate({ prompt }, { maxTokens, temperature: 0, onText: () => (cpuAtFirst ??= cpuSeconds()) });
    const cpu1 = cpuSeconds();
    const first = cpuAtFirst ?? cpu1;
    const ttft = r.timeToFirstTokenMs, gen = r.usage.completionTokens;
    const decodeMs = r.totalMs - ttft;
    runs.push({
      ttft, prompt: r.usage.promptTokens, gen,
      prefill: r.usage.promptTokens / Math.max(ttft / 1000, 1e-9),
      decode: gen >= 2 && decodeMs > 0 ? (gen - 1) / (decodeMs / 1000) : null,
      cpuTok: gen >= 2 ? (cpu1 - first) / (gen - 1) : null,
      cpuPrompt: (first - cpu0) / Math.max(1, r.usage.promptTokens),
    });
  }
  onProgress?.('speed', s.repeats, s.repeats);
  const decodes = runs.map((r) => r.decode).filter((d): d is number => d !== null);
  const cpuToks = runs.map((r) => r.cpuTok).filter((d): d is number => d !== null);
  return {
    speed: {
      promptTokens: median(runs.map((r) => r.prompt)), generatedTokens: median(runs.map((r) => r.gen)),
      timeToFirstTokenMs: median(runs.map((r) => r.ttft)), prefillTokensPerS: median(runs.map((r) => r.prefill)),
      decodeTokensPerS: decodes.length ? median(decodes) : null, repeats: runs.length,
    },
    cpu: { perToken: cpuToks.length ? median(cpuToks) : null, perPromptToken: median(runs.map((r) => r.cpuPrompt)) },
  };
}

/** The held-out text of a file: the first `bytes` bytes of its last 10% (cut at a character), as UTF-8 text. */
export function heldOutText(file: string, bytes: number): string {
  const val = splitTrainVal(readTextData(file)).val;
  let end = Math.min(bytes, val.length);
  while (end > 0 && end < val.length && (val[end] & 0xc0) === 0x80) end--; // not inside a character
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(val.subarray(0, end));
  } catch {
    throw new Error(`${file}: its held-out part is not valid UTF-8, which a tier cannot read as text`);
  }
}

/** Bits per byte of each text's held-out part, through score() (windows of the context, as `stlm eval bpb --tiers`). */
export async function measureBpb(model: LanguageModel, texts: string[], s: BenchSettings, onProgress?: MeasureProgress): Promise<TextBpbFigures[]> {
  const ctx = model.info().contextLength;
  // Windows are checked against the context with tokenize(); an endpoint that cannot tokenize gets windows
  // of context − 1 bytes unchecked (a token is at least a byte for every tokenizer stlm reads).
  const canTokenize = texts.length > 0 && (await model.tokenize('a').then(() => true, () => false));
  const out: TextBpbFigures[] = [];
  for (const file of texts) {
    const text = heldOutText(file, s.textBytes);
    const t0 = performance.now();
    const r = await bitsPerByteOfText(model, text, {
      windowBytes: ctx ? Math.max(1, ctx - 1) : 1024, maxTokens: ctx && canTokenize ? ctx - 1 : undefined,
      onProgress: (done, total) => onProgress?.(`bpb ${file}`, done, total),
    });
    out.push({ text: file, bytes: r.bytes, tokens: r.tokens, bpb: r.bpb, bitsPerToken: r.bitsPerToken, seconds: (performance.now() - t0) / 1000 });
  }
  return out;
}

/** Accuracy on each task file or folder (each file of a folder counts once in its mean). */
export async function measureTasks(model: LanguageModel, tasks: string[], s: BenchSettings, onProgress?: MeasureProgress): Promise<TaskFigures[]> {
  const out: TaskFigures[] = [];
  for (const path of tasks) {
    const results = await evaluateTasks(model, path, { limit: s.limit, seed: s.seed, onProgress: (done, total) => onProgress?.(`tasks ${path}`, done, total) });
    out.push({ path, limit: s.limit ?? null, seed: s.seed ?? null, acc: results.reduce((a, r) => a + r.acc, 0) / results.length, results });
  }
  return out;
}

/**
 * Everything the plan asks for. A text or task the tier cannot score (an endpoint that refuses echo +
 * logprobs, or cannot score a continuation of the empty context) gets a note instead of a figure, and the
 * rest is still measured; the speed runs must succeed.
 */
export async function measureParts(model: LanguageModel, plan: MeasurePlan, s: BenchSettings, onProgress?: MeasureProgress): Promise<MeasuredParts> {
  const notes: string[] = [];
  const sp = plan.speed ? await measureSpeed(model, s, onProgress) : undefined;
  const why = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];
  const bpb: TextBpbFigures[] = [], tasks: TaskFigures[] = [];
  for (const text of plan.texts) {
    try {
      bpb.push(...(await measureBpb(model, [text], s, onProgress)));
    } catch (e) {
      notes.push(`no bits per byte on ${text}: ${why(e)}`);
    }
  }
  for (const path of plan.tasks) {
    try {
      tasks.push(...(await measureTasks(model, [path], s, onProgress)));
    } catch (e) {
      notes.push(`no accuracy on ${path}: ${why(e)}`);
    }
  }
  return { speed: sp?.speed ?? null, cpu: sp?.cpu ?? null, bpb, tasks, notes };
}

/** The energy estimate from CPU seconds per token. */
export function energyFrom(cpu: NonNullable<MeasuredParts['cpu']>, wattsPerCore: number): EnergyEstimate {
  const j = (x: number | null) => (x === null ? null : x * wattsPerCore);
  return { cpuSecondsPerToken: cpu.perToken, cpuSecondsPerPromptToken: cpu.perPromptToken, joulesPerToken: j(cpu.perToken), joulesPerPromptToken: j(cpu.perPromptToken), wattsPerCore, estimate: true };
}

/** Joules per token to US dollars per million tokens at an electricity price. */
export const usdPerMillion = (joulesPerToken: number, usdPerKwh: number): number => (joulesPerToken * 1e6 / 3.6e6) * usdPerKwh;
