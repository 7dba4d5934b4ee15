/**
 * What `stlm bench` writes from its results: a markdown table, SVG charts of quality against cost,
 * latency and memory with the Pareto frontier marked (chart.ts, pareto.ts), and one self-contained HTML
 * page holding the tables and the charts (`--report <dir>`: index.html, bench.json, bench.md, *.svg).
 */
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { scatterSvg } from './chart.js';
import { paretoFrontier } from './pareto.js';
import { formatBytes } from './recommend.js';
import type { BenchResults, TaskFigures, TierMeasurement } from './types.js';

/** One column of a table: its heading and each tier's cell as text. */
interface Column {
  head: string;
  cell: (t: TierMeasurement) => string;
  /** Text columns are left-aligned, numbers right-aligned (the default). */
  align?: 'left';
}

const dash = '–';
const fixed = (x: number | null | undefined, d: number) => (x === null || x === undefined ? dash : x.toFixed(d));
const count = (x: number | null) => (x === null ? dash : x >= 1e9 ? `${(x / 1e9).toFixed(1)}B` : x >= 1e6 ? `${(x / 1e6).toFixed(1)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(0)}K` : String(x));
const speed = (x: number | null | undefined) => (x === null || x === undefined ? dash : x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const joules = (j: number) => (j >= 1 ? `${j.toPrecision(3)} J` : `${(j * 1000).toPrecision(3)} mJ`);
const money = (x: number) => (x === 0 ? '$0' : x < 0.01 ? `$${x.toPrecision(2)}` : `$${x.toFixed(2)}`);

/** Combined standard error of a mean of independent means (each task file once). */
function taskStderr(t: TaskFigures): number {
  return Math.sqrt(t.results.reduce((a, r) => a + r.accStderr ** 2, 0)) / t.results.length;
}

/** A short name for a file or folder path (its last part). */
export const shortName = (path: string) => basename(path.replace(/\/+$/, '')) || path;

function efficiencyColumns(): Column[] {
  return [
    { head: 'tier', cell: (t) => `${t.name} (${t.tier})`, align: 'left' },
    { head: 'runs as', cell: (t) => (t.provider === 'openai' ? `remote: ${t.runsOn}` : t.provider === 'llamacpp' ? 'llama.cpp' : 'stlm'), align: 'left' },
    { head: 'parameters', cell: (t) => count(t.parameters) },
    { head: 'file', cell: (t) => (t.fileBytes === null ? dash : formatBytes(t.fileBytes)) },
    { head: 'peak RSS', cell: (t) => (t.memory ? formatBytes(t.memory.peakRssBytes) : 'remote') },
    { head: 'load', cell: (t) => `${fixed(t.loadMs, t.loadMs < 10 ? 1 : 0)} ms` },
    { head: 'first token', cell: (t) => (t.speed ? `${fixed(t.speed.timeToFirstTokenMs, t.speed.timeToFirstTokenMs < 10 ? 1 : 0)} ms` : dash) },
    { head: 'prefill tok/s', cell: (t) => speed(t.speed?.prefillTokensPerS) },
    { head: 'decode tok/s', cell: (t) => speed(t.speed?.decodeTokensPerS) },
    { head: 'energy/token (est.)', cell: (t) => (t.energy?.joulesPerToken != null ? joules(t.energy.joulesPerToken) : t.provider === 'openai' ? 'remote' : dash) },
    { head: '$ / M tokens in, out', cell: (t) => (t.cost ? `${money(t.cost.promptPerMillionUsd)}, ${money(t.cost.completionPerMillionUsd)}${t.cost.source === 'energy estimate' ? ' (est.)' : ''}` : dash) },
  ];
}

function qualityColumns(r: BenchResults): Column[] {
  return [
    { head: 'tier', cell: (t) => t.name, align: 'left' },
    ...r.settings.texts.map((file) => ({ head: `bits/byte ${shortName(file)}`, cell: (t: TierMeasurement) => fixed(t.bpb.find((b) => b.text === file)?.bpb, 3) })),
    ...r.settings.tasks.map((path) => ({
      head: `acc ${shortName(path)}`,
      cell: (t: TierMeasurement) => {
        const f = t.tasks.find((x) => x.path === path);
        return f ? `${f.acc.toFixed(3)} ± ${taskStderr(f).toFixed(3)}` : dash;
      },
    })),
    ...(r.settings.tasks.length ? [{ head: 'quality (mean acc)', cell: (t: TierMeasurement) => fixed(t.quality, 3) }] : []),
  ];
}

function markdownTable(columns: Column[], tiers: TierMeasurement[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${columns.map((c) => esc(c.head)).join(' | ')} |`,
    `|${columns.map((c) => (c.align === 'left' ? '---' : '---:')).join('|')}|`,
    ...tiers.map((t) => `| ${columns.map((c) => esc(c.cell(t))).join(' | ')} |`),
  ].join('\n');
}

/** What was measured and how, in a few lines (shared by the markdown and the HTML). */
export function methodLines(r: BenchResults): string[] {
  const s = r.settings, m = r.machine;
  return [
    `${r.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpus} × ${m.cpuModel}, ${formatBytes(m.totalMemoryBytes)} memory, Node ${m.node}; load average ${m.loadAverage.map((x) => x.toFixed(2)).join(', ')}.`,
    `Speed: greedy generation of ${s.maxTokens} tokens from a ${s.prompt.length}-character prompt (cut to fit a tier's context), median of ${s.repeats} runs after a warm-up; prefill tokens/s = prompt tokens / time to first token.`,
    `Memory: peak resident set size of a child process that ran only that tier (Node and stlm's code included); a remote tier loads nothing here.`,
    `Energy per generated token is an estimate, not a measurement: CPU seconds (all threads) × ${s.wattsPerCore} W per busy core; a local tier's cost is that energy at $${s.usdPerKwh}/kWh, a remote tier's is its price.`,
    ...(s.texts.length ? [`Bits per byte: the first ${s.textBytes.toLocaleString('en-US')} bytes of the last 10% of ${s.texts.join(', ')}, scored in windows of the context, bits divided by UTF-8 bytes.`] : []),
    ...(s.tasks.length ? [`Accuracy (± standard error): ${s.tasks.join(', ')}${s.limit ? `, at most ${s.limit} items per task file${s.seed !== undefined ? ` (seeded sample, seed ${s.seed})` : ''}` : ''}, scored as lm-evaluation-harness does; a folder's accuracy is the mean over its files; quality = the mean over the task arguments.`] : []),
    ...(r.command ? [`Command: \`${r.command}\``] : []),
  ];
}

/** The results as markdown: the method, an efficiency table and a quality table. */
export function markdownReport(r: BenchResults): string {
  const notes = r.tiers.flatMap((t) => t.notes.map((n) => `- ${t.name}: ${n}`));
  return [
    methodLines(r).map((l) => `${l}`).join('\n'),
    '',
    markdownTable(efficiencyColumns(), r.tiers),
    '',
    ...(r.settings.texts.length || r.settings.tasks.length ? [markdownTable(qualityColumns(r), r.tiers), ''] : []),
    ...(notes.length ? [notes.join('\n'), ''] : []),
  ].join('\n');
}

/** The quality axis of the charts: mean task accuracy when tasks were run, else bits per byte of the first text. */
function qualityAxis(r: BenchResults): { title: string; value: (t: TierMeasurement) => number | null; yBetter: 'higher' | 'lower' } | undefined {
  if (r.settings.tasks.length) return { title: 'quality: mean accuracy on the tasks (higher is better)', value: (t) => t.quality, yBetter: 'higher' };
  const text = r.settings.texts[0];
  if (text) return { title: `bits per byte on ${shortName(text)} (lower is better)`, value: (t) => t.bpb.find((b) => b.text === text)?.bpb ?? null, yBetter: 'lower' };
  return undefined;
}

export interface ChartFile {
  /** File name (e.g. quality-latency.svg). */
  file: string;
  title: string;
  svg: string;
  /** The tiers on the Pareto frontier of this chart. */
  frontier: string[];
  /** Tiers left out (a figure not measured). */
  omitted: string[];
}

/** The three trade-off charts (quality against cost, latency, memory), each with its Pareto frontier. */
export async function tradeoffCharts(r: BenchResults): Promise<ChartFile[]> {
  const q = qualityAxis(r);
  if (!q) return [];
  const axes: { file: string; title: string; xTitle: string; x: (t: TierMeasurement) => number | null; scale: 'log' | 'symlog' }[] = [
    { file: 'quality-cost.svg', title: 'Quality against cost', xTitle: 'US dollars per million generated tokens (local: electricity, estimated)', x: (t) => t.cost?.completionPerMillionUsd ?? null, scale: 'symlog' },
    { file: 'quality-latency.svg', title: 'Quality against latency', xTitle: 'time to first token (ms)', x: (t) => t.speed?.timeToFirstTokenMs ?? null, scale: 'log' },
    { file: 'quality-memory.svg', title: 'Quality against memory', xTitle: 'peak resident memory on this machine (MB; remote tiers load nothing here)', x: (t) => (t.provider === 'openai' ? 0 : t.memory ? t.memory.peakRssBytes / 1e6 : null), scale: 'symlog' },
  ];
  const out: ChartFile[] = [];
  for (const a of axes) {
    const rows = r.tiers.flatMap((t) => {
      const x = a.x(t), y = q.value(t);
      return x === null || y === null || (a.scale === 'log' && x <= 0) ? [] : [{ x, y, label: t.name, group: t.tier }];
    });
    const omitted = r.tiers.map((t) => t.name).filter((n) => !rows.some((row) => row.label === n));
    if (!rows.length) continue;
    // A symmetric-log axis only where a value is 0 (a remote tier's memory, a free tier's cost); else a log axis.
    const scale = a.scale === 'symlog' && rows.every((row) => row.x > 0) ? 'log' : a.scale;
    const frontier = paretoFrontier(rows, { yBetter: q.yBetter });
    const svg = await scatterSvg({
      title: a.title, subtitle: [`stlm bench, ${r.date.slice(0, 10)}${omitted.length ? `; not measured: ${omitted.join(', ')}` : ''}`],
      rows, xTitle: a.xTitle, yTitle: q.title, groupTitle: 'tier', logX: scale === 'log', symlogX: scale === 'symlog',
      frontier: { labels: frontier, caption: `circled, dashed: the Pareto frontier (${frontier.join(', ')})` },
      width: 420, height: 260,
    });
    out.push({ file: a.file, title: a.title, svg, frontier, omitted });
  }
  return out;
}

const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function htmlTable(columns: Column[], tiers: TierMeasurement[], id: string): string {
  return `<table id="${id}"><thead><tr>${columns.map((c) => `<th>${html(c.head)}</th>`).join('')}</tr></thead><tbody>\n` +
    tiers.map((t) => `<tr data-tier="${html(t.name)}">${columns.map((c, i) => (i === 0 ? `<th scope="row">${html(c.cell(t))}</th>` : `<td>${html(c.cell(t))}</td>`)).join('')}</tr>`).join('\n') +
    '\n</tbody></table>';
}

/** One self-contained HTML page: the method, both tables and the charts (inline SVG). */
export function htmlReport(r: BenchResults, charts: ChartFile[], title = 'stlm bench: the tiers compared'): string {
  const notes = r.tiers.flatMap((t) => t.notes.map((n) => `<li>${html(t.name)}: ${html(n)}</li>`));
  const code = (s: string) => html(s).replace(/`([^`]+)`/g, '<code>$1</code>');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${html(title)}</title>
<style>
body { font: 14px/1.45 Helvetica, Arial, "Liberation Sans", sans-serif; margin: 24px auto; max-width: 1280px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; white-space: nowrap; }
thead th { border-bottom: 2px solid #999; font-weight: 600; } tbody th { text-align: left; font-weight: 600; }
td:nth-child(2) { text-align: left; }
.method { color: #444; font-size: 13px; } .method li { margin: 2px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; border: 1px solid #eee; } figure svg { display: block; }
code { background: #f4f4f4; padding: 0 3px; }
</style></head><body>
<h1>${html(title)}</h1>
<p>Tiers of <code>${html(r.tiersConfig)}</code>, measured on the same work on this machine.</p>
<h2>Size, speed, memory, energy</h2>
${htmlTable(efficiencyColumns(), r.tiers, 'efficiency')}
${r.settings.texts.length || r.settings.tasks.length ? `<h2>Quality</h2>\n${htmlTable(qualityColumns(r), r.tiers, 'quality')}` : ''}
${notes.length ? `<ul class="notes">${notes.join('')}</ul>` : ''}
${charts.length ? `<h2>Trade-offs</h2>\n<div class="charts">${charts.map((c) => `<figure data-chart="${html(c.file)}">${c.svg}</figure>`).join('\n')}</div>` : ''}
<h2>How it was measured</h2>
<ul class="method">${methodLines(r).map((l) => `<li>${code(l)}</li>`).join('')}</ul>
</body></html>
`;
}

/** Writes the report folder: index.html, bench.json, bench.md and the charts' SVG files. Returns the files written. */
export async function writeReport(r: BenchResults, dir: string, o: { title?: string } = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const charts = await tradeoffCharts(r);
  const files: [string, string][] = [
    ['bench.json', JSON.stringify(r, null, 2) + '\n'],
    ['bench.md', markdownReport(r)],
    ...charts.map((c): [string, string] => [c.file, c.svg.endsWith('\n') ? c.svg : `${c.svg}\n`]),
    ['index.html', htmlReport(r, charts, o.title)],
  ];
  for (const [name, text] of files) await writeFileAtomic(join(dir, name), text);
  return files.map(([name]) => join(dir, name));
}
