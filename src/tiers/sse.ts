/**
 * Server-sent events (the `text/event-stream` format OpenAI-compatible endpoints stream in), parsed as
 * the WHATWG HTML standard's "event stream interpretation" says: UTF-8 decoded across chunk boundaries,
 * lines ended by CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next are one
 * line end), `:` comment lines (keep-alives) ignored, `data:` lines of one event joined with "\n", an
 * event dispatched by a blank line. One deviation, for servers that close the stream without the final
 * blank line: an event whose last line was complete is still dispatched at the end (an unfinished last
 * line is dropped: it is a truncated stream, which the caller reports).
 *
 * `readSse` reads a response body with an idle timeout between chunks, so a stalled stream throws
 * instead of hanging.
 */

/** One event: its data lines joined with "\n", and the `event` and `id` fields when given. */
export interface SseEvent {
  data: string;
  event?: string;
  id?: string;
}

/** An incremental parser: feed it chunks of bytes (or text), take the events each one completed. */
export class SseParser {
  private readonly decoder = new TextDecoder('utf-8');
  /** Text of the line not yet ended. */
  private line = '';
  /** The previous chunk ended in CR: an LF at the start of the next chunk belongs to that line end. */
  private afterCr = false;
  private data: string[] = [];
  private event: string | undefined;
  private id: string | undefined;
  private started = false;

  /** Feeds a chunk; returns the events it completed (possibly none). */
  push(chunk: Uint8Array | string): SseEvent[] {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.started && text.length) {
      // A byte order mark at the very start of the stream is not part of the first line.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.started = true;
    }
    if (!text) return []; // (a chunk holding only part of a UTF-8 character)
    const out: SseEvent[] = [];
    let i = 0;
    if (this.afterCr && text.startsWith('\n')) i = 1;
    this.afterCr = false;
    while (i < text.length) {
      const cr = text.indexOf('\r', i), lf = text.indexOf('\n', i);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) {
        this.line += text.slice(i);
        break;
      }
      this.line += text.slice(i, end);
      this.processLine(out);
      if (text[end] === '\r' && text[end + 1] === '\n') i = end + 2;
      else {
        // A CR as the chunk's last character: the next chunk may start with its LF.
        if (text[end] === '\r' && end + 1 === text.length) this.afterCr = true;
        i = end + 1;
      }
    }
    return out;
  }

  /**
   * Ends the stream: a pending event whose lines all ended is dispatched; an unfinished last line
   * (the stream cut mid-line) is dropped, and so is its event.
   */
  end(): SseEvent[] {
    this.line += this.decoder.decode(); // an unfinished UTF-8 sequence becomes U+FFFD
    const out: SseEvent[] = [];
    if (this.line !== '') {
      this.line = '';
      this.reset();
      return out;
    }
    this.dispatch(out);
    return out;
  }

  private processLine(out: SseEvent[]): void {
    const line = this.line;
    this.line = '';
    if (line === '') return this.dispatch(out);
    if (line.startsWith(':')) return; // a comment: keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    // 'retry' and unknown fields are ignored: a client that does not reconnect has no use for them.
  }

  private dispatch(out: SseEvent[]): void {
    if (this.data.length) {
      const e: SseEvent = { data: this.data.join('\n') };
      if (this.event !== undefined) e.event = this.event;
      if (this.id !== undefined) e.id = this.id;
      out.push(e);
    }
    this.reset();
  }

  private reset(): void {
    this.data = [];
    this.event = undefined;
  }
}

export interface ReadSseOptions {
  /** Longest wait for the next chunk, in milliseconds; then the stream is cancelled and an error thrown. */
  idleTimeoutMs: number;
  /** Named in errors (the request's URL). */
  url: string;
  /** Cancels the read: the generator throws the signal's reason. */
  signal?: AbortSignal;
}

/** The events of a response body, read with an idle timeout between chunks. */
export async function* readSse(body: ReadableStream<Uint8Array>, o: ReadSseOptions): AsyncGenerator<SseEvent, void> {
  const reader = body.getReader();
  const parser = new SseParser();
  let finished = false;
  try {
    for (;;) {
      const r = await readWithin(reader, o);
      if (r.done) break;
      for (const e of parser.push(r.value)) yield e;
    }
    finished = true;
    for (const e of parser.end()) yield e;
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/** One read, raced against the idle timer and the abort signal. */
function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, o: ReadSseOptions): Promise<ReadableStreamReadResult<Uint8Array>> {
  o.signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      cleanup();
      reject(o.signal!.reason);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`endpoint ${o.url}: the stream stalled: no data for ${formatSeconds(o.idleTimeoutMs)}`));
    }, o.idleTimeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    reader.read().then((r) => {
      cleanup();
      resolve(r);
    }, (e: unknown) => {
      cleanup();
      reject(e);
    });
  });
}

/** "30 s", "0.2 s". */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${s >= 10 ? s.toFixed(0) : String(Number(s.toFixed(2)))} s`;
}
