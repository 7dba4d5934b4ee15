// The one block geometry table (src/dtypes/blocks.ts) against llama.cpp's ggml type_traits, written out
// here independently, so every layer that takes its geometry from the table is checked through it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLOCK_GEOMETRY, GGML_TYPE, QUANT_BLOCKS, QUANT_TYPES, blockGeometry, quantBlock, quantTypeOf } from '../src/dtypes/blocks.js';

test('dtypes: block geometry of the types stlm reads and writes is ggml\'s', () => {
  const ggml: [string, number, number, number][] = [
    // name, ggml type id, values per block, bytes per block (ggml.c type_traits: blck_size, type_size)
    ['F32', 0, 1, 4], ['F16', 1, 1, 2], ['Q4_0', 2, 32, 18], ['Q8_0', 8, 32, 34], ['Q4_K', 12, 256, 144], ['BF16', 30, 1, 2],
    ['Q6_K', 14, 256, 210], ['Q8_K', 15, 256, 292], ['IQ4_XS', 23, 256, 136], ['MXFP4', 39, 32, 17],
  ];
  for (const [name, id, values, bytes] of ggml) {
    assert.equal(GGML_TYPE[name as keyof typeof GGML_TYPE], id, name);
    assert.deepEqual({ ...blockGeometry(id)! }, { id, name, values, bytes }, name);
  }
  assert.equal(BLOCK_GEOMETRY.size, Object.keys(GGML_TYPE).length, 'one row per ggml type id');
  assert.equal(blockGeometry(4), undefined, 'ids 4 and 5 (the removed Q4_2/Q4_3) are no type');
});

test('dtypes: the kernels\' quantized types, their codes and blocks', () => {
  assert.deepEqual([...QUANT_TYPES], ['q8_0', 'q4_0', 'q4_k']);
  assert.deepEqual(QUANT_TYPES.map((t) => [QUANT_BLOCKS[t].code, QUANT_BLOCKS[t].values, QUANT_BLOCKS[t].bytes, QUANT_BLOCKS[t].block]), [
    [0, 32, 34, 'block'], [1, 32, 18, 'block'], [2, 256, 144, 'super-block'],
  ]);
  assert.equal(quantBlock('q4_k')?.id, GGML_TYPE.Q4_K);
  assert.equal(quantBlock('toString'), undefined);
  assert.equal(quantBlock('q4_1'), undefined);
  assert.equal(quantTypeOf(GGML_TYPE.Q8_0), 'q8_0');
  assert.equal(quantTypeOf(GGML_TYPE.Q4_0), 'q4_0');
  assert.equal(quantTypeOf(GGML_TYPE.Q4_K), 'q4_k');
  assert.equal(quantTypeOf(GGML_TYPE.F16), undefined);
  assert.equal(quantTypeOf(GGML_TYPE.Q6_K), undefined);
});
