/**
 * One decode-vs-llamacpp measurement in a process of its own, so that the peak RSS it reports belongs
 * to one engine running one model file and nothing else. Prints one JSON line (a WorkerResult) on
 * stdout; progress goes to stderr.
 *
 *   node dist/bench/lib/decode-worker.js --engine stlm|stlm-wasm|llama.cpp --model <file.gguf> [--threads 2]
 *     [--repeats 3] [--prompt 32] [--decode 128] [--prefill 512] [--kv f16|f32] [--profile]
 *
 * Both engines get the same token ids (stlm's tokenizer, read from the file's header, on a fixed text)
 * and a KV cache of the same number of positions: min(model context, prefill length). Each repeat is a
 * greedy decode (prompt, then `decode` single-token steps, timed) and a prefill of `prefill` tokens into
 * an empty cache (timed); the result is the median over repeats, after one untimed warm-up of each.
 */
import { readFileSync, statSync } from 'node:fs';
import { readGgufHeader } from '../../src/formats/gguf.js';
import { createWasmBackend } from '../../src/kernels/index.js';
import { formatProfile, profiled } from '../../src/kernels/profile.js';
import { headDim, type LlamaConfig } from '../../src/models/config.js';
import { configFromGguf, loadModel } from '../../src/io/model-file.js';
import { kvCacheFor, Llama } from '../../src/models/llama.js';
import { Graph } from '../../src/tensor/tensor.js';
import { tokenizerFromVocab } from '../../src/tokenizers/from-vocab.js';
import { vocabFromGguf } from '../../src/io/vocab-gguf.js';

export interface WorkerResult {
  engine: 'stlm' | 'stlm-wasm' | 'llama.cpp';
  decode_tps: number;
  prefill_tps: number;
  /** Tokens the prefill timing used (min(ctx, asked)). */
  prefill_tokens: number;
  /** Peak resident set of the whole process (VmHWM), bytes. */
  peak_rss_bytes: number;
  /** Peak resident set before the first long prefill: loading the model and decoding after a 32-token prompt. */
  decode_rss_bytes: number;
  /** Resident set once the engine is up (stlm: backend and its worker threads) and before the model loads: the runtime's floor. */
  runtime_rss_bytes: number;
  /** Bytes of the KV cache this engine allocated (both K and V, every layer). */
  kv_bytes: number;
  kv_type: 'f32' | 'f16';
  /** The greedy continuation (the first token comes from the prompt pass), to compare engines. */
  tokens: number[];
  /** stlm: bytes of WebAssembly memory after loading, after the decode warm-up, and at the end (after prefills). */
  wasm_heap_bytes?: { loaded: number; decode: number; end: number };
  /** Engine notes (backend name, flash attention, …). */
  notes: string[];
  /** Kernel time per decode step and per prefill (ms by backend method), with --profile (stlm only). */
  profile?: { decode: Record<string, number>; prefill: Record<string, number> };
}

interface Options {
  engine: string;
  model: string;
  threads: number;
  repeats: number;
  prompt: number;
  decode: number;
  prefill: number;
  kv: 'f16' | 'f32';
  profile: boolean;
}

interface Timings {
  decodeSeconds: number[];
  prefillSeconds: number[];
  tokens: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Any text will do for speed; a real one keeps SentencePiece vocabularies at realistic token lengths. */
const TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. ' +
  'One day, she saw a big red ball under a tree. She ran to the ball and kicked it as hard as she could. ' +
  'The ball flew over the fence and into the garden of an old man who lived next door. ';

function argValue(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
}

function parseOptions(argv: string[]): Options {
  const kv = argValue(argv, '--kv', 'f16');
  if (kv !== 'f16' && kv !== 'f32') throw new Error(`--kv must be f16 or f32, got '${kv}'`);
  return {
    engine: argValue(argv, '--engine', 'stlm'), model: argValue(argv, '--model', ''), threads: Number(argValue(argv, '--threads', '2')),
    repeats: Number(argValue(argv, '--repeats', '3')), prompt: Number(argValue(argv, '--prompt', '32')), decode: Number(argValue(argv, '--decode', '128')),
    prefill: Number(argValue(argv, '--prefill', '512')), kv, profile: argv.includes('--profile'),
  };
}

/** The model's config and `n` token ids of the fixed text, from the GGUF header alone (no weights read). */
async function configAndIds(path: string, n: number): Promise<{ config: LlamaConfig; ids: Int32Array }> {
  const file = await readGgufHeader(path);
  const tokenizer = tokenizerFromVocab(vocabFromGguf(file), path);
  let text = TEXT;
  let ids = tokenizer.encode(text);
  while (ids.length < n) {
    text += TEXT;
    ids = tokenizer.encode(text);
  }
  return { config: configFromGguf(file), ids: ids.slice(0, n) };
}

function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

const log = (s: string) => process.stderr.write(`  [worker] ${s}\n`);

// ---- stlm ---------------------------------------------------------------------------------------

async function runStlm(o: Options, config: LlamaConfig, promptIds: Int32Array, prefillIds: Int32Array, positions: number): Promise<WorkerResult> {
  // 'stlm': the backend as it runs by default (native kernels for the decode products where built);
  // 'stlm-wasm': pure WebAssembly, what browsers and other CPUs get.
  const inner = await createWasmBackend({ threads: o.threads, native: o.engine === 'stlm' });
  const prof = o.profile ? profiled(inner) : undefined;
  const graph = new Graph(prof?.backend ?? inner);
  const runtimeRss = process.memoryUsage().rss;
  // keepQuantized: Q8_0/Q4_0 matrices go from the file to backend memory tensor by tensor, no f32 copy.
  const model = Llama.fromModel(graph, await loadModel(o.model, { keepQuantized: true }));
  const cache = kvCacheFor(graph, config, positions);

  /** Prompt pass (untimed), then `steps` single-token greedy steps (timed). */
  const decodeRun = (steps: number, afterPrompt?: () => void): { seconds: number; tokens: number[] } => {
    cache.reset();
    let logits = model.forward(promptIds, cache).toArray();
    graph.release();
    afterPrompt?.();
    const tokens = [argmax(logits)];
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      logits = model.forward(Int32Array.of(tokens[tokens.length - 1]), cache).toArray();
      graph.release();
      tokens.push(argmax(logits));
    }
    return { seconds: (performance.now() - t0) / 1000, tokens };
  };
  const prefillRun = (): number => {
    cache.reset();
    const t0 = performance.now();
    model.forward(prefillIds, cache).toArray();
    graph.release();
    return (performance.now() - t0) / 1000;
  };

  const heapLoaded = inner.memoryBytes();
  decodeRun(Math.min(16, o.decode));
  const heapDecode = inner.memoryBytes();
  const decodeRss = peakRss();
  prefillRun();
  const t = timeRepeats(o.repeats, () => decodeRun(o.decode), prefillRun);
  const profile = prof ? profileStlm(prof.profile, decodeRun, prefillRun) : undefined;
  const kvDim = config.nKvHeads * headDim(config);
  return {
    ...summarize(o, t, prefillIds.length, decodeRss, runtimeRss), engine: o.engine as 'stlm' | 'stlm-wasm', kv_bytes: 2 * config.nLayers * positions * kvDim * 4, kv_type: 'f32',
    wasm_heap_bytes: { loaded: heapLoaded, decode: heapDecode, end: inner.memoryBytes() },
    notes: [`backend ${inner.name}${inner.native ? ` + native ${inner.native}` : ''}, ${o.threads} threads`], profile,
  };
}

function timeRepeats(repeats: number, decode: () => { seconds: number; tokens: number[] }, prefill: () => number): Timings {
  const t: Timings = { decodeSeconds: [], prefillSeconds: [], tokens: [] };
  for (let r = 0; r < repeats; r++) {
    const d = decode();
    t.decodeSeconds.push(d.seconds);
    t.tokens = d.tokens;
    t.prefillSeconds.push(prefill());
    log(`repeat ${r + 1}/${repeats}: decode ${d.seconds.toFixed(3)} s, prefill ${t.prefillSeconds[r].toFixed(3)} s`);
  }
  return t;
}

/**
 * Kernel milliseconds by backend method, per decode step (over 32 steps) and per prefill, plus '(wall)':
 * the step's whole time, so that wall minus the kernels is what JavaScript spends between them.
 */
function profileStlm(
  p: Map<string, { calls: number; ms: number }>, decode: (steps: number, afterPrompt: () => void) => { seconds: number }, prefill: () => number,
): { decode: Record<string, number>; prefill: Record<string, number> } {
  const take = (per: number, wallSeconds: number) => {
    log(`profile (per ${per === 1 ? 'prefill' : 'decode step'}, wall ${((wallSeconds * 1000) / per).toFixed(2)} ms):\n${formatProfile(p, per)}`);
    const out = Object.fromEntries([...p].map(([k, e]) => [k, e.ms / per]));
    out['(wall)'] = (wallSeconds * 1000) / per;
    p.clear();
    return out;
  };
  const d = decode(32, () => p.clear()); // the prompt pass is not a decode step
  const perStep = take(32, d.seconds);
  p.clear();
  const seconds = prefill();
  return { decode: perStep, prefill: take(1, seconds) };
}

/**
 * The process's peak resident set so far, bytes: /proc/self/status VmHWM, the high-water mark of this
 * process's own memory map. getrusage's maxRSS (process.resourceUsage) is no good here: Linux carries
 * it over fork and exec, so a child starts at its parent's resident size.
 */
function peakRss(): number {
  try {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // not Linux: fall back to getrusage
  }
  return process.resourceUsage().maxRSS * 1024;
}

function summarize(o: Options, t: Timings, prefillTokens: number, decodeRss: number, runtimeRss: number): Omit<WorkerResult, 'engine' | 'kv_bytes' | 'kv_type' | 'notes'> {
  return {
    decode_tps: o.decode / median(t.decodeSeconds), prefill_tps: prefillTokens / median(t.prefillSeconds), prefill_tokens: prefillTokens,
    peak_rss_bytes: peakRss(), decode_rss_bytes: decodeRss, runtime_rss_bytes: runtimeRss, tokens: t.tokens,
  };
}

// ---- llama.cpp (node-llama-cpp) ------------------------------------------------------------------

/** The subset of node-llama-cpp 3.21's API used here (its own types would tie the build to the package). */
interface NlcSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options: Record<string, unknown>): AsyncGenerator<number, void, void>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
}
interface NlcContext {
  getSequence(): NlcSequence;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly flashAttention: boolean | 'auto';
  readonly currentThreads: number;
}
interface NlcModel {
  createContext(o: Record<string, unknown>): Promise<NlcContext>;
}
interface NlcLlama {
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<NlcModel>;
  readonly buildType: string;
}

async function runLlamaCpp(o: Options, config: LlamaConfig, promptIds: Int32Array, prefillIds: Int32Array, positions: number): Promise<WorkerResult> {
  const nlc = (await import('node-llama-cpp')) as unknown as { getLlama(o: Record<string, unknown>): Promise<NlcLlama> };
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false, maxThreads: o.threads });
  const runtimeRss = process.memoryUsage().rss;
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
  // ggml type ids: GGML_TYPE_F32 = 0, F16 = 1 (F16 is llama.cpp's default).
  const kvType = o.kv === 'f32' ? 0 : 1;
  const ctx = await model.createContext({
    contextSize: positions, batchSize: positions, sequences: 1, threads: { ideal: o.threads, min: o.threads },
    experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
  });
  const seq = ctx.getSequence();
  const prompt = [...promptIds];

  const decodeRun = async (steps: number): Promise<{ seconds: number; tokens: number[] }> => {
    await seq.clearHistory();
    const it = seq.evaluate(prompt, { temperature: 0 });
    const tokens = [(await it.next()).value as number]; // the prompt pass and the first token: untimed
    const t0 = performance.now();
    while (tokens.length <= steps) {
      const r = await it.next();
      if (r.done) throw new Error('llama.cpp stopped generating early');
      tokens.push(r.value);
    }
    const seconds = (performance.now() - t0) / 1000;
    await it.return();
    return { seconds, tokens };
  };
  const prefillRun = async (): Promise<number> => {
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens([...prefillIds]);
    return (performance.now() - t0) / 1000;
  };

  await decodeRun(Math.min(16, o.decode));
  const decodeRss = peakRss();
  await prefillRun();
  const t: Timings = { decodeSeconds: [], prefillSeconds: [], tokens: [] };
  for (let r = 0; r < o.repeats; r++) {
    const d = await decodeRun(o.decode);
    t.decodeSeconds.push(d.seconds);
    t.tokens = d.tokens;
    t.prefillSeconds.push(await prefillRun());
    log(`repeat ${r + 1}/${o.repeats}: decode ${d.seconds.toFixed(3)} s, prefill ${t.prefillSeconds[r].toFixed(3)} s`);
  }
  const kvDim = config.nKvHeads * headDim(config);
  return {
    ...summarize(o, t, prefillIds.length, decodeRss, runtimeRss), engine: 'llama.cpp', kv_bytes: 2 * config.nLayers * ctx.contextSize * kvDim * (o.kv === 'f32' ? 4 : 2), kv_type: o.kv,
    notes: [`llama.cpp ${llama.buildType} build, threads ${ctx.currentThreads}, context ${ctx.contextSize}, batch ${ctx.batchSize}, flash attention ${String(ctx.flashAttention)}`],
  };
}

// ---- entry --------------------------------------------------------------------------------------

async function run(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (!o.model) throw new Error('--model <file.gguf> is required');
  const { config, ids } = await configAndIds(o.model, Math.max(o.prompt, o.prefill));
  // One cache size for both engines and both timings: the prefill length, or the context if shorter.
  const positions = Math.min(config.ctx, o.prefill);
  if (o.prompt + o.decode > positions) throw new Error(`${o.prompt} + ${o.decode} positions exceed the cache's ${positions}`);
  const promptIds = ids.slice(0, o.prompt);
  const prefillIds = ids.slice(0, positions);
  log(`${o.engine} ${o.model} (${(statSync(o.model).size / 1e6).toFixed(1)} MB), ${o.threads} threads, cache ${positions} positions`);
  const result = o.engine === 'stlm' || o.engine === 'stlm-wasm' ? await runStlm(o, config, promptIds, prefillIds, positions)
    : o.engine === 'llama.cpp' ? await runLlamaCpp(o, config, promptIds, prefillIds, positions)
    : undefined;
  if (!result) throw new Error(`--engine must be stlm, stlm-wasm or llama.cpp, got '${o.engine}'`);
  process.stdout.write(JSON.stringify(result) + '\n');
  // Worker threads (stlm's pool) and the llama.cpp addon would keep the process alive.
  process.exit(0);
}

await run();
