/** Learning-rate schedule: linear warmup, then cosine decay to minLr at totalSteps (then flat). */
export function learningRate(step: number, o: { lr: number; minLr: number; warmup: number; totalSteps: number }): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  if (step >= o.totalSteps) return o.minLr;
  const progress = (step - o.warmup) / Math.max(1, o.totalSteps - o.warmup);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}
