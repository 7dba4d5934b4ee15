/** Building blocks of the models: each takes plain sizes and weights, none a whole model config. */
export { Attention, type AttentionSizes } from './attention.js';
export { TransformerBlock, forwardBlocks, type BlockStackOptions, type Residual } from './block.js';
export { Embedding } from './embedding.js';
export { createParameters, initialValues, isResidualOutput, type ParameterOptions, type Parameters } from './init.js';
export { KvCache } from './kv-cache.js';
export { Linear, PROJECTIONS, type AdapterSlot, type LowRank, type ProjectionAdapters, type ProjectionName, type ProjectionSite } from './linear.js';
export { SwiGluMlp } from './mlp.js';
export { RMSNorm } from './norm.js';
