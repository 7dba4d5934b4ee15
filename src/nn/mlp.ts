/** The SwiGLU feed-forward network: down(silu(gate(h)) ⊙ up(h)). */
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Linear } from './linear.js';

export class SwiGluMlp {
  constructor(
    readonly gate: Linear, // [hidden, d]
    readonly up: Linear, // [hidden, d]
    readonly down: Linear, // [d, hidden]
  ) {}

  /** h [rows, d] -> [rows, d]. */
  forward(h: Tensor): Tensor {
    return this.down.forward(ops.swiglu(this.gate.forward(h), this.up.forward(h)));
  }
}
