/**
 * The Pareto frontier of points that trade a cost (lower is better: latency, memory, money) against a
 * quality (higher is better, or lower for bits per byte): the points no other point beats on both.
 */

export interface TradeoffPoint {
  label: string;
  /** The cost axis. */
  x: number;
  /** The quality axis. */
  y: number;
}

/**
 * The labels of the points on the frontier, in input order. A point is off it when another costs no more
 * and is no worse, and is strictly better on one of the two; equal points are both on it. `yBetter`
 * says which way quality improves (default higher).
 */
export function paretoFrontier(points: readonly TradeoffPoint[], o: { yBetter?: 'higher' | 'lower' } = {}): string[] {
  const sign = o.yBetter === 'lower' ? -1 : 1;
  const dominates = (a: TradeoffPoint, b: TradeoffPoint) =>
    a.x <= b.x && sign * a.y >= sign * b.y && (a.x < b.x || sign * a.y > sign * b.y);
  return points.filter((p) => !points.some((q) => q !== p && dominates(q, p))).map((p) => p.label);
}
