/**
 * Training data: text files or folders read as bytes, a deterministic train/validation split, and
 * random contiguous windows drawn with a seeded RNG (whose state is the "data position" a checkpoint
 * saves, so a resumed run sees exactly the windows an uninterrupted one would). No `node:` module here
 * (the trainer runs in a browser too); reading files is `data-files.ts`.
 */
import type { Rng } from '../util/rng.js';

/** The first `trainFraction` of the tokens train, the rest validate (the nanoGPT convention: 0.9). */
export function splitTrainVal<T extends { length: number; subarray(a: number, b?: number): T }>(data: T, trainFraction = 0.9): { train: T; val: T } {
  const cut = Math.floor(data.length * trainFraction);
  return { train: data.subarray(0, cut), val: data.subarray(cut) };
}

/** Draws batches of random windows: ids = tokens[s, s+T), targets = tokens[s+1, s+T+1). */
export class WindowSampler {
  readonly ids: Int32Array;
  readonly targets: Int32Array;

  constructor(
    private readonly tokens: ArrayLike<number>,
    readonly batch: number,
    readonly seqLen: number,
    private readonly rng: Rng,
  ) {
    if (tokens.length < seqLen + 1) {
      throw new Error(`data: the training split has ${tokens.length} tokens, fewer than one window of ${seqLen + 1} (use a shorter --ctx or more data)`);
    }
    this.ids = new Int32Array(batch * seqLen);
    this.targets = new Int32Array(batch * seqLen);
  }

  /** Fills ids/targets with the next batch (reused arrays: no allocation per step). */
  next(): void {
    const T = this.seqLen, tok = this.tokens;
    for (let b = 0; b < this.batch; b++) {
      const s = this.rng.int(tok.length - T);
      for (let t = 0; t < T; t++) {
        this.ids[b * T + t] = tok[s + t];
        this.targets[b * T + t] = tok[s + t + 1];
      }
    }
  }
}
