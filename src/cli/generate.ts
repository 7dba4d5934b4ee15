/** `stlm generate`: streams a continuation of the prompt to stdout. */
import { generate } from '../generate/generate.js';
import { generatePooled } from '../generate/generate-pooled.js';
import type { Backend } from '../kernels/backend.js';
import { BytePooled, isPooledConfig } from '../models/byte-pooled.js';
import { loadModel } from '../io/model-file.js';
import { Llama } from '../models/llama.js';
import { readLoraAdapter } from '../io/lora-file.js';
import { LoraAdapters } from '../models/lora.js';
import { Graph } from '../tensor/tensor.js';

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
    const loaded = await loadModel(o.model, { tokenizer: o.tokenizer, keepQuantized: true });
    const options = {
      maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP,
      repetitionPenalty: o.repeatPenalty, repetitionWindow: o.repeatWindow, seed: o.seed, stop: o.stop, addBos: o.bos ?? loaded.vocab.addBos ?? false,
      onText: (t: string) => process.stdout.write(t),
    };
    if (o.lora && isPooledConfig(loaded.config)) throw new Error(`--lora: ${o.model} is a byte-pooled model; LoRA adapters apply to Llama models`);
    const lora = o.lora ? await readLoraAdapter(o.lora, loaded.config) : undefined;
    process.stdout.write(o.prompt);
    // A byte-pooled model (general.architecture stlm-pooled) runs its own loop: byte by byte out, chunk by chunk inside.
    let r;
    if (isPooledConfig(loaded.config)) {
      r = generatePooled(BytePooled.fromModel(new Graph(be), loaded), loaded.tokenizer, o.prompt, options);
    } else {
      const model = Llama.fromModel(new Graph(be), loaded);
      if (lora) model.adapters = new LoraAdapters(model.graph, loaded.config, lora, false);
      r = generate(model, loaded.tokenizer, o.prompt, options);
    }
    process.stdout.write('\n');
    if (r.promptTruncated) process.stderr.write(`note: the prompt was longer than the context (${loaded.config.ctx}); its first ${r.promptTruncated} tokens were dropped\n`);
    if (o.stats) {
      process.stderr.write(`prompt ${r.promptTokens} tokens in ${(r.prefillSeconds * 1000).toFixed(1)} ms; ` +
        `${r.tokens.length} tokens in ${(r.decodeSeconds * 1000).toFixed(1)} ms (${(r.tokens.length / r.decodeSeconds).toFixed(1)} tok/s); finish: ${r.finishReason}\n`);
    }
  } finally {
    be.dispose();
  }
}
