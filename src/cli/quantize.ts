/** `stlm quantize`: writes a GGUF whose matrices are Q8_0, Q4_0, Q4_K (or F16) from an f32/f16 model. */
import { statSync } from 'node:fs';
import { GGML_TYPE, ggmlTypeName } from '../formats/gguf.js';
import { architectureOf } from '../models/architectures.js';
import { fileTypeOf, loadModel, saveModel } from '../io/model-file.js';
import { type QuantTarget, checkFinite, planQuantization } from '../io/quantize.js';

export interface QuantizeCliOptions {
  type: QuantTarget;
  embeddingType?: QuantTarget;
  tokenizer?: string;
  allowRequantize: boolean;
}

const QUANTIZED = new Set<number>([GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q4_1, GGML_TYPE.Q5_0, GGML_TYPE.Q5_1, GGML_TYPE.Q4_K, GGML_TYPE.Q5_K, GGML_TYPE.Q6_K, GGML_TYPE.Q2_K, GGML_TYPE.Q3_K]);

export async function runQuantize(input: string, output: string, o: QuantizeCliOptions): Promise<void> {
  const m = await loadModel(input, { tokenizer: o.tokenizer });
  if (!architectureOf(m.config).quantizable) {
    // A quantized pooled file could not be run: BytePooled computes with f32 weights only (no quantized matmul path).
    throw new Error(`${input} is a byte-pooled model (stlm-pooled): byte-pooled models cannot be quantized yet, because stlm runs them from f32 weights only (their encoder, core and byte decoder have no quantized path); for a smaller file, convert it to f16: stlm convert ${input} <out.gguf> --type f16`);
  }
  const already = m.file?.tensors.find((t) => QUANTIZED.has(t.type));
  if (already && !o.allowRequantize) {
    throw new Error(`${input} is already quantized (tensor '${already.name}' is ${ggmlTypeName(already.type)}): quantizing again compounds the error; start from the f32/f16 model, or pass --allow-requantize`);
  }
  checkFinite(m.weights);
  const plan = planQuantization(m.config, o.type, { embedding: o.embeddingType });
  for (const note of plan.notes) process.stderr.write(`note: ${note}\n`);
  await saveModel(output, m, { matrixType: (name) => plan.types.get(name)!, fileType: fileTypeOf(planMainType(o.type)) });
  const counts = new Map<string, number>();
  for (const t of plan.types.values()) counts.set(ggmlTypeName(t), (counts.get(ggmlTypeName(t)) ?? 0) + 1);
  const before = statSync(input).isFile() ? statSync(input).size : 0;
  const after = statSync(output).size;
  process.stderr.write(`${input} -> ${output}: ${[...counts].map(([t, n]) => `${n} ${t}`).join(', ')} tensors; ` +
    `${(after / 1e6).toFixed(2)} MB${before ? ` (${(before / after).toFixed(2)}x smaller than ${(before / 1e6).toFixed(2)} MB)` : ''}\n`);
}

function planMainType(t: QuantTarget): number {
  return { q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0, q4_k: GGML_TYPE.Q4_K, f16: GGML_TYPE.F16, f32: GGML_TYPE.F32 }[t];
}
