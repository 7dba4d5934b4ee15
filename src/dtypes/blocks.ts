/**
 * The one table of tensor element types: for every ggml type a GGUF file may hold, its ggml type id,
 * name, values per block and bytes per block (llama.cpp's ggml type_traits; a plain type such as F32 is
 * a "block" of one value). Every other layer (the GGUF reader and writer, the kernels, the quantized
 * tensors, the quantization plan) takes block geometry from here, never from a copy.
 *
 * Block layouts stlm reads and writes (ggml-common.h):
 *   Q8_0 (32 values, 34 bytes): f16 d, then 32 × int8 q;  x = q·d
 *   Q4_0 (32 values, 18 bytes): f16 d, then 16 bytes; value j (0..15) is the low nibble of byte j,
 *                               value j + 16 its high nibble; x = (nibble − 8)·d
 *   Q4_K (256 values, 144 bytes): a super-block of 8 sub-blocks of 32, see kquants.ts
 */

/** ggml type ids. */
export const GGML_TYPE = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9,
  Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, Q8_K: 15,
  IQ2_XXS: 16, IQ2_XS: 17, IQ3_XXS: 18, IQ1_S: 19, IQ4_NL: 20, IQ3_S: 21, IQ2_S: 22, IQ4_XS: 23,
  I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, IQ1_M: 29, BF16: 30, TQ1_0: 34, TQ2_0: 35, MXFP4: 39,
} as const;

export type GgmlTypeName = keyof typeof GGML_TYPE;

/** One element type's block geometry. */
export interface BlockGeometry {
  /** ggml type id. */
  readonly id: number;
  /** ggml name ('Q8_0'). */
  readonly name: GgmlTypeName;
  /** Values per block (1 for plain types). */
  readonly values: number;
  /** Bytes per block. */
  readonly bytes: number;
}

/** [name, values per block, bytes per block], in type id order. */
const TABLE: readonly (readonly [GgmlTypeName, number, number])[] = [
  ['F32', 1, 4],
  ['F16', 1, 2],
  ['Q4_0', 32, 18],
  ['Q4_1', 32, 20],
  ['Q5_0', 32, 22],
  ['Q5_1', 32, 24],
  ['Q8_0', 32, 34],
  ['Q8_1', 32, 36],
  ['Q2_K', 256, 84],
  ['Q3_K', 256, 110],
  ['Q4_K', 256, 144],
  ['Q5_K', 256, 176],
  ['Q6_K', 256, 210],
  ['Q8_K', 256, 292],
  ['IQ2_XXS', 256, 66],
  ['IQ2_XS', 256, 74],
  ['IQ3_XXS', 256, 98],
  ['IQ1_S', 256, 50],
  ['IQ4_NL', 32, 18],
  ['IQ3_S', 256, 110],
  ['IQ2_S', 256, 82],
  ['IQ4_XS', 256, 136],
  ['I8', 1, 1],
  ['I16', 1, 2],
  ['I32', 1, 4],
  ['I64', 1, 8],
  ['F64', 1, 8],
  ['IQ1_M', 256, 56],
  ['BF16', 1, 2],
  ['TQ1_0', 256, 54],
  ['TQ2_0', 256, 66],
  ['MXFP4', 32, 17],
];

/** Every ggml type a GGUF file may hold, by type id. */
export const BLOCK_GEOMETRY: ReadonlyMap<number, BlockGeometry> = new Map(
  TABLE.map(([name, values, bytes]) => [GGML_TYPE[name], Object.freeze({ id: GGML_TYPE[name], name, values, bytes })]),
);

/** The geometry of a ggml type id, or undefined for an id not in the table. */
export function blockGeometry(id: number): BlockGeometry | undefined {
  return BLOCK_GEOMETRY.get(id);
}

/**
 * The block-quantized types the kernels run from their blocks (`Backend.matmulQuant`), by the kernels'
 * names, in the order of the kernels' type codes (0 = Q8_0, 1 = Q4_0, 2 = Q4_K).
 */
export const QUANT_TYPES = ['q8_0', 'q4_0', 'q4_k'] as const;
export type QuantType = (typeof QUANT_TYPES)[number];

/** A kernel quantized type's geometry, and what its block is called in messages. */
export interface QuantBlock extends BlockGeometry {
  readonly type: QuantType;
  /** Kernel type code (its index in QUANT_TYPES). */
  readonly code: number;
  /** 'super-block' for a k-quant (256 values of sub-blocks), else 'block'. */
  readonly block: 'block' | 'super-block';
}

const QUANT_GGML_NAME: Record<QuantType, GgmlTypeName> = { q8_0: 'Q8_0', q4_0: 'Q4_0', q4_k: 'Q4_K' };

/** The kernel quantized types' blocks, by kernel name. */
export const QUANT_BLOCKS: Readonly<Record<QuantType, QuantBlock>> = Object.freeze(Object.fromEntries(QUANT_TYPES.map((type, code) => {
  const g = BLOCK_GEOMETRY.get(GGML_TYPE[QUANT_GGML_NAME[type]])!;
  return [type, Object.freeze({ ...g, type, code, block: g.name.endsWith('_K') ? 'super-block' : 'block' })];
})) as Record<QuantType, QuantBlock>);

/** A kernel quantized type's block, or undefined for a string that names none (checked at run time: callers may pass anything). */
export function quantBlock(type: string): QuantBlock | undefined {
  return Object.hasOwn(QUANT_BLOCKS, type) ? QUANT_BLOCKS[type as QuantType] : undefined;
}

/** The kernel quantized type of a ggml type id, or undefined when the kernels do not run it. */
export function quantTypeOf(id: number): QuantType | undefined {
  return QUANT_TYPES.find((t) => QUANT_BLOCKS[t].id === id);
}
