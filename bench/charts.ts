/**
 * Draws what a benchmark printed with --json as an SVG chart (bench/lib/chart.ts: vega-lite + vega):
 *
 *   npm run bench -- charts --kind ablations|decode|pooling|quant|lines --in <file.json> --out <file.svg>
 *     [--title T] [--subtitle S]… [--metric FIELD] [--study a,b] [--linear | --log] [--width W] [--height H]
 *     lines only: --x FIELD --y FIELD [--series FIELD]
 *
 * Kinds and the --json output they read:
 *   ablations  stlm-ablations (a JSON object per line: study, variant, params, val_bpb, …): validation
 *              bits/byte against parameters (log x unless --linear), a labelled point per variant, colour per
 *              study; --study keeps some studies (e.g. sharing).
 *   decode     decode-vs-llamacpp ({"rows":[{model, type, engine, decode_tps, prefill_tps, peak_rss_mb, …}], threads, …}):
 *              a bar per engine for each model and type; --metric decode_tps (default), prefill_tps,
 *              peak_rss_mb or decode_rss_mb; log y for speeds unless --linear.
 *   pooling    byte-pooling (an object per line: study a|b, variant, params, steps, train_seconds,
 *              train_bytes_per_s, val_bpb, gen_bytes_per_s?): a bar per model for equal steps (a) and equal
 *              time (b); --metric val_bpb (default), train_bytes_per_s or gen_bytes_per_s.
 *   quant      quant-quality (an object per line: model, data, type, bpb, delta, file_mb): a bar per type for
 *              each model and text; --metric bpb (default), delta or file_mb.
 *   lines      any rows: --y over --x, one line per --series value.
 *
 * The input may hold other lines (a table, progress): see `parseBenchOutput`. A wrapper object's `date` and
 * `command` (the transcribed files in docs/charts/data have them) become the subtitle unless --subtitle is given.
 */
import { readFileSync } from 'node:fs';
import { groupedBarsSvg, linesSvg, scatterSvg, writeSvg } from './lib/chart.js';
import { arg } from './lib/torch.js';

type Row = Record<string, unknown>;

export interface BenchOutput {
  rows: Row[];
  /** The other fields of a wrapper object ({"rows": […], threads, …}); empty for JSON lines or an array. */
  meta: Row;
}

const isObject = (v: unknown): v is Row => typeof v === 'object' && v !== null && !Array.isArray(v);

function fromValue(v: unknown): BenchOutput | undefined {
  if (Array.isArray(v)) return { rows: v.filter(isObject), meta: {} };
  if (isObject(v) && Array.isArray(v.rows)) {
    const { rows, ...meta } = v;
    return { rows: (rows as unknown[]).filter(isObject), meta };
  }
  return undefined;
}

/**
 * The rows in what a bench printed with --json, whatever else the file holds: the whole text if it is one
 * JSON document (an array of rows, an object with `rows`, or one row); else the last line that is an object
 * with `rows` or an array (decode-vs-llamacpp prints its table first and the JSON last); else every line
 * that parses as a JSON object (JSON lines: stlm-ablations, byte-pooling, quant-quality); else the text from
 * the last line that starts with '{' or '[' to the end (a pretty-printed document after a log).
 */
export function parseBenchOutput(text: string, source = 'input'): BenchOutput {
  const tryParse = (s: string): unknown => {
    try {
      return JSON.parse(s);
    } catch {
      return undefined;
    }
  };
  const whole = tryParse(text.trim());
  if (whole !== undefined) {
    const out = fromValue(whole) ?? (isObject(whole) ? { rows: [whole], meta: {} } : undefined);
    if (out) return out;
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const parsed = lines.filter((l) => l.startsWith('{') || l.startsWith('[')).map(tryParse).filter((v) => v !== undefined);
  for (let i = parsed.length - 1; i >= 0; i--) {
    const out = fromValue(parsed[i]);
    if (out) return out;
  }
  const objects = parsed.filter(isObject);
  if (objects.length) return { rows: objects, meta: {} };
  const raw = text.split(/\r?\n/);
  for (let i = raw.length - 1; i >= 0; i--) {
    if (!/^[{[]/.test(raw[i])) continue;
    const v = tryParse(raw.slice(i).join('\n'));
    const out = fromValue(v) ?? (isObject(v) ? { rows: [v], meta: {} } : undefined);
    if (out) return out;
  }
  throw new Error(`${source}: no JSON rows found (expected the --json output of a bench: JSON lines, an array, or {"rows": […]})`);
}

function num(row: Row, field: string, i: number, source: string): number {
  const v = row[field];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${source}: row ${i + 1}: ${field} is ${v === undefined ? 'missing' : JSON.stringify(v)}, not a finite number`);
  return v;
}

function str(row: Row, field: string, i: number, source: string): string {
  const v = row[field];
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new Error(`${source}: row ${i + 1}: ${field} is ${v === undefined ? 'missing' : JSON.stringify(v)}, not a string`);
}

function allArgs(argv: string[], name: string): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    if (a === name && argv[i + 1] !== undefined) out.push(argv[i + 1]);
  });
  return out;
}

const METRICS: Record<string, Record<string, { title: string; log: boolean; format: string }>> = {
  decode: {
    decode_tps: { title: 'decode (tokens/s)', log: true, format: ',.0f' },
    prefill_tps: { title: 'prefill (tokens/s)', log: true, format: ',.0f' },
    peak_rss_mb: { title: 'peak RSS (MB)', log: false, format: ',.0f' },
    decode_rss_mb: { title: 'RSS after load + decode (MB)', log: false, format: ',.0f' },
  },
  pooling: {
    val_bpb: { title: 'validation bits/byte (lower is better)', log: false, format: '.3f' },
    train_bytes_per_s: { title: 'training (bytes/s)', log: false, format: ',.0f' },
    gen_bytes_per_s: { title: 'generation (bytes/s)', log: false, format: ',.0f' },
  },
  quant: {
    bpb: { title: 'bits/byte (lower is better)', log: false, format: '.3f' },
    delta: { title: 'bits/byte change from F32', log: false, format: '+.4f' },
    file_mb: { title: 'file size (MB)', log: false, format: ',.2f' },
  },
};

function metricOf(kind: string, argv: string[], fallback: string): { field: string; title: string; log: boolean; format: string } {
  const field = arg(argv, '--metric', fallback);
  const m = METRICS[kind][field];
  if (!m) throw new Error(`--kind ${kind}: --metric must be one of ${Object.keys(METRICS[kind]).join(', ')}, not ${field}`);
  return { field, ...m };
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--height', '--in', '--kind', '--linear', '--log', '--metric', '--out', '--series', '--study', '--subtitle', '--title', '--width', '--x', '--x-title', '--y', '--y-title'];

export async function main(argv: string[]): Promise<void> {
  const kind = arg(argv, '--kind', '');
  const input = arg(argv, '--in', '');
  const output = arg(argv, '--out', '');
  if (!kind || !input || !output) {
    throw new Error('usage: npm run bench -- charts --kind ablations|decode|pooling|quant|lines --in <bench --json output> --out <file.svg> [--title T] [--subtitle S]… [--metric F] [--study S] [--linear|--log]');
  }
  const { rows: all, meta } = parseBenchOutput(readFileSync(input, 'utf8'), input);
  const subtitles = allArgs(argv, '--subtitle');
  const metaLine = [meta.date, meta.command].filter((v) => typeof v === 'string' && v).join(', ');
  const size = { width: argv.includes('--width') ? Number(arg(argv, '--width', '')) : undefined, height: argv.includes('--height') ? Number(arg(argv, '--height', '')) : undefined };
  const log = (dflt: boolean) => (argv.includes('--linear') ? false : argv.includes('--log') ? true : dflt);
  const title = (dflt: string) => arg(argv, '--title', dflt);
  const subtitle = (dflt: string[]) => (subtitles.length ? subtitles : metaLine ? [metaLine, ...dflt] : dflt);
  let svg: string;
  switch (kind) {
    case 'ablations': {
      const studies = argv.includes('--study') ? arg(argv, '--study', '').split(',') : undefined;
      const rows = all.filter((r) => !studies || studies.includes(String(r.study)));
      if (!rows.length) throw new Error(`${input}: no rows${studies ? ` of study ${studies.join(', ')}` : ''}`);
      const steps = [...new Set(rows.map((r) => r.steps).filter((s) => typeof s === 'number'))];
      const logX = log(true);
      svg = await scatterSvg({
        title: title('Validation bits/byte against parameters'),
        subtitle: subtitle(steps.length === 1 ? [`${steps[0]} training steps per variant, same data and seed`] : []),
        xTitle: `parameters (count${logX ? ', log scale' : ''})`,
        yTitle: 'validation bits/byte (lower is better)',
        groupTitle: 'study',
        logX,
        rows: rows.map((r, i) => ({ x: num(r, 'params', i, input), y: num(r, 'val_bpb', i, input), label: str(r, 'variant', i, input), group: str(r, 'study', i, input) })),
        ...size,
      });
      break;
    }
    case 'decode': {
      const m = metricOf('decode', argv, 'decode_tps');
      const logY = log(m.log);
      const threads = typeof meta.threads === 'number' ? meta.threads : undefined;
      const kv = isObject(meta.kv_cache) ? Object.entries(meta.kv_cache).map(([k, v]) => `${k} ${String(v)}`).join(', ') : '';
      const load = [meta.loadavg_before, meta.loadavg_after].map((l) => (typeof l === 'string' ? l.split(' ')[0] : '?'));
      const dflt = [
        [threads !== undefined ? `${threads} thread${threads === 1 ? '' : 's'}` : '', kv ? `KV cache: ${kv}` : '', meta.loadavg_before ? `1-minute load ${load[0]} before, ${load[1]} after` : '']
          .filter(Boolean).join('; '),
      ].filter(Boolean);
      const what = m.field.replace(/_.*/, '');
      svg = await groupedBarsSvg({
        title: title(`${what === 'decode' ? 'Decode' : what === 'prefill' ? 'Prefill' : 'Memory'}: stlm against llama.cpp${threads !== undefined ? `, ${threads} thread${threads === 1 ? '' : 's'}` : ''}`),
        subtitle: subtitle(dflt),
        xTitle: 'model and weight type',
        yTitle: `${m.title}${logY ? ', log scale' : ''}`,
        seriesTitle: 'engine',
        logY,
        valueFormat: m.format,
        rows: all.map((r, i) => ({ category: `${str(r, 'model', i, input)} ${str(r, 'type', i, input)}`, series: str(r, 'engine', i, input), value: num(r, m.field, i, input) })),
        ...size,
      });
      break;
    }
    case 'pooling': {
      const m = metricOf('pooling', argv, 'val_bpb');
      const rows = all.filter((r) => r[m.field] !== undefined);
      if (!rows.length) throw new Error(`${input}: no row has ${m.field}`);
      const studyName = (r: Row, i: number) => {
        const s = str(r, 'study', i, input);
        if (s === 'a') return `equal steps (${num(r, 'steps', i, input)})`;
        if (s === 'b') return `equal CPU time (~${Math.round(num(r, 'train_seconds', i, input) / 60)} min)`;
        return s;
      };
      svg = await groupedBarsSvg({
        title: title(m.field === 'val_bpb' ? 'Byte pooling against the flat byte model: validation bits/byte' : `Byte pooling against the flat byte model: ${m.title}`),
        subtitle: subtitle([]),
        xTitle: 'comparison',
        yTitle: `${m.title}${log(m.log) ? ', log scale' : ''}`,
        seriesTitle: 'model',
        logY: log(m.log),
        valueFormat: m.format,
        rows: rows.map((r, i) => ({ category: studyName(r, i), series: `${str(r, 'variant', i, input)}, ${num(r, 'params', i, input).toLocaleString('en-US')} params`, value: num(r, m.field, i, input) })),
        ...size,
      });
      break;
    }
    case 'quant': {
      const m = metricOf('quant', argv, 'bpb');
      svg = await groupedBarsSvg({
        title: title(`What quantization costs: ${m.title.replace(/ \(lower is better\)/, '')}`),
        subtitle: subtitle([]),
        xTitle: 'model and text',
        yTitle: `${m.title}${log(m.log) ? ', log scale' : ''}`,
        seriesTitle: 'weights',
        logY: log(m.log),
        valueFormat: m.format,
        rows: all.map((r, i) => ({ category: `${str(r, 'model', i, input)} · ${str(r, 'data', i, input)}`, series: str(r, 'type', i, input), value: num(r, m.field, i, input) })),
        ...size,
      });
      break;
    }
    case 'lines': {
      const x = arg(argv, '--x', ''), y = arg(argv, '--y', ''), series = arg(argv, '--series', '');
      if (!x || !y) throw new Error('--kind lines needs --x FIELD and --y FIELD (and optionally --series FIELD)');
      svg = await linesSvg({
        title: title(`${y} over ${x}`),
        subtitle: subtitle([]),
        xTitle: arg(argv, '--x-title', x),
        yTitle: arg(argv, '--y-title', y),
        seriesTitle: series || undefined,
        logY: argv.includes('--log'),
        rows: all.map((r, i) => ({ x: num(r, x, i, input), y: num(r, y, i, input), series: series ? str(r, series, i, input) : y })),
        ...size,
      });
      break;
    }
    default:
      throw new Error(`--kind must be ablations, decode, pooling, quant or lines, not ${kind}`);
  }
  await writeSvg(output, svg);
  console.error(`wrote ${output} (${svg.length.toLocaleString('en-US')} bytes)`);
}
