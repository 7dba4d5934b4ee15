/**
 * Any stlm LanguageModel (a LocalModel, llama.cpp, an endpoint, the Router) as a Vercel AI SDK model, so
 * `generateText({ model: aiSdkModel(m), prompt })` and `streamText(...)` of the `ai` package run it.
 *
 * It implements the SDK's language model specification v3 (`LanguageModelV3` of `@ai-sdk/provider` 3):
 * the one `ai` 6 takes (Node 18+, so stlm's Node 20 too), which `ai` 7 (spec v4, Node 22+) still takes
 * as it is: its `asLanguageModelV4` wraps a v3 model without a warning (v2 models get one). For text, v3
 * and v4 differ in nothing but the version string. Types only come from `@ai-sdk/provider` (`import
 * type`), so the compiled file imports nothing outside stlm, and nothing from `node:` (browsers too).
 *
 * What maps to what:
 * - prompt: system, user and assistant messages with text parts become `messages` (the model's chat
 *   template renders them); a prompt that is one user message (what `generateText({ prompt })` sends)
 *   becomes plain text to continue, since stlm's tiny models are trained on plain text (`chat: 'always'`
 *   sends it as a message instead). File (image) parts, reasoning parts, tool calls and tool messages
 *   are left out, each with a warning.
 * - settings: maxOutputTokens, temperature, topP, topK, seed, stopSequences and abortSignal are
 *   GenerateOptions' maxTokens, temperature, topP, topK, seed, stop and signal; presence and frequency
 *   penalties, a JSON response format, tools and tool choice are not supported and are warned about
 *   (`providerOptions.stlm` takes stlm's own minP, repetitionPenalty and, for the Router, constraints).
 *   Request headers are for HTTP providers and are ignored (the SDK always sends a user agent).
 * - result: the text, finish reason ('eos' and 'stop' -> stop, 'length' -> length, 'abort' -> other;
 *   stlm's reason stays as `raw`), token usage, and `providerMetadata.stlm`: the model that answered,
 *   costUsd, timeToFirstTokenMs, totalMs, meanLogprob and, from the Router, its decision (`route`).
 */
import type {
  JSONObject, JSONValue, LanguageModelV3, LanguageModelV3CallOptions, LanguageModelV3FinishReason, LanguageModelV3GenerateResult, LanguageModelV3Prompt,
  LanguageModelV3StreamPart, LanguageModelV3StreamResult, LanguageModelV3Usage, SharedV3ProviderMetadata, SharedV3Warning,
} from '@ai-sdk/provider';
import type { RouteConstraints } from './router.js';
import type { ChatMessage, FinishReason, GenerateInput, GenerateOptions, GenerateResult, GenerateStream, LanguageModel } from './types.js';

export interface AiSdkModelOptions {
  /** The model id the SDK reports (default: the model's `info().name`). */
  modelId?: string;
  /**
   * 'auto' (default): a prompt that is a single user message is continued as plain text, anything else
   * goes through the chat template. 'always': every prompt goes through the chat template.
   */
  chat?: 'auto' | 'always';
}

/** What `providerOptions: { stlm: { … } }` of a call may hold. */
export interface StlmProviderOptions {
  chat?: 'auto' | 'always';
  minP?: number;
  repetitionPenalty?: number;
  /** The Router's per-request constraints. */
  constraints?: RouteConstraints;
}

/** The key of stlm's entries in providerOptions and providerMetadata. */
export const PROVIDER_KEY = 'stlm';

/** A LanguageModel as an AI SDK model (spec v3): `generateText({ model: aiSdkModel(m), prompt })`. */
export function aiSdkModel(model: LanguageModel, o: AiSdkModelOptions = {}): LanguageModelV3 {
  const info = model.info();
  const modelId = o.modelId ?? info.name;
  return {
    specificationVersion: 'v3',
    provider: `stlm.${info.provider}`,
    modelId,
    supportedUrls: {},

    async doGenerate(call: LanguageModelV3CallOptions): Promise<LanguageModelV3GenerateResult> {
      const { input, options, warnings } = toRequest(call, o);
      const r = await model.generate(input, options);
      return {
        content: r.text ? [{ type: 'text', text: r.text }] : [],
        finishReason: finishReason(r.finishReason),
        usage: usage(r),
        providerMetadata: metadata(r),
        response: { modelId: r.model, timestamp: new Date() },
        warnings,
      };
    },

    async doStream(call: LanguageModelV3CallOptions): Promise<LanguageModelV3StreamResult> {
      const { input, options, warnings } = toRequest(call, o);
      const id = 'text-0';
      let it: GenerateStream | undefined, started = false;
      const stream = new ReadableStream<LanguageModelV3StreamPart>({
        start(c) {
          c.enqueue({ type: 'stream-start', warnings });
        },
        // One text piece per pull: the consumer's pace drives generation, and a cancel stops it.
        async pull(c) {
          try {
            it ??= model.stream(input, options);
            let r = await it.next();
            while (!r.done && !r.value) r = await it.next(); // a pull must enqueue, or the stream stalls
            if (!r.done) {
              if (!started) c.enqueue({ type: 'text-start', id });
              started = true;
              c.enqueue({ type: 'text-delta', id, delta: r.value });
              return;
            }
            if (started) c.enqueue({ type: 'text-end', id });
            c.enqueue({ type: 'response-metadata', modelId: r.value.model, timestamp: new Date() });
            c.enqueue({ type: 'finish', finishReason: finishReason(r.value.finishReason), usage: usage(r.value), providerMetadata: metadata(r.value) });
            c.close();
          } catch (e) {
            // An abort the model reports by throwing (the Router does) ends the stream like a stopped one.
            if (started) c.enqueue({ type: 'text-end', id });
            if (call.abortSignal?.aborted && (e as Error)?.name === 'AbortError') {
              c.enqueue({ type: 'finish', finishReason: { unified: 'other', raw: 'abort' }, usage: usage() });
            } else {
              c.enqueue({ type: 'error', error: e });
            }
            c.close();
          }
        },
        async cancel() {
          await it?.return(undefined as never); // frees the model's session
        },
      });
      return { stream };
    },
  };
}

/** The SDK's call as stlm's input and options, with a warning for each thing left out. */
function toRequest(call: LanguageModelV3CallOptions, o: AiSdkModelOptions): { input: GenerateInput; options: GenerateOptions & { constraints?: RouteConstraints }; warnings: SharedV3Warning[] } {
  const warnings: SharedV3Warning[] = [];
  const unsupported = (feature: string, details?: string) => warnings.push(details ? { type: 'unsupported', feature, details } : { type: 'unsupported', feature });
  if (call.presencePenalty !== undefined) unsupported('presencePenalty', 'stlm has a repetition penalty instead: providerOptions.stlm.repetitionPenalty');
  if (call.frequencyPenalty !== undefined) unsupported('frequencyPenalty', 'stlm has a repetition penalty instead: providerOptions.stlm.repetitionPenalty');
  if (call.responseFormat?.type === 'json') unsupported('responseFormat', 'JSON output is not enforced; the model answers in free text');
  if (call.tools?.length) unsupported('tools', 'stlm models do not call tools');
  if (call.toolChoice && call.toolChoice.type !== 'auto' && call.toolChoice.type !== 'none') unsupported('toolChoice');
  const stlm = (call.providerOptions?.[PROVIDER_KEY] ?? {}) as StlmProviderOptions;
  const messages = toMessages(call.prompt, unsupported);
  const chat = stlm.chat ?? o.chat ?? 'auto';
  const input: GenerateInput = chat === 'auto' && messages.length === 1 && messages[0].role === 'user' ? { prompt: messages[0].content } : { messages };
  const options: GenerateOptions & { constraints?: RouteConstraints } = {
    maxTokens: call.maxOutputTokens, temperature: call.temperature, topP: call.topP, topK: call.topK, seed: call.seed,
    stop: call.stopSequences?.length ? call.stopSequences : undefined, signal: call.abortSignal,
    minP: stlm.minP, repetitionPenalty: stlm.repetitionPenalty, constraints: stlm.constraints,
  };
  for (const k of Object.keys(options) as (keyof typeof options)[]) if (options[k] === undefined) delete options[k];
  return { input, options, warnings };
}

/** System, user and assistant text; everything else is left out with a warning (once per kind). */
function toMessages(prompt: LanguageModelV3Prompt, unsupported: (feature: string, details?: string) => void): ChatMessage[] {
  const dropped = new Set<string>(), out: ChatMessage[] = [];
  const drop = (what: string) => {
    if (!dropped.has(what)) unsupported(what, 'left out of the prompt: stlm models take text only');
    dropped.add(what);
  };
  for (const m of prompt) {
    if (m.role === 'system') {
      out.push({ role: 'system', content: m.content });
      continue;
    }
    if (m.role === 'tool') {
      drop('tool messages');
      continue;
    }
    let text = '';
    for (const p of m.content) {
      if (p.type === 'text') text += p.text;
      else drop(p.type === 'file' ? `file parts (${p.mediaType})` : `${p.type} parts`);
    }
    out.push({ role: m.role, content: text });
  }
  return out;
}

function finishReason(r: FinishReason): LanguageModelV3FinishReason {
  return { unified: r === 'eos' || r === 'stop' ? 'stop' : r === 'length' ? 'length' : 'other', raw: r };
}

function usage(r?: GenerateResult): LanguageModelV3Usage {
  const input = r?.usage.promptTokens, output = r?.usage.completionTokens;
  return {
    inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
    outputTokens: { total: output, text: output, reasoning: undefined },
    ...(r ? { raw: { promptTokens: input!, completionTokens: output! } } : {}),
  };
}

/** stlm's extras under providerMetadata.stlm (JSON values only: no undefined, NaN or Infinity). */
function metadata(r: GenerateResult): SharedV3ProviderMetadata {
  const route = (r as GenerateResult & { route?: unknown }).route;
  const m: Record<string, unknown> = {
    model: r.model, costUsd: r.costUsd, timeToFirstTokenMs: r.timeToFirstTokenMs, totalMs: r.totalMs, meanLogprob: r.meanLogprob, route,
  };
  return { [PROVIDER_KEY]: json(m) as JSONObject };
}

function json(v: unknown): JSONValue | undefined {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (Array.isArray(v)) return v.map((x) => json(x) ?? null);
  if (typeof v === 'object') {
    const o: JSONObject = {};
    for (const [k, x] of Object.entries(v)) {
      const j = json(x);
      if (j !== undefined) o[k] = j;
    }
    return o;
  }
  return undefined;
}
