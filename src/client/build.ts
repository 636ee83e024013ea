/**
 * Bundles the browser pages: `npm run build:web` (tsx src/client/build.ts) writes
 * build/web/{broadcast,watch,topology}.html, their scripts, the stylesheet, and player.js (the
 * embeddable player library as an ES module). Signaling serves build/web/ at `/`.
 *
 * The wire schema is src/proto/canopy.proto itself, loaded as text and parsed by protobufjs in
 * the page, so pages and servers cannot drift apart.
 */
import { build, type BuildOptions } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const WEB_ROOT = join(here, '..', '..', 'build', 'web');
const PAGES = ['broadcast', 'watch', 'topology'] as const;

export interface WebBuildResult {
  outDir: string;
  files: string[];
}

/** Build every page into `outDir` (default build/web). Throws when esbuild reports errors. */
export async function buildWeb(outDir: string = WEB_ROOT, opts: { minify?: boolean } = {}): Promise<WebBuildResult> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const common: BuildOptions = {
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    loader: { '.proto': 'text' },
    sourcemap: 'linked',
    // Minified with linked source maps: small pages for viewers, readable stacks for developers.
    minify: opts.minify ?? true,
    legalComments: 'none',
    logLevel: 'silent',
    // protobufjs probes for optional Node modules through eval'd require; nothing to bundle.
    define: { 'process.env.NODE_ENV': '"production"' },
  };
  await build({
    ...common,
    entryPoints: Object.fromEntries([
      ...PAGES.map((p) => [p, join(here, 'pages', `${p}.ts`)]),
      ['player', join(here, 'player.ts')],
    ]),
    outdir: outDir,
  });
  for (const p of PAGES) await copyFile(join(here, 'pages', `${p}.html`), join(outDir, `${p}.html`));
  await copyFile(join(here, 'pages', 'style.css'), join(outDir, 'style.css'));
  await copyFile(join(here, 'pages', 'index.html'), join(outDir, 'index.html'));
  return { outDir, files: (await readdir(outDir)).sort() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const minify = !process.argv.includes('--no-minify');
  buildWeb(WEB_ROOT, { minify }).then(
    (r) => console.log(`built ${r.files.length} files into ${r.outDir}: ${r.files.join(', ')}`),
    (e: Error) => {
      console.error(`build:web failed: ${e.message}`);
      process.exit(1);
    },
  );
}
