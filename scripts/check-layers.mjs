#!/usr/bin/env node
// Checks that src/ folders import only from folders below them (docs/ARCHITECTURE.md, "Layers").
// Every relative import (`import ... from '../<folder>/...'`, `export ... from`, `import('...')`) in
// src/**/*.ts is resolved to its folder; a folder may import itself and folders lower in LAYERS, never
// one above it, and the folders of one layer (one row of LAYERS) not each other in a cycle.
// Folders not listed sit between `interop` and `cli`; src/index.ts may import anything.
// Usage: node scripts/check-layers.mjs [root]   (exit 1 and one line per violation)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom to top; folders in one inner array share a layer. Edit here. */
export const LAYERS = [
  ['util'],
  ['dtypes'],
  ['formats'],
  ['kernels'],
  ['tensor'],
  ['nn'],
  ['tokenizers'],
  ['models'],
  ['io'],
  ['generate', 'eval', 'train'],
  ['interop'],
  ['tiers'],
  ['compare'],
  ['server'],
  // Folders not listed above go here.
  ['cli'],
];

/** Imports allowed although they point up, each with why and until when. "from-file -> to-folder". */
/** Imports allowed against the order, as 'folder/file.ts -> folder' (none today; each needs a comment saying why). */
export const ALLOWED = new Set([]);

function rankOf(folder) {
  const i = LAYERS.findIndex((row) => row.includes(folder));
  if (i >= 0) return i;
  return LAYERS.findIndex((row) => row.includes('cli')) - 0.5; // unlisted: between interop and cli
}

function tsFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name === 'assembly' || name === 'generated' || name === 'node_modules') continue;
      out.push(...tsFiles(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative module specifiers a TypeScript source imports or re-exports (static and dynamic). */
export function importsOf(text) {
  const specs = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm;
  for (let m; (m = re.exec(text)); ) specs.push(m[2]);
  return specs;
}

/** The problems in `srcDir` (its .ts files), one line each naming the file and the import; none when the layers hold. */
export function checkLayers(srcDir) {
  const problems = [];
  const edges = new Map(); // folder -> Map(folder -> first "file imports spec")
  for (const file of tsFiles(srcDir)) {
    const rel = relative(srcDir, file).split(sep).join('/');
    const from = rel.split('/')[0];
    if (!rel.includes('/')) continue; // src/index.ts (and any other root file) may import anything
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const target = relative(srcDir, resolve(dirname(file), spec)).split(sep).join('/');
      if (target.startsWith('..')) continue; // outside src/
      const to = target.split('/')[0];
      if (to === from || !target.includes('/')) continue;
      const where = `src/${rel}: imports '${spec}'`;
      if (!edges.has(from)) edges.set(from, new Map());
      if (!edges.get(from).has(to)) edges.get(from).set(to, where);
      if (rankOf(to) > rankOf(from) && !ALLOWED.has(`${rel} -> ${to}`)) {
        problems.push(`${where}: ${from}/ may not import ${to}/, a layer above it`);
      }
    }
  }
  // Folders of one layer may import each other, but not in a cycle (an upward import is reported above).
  const sameLayer = (a) => [...(edges.get(a)?.keys() ?? [])].filter((b) => rankOf(b) === rankOf(a)).sort();
  const state = new Map(); // folder -> 'open' | 'done'
  const visit = (a, path) => {
    state.set(a, 'open');
    for (const b of sameLayer(a)) {
      if (state.get(b) === 'open') {
        const cycle = [...path.slice(path.indexOf(b)), b];
        const steps = cycle.slice(0, -1).map((x, i) => edges.get(x).get(cycle[i + 1]));
        problems.push(`${cycle.join('/ -> ')}/: folders import each other in a cycle (${steps.join('; ')})`);
      } else if (!state.has(b)) visit(b, [...path, b]);
    }
    state.set(a, 'done');
  };
  for (const a of [...edges.keys()].sort()) if (!state.has(a)) visit(a, [a]);
  return problems;
}

function layerText() {
  return LAYERS.map((row) => row.join(' / ')).join(' → ');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const problems = checkLayers(join(root, 'src'));
  for (const p of problems) console.error(p);
  if (problems.length) {
    console.error(`check-layers: ${problems.length} problem(s); the layers, bottom to top: ${layerText()}`);
    process.exit(1);
  }
  console.log(`check-layers: src/ imports point down (${layerText()})`);
}
