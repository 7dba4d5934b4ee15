/**
 * Training data: text files or folders read as bytes, a deterministic train/validation split, and
 * random contiguous windows drawn with a seeded RNG (whose state is the "data position" a checkpoint
 * saves, so a resumed run sees exactly the windows an uninterrupted one would).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { joinBytes } from '../tokenizers/tokenizer.js';
import type { Rng } from '../util/rng.js';

/** Reads a file, or every regular file under a folder (sorted, recursively), as one byte array. */
export function readTextData(path: string): Uint8Array {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`data: '${path}' does not exist`);
  }
  const files: string[] = [];
  const walk = (p: string) => {
    const s = statSync(p);
    if (s.isDirectory()) for (const f of readdirSync(p).sort()) {
      if (!f.startsWith('.')) walk(join(p, f));
    }
    else if (s.isFile()) files.push(p);
  };
  if (st.isDirectory()) walk(path);
  else files.push(path);
  if (!files.length) throw new Error(`data: folder '${path}' contains no files`);
  const out = joinBytes(files.map((f) => readFileSync(f)));
  if (out.length === 0) throw new Error(`data: '${path}' is empty`);
  return out;
}

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
