/**
 * A router from a tiers config: each tier opened through its provider only when a request first reaches
 * it (so `--explain`, which runs nothing, opens nothing, and a request the tiny tier answers never loads
 * the others).
 */
import { DEFAULT_PROVIDERS, type TierEntry, type TierProviders, type TiersConfig, openTier } from './config.js';
import type { MeasuredFigures } from './measured.js';
import { type RouteTier, Router } from './router.js';
import type { GenerateInput, GenerateOptions, LanguageModel, LanguageModelInfo } from './types.js';

/** A LanguageModel that opens the real one on first use. */
export class LazyModel implements LanguageModel {
  private opened: Promise<LanguageModel> | undefined;

  constructor(
    private readonly entry: TierEntry,
    private readonly providers: TierProviders,
  ) {}

  /** The opened model (opening it now if no request has yet): for callers that need its own methods. */
  resolve(): Promise<LanguageModel> {
    return this.model();
  }

  private model(): Promise<LanguageModel> {
    this.opened ??= openTier(this.entry, this.providers);
    return this.opened;
  }

  info(): LanguageModelInfo {
    const e = this.entry;
    return { name: e.name, tier: e.tier, provider: e.provider, contextLength: e.contextLength, runsOn: e.provider === 'openai' ? e.baseUrl ?? '' : 'this process', pricePerMillion: e.price };
  }

  async generate(input: GenerateInput, o?: GenerateOptions) {
    return (await this.model()).generate(input, o);
  }

  async *stream(input: GenerateInput, o?: GenerateOptions) {
    return yield* (await this.model()).stream(input, o);
  }

  async score(context: string, continuations: string[], o?: { signal?: AbortSignal }) {
    return (await this.model()).score(context, continuations, o);
  }

  async tokenize(text: string) {
    return (await this.model()).tokenize(text);
  }

  async countTokens(text: string) {
    return (await this.model()).countTokens(text);
  }

  async close(): Promise<void> {
    if (this.opened) await (await this.opened.catch(() => undefined))?.close();
  }
}

/**
 * The router a tiers config describes (its `router` section; cheapest-that-fits when it has none). Where
 * measurements are given (`o.measured`, else the config's `measured:` file), a tier's measured latency,
 * memory and quality replace the declared ones; what was not measured stays as declared.
 */
export function routerFromConfig(config: TiersConfig, o: { providers?: TierProviders; onDecision?: ConstructorParameters<typeof Router>[1]['onDecision']; measured?: Map<string, MeasuredFigures> } = {}): Router {
  const providers = { ...DEFAULT_PROVIDERS, ...o.providers };
  const measured = o.measured ?? config.measuredFigures;
  const tiers: RouteTier[] = config.tiers.map((e) => {
    const m = measured?.get(e.name) ?? {};
    return {
      name: e.name, tier: e.tier, model: new LazyModel(e, providers), price: e.price,
      latencyMs: m.latencyMs ?? e.latencyMs, memoryBytes: m.memoryBytes ?? e.memoryBytes, quality: m.quality ?? e.quality,
      offline: e.provider !== 'openai',
    };
  });
  const r = config.router;
  return new Router(tiers, {
    policy: r?.policy ?? 'cheapest',
    ...(r?.confidence === 'margin' ? { choiceThreshold: r.threshold } : { threshold: r?.threshold, confidence: r?.confidence }),
    ...(config.escalationModels?.size ? { escalation: Object.fromEntries(config.escalationModels), gainThreshold: r?.gainThreshold } : {}),
    constraints: r?.constraints, order: r?.order, fallback: r?.fallback, onDecision: o.onDecision,
  });
}
