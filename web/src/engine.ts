/**
 * The page's side of the model worker: starts it, sends jobs, and hands each message to whoever
 * listens. The worker runs one job at a time; `busy` says whether one is running, so the tabs can
 * disable what would queue behind it.
 */
import type { FromWorker, ToWorker } from './protocol.js';

type Listener = (m: FromWorker) => void;

export class Engine {
  private readonly worker: Worker;
  private readonly listeners = new Set<Listener>();
  busy: 'load' | 'generate' | 'train' | null = null;

  constructor() {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === 'loaded' || m.type === 'generated' || m.type === 'trained' || m.type === 'error') this.busy = null;
      for (const l of this.listeners) l(m);
    };
    this.worker.onerror = (ev) => {
      this.busy = null;
      for (const l of this.listeners) l({ type: 'error', job: 'init', message: `the model worker failed: ${ev.message}` });
    };
  }

  on(l: Listener): void {
    this.listeners.add(l);
  }

  send(m: ToWorker, transfer: Transferable[] = []): void {
    if (m.type === 'load' || m.type === 'generate' || m.type === 'train') this.busy = m.type;
    this.worker.postMessage(m, transfer);
  }
}
