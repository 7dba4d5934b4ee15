/**
 * Initialisation and loading of a model's parameters. Initial values follow GPT-2 / nanoGPT: matrices
 * N(0, std) (the caller picks std per tensor: 0.02, smaller for the residual output projections), norm
 * gains 1; a LoRA pair starts at B = 0 (the adapted model equals the base) with A Kaiming-uniform as
 * PEFT does. Values are drawn from one seeded stream in parameter order, so a seed gives one model.
 */
import { QuantMatrix, type QuantizedWeight, type Weight } from '../tensor/quant.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';

/** Initial values of one parameter, by its shape and name. */
export function initialValues(name: string, shape: readonly number[], rng: Rng, std: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  if (shape.length === 1) return data.fill(1); // norm gains
  if (name.endsWith('.lora_b')) return data; // B = 0
  if (name.endsWith('.lora_a')) {
    const bound = 1 / Math.sqrt(shape[1]); // LoRA's (PEFT's) Kaiming-uniform bound
    for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
    return data;
  }
  for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
  return data;
}

/** Whether a tensor is the output projection of a residual branch (initialised smaller, scaled by depth). */
export function isResidualOutput(name: string): boolean {
  return /attn_output|ffn_down/.test(name);
}

export interface ParameterOptions {
  /** Values by name (f32, or quantized matrices for inference); absent: initialise from `seed`. */
  weights?: Map<string, Float32Array | QuantizedWeight>;
  seed?: number;
  /** Standard deviation of a matrix's initial values. */
  std: (name: string) => number;
  /** False freezes the parameters (no gradient): a base under adapters. Default true. */
  trainable?: boolean;
}

export interface Parameters {
  /** f32 parameters on the graph, by name. */
  params: Map<string, Tensor>;
  /** Matrices loaded quantized (inference only); not in `params`. */
  quantized: Map<string, QuantMatrix>;
  /** Every weight by name, whichever kind. */
  all: Map<string, Weight>;
}

/** Creates the parameters `shapes` lists, in its order, on `graph`: loaded from `o.weights` or initialised. */
export function createParameters(graph: Graph, shapes: readonly (readonly [string, readonly number[]])[], o: ParameterOptions): Parameters {
  const rng = new Rng(o.seed ?? 1);
  const out: Parameters = { params: new Map(), quantized: new Map(), all: new Map() };
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (o.weights) {
      const w = o.weights.get(name);
      if (!w) throw new Error(`model weights: missing tensor '${name}'`);
      if (!(w instanceof Float32Array)) {
        if (/\.lora_[ab]$/.test(name)) throw new Error(`model weights: adapter tensor '${name}' is ${w.type}; per-position adapters must be f32`);
        if (shape.length !== 2) throw new Error(`model weights: tensor '${name}' is ${w.type}, but only matrices can be quantized`);
        const q = new QuantMatrix(graph, name, w.type, [shape[0], shape[1]], w.bytes());
        out.quantized.set(name, q);
        out.all.set(name, q);
        continue;
      }
      if (w.length !== n) throw new Error(`model weights: tensor '${name}' has ${w.length} values, expected [${shape.join(', ')}] = ${n}`);
      data = w;
    } else {
      data = initialValues(name, shape, rng, o.std(name));
    }
    const t = graph.param(name, [...shape], data, o.trainable ?? true);
    out.params.set(name, t);
    out.all.set(name, t);
  }
  return out;
}
