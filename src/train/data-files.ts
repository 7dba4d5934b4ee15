/** Training text from disk (Node): the file-system edge of `data.ts`. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { joinBytes } from '../tokenizers/tokenizer.js';

/** Reads a file, or every regular file under a folder (sorted, recursively), as one byte array. */
export function readTextData(path: string): Uint8Array {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`data: '${path}' does not exist`);
  }
  const files: string[] = [];
  const walk = (p: string) => {
    const s = statSync(p);
    if (s.isDirectory()) for (const f of readdirSync(p).sort()) {
      if (!f.startsWith('.')) walk(join(p, f));
    }
    else if (s.isFile()) files.push(p);
  };
  if (st.isDirectory()) walk(path);
  else files.push(path);
  if (!files.length) throw new Error(`data: folder '${path}' contains no files`);
  const out = joinBytes(files.map((f) => readFileSync(f)));
  if (out.length === 0) throw new Error(`data: '${path}' is empty`);
  return out;
}
