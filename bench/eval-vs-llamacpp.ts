/**
 * HellaSwag through `stlm eval`'s task reader and scorer against llama.cpp's own `llama-perplexity
 * --hellaswag`, on the same GGUF and the same items, with llama.cpp's scoring rule on both sides: each
 * ending's mean log-probability per token over the tokens after the endings' common token prefix
 * (context + " " + ending, BOS first), the best mean wins, the gold ending on ties.
 *
 * The fixture's HellaSwag pairs (../shared/fixtures/eval/hellaswag-800: one right and one wrong ending per
 * item) are converted to llama-perplexity's 6-lines-per-item format (context, gold index, four endings):
 * the right ending, then the wrong one three times (llama-perplexity takes exactly four; copies of one
 * ending score the same, so the result is the two-way comparison). stlm scores the same split through
 * LocalModel.score (the tier interface `stlm eval` uses). Also printed: stlm's lm-evaluation-harness acc
 * and acc_norm on the same items.
 *
 *   npm run bench -- eval-vs-llamacpp [--model models/default.gguf] [--limit 800] [--ctx 256] [--threads 2] [--json]
 *
 * Needs llama-perplexity built once: npm run bench -- llama-tools --build.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readTasks } from '../src/eval/task-files.js';
import { argmax, evaluateTaskFiles, meanStderr, selectItems } from '../src/eval/tasks.js';
import { LocalModel } from '../src/tiers/local.js';
import { llamaToolsDir } from './lib/llama-tools.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--ctx', '--json', '--limit', '--model', '--threads'];

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HELLASWAG = join(ROOT, '..', 'shared', 'fixtures', 'eval', 'hellaswag-800');

/** llama-perplexity --hellaswag's input: per item the context, the gold index and four endings, one per line. */
export function hellaswagPerplexityText(items: readonly { context: string; choices: readonly string[]; gold: number }[]): string {
  return items.map((it) => {
    const endings = [...it.choices], filler = it.choices.find((_, j) => j !== it.gold)!;
    while (endings.length < 4) endings.push(filler);
    if (endings.length !== 4) throw new Error(`llama-perplexity takes 4 endings per item, this item has ${it.choices.length}`);
    for (const t of [it.context, ...endings]) if (/[\n\r]/.test(t)) throw new Error('a HellaSwag context or ending holds a line break');
    return [it.context, String(it.gold), ...endings].join('\n');
  }).join('\n') + '\n';
}

export async function main(argv: string[]): Promise<void> {
  const modelPath = arg(argv, '--model', join(ROOT, 'models', 'default.gguf'));
  const limit = Number(arg(argv, '--limit', '800'));
  const ctx = Number(arg(argv, '--ctx', '256'));
  const threads = Number(arg(argv, '--threads', '2'));
  const bin = join(llamaToolsDir(), 'build', 'bin', 'llama-perplexity');
  if (!existsSync(bin)) throw new Error(`eval-vs-llamacpp: ${bin} is not built (npm run bench -- llama-tools --build)`);
  if (!existsSync(HELLASWAG)) throw new Error(`eval-vs-llamacpp: ${HELLASWAG} is absent (see ../shared/fixtures/README.md)`);
  const [task] = readTasks(HELLASWAG);
  const items = selectItems(task.items.length, limit).map((i) => task.items[i]).map((it) => {
    if (it.kind !== 'choice') throw new Error('eval-vs-llamacpp: expected HellaSwag choice items');
    return it;
  });

  // stlm: lm-evaluation-harness's acc and acc_norm, then llama.cpp's rule on llama.cpp's split.
  const lm = await LocalModel.open(modelPath);
  const t0 = performance.now();
  const [h] = await evaluateTaskFiles(lm, [{ ...task, items }]);
  const tok = lm.handle.tokenizer, bos = lm.handle.addBos;
  const right: number[] = [];
  for (const it of items) {
    // Token ids of context + " " + ending as llama-perplexity makes them; their common prefix is the context.
    const seqs = it.choices.map((c) => Array.from(tok.encode(`${it.context} ${c}`, { bos })));
    let p = 0;
    while (seqs.every((s) => p < s.length - 1 && s[p] === seqs[0][p])) p++;
    const text = (ids: number[]) => new TextDecoder().decode(tok.decode(ids.filter((id) => id !== tok.bos)));
    const context = text(seqs[0].slice(0, p));
    const scores = await lm.score(context, seqs.map((s) => text(s).slice(context.length)));
    scores.forEach((s, j) => {
      if (s.tokens !== seqs[j].length - p) throw new Error(`eval-vs-llamacpp: item ${it.line}: stlm scored ${s.tokens} tokens of ending ${j}, llama.cpp ${seqs[j].length - p}`);
    });
    right.push(argmax(scores.map((s) => s.logprob / s.tokens)) === it.gold ? 1 : 0);
  }
  const stlmSeconds = (performance.now() - t0) / 1000;
  await lm.close();
  const ours = meanStderr(right);

  // llama.cpp: llama-perplexity --hellaswag on the converted items.
  const dir = mkdtempSync(join(tmpdir(), 'stlm-hellaswag-'));
  let out: string;
  const t1 = performance.now();
  try {
    const file = join(dir, 'hellaswag.txt');
    writeFileSync(file, hellaswagPerplexityText(items));
    out = execFileSync(bin, ['-m', modelPath, '-f', file, '--hellaswag', '--hellaswag-tasks', String(items.length), '-c', String(ctx), '-t', String(threads), '-b', '2048'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const llamaSeconds = (performance.now() - t1) / 1000;
  const last = [...out.matchAll(/^(\d+)\t([\d.]+)%\t/gm)].pop();
  if (!last || Number(last[1]) !== items.length) throw new Error(`eval-vs-llamacpp: llama-perplexity printed no accuracy over ${items.length} tasks:\n${out.slice(-2000)}`);
  const llama = Number(last[2]) / 100;
  const agree = Math.abs(llama - ours.mean) * items.length < 0.5;
  const r = {
    model: modelPath, items: items.length,
    rule: 'mean log-probability per token after the endings\' common token prefix (llama-perplexity --hellaswag)',
    stlm: { acc: ours.mean, stderr: ours.stderr, seconds: stlmSeconds }, llamaPerplexity: { acc: llama, seconds: llamaSeconds },
    sameCount: agree, lmEvalHarness: { acc: h.acc, accStderr: h.accStderr, accNorm: h.accNorm, accNormStderr: h.accNormStderr },
  };
  if (argv.includes('--json')) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`HellaSwag (${HELLASWAG.split('/').pop()}, ${items.length} items, right vs one wrong ending) on ${modelPath}`);
  console.log(`  llama.cpp's rule: stlm ${(ours.mean * 100).toFixed(2)}% (${right.reduce((a, b) => a + b, 0)}/${items.length}, ±${(ours.stderr * 100).toFixed(2)}), llama-perplexity ${(llama * 100).toFixed(2)}%: ${agree ? 'the same count' : 'DIFFERENT'}`);
  console.log(`  lm-evaluation-harness rules (stlm): acc ${(h.acc * 100).toFixed(2)} ± ${(h.accStderr * 100).toFixed(2)}, acc_norm ${(h.accNorm! * 100).toFixed(2)} ± ${(h.accNormStderr! * 100).toFixed(2)}`);
  console.log(`  seconds: stlm ${stlmSeconds.toFixed(1)} (three scorings), llama-perplexity ${llamaSeconds.toFixed(1)} (with its model load)`);
}
