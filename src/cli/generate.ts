/** `stlm generate`: streams a continuation of the prompt to stdout. */
import { generate } from '../generate/generate.js';
import { openModel } from '../io/open.js';
import type { Backend } from '../kernels/backend.js';

export interface GenerateCliOptions {
  model: string;
  tokenizer?: string;
  prompt: string;
  bos?: boolean;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  repeatWindow: number;
  seed: number;
  stop?: string[];
  stats: boolean;
  /** A LoRA adapter GGUF applied on the fly (as llama.cpp's --lora), without merging it into the model. */
  lora?: string;
}

export async function runGenerate(o: GenerateCliOptions, be: Backend): Promise<void> {
  try {
    const m = await openModel(o.model, { tokenizer: o.tokenizer, backend: be, lora: o.lora }).catch((e: Error) => {
      throw o.lora && /LoRA adapters apply/.test(e.message) ? new Error(`--lora: ${e.message}`) : e;
    });
    const options = {
      maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP,
      repetitionPenalty: o.repeatPenalty, repetitionWindow: o.repeatWindow, seed: o.seed, stop: o.stop, addBos: o.bos ?? m.addBos,
      onText: (t: string) => process.stdout.write(t),
    };
    process.stdout.write(o.prompt);
    const r = generate(m.model, m.tokenizer, o.prompt, options);
    process.stdout.write('\n');
    if (r.promptTruncated) process.stderr.write(`note: the prompt was longer than the context (${m.config.ctx}); its first ${r.promptTruncated} tokens were dropped\n`);
    if (o.stats) {
      process.stderr.write(`prompt ${r.promptTokens} tokens in ${(r.prefillSeconds * 1000).toFixed(1)} ms; ` +
        `${r.tokens.length} tokens in ${(r.decodeSeconds * 1000).toFixed(1)} ms (${(r.tokens.length / r.decodeSeconds).toFixed(1)} tok/s); finish: ${r.finishReason}\n`);
    }
  } finally {
    be.dispose();
  }
}
