/** Small DOM helpers shared by the tabs. */

/** The element with this id (the page's HTML defines every one the code asks for). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no element #${id}`);
  return el as T;
}

/** A number field's value, checked: an error names the field's label. */
export function numberField(id: string, o: { integer?: boolean; min?: number; max?: number } = {}): number {
  const input = byId<HTMLInputElement>(id);
  const v = Number(input.value);
  const label = input.closest('label')?.firstChild?.textContent?.trim() ?? id;
  if (input.value.trim() === '' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v)) || (o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) {
    const range = o.min !== undefined && o.max !== undefined ? ` between ${o.min} and ${o.max}` : o.min !== undefined ? ` of at least ${o.min}` : '';
    throw new Error(`${label}: '${input.value}' is not ${o.integer ? 'a whole number' : 'a number'}${range}`);
  }
  return v;
}

/** Shows an error line in the page (never only in the console); an empty message hides it. */
export function showError(id: string, message: string): void {
  const el = byId(id);
  el.textContent = message;
  el.hidden = message === '';
}

/** Calls `onFiles` with files dropped on `zone` (and keeps the browser from opening them). */
export function acceptDrops(zone: HTMLElement, onFiles: (files: File[]) => void): void {
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    const files = Array.from(e.dataTransfer?.files ?? []);
    if (files.length) onFiles(files);
  });
}

export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Sets a definition list's rows. */
export function setStats(dl: HTMLElement, rows: [string, string][]): void {
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt'), dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = v;
    return [dt, dd];
  }));
}
