/**
 * The tiers as `stlm synth` teachers (sequence-level distillation, `train/synth.ts`): any LanguageModel
 * through `modelTeacher`, and `EndpointTeacher`, an OpenAI-compatible endpoint through the large tier's
 * client. Here rather than in train/, which sits below the tiers.
 */
import type { CompletionOptions, TextTeacher } from '../train/synth.js';
import { OpenAIModel } from './openai.js';
import type { LanguageModel } from './types.js';

export interface EndpointOptions {
  /** The API base, e.g. http://localhost:8080/v1 (requests go to {base}/completions). */
  baseUrl: string;
  /** The `model` field of each request. */
  model: string;
  /** Sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Per-request time limit in milliseconds (default 300000). */
  timeoutMs?: number;
  /** Retries after 429/5xx answers, network errors and time-outs (default 2). */
  maxRetries?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/**
 * Any LanguageModel (a tier, the router) as a teacher: each sample is one `generate` call with the prompt
 * and the request's maxTokens, temperature and seed (other sampling options are the model's defaults).
 */
export function modelTeacher(model: LanguageModel, name = model.info().name): TextTeacher {
  return {
    name,
    complete: async (prompt, o) => (await model.generate({ prompt }, { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed })).text,
    close: () => void model.close(),
  };
}

/**
 * An OpenAI-compatible text-completion endpoint (llama.cpp's server, vLLM, OpenAI and others) through
 * the large tier's client (`tiers/openai.ts`): POST {base}/completions with {model, prompt, max_tokens,
 * temperature, seed}, reading choices[0].text, with its time limit and retries. Every failure (no
 * connection, an HTTP error status, a body that is not the expected JSON) throws one line naming the endpoint.
 */
export class EndpointTeacher implements TextTeacher {
  readonly url: string;
  readonly name: string;
  readonly model: OpenAIModel;

  constructor(o: EndpointOptions) {
    this.model = new OpenAIModel({ baseUrl: o.baseUrl, model: o.model, apiKey: o.apiKey, timeoutMs: o.timeoutMs ?? 300_000, maxRetries: o.maxRetries, fetch: o.fetch });
    this.url = this.model.baseUrl + '/completions';
    this.name = `${this.url} (model ${o.model})`;
  }

  async complete(prompt: string, c: CompletionOptions): Promise<string> {
    return (await this.model.generate({ prompt }, { maxTokens: c.maxTokens, temperature: c.temperature, seed: c.seed })).text;
  }
}
