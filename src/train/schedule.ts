/** Learning-rate schedule: linear warmup, then cosine decay to minLr at totalSteps (then flat). */
export function learningRate(step: number, o: { lr: number; minLr: number; warmup: number; totalSteps: number }): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  if (step >= o.totalSteps) return o.minLr;
  const progress = (step - o.warmup) / Math.max(1, o.totalSteps - o.warmup);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * Dropout schedules (the STLM paper's "dropout scheduling"; Liu et al. 2023, "Dropout reduces
 * underfitting"): 'constant' keeps the rate p; 'linear' ramps it from 0 to p over the run ("late dropout",
 * regularizing once the model starts to fit); 'triangular' rises from 0 to p at mid-run and falls back
 * to 0, so the end of training sees the full model as inference will.
 */
export type DropoutSchedule = 'constant' | 'linear' | 'triangular';
export const DROPOUT_SCHEDULES: DropoutSchedule[] = ['constant', 'linear', 'triangular'];

export function dropoutRate(step: number, totalSteps: number, p: number, schedule: DropoutSchedule): number {
  if (p === 0 || schedule === 'constant') return p;
  const t = Math.min(1, step / Math.max(1, totalSteps));
  return schedule === 'linear' ? p * t : p * (1 - Math.abs(2 * t - 1));
}
