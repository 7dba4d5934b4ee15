/**
 * Prompt/completion fine-tuning data: JSONL files of `{"prompt": "...", "completion": "..."}` lines,
 * tokenized into [BOS] prompt completion [EOS] sequences, and padded batches whose targets are −1
 * (ignored by the loss) everywhere but on the completion, so training and evaluation measure only
 * what the model is asked to produce.
 */
import { readFileSync } from 'node:fs';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export interface CompletionExample {
  prompt: string;
  completion: string;
  /** 1-based line of the file it came from (for error messages). */
  line: number;
}

/** One example as tokens: the first `promptLength` are context (BOS and prompt), the rest are trained on. */
export interface TokenizedExample {
  tokens: Int32Array;
  promptLength: number;
  line: number;
}

/** Parses JSONL text; errors name the file and the line. Blank lines are skipped. */
export function parseJsonl(text: string, fileName: string): CompletionExample[] {
  const out: CompletionExample[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const at = `${fileName}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${at}: invalid JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${at}: expected an object {"prompt": ..., "completion": ...}, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
    const o = v as Record<string, unknown>;
    for (const k of ['prompt', 'completion']) {
      if (!(k in o)) throw new Error(`${at}: missing field "${k}"`);
      if (typeof o[k] !== 'string') throw new Error(`${at}: field "${k}" must be a string, got ${o[k] === null ? 'null' : typeof o[k]}`);
    }
    out.push({ prompt: o.prompt as string, completion: o.completion as string, line: i + 1 });
  }
  if (!out.length) throw new Error(`${fileName}: no examples (the file is empty)`);
  return out;
}

/** Reads and parses a JSONL file. */
export function readJsonl(path: string): CompletionExample[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read data file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseJsonl(text, path);
}

export interface TokenizeOptions {
  /** The model context: a sequence of n tokens trains n−1 positions, which must fit. */
  ctx: number;
  /** Prepend BOS (the vocabulary's add_bos_token). */
  bos: boolean;
  /** Names the file in messages. */
  fileName: string;
  /** Told once how many examples were truncated. */
  log?: (line: string) => void;
}

/**
 * Tokenizes examples: [BOS] prompt completion [EOS] (EOS when the tokenizer has one). An example longer
 * than the context loses tokens from the left of its prompt (BOS stays); one whose completion alone
 * does not fit is an error naming its line.
 */
export function tokenizeExamples(examples: CompletionExample[], tok: Tokenizer, o: TokenizeOptions): TokenizedExample[] {
  const bos = o.bos && tok.bos !== null ? [tok.bos] : [];
  const eos = tok.eos !== null ? [tok.eos] : [];
  let truncated = 0, firstTruncated = 0;
  const out = examples.map((ex): TokenizedExample => {
    const at = `${o.fileName}:${ex.line}`;
    let prompt = Array.from(tok.encode(ex.prompt));
    const completion = [...tok.encode(ex.completion), ...eos];
    if (!completion.length) throw new Error(`${at}: the completion is empty and the tokenizer has no EOS: nothing to train on`);
    if (!bos.length && !prompt.length) throw new Error(`${at}: the prompt is empty and the tokenizer has no BOS: nothing precedes the first completion token`);
    // Positions trained = tokens − 1; the completion needs one context token before it.
    if (completion.length > o.ctx) throw new Error(`${at}: the completion is ${completion.length} tokens${eos.length ? ' with EOS' : ''}, more than the model context of ${o.ctx}`);
    const excess = bos.length + prompt.length + completion.length - 1 - o.ctx;
    if (excess > 0) {
      prompt = prompt.slice(excess);
      if (!truncated++) firstTruncated = ex.line;
    }
    const tokens = Int32Array.from([...bos, ...prompt, ...completion]);
    return { tokens, promptLength: bos.length + prompt.length, line: ex.line };
  });
  if (truncated) o.log?.(`${o.fileName}: ${truncated} example${truncated > 1 ? 's' : ''} longer than the context of ${o.ctx} tokens had the start of the prompt cut (first at line ${firstTruncated})`);
  return out;
}

/** A padded batch: ids and targets [batch · seqLen], targets −1 on prompts and padding. */
/**
 * A JSONL file's examples tokenized for a model: its tokenizer, its context, BOS as its vocabulary
 * says (add_bos_token).
 */
export function loadExamples(path: string, model: { tokenizer: Tokenizer; config: { ctx: number }; vocab: { addBos?: boolean } }, log?: (line: string) => void): TokenizedExample[] {
  return tokenizeExamples(readJsonl(path), model.tokenizer, { ctx: model.config.ctx, bos: model.vocab.addBos ?? false, fileName: path, log });
}

export interface CompletionBatch {
  ids: Int32Array;
  targets: Int32Array;
  batch: number;
  seqLen: number;
}

/**
 * The length a sequence of n positions is padded to: the next of 8, 12, 16, 24, 32, 48, ... (powers of
 * two and 1.5×), at most `cap`. The backend pools buffers by exact size, so every new batch shape costs
 * a new step's worth of memory that is kept for reuse; a few shapes bound that, at ≤ 1.5× padding.
 */
export function paddedLength(n: number, cap: number): number {
  let len = 8;
  while (len < n) len = (len & (len - 1)) === 0 ? len + len / 2 : (len / 3) * 4;
  return Math.max(n, Math.min(len, cap));
}

/**
 * Lays examples out row by row, padded on the right (causal attention never looks right, so padding
 * cannot change the real positions) to paddedLength(longest, ctx) and to `rows` rows (default: one per
 * example) so that batch shapes repeat. Position t predicts token t+1, a target only inside the completion.
 */
export function completionBatch(examples: readonly TokenizedExample[], o: { padId: number; ctx: number; rows?: number }): CompletionBatch {
  const batch = o.rows ?? examples.length;
  if (!examples.length || batch < examples.length) throw new Error(`completionBatch: ${examples.length} examples for ${batch} rows`);
  const seqLen = paddedLength(Math.max(...examples.map((e) => e.tokens.length - 1)), o.ctx);
  const ids = new Int32Array(batch * seqLen).fill(o.padId);
  const targets = new Int32Array(batch * seqLen).fill(-1);
  examples.forEach((e, b) => {
    const n = e.tokens.length, row = b * seqLen;
    for (let t = 0; t < n - 1; t++) {
      ids[row + t] = e.tokens[t];
      if (t + 1 >= e.promptLength) targets[row + t] = e.tokens[t + 1];
    }
  });
  return { ids, targets, batch, seqLen };
}
