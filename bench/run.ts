/**
 * Benchmark dispatcher: `npm run bench -- <name> [args…]` runs `node dist/bench/run.js <name> …`, which
 * loads dist/bench/<name>.js and calls its `main(args)` with the remaining arguments. Every file directly in
 * bench/ is one entry (helpers live in bench/lib/); `charts` is not a benchmark but draws one's --json output
 * as SVG (`npm run bench -- charts --kind ablations|decode|pooling|quant|lines --in <file> --out <file.svg>`).
 * `npm run bench -- <name> --help` prints the benchmark's header (its usage and method); a flag the
 * benchmark does not read (its `flags` export) is refused before anything runs, rather than ignored.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface BenchModule {
  main(argv: string[]): Promise<void>;
  /** Every flag main() reads. */
  flags?: string[];
}

/** The first block comment of a benchmark's compiled file: its usage and method. */
function header(name: string): string {
  const text = readFileSync(join(dirname(fileURLToPath(import.meta.url)), `${name}.js`), 'utf8');
  const m = /\/\*\*([\s\S]*?)\*\//.exec(text);
  return m ? m[1].split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n').trim() : `(no description in ${name}.js)`;
}

function available(): string[] {
  const dir = dirname(fileURLToPath(import.meta.url));
  return readdirSync(dir)
    .filter((f) => f.endsWith('.js') && f !== 'run.js')
    .map((f) => f.slice(0, -3))
    .sort();
}

async function run(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  const names = available();
  if (!name || !/^[\w-]+$/.test(name) || !names.includes(name)) {
    console.error(`usage: npm run bench -- <name> [args…]\nbenchmarks: ${names.join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const mod = (await import(`./${name}.js`)) as BenchModule;
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(header(name));
    if (mod.flags) console.log(`\nflags: ${mod.flags.join(' ')}`);
    return;
  }
  const unknown = mod.flags ? rest.filter((a) => a.startsWith('--') && !mod.flags!.includes(a)) : [];
  if (unknown.length) {
    console.error(`bench ${name}: unknown flag${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (it takes ${mod.flags!.join(' ')}; --help describes them)`);
    process.exitCode = 2;
    return;
  }
  await mod.main(rest);
}

await run();
