/**
 * Stop strings on a streamed text: emits what is safe now, holds back a suffix that could still grow
 * into a stop string, and reports the first stop string hit (which itself is never emitted).
 */

/** What {@link StopMatcher.push} returns. */
export interface StopResult {
  /** Text safe to emit now (possibly ''). */
  text: string;
  /** True once a stop string has been seen; later pushes return ''. */
  stopped: boolean;
  /** The stop string that was hit, if any. */
  stop?: string;
}

/** Watches a stream of text chunks for any of a set of stop strings. */
export class StopMatcher {
  private readonly stops: string[];
  private readonly longest: number;
  private held = '';
  private hit: string | undefined;

  constructor(stops: readonly string[]) {
    for (const s of stops) if (typeof s !== 'string' || s.length === 0) throw new Error('stop strings must be non-empty strings');
    this.stops = [...new Set(stops)];
    this.longest = this.stops.reduce((a, s) => Math.max(a, s.length), 0);
  }

  /** True once a stop string has been hit. */
  get stopped(): boolean {
    return this.hit !== undefined;
  }

  /** Feeds a chunk; returns the text safe to emit and whether a stop string was hit. */
  push(chunk: string): StopResult {
    if (this.hit !== undefined) return { text: '', stopped: true, stop: this.hit };
    const buf = this.held + chunk;
    // The earliest stop string wins; on a tie at the same position, the longest.
    let at = -1, stop: string | undefined;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > stop!.length))) { at = i; stop = s; }
    }
    if (stop !== undefined) {
      this.hit = stop;
      this.held = '';
      return { text: buf.slice(0, at), stopped: true, stop };
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** Ends the stream: returns the held-back text (a false start never completed), or '' after a stop. */
  flush(): string {
    const t = this.held;
    this.held = '';
    return t;
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    for (let k = Math.min(this.longest - 1, buf.length); k > 0; k--) {
      const tail = buf.slice(buf.length - k);
      for (const s of this.stops) if (s.length > k && s.startsWith(tail)) return k;
    }
    return 0;
  }
}
