/**
 * Progress and Ctrl-C for the long-running commands (`stlm train`, `stlm synth`): a progress bar on a
 * terminal, plain lines otherwise (a log file, CI, a test), and an interrupt handler: Ctrl-C once asks
 * the run to finish cleanly (the caller polls `stopRequested` and saves what it has), twice exits at once.
 */
import cliProgress from 'cli-progress';

/** Writes one line to stderr (where all progress and messages go; stdout stays for results). */
export const log = (line: string): void => {
  process.stderr.write(line + '\n');
};

/** 75 -> '1m15s', 3700 -> '1h01m', non-finite -> '?'. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export interface ProgressOptions {
  /** The bar's cli-progress format: {value}, {total}, {bar} and the payload's keys, e.g. 'step {value}/{total} |{bar}| loss {loss}'. */
  barFormat: string;
  /** Logged on the first Ctrl-C (after a line break), saying what the run does now and that a second Ctrl-C quits. */
  interruptMessage: string;
  /** Plain lines at most this often unless forced (default 10 s). */
  lineIntervalMs?: number;
  /** Draw a bar (default: when stderr is a terminal). */
  tty?: boolean;
}

export interface ProgressUpdate<P extends object> {
  /** Where the run is, of `total` (steps, bytes). */
  value: number;
  total: number;
  /** The bar's fields. */
  payload: P;
  /** The plain line for output that is not a terminal (built only when printed). */
  line: () => string;
  /** Print the plain line now (the first step, the last, an evaluation), not only every lineIntervalMs. */
  force?: boolean;
  /** Nothing worth a plain line yet (the bar still moves). */
  quiet?: boolean;
}

/**
 * One run's display and interrupt state. Create it right before the run, pass `shouldStop` to the
 * engine, call `update` from its progress callback, `stop()` before printing the summary, and
 * `close()` in a finally (stops the bar, removes the SIGINT handler).
 */
export class Progress<P extends object = Record<string, string | number>> {
  private readonly bar: cliProgress.SingleBar | null;
  private readonly lineIntervalMs: number;
  private barStarted = false;
  private lastLine = 0;
  private stopped = false;
  private interrupted = false;
  private readonly onSigint: () => void;

  constructor(o: ProgressOptions) {
    this.lineIntervalMs = o.lineIntervalMs ?? 10_000;
    this.bar = (o.tty ?? process.stderr.isTTY)
      ? new cliProgress.SingleBar({ format: o.barFormat, hideCursor: true, clearOnComplete: false, barsize: 20 }, cliProgress.Presets.shades_classic)
      : null;
    this.onSigint = () => {
      if (this.interrupted) process.exit(130);
      this.interrupted = true;
      log(`\n${o.interruptMessage}`);
    };
    process.on('SIGINT', this.onSigint);
  }

  /** True after the first Ctrl-C: the run should finish its current step and save. */
  get stopRequested(): boolean {
    return this.interrupted;
  }

  /** `stopRequested` as a function, for the engines' `shouldStop` option. */
  readonly shouldStop = (): boolean => this.interrupted;

  update(u: ProgressUpdate<P>): void {
    if (this.stopped) return;
    if (this.bar) {
      // Started on the first update this run sees (a resumed run's first step is not 1).
      if (!this.barStarted) {
        this.bar.start(u.total, u.value, u.payload);
        this.barStarted = true;
      }
      this.bar.setTotal(u.total);
      this.bar.update(u.value, u.payload);
    } else if (!u.quiet && (u.force || performance.now() - this.lastLine > this.lineIntervalMs)) {
      this.lastLine = performance.now();
      log(u.line());
    }
  }

  /** Ends the bar (its last state stays on screen); later updates are ignored. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar?.stop();
  }

  /** stop(), and the SIGINT handler removed. */
  close(): void {
    this.stop();
    process.off('SIGINT', this.onSigint);
  }
}
