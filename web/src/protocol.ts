/** The messages between the page and its model worker (`worker.ts`): one job at a time. */

/** Sampling and stopping, as `stlm generate` takes them. */
export interface SamplingSettings {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  seed: number;
  stop: string[];
}

export interface TrainSettings {
  text: string;
  /** A preset of src/models/config.ts. */
  preset: string;
  minutes: number;
  /** 0: as many as the minutes allow. */
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  /** The prompt of the samples drawn while training. */
  samplePrompt: string;
}

/** A file the user dropped or picked, read into memory. */
export interface DroppedFile {
  name: string;
  bytes: Uint8Array;
}

export type ToWorker =
  | { type: 'init'; threads: number }
  /** The embedded model (its URL), dropped files (a model, and a llama2.c tokenizer beside it), or a trained model's bytes. */
  | { type: 'load'; url: string; name: string }
  | { type: 'load'; files: DroppedFile[] }
  | { type: 'generate'; prompt: string; sampling: SamplingSettings }
  | { type: 'train'; settings: TrainSettings }
  /** Draw a sample from the model being trained at the next step. */
  | { type: 'sample' }
  | { type: 'stop' };

export interface ModelInfo {
  name: string;
  format: string;
  architecture: string;
  parameters: number;
  vocabSize: number;
  ctx: number;
}

export interface GenerateStats {
  tokens: number[];
  text: string;
  finishReason: string;
  /** From the request to the first generated token (prefill included), ms. */
  timeToFirstTokenMs: number;
  /** Generated tokens per second after the first. */
  tokensPerSecond: number;
  memoryBytes: number;
  stopped: boolean;
}

export interface TrainStep {
  step: number;
  totalSteps: number;
  loss: number;
  valBpb?: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  memoryBytes: number;
}

export type FromWorker =
  | { type: 'ready'; threads: number; isolated: boolean; relaxedSimd: boolean }
  | { type: 'loaded'; info: ModelInfo; memoryBytes: number }
  | { type: 'text'; text: string }
  | { type: 'generated'; stats: GenerateStats }
  | { type: 'step'; step: TrainStep }
  | { type: 'sample'; step: number; text: string }
  /** The trained model as a GGUF file. */
  | { type: 'trained'; gguf: Uint8Array; steps: number; finalValBpb: number; stopped: boolean; seconds: number; tokensPerSecond: number }
  | { type: 'log'; line: string }
  /** A job failed: one line for the page. */
  | { type: 'error'; job: 'init' | 'load' | 'generate' | 'train'; message: string };
