/**
 * `stlm route --tiers <config> [--explain] "<prompt>"`: one request through the router a tiers config
 * describes. --explain prints the decision it would make (which tier, why, each tier's estimated cost
 * and latency, the tiers skipped and why) without running any model; otherwise the answer streams to
 * stdout and the decision goes to stderr (as JSON with --json).
 */
import { loadTiersConfig } from '../tiers/config.js';
import { routerFromConfig } from '../tiers/open.js';
import type { RouteConstraints, RouteDecision } from '../tiers/router.js';

export interface RouteCliOptions {
  tiers: string;
  explain: boolean;
  json: boolean;
  maxTokens: number;
  temperature: number;
  seed: number;
  maxLatencyMs?: number;
  maxCost?: number;
  minQuality?: number;
  memoryBudget?: number;
  offline: boolean;
}

/** A bad request or config: exit code 2, as for a bad flag. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

function describe(d: RouteDecision): string {
  const money = (x?: number) => (x === undefined ? '-' : `$${x.toPrecision(3)}`);
  const ms = (x?: number) => (x === undefined ? '-' : `${Math.round(x)} ms`);
  return [
    `tier: ${d.tier || '(none)'}`,
    `why:  ${d.reason}`,
    ...d.attempts.map((a) => `  ${a.tier.padEnd(10)} ${a.outcome.padEnd(9)} est. ${money(a.estimatedCostUsd)}, ${ms(a.estimatedLatencyMs)}` +
      `${a.costUsd !== undefined || a.latencyMs !== undefined ? `; actual ${money(a.costUsd)}, ${ms(a.latencyMs)}` : ''}: ${a.reason}`),
  ].join('\n');
}

export async function runRoute(prompt: string, o: RouteCliOptions): Promise<void> {
  let config;
  try {
    config = await loadTiersConfig(o.tiers);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const constraints: RouteConstraints = {
    ...config.router?.constraints,
    ...(o.maxLatencyMs !== undefined ? { maxLatencyMs: o.maxLatencyMs } : {}),
    ...(o.maxCost !== undefined ? { maxCostUsd: o.maxCost } : {}),
    ...(o.minQuality !== undefined ? { minQuality: o.minQuality } : {}),
    ...(o.memoryBudget !== undefined ? { memoryBudgetBytes: o.memoryBudget } : {}),
    ...(o.offline ? { offlineOnly: true } : {}),
  };
  const router = routerFromConfig(config);
  const request = { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, constraints };
  try {
    if (o.explain) {
      const d = router.explain({ prompt }, request);
      process.stdout.write(o.json ? JSON.stringify(d) + '\n' : describe(d) + '\n');
      if (!d.tier) process.exitCode = 2;
      return;
    }
    const r = await router.generate({ prompt }, { ...request, onText: (t) => process.stdout.write(t) });
    process.stdout.write('\n');
    process.stderr.write(o.json ? JSON.stringify(r.route) + '\n' : describe(r.route) + '\n');
  } finally {
    await router.close();
  }
}
