// The folder layers of src/ (docs/ARCHITECTURE.md): scripts/check-layers.mjs finds no import that
// points up, and it does catch one (an upward import, a cycle inside a layer) in a made-up tree.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts/check-layers.mjs');

const check = (root: string) => spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' });

test('layers: every import in src/ points down', () => {
  const r = check(ROOT);
  assert.equal(r.status, 0, r.stderr);
});

test('layers: an upward import and a cycle within a layer are reported; index.ts and unlisted folders are not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stlm-layers-'));
  const file = (path: string, text: string) => {
    mkdirSync(dirname(join(dir, 'src', path)), { recursive: true });
    writeFileSync(join(dir, 'src', path), text);
  };
  try {
    file('util/a.ts', 'export const a = 1;\n');
    file('models/config.ts', "import { a } from '../util/a.js';\nexport const c = a;\n");
    file('index.ts', "export * from './models/config.js';\n");
    file('tiers/t.ts', "import { c } from '../models/config.js';\n"); // unlisted folders sit below cli
    file('cli/main.ts', "import '../tiers/t.js';\n");
    assert.equal(check(dir).status, 0, check(dir).stderr);

    file('formats/gguf.ts', "import {\n  c,\n} from '../models/config.js';\nexport const g = () => import('../tiers/t.js');\n");
    file('generate/g.ts', "import { t } from '../train/t.js';\n");
    file('train/t.ts', "export { e } from '../eval/e.js';\n");
    file('eval/e.ts', "import { g } from '../generate/g.js';\n");
    const r = check(dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /src\/formats\/gguf\.ts: imports '\.\.\/models\/config\.js': formats\/ may not import models\//);
    assert.match(r.stderr, /src\/formats\/gguf\.ts: imports '\.\.\/tiers\/t\.js': formats\/ may not import tiers\//);
    assert.match(r.stderr, /eval\/ -> generate\/ -> train\/ -> eval\/: folders import each other in a cycle/);
    assert.doesNotMatch(r.stderr, /cli\/main|tiers\/t\.ts|index\.ts/);
    assert.match(r.stderr, /check-layers: 3 problem/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
