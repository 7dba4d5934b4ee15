/**
 * The address plan of a backend's one linear memory (the WebAssembly backend's; the dry backend replays
 * it without memory): a bump pointer with a free list per exact size. A training step asks for the same
 * sizes in the same order every time, so after its first step every request is a free-list hit and the
 * memory stops growing; what it keeps from the system is the high-water mark `top`, never given back.
 */
export class SizeClassHeap {
  /** End of the highest range ever handed out: what the memory must hold. */
  top: number;
  /** Bytes handed out and not yet freed. */
  liveBytes = 0;
  private readonly freeLists = new Map<number, number[]>();

  constructor(
    base: number,
    /** Every range starts and ends on a multiple of this (bytes). */
    readonly align: number,
    /** Called before `top` moves past what the memory holds, with the new end; throws when it cannot grow. */
    private readonly ensure: (end: number) => void = () => {},
  ) {
    this.top = base;
  }

  /** The bytes a request of `bytes` takes (at least one alignment unit). */
  size(bytes: number): number {
    return Math.max(this.align, Math.ceil(bytes / this.align) * this.align);
  }

  /** A range of `size(bytes)` bytes: a freed one of exactly that size, else fresh from the top. */
  alloc(bytes: number): number {
    bytes = this.size(bytes);
    const list = this.freeLists.get(bytes);
    this.liveBytes += bytes;
    if (list && list.length) return list.pop()!;
    const ptr = this.top, end = ptr + bytes;
    try {
      this.ensure(end);
    } catch (e) {
      this.liveBytes -= bytes;
      throw e;
    }
    this.top = end;
    return ptr;
  }

  /** Returns a range from alloc (same `bytes`) to its size's free list. */
  free(ptr: number, bytes: number): void {
    bytes = this.size(bytes);
    let list = this.freeLists.get(bytes);
    if (!list) this.freeLists.set(bytes, (list = []));
    list.push(ptr);
    this.liveBytes -= bytes;
  }
}
