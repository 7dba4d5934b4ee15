/**
 * A stack of Llama blocks built from weights stored under GGUF names (`<prefix>blk.N.attn_q.weight`, …),
 * with the STLM sharing options: a shared FFN (every layer reads layer 0's), a repeated block (the same
 * weights at several consecutive positions) and per-position low-rank updates of shared weights. Both
 * the flat Llama and the byte-pooled model (its core and its byte decoder) are made of these.
 */
import { Attention } from '../nn/attention.js';
import { TransformerBlock } from '../nn/block.js';
import { type AdapterSlot, Linear, type ProjectionName } from '../nn/linear.js';
import { SwiGluMlp } from '../nn/mlp.js';
import { RMSNorm } from '../nn/norm.js';
import type { Parameters } from '../nn/init.js';
import type { Weight } from '../tensor/quant.js';
import type { Tensor } from '../tensor/tensor.js';
import { type LlamaConfig, ffnSource, headDim, sharedLoraNames } from './config.js';

/** One TransformerBlock per block position (a repeated block appears once per repeat, sharing its weights). */
export function buildBlocks(c: LlamaConfig, p: Parameters, prefix = '', slot: AdapterSlot = { adapters: null }): TransformerBlock[] {
  const weight = (name: string): Weight => need(p.all.get(name), name);
  const gain = (name: string): Tensor => need(p.params.get(name), name);
  const sizes = { heads: c.nHeads, kvHeads: c.nKvHeads, headDim: headDim(c), ropeTheta: c.ropeTheta };
  const blocks: TransformerBlock[] = [];
  for (let i = 0; i < c.nLayers; i++) {
    for (let r = 0; r < (c.blockRepeat ?? 1); r++) {
      const position = blocks.length;
      const linear = (layer: number, projection: ProjectionName): Linear => {
        // The position's own update of a shared weight exists where the config gives it one (sharedLoraRank).
        const lora = sharedLoraNames(position, projection), a = p.params.get(prefix + lora.a);
        return new Linear(weight(`${prefix}blk.${layer}.${projection}.weight`), { position, projection, slot, own: a && { a, b: gain(prefix + lora.b) } });
      };
      const f = ffnSource(c, i);
      blocks.push(new TransformerBlock(
        new RMSNorm(gain(`${prefix}blk.${i}.attn_norm.weight`), c.normEps),
        new Attention(linear(i, 'attn_q'), linear(i, 'attn_k'), linear(i, 'attn_v'), linear(i, 'attn_output'), sizes),
        new RMSNorm(gain(`${prefix}blk.${i}.ffn_norm.weight`), c.normEps),
        new SwiGluMlp(linear(f, 'ffn_gate'), linear(f, 'ffn_up'), linear(f, 'ffn_down')),
      ));
    }
  }
  return blocks;
}

function need<T>(t: T | undefined, name: string): T {
  if (t === undefined) throw new Error(`model weights: missing tensor '${name}'`);
  return t;
}
