/**
 * Benchmark dispatcher: `npm run bench -- <name> [args…]` runs `node dist/bench/run.js <name> …`, which
 * loads dist/bench/<name>.js and calls its `main(args)` with the remaining arguments. Every file directly in
 * bench/ is one entry (helpers live in bench/lib/); `charts` is not a benchmark but draws one's --json output
 * as SVG (`npm run bench -- charts --kind ablations|decode|pooling|quant|lines --in <file> --out <file.svg>`).
 */
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

interface BenchModule {
  main(argv: string[]): Promise<void>;
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
  await mod.main(rest);
}

await run();
