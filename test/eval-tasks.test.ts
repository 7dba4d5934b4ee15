// `stlm eval tasks` and bits per byte through score() (src/eval/tasks.ts, task-files.ts, bpb-text.ts):
// task files become contexts and choices as lm-evaluation-harness / llm-foundry build them; bad files
// give one error naming the file, the line and the field; acc, acc_norm and their standard errors from
// a scorer whose numbers are written out here; --limit/--seed sampling; and the oracles: bits per byte
// through score() equals evaluateBpb's training-graph loss on the same windows, the scores in-process
// equal the scores through `stlm serve` + the openai tier to the last digit, llama.cpp's per-choice
// log-likelihoods on the same GGUF agree within 1e-3, and one thread or two give the same results.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateBpb, tokenByteLengths } from '../src/eval/bpb.js';
import { bitsPerByteOfText, windowEnd } from '../src/eval/bpb-text.js';
import { type TaskItem, TaskFileError, readTasks } from '../src/eval/task-files.js';
import { type ContinuationScorer, type ItemScore, evaluateTaskFiles, evaluateTasks, meanStderr, resultsTable, selectItems } from '../src/eval/tasks.js';
import { createBackend } from '../src/kernels/index.js';
import { loadLlamaCpp } from '../src/interop/llamacpp.js';
import { createServer } from '../src/server/server.js';
import { openLlamaCppModel } from '../src/tiers/llamacpp.js';
import { LocalModel } from '../src/tiers/local.js';
import { OpenAIModel } from '../src/tiers/openai.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const EVAL = join(FIXTURES, 'eval');
const DEFAULT_MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));
const TINY_RANDOM = join(FIXTURES, 'models/tiny-random-llama/llama-2-tiny-random.gguf');
const STORIES = join(FIXTURES, 'models/stories260K');
const CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'stlm-eval-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a file in the test folder (a sub-folder when the name has one) and returns its path. */
function file(name: string, text: string): string {
  const p = join(dir, name);
  spawnSync('mkdir', ['-p', join(p, '..')]);
  writeFileSync(p, text);
  return p;
}
const jsonl = (...records: unknown[]) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('task files: formats told apart by their fields', () => {
  test('BLiMP, multiple choice, schema and language modelling become lm-evaluation-harness requests', () => {
    const [blimp] = readTasks(file('blimp-x.jsonl', jsonl({ sentence_good: 'Cats sleep.', sentence_bad: 'Cats sleeps.', field: 'syntax' })));
    assert.equal(blimp.task, 'blimp/blimp-x');
    assert.equal(blimp.format, 'blimp');
    assert.deepEqual(blimp.items, [{ kind: 'choice', line: 1, context: '', choices: ['Cats sleep.', 'Cats sleeps.'], gold: 0 }]);
    const [mc] = readTasks(file('arc.jsonl', jsonl({ query: 'Question: Which is wet?', choices: ['water', 'sand'], gold: 0 })));
    assert.equal(mc.format, 'multiple_choice');
    assert.deepEqual(mc.items[0], { kind: 'choice', line: 1, context: 'Question: Which is wet?\nAnswer:', choices: ['water', 'sand'], gold: 0 });
    const [schema] = readTasks(file('wino.jsonl', jsonl({ context_options: ['The cup fell because the cup', 'The cup fell because the table'], continuation: 'was fragile.', gold: 0 })));
    assert.equal(schema.format, 'schema');
    assert.deepEqual(schema.items[0], { kind: 'schema', line: 1, contexts: ['The cup fell because the cup', 'The cup fell because the table'], continuation: 'was fragile.', gold: 0 });
    const [lm] = readTasks(file('lambada.jsonl', '\n' + jsonl({ context: 'He opened the', continuation: 'door' })));
    assert.equal(lm.format, 'language_modeling');
    assert.deepEqual(lm.items, [{ kind: 'greedy', line: 2, context: 'He opened the', continuation: 'door' }]);
  });

  test('the scorer sees the continuation after one space, and acc/acc_norm as lm-evaluation-harness computes them', async () => {
    const seen: [string, string[]][] = [];
    // Log-likelihoods chosen so acc and acc_norm disagree: 'water' (5 bytes) −6 against 'sea salt' (8 bytes) −8.
    const table: Record<string, number> = { ' water': -6, ' sea salt': -8, ' door': -1, ' was fragile.': -3 };
    const scorer: ContinuationScorer = {
      async score(context, continuations) {
        seen.push([context, continuations]);
        return continuations.map((c) => ({ logprob: table[c] ?? -2, greedy: c === ' door', tokens: 1 }));
      },
    };
    const files = [
      ...readTasks(file('mc2.jsonl', jsonl({ query: 'Q?', choices: ['sea salt', 'water'], gold: 0 }, { query: 'Q?', choices: ['sea salt', 'water'], gold: 1 }))),
      ...readTasks(file('lm2.jsonl', jsonl({ context: 'He opened the', continuation: 'door' }, { context: 'He opened the ', continuation: 'window' }))),
      ...readTasks(file('schema2.jsonl', jsonl({ context_options: ['A', 'B'], continuation: 'was fragile.', gold: 1 }))),
    ];
    const r = await evaluateTaskFiles(scorer, files);
    assert.deepEqual(seen, [
      ['Q?\nAnswer:', [' sea salt', ' water']], ['Q?\nAnswer:', [' sea salt', ' water']],
      ['He opened the', [' door']], ['He opened the ', ['window']],
      ['A', [' was fragile.']], ['B', [' was fragile.']],
    ]);
    // mc2: acc picks 'water' (−6 > −8): right on item 2 only; acc_norm −8/8 = −1 > −6/5 picks 'sea salt': right on item 1 only.
    assert.deepEqual([r[0].acc, r[0].accNorm], [0.5, 0.5]);
    assert.equal(r[0].accStderr, 0.5); // sample sd of {0, 1} is √0.5; / √2
    assert.deepEqual([r[1].acc, r[1].accNorm], [0.5, undefined]);
    assert.deepEqual([r[2].acc, r[2].n], [0, 1]); // both options score −3: argmax takes the first, gold is 1
    assert.match(resultsTable(r), /\| mc2 \| multiple_choice \| 2 \| 50\.00 ± 50\.00 \| 50\.00 ± 50\.00 \|/);
  });

  test('meanStderr is the sample standard error of the mean', () => {
    const x = [1, 0, 1, 1];
    const m = 0.75, sd = Math.sqrt(((0.25 ** 2) * 3 + 0.75 ** 2) / 3);
    assert.equal(meanStderr(x).mean, m);
    assert.ok(Math.abs(meanStderr(x).stderr - sd / 2) < 1e-15);
  });

  test('HellaSwag pairs: line i of each file, split where the endings part', () => {
    const d = join(dir, 'hs');
    file('hs/hellaswag_val_correct.txt.3', 'A man sits on a roof. he starts pulling up roofing.\nA dog runs. the dog barks loudly.\nX y. the cat stands up.\n');
    file('hs/hellaswag_val_wrong.txt.3', 'A man sits on a roof. he is using wrap.\nA dog runs. the dog sleeps.\nX y. the cat sits down.\n');
    const [hs] = readTasks(d);
    assert.equal(hs.task, 'hellaswag');
    assert.equal(hs.format, 'hellaswag');
    assert.deepEqual(hs.items.map((i) => i.kind === 'choice' && [i.context, ...i.choices]), [
      ['A man sits on a roof. he', 'starts pulling up roofing.', 'is using wrap.'],
      ['A dog runs. the dog', 'barks loudly.', 'sleeps.'],
      ['X y. the cat', 'stands up.', 'sits down.'],
    ]);
    assert.deepEqual(readTasks(join(d, 'hellaswag_val_wrong.txt.3')), [hs]);
  });

  test('a folder runs every task file under it, in name order', () => {
    const d = join(dir, 'suite');
    file('suite/b.jsonl', jsonl({ query: 'Q', choices: ['a', 'b'], gold: 1 }));
    file('suite/a/x.jsonl', jsonl({ sentence_good: 'A.', sentence_bad: 'B.' }));
    assert.deepEqual(readTasks(d).map((t) => t.task), ['blimp/x', 'b']);
  });
});

describe('task files: bad input names the file, the line and the field', () => {
  const bad = (name: string, text: string, expected: RegExp) => {
    const p = file(name, text);
    assert.throws(() => readTasks(p), (e: Error) => e instanceof TaskFileError && expected.test(e.message) && e.message.startsWith(p) && !e.message.includes('\n'), `${name}`);
  };
  test('wrong fields: the fields found and every format expected', () => {
    bad('w1.jsonl', jsonl({ question: 'Q', answers: ['a'] }), /w1\.jsonl:1: fields \{question, answers\} are no task format; expected BLiMP \{sentence_good, sentence_bad\}, multiple choice \{query, choices, gold\}, schema \{context_options, continuation, gold\} or language modelling \{context, continuation\}/);
    bad('w2.jsonl', jsonl({ query: 'Q', choices: ['a', 'b'], gold: 0 }, { query: 'Q', choices: ['a', 'b'], gold: 0 }, { query: 'Q', options: ['a', 'b'], gold: 0 }), /w2\.jsonl:3: field 'choices' is missing \(multiple choice: \{query, choices, gold\}\)/);
    bad('w3.jsonl', jsonl({ sentence_good: 'A.', sentence_bad: 7 }), /w3\.jsonl:1: field 'sentence_bad' must be a string, got 7/);
    bad('w4.jsonl', jsonl({ context: 'A', continuation: '' }), /w4\.jsonl:1: field 'continuation' is empty/);
    bad('w5.jsonl', jsonl({ query: 'Q', choices: ['a'], gold: 0 }), /w5\.jsonl:1: field 'choices' must be a list of at least 2 non-empty strings/);
    bad('w6.jsonl', jsonl({ query: 'Q', choices: ['a', 'b'] }), /w6\.jsonl:1: field 'gold' is missing/);
  });
  test('an empty file', () => {
    bad('empty.jsonl', '', /empty\.jsonl: no items \(the file is empty\)/);
    bad('blank.jsonl', '\n\n', /blank\.jsonl: no items/);
  });
  test('a gold index out of range', () => {
    bad('g1.jsonl', jsonl({ query: 'Q', choices: ['a', 'b', 'c'], gold: 0 }, { query: 'Q', choices: ['a', 'b', 'c'], gold: 3 }), /g1\.jsonl:2: field 'gold' is 3, not an index into the 3 choices \(0\.\.2\)/);
    bad('g2.jsonl', jsonl({ context_options: ['a', 'b'], continuation: 'c', gold: -1 }), /g2\.jsonl:1: field 'gold' is -1/);
    bad('g3.jsonl', jsonl({ query: 'Q', choices: ['a', 'b'], gold: '1' }), /g3\.jsonl:1: field 'gold' is "1"/);
  });
  test('a line that is not JSON, or not an object', () => {
    bad('j1.jsonl', jsonl({ context: 'a', continuation: 'b' }) + '{"context": "a", continuation: b}\n', /j1\.jsonl:2: not JSON \(/);
    bad('j2.jsonl', '[1, 2]\n', /j2\.jsonl:1: expected a JSON object/);
  });
  test('files that are not task files, a HellaSwag file without its pair or with unpaired lines', () => {
    bad('notes.txt', 'hello\n', /notes\.txt: not a task file: expected JSON lines \(\.jsonl\)/);
    const lonely = file('lonely_correct.txt', 'A b. c d.\n');
    assert.throws(() => readTasks(lonely), / \S*lonely_wrong\.txt: missing; HellaSwag needs both lonely_correct\.txt and lonely_wrong\.txt$/);
    file('p_wrong.txt', 'A b. c e.\n');
    const p = file('p_correct.txt', 'A b. c d.\nA b. c f.\n');
    assert.throws(() => readTasks(p), / \S*p_wrong\.txt: 1 lines, but \S*p_correct\.txt has 2; the files pair line by line$/);
    file('q_wrong.txt', 'Other words.\n');
    bad('q_correct.txt', 'A b. c d.\n', /q_correct\.txt:1: no context before the endings/);
    assert.throws(() => readTasks(join(dir, 'nothing-here')), /nothing-here: no such file or folder/);
  });
  test('the CLI prints one line and exits 2, scoring nothing', () => {
    const p = file('cli-bad.jsonl', jsonl({ query: 'Q', choices: ['a', 'b'], gold: 5 }));
    const r = spawnSync(process.execPath, [CLI, 'eval', 'tasks', p, '--model', DEFAULT_MODEL], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /cli-bad\.jsonl:1: field 'gold' is 5/);
  });
});

describe('--limit and --seed', () => {
  test('the first n, or a seeded sample in file order; the same seed picks the same items', () => {
    assert.deepEqual(selectItems(5), [0, 1, 2, 3, 4]);
    assert.deepEqual(selectItems(5, 9, 1), [0, 1, 2, 3, 4]);
    assert.deepEqual(selectItems(100, 3), [0, 1, 2]);
    const a = selectItems(1000, 50, 7);
    assert.deepEqual(a, selectItems(1000, 50, 7));
    assert.equal(new Set(a).size, 50);
    assert.deepEqual(a, [...a].sort((x, y) => x - y));
    assert.notDeepEqual(a, selectItems(1000, 50, 8));
    assert.notDeepEqual(a, selectItems(1000, 50));
  });
});

describe('the embedded model', { skip: !existsSync(DEFAULT_MODEL) && `${DEFAULT_MODEL} is absent` }, () => {
  let lm: LocalModel;
  before(async () => {
    lm = await LocalModel.open(DEFAULT_MODEL, { name: 'tiny' });
  });
  after(async () => lm?.close());

  test('bits per byte through score() equals evaluateBpb (the training graph\'s loss) on the same windows, within 1e-6', async () => {
    const text = 'ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n'.repeat(8) + 'Arise, fair sun, ünïcödé 🙂, and kill the envious moon.\n';
    const windowBytes = 200;
    const r = await bitsPerByteOfText(lm, text, { windowBytes });
    const enc = new TextEncoder();
    assert.equal(r.bytes, enc.encode(text).length);
    // The oracle: each window as [BOS, ...its ids] through the model's loss (a full forward on the graph).
    const { model, tokenizer } = lm.handle;
    const tokenBytes = tokenByteLengths(tokenizer, model.config.vocabSize);
    let nats = 0, bytes = 0, tokens = 0, windows = 0;
    for (let at = 0; at < text.length; windows++) {
      const end = windowEnd(text, at, windowBytes);
      const ids = Array.from(tokenizer.encode(text.slice(at, end), { bos: true }));
      const w = evaluateBpb(model, ids, { batch: 1, seqLen: ids.length - 1, tokenBytes });
      let b = 0;
      for (const id of ids.slice(1)) b += tokenBytes[id];
      nats += w.bpb * Math.LN2 * b;
      bytes += b;
      tokens += w.tokens;
      at = end;
    }
    assert.equal(bytes, r.bytes); // a byte-level model: its tokens' bytes are the text's UTF-8 bytes
    assert.equal(r.tokens, tokens);
    assert.equal(r.windows, windows);
    assert.ok(windows > 3);
    const bpb = nats / Math.LN2 / bytes;
    assert.ok(Math.abs(r.bpb - bpb) / bpb < 1e-6, `${r.bpb} vs ${bpb}`);
  });

  test('maxTokens shortens windows to what the model holds, and the number stays a sum over the text', async () => {
    const text = 'To be, or not to be, that is the question.\n'.repeat(20);
    const r = await bitsPerByteOfText(lm, text, { windowBytes: 5000, maxTokens: 255 });
    assert.ok(r.windows >= 4);
    assert.equal(r.bytes, text.length);
    assert.equal(r.tokens, text.length);
  });

  test('the same scores in-process and through stlm serve + /v1/completions, to the last digit', async () => {
    const app = createServer({ models: new Map([['tiny', lm]]) });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const remote = new OpenAIModel({ baseUrl: `${base}/v1`, model: 'tiny', retryBaseMs: 5 });
    const skip = !existsSync(join(EVAL, 'arc_easy.jsonl')) || !existsSync(join(EVAL, 'blimp-dev'));
    // Items whose prompts fit the model's 256 positions: the server refuses longer ones (LocalModel would cut the context).
    const fits = (it: TaskItem) => it.kind === 'choice' && Math.max(...it.choices.map((c) => new TextEncoder().encode(it.context + c).length)) < 250;
    const files = (skip ? readTasks(file('mc-serve.jsonl', jsonl({ query: 'Question: Which is wet?', choices: ['water', 'sand', 'dry dust'], gold: 0 })))
      : [...readTasks(join(EVAL, 'arc_easy.jsonl')), ...readTasks(join(EVAL, 'blimp-dev')).slice(0, 2)]).map((f) => ({ ...f, items: f.items.filter(fits) }));
    try {
      const here: ItemScore[] = [], there: ItemScore[] = [];
      const a = await evaluateTaskFiles(lm, files, { limit: 12, seed: 3, onItem: (_f, _i, s) => here.push(s) });
      const b = await evaluateTaskFiles(remote, files, { limit: 12, seed: 3, onItem: (_f, _i, s) => there.push(s) });
      assert.ok(here.length >= 12);
      assert.deepEqual(there, here); // every log-likelihood, greedy flag and token count, exactly
      assert.deepEqual(b.map(({ seconds: _s, ...r }) => r), a.map(({ seconds: _s, ...r }) => r));
    } finally {
      await app.close();
    }
  });

  test('a SentencePiece model (dummy prefix): the same scores in-process and served, empty context included', { skip: !existsSync(STORIES) && 'needs ../shared/fixtures/models/stories260K' }, async () => {
    // stories260K's tokenizer puts a space before the first word ('▁' alone in its 512-token vocabulary).
    // The echoed tokens' texts must add up to the prompt as sent, or text_offset is one character off and
    // the endpoint path scores a different span (it dropped a sentence's last token: BLiMP 61.9% vs 65.6%).
    const m = await LocalModel.open(join(STORIES, 'stories260K.bin'), { tokenizer: join(STORIES, 'tok512.bin') });
    const app = createServer({ models: new Map([['s', m]]) });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const remote = new OpenAIModel({ baseUrl: `${base}/v1`, model: 's', retryBaseMs: 5 });
      for (const [context, choices] of [['', ['Who should Derek hug after shocking Richard?', 'Who should Derek hug Richard after shocking?']], ['Once upon a time', [' there was', ' the dog.']]] as const) {
        const here = await m.score(context, [...choices]);
        assert.equal(here[0].tokens, (await m.tokenize(context + choices[0])).length - (await m.tokenize(context)).length);
        assert.deepEqual(await remote.score(context, [...choices]), here);
      }
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 's', prompt: 'Who is it?', max_tokens: 0, echo: true, logprobs: 0 }) });
      const lp = ((await r.json()) as { choices: { logprobs: { tokens: string[]; text_offset: number[] } }[] }).choices[0].logprobs;
      assert.equal(lp.tokens.join(''), 'Who is it?');
      assert.deepEqual(lp.text_offset.slice(0, 4), [0, 0, 0, 1]); // BOS, the dummy '▁' (no text), 'W', 'h'
    } finally {
      await app.close();
      await m.close();
    }
  });

  test('one thread or two give the same results', async () => {
    const p = existsSync(join(EVAL, 'arc_easy.jsonl')) ? join(EVAL, 'arc_easy.jsonl') : file('mc-thr.jsonl', jsonl({ query: 'Q: Which is wet?', choices: ['water', 'sand'], gold: 0 }));
    const scores: ItemScore[][] = [];
    for (const threads of [1, 2]) {
      const m = await LocalModel.open(DEFAULT_MODEL, { backend: await createBackend('wasm', { threads }) });
      const s: ItemScore[] = [];
      await evaluateTasks(m, p, { limit: 6, onItem: (_f, _i, x) => s.push(x) });
      await m.close();
      scores.push(s);
    }
    assert.deepEqual(scores[1], scores[0]);
  });

  test('stlm eval tasks --json --out: the results, a progress line per run on stderr', () => {
    const p = file('cli-ok.jsonl', jsonl({ query: 'Question: Which is wet?', choices: ['water', 'sand'], gold: 0 }, { query: 'Question: Which is hot?', choices: ['ice', 'fire'], gold: 1 }));
    const out = join(dir, 'results.json');
    const r = spawnSync(process.execPath, [CLI, 'eval', 'tasks', p, '--model', DEFAULT_MODEL, '--json', '--out', out, '--threads', '1'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { results: { task: string; n: number; acc: number; accNorm: number }[] };
    assert.equal(j.results[0].task, 'cli-ok');
    assert.equal(j.results[0].n, 2);
    assert.match(r.stderr, /eval: 2\/2 items/);
  });
});

describe('stlm eval bpb --tiers: any tier through score()', { skip: !existsSync(DEFAULT_MODEL) && `${DEFAULT_MODEL} is absent` }, () => {
  // Plain SIMD in the CLI as in this process (relaxed SIMD's fused multiply-adds round differently).
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'eval', 'bpb', ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, STLM_RELAXED_SIMD: '0' } });
  test('a local tier: the number bitsPerByteOfText gives in-process, with bits per token', async () => {
    const tiers = file('tiers.yaml', `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(DEFAULT_MODEL)}, contextLength: 256 }\n`);
    const text = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n'.repeat(6);
    const data = file('bpb.txt', text);
    const r = cli('--tiers', tiers, '--tier', 'tiny', '--data', data, '--split', 'all', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { bpb: number; bytes: number; tokens: number; bitsPerToken: number; provider: string };
    const lm = await LocalModel.open(DEFAULT_MODEL);
    try {
      const want = await bitsPerByteOfText(lm, text, { windowBytes: 255, maxTokens: 255 });
      assert.deepEqual({ bpb: j.bpb, bytes: j.bytes, tokens: j.tokens, bitsPerToken: j.bitsPerToken }, { bpb: want.bpb, bytes: want.bytes, tokens: want.tokens, bitsPerToken: want.bitsPerToken });
      assert.equal(j.provider, 'local');
    } finally {
      await lm.close();
    }
  });
  test('text that is not UTF-8, an unknown tier, --tier without --tiers: one line each, exit 2', () => {
    const tiers = file('tiers2.yaml', `tiers:\n  - { name: tiny, tier: tiny, provider: local, model: ${JSON.stringify(DEFAULT_MODEL)} }\n`);
    const bin = join(dir, 'bytes.txt');
    writeFileSync(bin, Uint8Array.from([0x41, 0xff, 0xfe, 0x42]));
    for (const [args, message] of [
      [['--tiers', tiers, '--tier', 'tiny', '--data', bin, '--split', 'all'], /bytes\.txt' is not valid UTF-8, which a tier cannot read as text; evaluate a model file with --model instead \(it scores the raw bytes\)/],
      [['--tiers', tiers, '--tier', 'huge', '--data', bin], /tiers2\.yaml has no tier 'huge'; its tiers: tiny/],
      [['--tier', 'tiny', '--data', bin], /--tier needs --tiers <config>/],
    ] as const) {
      const r = cli(...args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

describe('llama.cpp: per-choice log-likelihoods on the same GGUF', () => {
  let unavailable = '';
  before(async () => {
    const r = await loadLlamaCpp();
    if (typeof r === 'string') unavailable = `skipped: ${r}`;
  });
  // The embedded model is f32: within 1e-3 per choice. The tiny-random model's F16 matrices make
  // llama.cpp round activations to f16 in its products: within 2e-3 per token, as test/tiers-llamacpp.ts.
  for (const [path, perChoice, perToken] of [[DEFAULT_MODEL, 1e-3, 0], [TINY_RANDOM, 0, 2e-3]] as const) {
    test(`${path.split('/').pop()}: within ${perChoice ? `${perChoice} per choice` : `${perToken} per token`} of stlm's, item by item`, { skip: (!existsSync(path) && `${path} is absent`) || (!existsSync(join(EVAL, 'arc_easy.jsonl')) && 'the ARC-Easy fixture is absent') }, async (t) => {
      if (unavailable) return t.skip(unavailable);
      const files = [...readTasks(join(EVAL, 'arc_easy.jsonl')), ...(existsSync(join(EVAL, 'hellaswag-800')) ? readTasks(join(EVAL, 'hellaswag-800')) : []), ...(existsSync(join(EVAL, 'blimp-dev')) ? readTasks(join(EVAL, 'blimp-dev')).slice(0, 1) : [])];
      const cpp = await openLlamaCppModel(path, { kvCacheType: 'F32', threads: 1 });
      const stlm = await LocalModel.open(path);
      try {
        const a: { item: TaskItem; s: ItemScore }[] = [], b: ItemScore[] = [];
        await evaluateTaskFiles(stlm, files, { limit: 4, seed: 1, onItem: (_f, item, s) => a.push({ item, s }) });
        await evaluateTaskFiles(cpp, files, { limit: 4, seed: 1, onItem: (_f, _i, s) => b.push(s) });
        assert.equal(b.length, a.length);
        let worst = 0;
        a.forEach(({ item, s }, i) => s.scores.forEach((c, j) => {
          const d = Math.abs(c.logprob - b[i].scores[j].logprob);
          worst = Math.max(worst, d);
          assert.ok(d < (perChoice || perToken * c.tokens), `line ${item.line} choice ${j} (${c.tokens} tokens): stlm ${c.logprob} llama.cpp ${b[i].scores[j].logprob}`);
          assert.equal(b[i].scores[j].tokens, c.tokens);
        }));
        t.diagnostic(`largest difference ${worst.toExponential(2)} over ${a.length} items`);
      } finally {
        await cpp.close();
        await stlm.close();
      }
    });
  }
});

describe('stories260K (llama2.c): bits per byte through score() against evaluateBpb', { skip: !existsSync(join(STORIES, 'stories260K.bin')) && 'the stories260K fixture is absent' }, () => {
  test('the same log-likelihood as the training graph on the same windows (SentencePiece)', async () => {
    const lm = await LocalModel.open(join(STORIES, 'stories260K.bin'), { tokenizer: join(STORIES, 'tok512.bin') });
    try {
      const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\nOne day, she saw a big red ball.\n'.repeat(3);
      const r = await bitsPerByteOfText(lm, text, { windowBytes: 128 });
      const { model, tokenizer } = lm.handle;
      let nats = 0;
      for (let at = 0; at < text.length;) {
        const end = windowEnd(text, at, 128);
        const ids = Array.from(tokenizer.encode(text.slice(at, end), { bos: lm.handle.addBos }));
        const w = evaluateBpb(model, ids, { batch: 1, seqLen: ids.length - 1 }); // every token one "byte": w.bpb × count is bits
        nats += w.bpb * Math.LN2 * w.tokens;
        at = end;
      }
      const mine = r.bpb * Math.LN2 * r.bytes;
      assert.ok(Math.abs(mine - nats) / nats < 1e-6, `${mine} vs ${nats} nats`);
      assert.equal(r.bytes, new TextEncoder().encode(text).length);
    } finally {
      await lm.close();
    }
  });
});
