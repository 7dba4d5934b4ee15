/**
 * Choosing tensor types for a quantized model file, as llama.cpp's quantizer does: norm gains stay F32
 * (tiny and precision-sensitive), the matrices take the target type, and the token embedding (which is
 * also the output head when tied, the tensor quantization hurts most) takes a higher precision by default.
 *
 * Fallback, documented and tested: a matrix whose rows are not whole blocks of the target type (32 values
 * for Q8_0/Q4_0, 256 for Q4_K) takes the best type its rows fit (Q8_0, else F16) and the plan says so.
 */
import { GGML_TYPE, QUANT_BLOCKS, blockGeometry } from '../dtypes/blocks.js';
import { ggmlTypeName } from '../formats/gguf.js';
import { type LlamaConfig, parameterShapes } from '../models/config.js';

export type QuantTarget = 'q8_0' | 'q4_0' | 'q4_k' | 'f16' | 'f32';
export const QUANT_TARGETS: QuantTarget[] = ['q8_0', 'q4_0', 'q4_k', 'f16', 'f32'];

const TYPE_OF: Record<QuantTarget, number> = { q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0, q4_k: GGML_TYPE.Q4_K, f16: GGML_TYPE.F16, f32: GGML_TYPE.F32 };

export interface QuantPlan {
  /** ggml type per tensor name. */
  types: Map<string, number>;
  /** One line per fallback or deliberate exception. */
  notes: string[];
}

export interface QuantPlanOptions {
  /** Type of token_embd (and so of the tied output head): default Q8_0 below 8 bits, else the target. */
  embedding?: QuantTarget;
}

/** The type of every tensor for a `target` file. */
export function planQuantization(config: LlamaConfig, target: QuantTarget, o: QuantPlanOptions = {}): QuantPlan {
  const types = new Map<string, number>();
  const notes: string[] = [];
  const lowBit = target === 'q4_0' || target === 'q4_k';
  for (const [name, shape] of parameterShapes(config)) {
    // Norm gains, and the per-position adapters of shared weights (small, and the model reads them as f32).
    if (shape.length < 2 || /\.lora_[ab]$/.test(name)) {
      types.set(name, GGML_TYPE.F32);
      continue;
    }
    const isEmbedding = name === 'token_embd.weight' || name === 'output.weight';
    const wanted = isEmbedding ? (o.embedding ?? (lowBit ? 'q8_0' : target)) : target;
    let type = TYPE_OF[wanted];
    const rowLength = shape[1];
    const block = blockGeometry(type)!.values;
    if (rowLength % block !== 0) {
      const fallback = rowLength % QUANT_BLOCKS.q8_0.values === 0 ? GGML_TYPE.Q8_0 : GGML_TYPE.F16;
      notes.push(`${name}: rows of ${rowLength} are not whole ${ggmlTypeName(type)} blocks of ${block}; written as ${ggmlTypeName(fallback)}`);
      type = fallback;
    }
    if (isEmbedding && wanted !== target) notes.push(`${name}: kept at ${ggmlTypeName(type)}${config.tieEmbeddings ? ' (it is also the output head)' : ''}`);
    types.set(name, type);
  }
  return { types, notes };
}

/** Throws naming the tensor and index of the first NaN or infinity (quantizing one would poison a whole block). */
export function checkFinite(weights: Map<string, Float32Array>): void {
  for (const [name, w] of weights) {
    for (let i = 0; i < w.length; i++) {
      if (!Number.isFinite(w[i])) throw new Error(`tensor '${name}' holds ${w[i]} at index ${i}: cannot quantize non-finite weights`);
    }
  }
}
