/**
 * Quantized weight matrices (GGUF's Q8_0, Q4_0 and Q4_K blocks) held in backend memory as raw bytes, and the two
 * inference ops that read them: a linear layer and an embedding lookup. They never make an f32 copy of
 * the matrix: the backend multiplies straight from the blocks. Inference only: there is no gradient.
 */
import { QUANT_BLOCKS } from '../dtypes/blocks.js';
import type { Buf, QuantType } from '../kernels/backend.js';
import type { Graph, Tensor } from './tensor.js';

/** Bytes a [rows, cols] matrix of `type` takes. */
export function quantByteLength(type: QuantType, rows: number, cols: number): number {
  const { values, bytes } = QUANT_BLOCKS[type];
  if (cols % values !== 0) throw new Error(`a ${type} matrix needs rows of whole ${values}-value blocks; ${cols} columns is not a multiple of ${values}`);
  return (rows * cols / values) * bytes;
}

/** A [rows, cols] matrix in a block-quantized type, uploaded once to backend memory. */
export class QuantMatrix {
  readonly buf: Buf;

  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly type: QuantType,
    readonly shape: readonly [number, number],
    bytes: Uint8Array,
  ) {
    const want = quantByteLength(type, shape[0], shape[1]);
    if (bytes.length !== want) throw new Error(`${name}: ${bytes.length} bytes for a ${type} matrix [${shape.join(', ')}] that takes ${want}`);
    this.buf = graph.backend.uploadQuant(bytes, { type, rows: shape[0], k: shape[1] });
  }

  dispose(): void {
    this.graph.backend.free(this.buf);
  }
}

function inferenceOnly(op: string, g: Graph, x?: Tensor): void {
  if (g.recording && x?.requiresGrad) throw new Error(`${op}: quantized weights have no gradient; use them for inference (graph.noGrad) only`);
}

/** x [rows, in] · Wᵀ with W [out, in] quantized -> [rows, out]. */
export function linearQuant(x: Tensor, w: QuantMatrix): Tensor {
  const g = x.graph;
  inferenceOnly('linearQuant', g, x);
  const k = x.shape[x.shape.length - 1];
  if (k !== w.shape[1]) throw new Error(`linearQuant: input features ${k} differ from ${w.name}'s ${w.shape[1]}`);
  const m = x.size / k;
  const out = g.temp([...x.shape.slice(0, -1), w.shape[0]]);
  g.backend.matmulQuant(x.buf, w.buf, out.buf, { m, n: w.shape[0], k, type: w.type });
  return out;
}

/** Rows `ids` of a quantized table, dequantized -> [ids.length, cols]. */
export function embeddingQuant(table: QuantMatrix, ids: Int32Array): Tensor {
  const g = table.graph;
  inferenceOnly('embeddingQuant', g);
  const out = g.temp([ids.length, table.shape[1]]);
  g.backend.dequantizeRows(table.buf, ids, out.buf, { k: table.shape[1], type: table.type });
  return out;
}

/** A quantized tensor's bytes, produced on demand (so a loader can read them from disk only at upload). */
export interface QuantizedWeight {
  readonly type: QuantType;
  readonly byteLength: number;
  /**
   * The bytes. From a model file loaded with keepQuantized this is a view of a read buffer that the next
   * tensor's bytes() overwrites (the model uploads each tensor at once): copy it to keep it.
   */
  bytes(): Uint8Array;
}

/** A weight either in f32 (a Tensor) or quantized; what a model layer multiplies by. */
export type Weight = Tensor | QuantMatrix;

/** x · Wᵀ for either kind of weight. */
export function project(x: Tensor, w: Weight, linear: (x: Tensor, w: Tensor) => Tensor): Tensor {
  return w instanceof QuantMatrix ? linearQuant(x, w) : linear(x, w);
}
