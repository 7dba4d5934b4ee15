/**
 * A sanity check against a published number: llama2.c's README reports a validation loss of 1.2968
 * (nats per token, TinyStories validation split, its 512-token tokenizer) for stories260K. This scores
 * the fixtures' TinyStories validation subset the way llama2.c's data pipeline presents it (each story
 * stripped and started with BOS; `score('', story)` through the tier interface, so the number comes
 * from the same path as `stlm eval`) and prints the loss per token, bits per token and bits per byte.
 * llama2.c measures on 512-token windows cut across stories (every position a target, BOS too), so a
 * story here sees no earlier story; that measurement is printed too (evaluateBpb on the joined stories).
 *
 *   npm run bench -- stories260k-loss [--limit 900] [--json]
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateBpb } from '../src/eval/bpb.js';
import { LocalModel } from '../src/tiers/local.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--json', '--limit'];

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = join(ROOT, '..', 'shared', 'fixtures');
const MODEL = join(FIXTURES, 'models', 'stories260K');
const TEXT = join(FIXTURES, 'corpora', 'tinystories', 'tinystories_val_subset.txt');
/** llama2.c README (fixtures' llama2.c-doc-stories260K.md): "achieves validation loss of 1.2968". */
const PUBLISHED_LOSS = 1.2968;

export async function main(argv: string[]): Promise<void> {
  for (const p of [join(MODEL, 'stories260K.bin'), TEXT]) if (!existsSync(p)) throw new Error(`stories260k-loss: ${p} is absent (see ../shared/fixtures/README.md)`);
  const limit = Number(arg(argv, '--limit', '100000'));
  const stories = readFileSync(TEXT, 'utf8').split(/\n\s*\n/).map((s) => s.trim()).filter((s) => s !== '').slice(0, limit);
  const lm = await LocalModel.open(join(MODEL, 'stories260K.bin'), { tokenizer: join(MODEL, 'tok512.bin') });
  const ctx = lm.info().contextLength ?? 512;
  let nats = 0, tokens = 0, bytes = 0, skipped = 0;
  const t0 = performance.now();
  for (const story of stories) {
    if ((await lm.countTokens(story)) > ctx - 1) {
      skipped++; // longer than one window: llama2.c would split it; counted and reported, not scored
      continue;
    }
    const [s] = await lm.score('', [story]);
    nats -= s.logprob;
    tokens += s.tokens;
    bytes += new TextEncoder().encode(story).length;
  }
  const seconds = (performance.now() - t0) / 1000;
  // llama2.c's own measurement: every story as BOS + its tokens, all joined, cut into windows of the
  // model's context (non-overlapping here, random in llama2.c), every position a target (BOS included).
  const { model, tokenizer } = lm.handle;
  const stream = stories.flatMap((st) => Array.from(tokenizer.encode(st, { bos: true })));
  const w = evaluateBpb(model, stream, { batch: 4, seqLen: ctx }); // no tokenBytes: "bits per byte" is bits per token
  await lm.close();
  const loss = nats / tokens;
  const r = {
    stories: stories.length - skipped, skippedLongerThanContext: skipped, tokens, bytes, loss, published: PUBLISHED_LOSS, bitsPerToken: loss / Math.LN2, bitsPerByte: nats / Math.LN2 / bytes, seconds,
    llama2cWindows: { loss: w.bpb * Math.LN2, tokens: w.tokens, seqLen: ctx },
  };
  if (argv.includes('--json')) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`stories260K on ${r.stories} TinyStories validation stories (${tokens.toLocaleString('en-US')} tokens, ${bytes.toLocaleString('en-US')} bytes${skipped ? `; ${skipped} longer than ${ctx - 1} tokens left out` : ''}):`);
  console.log(`  each story from BOS (score()): loss ${loss.toFixed(4)} nats/token, ${r.bitsPerToken.toFixed(4)} bits/token, ${r.bitsPerByte.toFixed(4)} bits/byte (${seconds.toFixed(1)} s)`);
  console.log(`  llama2.c's windows (BOS + story, joined, ${ctx}-token windows, ${w.tokens.toLocaleString('en-US')} targets): loss ${r.llama2cWindows.loss.toFixed(4)} nats/token; llama2.c reports ${PUBLISHED_LOSS}`);
}
