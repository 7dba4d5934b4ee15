/**
 * A sanity check against a published number: llama2.c's README reports a validation loss of 1.2968
 * (nats per token, TinyStories validation split, its 512-token tokenizer) for stories260K. This measures
 * the fixtures' TinyStories validation subset (its first `--bytes`; the file is paragraphs, with no mark
 * where one story ends and the next begins) two ways:
 * - through the tier interface (`bitsPerByteOfText`, as `stlm eval bpb --tiers` does): windows of at most
 *   511 tokens, each from BOS, cut at line breaks; loss per token, bits per token and per byte;
 * - as llama2.c measures: the text's tokens after one BOS, in 512-token windows, every position a target
 *   (evaluateBpb). llama2.c starts every story with BOS; that cannot be done here, since the boundaries
 *   are not in the file.
 *
 *   npm run bench -- stories260k-loss [--bytes 200000] [--json]
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateBpb } from '../src/eval/bpb.js';
import { bitsPerByteOfText } from '../src/eval/bpb-text.js';
import { LocalModel } from '../src/tiers/local.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--bytes', '--json'];

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = join(ROOT, '..', 'shared', 'fixtures');
const MODEL = join(FIXTURES, 'models', 'stories260K');
const TEXT = join(FIXTURES, 'corpora', 'tinystories', 'tinystories_val_subset.txt');
/** llama2.c README (fixtures' llama2.c-doc-stories260K.md): "achieves validation loss of 1.2968". */
const PUBLISHED_LOSS = 1.2968;

export async function main(argv: string[]): Promise<void> {
  for (const p of [join(MODEL, 'stories260K.bin'), TEXT]) if (!existsSync(p)) throw new Error(`stories260k-loss: ${p} is absent (see ../shared/fixtures/README.md)`);
  const maxBytes = Number(arg(argv, '--bytes', '200000'));
  const all = readFileSync(TEXT, 'utf8');
  // Whole paragraphs, up to --bytes.
  const cut = all.length <= maxBytes ? all.length : all.lastIndexOf('\n\n', maxBytes);
  const text = all.slice(0, cut > 0 ? cut : maxBytes);
  const lm = await LocalModel.open(join(MODEL, 'stories260K.bin'), { tokenizer: join(MODEL, 'tok512.bin') });
  const ctx = lm.info().contextLength ?? 512;
  const t0 = performance.now();
  const viaScore = await bitsPerByteOfText(lm, text, { windowBytes: 4 * ctx, maxTokens: ctx - 1 });
  const seconds = (performance.now() - t0) / 1000;
  const { model, tokenizer } = lm.handle;
  const ids = Array.from(tokenizer.encode(text, { bos: true }));
  const w = evaluateBpb(model, ids, { batch: 4, seqLen: ctx }); // no tokenBytes: its "bits per byte" is bits per token
  await lm.close();
  const r = {
    bytes: viaScore.bytes, published: PUBLISHED_LOSS,
    viaScore: { loss: viaScore.bitsPerToken * Math.LN2, bitsPerToken: viaScore.bitsPerToken, bitsPerByte: viaScore.bpb, tokens: viaScore.tokens, windows: viaScore.windows, seconds },
    llama2cWindows: { loss: w.bpb * Math.LN2, targets: w.tokens, seqLen: ctx },
  };
  if (argv.includes('--json')) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`stories260K on the first ${r.bytes.toLocaleString('en-US')} bytes of the TinyStories validation subset; llama2.c reports a validation loss of ${PUBLISHED_LOSS}:`);
  console.log(`  through score() (${viaScore.windows} windows from BOS): loss ${r.viaScore.loss.toFixed(4)} nats/token, ${viaScore.bitsPerToken.toFixed(4)} bits/token, ${viaScore.bpb.toFixed(4)} bits/byte (${seconds.toFixed(1)} s)`);
  console.log(`  llama2.c's way (${ctx}-token windows, ${w.tokens.toLocaleString('en-US')} targets): loss ${r.llama2cWindows.loss.toFixed(4)} nats/token`);
}
