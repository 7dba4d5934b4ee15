/**
 * The playground page: three tabs over one model worker. Threads: as many as the device has when the
 * page is cross-origin isolated (served with COOP/COEP headers, as `stlm serve` does), one otherwise;
 * `?threads=N` asks for N.
 */
import { byId } from './dom.js';
import { Engine } from './engine.js';
import { setupGenerateTab } from './generate-tab.js';
import { setupTiersTab } from './tiers-tab.js';
import { setupTrainTab } from './train-tab.js';

function setupTabs(): void {
  const tabs = Array.from(document.querySelectorAll<HTMLButtonElement>('[role=tab]'));
  const select = (tab: HTMLButtonElement) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      byId(t.getAttribute('aria-controls')!).hidden = !on;
    }
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(tab));
    // The WAI-ARIA tabs pattern: arrow keys move between tabs, Home/End to the ends.
    tab.addEventListener('keydown', (e) => {
      const next = e.key === 'ArrowRight' ? (i + 1) % tabs.length : e.key === 'ArrowLeft' ? (i - 1 + tabs.length) % tabs.length
        : e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1 : -1;
      if (next < 0) return;
      e.preventDefault();
      tabs[next].focus();
      select(tabs[next]);
    });
  });
  const wanted = tabs.find((t) => t.id === `tab-${location.hash.slice(1)}`);
  if (wanted) select(wanted);
}

setupTabs();
const engine = new Engine();
const generate = setupGenerateTab(engine);
setupTrainTab(engine, (name, bytes) => {
  byId('tab-generate').click();
  generate.loadBytes(name, bytes);
});
void setupTiersTab();

const asked = Number(new URLSearchParams(location.search).get('threads'));
const threads = self.crossOriginIsolated ? (asked >= 1 ? Math.floor(asked) : navigator.hardwareConcurrency || 1) : 1;
engine.on((m) => {
  if (m.type === 'ready') {
    const why = m.isolated ? 'cross-origin isolated: threads over shared memory' : 'not cross-origin isolated (no COOP/COEP headers): one thread';
    byId('engine-status').textContent = `Engine: WebAssembly SIMD${m.relaxedSimd ? ' (relaxed)' : ''}, ${m.threads} thread${m.threads === 1 ? '' : 's'}; ${why}.`;
    byId('engine-status').dataset.threads = String(m.threads);
    generate.loadDefault();
  } else if (m.type === 'error' && m.job === 'init') {
    byId('engine-status').textContent = `The engine could not start: ${m.message}`;
  }
});
engine.send({ type: 'init', threads });
