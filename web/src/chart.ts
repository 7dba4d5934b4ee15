/** A small line chart in SVG (no library): series of (x, y) points on shared axes, redrawn on each update. */

export interface Series {
  name: string;
  /** A CSS class that sets its stroke colour (style.css). */
  className: string;
  points: [number, number][];
}

const W = 640, H = 260, PAD = { left: 48, right: 12, top: 12, bottom: 32 };
const SVG_NS = 'http://www.w3.org/2000/svg';

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Draws the series into `host` (replacing what was there), with a legend and labelled axes. */
export function drawChart(host: HTMLElement, series: Series[], labels: { x: string; y: string }): void {
  const all = series.flatMap((s) => s.points);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${labels.y} by ${labels.x}` }) as SVGSVGElement;
  if (all.length) {
    const x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(x0 + 1, ...all.map((p) => p[0]));
    const y0 = Math.min(0, ...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1])) * 1.05 || 1;
    const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: sy(y), y2: sy(y), class: 'grid' }));
      svg.append(el('text', { x: PAD.left - 6, y: sy(y) + 4, 'text-anchor': 'end', class: 'tick' }, y.toFixed(2)));
    }
    svg.append(el('text', { x: PAD.left, y: H - 8, class: 'tick' }, String(x0)));
    svg.append(el('text', { x: W - PAD.right, y: H - 8, 'text-anchor': 'end', class: 'tick' }, String(x1)));
    svg.append(el('text', { x: W / 2, y: H - 8, 'text-anchor': 'middle', class: 'tick' }, labels.x));
    for (const s of series) {
      if (!s.points.length) continue;
      svg.append(el('polyline', { points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' '), class: `series ${s.className}` }));
    }
  }
  const legend = document.createElement('p');
  legend.className = 'legend';
  for (const s of series) {
    const item = document.createElement('span');
    item.className = `key ${s.className}`;
    const last = s.points.at(-1);
    item.textContent = `${s.name}${last ? `: ${last[1].toFixed(3)}` : ''}`;
    legend.append(item);
  }
  host.replaceChildren(svg, legend);
}
