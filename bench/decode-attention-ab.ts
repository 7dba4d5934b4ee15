/**
 * Before/after of batched decode attention: this build against another build (a second checkout, e.g.
 * `git worktree add ../base <commit> && (cd ../base && npm ci)`), in one process (each build loads its own
 * native addon), calls interleaved round by round (A B, B A, …) so a busy shared host slows both alike.
 *
 *   - attentionRows: rows × n keys (every row at the same position), heads H, head size D, the kernel alone
 *     and with the step's cache writes: the base writes each row's key and value with two be.copy calls
 *     (what forwardCachedRows did), this build passes them to attentionRows (newKv) when it has that;
 *   - step: µs per decode step of a model (default the embedded models/default.gguf) at 1 and 8 sessions
 *     (decodeBatch; one session is a plain decode step), positions cycling over 17 … 80.
 *
 * Prints per case the minimum over rounds of each side (µs per call or per step), the speed-up (base / this
 * build) and the largest |difference| of the outputs (attention out, last logits).
 *
 *   npm run bench -- decode-attention-ab --base <checkout> [--rounds 15] [--threads 1] [--model models/default.gguf] [--steps 200] [--json]
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Rng } from '../src/util/rng.js';
import { arg } from './lib/torch.js';

/** The flags main() reads; bench/run.ts refuses any other. */
export const flags = ['--base', '--json', '--model', '--rounds', '--steps', '--threads'];

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

interface Build {
  name: string;
  backend: Any;
  openModel: Any;
  decodeBatch: Any;
}

async function loadBuild(root: string, name: string, threads: number): Promise<Build> {
  const mod = async (p: string) => import(pathToFileURL(resolve(root, 'dist', 'src', p)).href);
  const [wasm, open, model] = await Promise.all([mod('kernels/wasm/backend.js'), mod('io/open.js'), mod('models/model.js')]);
  const backend = await wasm.createWasmBackend({ threads });
  if (!backend.native) throw new Error(`decode-attention-ab: ${name} (${root}) runs without its native kernels; build them (npm run build:native)`);
  return { name, backend, openModel: open.openModel, decodeBatch: model.decodeBatch };
}

interface Case {
  name: string;
  /** Frees what the case allocated (run after its rounds). */
  dispose?(): void;
  /** Runs `calls` times; returns the output to compare between builds. */
  run(calls: number): Float32Array;
  /** Calls per timed run (enough to be well above the timer's resolution). */
  calls: number;
}

interface Shape { rows: number; n: number; heads: number; headDim: number }

/** attentionRows on one build: the kernel alone, and with the rows' cache writes as that build's step does them. */
function attentionCases(b: Build, s: Shape, fused: boolean): Case[] {
  const be = b.backend, { rows, n, heads, headDim: D } = s, capacity = 256, kvDim = heads * D;
  const rng = new Rng(5);
  const random = (len: number) => {
    const buf = be.alloc(len);
    be.write(buf, Float32Array.from({ length: len }, () => rng.normal()));
    return buf;
  };
  const q = random(rows * heads * D), newK = random(rows * kvDim), newV = random(rows * kvDim);
  const ks = Array.from({ length: rows }, () => random(capacity * kvDim)), vs = Array.from({ length: rows }, () => random(capacity * kvDim));
  const out = be.alloc(rows * heads * D), lse = be.alloc(rows * heads);
  const positions = Int32Array.from({ length: rows }, () => n - 1);
  const args = { heads, kvHeads: heads, headDim: D, scale: 1 / Math.sqrt(D), positions };
  const fusedArgs = { ...args, newKv: { k: newK, v: newV } };
  const calls = Math.max(50, Math.round(6e6 / (rows * n * heads * D))); // a few ms per timed run
  const label = `attentionRows ${rows}×${n} H${heads} D${D}`;
  const dispose = () => {
    for (const buf of [q, newK, newV, out, lse, ...ks, ...vs]) be.free(buf);
  };
  return [
    {
      name: `${label} kernel`, calls,
      run: (c) => {
        for (let i = 0; i < c; i++) be.attentionRows(q, ks, vs, out, lse, args);
        return be.read(out);
      },
    },
    {
      name: `${label} + writes`, calls, dispose,
      run: (c) => {
        for (let i = 0; i < c; i++) {
          if (fused) be.attentionRows(q, ks, vs, out, lse, fusedArgs);
          else {
            for (let r = 0; r < rows; r++) {
              be.copy(newK, r * kvDim, ks[r], (n - 1) * kvDim, kvDim);
              be.copy(newV, r * kvDim, vs[r], (n - 1) * kvDim, kvDim);
            }
            be.attentionRows(q, ks, vs, out, lse, args);
          }
        }
        return be.read(out);
      },
    },
  ];
}

/** decodeBatch steps of `rows` sessions of the model, positions cycling over 17 … 80 (one 17-token prompt, prefilled once). */
async function stepCase(b: Build, file: string, rows: number, steps: number): Promise<Case> {
  const h = await b.openModel(file, { backend: b.backend });
  const model = h.model, prompt = Array.from({ length: 17 }, (_, i) => 1 + ((i * 7) % 200));
  const sessions = Array.from({ length: rows }, () => model.session());
  const argmax = (l: Float32Array) => {
    let best = 0;
    for (let j = 1; j < l.length; j++) if (l[j] > l[best]) best = j;
    return best;
  };
  const first = sessions.map((s: Any) => argmax(s.reset(prompt)));
  let ids: number[] = [], last: Float32Array = new Float32Array(0);
  const restart = () => {
    for (const s of sessions) s.truncate(prompt.length);
    ids = [...first];
  };
  return {
    name: `step of ${file.split('/').pop()} × ${rows}`, calls: steps,
    dispose: () => {
      for (const s of sessions) s.dispose();
      h.dispose();
    },
    run: (c) => {
      restart();
      for (let i = 0; i < c; i++) {
        if (sessions[0].length >= prompt.length + 64) restart();
        const logits: Float32Array[] = b.decodeBatch(model, sessions, ids);
        ids = logits.map(argmax);
        last = logits[logits.length - 1];
      }
      return last;
    },
  };
}

export async function main(argv: string[]): Promise<void> {
  const baseArg = arg(argv, '--base', '');
  if (!baseArg) throw new Error('decode-attention-ab: --base <checkout> is required (a second checkout of stlm, built)');
  const baseRoot = resolve(baseArg), oursRoot = fileURLToPath(new URL('../..', import.meta.url));
  if (!existsSync(resolve(baseRoot, 'dist', 'src', 'kernels', 'wasm', 'backend.js'))) throw new Error(`decode-attention-ab: ${baseRoot}/dist does not exist (run npm ci or npm run build there)`);
  const threads = Number(arg(argv, '--threads', '1')), rounds = Number(arg(argv, '--rounds', '15')), steps = Number(arg(argv, '--steps', '200'));
  for (const [k, v, min] of [['--threads', threads, 1], ['--rounds', rounds, 3], ['--steps', steps, 1]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`decode-attention-ab: ${k} must be an integer ≥ ${min}, not '${arg(argv, k, '')}'`);
  }
  const modelFile = resolve(arg(argv, '--model', resolve(oursRoot, 'models', 'default.gguf')));
  if (!existsSync(modelFile)) throw new Error(`decode-attention-ab: the model ${modelFile} does not exist`);
  const base = await loadBuild(baseRoot, 'base', threads), ours = await loadBuild(oursRoot, 'this build', threads);

  const shapes: Shape[] = [];
  for (const rows of [1, 8]) for (const n of [17, 49, 81, 200]) shapes.push({ rows, n, heads: 4, headDim: 32 });
  for (const rows of [1, 8]) shapes.push({ rows, n: 81, heads: 8, headDim: 64 });
  // Each shape's buffers are allocated just before its rounds and freed after, so every case starts from
  // the same heap on both sides; the models are opened last.
  const pairs: (() => Promise<[Case, Case][]>)[] = [];
  for (const s of shapes) {
    pairs.push(async () => {
      const a = attentionCases(base, s, false), o = attentionCases(ours, s, true);
      return a.map((c, i) => [c, o[i]]);
    });
  }
  for (const rows of [1, 8]) pairs.push(async () => [[await stepCase(base, modelFile, rows, steps), await stepCase(ours, modelFile, rows, steps)]]);

  console.log(`base ${baseRoot} against ${oursRoot}; ${threads} thread(s), ${rounds} rounds interleaved, min per side`);
  const results = [];
  for (const make of pairs) for (const [a, o] of await make()) {
    const times: [number[], number[]] = [[], []];
    let diff = 0;
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [1, 0] : [0, 1];
      const outs: Float32Array[] = [];
      for (const side of order) {
        const c = side ? o : a;
        const t0 = performance.now();
        outs[side] = c.run(c.calls);
        times[side].push(((performance.now() - t0) * 1000) / c.calls);
      }
      for (let i = 0; i < outs[0].length; i++) diff = Math.max(diff, Math.abs(outs[0][i] - outs[1][i]));
    }
    a.dispose?.();
    o.dispose?.();
    const [bt, ot] = [Math.min(...times[0]), Math.min(...times[1])];
    results.push({ case: a.name, baseUs: bt, oursUs: ot, speedup: bt / ot, maxDiff: diff });
    console.log(`${a.name.padEnd(40)} ${bt.toFixed(2).padStart(9)} µs → ${ot.toFixed(2).padStart(9)} µs  ×${(bt / ot).toFixed(2)}  max |diff| ${diff.toExponential(1)}`);
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ base: baseRoot, threads, rounds, steps, results }));
  base.backend.dispose();
  ours.backend.dispose();
}
