// Made-up bench results (round numbers chosen by hand, not measured) for the recommend, report and
// chart tests: four tiers, one of each kind, with two tasks and one text.
import type { TaskResult } from '../src/eval/tasks.js';
import { type BenchResults, DEFAULT_BENCH_SETTINGS, type TierMeasurement } from '../src/compare/types.js';

const ARC = '/fixtures/eval/arc_easy.jsonl';
const BLIMP = '/fixtures/eval/blimp-dev';
const TEXT = '/fixtures/corpora/tinyshakespeare.txt';

function task(name: string, file: string, acc: number, accStderr: number): TaskResult {
  return { task: name, file, format: name.startsWith('blimp') ? 'blimp' : 'multiple_choice', n: 20, acc, accStderr, seconds: 1 };
}

function tier(o: {
  name: string; tier: TierMeasurement['tier']; provider: TierMeasurement['provider']; memory: number | null; ttft: number; arc: number; blimp: [number, number];
  params: number | null; file: number | null; joules: number | null; cost: [number, number]; bpb: number;
}): TierMeasurement {
  const remote = o.provider === 'openai';
  const tasks = [
    { path: ARC, limit: 20, seed: null, acc: o.arc, results: [task('arc_easy', ARC, o.arc, 0.046)] },
    { path: BLIMP, limit: 20, seed: null, acc: (o.blimp[0] + o.blimp[1]) / 2, results: [task('blimp/a', `${BLIMP}/a.jsonl`, o.blimp[0], 0.1 / Math.SQRT2), task('blimp/b', `${BLIMP}/b.jsonl`, o.blimp[1], 0.1 / Math.SQRT2)] },
  ];
  const quality = (tasks[0].acc + tasks[1].acc) / 2;
  const model = remote ? 'default' : `/models/${o.name}.gguf`;
  return {
    entry: { name: o.name, tier: o.tier, provider: o.provider, model, ...(remote ? { baseUrl: 'http://127.0.0.1:8080/v1' } : {}) },
    name: o.name, tier: o.tier, provider: o.provider, model,
    runsOn: remote ? 'http://127.0.0.1:8080/v1' : o.provider === 'llamacpp' ? 'llama.cpp in this process' : 'this process',
    parameters: o.params, fileBytes: o.file, quantization: remote ? null : 'f32', contextLength: 256, loadMs: 120,
    speed: { promptTokens: 50, generatedTokens: 64, timeToFirstTokenMs: o.ttft, prefillTokensPerS: 2000, decodeTokensPerS: 250, repeats: 3 },
    memory: o.memory === null ? null : { peakRssBytes: o.memory, baseRssBytes: 40e6, ownProcess: true },
    energy: o.joules === null ? null : { cpuSecondsPerToken: o.joules / 10, cpuSecondsPerPromptToken: o.joules / 40, joulesPerToken: o.joules, joulesPerPromptToken: o.joules / 4, wattsPerCore: 10, estimate: true },
    cost: { promptPerMillionUsd: o.cost[0], completionPerMillionUsd: o.cost[1], source: remote ? 'price' : 'energy estimate' },
    bpb: [{ text: TEXT, bytes: 8192, tokens: 8192, bpb: o.bpb, bitsPerToken: o.bpb, seconds: 2 }],
    tasks, quality,
    route: { latencyMs: o.ttft, memoryBytes: o.memory ?? 0, quality },
    notes: [],
  };
}

export function fakeResults(): BenchResults {
  return {
    stlmBench: 1, date: '2026-12-07T06:00:00.000Z', command: 'stlm bench --tiers tiers.yaml', tiersConfig: 'tiers.yaml',
    machine: { cpus: 2, cpuModel: 'Test CPU', totalMemoryBytes: 8e9, node: 'v20.0.0', loadAverage: [1, 1, 1] },
    settings: { ...DEFAULT_BENCH_SETTINGS, texts: [TEXT], tasks: [ARC, BLIMP], limit: 20 },
    tiers: [
      tier({ name: 'tiny', tier: 'tiny', provider: 'local', memory: 61e6, ttft: 3, arc: 0.3, blimp: [0.5, 0.6], params: 886272, file: 3552032, joules: 0.04, cost: [0.00042, 0.0017], bpb: 2.1 }),
      tier({ name: 'stories', tier: 'tiny', provider: 'local', memory: 48e6, ttft: 5, arc: 0.25, blimp: [0.4, 0.5], params: 260000, file: 1100000, joules: 0.03, cost: [0.0003, 0.00125], bpb: 3.2 }),
      tier({ name: 'small', tier: 'small', provider: 'llamacpp', memory: 180e6, ttft: 8, arc: 0.26, blimp: [0.35, 0.45], params: 4_600_000, file: 9_000_000, joules: 0.02, cost: [0.0002, 0.0008], bpb: 14.5 }),
      tier({ name: 'large', tier: 'large', provider: 'openai', memory: null, ttft: 300, arc: 0.3, blimp: [0.55, 0.65], params: null, file: null, joules: null, cost: [0.15, 0.6], bpb: 1.9 }),
    ],
  };
}
