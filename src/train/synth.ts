/**
 * Sequence-level distillation: when only a teacher's text is available (a remote large model behind an
 * OpenAI-compatible endpoint, or a local model file), sample a corpus from it and train the student on
 * that text (`stlm synth`, then `stlm train --data <corpus>`).
 *
 * A `TextTeacher` turns a prompt into a completion (a local model here; any tier, an OpenAI-compatible
 * endpoint included, through `tiers/teacher.ts`). `synthesizeCorpus` asks it for samples until the
 * corpus holds at least the requested bytes. Sample i's prompt and seed depend on i only (prompts are
 * drawn in index order from one seeded RNG, the teacher's seed is seed + i), and the corpus is cut after
 * the first sample that reaches the target, so the text does not depend on how many requests run at once.
 */
import { generate } from '../generate/generate.js';
import type { Backend } from '../kernels/backend.js';
import { modelFromBundle } from '../models/architectures.js';
import { type LoadedModel, loadModel } from '../io/model-file.js';
import { Llama } from '../models/llama.js';
import type { CausalLM } from '../models/model.js';
import { Graph } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';

export interface CompletionOptions {
  /** Tokens to generate at most. */
  maxTokens: number;
  /** Softmax temperature; 0 = greedy. */
  temperature: number;
  /** Sampling seed of this request. */
  seed: number;
}

/** A model that continues a prompt, seen only through its text. */
export interface TextTeacher {
  /** A short description for logs (the model file, or the endpoint and model name). */
  readonly name: string;
  /** The completion of `prompt` (without the prompt). */
  complete(prompt: string, o: CompletionOptions): Promise<string>;
  /** Frees what the teacher holds (model weights on a backend). */
  close?(): void;
}

/**
 * A local model (anything `loadModel` opens, loaded with keepQuantized so quantized files run quantized),
 * sampled by stlm's own generation loop with plain temperature sampling (no top-k/top-p/min-p truncation,
 * so the corpus follows the teacher's distribution at that temperature).
 */
export class LocalTeacher implements TextTeacher {
  private readonly model: CausalLM;
  private readonly addBos: boolean;

  constructor(private readonly loaded: LoadedModel, backend: Backend, readonly name = 'local model') {
    this.model = modelFromBundle(new Graph(backend), loaded);
    this.addBos = !this.model.ownStart && (loaded.vocab.addBos ?? false);
  }

  async complete(prompt: string, o: CompletionOptions): Promise<string> {
    const options = { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, addBos: this.addBos };
    return generate(this.model, this.loaded.tokenizer, prompt, options).text;
  }

  close(): void {
    if (this.model instanceof Llama) for (const q of this.model.quantized.values()) q.dispose();
  }
}

/**
 * A LocalTeacher from a model file, on a backend of its own made by `makeBackend` (only once the file has
 * loaded); close() frees the weights and disposes that backend.
 */
export async function loadLocalTeacher(path: string, makeBackend: () => Promise<Backend>, o: { tokenizer?: string } = {}): Promise<TextTeacher> {
  const loaded = await loadModel(path, { tokenizer: o.tokenizer, keepQuantized: true });
  const be = await makeBackend();
  let teacher: LocalTeacher;
  try {
    teacher = new LocalTeacher(loaded, be, path);
  } catch (e) {
    be.dispose();
    throw e;
  }
  return {
    name: teacher.name,
    complete: (prompt, c) => teacher.complete(prompt, c),
    close: () => {
      try {
        teacher.close();
      } finally {
        be.dispose();
      }
    },
  };
}

/** A prompt list as text: one prompt per line, blank lines skipped. */
export function parsePromptList(text: string): string[] {
  return text.split(/\r?\n/).filter((l) => l.trim() !== '');
}

export interface SynthProgress {
  samples: number;
  bytes: number;
  targetBytes: number;
  elapsedSeconds: number;
  bytesPerSecond: number;
  etaSeconds: number;
}

export interface SynthOptions {
  /** Stop once the corpus holds at least this many UTF-8 bytes. */
  bytes: number;
  /**
   * Where prompts come from: a list used in order (cycled), seed text whose lines give prompt starts
   * (a random non-blank line's first 1 to `promptWords` words), or neither (every prompt empty: the
   * teacher starts from BOS).
   */
  prompts?: string[];
  seedText?: string;
  /** Most words of a seed-text line a prompt takes (default 4). */
  promptWords?: number;
  /** Tokens per completion (default 256). */
  maxTokens?: number;
  /** Default 1: the teacher's own distribution. */
  temperature?: number;
  /** Seeds the prompt choice; sample i asks the teacher with seed + i (default 1). */
  seed?: number;
  /** Requests in flight at once (default 1; a remote endpoint gains from several). */
  parallel?: number;
  /** Empty completions are left out; give up after this many in a row (default 20). */
  maxEmptyInARow?: number;
  onProgress?: (p: SynthProgress) => void;
  /** Polled before each batch of requests; true ends the corpus early with the samples so far. */
  shouldStop?: () => boolean;
}

export interface SynthResult {
  /** The corpus: each sample is prompt + completion followed by a blank line. */
  text: string;
  samples: number;
  bytes: number;
  seconds: number;
  /** True when shouldStop ended it before the target. */
  stoppedEarly: boolean;
}

/** Sample i as it appears in the corpus: prompt + completion, its last line ended, then a blank line. */
export function formatSample(prompt: string, completion: string): string {
  const s = prompt + completion;
  return s + (s.endsWith('\n') ? '\n' : '\n\n');
}

/** Prompt starts from seed text: the non-blank lines, each cut to its first 1..maxWords words at random. */
export function promptsFromSeedText(seedText: string, rng: Rng, maxWords = 4): () => string {
  const lines = seedText.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (!lines.length) throw new Error('seed text: it has no non-blank lines to draw prompts from');
  return () => {
    const line = lines[rng.int(lines.length)];
    const words = 1 + rng.int(maxWords);
    return new RegExp(`^\\s*\\S+(?:\\s+\\S+){0,${words - 1}}`).exec(line)![0];
  };
}

const utf8 = new TextEncoder();

/** Samples a corpus of at least `o.bytes` bytes from the teacher (see the module comment). */
export async function synthesizeCorpus(teacher: TextTeacher, o: SynthOptions): Promise<SynthResult> {
  if (!(Number.isSafeInteger(o.bytes) && o.bytes > 0)) throw new Error(`synth: bytes must be a positive integer, got ${o.bytes}`);
  const maxTokens = o.maxTokens ?? 256, temperature = o.temperature ?? 1, seed = o.seed ?? 1, parallel = o.parallel ?? 1;
  const maxEmpty = o.maxEmptyInARow ?? 20, promptWords = o.promptWords ?? 4;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new Error(`synth: maxTokens must be an integer >= 1, got ${maxTokens}`);
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new Error(`synth: temperature must be a finite number >= 0, got ${temperature}`);
  if (!Number.isSafeInteger(seed)) throw new Error(`synth: seed must be an integer, got ${seed}`);
  if (!(Number.isInteger(parallel) && parallel >= 1)) throw new Error(`synth: parallel must be an integer >= 1, got ${parallel}`);
  if (!(Number.isInteger(promptWords) && promptWords >= 1)) throw new Error(`synth: promptWords must be an integer >= 1, got ${promptWords}`);
  if (o.prompts && o.seedText !== undefined) throw new Error('synth: give prompts or seed text, not both');
  let nextPrompt: (i: number) => string;
  if (o.prompts) {
    const prompts = o.prompts;
    if (!prompts.length) throw new Error('synth: the prompt list is empty');
    nextPrompt = (i) => prompts[i % prompts.length];
  } else if (o.seedText !== undefined) {
    const draw = promptsFromSeedText(o.seedText, new Rng(seed), promptWords);
    nextPrompt = () => draw();
  } else {
    nextPrompt = () => '';
  }

  const parts: string[] = [];
  let bytes = 0, emptyInARow = 0, stoppedEarly = false;
  /** Samples requested so far: sample i is the i-th request, whether or not its completion was kept. */
  let issued = 0;
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const report = () => {
    const s = elapsed(), rate = s > 0 ? bytes / s : 0;
    o.onProgress?.({ samples: parts.length, bytes, targetBytes: o.bytes, elapsedSeconds: s, bytesPerSecond: rate, etaSeconds: rate > 0 ? Math.max(0, o.bytes - bytes) / rate : Infinity });
  };
  report();
  let lastYield = performance.now();
  while (bytes < o.bytes) {
    // A local teacher never waits on I/O: yield to the event loop now and then so signal handlers
    // (shouldStop's Ctrl-C) and progress timers get to run.
    if (performance.now() - lastYield > 50) {
      await new Promise<void>((r) => setTimeout(r, 0));
      lastYield = performance.now();
    }
    if (o.shouldStop?.()) {
      stoppedEarly = true;
      break;
    }
    const first = issued;
    issued += parallel;
    // Prompts are drawn in index order before the requests start, so they never depend on timing.
    const batch = Array.from({ length: parallel }, (_, k) => ({ prompt: nextPrompt(first + k), seed: seed + first + k }));
    const completions = await Promise.all(batch.map((b) => teacher.complete(b.prompt, { maxTokens, temperature, seed: b.seed })));
    for (let k = 0; k < batch.length && bytes < o.bytes; k++) {
      const completion = completions[k];
      // An empty completion adds no teacher text: it is left out (a teacher that only answers empty is an error).
      if (completion === '') {
        if (++emptyInARow >= maxEmpty) throw new Error(`synth: the teacher ${teacher.name} returned ${emptyInARow} empty completions in a row`);
        continue;
      }
      emptyInARow = 0;
      const sample = formatSample(batch[k].prompt, completion);
      parts.push(sample);
      bytes += utf8.encode(sample).length;
    }
    report();
  }
  return { text: parts.join(''), samples: parts.length, bytes, seconds: elapsed(), stoppedEarly };
}
