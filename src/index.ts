/** stlm: super tiny language models in TypeScript. The main entry re-exports the common pieces. */
export { createBackend, createWasmBackend, ReferenceBackend, type Backend } from './kernels/index.js';
export { Graph, Tensor, NonFiniteError, ops } from './tensor/index.js';
export { PRESETS, resolveConfig, parameterCount, type LlamaConfig } from './models/config.js';
export { Llama, KvCache } from './models/llama.js';
export { BytePooled, PooledStream, resolvePooledConfig, type PooledConfig } from './models/byte-pooled.js';
export { LoraAdapters, initLora, mergeLora, LORA_TARGETS, type LoraData, type LoraOptions } from './models/lora.js';
export { readLoraAdapter, saveLoraAdapter } from './io/lora-file.js';
export { byteVocab, loadModel, parseGgufModel, saveModel, type LoadedModel, type ModelBundle } from './io/model-file.js';
export { ByteTokenizer } from './tokenizers/byte.js';
export { TokenStreamDecoder, Utf8StreamDecoder, type Tokenizer } from './tokenizers/tokenizer.js';
export { generate, generateStream, type GenerateOptions, type GenerateResult } from './generate/generate.js';
export { generatePooled } from './generate/generate-pooled.js';
export { Sampler, type SamplerOptions } from './generate/sampler.js';
export { train, type ModelFactory, type TrainableModel, type TrainOptions, type TrainResult } from './train/trainer.js';
export { finetune, evaluateCompletions, type FinetuneOptions, type FinetuneResult } from './train/finetune.js';
export { parseJsonl, readJsonl, tokenizeExamples, type CompletionExample } from './train/jsonl.js';
export { evaluateBpb } from './eval/bpb.js';
export { readGguf, writeGguf } from './formats/gguf.js';
