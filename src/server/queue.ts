/**
 * One model's requests through `slots` slots: a request holds a slot from `acquire` until it calls the
 * release it was given; up to `limit` more wait their turn in arrival order, and a request beyond that is
 * refused at once (`QueueFullError`: the server answers 429 with retry-after). A waiting request whose
 * signal aborts (its client went away) leaves the queue without ever running.
 *
 * One slot serves requests in turn (tiers that run one request at a time); a model with continuous
 * batching gets as many slots as its batch holds (each slot one KV cache within the memory budget).
 */

/** The queue is full: the caller should try again later. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class RequestQueue {
  private busy = 0;
  private readonly waiting: { start: () => void; fail: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  /** `limit`: requests that may wait while every slot is taken (0: none wait); `slots`: requests that run at once. */
  constructor(
    readonly limit: number,
    readonly slots = 1,
  ) {
    if (!(Number.isInteger(limit) && limit >= 0)) throw new Error(`queue: the limit must be an integer >= 0, got ${limit}`);
    if (!(Number.isInteger(slots) && slots >= 1)) throw new Error(`queue: the slots must be an integer >= 1, got ${slots}`);
  }

  /** Requests waiting (not counting the one running). */
  get pending(): number {
    return this.waiting.length;
  }

  /** Whether any request holds a slot. */
  get running(): boolean {
    return this.busy > 0;
  }

  /** Requests holding a slot. */
  get active(): number {
    return this.busy;
  }

  /** Waits for the model; resolves to the function that hands it on (call it exactly once, in a finally). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.busy < this.slots) {
      this.busy++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.limit) {
      return Promise.reject(new QueueFullError(`the model is busy (${this.slots} request${this.slots === 1 ? '' : 's'} running) and ${this.waiting.length} request${this.waiting.length === 1 ? ' is' : 's are'} already waiting (the limit); try again shortly`));
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
        this.busy--;
        return;
      }
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
      next.start(); // the slot passes straight on: busy stays as it is
    };
  }
}
