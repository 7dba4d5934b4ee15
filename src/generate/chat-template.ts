/**
 * A model's own chat template (Jinja, as Hugging Face's tokenizer_config.json `chat_template` and GGUF's
 * `tokenizer.chat_template` carry it), rendered as transformers' `apply_chat_template` renders it:
 * `@huggingface/jinja` (trim_blocks and lstrip_blocks on, as transformers sets them), with `messages`,
 * `add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception`. The package is imported
 * dynamically (on the first template), so nothing below tiers/local.js imports a package statically and
 * a browser without a bundler loads a model without a template as before.
 */
import type { Template } from '@huggingface/jinja';

/** One chat message as a template sees it (`message['role']`, `message['content']`, any other field a template reads). */
export interface TemplateMessage {
  role: string;
  content: string;
  readonly [field: string]: unknown;
}

export interface ChatRenderOptions {
  /** End with the opening of the assistant's turn (transformers' `add_generation_prompt`). */
  addGenerationPrompt: boolean;
}

/** Renders messages to the text the model was trained on. */
export type JinjaChatRenderer = (messages: readonly TemplateMessage[], o: ChatRenderOptions) => string;

/** The special tokens' texts a template may read; an absent one is undefined to it (Jinja's `none` test passes). */
export interface TemplateSpecialTokens {
  bos?: string;
  eos?: string;
}

/**
 * Parses a Jinja chat template once and resolves to its renderer. `source` names where the template came
 * from (a file, a GGUF key), for the one line a template that does not parse throws. A template's
 * `raise_exception('...')` (or any failure while rendering) throws `<source>: the chat template refused
 * these messages: <message>`.
 */
export async function jinjaChatTemplate(template: string, special: TemplateSpecialTokens, source = 'chat template'): Promise<JinjaChatRenderer> {
  if (typeof template !== 'string' || template.trim() === '') throw new Error(`${source}: the chat template is empty`);
  const { Template: JinjaTemplate } = await import('@huggingface/jinja');
  let parsed: Template;
  try {
    parsed = new JinjaTemplate(template);
  } catch (e) {
    throw new Error(`${source}: the chat template does not parse: ${oneLine(e)}`);
  }
  return (messages, o) => {
    const context: Record<string, unknown> = {
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: o.addGenerationPrompt,
    };
    if (special.bos !== undefined) context.bos_token = special.bos;
    if (special.eos !== undefined) context.eos_token = special.eos;
    try {
      return parsed.render(context);
    } catch (e) {
      // @huggingface/jinja's own raise_exception (a global of every render) throws the template's message.
      throw new Error(`${source}: the chat template refused these messages: ${oneLine(e)}`);
    }
  };
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ').trim();
}
