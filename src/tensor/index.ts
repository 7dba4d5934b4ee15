/** The tensor layer: tensors, the reverse-mode tape, and differentiable ops. */
export { Graph, NonFiniteError, Tensor, describe, sizeOf, type Shape } from './tensor.js';
export * as ops from './ops.js';
