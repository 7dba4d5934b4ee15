/**
 * Headless Chromium through playwright-core, for the browser tests, the playground's screenshots and its
 * benchmark. Debian's chromium (apt-get install chromium); `CHROMIUM` is undefined when none is installed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.html': 'text/html', '.map': 'application/json' };

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));

/** Why a browser check cannot run here, or undefined when it can. */
export const NO_CHROMIUM = CHROMIUM ? undefined : 'no Chromium installed (apt-get install chromium); the browser check is skipped';

// playwright-core's Browser, kept structural so this module needs no type import at load time.
export type Browser = Awaited<ReturnType<typeof import('playwright-core')['chromium']['launch']>>;

/** Launches headless Chromium (no sandbox, GPU, network services or first-run work). */
export async function launchChromium(): Promise<Browser> {
  if (!CHROMIUM) throw new Error(NO_CHROMIUM);
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Serves the repository's dist/ on 127.0.0.1 (any free port) for a page in Chromium, and the HTML that
 * `page(path)` returns for other paths; cross-origin isolated (COOP/COEP: shared memory, worker threads)
 * when asked. Anything else is 404.
 */
export function serveDist(page: (path: string) => string | undefined, isolated: boolean): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const headers: Record<string, string> = isolated ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const html = page(path);
    if (html !== undefined) return void res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(html);
    const file = normalize(join(ROOT, path));
    if (!file.startsWith(join(ROOT, 'dist')) || !existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })));
}
