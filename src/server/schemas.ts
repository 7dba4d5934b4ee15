/**
 * The request bodies `stlm serve` accepts, as JSON Schema (fastify validates them with Ajv before a
 * handler runs; a body that breaks one gets a 400 in OpenAI's error shape naming the field). Fields
 * OpenAI defines but stlm does not implement are refused by name in the handler (UNSUPPORTED), not here;
 * fields nobody defines are ignored, as OpenAI-compatible servers do.
 */

const nullable = (t: string, extra: Record<string, unknown> = {}) => ({ type: [t, 'null'], ...extra });

const stop = { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 16, items: { type: 'string' } }, { type: 'null' }] };

/** Sampling fields both endpoints share (top_k, min_p and repetition_penalty are the usual extensions: llama.cpp's and vLLM's). */
const sampling = {
  model: { type: 'string' },
  max_tokens: nullable('integer'),
  temperature: nullable('number', { minimum: 0, maximum: 2 }),
  top_p: nullable('number', { minimum: 0, maximum: 1 }),
  top_k: nullable('integer', { minimum: 0 }),
  min_p: nullable('number', { minimum: 0, maximum: 1 }),
  repetition_penalty: nullable('number', { exclusiveMinimum: 0 }),
  seed: nullable('integer'),
  stop,
  n: nullable('integer', { minimum: 1, maximum: 16 }),
  stream: nullable('boolean'),
  stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
  user: { type: 'string' },
};

const tokenIds = { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } };

export const completionsBody = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...sampling,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string' } },
        tokenIds,
        { type: 'array', minItems: 1, maxItems: 64, items: tokenIds },
      ],
    },
    logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    echo: nullable('boolean'),
  },
} as const;

const textPart = { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } } };

export const chatBody = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...sampling,
    max_completion_tokens: nullable('integer'),
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] },
          name: { type: 'string' },
        },
      },
    },
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
  },
} as const;

/**
 * OpenAI parameters stlm does not implement: a request that sets one (to anything but its no-op value)
 * is refused with 400 `unsupported_parameter` naming it, rather than silently answered without it.
 */
export const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  tools: (v) => !(Array.isArray(v) && v.length === 0),
  tool_choice: (v) => v !== 'none',
  parallel_tool_calls: () => false,
  functions: (v) => !(Array.isArray(v) && v.length === 0),
  function_call: (v) => v !== 'none',
  logit_bias: (v) => !(typeof v === 'object' && v !== null && Object.keys(v).length === 0),
  response_format: (v) => !(typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text'),
  presence_penalty: (v) => v !== 0,
  frequency_penalty: (v) => v !== 0,
  best_of: (v) => v !== 1,
  suffix: (v) => v !== '',
  audio: () => true,
  modalities: (v) => !(Array.isArray(v) && v.every((m) => m === 'text')),
  prediction: () => true,
  web_search_options: () => true,
  reasoning_effort: () => true,
};
