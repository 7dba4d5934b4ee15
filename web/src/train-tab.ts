/** The Train tab: text in, a byte-level model trained in the worker with live curves and samples, a GGUF out. */
import { PRESETS } from '../../src/models/config.js';
import { drawChart, type Series } from './chart.js';
import { acceptDrops, byId, mib, numberField, showError } from './dom.js';
import type { Engine } from './engine.js';
import type { TrainSettings } from './protocol.js';

/** Presets small enough to train in a page within minutes. */
const BROWSER_PRESETS = ['nano', 'micro', 'tiny', 'small'];

export function setupTrainTab(engine: Engine, useModel: (name: string, bytes: Uint8Array) => void): void {
  const text = byId<HTMLTextAreaElement>('train-text'), status = byId('train-status'), samples = byId('samples'), chart = byId('train-chart');
  const trainButton = byId<HTMLButtonElement>('train'), stopButton = byId<HTMLButtonElement>('stop-train');
  const sampleButton = byId<HTMLButtonElement>('sample-now'), downloadButton = byId<HTMLButtonElement>('download');
  const useButton = byId<HTMLButtonElement>('generate-with-trained');
  const presetSelect = byId<HTMLSelectElement>('preset');
  for (const name of BROWSER_PRESETS) {
    const c = PRESETS[name];
    const option = new Option(`${name}: ${c.nLayers} layers, width ${c.dModel}`, name);
    presetSelect.append(option);
  }
  presetSelect.value = 'micro';
  let trained: Uint8Array | undefined;
  /** The run's losses as the trainer reported them (nats per byte), kept on the status line's data for tests and benches. */
  let losses: number[] = [];
  const loss: Series = { name: 'training loss (bits/byte)', className: 's-loss', points: [] };
  const bpb: Series = { name: 'validation bits/byte', className: 's-bpb', points: [] };
  const redraw = () => drawChart(chart, [loss, bpb], { x: 'step', y: 'bits per byte' });
  redraw();

  const refresh = () => {
    trainButton.disabled = engine.busy !== null;
    stopButton.disabled = sampleButton.disabled = engine.busy !== 'train';
    downloadButton.disabled = useButton.disabled = !trained;
  };

  const readText = async (files: File[]) => {
    try {
      text.value = (await Promise.all(files.map((f) => f.text()))).join('\n');
      showError('train-error', '');
    } catch (e) {
      showError('train-error', `Cannot read ${files.map((f) => f.name).join(', ')}: ${(e as Error).message}`);
    }
  };
  acceptDrops(byId('text-drop'), (files) => void readText(files));
  const picker = byId<HTMLInputElement>('text-file');
  picker.addEventListener('change', () => {
    if (picker.files?.length) void readText(Array.from(picker.files));
    picker.value = '';
  });

  trainButton.addEventListener('click', () => {
    let settings: TrainSettings;
    try {
      settings = {
        text: text.value, preset: presetSelect.value, minutes: numberField('minutes', { min: 0.05 }), steps: numberField('steps', { integer: true, min: 0 }),
        batch: numberField('batch', { integer: true, min: 1 }), lr: numberField('lr', { min: 0 }), seed: numberField('train-seed', { integer: true }),
        samplePrompt: byId<HTMLInputElement>('sample-prompt').value,
      };
      if (!settings.text.trim()) throw new Error('Training text: paste or drop some text first');
    } catch (e) {
      showError('train-error', (e as Error).message);
      return;
    }
    showError('train-error', '');
    loss.points = [];
    bpb.points = [];
    losses = [];
    delete status.dataset.done;
    samples.replaceChildren();
    trained = undefined;
    redraw();
    status.textContent = 'Starting…';
    engine.send({ type: 'train', settings });
    refresh();
  });
  stopButton.addEventListener('click', () => engine.send({ type: 'stop' }));
  sampleButton.addEventListener('click', () => engine.send({ type: 'sample' }));
  downloadButton.addEventListener('click', () => {
    if (!trained) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([trained as BlobPart], { type: 'application/octet-stream' }));
    a.download = `stlm-${presetSelect.value}.gguf`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  });
  useButton.addEventListener('click', () => {
    if (trained) useModel(`stlm-${presetSelect.value}.gguf (trained here)`, trained);
  });

  engine.on((m) => {
    if (m.type === 'step') {
      const s = m.step;
      loss.points.push([s.step, s.loss / Math.LN2]);
      losses.push(s.loss);
      if (s.valBpb !== undefined) bpb.points.push([s.step, s.valBpb]);
      status.textContent = `Step ${s.step} of about ${s.totalSteps} · ${Math.round(s.tokensPerSecond).toLocaleString('en-US')} tokens/s · ${s.elapsedSeconds.toFixed(0)} s · memory ${mib(s.memoryBytes)}`;
      status.dataset.step = String(s.step);
      // Redraw at most a few times a second: a chart per step would cost more than the step.
      if (s.step % 5 === 0 || s.valBpb !== undefined) redraw();
    } else if (m.type === 'sample') {
      const li = document.createElement('li');
      li.textContent = `step ${m.step}: ${m.text}`;
      samples.prepend(li);
    } else if (m.type === 'trained') {
      trained = m.gguf;
      bpb.points.push([m.steps, m.finalValBpb]);
      redraw();
      status.textContent = `${m.stopped ? 'Stopped' : 'Done'}: ${m.steps} steps in ${m.seconds.toFixed(1)} s, ${Math.round(m.tokensPerSecond).toLocaleString('en-US')} tokens/s; validation ${m.finalValBpb.toFixed(3)} bits/byte. The model is ready to download (${mib(m.gguf.length)}).`;
      status.dataset.losses = JSON.stringify(losses);
      status.dataset.done = String(m.steps);
      status.dataset.tokensPerSecond = String(m.tokensPerSecond);
    } else if (m.type === 'error' && m.job === 'train') {
      showError('train-error', `Training failed: ${m.message}`);
      status.textContent = '';
    }
    refresh();
  });
}
