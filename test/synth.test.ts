// `stlm synth` (sequence-level distillation): a corpus sampled from a local model file or from an
// OpenAI-compatible endpoint (a node:http server here), its format and determinism, and the CLI's
// handling of bad input (clear one-line message, exit 1, no stack trace).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/index.js';
import { PRESETS } from '../src/models/config.js';
import { byteVocab, loadModel, saveModel } from '../src/io/model-file.js';
import { Llama } from '../src/models/llama.js';
import { Graph } from '../src/tensor/tensor.js';
import { EndpointTeacher } from '../src/tiers/teacher.js';
import { LocalTeacher, type TextTeacher, formatSample, synthesizeCorpus } from '../src/train/synth.js';

const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
/** Runs the CLI without blocking this process (the test's HTTP server must keep answering). */
const cli = (...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, STLM_DEBUG: '' } }, (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }));
  });
/** A failed run: exit 1, the expected one-line error, no stack trace. */
function assertFails(r: { code: number; stderr: string }, message: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
}
/** A sample as the corpus holds it, built here independently of the module. */
const sampleText = (prompt: string, completion: string) => prompt + completion + (completion.endsWith('\n') ? '\n' : '\n\n');

let dir: string;
let be: Backend;
let server: Server;
let base: string;
const requests: { path: string; body: Record<string, unknown>; auth?: string }[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stlm-synth-'));
  be = await createBackend('wasm', { threads: 1 });
  // One server, one behaviour per path prefix: /ok (a fixed completion), /echo (the prompt back, after a
  // random delay), /fail (HTTP 500), /badjson, /nochoices, /empty (empty completions).
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      const path = req.url ?? '';
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(data) as Record<string, unknown>;
      } catch {
        // recorded as {}
      }
      requests.push({ path, body, auth: req.headers.authorization });
      const json = (status: number, o: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(o));
      };
      if (path === '/ok/v1/completions') json(200, { id: 'x', object: 'text_completion', choices: [{ index: 0, text: ' world.', finish_reason: 'length' }] });
      else if (path === '/echo/v1/completions') setTimeout(() => json(200, { choices: [{ text: ` <${String(body.prompt)}|${String(body.seed)}>` }] }), Math.random() * 10);
      else if (path === '/fail/v1/completions') json(500, { error: { message: 'model crashed', type: 'server_error' } });
      else if (path === '/badjson/v1/completions') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"choices": [ oops');
      } else if (path === '/nochoices/v1/completions') json(200, { result: 'hi' });
      else if (path === '/empty/v1/completions') json(200, { choices: [{ text: '' }] });
      else json(404, { error: 'not found' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.close();
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('synth: local teacher', () => {
  let model: string;
  before(async () => {
    const config = { ...PRESETS.nano, vocabSize: byteVocab().tokens.length };
    model = join(dir, 'teacher.gguf');
    await saveModel(model, { config, weights: new Llama(new Graph(be), config, undefined, 7).weights(), vocab: byteVocab() });
  });

  test('the CLI writes >= --bytes; at temperature 0 the first sample is what generate() gives for its prompt', async () => {
    const prompts = join(dir, 'prompts.txt');
    writeFileSync(prompts, 'Once upon a time\n\nThe cat sat\n');
    const out = join(dir, 'local.txt');
    const r = await cli('synth', '--teacher', model, '--out', out, '--bytes', '2000', '--prompts', prompts, '--max-tokens', '40', '--temperature', '0', '--threads', '1');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /wrote .*local\.txt/);
    assert.ok(existsSync(out));
    const corpus = readFileSync(out, 'utf8');
    assert.ok(statSync(out).size >= 2000, `${statSync(out).size} bytes`);
    // The independent path: load the file again and generate greedily from the first prompt.
    const m = await loadModel(model);
    const g = generate(Llama.fromModel(new Graph(be), m), m.tokenizer, 'Once upon a time', { maxTokens: 40, temperature: 0, addBos: m.vocab.addBos ?? false });
    assert.ok(g.text.length > 0);
    const first = sampleText('Once upon a time', g.text);
    assert.ok(corpus.startsWith(first), `corpus starts ${JSON.stringify(corpus.slice(0, 120))}, expected ${JSON.stringify(first)}`);
    assert.ok(corpus.slice(first.length).startsWith('The cat sat'), 'the second sample uses the second prompt (blank lines skipped)');
    assert.ok(!existsSync(`${out}.tmp-${process.pid}`));
  });

  test('Ctrl-C during a local run writes the corpus so far (the sampling loop lets the signal handler run)', async () => {
    const out = join(dir, 'interrupted.txt');
    const child = spawn(process.execPath, [CLI, 'synth', '--teacher', model, '--out', out, '--bytes', '1000000000', '--max-tokens', '40', '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    await new Promise<void>((res) => child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/1 samples \|/.test(stderr)) res();
    }));
    child.kill('SIGINT');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(killer);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /stopped: \d+ samples/);
    assert.ok(statSync(out).size > 0);
  });

  test('sampling is seeded: the same seed gives the same corpus, another seed another', async () => {
    const loaded = await loadModel(model, { keepQuantized: true });
    const teacher = new LocalTeacher(loaded, be, model);
    try {
      const opts = { bytes: 300, maxTokens: 24, temperature: 1 };
      const a = await synthesizeCorpus(teacher, { ...opts, seed: 3 });
      const b = await synthesizeCorpus(teacher, { ...opts, seed: 3 });
      const c = await synthesizeCorpus(teacher, { ...opts, seed: 4 });
      assert.equal(a.text, b.text);
      assert.notEqual(a.text, c.text);
      assert.ok(a.bytes >= 300 && a.bytes === Buffer.byteLength(a.text));
    } finally {
      teacher.close();
    }
  });
});

describe('synth: corpus assembly', () => {
  test('empty completions are left out and the next sample moves on; the corpus is cut after the target, whatever the parallelism', async () => {
    // A teacher whose every third request answers nothing; a sample already ending in a newline gets one more.
    const teacher: TextTeacher = { name: 'fake', complete: async (p, o) => (o.seed % 3 === 0 ? '' : o.seed % 3 === 1 ? `${p}#${o.seed}` : `${p}@${o.seed}\n`) };
    const runs = await Promise.all([1, 2, 5].map((parallel) => synthesizeCorpus(teacher, { bytes: 40, prompts: ['a', 'b'], seed: 1, parallel })));
    const expected = 'aa#1\n\nbb@2\n\nbb#4\n\naa@5\n\naa#7\n\nbb@8\n\nbb#10\n\n';
    for (const r of runs) {
      assert.equal(r.text, expected);
      assert.equal(r.samples, 7);
      assert.equal(r.bytes, Buffer.byteLength(expected));
    }
    assert.equal(formatSample('x', 'y\n'), 'xy\n\n');
    await assert.rejects(synthesizeCorpus(teacher, { bytes: 0 }), /bytes must be a positive integer, got 0/);
    await assert.rejects(synthesizeCorpus(teacher, { bytes: 10, prompts: [] }), /the prompt list is empty/);
    await assert.rejects(synthesizeCorpus(teacher, { bytes: 10, seedText: '\n  \n' }), /no non-blank lines/);
  });
});

describe('synth: OpenAI-compatible endpoint', () => {
  test('request fields and corpus contents', async () => {
    requests.length = 0;
    const teacher = new EndpointTeacher({ baseUrl: `${base}/ok/v1/`, model: 'big-teacher', apiKey: 'sk-test' });
    const progress: number[] = [];
    const r = await synthesizeCorpus(teacher, { bytes: 30, prompts: ['Hello', 'Bye'], maxTokens: 17, temperature: 0.7, seed: 5, onProgress: (p) => progress.push(p.bytes) });
    assert.equal(r.text, 'Hello world.\n\nBye world.\n\nHello world.\n\n');
    assert.equal(r.samples, 3);
    assert.equal(r.bytes, 40);
    assert.deepEqual(requests.map((q) => q.path), Array(3).fill('/ok/v1/completions'));
    assert.deepEqual(requests[0].body, { model: 'big-teacher', prompt: 'Hello', max_tokens: 17, temperature: 0.7, seed: 5 });
    assert.deepEqual(requests.map((q) => q.body.seed), [5, 6, 7]);
    assert.equal(requests[0].auth, 'Bearer sk-test');
    assert.deepEqual(progress, [0, 14, 26, 40]);
  });

  test('parallel requests give the same corpus as sequential ones; seed-text prompts are line starts', async () => {
    const seedText = 'alpha beta gamma delta epsilon\n\n  indented line here ok\nsingle\n';
    const lines = seedText.split('\n').filter((l) => l.trim());
    const teacher = new EndpointTeacher({ baseUrl: `${base}/echo/v1`, model: 'm' });
    const run = (parallel: number) => synthesizeCorpus(teacher, { bytes: 400, seedText, seed: 9, parallel });
    requests.length = 0;
    const one = await run(1);
    const prompts = requests.map((q) => String(q.body.prompt));
    const four = await run(4);
    assert.equal(four.text, one.text);
    assert.ok(one.bytes >= 400);
    assert.ok(new Set(prompts).size > 2, 'prompts vary');
    for (const p of prompts) {
      assert.ok(lines.some((l) => l.startsWith(p) && (l.length === p.length || /\s/.test(l[p.length]))), `'${p}' is a line start ending at a word`);
      assert.ok(p.trim().split(/\s+/).length <= 4);
    }
  });

  test('HTTP errors, bad JSON, a missing choices[0].text and a closed port are one clear line naming the endpoint', async () => {
    const ask = (path: string) => synthesizeCorpus(new EndpointTeacher({ baseUrl: `${base}/${path}/v1`, model: 'm' }), { bytes: 10 });
    const url = (path: string) => `${base}/${path}/v1/completions`.replace(/[./]/g, '\\$&');
    await assert.rejects(ask('fail'), new RegExp(`^Error: endpoint ${url('fail')}: HTTP 500 Internal Server Error: model crashed$`));
    await assert.rejects(ask('badjson'), new RegExp(`^Error: endpoint ${url('badjson')}: the response is not JSON: \\{"choices": \\[ oops$`));
    await assert.rejects(ask('nochoices'), new RegExp(`^Error: endpoint ${url('nochoices')}: the response has no choices\\[0\\]\\.text`));
    await assert.rejects(ask('missing'), /HTTP 404 Not Found: not found$/);
    await assert.rejects(ask('empty'), /returned 20 empty completions in a row/);
    // A port nobody listens on: take one from a server and close it.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await assert.rejects(synthesizeCorpus(new EndpointTeacher({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'm' }), { bytes: 10 }), /^Error: endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/completions: request failed: ECONNREFUSED$/);
    assert.throws(() => new EndpointTeacher({ baseUrl: 'localhost:8080', model: 'm' }), /only http and https/);
  });
});

describe('synth: the CLI', () => {
  test('an endpoint run writes the corpus and reports progress on stderr', async () => {
    const out = join(dir, 'remote.txt');
    const prompts = join(dir, 'p.txt');
    writeFileSync(prompts, 'Hi\n');
    process.env.STLM_SYNTH_TEST_KEY = 'sk-cli';
    requests.length = 0;
    const r = await cli('synth', '--endpoint', `${base}/ok/v1`, '--endpoint-model', 'teach', '--api-key-env', 'STLM_SYNTH_TEST_KEY', '--out', out, '--bytes', '20', '--prompts', prompts, '--max-tokens', '8', '--temperature', '0.5', '--seed', '3');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out, 'utf8'), 'Hi world.\n\nHi world.\n\n');
    assert.match(r.stderr, /2 samples \| 22\/20 bytes \| [\d,]+ B\/s \| \d+s elapsed \| ETA \d+s/);
    assert.deepEqual(requests[0].body, { model: 'teach', prompt: 'Hi', max_tokens: 8, temperature: 0.5, seed: 3 });
    assert.equal(requests[0].auth, 'Bearer sk-cli');
  });

  test('bad input: one clear line, exit 1, nothing written', async () => {
    const out = join(dir, 'bad.txt');
    const ep = ['--endpoint', `${base}/ok/v1`, '--endpoint-model', 'm'];
    assertFails(await cli('synth', '--out', out, '--bytes', '100'), /stlm: error: synth: give a teacher: --teacher <model file> or --endpoint/);
    assertFails(await cli('synth', '--teacher', 'x.gguf', ...ep, '--out', out, '--bytes', '100'), /give --teacher or --endpoint, not both/);
    assertFails(await cli('synth', '--endpoint', `${base}/ok/v1`, '--out', out, '--bytes', '100'), /--endpoint needs --endpoint-model/);
    assertFails(await cli('synth', ...ep, '--out', out, '--bytes', '0'), /--bytes must be an integer >= 1, got '0'/);
    assertFails(await cli('synth', ...ep, '--out', out, '--bytes', '1.5'), /--bytes must be an integer >= 1, got '1.5'/);
    assertFails(await cli('synth', ...ep, '--out', out, '--bytes', 'lots'), /--bytes must be an integer >= 1, got 'lots'/);
    assertFails(await cli('synth', ...ep, '--out', out), /required option '--bytes <n>' not specified/);
    assertFails(await cli('synth', ...ep, '--out', out, '--bytes', '100', '--prompts', join(dir, 'nope.txt')), /stlm: error: --prompts: cannot read '.*nope\.txt': ENOENT/);
    assertFails(await cli('synth', ...ep, '--out', out, '--bytes', '100', '--prompts', dir), /stlm: error: --prompts: cannot read '.*': EISDIR/);
    assertFails(await cli('synth', ...ep, '--api-key-env', 'STLM_SYNTH_UNSET_VAR', '--out', out, '--bytes', '100'), /the environment variable STLM_SYNTH_UNSET_VAR is not set/);
    assertFails(await cli('synth', ...ep, '--out', join(dir, 'no-such-dir', 'c.txt'), '--bytes', '100'), /--out .*: cannot write to the folder .*no-such-dir.*: ENOENT/);
    assertFails(await cli('synth', '--teacher', join(dir, 'missing.gguf'), '--out', out, '--bytes', '100'), /stlm: error: cannot read model file '.*missing\.gguf': ENOENT/);
    const fail = await cli('synth', '--endpoint', `${base}/fail/v1`, '--endpoint-model', 'm', '--out', out, '--bytes', '100');
    assertFails(fail, /^stlm: error: endpoint http:\/\/127\.0\.0\.1:\d+\/fail\/v1\/completions: HTTP 500 Internal Server Error: model crashed$/m);
    assertFails(await cli('synth', '--endpoint', `${base}/badjson/v1`, '--endpoint-model', 'm', '--out', out, '--bytes', '100'), /stlm: error: endpoint .*\/badjson\/v1\/completions: the response is not JSON/);
    assert.ok(!existsSync(out), 'no corpus after a failure');
  });
});
