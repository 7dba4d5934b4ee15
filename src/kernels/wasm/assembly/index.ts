// The WebAssembly kernel module: everything exported here is callable from src/kernels/wasm/backend.ts.
export * from './elementwise';
export * from './rows';
export * from './gemm';
export * from './attention';
export * from './quant';
