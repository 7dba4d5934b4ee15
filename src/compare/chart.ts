/**
 * Charts as SVG, drawn by vega-lite + vega (pinned optional dependencies, imported on first use, so the
 * rest of stlm runs without them) headless in Node: a vega-lite spec is compiled to vega and rendered
 * with `renderer: 'none'` to an SVG string. No canvas package is needed; two things stand in for one:
 *   - text widths (layout, legend and axis room) come from Helvetica/Arial advance widths through vega's
 *     `textMetrics.width` hook instead of vega's fallback of 0.8 em per character, which would make every
 *     label too wide and truncate long legend entries;
 *   - point labels are placed here (vega's `label` transform needs a canvas): a first pass runs the view
 *     to get its x/y scales, then each label takes the first of a few positions around its point that
 *     overlaps no other label or point, and the second pass draws them there (with a thin line to a label
 *     that had to move a line or more away).
 *
 * Three charts: `scatterSvg` (labelled points, colour per group, optional log or symlog x, optional
 * frontier line through some points), `groupedBarsSvg` (a bar per series within each category, optional
 * log y) and `linesSvg` (y over x per series). Each validates its rows (at least one; every number finite,
 * positive on a log scale) and throws an error naming the chart, the row and the field. `writeSvg` writes
 * atomically. Used by `stlm bench` (compare/report.ts) and by the benchmarks in bench/ (bench/lib/chart.ts).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type * as VegaModule from 'vega';
import type * as VegaLiteModule from 'vega-lite';
import { writeFileAtomic } from '../util/atomic-write.js';

type Vega = typeof VegaModule;
type VegaLite = typeof VegaLiteModule;

/** What every chart has: a title, a subtitle (date, command; one string per line) and the plot size in pixels. */
export interface ChartMeta {
  title: string;
  subtitle?: string | string[];
  /** Plot area, not counting axes, legend and titles. */
  width?: number;
  height?: number;
}

export interface ScatterRow {
  x: number;
  y: number;
  /** Drawn beside the point. */
  label: string;
  /** Colour (and legend entry). */
  group: string;
}

export interface ScatterOptions extends ChartMeta {
  rows: ScatterRow[];
  /** Axis titles, with units, e.g. "parameters (count)" and "validation bits/byte". */
  xTitle: string;
  yTitle: string;
  groupTitle?: string;
  logX?: boolean;
  logY?: boolean;
  /**
   * A symmetric-log x axis (vega's symlog: linear near 0, logarithmic further out), for values that span
   * decades and include 0 (e.g. costs where local tiers cost nothing). Overrides logX.
   */
  symlogX?: boolean;
  /** d3-format strings for the axis labels (default: "~s" on a log axis, "," otherwise). */
  xFormat?: string;
  yFormat?: string;
  /** A line through these rows' points (e.g. the Pareto frontier), in x order, with a legend-free caption. */
  frontier?: { labels: string[]; caption?: string };
}

export interface BarRow {
  /** The x axis (e.g. model and type). */
  category: string;
  /** One bar per series within a category (e.g. engine). */
  series: string;
  value: number;
}

export interface GroupedBarOptions extends ChartMeta {
  rows: BarRow[];
  xTitle: string;
  yTitle: string;
  seriesTitle?: string;
  logY?: boolean;
  /** Print each bar's value at its end, formatted with this d3-format string (e.g. ",.0f", ".3f"). */
  valueFormat?: string;
  yFormat?: string;
  /** Angle of the category labels (default 0, or -35 for many or long categories). */
  labelAngle?: number;
}

export interface LineRow {
  x: number;
  y: number;
  series: string;
}

export interface LineOptions extends ChartMeta {
  rows: LineRow[];
  xTitle: string;
  yTitle: string;
  seriesTitle?: string;
  logX?: boolean;
  logY?: boolean;
  /** Mark every point (default: when no series has more than 60 points). */
  points?: boolean;
  xFormat?: string;
  yFormat?: string;
}

const FONT = 'Helvetica, Arial, "Liberation Sans", sans-serif';
const LABEL_FONT_SIZE = 10;

// Advance widths of Helvetica (= Arial) in 1/1000 em for ASCII 32..126, from the standard AFM files.
// prettier-ignore
const HELVETICA = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space ! " # $ % & ' ( ) * + , - . /
  556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0-9 : ; < = > ?
  1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ A-O
  667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P-Z [ \ ] ^ _
  333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` a-o
  556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p-z { | } ~
];

/** Estimated width in pixels of `text` in Helvetica/Arial at `fontSize` (bold about 7% wider, unknown characters 0.6 em). */
export function textWidth(text: string, fontSize: number, bold = false): number {
  let units = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    units += c >= 32 && c <= 126 ? HELVETICA[c - 32] : 600;
  }
  return (units / 1000) * fontSize * (bold ? 1.07 : 1);
}

interface TextItem {
  fontSize?: number;
  fontWeight?: string | number;
}

let libraries: Promise<{ vega: Vega; vl: VegaLite }> | undefined;

/** vega and vega-lite, imported once; a missing package is one line saying how to install it. */
function charting(): Promise<{ vega: Vega; vl: VegaLite }> {
  libraries ??= (async () => {
    let vega: Vega, vl: VegaLite;
    try {
      [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
    } catch (e) {
      throw new Error(`charts need the packages vega and vega-lite (optional dependencies of stlm; npm install vega@6.4.0 vega-lite@6.4.3): ${(e as Error).message.split('\n')[0]}`);
    }
    // vega measures text through this object when it has no canvas (vl-convert replaces `width` the same way).
    const metrics = (vega as unknown as { textMetrics?: { width: (item: TextItem, text: unknown) => number } }).textMetrics;
    if (metrics) {
      metrics.width = (item, text) => {
        const s = text == null ? '' : String(text).trim();
        const w = item.fontWeight;
        return textWidth(s, item.fontSize ?? 11, w === 'bold' || (typeof w === 'number' && w >= 600) || w === '600' || w === '700');
      };
    }
    return { vega, vl };
  })();
  return libraries;
}

/** Throws unless `rows` is a non-empty array whose `numbers` fields are finite (and positive where `positive`) and whose `strings` fields are strings. */
function validate<T extends object>(chart: string, rows: T[], numbers: { key: keyof T & string; positive?: boolean }[], strings: (keyof T & string)[]): void {
  if (!Array.isArray(rows) || rows.length === 0) throw new Error(`chart "${chart}": no rows to draw`);
  rows.forEach((row, i) => {
    const rec = row as Record<string, unknown>;
    const name = strings.map((k) => rec[k]).filter((v) => typeof v === 'string').join(' / ');
    const where = `chart "${chart}": row ${i + 1}${name ? ` (${name})` : ''}`;
    for (const k of strings) {
      if (typeof rec[k] !== 'string') throw new Error(`${where}: ${k} must be a string, got ${JSON.stringify(rec[k])}`);
    }
    for (const { key, positive } of numbers) {
      const v = rec[key];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: ${key} must be a finite number, got ${typeof v === 'number' ? String(v) : JSON.stringify(v)}`);
      if (positive && v <= 0) throw new Error(`${where}: ${key} = ${v} cannot be drawn on a log scale (must be > 0)`);
    }
  });
}

function titleOf(o: ChartMeta): Record<string, unknown> {
  const sub = o.subtitle === undefined ? undefined : Array.isArray(o.subtitle) ? o.subtitle : [o.subtitle];
  return { text: o.title, ...(sub && sub.length ? { subtitle: sub } : {}), anchor: 'start', frame: 'group', offset: 10, fontSize: 14, subtitleFontSize: 10, subtitleColor: '#555' };
}

const CONFIG = {
  font: FONT,
  background: 'white',
  padding: 8,
  axis: { labelFontSize: LABEL_FONT_SIZE, titleFontSize: 11, labelLimit: 400, titlePadding: 8 },
  legend: { labelFontSize: LABEL_FONT_SIZE, titleFontSize: 11, labelLimit: 400, symbolLimit: 60 },
  view: { stroke: '#ccc' },
};

type VgSpec = ReturnType<VegaLite['compile']>['spec'];

async function render(spec: VgSpec): Promise<string> {
  const { vega } = await charting();
  const view = new vega.View(vega.parse(spec as VegaModule.Spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

async function compile(spec: Record<string, unknown>): Promise<VgSpec> {
  const { vl } = await charting();
  return vl.compile({ $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: CONFIG, ...spec } as VegaLiteModule.TopLevelSpec).spec;
}

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

const overlap = (a: Box, b: Box) => Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0)) * Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));

interface Placement {
  dx: number;
  dy: number;
  align: 'left' | 'right' | 'center';
  baseline: 'top' | 'middle' | 'bottom';
}

/**
 * Greedy label placement in pixels: for each point (in input order) the candidate position around it with
 * the least overlap with labels already placed, every point, and the outside of the plot area; ties go to
 * the earlier candidate (right, left, above, below, diagonals, then further up or down).
 */
export function placeLabels(points: { px: number; py: number; label: string }[], width: number, height: number, fontSize = LABEL_FONT_SIZE): Placement[] {
  const r = 6, h = fontSize + 2;
  const candidates: Placement[] = [
    { dx: r, dy: 0, align: 'left', baseline: 'middle' },
    { dx: -r, dy: 0, align: 'right', baseline: 'middle' },
    { dx: 0, dy: -r, align: 'center', baseline: 'bottom' },
    { dx: 0, dy: r, align: 'center', baseline: 'top' },
    { dx: r - 2, dy: -(r - 2), align: 'left', baseline: 'bottom' },
    { dx: r - 2, dy: r - 2, align: 'left', baseline: 'top' },
    { dx: -(r - 2), dy: -(r - 2), align: 'right', baseline: 'bottom' },
    { dx: -(r - 2), dy: r - 2, align: 'right', baseline: 'top' },
  ];
  for (const k of [1, 2]) {
    for (const s of [-1, 1]) {
      candidates.push({ dx: r, dy: s * k * h, align: 'left', baseline: 'middle' }, { dx: -r, dy: s * k * h, align: 'right', baseline: 'middle' });
    }
  }
  const pointBoxes = points.map((p) => ({ x0: p.px - 4, y0: p.py - 4, x1: p.px + 4, y1: p.py + 4 }));
  const placed: Box[] = [];
  const frame = { x0: 0, y0: 0, x1: width, y1: height };
  return points.map((p) => {
    const w = textWidth(p.label, fontSize);
    let best = candidates[0], bestCost = Infinity, bestBox: Box | undefined;
    candidates.forEach((c, i) => {
      const x = p.px + c.dx, y = p.py + c.dy;
      const x0 = c.align === 'left' ? x : c.align === 'right' ? x - w : x - w / 2;
      const y0 = c.baseline === 'top' ? y : c.baseline === 'bottom' ? y - fontSize : y - fontSize / 2;
      const box = { x0, y0, x1: x0 + w, y1: y0 + fontSize };
      const area = w * fontSize;
      const outside = area - overlap(box, frame);
      let cost = i * 1e-3 + (outside / area) * 2;
      for (const b of placed) cost += (overlap(box, b) / area) * 10;
      for (const b of pointBoxes) cost += (overlap(box, b) / 64) * 5;
      if (cost < bestCost) [best, bestCost, bestBox] = [c, cost, box];
    });
    placed.push(bestBox!);
    return best;
  });
}

function findMark(spec: VgSpec, name: string): Record<string, unknown> {
  const stack: unknown[] = [spec];
  while (stack.length) {
    const node = stack.pop() as { name?: string; marks?: unknown[] };
    if (node.name === name) return node as Record<string, unknown>;
    if (Array.isArray(node.marks)) stack.push(...node.marks);
  }
  throw new Error(`internal: mark ${name} not found in the compiled chart`);
}

/** A scatter plot: one labelled point per row, coloured by group; optionally a frontier line through some of them. */
export async function scatterSvg(o: ScatterOptions): Promise<string> {
  const { vega } = await charting();
  validate(o.title, o.rows, [{ key: 'x', positive: o.logX && !o.symlogX }, { key: 'y', positive: o.logY }], ['label', 'group']);
  const width = o.width ?? 560, height = o.height ?? 320;
  const axisScale = (log: boolean | undefined, symlog?: boolean) =>
    symlog ? { type: 'symlog', constant: symlogConstant(o.rows.map((r) => r.x)), nice: false, padding: 28 }
    : log ? { type: 'log', nice: false, padding: 28 } : { zero: false, nice: true, padding: 20 };
  const frontier = o.frontier ? o.rows.filter((r) => o.frontier!.labels.includes(r.label)).sort((a, b) => a.x - b.x) : [];
  const subtitle = [...(o.subtitle === undefined ? [] : Array.isArray(o.subtitle) ? o.subtitle : [o.subtitle]), ...(o.frontier?.caption ? [o.frontier.caption] : [])];
  const make = async (values: Record<string, unknown>[], leaders: { x: number; y: number; x2: number; y2: number }[] = []) => {
    const frontierLayers = frontier.length ? [
      // The frontier as steps: from each frontier point, its quality holds until the next point (further right) improves on it.
      { name: 'frontier', data: { values: frontier.map((r) => ({ x: r.x, y: r.y })) }, mark: { type: 'line', interpolate: 'step-after', color: '#c0392b', strokeDash: [5, 3], strokeWidth: 1.25 } },
      { name: 'frontier_points', data: { values: frontier.map((r) => ({ x: r.x, y: r.y })) }, mark: { type: 'point', shape: 'circle', filled: false, size: 220, color: '#c0392b', strokeWidth: 1.5 } },
    ] : [];
    const spec = await compile({
      title: titleOf({ ...o, subtitle }),
      width,
      height,
      data: { values },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: o.xTitle, scale: axisScale(o.logX, o.symlogX), axis: { format: o.xFormat ?? (o.logX || o.symlogX ? '~s' : ','), grid: true } },
        y: { field: 'y', type: 'quantitative', title: o.yTitle, scale: axisScale(o.logY), axis: { format: o.yFormat ?? (o.logY ? '~s' : undefined) } },
      },
      layer: [
        ...frontierLayers,
        {
          name: 'points',
          mark: { type: 'point', filled: true, size: 70, opacity: 0.9 },
          encoding: { color: { field: 'group', type: 'nominal', title: o.groupTitle ?? 'group', sort: null } },
        },
        { name: 'labels', mark: { type: 'text', fontSize: LABEL_FONT_SIZE, color: '#222' }, encoding: { text: { field: 'label' } } },
      ],
    });
    const labels = findMark(spec, 'labels_marks') as { encode: { update: Record<string, unknown> } };
    Object.assign(labels.encode.update, { dx: { field: 'dx' }, dy: { field: 'dy' }, align: { field: 'align' }, baseline: { field: 'baseline' } });
    if (leaders.length) {
      // Thin lines (in pixels, drawn under the labels) from a point to its label where the label moved away.
      (spec.data ??= []).push({ name: 'label_leaders', values: leaders });
      const marks = (spec as unknown as { marks: unknown[] }).marks;
      marks.splice(Math.max(0, marks.indexOf(labels)), 0, {
        name: 'label_leaders_marks', type: 'rule', from: { data: 'label_leaders' }, interactive: false,
        encode: { update: { x: { field: 'x' }, y: { field: 'y' }, x2: { field: 'x2' }, y2: { field: 'y2' }, stroke: { value: '#888' }, strokeWidth: { value: 0.75 } } },
      });
    }
    return spec;
  };
  const base = o.rows.map((r) => ({ x: r.x, y: r.y, label: r.label, group: r.group, dx: 6, dy: 0, align: 'left', baseline: 'middle' }));
  // Pass 1: the scales, to know where each point lands.
  const view = new vega.View(vega.parse((await make(base)) as VegaModule.Spec), { renderer: 'none' });
  let places: Placement[], pixels: { px: number; py: number; label: string }[];
  try {
    await view.runAsync();
    const sx = view.scale('x') as (v: number) => number, sy = view.scale('y') as (v: number) => number;
    pixels = o.rows.map((r) => ({ px: sx(r.x), py: sy(r.y), label: r.label }));
    places = placeLabels(pixels, width, height);
  } finally {
    view.finalize();
  }
  const leaders = pixels.flatMap((p, i) => (Math.abs(places[i].dy) > LABEL_FONT_SIZE ? [{ x: p.px, y: p.py, x2: p.px + places[i].dx, y2: p.py + places[i].dy }] : []));
  return render(await make(base.map((b, i) => ({ ...b, ...places[i] })), leaders));
}

/** The symlog constant (where the axis turns from linear to logarithmic): the smallest non-zero |value|, so it sits on the log part. */
function symlogConstant(values: number[]): number {
  const nonZero = values.map(Math.abs).filter((v) => v > 0);
  return nonZero.length ? Math.min(...nonZero) : 1;
}

/** Grouped bars: one bar per series within each category. */
export async function groupedBarsSvg(o: GroupedBarOptions): Promise<string> {
  validate(o.title, o.rows, [{ key: 'value', positive: o.logY }], ['category', 'series']);
  const categories = [...new Set(o.rows.map((r) => r.category))];
  const series = [...new Set(o.rows.map((r) => r.series))];
  const bars = categories.length * series.length;
  const width = o.width ?? Math.max(360, Math.min(900, bars * 22));
  const height = o.height ?? 320;
  const longest = Math.max(...categories.map((c) => textWidth(c, LABEL_FONT_SIZE)));
  const labelAngle = o.labelAngle ?? (longest > (width / categories.length) * 0.9 ? -35 : 0);
  const enc = {
    x: { field: 'category', type: 'nominal', title: o.xTitle, sort: categories, axis: { labelAngle, labelAlign: labelAngle ? 'right' : 'center' } },
    xOffset: { field: 'series', type: 'nominal', sort: series },
    y: {
      field: 'value', type: 'quantitative', title: o.yTitle, stack: null,
      scale: o.logY ? { type: 'log', nice: true } : { zero: true, nice: true },
      axis: { format: o.yFormat ?? (o.logY ? '~s' : undefined), grid: true },
    },
  };
  const vertical = bars > 10;
  const layer: Record<string, unknown>[] = [
    { mark: { type: 'bar', tooltip: false }, encoding: { color: { field: 'series', type: 'nominal', title: o.seriesTitle ?? 'series', sort: series } } },
  ];
  if (o.valueFormat !== undefined) {
    layer.push({
      mark: vertical
        ? { type: 'text', angle: 270, align: 'left', baseline: 'middle', dx: 3, fontSize: 9, color: '#333' }
        : { type: 'text', align: 'center', baseline: 'bottom', dy: -3, fontSize: LABEL_FONT_SIZE, color: '#333' },
      encoding: { text: { field: 'value', type: 'quantitative', format: o.valueFormat } },
    });
  }
  const spec = await compile({
    title: titleOf(o), width, height,
    data: { values: o.rows.map((r) => ({ category: r.category, series: r.series, value: r.value })) },
    encoding: enc,
    layer,
  });
  return render(spec);
}

/** Lines of y over x, one per series. */
export async function linesSvg(o: LineOptions): Promise<string> {
  validate(o.title, o.rows, [{ key: 'x', positive: o.logX }, { key: 'y', positive: o.logY }], ['series']);
  const counts = new Map<string, number>();
  for (const r of o.rows) counts.set(r.series, (counts.get(r.series) ?? 0) + 1);
  const points = o.points ?? Math.max(...counts.values()) <= 60;
  const spec = await compile({
    title: titleOf(o), width: o.width ?? 560, height: o.height ?? 320,
    data: { values: o.rows.map((r) => ({ x: r.x, y: r.y, series: r.series })) },
    mark: { type: 'line', point: points ? { size: 24 } : false, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: o.xTitle, scale: o.logX ? { type: 'log' } : { zero: false }, axis: { format: o.xFormat ?? (o.logX ? '~s' : undefined) } },
      y: { field: 'y', type: 'quantitative', title: o.yTitle, scale: o.logY ? { type: 'log' } : { zero: false }, axis: { format: o.yFormat ?? (o.logY ? '~s' : undefined) } },
      color: { field: 'series', type: 'nominal', title: o.seriesTitle ?? 'series', sort: [...counts.keys()] },
      order: { field: 'x', type: 'quantitative' },
    },
  });
  return render(spec);
}

/** Writes an SVG atomically, creating its folder. */
export async function writeSvg(path: string, svg: string): Promise<void> {
  if (!svg.startsWith('<svg')) throw new Error(`${path}: not an SVG document`);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, svg.endsWith('\n') ? svg : `${svg}\n`);
}
