/**
 * A Backend wrapper that times every kernel call by method name (wall clock, synchronous kernels),
 * to see where a training or decode step spends its time.
 */
import type { Backend } from './backend.js';

export interface ProfileEntry {
  calls: number;
  ms: number;
}

/** Wraps `inner`; `profile` accumulates calls and milliseconds per method until cleared. */
export function profiled(inner: Backend): { backend: Backend; profile: Map<string, ProfileEntry> } {
  const profile = new Map<string, ProfileEntry>();
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        let e = profile.get(prop);
        if (!e) profile.set(prop, (e = { calls: 0, ms: 0 }));
        e.calls++;
        e.ms += performance.now() - t0;
        return r;
      };
    },
  });
  return { backend, profile };
}

/** The profile as lines, slowest first. */
export function formatProfile(profile: Map<string, ProfileEntry>, perSteps = 1): string {
  const total = [...profile.values()].reduce((s, e) => s + e.ms, 0);
  return [...profile]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([k, e]) => `${k.padEnd(20)} ${(e.ms / perSteps).toFixed(2).padStart(9)} ms ${String(Math.round(e.calls / perSteps)).padStart(6)} calls ${((100 * e.ms) / total).toFixed(1).padStart(5)}%`)
    .join('\n');
}
