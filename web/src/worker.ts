/**
 * The model worker: stlm's engine on the WebAssembly backend, off the page's thread. It holds one model
 * (the embedded one, a dropped file, or a trained one) and runs one job at a time: load, generate
 * (streaming text) or train (streaming steps and samples, then the model as GGUF bytes). Long jobs yield
 * between tokens and steps so a `stop` message is seen at once.
 */
/// <reference lib="webworker" />
import { generateSteps } from '../../src/generate/generate.js';
import { modelToGguf } from '../../src/io/gguf-model.js';
import { type ModelHandle, openModel } from '../../src/io/open.js';
import { createWasmBackend, type WasmBackend } from '../../src/kernels/wasm/backend.js';
import { architectureOf, createModel } from '../../src/models/architectures.js';
import type { CausalLM } from '../../src/models/model.js';
import { tokenizerFromVocab } from '../../src/tokenizers/from-vocab.js';
import { type ModelFactory, type TrainableModel, train } from '../../src/train/trainer.js';
import type { DroppedFile, FromWorker, SamplingSettings, ToWorker, TrainSettings } from './protocol.js';
import { playgroundTrainOptions } from './train-options.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

let backend: WasmBackend | undefined;
let handle: ModelHandle | undefined;
let stopRequested = false;
let sampleRequested = false;

/** Lets queued messages (stop, sample) run: a task boundary without setTimeout's 4 ms clamp. */
const channel = new MessageChannel();
const yieldToMessages = () => new Promise<void>((resolve) => {
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(null);
});

/** One line for the page: the engine's message, with what to do when the page ran out of memory. */
function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError && /memory|allocat|grow|Array buffer/i.test(msg)) {
    return `the model does not fit in this page's memory (WebAssembly memory is limited to 4 GiB per page; this page holds ${mib(backend?.memoryBytes() ?? 0)}): ${msg}`;
  }
  return msg;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

async function load(m: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  if (!backend) throw new Error('the engine is not started');
  let bytes: Uint8Array, name: string, tokenizerBytes: Uint8Array | undefined;
  if ('url' in m) {
    const res = await fetch(m.url);
    if (!res.ok) throw new Error(`cannot fetch ${m.name}: HTTP ${res.status}`);
    bytes = new Uint8Array(await res.arrayBuffer());
    name = m.name;
  } else {
    ({ model: { bytes, name }, tokenizer: tokenizerBytes } = pickModelFile(m.files));
  }
  // The new model opens before the old one goes: a file that is not a model leaves the old one in use.
  const opened = await openModel(bytes, { backend, name, tokenizerBytes });
  handle?.dispose();
  handle = opened;
  const arch = architectureOf(handle.config);
  post({
    type: 'loaded', memoryBytes: backend.memoryBytes(),
    info: { name, format: handle.format, architecture: arch.name, parameters: handle.parameters, vocabSize: handle.config.vocabSize, ctx: handle.config.ctx },
  });
}

/** Of the dropped files, the model and (for a llama2.c checkpoint) the tokenizer file beside it. */
function pickModelFile(files: DroppedFile[]): { model: DroppedFile; tokenizer?: Uint8Array } {
  if (files.length === 0) throw new Error('no file was given');
  if (files.length === 1) return { model: files[0] };
  // Two files: a llama2.c checkpoint and its tokenizer.bin (named tokenizer*.bin or tok*.bin).
  const isTokenizer = (f: DroppedFile) => /^tok(enizer)?[^/]*\.bin$/i.test(f.name);
  const tokenizers = files.filter(isTokenizer), models = files.filter((f) => !isTokenizer(f));
  if (files.length !== 2 || tokenizers.length !== 1 || models.length !== 1) {
    throw new Error(`give one model file, or a llama2.c checkpoint with its tokenizer (tok*.bin or tokenizer.bin); got ${files.map((f) => f.name).join(', ')}`);
  }
  return { model: models[0], tokenizer: tokenizers[0].bytes };
}

async function runGenerate(prompt: string, s: SamplingSettings): Promise<void> {
  if (!handle || !backend) throw new Error('no model is loaded');
  const tokens: number[] = [];
  const t0 = performance.now();
  let tFirst = 0;
  const it = generateSteps(handle.model, handle.tokenizer, prompt, {
    maxTokens: s.maxTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP,
    repetitionPenalty: s.repetitionPenalty, seed: s.seed, stop: s.stop, addBos: handle.addBos,
    onToken: (id) => {
      if (tokens.length === 0) tFirst = performance.now();
      tokens.push(id);
    },
  });
  let text = '', finishReason = 'stopped', stopped = false, lastYield = performance.now();
  for (let r = it.next(); ; r = it.next()) {
    if (r.done) {
      finishReason = r.value.finishReason;
      text = r.value.text;
      break;
    }
    post({ type: 'text', text: r.value });
    text += r.value;
    if (performance.now() - lastYield > 25) {
      await yieldToMessages();
      lastYield = performance.now();
      if (stopRequested) {
        it.return(undefined as never); // runs the loop's finally: the session is freed
        stopped = true;
        break;
      }
    }
  }
  const tEnd = performance.now();
  post({
    type: 'generated',
    stats: {
      tokens, text, finishReason, stopped, memoryBytes: backend.memoryBytes(),
      timeToFirstTokenMs: tokens.length ? tFirst - t0 : 0,
      tokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / ((tEnd - tFirst) / 1000) : 0,
    },
  });
}

async function runTrain(s: TrainSettings): Promise<void> {
  if (!backend) throw new Error('the engine is not started');
  const be = backend;
  const options = playgroundTrainOptions(s);
  const vocab = options.vocab;
  const tokenizer = tokenizerFromVocab(vocab, 'byte');
  let model: CausalLM | undefined;
  const factory: ModelFactory<TrainableModel> = (g, c, weights, seed) => (model = createModel(g, c, { weights, seed }));
  const sample = () => {
    if (!model) return;
    const r = [...generateSteps(model, tokenizer, s.samplePrompt, { maxTokens: 120, temperature: 0.8, seed: s.seed })].join('');
    post({ type: 'sample', step: lastStep, text: s.samplePrompt + r });
  };
  let lastStep = 0, lastTokensPerSecond = 0, lastSampleAt = performance.now();
  const r = await train(be, {
    ...options,
    log: (line) => post({ type: 'log', line }),
    onStep: (st) => {
      lastStep = st.step;
      lastTokensPerSecond = st.tokensPerSecond;
      post({ type: 'step', step: { step: st.step, totalSteps: st.totalSteps, loss: st.loss, valBpb: st.valBpb, tokensPerSecond: st.tokensPerSecond, elapsedSeconds: st.elapsedSeconds, memoryBytes: be.memoryBytes() } });
      // A sample when asked, and one every 15 seconds of training.
      if (sampleRequested || performance.now() - lastSampleAt > 15_000) {
        sampleRequested = false;
        lastSampleAt = performance.now();
        sample();
      }
    },
    shouldStop: () => stopRequested,
  }, factory);
  lastStep = r.steps;
  sample();
  const gguf = modelToGguf({ config: r.model.config, weights: r.model.weights(), vocab }, { name: 'stlm playground' });
  post({ type: 'trained', gguf, steps: r.steps, finalValBpb: r.finalValBpb, stopped: r.stoppedEarly, seconds: r.seconds, tokensPerSecond: lastTokensPerSecond }, [gguf.buffer]);
  r.graph.release();
  for (const t of r.model.params.values()) be.free(t.buf);
}

/** Jobs run one at a time, in order; `stop` and `sample` act on the running one. */
let queue: Promise<void> = Promise.resolve();

scope.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === 'stop') {
    stopRequested = true;
    return;
  }
  if (m.type === 'sample') {
    sampleRequested = true;
    return;
  }
  const job = m.type;
  queue = queue.then(async () => {
    stopRequested = false;
    try {
      if (m.type === 'init') {
        backend = await createWasmBackend({ threads: m.threads });
        post({ type: 'ready', threads: backend.threads, isolated: self.crossOriginIsolated, relaxedSimd: backend.relaxed });
      } else if (m.type === 'load') await load(m);
      else if (m.type === 'generate') await runGenerate(m.prompt, m.sampling);
      else if (m.type === 'train') await runTrain(m.settings);
    } catch (e) {
      post({ type: 'error', job, message: describe(e) });
    }
  });
};
