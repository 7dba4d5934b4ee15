/** `stlm merge`: folds a LoRA adapter into its base, writing a plain f32 GGUF model. */
import { sharesWeights } from '../models/config.js';
import { loadModel, saveModel } from '../io/model-file.js';
import { readLoraAdapter } from '../io/lora-file.js';
import { mergeLora } from '../models/lora.js';

export async function runMerge(basePath: string, adapterPath: string, outPath: string, o: { tokenizer?: string }): Promise<void> {
  const base = await loadModel(basePath, { tokenizer: o.tokenizer });
  const lora = await readLoraAdapter(adapterPath, base.config);
  const merged = mergeLora(base, lora);
  await saveModel(outPath, merged, { name: 'stlm merged' });
  const note = sharesWeights(base.config) ? ` (shared weights written out per block: ${merged.config.nLayers} blocks)` : '';
  process.stderr.write(`merged ${lora.pairs.size} adapted tensors into ${outPath}${note}\n`);
}
