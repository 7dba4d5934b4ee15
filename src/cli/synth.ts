/**
 * `stlm synth`: sequence-level distillation's first half. Samples a text corpus from a teacher (a local
 * model file, or an OpenAI-compatible endpoint) and writes it atomically; `stlm train --data` then trains
 * the student on it (a folder mixes it with real text).
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Backend } from '../kernels/backend.js';
import { EndpointTeacher } from '../tiers/teacher.js';
import { type SynthProgress, type TextTeacher, loadLocalTeacher, parsePromptList, synthesizeCorpus } from '../train/synth.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { Progress, formatDuration, log } from './progress.js';

export interface SynthCliOptions {
  teacher?: string;
  tokenizer?: string;
  endpoint?: string;
  endpointModel?: string;
  apiKeyEnv?: string;
  out: string;
  bytes: number;
  prompts?: string;
  seedText?: string;
  maxTokens: number;
  temperature: number;
  seed: number;
  parallel: number;
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${flag}: cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Fails now, not after hours of sampling, when --out cannot be written. */
function checkOut(out: string): void {
  let isDir = false;
  try {
    isDir = statSync(out).isDirectory();
  } catch {
    // does not exist yet: fine
  }
  if (isDir) throw new Error(`--out '${out}' is a directory; give a file name such as corpus.txt`);
  const dir = dirname(resolve(out));
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new Error(`--out '${out}': cannot write to the folder '${dir}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const fmtBytes = (n: number) => n.toLocaleString('en-US');

export async function runSynth(o: SynthCliOptions, makeBackend: () => Promise<Backend>): Promise<void> {
  if (o.teacher === undefined && o.endpoint === undefined) throw new Error('synth: give a teacher: --teacher <model file> or --endpoint <url> --endpoint-model <name>');
  if (o.teacher !== undefined && o.endpoint !== undefined) throw new Error('synth: give --teacher or --endpoint, not both');
  if (o.endpoint === undefined && (o.endpointModel !== undefined || o.apiKeyEnv !== undefined)) throw new Error('synth: --endpoint-model and --api-key-env apply to --endpoint only');
  if (o.endpoint !== undefined && o.endpointModel === undefined) throw new Error('synth: --endpoint needs --endpoint-model <name> (the model the server should run)');
  if (o.endpoint !== undefined && o.tokenizer !== undefined) throw new Error('synth: --tokenizer applies to --teacher only');
  if (o.prompts !== undefined && o.seedText !== undefined) throw new Error('synth: give --prompts or --seed-text, not both');
  checkOut(o.out);
  let prompts: string[] | undefined;
  if (o.prompts !== undefined) {
    prompts = parsePromptList(readText(o.prompts, '--prompts'));
    if (!prompts.length) throw new Error(`--prompts: '${o.prompts}' has no prompts (one per line)`);
  }
  const seedText = o.seedText !== undefined ? readText(o.seedText, '--seed-text') : undefined;
  if (seedText !== undefined && !seedText.trim()) throw new Error(`--seed-text: '${o.seedText}' has no text to draw prompts from`);

  let teacher: TextTeacher;
  if (o.endpoint !== undefined) {
    let apiKey: string | undefined;
    if (o.apiKeyEnv !== undefined) {
      apiKey = process.env[o.apiKeyEnv];
      if (!apiKey) throw new Error(`--api-key-env: the environment variable ${o.apiKeyEnv} is not set`);
    }
    teacher = new EndpointTeacher({ baseUrl: o.endpoint, model: o.endpointModel!, apiKey });
  } else {
    teacher = await loadLocalTeacher(o.teacher!, makeBackend, { tokenizer: o.tokenizer });
  }

  const source = prompts ? `${prompts.length} prompts from ${o.prompts}` : seedText !== undefined ? `prompts drawn from line starts of ${o.seedText}` : 'empty prompts (from BOS)';
  log(`synth: sampling ${fmtBytes(o.bytes)} bytes from ${teacher.name}: ${source}, max ${o.maxTokens} tokens, temperature ${o.temperature}, seed ${o.seed}`);
  const progress = new Progress({
    barFormat: 'bytes {value}/{total} |{bar}| {samples} samples | {bps} B/s | {elapsed} elapsed | ETA {eta}',
    interruptMessage: 'interrupted: finishing the requests in flight and writing the corpus so far (Ctrl-C again to quit without writing)',
  });
  const onProgress = (p: SynthProgress) => {
    const payload = { samples: p.samples, bps: Math.round(p.bytesPerSecond).toLocaleString('en-US'), elapsed: formatDuration(p.elapsedSeconds), eta: p.samples ? formatDuration(p.etaSeconds) : '?' };
    progress.update({
      value: Math.min(p.bytes, p.targetBytes), total: p.targetBytes, payload, quiet: p.samples === 0, force: p.samples === 1 || p.bytes >= p.targetBytes,
      line: () => `${p.samples} samples | ${fmtBytes(p.bytes)}/${fmtBytes(p.targetBytes)} bytes | ${payload.bps} B/s | ${payload.elapsed} elapsed | ETA ${payload.eta}`,
    });
  };
  try {
    const r = await synthesizeCorpus(teacher, {
      bytes: o.bytes, prompts, seedText, maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, parallel: o.parallel,
      onProgress, shouldStop: progress.shouldStop,
    });
    progress.stop();
    if (r.samples === 0) throw new Error('synth: interrupted before the first sample; nothing written');
    await writeFileAtomic(o.out, r.text);
    log(`${r.stoppedEarly ? 'stopped' : 'done'}: ${r.samples} samples, ${fmtBytes(r.bytes)} bytes in ${formatDuration(r.seconds)}`);
    log(`wrote ${o.out}; train a student on it with: stlm train --data ${o.out} --out student.gguf --steps N`);
  } finally {
    progress.close();
    teacher.close?.();
  }
}
