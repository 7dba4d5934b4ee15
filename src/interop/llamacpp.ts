/**
 * llama.cpp, through the npm package node-llama-cpp (a dev dependency pinned to 3.21.1), as an oracle
 * nobody here wrote: tests and benchmarks run the same GGUF file in both engines and compare token ids,
 * log-probabilities and speed. node-llama-cpp exposes next-token probabilities, not raw logits, so
 * comparisons are on log-softmax (logits up to a per-position constant, which is all sampling sees).
 *
 * The package is loaded on demand; `openLlamaCpp` returns the reason instead when it is absent, so
 * callers can skip with a clear message.
 */

export interface LlamaCppModel {
  /** llama.cpp's tokenization of `text`, without special tokens (as its tokenizer tests do). */
  tokenize(text: string): number[];
  /** log p(next token) at every position of `ids` (a fresh sequence), each a full-vocabulary row. */
  logProbs(ids: readonly number[]): Promise<Float64Array[]>;
  /** Greedy continuation of `ids` (temperature 0, no penalties), `n` tokens or until end of generation. */
  greedy(ids: readonly number[], n: number): Promise<number[]>;
  dispose(): Promise<void>;
}

export interface LlamaCppOptions {
  threads?: number;
  /** KV cache positions (default 512). */
  contextSize?: number;
  /**
   * KV cache element type. llama.cpp defaults to F16, which moves log-probabilities by ~1e-3; the oracle
   * default is F32 (what stlm keeps), benchmarks may ask for llama.cpp's own default.
   */
  kvCacheType?: 'F32' | 'F16';
  /** A LoRA adapter GGUF to apply at scale 1 (llama.cpp's --lora). */
  lora?: string;
}

/** The subset of node-llama-cpp's API used here (its own types stay out of our public declarations). */
interface NlcSequence {
  controlledEvaluate(input: unknown[]): Promise<({ next?: { probabilities?: Map<number, number> } } | undefined)[]>;
  evaluate(tokens: number[], options: Record<string, unknown>): AsyncGenerator<number, void, void>;
}
interface NlcModel {
  tokenize(text: string, special?: boolean): number[];
  readonly tokens: { eos: number | null; eot: number | null };
  readonly fileInsights: { tensorInfo?: unknown };
  createContext(o: Record<string, unknown>): Promise<{ getSequence(): NlcSequence; dispose(): Promise<void> }>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  loadModel(o: { modelPath: string; gpuLayers?: number }): Promise<NlcModel>;
  dispose(): Promise<void>;
}

let llamaInstance: Promise<NlcLlama | string> | undefined;

/** Loads node-llama-cpp's CPU build once; a string is the reason it is unavailable. */
function llamaCpp(): Promise<NlcLlama | string> {
  llamaInstance ??= (async () => {
    try {
      const nlc = (await import('node-llama-cpp')) as unknown as { getLlama(o: Record<string, unknown>): Promise<NlcLlama> };
      return await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
    } catch (e) {
      return `node-llama-cpp is not available (${(e as Error).message.split('\n')[0]}); install the dev dependencies (npm ci)`;
    }
  })();
  return llamaInstance;
}

/** Opens a GGUF file in llama.cpp, or returns why it cannot (package absent, file rejected). */
export async function openLlamaCpp(path: string, o: LlamaCppOptions = {}): Promise<LlamaCppModel | string> {
  const llama = await llamaCpp();
  if (typeof llama === 'string') return llama;
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const contextSize = o.contextSize ?? 512;
  const withSequence = async <T>(fn: (s: NlcSequence) => Promise<T>): Promise<T> => {
    // A fresh context per call keeps calls independent (no KV cache carried between them).
    // The addon takes ggml type ids (GGML_TYPE_F32 = 0, F16 = 1); flash attention would compute in F16.
    const kv = (o.kvCacheType ?? 'F32') === 'F32' ? 0 : 1;
    const ctx = await model.createContext({ contextSize, threads: o.threads ?? 1, experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv, flashAttention: false, ...(o.lora ? { lora: { adapters: [{ filePath: o.lora, scale: 1 }] } } : {}) });
    try {
      return await fn(ctx.getSequence());
    } finally {
      await ctx.dispose();
    }
  };
  return {
    tokenize: (text) => model.tokenize(text, false),
    logProbs: (ids) =>
      withSequence(async (seq) => {
        const out = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { probabilities: true } }]));
        return out.map((r, i) => {
          const probs = r?.next?.probabilities;
          if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
          const row = new Float64Array(probs.size).fill(-Infinity);
          for (const [t, p] of probs) row[t] = Math.log(p);
          return row;
        });
      }),
    greedy: (ids, n) =>
      withSequence(async (seq) => {
        const out: number[] = [];
        if (n <= 0) return out;
        for await (const t of seq.evaluate([...ids], { temperature: 0 })) {
          if (t === model.tokens.eos || t === model.tokens.eot) break;
          out.push(t);
          if (out.length >= n) break;
        }
        return out;
      }),
    dispose: () => model.dispose(),
  };
}
