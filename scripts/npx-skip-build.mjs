// `prepare` runs this first: exit 0 skips the build, exit 1 lets `npm run build` run.
//
// Why: in a checkout whose package.json has a `stlm` bin, `npx stlm` (npm 7+ `npm exec`) does not run
// node_modules/.bin: it installs the checkout itself into the npx cache as a `file:` package, and
// that install runs `prepare` (the whole build, ~17 s) before the first command prints anything.
// Under `npm exec` (npx) the checkout is already built by `npm ci`/`npm install`, so the build is
// skipped when its output is there; every other command that runs `prepare` (ci, install, pack,
// publish, rebuild) still builds.
import { existsSync } from 'node:fs';

const built = existsSync(new URL('../dist/src/cli/index.js', import.meta.url));
process.exit(process.env.npm_command === 'exec' && built ? 0 : 1);
