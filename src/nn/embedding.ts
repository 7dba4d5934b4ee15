/** A token embedding: rows of an f32 or quantized table (a quantized one is dequantized row by row, inference only). */
import * as ops from '../tensor/ops.js';
import { QuantMatrix, type Weight, embeddingQuant } from '../tensor/quant.js';
import type { Tensor } from '../tensor/tensor.js';

export class Embedding {
  constructor(
    /** [vocab, d] */
    readonly table: Weight,
  ) {}

  /** ids [n] -> [n, d]. */
  forward(ids: Int32Array): Tensor {
    return this.table instanceof QuantMatrix ? embeddingQuant(this.table, ids) : ops.embedding(this.table, ids);
  }
}
