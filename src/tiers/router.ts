/**
 * The router: a LanguageModel over several tiers that picks one per request under the request's
 * constraints, and records why (LiteLLM-style decisions as data). Two policies:
 *   - cheapest: the cheapest tier whose declared numbers fit the constraints answers;
 *   - cascade: the cheapest fitting tier answers first; when its confidence in its own answer is under
 *     the threshold (mean token log-probability of a generation; for a multiple-choice request, the
 *     margin between the two best choices' log-likelihoods, or a learned escalation model's predicted
 *     gain, escalation.ts), the next fitting tier answers instead.
 * Either way a tier that fails or times out falls back to the next one. Every decision is returned
 * with the result (`route`) and passed to `onDecision` (a log line).
 */
import type { ContinuationScore, GenerateInput, GenerateOptions, GenerateResult, GenerateStream, LanguageModel, LanguageModelInfo, Tier } from './types.js';
import type { EscalationModel, EscalationPrediction } from './escalation.js';

/** One tier as the router sees it: the model and what is declared or measured of it. */
export interface RouteTier {
  name: string;
  model: LanguageModel;
  tier: Tier;
  /** US dollars per million tokens (0 for a local model). */
  price?: { prompt: number; completion: number };
  /** Typical latency of a request, declared or measured (ms). */
  latencyMs?: number;
  /** Memory the model needs on this machine (bytes; 0 or absent for a remote one). */
  memoryBytes?: number;
  /** Quality in 0..1 (e.g. measured accuracy on the user's task). */
  quality?: number;
  /** Whether it runs without a network (local and llama.cpp tiers). */
  offline: boolean;
}

/** Limits a request puts on the choice; a tier whose declared numbers break one is skipped, with the reason. */
export interface RouteConstraints {
  maxLatencyMs?: number;
  maxCostUsd?: number;
  minQuality?: number;
  memoryBudgetBytes?: number;
  offlineOnly?: boolean;
}

export interface RouterOptions {
  policy: 'cheapest' | 'cascade';
  /**
   * Cascade: escalate when confidence is under this. For a generation, the mean log-probability of its
   * tokens (e.g. −1.5); for a multiple-choice request, the log-likelihood margin of the best choice
   * over the second (e.g. 1.0).
   */
  threshold?: number;
  choiceThreshold?: number;
  /**
   * Which signal `threshold` applies to for a generation: the mean token log-probability (escalate
   * under it; default) or the mean entropy of the next-token distributions (escalate over it, in nats).
   */
  confidence?: 'meanLogprob' | 'entropy';
  /**
   * Cascade, multiple-choice requests: learned escalation models by the name of the tier they decide
   * for (escalation.ts). A tier with one escalates when the model's predicted gain (P(the next tier is
   * right) − P(this tier is right)) is over `gainThreshold`, instead of comparing its margin with
   * choiceThreshold.
   */
  escalation?: Record<string, EscalationModel>;
  /** The predicted gain over which a tier with an escalation model escalates (default 0). */
  gainThreshold?: number;
  /** Applied to every request unless the request gives its own. */
  constraints?: RouteConstraints;
  /** Tier names in the order they are tried (default: cheapest estimate first, then lower latency). */
  order?: string[];
  /** Try the next tier when one fails or times out (default true). */
  fallback?: boolean;
  /** Called with every decision (for a log line). */
  onDecision?: (d: RouteDecision) => void;
}

/** One tier's part in a decision. */
export interface RouteAttempt {
  tier: string;
  /** What happened; in a plan (explain), 'first' and 'next' say what would be tried. */
  outcome: 'answered' | 'escalated' | 'failed' | 'skipped' | 'first' | 'next';
  /** Why: the broken constraint, the error, or the confidence against the threshold. */
  reason: string;
  estimatedCostUsd?: number;
  estimatedLatencyMs?: number;
  costUsd?: number;
  latencyMs?: number;
  confidence?: number;
  /** A learned escalation model's prediction for this tier's answer (multiple choice). */
  predicted?: EscalationPrediction;
}

export interface RouteDecision {
  /** The tier that answered. */
  tier: string;
  /** One line: why that tier. */
  reason: string;
  attempts: RouteAttempt[];
  /** Cost and latency of the whole request, all attempts together. */
  costUsd: number;
  latencyMs: number;
}

export type RoutedResult = GenerateResult & { route: RouteDecision };

/** A request every tier refused or failed: the decision says why for each. */
export class RouteError extends Error {
  override name = 'RouteError';
  constructor(message: string, readonly decision: RouteDecision) {
    super(message);
  }
}

/** What a request is expected to cost on a tier: tokens in (estimated as bytes / 4 unless counted) and maxTokens out. */
export function estimateCost(t: RouteTier, promptTokens: number, maxTokens: number): number {
  const p = t.price ?? { prompt: 0, completion: 0 };
  return (promptTokens * p.prompt + maxTokens * p.completion) / 1e6;
}

const text = (input: GenerateInput): string => input.prompt ?? input.messages.map((m) => m.content).join('\n');

/** Prompt tokens before a tier has tokenized anything: UTF-8 bytes / 4, the usual rule of thumb for BPE vocabularies. */
const estimateTokens = (s: string): number => Math.ceil(new TextEncoder().encode(s).length / 4);

export class Router implements LanguageModel {
  constructor(
    readonly tiers: RouteTier[],
    readonly options: RouterOptions,
  ) {
    if (tiers.length === 0) throw new Error('router: no tiers');
    const names = new Set<string>();
    for (const t of tiers) {
      if (names.has(t.name)) throw new Error(`router: two tiers are named '${t.name}'`);
      names.add(t.name);
    }
    for (const n of options.order ?? []) if (!names.has(n)) throw new Error(`router: order names '${n}', which is not a tier (tiers: ${[...names].join(', ')})`);
    if (options.policy === 'cascade' && options.threshold === undefined && options.choiceThreshold === undefined && !Object.keys(options.escalation ?? {}).length) {
      throw new Error('router: the cascade policy needs a threshold (mean log-probability), a choiceThreshold (log-likelihood margin) or an escalation model');
    }
    for (const n of Object.keys(options.escalation ?? {})) if (!names.has(n)) throw new Error(`router: an escalation model is given for '${n}', which is not a tier (tiers: ${[...names].join(', ')})`);
  }

  info(): LanguageModelInfo {
    return { name: 'auto', tier: 'tiny', provider: 'router', runsOn: `router over ${this.tiers.map((t) => t.name).join(', ')}` };
  }

  /**
   * The tiers that may answer, in the order they would be tried (cheapest estimate first, then lower
   * latency), and the attempts recording each skipped tier's reason.
   */
  plan(promptTokens: number, maxTokens: number, constraints: RouteConstraints = this.options.constraints ?? {}): { order: RouteTier[]; skipped: RouteAttempt[] } {
    const c = constraints, order: RouteTier[] = [], skipped: RouteAttempt[] = [];
    for (const t of this.tiers) {
      const cost = estimateCost(t, promptTokens, maxTokens);
      const why =
        c.offlineOnly && !t.offline ? 'needs the network (offline only)'
        : c.memoryBudgetBytes !== undefined && (t.memoryBytes ?? 0) > c.memoryBudgetBytes ? `needs ${t.memoryBytes} bytes, over the memory budget of ${c.memoryBudgetBytes}`
        : c.minQuality !== undefined && (t.quality ?? 0) < c.minQuality ? `quality ${t.quality ?? 'unknown'} under the minimum ${c.minQuality}`
        : c.maxCostUsd !== undefined && cost > c.maxCostUsd ? `estimated $${cost.toPrecision(3)} over the maximum $${c.maxCostUsd}`
        : c.maxLatencyMs !== undefined && t.latencyMs !== undefined && t.latencyMs > c.maxLatencyMs ? `latency ${t.latencyMs} ms over the maximum ${c.maxLatencyMs} ms`
        : '';
      if (why) skipped.push({ tier: t.name, outcome: 'skipped', reason: why, estimatedCostUsd: cost, estimatedLatencyMs: t.latencyMs });
      else order.push(t);
    }
    const cost = (t: RouteTier) => estimateCost(t, promptTokens, maxTokens);
    const rank = (t: RouteTier) => this.options.order?.indexOf(t.name) ?? -1;
    if (this.options.order) order.sort((a, b) => (rank(a) < 0 ? Infinity : rank(a)) - (rank(b) < 0 ? Infinity : rank(b)));
    else order.sort((a, b) => cost(a) - cost(b) || (a.latencyMs ?? 0) - (b.latencyMs ?? 0) || (a.quality ?? 0) - (b.quality ?? 0));
    return { order, skipped };
  }

  /** The decision the router would make for this request, without running it (`stlm route --explain`). */
  explain(input: GenerateInput, o: GenerateOptions & { constraints?: RouteConstraints } = {}): RouteDecision {
    const promptTokens = estimateTokens(text(input)), maxTokens = o.maxTokens ?? 256;
    const { order, skipped } = this.plan(promptTokens, maxTokens, o.constraints);
    const first = order[0];
    const planned: RouteAttempt[] = order.map((t, i) => ({
      tier: t.name, outcome: i === 0 ? 'first' : 'next', reason: i === 0 ? this.firstReason(t, order.length)
        : this.options.policy === 'cascade' ? 'if the tier before it is unsure or fails' : 'if the tier before it fails',
      estimatedCostUsd: estimateCost(t, promptTokens, maxTokens), estimatedLatencyMs: t.latencyMs,
    }));
    return {
      tier: first?.name ?? '', reason: first ? this.firstReason(first, order.length) : 'no tier fits the constraints',
      attempts: [...skipped, ...planned], costUsd: 0, latencyMs: 0,
    };
  }

  /** Whether tier i of n streams its text as it comes: always, except a cascade's tiers before the last, whose answer may be dropped. */
  private streams(i: number, n: number): boolean {
    return this.options.policy !== 'cascade' || i === n - 1;
  }

  /** The decision record, with a one-line reason naming any fallback; passed to onDecision. */
  private decision(tier: string | undefined, attempts: RouteAttempt[], costUsd: number, t0: number): RouteDecision {
    const failed = attempts.filter((a) => a.outcome === 'failed');
    const answer = attempts.find((a) => a.tier === tier && a.outcome === 'answered') ?? attempts.filter((a) => a.tier === tier).at(-1);
    const reason = !tier ? attempts.map((a) => `${a.tier}: ${a.reason}`).join('; ') || 'no tiers fit'
      : `${answer?.reason ?? ''}${failed.length ? ` (after ${failed.map((a) => `${a.tier} failed: ${a.reason}`).join('; ')})` : ''}`;
    const d: RouteDecision = { tier: tier ?? '', reason, attempts, costUsd, latencyMs: performance.now() - t0 };
    this.options.onDecision?.(d);
    return d;
  }

  private firstReason(t: RouteTier, fitting: number): string {
    const o = this.options, learned = Object.keys(o.escalation ?? {}).length > 0;
    const bound = o.threshold === undefined && o.choiceThreshold === undefined ? 'by the learned gain (multiple choice)'
      : `${o.confidence === 'entropy' ? `over mean entropy ${o.threshold}` : `under ${o.threshold ?? o.choiceThreshold}`}${learned ? '; multiple choice by the learned gain' : ''}`;
    const policy = this.options.policy === 'cascade' ? `cascade (escalates ${bound})` : 'cheapest that fits';
    return `${policy}: ${t.name} is the ${this.options.order ? 'first in the configured order' : 'cheapest'} of ${fitting} fitting tier${fitting === 1 ? '' : 's'}`;
  }

  async generate(input: GenerateInput, o: GenerateOptions & { constraints?: RouteConstraints } = {}): Promise<RoutedResult> {
    const t0 = performance.now();
    const promptTokens = estimateTokens(text(input));
    const { order, skipped } = this.plan(promptTokens, o.maxTokens ?? 256, o.constraints);
    const attempts: RouteAttempt[] = [...skipped];
    let costUsd = 0;
    let last: GenerateResult | undefined, lastTier: RouteTier | undefined;
    for (const [i, t] of order.entries()) {
      const started = performance.now();
      const estimate = { estimatedCostUsd: estimateCost(t, promptTokens, o.maxTokens ?? 256), estimatedLatencyMs: t.latencyMs };
      let r: GenerateResult;
      try {
        // Only the answer that is kept streams to the caller: a cascade holds text back until it decides.
        r = await t.model.generate(input, { ...o, onText: this.streams(i, order.length) ? o.onText : undefined });
      } catch (e) {
        if ((e as Error).name === 'AbortError') throw e;
        attempts.push({ tier: t.name, outcome: 'failed', reason: (e as Error).message.split('\n')[0], ...estimate, latencyMs: performance.now() - started });
        if (this.options.fallback === false) break;
        continue;
      }
      costUsd += r.costUsd;
      const byEntropy = this.options.confidence === 'entropy';
      const confidence = byEntropy ? r.meanEntropy : r.meanLogprob, threshold = this.options.threshold;
      const signal = byEntropy ? 'mean entropy' : 'mean log-probability';
      const under = this.options.policy === 'cascade' && threshold !== undefined && confidence !== undefined && (byEntropy ? confidence > threshold : confidence < threshold);
      const lastTierHere = i === order.length - 1;
      const unsure = under && !lastTierHere;
      const reason = this.options.policy !== 'cascade' ? 'cheapest that fits'
        : confidence === undefined ? `answered (this tier reports no ${signal}, so no confidence to check)`
        : `${signal} ${confidence.toFixed(3)} ${under ? (byEntropy ? 'over' : 'under') : (byEntropy ? 'at or under' : 'at or over')} the threshold ${threshold ?? '-'}${under && lastTierHere ? '; no stronger tier is left' : ''}`;
      attempts.push({ tier: t.name, outcome: unsure ? 'escalated' : 'answered', reason, ...estimate, costUsd: r.costUsd, latencyMs: performance.now() - started, confidence });
      if (!unsure) {
        last = r;
        lastTier = t;
        if (!this.streams(i, order.length)) o.onText?.(r.text);
        break;
      }
      // Kept in case every stronger tier fails: the most confident of the unsure answers.
      const better = (a: GenerateResult, b: GenerateResult) => (byEntropy ? (a.meanEntropy ?? Infinity) < (b.meanEntropy ?? Infinity) : (a.meanLogprob ?? -Infinity) > (b.meanLogprob ?? -Infinity));
      if (!last || better(r, last)) {
        last = r;
        lastTier = t;
      }
    }
    // Every tier after the unsure ones failed: the most confident unsure answer is the best there is.
    if (last && attempts.at(-1)?.outcome !== 'answered' && !this.streams(order.indexOf(lastTier!), order.length)) o.onText?.(last.text);
    const decision = this.decision(lastTier?.name, attempts, costUsd, t0);
    if (!last || !lastTier) throw new RouteError(`router: no tier answered (${decision.reason})`, decision);
    return { ...last, costUsd, model: lastTier.name, route: decision };
  }

  async *stream(input: GenerateInput, o: GenerateOptions & { constraints?: RouteConstraints } = {}): GenerateStream {
    const pieces: string[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    const result = this.generate(input, { ...o, onText: (t) => { pieces.push(t); wake?.(); } }).finally(() => {
      done = true;
      wake?.();
    });
    result.catch(() => undefined); // awaited below
    while (!done || pieces.length) {
      if (pieces.length) yield pieces.shift()!;
      else await new Promise<void>((res) => (wake = res));
    }
    return await result;
  }

  /**
   * Multiple choice: the index of the best continuation and the decision. With the cascade, a tier whose
   * margin (best log-likelihood minus the second) is under choiceThreshold hands the item to the next.
   */
  async choose(context: string, choices: string[], o: { constraints?: RouteConstraints; normalize?: 'none' | 'bytes' } = {}): Promise<{ index: number; scores: ContinuationScore[]; route: RouteDecision }> {
    const t0 = performance.now();
    const { order, skipped } = this.plan(estimateTokens(context), 1, o.constraints);
    const attempts: RouteAttempt[] = [...skipped];
    let best: { index: number; scores: ContinuationScore[]; tier: string } | undefined;
    for (const [i, t] of order.entries()) {
      const started = performance.now();
      let scores: ContinuationScore[];
      try {
        scores = await t.model.score(context, choices);
      } catch (e) {
        attempts.push({ tier: t.name, outcome: 'failed', reason: (e as Error).message.split('\n')[0], latencyMs: performance.now() - started });
        if (this.options.fallback === false) break;
        continue;
      }
      const values = scores.map((s, j) => (o.normalize === 'bytes' ? s.logprob / Math.max(1, new TextEncoder().encode(choices[j]).length) : s.logprob));
      const ranked = values.map((v, j) => [v, j] as const).sort((a, b) => b[0] - a[0]);
      const margin = ranked.length > 1 ? ranked[0][0] - ranked[1][0] : Infinity;
      best = { index: ranked[0][1], scores, tier: t.name };
      const cascade = this.options.policy === 'cascade', notLast = i < order.length - 1;
      const learned = cascade ? this.options.escalation?.[t.name] : undefined;
      let unsure: boolean, reason: string, predicted: EscalationPrediction | undefined;
      if (learned) {
        predicted = learned.predict({ context, choices, values });
        const over = this.options.gainThreshold ?? 0;
        unsure = predicted.gain > over && notLast;
        reason = `predicted gain of escalating ${predicted.gain.toFixed(3)} (P(right): ${order[i + 1]?.name ?? learned.fit.strongTier} ${predicted.strong.toFixed(3)}, ${t.name} ${predicted.weak.toFixed(3)}) ` +
          `${predicted.gain > over ? 'over' : 'at or under'} the threshold ${over}${predicted.gain > over && !notLast ? '; no stronger tier is left' : ''}`;
      } else {
        unsure = cascade && this.options.choiceThreshold !== undefined && margin < this.options.choiceThreshold && notLast;
        reason = !cascade ? 'cheapest that fits'
          : this.options.choiceThreshold === undefined ? `margin ${margin.toFixed(3)}; answered (no choice threshold and no escalation model for this tier)`
          : `margin ${margin.toFixed(3)} ${unsure ? 'under' : 'at or over'} the threshold ${this.options.choiceThreshold}`;
      }
      attempts.push({ tier: t.name, outcome: unsure ? 'escalated' : 'answered', confidence: margin, latencyMs: performance.now() - started, reason, ...(predicted ? { predicted } : {}) });
      if (!unsure) break;
    }
    const decision = this.decision(best?.tier, attempts, 0, t0);
    if (!best) throw new RouteError(`router: no tier could score the choices (${decision.reason})`, decision);
    return { index: best.index, scores: best.scores, route: decision };
  }

  /** Scores with the cheapest fitting tier that can (falling back past those that cannot). */
  async score(context: string, continuations: string[]): Promise<ContinuationScore[]> {
    return (await this.choose(context, continuations)).scores;
  }

  async tokenize(text: string): Promise<number[]> {
    return this.plan(0, 0).order[0]?.model.tokenize(text) ?? [];
  }

  async countTokens(text: string): Promise<number> {
    return (await this.tokenize(text)).length;
  }

  async close(): Promise<void> {
    await Promise.all(this.tiers.map((t) => t.model.close()));
  }
}
