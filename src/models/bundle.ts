/** A model as data, whatever file it came from (io/ reads every format into one and writes one to every format). */
import type { VocabSpec } from '../tokenizers/vocab.js';
import type { LlamaConfig } from './config.js';

/** A model as data, whatever file it came from: what every reader returns and every writer takes. */
export interface ModelBundle {
  config: LlamaConfig;
  /** GGUF tensor names, [out, in] layout, f32. */
  weights: Map<string, Float32Array>;
  vocab: VocabSpec;
}
