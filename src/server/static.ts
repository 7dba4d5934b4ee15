/**
 * The playground (web/, built by Vite into dist/playground) served by `stlm serve` at `/`. Every file is
 * sent with the headers that make the page cross-origin isolated (COOP same-origin, COEP require-corp), so
 * the engine runs threads over shared memory there. One route per built file, listed when the server
 * starts: nothing outside the folder can be asked for, and unknown URLs keep the API's 404.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

/** Where `npm run build` puts the playground: dist/playground, beside dist/src. */
export const PLAYGROUND_DIR = fileURLToPath(new URL('../../playground/', import.meta.url));

/** The headers that give a page SharedArrayBuffer (threads): it must not share a browsing context group or embed cross-origin content unasked. */
export const ISOLATION_HEADERS = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } as const;

/** Route config of the page's files: the API key guards the API, not the page that asks for it. */
export const PUBLIC = { public: true } as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
};

/** Every regular file under `dir`, as paths relative to it with '/' separators. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
}

/**
 * Registers a GET route for each file of the built playground in `dir` (`/` is index.html). Without a
 * built playground, `/` answers 404 saying how to build it.
 */
export async function registerPlayground(app: FastifyInstance, dir: string): Promise<void> {
  let files: string[];
  try {
    files = await listFiles(dir);
  } catch {
    files = [];
  }
  if (!files.includes('index.html')) {
    app.get('/', { config: PUBLIC }, async (_req, reply) => reply.code(404).type('text/plain').send(`The playground is not built (no ${join(dir, 'index.html')}): run npm run build.\n`));
    return;
  }
  for (const file of files) {
    const path = join(dir, file);
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const send = async (_req: unknown, reply: import('fastify').FastifyReply) => reply.headers(ISOLATION_HEADERS).type(type).send(await readFile(path));
    app.get(`/${file}`, { config: PUBLIC }, send);
    if (file === 'index.html') app.get('/', { config: PUBLIC }, send);
  }
}
