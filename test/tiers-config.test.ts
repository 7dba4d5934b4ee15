// The tiers config file (src/tiers/config.ts): the example in examples/ parses; every kind of bad input
// gives one line naming the file, the field path and the bad value; relative model paths resolve against
// the file's folder; openTier opens the wired-in providers and takes the others from a registry.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { loadLlamaCpp } from '../src/interop/llamacpp.js';
import { type TierEntry, TiersConfigError, loadTiersConfig, openTier, parseTiersConfig } from '../src/tiers/config.js';
import type { LanguageModel } from '../src/tiers/types.js';
import { EscalationModel } from '../src/tiers/escalation.js';
import { routerFromConfig } from '../src/tiers/open.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE = join(ROOT, 'examples/tiers.yaml');
const TINY_RANDOM = join(ROOT, '../shared/fixtures/models/tiny-random-llama/llama-2-tiny-random.gguf');

/** A valid config as data, to break one field at a time. */
function base(): { tiers: Record<string, unknown>[]; router?: Record<string, unknown> } {
  return {
    tiers: [
      { name: 'tiny', tier: 'tiny', provider: 'local', model: 'models/default.gguf', price: { prompt: 0, completion: 0 } },
      { name: 'small', tier: 'small', provider: 'llamacpp', model: '/models/phi-3.gguf', contextLength: 4096, quality: 0.6 },
      { name: 'large', tier: 'large', provider: 'openai', model: 'gpt-4o-mini', baseUrl: 'http://127.0.0.1:8080/v1', apiKeyEnv: 'OPENAI_API_KEY', price: { prompt: 0.15, completion: 0.6 }, timeoutMs: 30000 },
    ],
    router: { policy: 'cascade', threshold: -1.5, order: ['tiny', 'small', 'large'] },
  };
}

/** The one-line error a YAML text gives. */
function errorOf(text: string, fileName = 'tiers.yaml'): string {
  try {
    parseTiersConfig(text, fileName);
  } catch (e) {
    assert.ok(e instanceof TiersConfigError, String(e));
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    assert.ok(e.message.startsWith(`${fileName}: `), e.message);
    return e.message;
  }
  assert.fail('the config was accepted');
}

describe('tiers config: the example', () => {
  test('examples/tiers.yaml parses: tiny (local, the embedded model), small (llamacpp), large (openai at stlm serve)', async () => {
    const c = await loadTiersConfig(EXAMPLE);
    assert.equal(c.file, EXAMPLE);
    assert.deepEqual(c.tiers.map((t) => [t.name, t.tier, t.provider]), [['tiny', 'tiny', 'local'], ['small', 'small', 'llamacpp'], ['large', 'large', 'openai']]);
    assert.equal(c.tiers[0].model, join(ROOT, 'models/default.gguf'));
    assert.ok(existsSync(c.tiers[0].model));
    assert.equal(c.tiers[1].model, join(ROOT, 'examples/models/brown-13m.q8_0.gguf'));
    assert.ok(existsSync(c.tiers[1].model));
    assert.equal(c.tiers[2].model, 'default');
    assert.equal(c.tiers[2].baseUrl, 'http://127.0.0.1:8080/v1');
    // The tiny tier's learned escalation model (fit on all 12,000 BLiMP pairs, BENCHMARKS.md's accuracies).
    const fit = c.escalationModels?.get('tiny')?.fit;
    assert.deepEqual([fit?.weakTier, fit?.strongTier, fit?.items, fit?.accWeak.toFixed(4), fit?.accStrong.toFixed(4)], ['tiny', 'small', 12000, '0.5812', '0.6823']);
    assert.deepEqual(c.router, { policy: 'cascade', threshold: -1.5, confidence: 'meanLogprob', order: ['tiny', 'small', 'large'], fallback: true });
  });

  test('the same config as JSON parses to the same; relative model paths resolve against the file\'s folder', () => {
    const fromYaml = parseTiersConfig(stringify(base()), '/etc/stlm/tiers.yaml');
    const fromJson = parseTiersConfig(JSON.stringify(base()), '/etc/stlm/tiers.json');
    assert.deepEqual(fromJson.tiers, fromYaml.tiers);
    assert.equal(fromYaml.tiers[0].model, '/etc/stlm/models/default.gguf');
    assert.equal(fromYaml.tiers[1].model, '/models/phi-3.gguf');
    assert.equal(fromYaml.tiers[2].model, 'gpt-4o-mini');
    assert.deepEqual(fromYaml.tiers[2].price, { prompt: 0.15, completion: 0.6 });
    const noRouter = base();
    delete noRouter.router;
    assert.equal(parseTiersConfig(stringify(noRouter), 'x.yaml').router, undefined);
  });
});

describe('tiers config: bad input, one line naming file, field and value', () => {
  const broken = (edit: (c: ReturnType<typeof base>) => void) => {
    const c = base();
    edit(c);
    return errorOf(stringify(c));
  };

  test('unknown provider', () => {
    assert.equal(broken((c) => (c.tiers[1].provider = 'vllm')), 'tiers.yaml: tiers[1].provider must be one of local, llamacpp, openai, got "vllm"');
  });

  test('negative price', () => {
    assert.equal(broken((c) => (c.tiers[2].price = { prompt: -1, completion: 0.6 })), 'tiers.yaml: tiers[2].price.prompt must be a number ≥ 0, got -1');
    assert.equal(broken((c) => (c.tiers[2].price = { prompt: 1 })), 'tiers.yaml: tiers[2].price.completion is missing: dollars per million completion tokens');
  });

  test('missing model, missing tiers, an empty file', () => {
    assert.equal(broken((c) => delete c.tiers[0].model), "tiers.yaml: tiers[0].model is missing: a path for local/llamacpp, the endpoint's model name for openai");
    assert.equal(errorOf('router: { policy: cheapest }\n'), 'tiers.yaml: tiers is missing: a list of tiers');
    assert.equal(errorOf('tiers: []\n'), 'tiers.yaml: tiers must be a list of at least one item, got a list');
    assert.equal(errorOf('# nothing yet\n'), 'tiers.yaml: the file is empty (it needs a list of tiers under "tiers:")');
  });

  test('unknown keys, named, with the nearest known one', () => {
    assert.match(broken((c) => (c.tiers[0].pricee = 1)), /^tiers\.yaml: tiers\[0\]\.pricee is not a field of a tier \(did you mean price\?\); the fields are name, tier, provider, model, /);
    assert.match(broken((c) => ((c as Record<string, unknown>).routr = {})), /^tiers\.yaml: routr is not a field of a tiers config \(did you mean router\?\)/);
    assert.match(broken((c) => (c.tiers[2].price = { prompt: 1, completion: 2, cached: 0.5 })), /^tiers\.yaml: tiers\[2\]\.price\.cached is not a field of a price/);
    assert.match(broken((c) => (c.router!.polcy = 'x')), /^tiers\.yaml: router\.polcy is not a field of the router section \(did you mean policy\?\)/);
  });

  test('YAML and JSON syntax errors give the line and column', () => {
    assert.match(errorOf('tiers:\n  - name: tiny\n    tier: [tiny\n'), /^tiers\.yaml: line \d+, column \d+: YAML syntax error: /);
    assert.match(errorOf('tiers:\n  - name: a\n    name: b\n'), /^tiers\.yaml: line 3, column 5: YAML syntax error: .*unique/i);
    assert.match(errorOf('{"tiers": [', 'tiers.json'), /^tiers\.json: JSON syntax error: /);
  });

  test('wrong types', () => {
    assert.equal(broken((c) => (c.tiers[1].contextLength = 'big')), 'tiers.yaml: tiers[1].contextLength must be an integer > 0, got "big"');
    assert.equal(broken((c) => (c.tiers[1].contextLength = 4096.5)), 'tiers.yaml: tiers[1].contextLength must be an integer > 0, got 4096.5');
    assert.equal(broken((c) => (c.tiers[1].quality = 1.5)), 'tiers.yaml: tiers[1].quality must be a number from 0 to 1, got 1.5');
    assert.equal(broken((c) => (c.tiers[0].tier = 'medium')), 'tiers.yaml: tiers[0].tier must be one of tiny, small, large, got "medium"');
    assert.equal(broken((c) => (c.tiers[0].name = 5)), 'tiers.yaml: tiers[0].name must be a non-empty string, got 5');
    assert.equal(broken((c) => (c.tiers[2].timeoutMs = 0)), 'tiers.yaml: tiers[2].timeoutMs must be a number > 0, got 0');
    assert.equal(broken((c) => (c.tiers[2].price = 3)), 'tiers.yaml: tiers[2].price must be a price (US dollars per million tokens) (a mapping of fields), got 3');
    assert.equal(errorOf('tiers: { name: tiny }\n'), 'tiers.yaml: tiers must be a list, got a mapping');
    assert.equal(errorOf('- tiny\n'), 'tiers.yaml: the file must be a tiers config (a mapping of fields), got a list');
    assert.equal(broken((c) => (c.tiers[0].latencyMs = null)), 'tiers.yaml: tiers[0].latencyMs is empty; leave it out or give a value');
    assert.equal(broken((c) => (c.router!.fallback = 'yes')), 'tiers.yaml: router.fallback must be true or false, got "yes"');
    assert.equal(broken((c) => (c.router!.policy = 'fastest')), 'tiers.yaml: router.policy must be one of cheapest, cascade, got "fastest"');
  });

  test('what the schema alone cannot say: openai needs baseUrl, only openai takes one, names are unique, router.order names tiers', () => {
    assert.match(broken((c) => delete c.tiers[2].baseUrl), /^tiers\.yaml: tiers\[2\]\.baseUrl is missing: provider openai needs the endpoint's base URL/);
    assert.equal(broken((c) => (c.tiers[2].baseUrl = 'localhost:8080')), 'tiers.yaml: tiers[2].baseUrl must be an http:// or https:// URL, got "localhost:8080"');
    assert.equal(broken((c) => (c.tiers[0].baseUrl = 'http://x/v1')), 'tiers.yaml: tiers[0].baseUrl applies to provider openai only, not local');
    assert.equal(broken((c) => (c.tiers[2].apiKeyEnv = 'sk-abc123')), 'tiers.yaml: tiers[2].apiKeyEnv must be an environment variable name, got "sk-abc123"');
    assert.equal(broken((c) => (c.tiers[1].name = 'tiny')), 'tiers.yaml: tiers[1].name must be unique, got "tiny" a second time');
    assert.equal(broken((c) => (c.router!.order = ['tiny', 'medium'])), 'tiers.yaml: router.order[1] must name a tier in this file (tiny, small, large), got "medium"');
  });

  test('a missing file', async () => {
    await assert.rejects(loadTiersConfig('/nonexistent/tiers.yaml'), { name: 'TiersConfigError', message: '/nonexistent/tiers.yaml: no such file' });
  });
});

describe('tiers config: a learned escalation model', () => {
  test('a tier\'s escalation file resolves against the config\'s folder and reaches the router; a bad one is refused by field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stlm-tiers-esc-'));
    const model = EscalationModel.learn([
      { context: '', choices: ['a', 'b'], values: [-1, -2], weakRight: true, strongRight: false },
      { context: '', choices: ['c', 'd'], values: [-1, -3], weakRight: false, strongRight: true },
    ], { weakTier: 'tiny', strongTier: 'small', source: 'test' });
    await writeFile(join(dir, 'esc.json'), JSON.stringify(model.toJSON()));
    const c = base();
    c.tiers[0].escalation = 'esc.json';
    c.router = { policy: 'cascade', gainThreshold: 0.25, order: ['tiny', 'small', 'large'] };
    await writeFile(join(dir, 'tiers.yaml'), stringify(c));
    const config = await loadTiersConfig(join(dir, 'tiers.yaml'));
    assert.equal(config.tiers[0].escalation, join(dir, 'esc.json'));
    const router = routerFromConfig(config);
    assert.equal(router.options.gainThreshold, 0.25);
    const item = { context: '', choices: ['c', 'd'], values: [-1, -3] };
    assert.deepEqual(router.options.escalation?.tiny?.predict(item), model.predict(item));
    await writeFile(join(dir, 'esc.json'), '{"format": "stlm-escalation", "version": 7}');
    await assert.rejects(loadTiersConfig(join(dir, 'tiers.yaml')), {
      name: 'TiersConfigError', message: `${join(dir, 'tiers.yaml')}: tiers[0].escalation: escalation: ${join(dir, 'esc.json')}: version is 7; this stlm reads version 1`,
    });
    c.router.gainThreshold = 2;
    assert.throws(() => parseTiersConfig(stringify(c), 'tiers.yaml'), /router\.gainThreshold must be a number .*1, got 2/);
  });
});

describe('tiers config: openTier', () => {
  test('providers come from the registry given, else the wired-in ones (local, llamacpp, openai)', async () => {
    const c = parseTiersConfig(stringify(base()), '/etc/stlm/tiers.yaml');
    const seen: TierEntry[] = [];
    const fake = { info: () => ({ name: 'fake' }) } as unknown as LanguageModel;
    const m = await openTier(c.tiers[0], { local: async (e) => (seen.push(e), fake) });
    assert.equal(m, fake);
    assert.equal(seen[0].model, '/etc/stlm/models/default.gguf');
    // The wired-in openai provider: an OpenAIModel for the entry (constructing it sends no request); the key
    // comes from the variable apiKeyEnv names, and its absence is one clear line.
    const saved = process.env.OPENAI_API_KEY;
    try {
      delete process.env.OPENAI_API_KEY;
      await assert.rejects(openTier(c.tiers[2]), /^Error: endpoint http:\/\/127\.0\.0\.1:8080\/v1: the environment variable OPENAI_API_KEY \(apiKeyEnv\) is not set$/);
      process.env.OPENAI_API_KEY = 'test-key';
      const large = await openTier(c.tiers[2]);
      assert.deepEqual([large.info().name, large.info().tier, large.info().provider], ['large', 'large', 'openai']);
      assert.doesNotMatch(JSON.stringify(large.info()), /test-key/);
      await large.close();
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
    }
  });

  test('a llamacpp tier opens the GGUF file with the entry\'s name, tier, price and context', async (t) => {
    const why = await loadLlamaCpp();
    if (typeof why === 'string') return t.skip(why);
    if (!existsSync(TINY_RANDOM)) return t.skip('the tiny-random fixture is absent');
    const dir = await mkdtemp(join(tmpdir(), 'stlm-tiers-'));
    const file = join(dir, 'tiers.yaml');
    await writeFile(file, stringify({ tiers: [{ name: 'stand-in', tier: 'large', provider: 'llamacpp', model: TINY_RANDOM, price: { prompt: 1, completion: 2 }, contextLength: 512 }] }));
    const m = await openTier((await loadTiersConfig(file)).tiers[0]);
    try {
      assert.deepEqual([m.info().name, m.info().tier, m.info().provider, m.info().contextLength], ['stand-in', 'large', 'llamacpp', 512]);
      const r = await m.generate({ prompt: 'Hello' }, { temperature: 0, maxTokens: 4 });
      assert.equal(r.costUsd, (r.usage.promptTokens * 1 + r.usage.completionTokens * 2) / 1e6);
    } finally {
      await m.close();
    }
    // A missing model file: one line naming it.
    const missing = parseTiersConfig(stringify({ tiers: [{ name: 's', tier: 'small', provider: 'llamacpp', model: 'absent.gguf' }] }), join(dir, 'tiers.yaml'));
    await assert.rejects(openTier(missing.tiers[0]), { message: `${join(dir, 'absent.gguf')}: no such model file (the llamacpp tier runs a GGUF file)` });
  });
});
