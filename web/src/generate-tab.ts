/** The Generate tab: pick a model (the embedded one, a dropped or picked file), sample from it, streaming. */
import defaultModelUrl from '../../models/default.gguf?url';
import { acceptDrops, byId, mib, numberField, setStats, showError } from './dom.js';
import type { Engine } from './engine.js';
import type { DroppedFile, SamplingSettings } from './protocol.js';

/** Files larger than this are refused before reading: WebAssembly memory stops at 4 GiB per page. */
const MAX_MODEL_BYTES = 3.5 * 2 ** 30;

export function setupGenerateTab(engine: Engine): { loadDefault(): void; loadBytes(name: string, bytes: Uint8Array): void } {
  const status = byId('model-status'), output = byId('generate-output'), stats = byId('generate-stats');
  const generateButton = byId<HTMLButtonElement>('generate'), stopButton = byId<HTMLButtonElement>('stop-generate');
  let modelReady = false, hadModel = false, modelLine = '';

  const refresh = () => {
    generateButton.disabled = !modelReady || engine.busy !== null;
    stopButton.disabled = engine.busy !== 'generate';
  };

  const load = (what: string, send: () => void) => {
    showError('generate-error', '');
    hadModel = modelReady || hadModel;
    modelReady = false;
    status.textContent = `Loading ${what}…`;
    send();
    refresh();
  };
  const loadDefault = () => load('the embedded model', () => engine.send({ type: 'load', url: defaultModelUrl, name: 'default.gguf (embedded)' }));
  const loadFiles = async (files: File[]) => {
    const big = files.find((f) => f.size > MAX_MODEL_BYTES);
    if (big) {
      showError('generate-error', `${big.name} is ${mib(big.size)}: too big for this page's memory (WebAssembly stops at 4 GiB); run it with stlm generate instead`);
      return;
    }
    let dropped: DroppedFile[];
    try {
      dropped = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
    } catch (e) {
      showError('generate-error', `Cannot read ${files.map((f) => f.name).join(', ')}: ${(e as Error).message} (too big for this page's memory?)`);
      return;
    }
    load(files.map((f) => f.name).join(' + '), () => engine.send({ type: 'load', files: dropped }, dropped.map((f) => f.bytes.buffer)));
  };
  const loadBytes = (name: string, bytes: Uint8Array) => load(name, () => engine.send({ type: 'load', files: [{ name, bytes: bytes.slice() }] }));

  acceptDrops(byId('drop-zone'), (files) => void loadFiles(files));
  const picker = byId<HTMLInputElement>('model-file');
  picker.addEventListener('change', () => {
    if (picker.files?.length) void loadFiles(Array.from(picker.files));
    picker.value = '';
  });
  byId('use-default').addEventListener('click', loadDefault);

  generateButton.addEventListener('click', () => {
    let sampling: SamplingSettings;
    try {
      sampling = {
        temperature: numberField('temperature', { min: 0 }), topK: numberField('top-k', { integer: true, min: 0 }),
        topP: numberField('top-p', { min: 0, max: 1 }), minP: numberField('min-p', { min: 0, max: 1 }),
        repetitionPenalty: numberField('repeat-penalty', { min: 0 }), seed: numberField('seed', { integer: true }),
        maxTokens: numberField('max-tokens', { integer: true, min: 0 }),
        stop: byId<HTMLInputElement>('stop-strings').value.split(',').map((s) => s.trim()).filter(Boolean),
      };
    } catch (e) {
      showError('generate-error', (e as Error).message);
      return;
    }
    showError('generate-error', '');
    const prompt = byId<HTMLTextAreaElement>('prompt').value;
    output.textContent = '';
    output.removeAttribute('data-tokens');
    const promptSpan = document.createElement('span');
    promptSpan.className = 'prompt-echo';
    promptSpan.textContent = prompt;
    output.append(promptSpan);
    setStats(stats, []);
    engine.send({ type: 'generate', prompt, sampling });
    refresh();
  });
  stopButton.addEventListener('click', () => engine.send({ type: 'stop' }));

  engine.on((m) => {
    if (m.type === 'loaded') {
      modelReady = true;
      const i = m.info;
      status.textContent = modelLine = `Model: ${i.name} (${i.format}, ${i.architecture}, ${i.parameters.toLocaleString('en-US')} parameters, vocabulary ${i.vocabSize}, context ${i.ctx}); memory ${mib(m.memoryBytes)}`;
    } else if (m.type === 'text') {
      output.append(m.text);
    } else if (m.type === 'generated') {
      const s = m.stats;
      output.dataset.tokens = s.tokens.join(',');
      setStats(stats, [
        ['Tokens', String(s.tokens.length)],
        ['Tokens/s', s.tokensPerSecond.toFixed(1)],
        ['Time to first token', `${s.timeToFirstTokenMs.toFixed(0)} ms`],
        ['Memory used', mib(s.memoryBytes)],
        ['Finished', s.stopped ? 'stopped' : s.finishReason],
      ]);
      stats.dataset.tokensPerSecond = String(s.tokensPerSecond);
    } else if (m.type === 'error' && (m.job === 'load' || m.job === 'generate')) {
      showError('generate-error', m.job === 'load' ? `Cannot open the model: ${m.message}` : m.message);
      // A failed load leaves the model before it in use (the worker opens the new one first).
      if (m.job === 'load') status.textContent = hadModel ? modelLine : 'No model loaded.';
      modelReady = m.job === 'generate' || hadModel;
    }
    refresh();
  });
  return { loadDefault, loadBytes };
}
