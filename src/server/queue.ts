/**
 * One model's requests, one at a time: a request holds the model from `acquire` until it calls the
 * release it was given; up to `limit` more wait their turn in arrival order, and a request beyond that is
 * refused at once (`QueueFullError`: the server answers 429 with retry-after). A waiting request whose
 * signal aborts (its client went away) leaves the queue without ever running.
 *
 * This is the first step of issue 16's concurrency: requests are served in turn, not batched. Continuous
 * batching (one decode step for several sequences, each with its own KV cache) replaces the single slot
 * here later; the queue's bound and its 429 stay.
 */

/** The queue is full: the caller should try again later. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class RequestQueue {
  private busy = false;
  private readonly waiting: { start: () => void; fail: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  /** `limit`: requests that may wait while one runs (0: none wait). */
  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 0)) throw new Error(`queue: the limit must be an integer >= 0, got ${limit}`);
  }

  /** Requests waiting (not counting the one running). */
  get pending(): number {
    return this.waiting.length;
  }

  get running(): boolean {
    return this.busy;
  }

  /** Waits for the model; resolves to the function that hands it on (call it exactly once, in a finally). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.limit) {
      return Promise.reject(new QueueFullError(`the model is busy and ${this.waiting.length} request${this.waiting.length === 1 ? ' is' : 's are'} already waiting (the limit); try again shortly`));
    }
    return new Promise((resolve, reject) => {
      const entry: RequestQueue['waiting'][number] = { start: () => resolve(this.releaser()), fail: reject, signal };
      if (signal) {
        entry.onAbort = () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.waiting.push(entry);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (!next) {
        this.busy = false;
        return;
      }
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
      next.start(); // the slot passes straight on: busy stays true
    };
  }
}
