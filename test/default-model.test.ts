// The embedded default model (models/default.gguf, trained on tinyshakespeare; see MODELS.md) loads
// and generates 50 tokens, through the library and through `npx stlm generate` with no --model.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { generate } from '../src/generate/generate.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { PRESETS } from '../src/models/config.js';
import { loadModel } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';

const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

test('the embedded model generates 50 tokens of Shakespeare-shaped text', async () => {
  const { config, weights, tokenizer } = await loadModel(MODEL);
  assert.deepEqual(config, PRESETS.tiny);
  const be = await createWasmBackend({ threads: 1 });
  try {
    const model = new Llama(new Graph(be), config, weights);
    const r = generate(model, tokenizer, 'ROMEO:', { maxTokens: 50, temperature: 0 });
    assert.equal(r.tokens.length, 50);
    assert.equal(r.finishReason, 'length');
    // A trained byte model writes mostly letters and spaces, not noise.
    const letters = (r.text.match(/[A-Za-z ,.'\n]/g) ?? []).length;
    assert.ok(letters >= 45, `generated text looks untrained: ${JSON.stringify(r.text)}`);
  } finally {
    be.dispose();
  }
});

test('`stlm generate` uses the embedded model when no --model is given', () => {
  const r = spawnSync(process.execPath, [CLI, 'generate', '--prompt', 'ROMEO:', '--max-tokens', '50', '--seed', '3'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.startsWith('ROMEO:'));
  assert.ok(Buffer.byteLength(r.stdout) >= 'ROMEO:'.length + 40, `too little output: ${JSON.stringify(r.stdout)}`);
});
