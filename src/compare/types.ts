/**
 * What `stlm bench` measures of each tier, as data: the JSON it writes (and reads back with --from, and
 * `stlm recommend` reads), the markdown table and the charts are all drawn from these types.
 */
import type { TaskResult } from '../eval/tasks.js';
import type { MeasuredFigures } from '../tiers/measured.js';
import type { TierEntry } from '../tiers/config.js';
import type { LanguageModelInfo } from '../tiers/types.js';

/** How a bench run measures (the same for every tier, so the tiers compare). */
export interface BenchSettings {
  /** The prompt of the speed runs (cut to fit a tier's context). */
  prompt: string;
  /** Tokens generated per speed run (greedy). */
  maxTokens: number;
  /** Speed runs per tier after one warm-up; the medians are reported. */
  repeats: number;
  /** Held-out text files for bits per byte (the last 10% of each, as `stlm eval bpb`'s val split). */
  texts: string[];
  /** Bytes of each text's held-out part that are scored (its first ones). */
  textBytes: number;
  /** Task files or folders (lm-evaluation-harness scoring, src/eval/tasks.ts). */
  tasks: string[];
  /** At most this many items per task file. */
  limit?: number;
  /** With limit: a seeded sample of the items instead of the first ones. */
  seed?: number;
  /** Watts one busy core draws, for the energy estimate (CPU seconds × this). */
  wattsPerCore: number;
  /** Electricity price, for the estimated cost of a local tier. */
  usdPerKwh: number;
}

export const DEFAULT_BENCH_SETTINGS: BenchSettings = {
  prompt: 'Once upon a time, in a small village by the sea, there lived an old fisherman and his wife. Every morning he went down to the water with his nets, and every evening he came home and told her what he had seen.',
  maxTokens: 64,
  repeats: 3,
  texts: [],
  textBytes: 8192,
  tasks: [],
  wattsPerCore: 10,
  usdPerKwh: 0.15,
};

/** Speed of greedy generation from the bench prompt (medians over the repeats). */
export interface SpeedFigures {
  promptTokens: number;
  generatedTokens: number;
  /** From the request to its first text (prefill and the first token; for a remote tier, the round trip too). */
  timeToFirstTokenMs: number;
  /** Prompt tokens / time to first token. */
  prefillTokensPerS: number;
  /** Generated tokens after the first / the time after the first; null when fewer than 2 tokens came. */
  decodeTokensPerS: number | null;
  repeats: number;
}

/** Memory on this machine. */
export interface MemoryFigures {
  /** Peak resident set size of the process that ran only this tier (the child's own, `process.resourceUsage().maxRSS`). */
  peakRssBytes: number;
  /** Its resident set size before the model was opened (Node and stlm's code, no model): what the model adds is the difference. */
  baseRssBytes: number;
  /** Whether the tier ran in a child process of its own (else the numbers include whatever else the process held). */
  ownProcess: boolean;
}

/** An estimate from CPU time, never a measurement of power. */
export interface EnergyEstimate {
  /** CPU seconds (all threads, user + system) per generated token after the first, and per prompt token. */
  cpuSecondsPerToken: number | null;
  cpuSecondsPerPromptToken: number | null;
  /** cpuSecondsPerToken × wattsPerCore. */
  joulesPerToken: number | null;
  joulesPerPromptToken: number | null;
  wattsPerCore: number;
  estimate: true;
}

export interface TextBpbFigures {
  /** The text file, as named on the command line. */
  text: string;
  bytes: number;
  tokens: number;
  bpb: number;
  bitsPerToken: number;
  seconds: number;
}

/** Results on one --tasks argument (a file, or a folder of files). */
export interface TaskFigures {
  /** The --tasks argument as given. */
  path: string;
  limit: number | null;
  seed: number | null;
  /** Mean accuracy over its files (each file counts once). */
  acc: number;
  results: TaskResult[];
}

/** Everything measured of one tier. */
export interface TierMeasurement {
  /** The tiers config entry measured (a later run reuses these figures only for the same entry). */
  entry: TierEntry;
  name: string;
  tier: TierEntry['tier'];
  provider: TierEntry['provider'];
  /** The model file (local, llamacpp) or the endpoint's model name (openai). */
  model: string;
  runsOn: string;
  parameters: number | null;
  fileBytes: number | null;
  quantization: string | null;
  contextLength: number | null;
  /** Milliseconds to open the tier (read and set up the weights; for a remote tier, nothing is loaded). */
  loadMs: number;
  speed: SpeedFigures | null;
  /** null for a remote tier: nothing is loaded on this machine. */
  memory: MemoryFigures | null;
  /** null for a remote tier: its CPU time is spent elsewhere. */
  energy: EnergyEstimate | null;
  /** US dollars per million tokens: a remote tier's prices, or a local tier's electricity at usdPerKwh (an estimate). */
  cost: { promptPerMillionUsd: number; completionPerMillionUsd: number; source: 'price' | 'energy estimate' } | null;
  bpb: TextBpbFigures[];
  tasks: TaskFigures[];
  /** Mean of the tasks' accuracies (each --tasks argument once); null without tasks. */
  quality: number | null;
  /** The figures the router reads (tiers/measured.ts): time to first token, peak memory here, quality. */
  route: MeasuredFigures;
  /** What could not be measured, and why (e.g. an endpoint that cannot score). */
  notes: string[];
}

export interface BenchResults {
  /** Format of this file. */
  stlmBench: 1;
  date: string;
  command: string;
  /** The tiers config measured. */
  tiersConfig: string;
  machine: { cpus: number; cpuModel: string; totalMemoryBytes: number; node: string; loadAverage: number[] };
  settings: BenchSettings;
  tiers: TierMeasurement[];
}

/** A tier's description from its opened model. */
export function describeTier(entry: TierEntry, info: LanguageModelInfo): Pick<TierMeasurement, 'name' | 'tier' | 'provider' | 'model' | 'runsOn' | 'parameters' | 'fileBytes' | 'quantization' | 'contextLength'> {
  return {
    name: entry.name, tier: entry.tier, provider: entry.provider, model: entry.model, runsOn: info.runsOn,
    parameters: info.parameters ?? null, fileBytes: info.fileBytes ?? null, quantization: info.quantization ?? null,
    contextLength: info.contextLength ?? entry.contextLength ?? null,
  };
}
