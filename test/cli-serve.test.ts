// `stlm serve` as a command: the embedded model by default (what `npm start` runs), printing its URL;
// a tiers file (every tier by name, the router as auto); an API key from an environment variable; bad
// flags exit 2 with one line. Port 0, loopback; each server is stopped with SIGTERM and exits 0.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'stlm-serve-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `stlm serve ...args` and waits for the line with its URL. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<{ url: string; line: string; child: ChildProcessWithoutNullStreams }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1', ...args], { env: { ...process.env, ...env } });
  let out = '', err = '';
  child.stderr.on('data', (d) => (err += d));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const l = out.split('\n').find((x) => x.startsWith('stlm serve: '));
      if (l) resolve(l);
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    setTimeout(() => reject(new Error(`no URL in 60 s: ${out} ${err}`)), 60_000).unref();
  });
  return { url: /(http:\/\/\S+)\/v1/.exec(line)![1], line, child };
}

async function stop(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return exited;
}

test('the embedded model by default: prints its URL, answers, exits 0 on SIGTERM', async () => {
  const { url, line, child } = await serve([]);
  try {
    assert.match(line, /^stlm serve: http:\/\/127\.0\.0\.1:\d+\/v1 \(models: default\.gguf\)$/);
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), ['default.gguf']);
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default.gguf', prompt: 'ROMEO:', max_tokens: 4, seed: 1 }) });
    assert.equal(r.status, 200);
  } finally {
    assert.equal(await stop(child), 0);
  }
});

test('--tiers: every tier by name (logprobs from a local tier) and the router as auto; --api-key-env', async () => {
  const cfg = join(dir, 'tiers.yaml');
  writeFileSync(cfg, `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(MODEL)} }\nrouter: { policy: cheapest }\n`);
  const { url, child } = await serve(['--tiers', cfg, '--api-key-env', 'STLM_TEST_KEY'], { STLM_TEST_KEY: 'k1' });
  try {
    const auth = { 'content-type': 'application/json', authorization: 'Bearer k1' };
    assert.equal((await fetch(`${url}/v1/models`)).status, 401);
    const models = await (await fetch(`${url}/v1/models`, { headers: auth })).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), ['tiny', 'auto']);
    const a = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }) });
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.headers.get('x-stlm-route')!).tier, 'tiny');
    const t = await (await fetch(`${url}/v1/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'tiny', prompt: 'ROMEO:', max_tokens: 0, echo: true, logprobs: 1 }) })).json();
    assert.equal(t.choices[0].logprobs.token_logprobs[0], null);
    assert.ok(t.choices[0].logprobs.token_logprobs.length > 1);
  } finally {
    assert.equal(await stop(child), 0);
  }
});

test('bad flags: --model with --tiers, an unset --api-key-env: one line, exit 2', () => {
  let r = spawnSync(process.execPath, [CLI, 'serve', '--model', MODEL, '--tiers', 'x.yaml'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'stlm: error: serve: give --model or --tiers, not both\n');
  r = spawnSync(process.execPath, [CLI, 'serve', '--api-key-env', 'STLM_SURELY_UNSET_VAR'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, STLM_SURELY_UNSET_VAR: '' } });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^stlm: error: serve: --api-key-env STLM_SURELY_UNSET_VAR: that environment variable is not set or is empty\n$/);
});
