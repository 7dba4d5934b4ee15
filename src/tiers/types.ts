/**
 * One interface over every tier (issue: tiers and router): stlm's own tiny models, small models from
 * GGUF files through llama.cpp, and large models behind an OpenAI-compatible endpoint. Types only; each
 * provider is a small file beside this one, and the router is itself a LanguageModel.
 */

/** One chat message, as OpenAI's chat API has it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What to continue: plain text (a completion) or chat messages (rendered by the model's chat template). */
export type GenerateInput = { prompt: string; messages?: undefined } | { messages: ChatMessage[]; prompt?: undefined };

export interface GenerateOptions {
  /** Tokens to generate at most (default 256). 0 generates nothing (a prompt's usage only). */
  maxTokens?: number;
  /** Softmax temperature; 0 is greedy (default 0.8). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** Sampling seed (providers that honour one). */
  seed?: number;
  /** Generation ends before any of these strings; the stop string is not returned. */
  stop?: string[];
  /** Cancels the request: the promise rejects with an AbortError, a stream ends. */
  signal?: AbortSignal;
  /** Called with each piece of text as soon as it is complete (streaming by callback). */
  onText?: (text: string) => void;
}

export type FinishReason = 'stop' | 'length' | 'eos' | 'abort';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface GenerateResult {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  /** Milliseconds from the request to its first text, and to its end. */
  timeToFirstTokenMs: number;
  totalMs: number;
  /** What the request cost in US dollars, from the tier's prices (0 for a local model). */
  costUsd: number;
  /** Which model answered (the router names the tier it chose, and why). */
  model: string;
  /** Mean log-probability of the generated tokens, where the provider reports them (a confidence signal). */
  meanLogprob?: number;
  /**
   * Mean entropy (nats) of the model's own next-token distributions at the generated tokens, where the
   * provider can compute it (another confidence signal: high when the model was unsure what comes next).
   */
  meanEntropy?: number;
}

/** A generation as an async iterator of text pieces whose return value is the result. */
export type GenerateStream = AsyncGenerator<string, GenerateResult>;

export interface ContinuationScore {
  /** Σ log p(continuation token | context and the tokens before it), natural log. */
  logprob: number;
  /** Whether greedy decoding from the context produces the continuation. */
  greedy: boolean;
  /** Tokens the continuation took (with this model's tokenizer). */
  tokens: number;
}

/** The tier a model belongs to: stlm's super tiny models, small on-device models, large remote ones. */
export type Tier = 'tiny' | 'small' | 'large';

export interface LanguageModelInfo {
  /** The model's name as requests use it. */
  name: string;
  tier: Tier;
  provider: 'local' | 'llamacpp' | 'openai' | 'router';
  /** Parameters, where known. */
  parameters?: number;
  /** Bytes of the model file(s), where known. */
  fileBytes?: number;
  /** Positions of context. */
  contextLength?: number;
  /** Weight types as run ('f32', 'q4_0', …), where known. */
  quantization?: string;
  /** Where it runs: 'this process', 'llama.cpp in this process', or the endpoint's URL. */
  runsOn: string;
  /** US dollars per million tokens, where the tier costs money. */
  pricePerMillion?: { prompt: number; completion: number };
}

/** Any model stlm can ask: every tier and the router. */
export interface LanguageModel {
  info(): LanguageModelInfo;
  /** Generates a continuation (text) or a reply (chat messages). */
  generate(input: GenerateInput, o?: GenerateOptions): Promise<GenerateResult>;
  /** The same, streamed as text pieces. */
  stream(input: GenerateInput, o?: GenerateOptions): GenerateStream;
  /**
   * Log-likelihood of each continuation after `context`, batched (choices that share a context share
   * its prefill where the provider can). Throws ScoreUnsupportedError where the provider cannot score.
   */
  score(context: string, continuations: string[], o?: { signal?: AbortSignal }): Promise<ContinuationScore[]>;
  /** Token ids of a text with this model's tokenizer. */
  tokenize(text: string): Promise<number[]>;
  countTokens(text: string): Promise<number>;
  /** Frees what the model holds (weights, connections). */
  close(): Promise<void>;
}

/** A provider that cannot score continuations (an endpoint without echo + logprobs), saying why. */
export class ScoreUnsupportedError extends Error {
  override name = 'ScoreUnsupportedError';
}
