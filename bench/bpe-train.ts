/**
 * BPE training speed: a 4,096-token byte-level BPE vocabulary on ~10 MB of text, target under 60 s.
 *
 * The text is TinyStories (validation subset) and Tiny Shakespeare from ../shared/fixtures/corpora,
 * joined by `<|endoftext|>` (the special token) and repeated until it reaches the size asked for. The
 * repetition (cut at a line end) only lengthens the pre-tokenize/count phase: the merge phase sees the same unique
 * pre-tokens (with larger counts) as one copy would, so the output says how many copies were used.
 *
 *   npm run bench -- bpe-train [--mb 10] [--vocab 4096] [--json]
 * With --json the last stdout line is
 *   {"bytes":…,"copies":…,"vocab":…,"merges":…,"unique_pretokens":…,"count_s":…,"merge_s":…,
 *    "total_s":…,"merges_per_s":…,"under_60s":true|false}
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { countPretokens, trainBpeFromCounts } from '../src/tokenizers/bpe-train.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const SOURCES = ['corpora/tinystories/tinystories_val_subset.txt', 'corpora/tinyshakespeare/input.txt'];
const SPECIAL = '<|endoftext|>';
const TARGET_S = 60;

interface Report {
  bytes: number;
  copies: number;
  vocab: number;
  merges: number;
  unique_pretokens: number;
  count_s: number;
  merge_s: number;
  total_s: number;
  merges_per_s: number;
  under_60s: boolean;
}

function numberOption(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(argv[i + 1]);
  if (!(value > 0)) throw new Error(`${name} needs a positive number, got ${argv[i + 1]}`);
  return value;
}

/** The sources joined by the special token, repeated until `bytes` bytes, cut after the last whole line. */
function buildCorpus(bytes: number): { text: string; bytes: number; copies: number } | null {
  const paths = SOURCES.map((s) => join(FIXTURES, s));
  const absent = paths.filter((p) => !existsSync(p));
  if (absent.length) {
    console.error(`bpe-train benchmark: fixture(s) absent: ${absent.join(', ')} (see ../shared/fixtures/README.md)`);
    return null;
  }
  const texts = paths.map((p) => readFileSync(p, 'utf8'));
  const oneCopy = texts.reduce((n, t) => n + Buffer.byteLength(t) + Buffer.byteLength(SPECIAL), 0);
  const copies = Math.max(1, Math.ceil(bytes / oneCopy));
  const pieces: string[] = [];
  for (let c = 0; c < copies; c++) pieces.push(...texts);
  const encoded = Buffer.from(pieces.join(SPECIAL));
  const end = encoded.lastIndexOf(0x0a, bytes - 1) + 1 || bytes;
  const text = encoded.subarray(0, end).toString('utf8');
  return { text, bytes: end, copies: end / oneCopy };
}

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--mb', '--vocab'];

export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const mb = numberOption(argv, '--mb', 10);
  const vocabSize = numberOption(argv, '--vocab', 4096);
  const corpus = buildCorpus(mb * 1e6);
  if (!corpus) {
    process.exitCode = 1;
    return;
  }
  const { text } = corpus;
  console.log(
    `BPE training (Node ${process.version}): vocab ${vocabSize} on ${(corpus.bytes / 1e6).toFixed(2)} MB: ` +
      `${corpus.copies.toFixed(2)} copies of (TinyStories val subset + Tiny Shakespeare), joined by ${SPECIAL}`,
  );

  const t0 = performance.now();
  const counts = countPretokens(text, [SPECIAL]);
  const t1 = performance.now();
  const result = trainBpeFromCounts(counts, { vocabSize, specialTokens: [SPECIAL] });
  const t2 = performance.now();

  const report: Report = {
    bytes: corpus.bytes,
    copies: corpus.copies,
    vocab: result.vocab.length,
    merges: result.merges.length,
    unique_pretokens: counts.size,
    count_s: (t1 - t0) / 1e3,
    merge_s: (t2 - t1) / 1e3,
    total_s: (t2 - t0) / 1e3,
    merges_per_s: result.merges.length / ((t2 - t1) / 1e3),
    under_60s: (t2 - t0) / 1e3 < TARGET_S,
  };
  const decoder = new TextDecoder();
  const longest = result.vocab.reduce((a, b) => (b.length > a.length ? b : a));
  console.log(`  pre-tokenize + count: ${report.count_s.toFixed(2)} s (${counts.size} unique pre-tokens)`);
  console.log(`  merge:                ${report.merge_s.toFixed(2)} s (${report.merges} merges, ${Math.round(report.merges_per_s)} merges/s)`);
  console.log(`  total:                ${report.total_s.toFixed(2)} s — ${report.under_60s ? 'under' : 'OVER'} the ${TARGET_S} s target`);
  console.log(`  vocab ${report.vocab} tokens; longest ${JSON.stringify(decoder.decode(longest))}; last merges: ` +
    result.merges.slice(-3).map(([a, b]) => JSON.stringify(decoder.decode(a) + decoder.decode(b))).join(', '));
  if (json) console.log(JSON.stringify(report));
}
