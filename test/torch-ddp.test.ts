// The "past one machine" recipe (examples/torch-ddp/): stlm trains a model, exports it as a Hugging Face
// directory, `torchrun --nproc_per_node 2` continues it with PyTorch's DistributedDataParallel (gloo,
// CPU) on the same text, and stlm opens the result again. Checked: the model PyTorch starts from is the
// one stlm trained (the same validation bits per byte, computed independently on each side); the loss
// keeps falling across the hand-off; stlm's logits for the returned model equal PyTorch's within 1e-4;
// stlm evaluates and quantizes it. Needs Debian's python3-torch (.ci/run installs it); skipped without.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openModel } from '../src/io/open.js';
import { Llama } from '../src/models/llama.js';
import { forwardLogits } from './helpers.js';

const PY = '/usr/bin/python3';
const TORCHRUN = '/usr/bin/torchrun';
const SCRIPT = fileURLToPath(new URL('../../examples/torch-ddp/continue_ddp.py', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const torch = spawnSync(PY, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
const SKIP = torch.status !== 0 ? `PyTorch is not installed (apt-get install python3-torch): ${PY} -c 'import torch' failed`
  : !existsSync(TORCHRUN) ? `${TORCHRUN} is missing (Debian's python3-torch installs it)` : false;

function run(bin: string, args: string[], timeout = 300_000): { stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout });
  assert.equal(r.status, 0, `${bin} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${r.error?.message ?? r.stderr.slice(-2000)}`);
  return r;
}
const stlm = (...args: string[]) => run(process.execPath, [CLI, ...args]);
const bpb = (model: string, data: string) => (JSON.parse(stlm('eval', 'bpb', '--model', model, '--data', data, '--ctx', '64', '--json').stdout) as { bpb: number }).bpb;

describe('continuing an stlm model with torchrun (DDP, 2 processes) and importing it back', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'stlm-torch-ddp-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('same starting point, the loss keeps falling, the same logits back in stlm', async (t) => {
    // Text with structure to learn, made here: numbered lines of a small grammar.
    const nouns = ['king', 'queen', 'fool', 'ghost', 'sword', 'crown'], verbs = ['sees', 'loves', 'fears', 'holds'];
    const data = join(dir, 'data.txt');
    writeFileSync(data, Array.from({ length: 1500 }, (_, i) => `${i % 7}: the ${nouns[i % 6]} ${verbs[(i * 5) % 4]} the ${nouns[(i * 7 + 3) % 6]}.`).join('\n'));

    const gguf = join(dir, 'stlm.gguf'), hf = join(dir, 'hf'), back = join(dir, 'hf-torch'), log = join(dir, 'torch.jsonl');
    const trained = stlm('train', '--data', data, '--config', 'micro', '--steps', '30', '--batch', '8', '--ctx', '64', '--warmup', '5',
      '--eval-every', '10', '--eval-windows', '8', '--save-every', '0', '--threads', '2', '--out', gguf).stderr;
    const stlmLosses = [...trained.matchAll(/^step (\d+)\/\d+ \| loss ([\d.]+)/gm)].map((m) => [Number(m[1]), Number(m[2])]);
    stlm('convert', gguf, hf);
    const before = bpb(gguf, data);

    run(TORCHRUN, ['--redirects', '1', '--tee', '1', '--nproc_per_node', '2', SCRIPT, '--model', hf, '--data', data, '--out', back,
      '--steps', '20', '--batch', '8', '--ctx', '64', '--lr', '1e-3', '--log', log]);
    const entries = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { phase: string; step?: number; loss?: number; val_bpb?: number });
    const start = entries.find((e) => e.phase === 'start')!.val_bpb!, end = entries.find((e) => e.phase === 'end')!.val_bpb!;
    const torchLosses = entries.filter((e) => e.phase === 'train').map((e) => e.loss!);
    t.diagnostic(`stlm: ${stlmLosses.map(([s, l]) => `step ${s} loss ${l}`).join(', ')}; validation ${before.toFixed(4)} bits/byte`);
    t.diagnostic(`torchrun: validation ${start.toFixed(4)} -> ${end.toFixed(4)} bits/byte; losses ${torchLosses.map((l) => l.toFixed(3)).join(' ')}`);

    // PyTorch starts from the model stlm trained: its own forward gives stlm's validation number.
    assert.ok(Math.abs(start - before) < 1e-4, `PyTorch's starting validation ${start} != stlm's ${before}`);
    assert.equal(torchLosses.length, 20);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(torchLosses.slice(-5)) < mean(torchLosses.slice(0, 5)), 'the loss did not fall under torchrun');
    assert.ok(end < start - 0.05, `validation did not improve under torchrun: ${start} -> ${end}`);
    // stlm's own evaluation of the returned directory agrees with PyTorch's.
    const after = bpb(back, data);
    assert.ok(Math.abs(after - end) < 1e-4, `stlm's validation of the returned model ${after} != PyTorch's ${end}`);

    // The same logits at every position, stlm's engine against PyTorch's model.
    const ids = Array.from(readFileSync(data).subarray(0, 48));
    const torchLogits = JSON.parse(run(PY, [SCRIPT, '--model', back, '--logits', ids.join(',')]).stdout) as { shape: number[]; logits: number[][] };
    const h = await openModel(back);
    try {
      assert.ok(h.model instanceof Llama);
      const ours = forwardLogits(h.model, ids);
      const vocab = h.config.vocabSize;
      assert.deepEqual(torchLogits.shape, [ids.length, vocab]);
      let worst = 0;
      torchLogits.logits.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - ours[i * vocab + j])))));
      t.diagnostic(`largest logit difference, stlm vs PyTorch: ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `logits differ by ${worst}`);
    } finally {
      h.dispose();
    }

    // And it quantizes like any stlm model, losing little.
    const q8 = join(dir, 'q8.gguf');
    stlm('quantize', back, q8, '--type', 'q8_0');
    assert.ok(Math.abs(bpb(q8, data) - after) < 0.02);
  });
});
