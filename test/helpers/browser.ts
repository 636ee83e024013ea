/**
 * Real-browser test harness: Debian's Chromium (never a downloaded browser) driven by
 * playwright-core, with a fake camera and microphone, loopback ICE allowed, and a fresh profile
 * directory that is removed on close. Also builds the pages into a temporary web root and serves
 * static files for tests that do not need the whole mesh.
 */
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { buildWeb } from '../../src/client/build.ts';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  // Background tabs throttle timers, which would slow every page but the focused one.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * True when the browser tests can run. Without Chromium they skip, except under CI=true where a
 * missing browser must fail the run (the README promises these tests run in CI).
 */
export function chromiumPresent(): boolean {
  return existsSync(CHROMIUM_PATH);
}
export const skipBrowserTests = !chromiumPresent() && process.env.CI !== 'true';

export interface BrowserHarness {
  context: BrowserContext;
  /** Open a page that records its console errors into `errors` (for failure messages). */
  newPage(): Promise<Page>;
  /** Console lines from every page, newest last (bounded). */
  consoleLines: string[];
  /** Close every page, the browser, and remove the profile. Idempotent; never throws. */
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<BrowserHarness> {
  if (!chromiumPresent()) {
    throw new Error(`Chromium not found at ${CHROMIUM_PATH}: install the Debian package (apt-get install chromium) or set CHROMIUM_PATH`);
  }
  const profile = await mkdtemp(join(tmpdir(), 'canopy-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1200, height: 820 },
      timeout: 20_000,
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  const consoleLines: string[] = [];
  const record = (line: string): void => {
    consoleLines.push(line);
    if (consoleLines.length > 400) consoleLines.shift();
  };
  let closed = false;
  return {
    context,
    consoleLines,
    async newPage() {
      const page = await context.newPage();
      page.on('console', (m) => record(`[${page.url().split('?')[0]}] ${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => record(`[${page.url().split('?')[0]}] pageerror: ${e.message}`));
      return page;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.race([context.close().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000))]);
      await rm(profile, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/** Build the pages into a fresh temporary directory (so parallel test files never race on build/web). */
export async function buildWebRoot(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'canopy-web-'));
  await buildWeb(dir);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

/** A minimal static file server on 127.0.0.1 (ephemeral port) for page tests without signaling. */
export async function serveDir(dir: string, extra?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => boolean): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(async (req, res) => {
    if (extra && extra(req, res)) return;
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path === '/' ? 'index.html' : path);
    try {
      if (!file.startsWith(dir) || !(await stat(file)).isFile()) throw new Error('not a file');
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(await readFile(file));
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes; throws with `what` on timeout. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** framesDecoded of the page player's current video receiver (0 when none yet). */
export async function framesDecoded(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const pc = window.canopyPlayer?.pc;
    if (!pc) return 0;
    let n = 0;
    (await pc.getStats()).forEach((v: { type: string; kind?: string; framesDecoded?: number }) => {
      if (v.type === 'inbound-rtp' && v.kind === 'video') n = v.framesDecoded ?? 0;
    });
    return n;
  });
}

/**
 * waitFor on a Canopy page: on timeout the error carries the page's event log (#log) and player
 * stats, so a failure in CI says what the page saw.
 */
export async function waitOnPage<T>(page: Page, what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs: number): Promise<T> {
  try {
    return await waitFor(what, fn, timeoutMs);
  } catch (e) {
    const seen = await page
      .evaluate(() => {
        const log = document.getElementById('log')?.innerText ?? '';
        const stats = window.canopyPlayer ? JSON.stringify(window.canopyPlayer.stats) : '';
        return `${log.split('\n').slice(0, 15).join('\n')}\n${stats}`;
      })
      .catch(() => '(page gone)');
    throw new Error(`${(e as Error).message}\npage ${page.url().split('?')[0]} saw:\n${seen}`);
  }
}
