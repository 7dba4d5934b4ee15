/**
 * Headless Chromium through playwright-core, for the browser tests, the playground's screenshots and its
 * benchmark. Debian's chromium (apt-get install chromium); `CHROMIUM` is undefined when none is installed.
 */
import { existsSync } from 'node:fs';

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
