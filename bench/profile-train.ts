/**
 * Where a training step's time goes, per kernel (not a comparison; for finding the next thing to speed up).
 *   npm run bench -- profile-train [--config tiny] [--threads 2] [--steps 5] [--batch 16]
 */
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { formatProfile, profiled } from '../src/kernels/profile.js';
import { PRESETS } from '../src/models/config.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { AdamW } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';

function arg(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--batch', '--config', '--steps', '--threads'];

export async function main(argv: string[]): Promise<void> {
  const cfg = PRESETS[arg(argv, '--config', 'tiny')];
  const threads = Number(arg(argv, '--threads', '2')), steps = Number(arg(argv, '--steps', '5')), batch = Number(arg(argv, '--batch', '16'));
  const inner = await createWasmBackend({ threads });
  const { backend, profile } = profiled(inner);
  const g = new Graph(backend);
  const model = new Llama(g, cfg);
  const params = [...model.params.values()];
  const opt = new AdamW(params, (t) => model.decayed(t));
  const rng = new Rng(1);
  const T = cfg.ctx, ids = new Int32Array(batch * T), targets = new Int32Array(batch * T);
  let wall = 0;
  for (let s = 0; s < steps + 2; s++) {
    for (let i = 0; i < ids.length; i++) { ids[i] = rng.int(256); targets[i] = rng.int(256); }
    if (s === 2) { profile.clear(); wall = 0; }
    const t0 = performance.now();
    g.zeroGrad(params);
    const loss = model.loss(ids, targets, batch);
    g.backward(loss);
    opt.update(1e-3);
    g.release();
    wall += performance.now() - t0;
  }
  const kernels = [...profile.values()].reduce((a, e) => a + e.ms, 0);
  console.log(`${inner.name} × ${threads} threads, batch ${batch} × ${T}: ${(wall / steps).toFixed(1)} ms/step, ${Math.round((batch * T * steps) / (wall / 1000))} tok/s; kernels ${(kernels / steps).toFixed(1)} ms, other ${((wall - kernels) / steps).toFixed(1)} ms`);
  console.log(formatProfile(profile, steps));
  inner.dispose();
}
