/**
 * The tiers config file (JSON or YAML): which models stlm may route between, each with its provider and
 * what it costs (declared or measured price, latency, memory, quality), plus the router's settings.
 *
 *   tiers:
 *     - { name: tiny, tier: tiny, provider: local, model: ../models/default.gguf }
 *     - { name: large, tier: large, provider: openai, model: gpt-4o-mini, baseUrl: https://…/v1,
 *         apiKeyEnv: OPENAI_API_KEY, price: { prompt: 0.15, completion: 0.6 } }
 *   router: { policy: cascade, threshold: -1.5 }
 *
 * The schema is data (below); the validator checks it and reports the first problem in one line naming
 * the file, the field path and the bad value: `tiers.yaml: tiers[2].price.prompt must be a number ≥ 0, got -1`.
 * Unknown keys are errors too (a misspelt field would otherwise be silently ignored). Relative model paths
 * (local, llamacpp) resolve against the config file's folder, and so does `measured:` (a JSON file that
 * `stlm bench` wrote, whose measured latency, memory and quality the router then uses instead of the
 * declared ones; measured.ts).
 */
import { LocalModel } from './local.js';
import { OpenAIModel } from './openai.js';
import type { RouteConstraints } from './router.js';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { EscalationModel } from './escalation.js';
import { LineCounter, parseDocument } from 'yaml';
import { openLlamaCppModel } from './llamacpp.js';
import { type MeasuredFigures, readMeasuredFigures } from './measured.js';
import type { LanguageModel, Tier } from './types.js';

export type TierProvider = 'local' | 'llamacpp' | 'openai';

/** One model the router may choose. */
export interface TierEntry {
  /** Unique within the file; requests and the router's explanations name it. */
  name: string;
  tier: Tier;
  provider: TierProvider;
  /** local, llamacpp: the model file's path (resolved to an absolute one); openai: the endpoint's model name. */
  model: string;
  /** openai only: the endpoint's base URL, e.g. http://127.0.0.1:8080/v1 (`stlm serve`). */
  baseUrl?: string;
  /** openai only: the environment variable holding the API key (the key itself never sits in the file). */
  apiKeyEnv?: string;
  /** US dollars per million tokens. */
  price?: { prompt: number; completion: number };
  /** Declared or measured latency of a typical request, in milliseconds. */
  latencyMs?: number;
  /** Memory the model takes when loaded, in bytes. */
  memoryBytes?: number;
  /** Quality in [0, 1], e.g. measured accuracy on an evaluation set. */
  quality?: number;
  /** Positions of context. */
  contextLength?: number;
  /** A request's time limit in milliseconds. */
  timeoutMs?: number;
  /** llamacpp only: CPU threads llama.cpp uses (default: one per core; a tiny model may run faster on 1). */
  threads?: number;
  /**
   * A learned escalation model (`stlm route-learn` writes it; resolved like model paths): the cascade
   * escalates this tier's multiple-choice answers by its predicted gain instead of the margin.
   */
  escalation?: string;
}

/** Constraints a request gets unless it sets its own (router.ts). */
export type { RouteConstraints };

/** The router's settings (the router reads them; this file only validates them). */
export interface RouterConfig {
  /** cheapest: the cheapest tier that meets the constraints; cascade: cheapest first, escalate on low confidence. */
  policy: 'cheapest' | 'cascade';
  /** cascade: escalate when the confidence is below this (mean token log-probability, or the choice margin). */
  threshold?: number;
  /** cascade: which confidence signal the threshold applies to (default meanLogprob). */
  confidence?: 'meanLogprob' | 'entropy' | 'margin';
  /** cascade: tier names in the order they are tried (default: by price, then by tier). */
  order?: string[];
  /** Try the next tier when one fails or times out (default true). */
  fallback?: boolean;
  /** cascade: a tier with an escalation model escalates when the predicted gain is over this (default 0). */
  gainThreshold?: number;
  constraints?: RouteConstraints;
}

export interface TiersConfig {
  /** The file it was read from (as named to the loader). */
  file: string;
  tiers: TierEntry[];
  router?: RouterConfig;
  /** The measurements file named by `measured:` (an absolute path), if any. */
  measured?: string;
  /** Its figures by tier name (loadTiersConfig reads them; parseTiersConfig does not read files). */
  measuredFigures?: Map<string, MeasuredFigures>;
  /** The escalation models the tiers name, read by loadTiersConfig, by tier name. */
  escalationModels?: Map<string, EscalationModel>;
}

/** A config file that cannot be used; the message is one line naming the file, the field and the value. */
export class TiersConfigError extends Error {
  override name = 'TiersConfigError';
  constructor(readonly file: string, readonly field: string, message: string) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------
// The schema, as data

type Schema =
  | { kind: 'string'; pattern?: RegExp; patternText?: string }
  | { kind: 'number'; min?: number; max?: number; integer?: boolean; above?: number }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'array'; items: Schema; nonEmpty?: boolean }
  | { kind: 'object'; what: string; fields: Record<string, { schema: Schema; required?: string }> };

const str = (): Schema => ({ kind: 'string' });
const nonNegative = (integer = false): Schema => ({ kind: 'number', min: 0, integer });
const positive = (integer = false): Schema => ({ kind: 'number', above: 0, integer });

const TIER_SCHEMA: Schema = {
  kind: 'object', what: 'a tier',
  fields: {
    name: { schema: str(), required: 'a unique name for the tier' },
    tier: { schema: { kind: 'enum', values: ['tiny', 'small', 'large'] }, required: 'tiny, small or large' },
    provider: { schema: { kind: 'enum', values: ['local', 'llamacpp', 'openai'] }, required: 'local, llamacpp or openai' },
    model: { schema: str(), required: "a path for local/llamacpp, the endpoint's model name for openai" },
    baseUrl: { schema: { kind: 'string', pattern: /^https?:\/\/\S+$/, patternText: 'an http:// or https:// URL' } },
    apiKeyEnv: { schema: { kind: 'string', pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, patternText: 'an environment variable name' } },
    price: {
      schema: {
        kind: 'object', what: 'a price (US dollars per million tokens)',
        fields: { prompt: { schema: nonNegative(), required: 'dollars per million prompt tokens' }, completion: { schema: nonNegative(), required: 'dollars per million completion tokens' } },
      },
    },
    latencyMs: { schema: nonNegative() },
    memoryBytes: { schema: nonNegative(true) },
    quality: { schema: { kind: 'number', min: 0, max: 1 } },
    contextLength: { schema: positive(true) },
    timeoutMs: { schema: positive() },
    threads: { schema: positive(true) },
    escalation: { schema: str() },
  },
};

const ROUTER_SCHEMA: Schema = {
  kind: 'object', what: 'the router section',
  fields: {
    policy: { schema: { kind: 'enum', values: ['cheapest', 'cascade'] }, required: 'cheapest or cascade' },
    threshold: { schema: { kind: 'number' } },
    confidence: { schema: { kind: 'enum', values: ['meanLogprob', 'entropy', 'margin'] } },
    order: { schema: { kind: 'array', items: str(), nonEmpty: true } },
    fallback: { schema: { kind: 'boolean' } },
    gainThreshold: { schema: { kind: 'number', min: -1, max: 1 } },
    constraints: {
      schema: {
        kind: 'object', what: 'the router constraints',
        fields: {
          maxLatencyMs: { schema: nonNegative() }, maxCostUsd: { schema: nonNegative() }, minQuality: { schema: { kind: 'number', min: 0, max: 1 } },
          memoryBudgetBytes: { schema: nonNegative(true) }, offlineOnly: { schema: { kind: 'boolean' } },
        },
      },
    },
  },
};

const FILE_SCHEMA: Schema = {
  kind: 'object', what: 'a tiers config',
  fields: {
    tiers: { schema: { kind: 'array', items: TIER_SCHEMA, nonEmpty: true }, required: 'a list of tiers' },
    router: { schema: ROUTER_SCHEMA },
    measured: { schema: str() },
  },
};

// ---------------------------------------------------------------------------------------------------
// Loading and validation

/** Reads and validates a tiers config file (.json as JSON, anything else as YAML). */
export async function loadTiersConfig(path: string): Promise<TiersConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const why = (e as { code?: string }).code === 'ENOENT' ? 'no such file' : (e as Error).message.split('\n')[0];
    throw new TiersConfigError(path, '', `${path}: ${why}`);
  }
  const config = parseTiersConfig(text, path);
  if (config.measured) {
    try {
      config.measuredFigures = await readMeasuredFigures(config.measured);
    } catch (e) {
      throw new TiersConfigError(path, 'measured', `${path}: measured: ${(e as Error).message}`);
    }
  }
  for (const [i, t] of config.tiers.entries()) {
    if (t.escalation === undefined) continue;
    try {
      (config.escalationModels ??= new Map()).set(t.name, EscalationModel.read(t.escalation));
    } catch (e) {
      throw new TiersConfigError(path, `tiers[${i}].escalation`, `${path}: tiers[${i}].escalation: ${(e as Error).message}`);
    }
  }
  return config;
}

/**
 * Parses and validates a tiers config's text; `fileName` names it in errors, picks JSON (.json) or YAML,
 * and its folder is where relative model paths resolve.
 */
export function parseTiersConfig(text: string, fileName: string): TiersConfig {
  const fail = (field: string, message: string): never => {
    throw new TiersConfigError(fileName, field, `${fileName}: ${message}`);
  };
  let data: unknown;
  if (/\.json$/i.test(fileName)) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      fail('', `JSON syntax error: ${(e as Error).message.split('\n')[0]}`);
    }
  } else {
    const lines = new LineCounter();
    const doc = parseDocument(text, { prettyErrors: false, lineCounter: lines });
    const err = doc.errors[0];
    if (err) {
      const pos = lines.linePos(err.pos[0]);
      const at = pos ? `line ${pos.line}, column ${pos.col}: ` : '';
      fail('', `${at}YAML syntax error: ${err.message.split('\n')[0]}`);
    }
    data = doc.toJS();
  }
  if (data === null || data === undefined) fail('', 'the file is empty (it needs a list of tiers under "tiers:")');
  check(data, FILE_SCHEMA, '', fail);
  const config = data as { tiers: TierEntry[]; router?: RouterConfig; measured?: string };

  // What the schema alone cannot say.
  const names = new Set<string>();
  config.tiers.forEach((t, i) => {
    const at = `tiers[${i}]`;
    if (names.has(t.name)) fail(`${at}.name`, `${at}.name must be unique, got ${show(t.name)} a second time`);
    names.add(t.name);
    if (t.provider === 'openai') {
      if (t.baseUrl === undefined) fail(`${at}.baseUrl`, `${at}.baseUrl is missing: provider openai needs the endpoint's base URL (e.g. http://127.0.0.1:8080/v1)`);
    } else {
      for (const k of ['baseUrl', 'apiKeyEnv'] as const) if (t[k] !== undefined) fail(`${at}.${k}`, `${at}.${k} applies to provider openai only, not ${t.provider}`);
    }
    if (t.threads !== undefined && t.provider !== 'llamacpp') fail(`${at}.threads`, `${at}.threads applies to provider llamacpp only, not ${t.provider}`);
  });
  config.router?.order?.forEach((n, i) => {
    if (!names.has(n)) fail(`router.order[${i}]`, `router.order[${i}] must name a tier in this file (${[...names].join(', ')}), got ${show(n)}`);
  });

  // Model files resolve against the config file's folder.
  const base = dirname(fileName);
  const tiers = config.tiers.map((t) => {
    const e = t.escalation === undefined ? {} : { escalation: resolve(base, t.escalation) };
    return t.provider === 'openai' || isAbsolute(t.model) ? { ...t, ...e } : { ...t, ...e, model: resolve(base, t.model) };
  });
  const measured = config.measured === undefined ? {} : { measured: resolve(base, config.measured) };
  return { file: fileName, tiers, ...(config.router ? { router: config.router } : {}), ...measured };
}

/** Checks `v` against `schema` at `path` (e.g. 'tiers[2].price'); reports the first problem through `fail`. */
function check(v: unknown, schema: Schema, path: string, fail: (field: string, message: string) => never): void {
  const bad = (want: string) => fail(path, `${path || 'the file'} must be ${want}, got ${show(v)}`);
  switch (schema.kind) {
    case 'string':
      if (typeof v !== 'string' || v.trim() === '') return bad('a non-empty string');
      if (schema.pattern && !schema.pattern.test(v)) return bad(schema.patternText!);
      return;
    case 'number': {
      const range = schema.above !== undefined ? ` > ${schema.above}` : schema.min !== undefined && schema.max !== undefined ? ` from ${schema.min} to ${schema.max}` : schema.min !== undefined ? ` ≥ ${schema.min}` : '';
      const want = `${schema.integer ? 'an integer' : 'a number'}${range}`;
      if (typeof v !== 'number' || !Number.isFinite(v)) return bad(want);
      if (schema.integer && !Number.isInteger(v)) return bad(want);
      if ((schema.min !== undefined && v < schema.min) || (schema.max !== undefined && v > schema.max) || (schema.above !== undefined && v <= schema.above)) return bad(want);
      return;
    }
    case 'boolean':
      if (typeof v !== 'boolean') return bad('true or false');
      return;
    case 'enum':
      if (typeof v !== 'string' || !schema.values.includes(v)) return bad(`one of ${schema.values.join(', ')}`);
      return;
    case 'array':
      if (!Array.isArray(v)) return bad(`a list`);
      if (schema.nonEmpty && v.length === 0) return bad('a list of at least one item');
      v.forEach((item, i) => check(item, schema.items, `${path}[${i}]`, fail));
      return;
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(`${schema.what} (a mapping of fields)`);
      const known = Object.keys(schema.fields);
      for (const k of Object.keys(v)) {
        if (!(k in schema.fields)) {
          const near = closest(k, known);
          fail(join(path, k), `${join(path, k)} is not a field of ${schema.what}${near ? ` (did you mean ${near}?)` : ''}; the fields are ${known.join(', ')}`);
        }
      }
      for (const [k, f] of Object.entries(schema.fields)) {
        const x = (v as Record<string, unknown>)[k];
        if (x === undefined || x === null) {
          if (f.required) fail(join(path, k), `${join(path, k)} is missing: ${f.required}`);
          if (x === null) fail(join(path, k), `${join(path, k)} is empty; leave it out or give a value`);
          continue;
        }
        check(x, f.schema, join(path, k), fail);
      }
    }
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** A value as an error message shows it. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (v !== null && typeof v === 'object') return 'a mapping';
  return String(v);
}

/** The known key nearest to a misspelt one (edit distance ≤ 2, or the same letters in another case), if any. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined, bestD = 3;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, k);
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}

// ---------------------------------------------------------------------------------------------------
// Opening a tier

/** Opens one provider's model for a tier entry. */
export type TierOpener = (entry: TierEntry) => Promise<LanguageModel>;

/** How each provider is opened; the defaults cover what is wired in (llamacpp), callers add the rest. */
export type TierProviders = Partial<Record<TierProvider, TierOpener>>;

/** The providers this file wires in itself. */
export const DEFAULT_PROVIDERS: TierProviders = {
  local: (e) => LocalModel.open(e.model, { name: e.name, tier: e.tier }),
  openai: async (e) => new OpenAIModel({
    baseUrl: e.baseUrl!, model: e.model, name: e.name, tier: e.tier, ...(e.apiKeyEnv ? { apiKeyEnv: e.apiKeyEnv } : {}), ...(e.price ? { prices: e.price } : {}),
    ...(e.timeoutMs ? { timeoutMs: e.timeoutMs } : {}), ...(e.contextLength ? { contextLength: e.contextLength } : {}),
  }),
  llamacpp: (e) => openLlamaCppModel(e.model, { name: e.name, tier: e.tier, ...(e.price ? { price: e.price } : {}), ...(e.contextLength ? { contextSize: e.contextLength } : {}), ...(e.threads ? { threads: e.threads } : {}) }),
};

/** A LanguageModel for a tier entry, through `providers` (falling back to DEFAULT_PROVIDERS). */
export async function openTier(entry: TierEntry, providers: TierProviders = {}): Promise<LanguageModel> {
  const open = providers[entry.provider] ?? DEFAULT_PROVIDERS[entry.provider];
  if (!open) throw new Error(`tier ${entry.name}: provider ${entry.provider} is not available in this build`);
  return open(entry);
}
