/**
 * llama.cpp, through the npm package node-llama-cpp (an optional dependency pinned to 3.21.1). Two users
 * share this binding: the `llamacpp` tier (`src/tiers/llamacpp.ts`, GGUF files as a LanguageModel) and
 * the tests and benchmarks, which use llama.cpp as an oracle nobody here wrote (`openLlamaCpp`: the same
 * GGUF file in both engines, token ids, log-probabilities and speed compared). node-llama-cpp exposes
 * next-token probabilities, not raw logits, so comparisons are on log-softmax (logits up to a
 * per-position constant, which is all sampling sees).
 *
 * The package is loaded on demand (a dynamic import, so stlm builds and runs without it); where it is
 * absent, `loadLlamaCpp` returns one line saying how to install it instead.
 */

import { availableParallelism } from 'node:os';

/** The node-llama-cpp version stlm is tested with (package.json pins it exactly). */
export const NODE_LLAMA_CPP_VERSION = '3.21.1';

// ---------------------------------------------------------------------------------------------------
// The subset of node-llama-cpp's API used here (its own types stay out of our public declarations, and
// stlm compiles without the package).

/** node-llama-cpp's LlamaText: rendered chat text with special tokens. */
export interface NlcText {
  readonly values: readonly unknown[];
  toString(): string;
  tokenize(tokenizer: unknown): number[];
}
export interface NlcChatHistoryItem {
  type: 'system' | 'user' | 'model';
  text?: string;
  response?: string[];
}
export interface NlcChatWrapper {
  readonly wrapperName: string;
  generateContextState(o: { chatHistory: readonly NlcChatHistoryItem[] }): { contextText: NlcText; stopGenerationTriggers: NlcText[] };
}
export interface NlcSequence {
  readonly nextTokenIndex: number;
  readonly contextTokens: number[];
  controlledEvaluate(input: unknown[]): Promise<({ next?: { probabilities?: Map<number, number> } } | undefined)[]>;
  evaluate(tokens: number[], options: Record<string, unknown>): AsyncGenerator<number, void, void>;
  evaluateWithMetadata(tokens: number[], metadata: { confidence?: boolean }, options: Record<string, unknown>): AsyncGenerator<{ token: number; confidence?: number }, void, void>;
  eraseContextTokenRanges(ranges: { start: number; end: number }[]): Promise<void>;
  clearHistory(): Promise<void>;
}
export interface NlcContext {
  readonly contextSize: number;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
export interface NlcModel {
  tokenize(text: string, special?: boolean): number[];
  detokenize(tokens: readonly number[], specialTokens?: boolean, lastTokens?: readonly number[]): string;
  isEogToken(token: number | undefined): boolean;
  readonly tokens: { bos: number | null; eos: number | null; eot: number | null; shouldPrependBosToken: boolean };
  readonly tokenizer: unknown;
  readonly trainContextSize: number;
  readonly fileInsights: { tensorInfo?: unknown };
  createContext(o: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  loadModel(o: { modelPath: string; gpuLayers?: number }): Promise<NlcModel>;
}
/** What the loaded package gives: the CPU build of llama.cpp, and the chat template resolver. */
export interface NodeLlamaCpp {
  llama: NlcLlama;
  resolveChatWrapper(model: NlcModel): NlcChatWrapper;
}

// ---------------------------------------------------------------------------------------------------
// Loading

let loaded: Promise<NodeLlamaCpp | string> | undefined;

/** Loads node-llama-cpp's CPU build once; a string is the reason it is unavailable (one line, with how to install it). */
export function loadLlamaCpp(): Promise<NodeLlamaCpp | string> {
  loaded ??= (async () => {
    try {
      // A variable specifier: TypeScript does not resolve it, so stlm compiles without the optional package.
      const name = 'node-llama-cpp';
      const nlc = (await import(name)) as { getLlama(o: Record<string, unknown>): Promise<NlcLlama>; resolveChatWrapper(model: NlcModel): NlcChatWrapper };
      const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
      return { llama, resolveChatWrapper: nlc.resolveChatWrapper };
    } catch (e) {
      const why = (e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' ? 'is not installed' : `did not load (${(e as Error).message.split('\n')[0]})`;
      return `node-llama-cpp ${why}; install it with: npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`;
    }
  })();
  return loaded;
}

/** How a llama.cpp context is made (KV cache size and type, threads, an adapter). */
export interface LlamaCppOptions {
  /**
   * CPU threads (default: one per core this process may use; the oracle uses 1). Never node-llama-cpp's
   * own default: without a GPU it asks for at least 4 threads, which on a 2-core machine spin against
   * each other at llama.cpp's barriers (measured: 32 greedy tokens of a 13M model in 21.6 s with its
   * default, 0.40 s with 2 threads, 0.06 s with 1).
   */
  threads?: number;
  /** KV cache positions (default 512 for the oracle; the tier picks its own). */
  contextSize?: number;
  /**
   * KV cache element type. llama.cpp defaults to F16, which moves log-probabilities by ~1e-3; the oracle
   * default is F32 (what stlm keeps), benchmarks and the tier may ask for llama.cpp's own default.
   */
  kvCacheType?: 'F32' | 'F16';
  /** A LoRA adapter GGUF to apply at scale 1 (llama.cpp's --lora). */
  lora?: string;
}

/** Options for node-llama-cpp's createContext from ours. */
export function contextOptions(o: LlamaCppOptions, contextSize: number): Record<string, unknown> {
  // The addon takes ggml type ids (GGML_TYPE_F32 = 0, F16 = 1); flash attention would compute in F16.
  const type = o.kvCacheType === undefined ? undefined : o.kvCacheType === 'F32' ? 0 : 1;
  const kv = type === undefined ? {} : { experimentalKvCacheKeyType: type, experimentalKvCacheValueType: type, flashAttention: false };
  return {
    contextSize, sequences: 1, threads: o.threads ?? availableParallelism(), ...kv,
    ...(o.lora ? { lora: { adapters: [{ filePath: o.lora, scale: 1 }] } } : {}),
  };
}

/**
 * Next-token probabilities after each of `ids[from..]`, evaluated on `seq` after what it already holds
 * (ids before `from` are evaluated without asking for probabilities). Each row is llama.cpp's full
 * distribution (no sampling options applied), keyed by token id.
 */
export async function nextTokenProbabilities(seq: NlcSequence, ids: readonly number[], from = 0): Promise<Map<number, number>[]> {
  const out = await seq.controlledEvaluate(ids.map((t, i) => (i >= from ? [t, { generateNext: { probabilities: true } }] : t)));
  const rows: Map<number, number>[] = [];
  for (let i = from; i < ids.length; i++) {
    const probs = out[i]?.next?.probabilities;
    if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
    rows.push(probs);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// The oracle

/** llama.cpp as a test oracle: tokens, log-probabilities and greedy continuations of one GGUF file. */
export interface LlamaCppOracle {
  /** llama.cpp's tokenization of `text`, without special tokens (as its tokenizer tests do). */
  tokenize(text: string): number[];
  /** log p(next token) at every position of `ids` (a fresh sequence), each a full-vocabulary row. */
  logProbs(ids: readonly number[]): Promise<Float64Array[]>;
  /** Greedy continuation of `ids` (temperature 0, no penalties), `n` tokens or until end of generation. */
  greedy(ids: readonly number[], n: number): Promise<number[]>;
  dispose(): Promise<void>;
}

/** The oracle's former name, which the tests import. */
export type LlamaCppModel = LlamaCppOracle;

/** Opens a GGUF file in llama.cpp as an oracle, or returns why it cannot (package absent, file rejected). */
export async function openLlamaCpp(path: string, o: LlamaCppOptions = {}): Promise<LlamaCppOracle | string> {
  const nlc = await loadLlamaCpp();
  if (typeof nlc === 'string') return nlc;
  const model = await nlc.llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const withSequence = async <T>(fn: (s: NlcSequence) => Promise<T>): Promise<T> => {
    // A fresh context per call keeps calls independent (no KV cache carried between them).
    const ctx = await model.createContext(contextOptions({ ...o, threads: o.threads ?? 1, kvCacheType: o.kvCacheType ?? 'F32' }, o.contextSize ?? 512));
    try {
      return await fn(ctx.getSequence());
    } finally {
      await ctx.dispose();
    }
  };
  return {
    tokenize: (text) => model.tokenize(text, false),
    logProbs: (ids) =>
      withSequence(async (seq) =>
        (await nextTokenProbabilities(seq, ids)).map((probs) => {
          const row = new Float64Array(probs.size).fill(-Infinity);
          for (const [t, p] of probs) row[t] = Math.log(p);
          return row;
        })),
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
