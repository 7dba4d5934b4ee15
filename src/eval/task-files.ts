/**
 * Evaluation task files, told apart by their fields, as items to score: BLiMP minimal pairs, MosaicML
 * llm-foundry's local in-context-learning formats (multiple choice, schema, language modelling) and
 * HellaSwag's paired text files (klosax/ppl_hellaswag: line i of `*_correct.txt*` and of `*_wrong.txt*`
 * are the same context with the right and a wrong ending). A folder holds every task file under it.
 *
 * Every record is checked; a bad one is an error naming the file, the line and the field, never skipped.
 * How a record becomes a context and continuations follows lm-evaluation-harness / llm-foundry:
 * - BLiMP `{sentence_good, sentence_bad}`: the empty context, the two sentences as choices, gold 0.
 * - multiple choice `{query, choices, gold}`: context `query + "\nAnswer:"`, each choice after a space
 *   (llm-foundry's `continuation_delimiter: "\nAnswer: "`, lm-evaluation-harness's ARC prompt).
 * - schema `{context_options, continuation, gold}`: the continuation after each context option (the
 *   choice is in the context, as Winograd/Winogrande score).
 * - language modelling `{context, continuation}`: right when the greedy continuation is the target (LAMBADA).
 * Context and continuation are joined with one space unless one side already has whitespace there.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export type TaskFormat = 'blimp' | 'multiple_choice' | 'schema' | 'language_modeling' | 'hellaswag';

/** One item: choices after one context, one continuation after each context, or a greedy target. */
export type TaskItem =
  | { kind: 'choice'; line: number; context: string; choices: string[]; gold: number }
  | { kind: 'schema'; line: number; contexts: string[]; continuation: string; gold: number }
  | { kind: 'greedy'; line: number; context: string; continuation: string };

export interface TaskFile {
  /** e.g. 'blimp/adjunct_island', 'arc_easy', 'hellaswag'. */
  task: string;
  /** The file the items came from (HellaSwag: the `_correct` file). */
  file: string;
  format: TaskFormat;
  items: TaskItem[];
}

/** A task file that cannot be read as one: the message names the file, the line and the field. */
export class TaskFileError extends Error {
  override name = 'TaskFileError';
}

const FORMATS = 'BLiMP {sentence_good, sentence_bad}, multiple choice {query, choices, gold}, ' +
  'schema {context_options, continuation, gold} or language modelling {context, continuation}';

/** Every task file at `path` (a file, or a folder read recursively in name order). */
export function readTasks(path: string): TaskFile[] {
  if (!existsSync(path)) throw new TaskFileError(`${path}: no such file or folder`);
  if (!statSync(path).isDirectory()) return [readTaskFile(path)];
  const out: TaskFile[] = [];
  const names = readdirSync(path).filter((n) => !n.startsWith('.')).sort();
  const wrongOfPair = new Set(names.filter((n) => isHellaswagCorrect(n)).map(wrongPartner));
  for (const name of names) {
    const p = join(path, name);
    if (statSync(p).isDirectory()) out.push(...readTasks(p));
    else if (!wrongOfPair.has(name)) out.push(readTaskFile(p));
  }
  if (!out.length) throw new TaskFileError(`${path}: the folder holds no task files`);
  return out;
}

/** One task file: JSON lines of one format, or the `_correct` (or `_wrong`) file of a HellaSwag pair. */
export function readTaskFile(file: string): TaskFile {
  const name = basename(file);
  if (isHellaswagCorrect(name)) return readHellaswag(file, join(file, '..', wrongPartner(name)));
  if (/_wrong\.txt/.test(name)) return readHellaswag(join(file, '..', name.replace(/_wrong(\.txt)/, '_correct$1')), file);
  if (!/\.jsonl?$/.test(name)) {
    throw new TaskFileError(`${file}: not a task file: expected JSON lines (.jsonl) of ${FORMATS}, or HellaSwag's paired *_correct.txt / *_wrong.txt files`);
  }
  const records = jsonLines(file);
  const format = formatOf(file, records[0]);
  const stem = name.replace(/\.jsonl?$/, '');
  const items = records.map(({ line, value }) => toItem(file, line, value, format));
  return { task: format === 'blimp' ? `blimp/${stem}` : stem, file, format, items };
}

function isHellaswagCorrect(name: string): boolean {
  return /_correct\.txt/.test(name);
}

function wrongPartner(correctName: string): string {
  return correctName.replace(/_correct(\.txt)/, '_wrong$1');
}

/** The non-blank lines of a JSON-lines file, parsed; errors name the line. */
function jsonLines(file: string): { line: number; value: Record<string, unknown> }[] {
  const out: { line: number; value: Record<string, unknown> }[] = [];
  readFileSync(file, 'utf8').split('\n').forEach((text, i) => {
    if (text.trim() === '') return; // a blank line holds no item (a trailing newline)
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new TaskFileError(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TaskFileError(`${file}:${i + 1}: expected a JSON object, got ${text.slice(0, 40)}`);
    out.push({ line: i + 1, value: value as Record<string, unknown> });
  });
  if (!out.length) throw new TaskFileError(`${file}: no items (the file is empty)`);
  return out;
}

/** The format the first record's fields name. */
function formatOf(file: string, first: { line: number; value: Record<string, unknown> }): Exclude<TaskFormat, 'hellaswag'> {
  const has = (k: string) => k in first.value;
  if (has('context_options')) return 'schema';
  if (has('query') || has('choices')) return 'multiple_choice';
  if (has('sentence_good') || has('sentence_bad')) return 'blimp';
  if (has('context') && has('continuation')) return 'language_modeling';
  const fields = Object.keys(first.value).join(', ') || 'none';
  throw new TaskFileError(`${file}:${first.line}: fields {${fields}} are no task format; expected ${FORMATS}`);
}

function toItem(file: string, line: number, r: Record<string, unknown>, format: Exclude<TaskFormat, 'hellaswag'>): TaskItem {
  const where = `${file}:${line}`;
  const str = (k: string, nonEmpty = false): string => {
    const v = r[k];
    if (typeof v !== 'string') throw new TaskFileError(`${where}: field '${k}' ${v === undefined ? 'is missing' : `must be a string, got ${JSON.stringify(v)}`} (${formatName(format)})`);
    if (nonEmpty && v === '') throw new TaskFileError(`${where}: field '${k}' is empty`);
    return v;
  };
  const strings = (k: string): string[] => {
    const v = r[k];
    if (!Array.isArray(v) || v.length < 2 || v.some((s) => typeof s !== 'string' || s === '')) {
      throw new TaskFileError(`${where}: field '${k}' ${v === undefined ? 'is missing' : 'must be a list of at least 2 non-empty strings'} (${formatName(format)})`);
    }
    return v as string[];
  };
  const gold = (n: number): number => {
    const v = r.gold;
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= n) {
      throw new TaskFileError(`${where}: field 'gold' ${v === undefined ? 'is missing' : `is ${JSON.stringify(v)}, not an index into the ${n} choices (0..${n - 1})`}`);
    }
    return v as number;
  };
  switch (format) {
    case 'blimp':
      return { kind: 'choice', line, context: '', choices: [str('sentence_good', true), str('sentence_bad', true)], gold: 0 };
    case 'multiple_choice': {
      const query = str('query'), choices = strings('choices');
      return { kind: 'choice', line, context: `${query}\nAnswer:`, choices, gold: gold(choices.length) };
    }
    case 'schema': {
      const contexts = strings('context_options');
      return { kind: 'schema', line, contexts, continuation: str('continuation', true), gold: gold(contexts.length) };
    }
    case 'language_modeling':
      return { kind: 'greedy', line, context: str('context'), continuation: str('continuation', true) };
  }
}

function formatName(f: TaskFormat): string {
  return {
    blimp: 'BLiMP: {sentence_good, sentence_bad}', multiple_choice: 'multiple choice: {query, choices, gold}',
    schema: 'schema: {context_options, continuation, gold}', language_modeling: 'language modelling: {context, continuation}', hellaswag: 'HellaSwag',
  }[f];
}

/**
 * A HellaSwag pair: line i of each file is one item's context followed by its right / a wrong ending.
 * The context is the lines' longest common prefix that ends before a space (the endings differ from
 * their first word on); the endings are the rest, without that space.
 */
function readHellaswag(correctFile: string, wrongFile: string): TaskFile {
  for (const f of [correctFile, wrongFile]) if (!existsSync(f)) throw new TaskFileError(`${f}: missing; HellaSwag needs both ${basename(correctFile)} and ${basename(wrongFile)}`);
  const lines = (f: string) => {
    const l = readFileSync(f, 'utf8').split('\n');
    if (l.length && l[l.length - 1] === '') l.pop();
    return l;
  };
  const right = lines(correctFile), wrong = lines(wrongFile);
  if (!right.length) throw new TaskFileError(`${correctFile}: no items (the file is empty)`);
  if (right.length !== wrong.length) throw new TaskFileError(`${wrongFile}: ${wrong.length} lines, but ${correctFile} has ${right.length}; the files pair line by line`);
  const items: TaskItem[] = right.map((a, i) => {
    const b = wrong[i];
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    const cut = a.lastIndexOf(' ', n - 1);
    if (a.trim() === '' || b.trim() === '') throw new TaskFileError(`${a.trim() === '' ? correctFile : wrongFile}:${i + 1}: the line is empty`);
    if (cut <= 0 || a === b) throw new TaskFileError(`${correctFile}:${i + 1}: no context before the endings (the line and ${basename(wrongFile)}:${i + 1} share no words, or are the same)`);
    const choices = [a.slice(cut + 1), b.slice(cut + 1)];
    if (choices.includes('')) throw new TaskFileError(`${choices[0] === '' ? correctFile : wrongFile}:${i + 1}: the ending is empty`);
    return { kind: 'choice', line: i + 1, context: a.slice(0, cut), choices, gold: 0 };
  });
  const task = basename(correctFile).replace(/_correct\.txt.*$/, '').replace(/_(val|test|train)$/, '');
  return { task, file: correctFile, format: 'hellaswag', items };
}

/** A continuation as it follows its context: after one space, unless either side has whitespace there. */
export function continuationAfter(context: string, continuation: string): string {
  return context === '' || /\s$/.test(context) || /^\s/.test(continuation) ? continuation : ` ${continuation}`;
}
