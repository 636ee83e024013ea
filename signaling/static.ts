/**
 * Static files for the web pages (build/web by default). Paths are decoded, normalised and
 * checked to stay under the root, symlinks included, so `..`, encoded `%2e%2e` and NUL bytes
 * cannot reach outside it.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { Reply } from './http.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

export const contentType = (path: string): string => TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';

const notFound: Reply = { status: 404, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'not found\n' };

/** Map a URL path to a file under `root`, or undefined when it is not allowed. */
export function resolveUnder(root: string, urlPath: string): string | undefined {
  let p: string;
  try {
    p = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (p.includes('\0') || p.includes('\\')) return undefined;
  if (p.endsWith('/')) p += 'index.html';
  const base = resolve(root);
  const full = resolve(join(base, p));
  if (full !== base && !full.startsWith(base + sep)) return undefined;
  return full;
}

export async function serveStatic(root: string, urlPath: string, head = false): Promise<Reply> {
  const full = resolveUnder(root, urlPath);
  if (!full) return notFound;
  try {
    const [real, realRoot] = await Promise.all([realpath(full), realpath(root)]);
    if (real !== realRoot && !real.startsWith(realRoot + sep)) return notFound;
    const st = await stat(real);
    if (!st.isFile()) return notFound;
    const body = head ? undefined : await readFile(real);
    return {
      status: 200,
      headers: { 'Content-Type': contentType(real), 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' },
      ...(body ? { body } : {}),
    };
  } catch {
    return notFound;
  }
}
