// The stlm CLI under the other server-side JavaScript runtimes, Deno and Bun (pinned npm dev
// dependencies; bench/lib/runtimes.ts finds them), against Node as the oracle: seeded generation on two
// threads prints the same text, and a few training steps print the same losses and validation bits per
// byte. Under Deno, 2 threads used to print nothing and exit 0 (its event loop did not wait for an
// unref'd worker's first message, see pool.ts); the generation check is that bug's regression test.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, runtimes, type Runtime } from '../bench/lib/runtimes.js';

const found = runtimes();
const node = found.node as Runtime;

function stlm(rt: Runtime, args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string } {
  const [bin, ...pre] = rt.command;
  const r = spawnSync(bin, [...pre, CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  assert.equal(r.status, 0, `${rt.name} ${args[0]} exited with ${r.status ?? r.signal}: ${r.error?.message ?? r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

const GENERATE = ['generate', '--prompt', 'ROMEO:', '--seed', '7', '--max-tokens', '48', '--threads', '2'];

/** The per-step lines and the summary that `stlm train` prints (to stderr), without speeds and times. */
function losses(out: string): string[] {
  return out.split('\n').filter((l) => /^(step|done)/.test(l)).map((l) => l.replace(/\| [\d,.]+ tok\/s.*$/, '').replace(/in \d+s, /, ''));
}

let dir = '';
let data = '';
const nodeOut = { generate: '', train: [] as string[], model: Buffer.alloc(0) };
const trainArgs = (out: string) => ['train', '--data', data, '--config', 'micro', '--steps', '6', '--batch', '4', '--ctx', '64', '--warmup', '2',
  '--eval-every', '3', '--eval-windows', '4', '--save-every', '0', '--threads', '2', '--out', out];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'stlm-runtimes-'));
  data = join(dir, 'data.txt');
  const lines = ['To be, or not to be, that is the question:', 'Whether tis nobler in the mind to suffer', 'The slings and arrows of outrageous fortune,'];
  writeFileSync(data, Array.from({ length: 200 }, (_, i) => lines[i % 3]).join('\n'));
  nodeOut.generate = stlm(node, GENERATE).stdout;
  nodeOut.train = losses(stlm(node, trainArgs(join(dir, 'node.gguf'))).stderr);
  nodeOut.model = readFileSync(join(dir, 'node.gguf'));
  assert.equal(nodeOut.train.length, 4, `unexpected train output under Node: ${nodeOut.train.join(' / ')}`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

for (const name of ['deno', 'bun'] as const) {
  const rt = found[name];
  describe(`the CLI under ${name}`, { skip: typeof rt === 'string' ? rt : false }, () => {
    const r = rt as Runtime;
    test(`generate on 2 threads prints Node's text for the same seed (${name} ${r.version})`, () => {
      const { stdout, stderr } = stlm(r, GENERATE);
      assert.ok(stdout.startsWith('ROMEO:') && stdout.length > 'ROMEO:'.length + 20, `${name} printed ${JSON.stringify(stdout)} (stderr ${JSON.stringify(stderr)})`);
      assert.equal(stdout, nodeOut.generate);
      assert.doesNotMatch(stderr, /one thread/, 'the worker pool fell back to one thread');
    });

    test(`train prints Node's losses and validation bits per byte (${name})`, () => {
      const out = join(dir, `${name}.gguf`);
      assert.deepEqual(losses(stlm(r, trainArgs(out)).stderr), nodeOut.train);
      if (name === 'deno') {
        // Same engine (V8), same WebAssembly: the model is the same to the bit.
        assert.ok(readFileSync(out).equals(nodeOut.model), 'the model trained under Deno differs from Node\'s');
      }
      // Bun runs JavaScriptCore, whose Math.log/cos/exp differ from V8's in the last bit for a few
      // percent of inputs (the Box-Muller initialisation uses them), so its weights differ from Node's
      // by rounding only: the printed losses above agree to their 4 decimals.
    });
  });
}

describe('the CLI under Deno without --allow-ffi', { skip: typeof found.deno === 'string' ? found.deno : false }, () => {
  test('the native addon is skipped cleanly: same text, nothing on stderr', () => {
    const deno = found.deno as Runtime;
    const noFfi: Runtime = { ...deno, command: [deno.command[0], 'run', '--allow-read', '--allow-env', '--allow-sys'] };
    const { stdout, stderr } = stlm(noFfi, GENERATE);
    assert.equal(stdout, nodeOut.generate);
    assert.equal(stderr, '');
  });
});
