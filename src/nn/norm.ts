/** RMSNorm: x / rms(x) · gain, per row. Gains are always f32. */
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';

export class RMSNorm {
  constructor(
    /** [d] */
    readonly gain: Tensor,
    readonly eps: number,
  ) {}

  /** x [rows, d] -> [rows, d]. */
  forward(x: Tensor): Tensor {
    return ops.rmsNorm(x, this.gain, this.eps);
  }
}
