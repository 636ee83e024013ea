#!/usr/bin/env node
/**
 * `npm install` / `npm ci` hook: build the native SRTP egress addon (native/srtp.c) with node-gyp
 * against the running node's headers (npm's nodedir) and the OpenSSL symbols node exports.
 *
 * node-gyp runs with `-C native`, so its build directory is native/build/ and the repository's
 * build/ (core.wasm from `npm run build:wasm`) is never wiped.
 *
 * A failed build does not fail the install: the relay then runs the JavaScript SRTP path and
 * says so once at startup (src/srtp/native.ts). Under CI=true test/srtp-native.test.ts fails
 * when the addon did not load, so CI never passes on the fallback silently.
 * CANOPY_NATIVE=0 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

if (process.env.CANOPY_NATIVE === '0') {
  console.log('canopy: CANOPY_NATIVE=0, native SRTP addon not built (the relay will use the JavaScript SRTP path)');
  process.exit(0);
}

/** npm's bundled node-gyp (npm sets npm_config_node_gyp for lifecycle scripts), else PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return [process.execPath, c];
  return ['node-gyp'];
}

/**
 * Headers of the running node: npm's nodedir when set, else the install prefix of this node
 * binary when it ships include/node (so node-gyp never tries to download headers).
 */
function nodeDir() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm && existsSync(join(fromNpm, 'include', 'node', 'node_api.h'))) return fromNpm;
  const prefix = join(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return prefix;
  return undefined;
}

const [cmd, ...pre] = nodeGyp();
const dir = nodeDir();
const args = [...pre, 'rebuild', '-C', here, ...(dir ? [`--nodedir=${dir}`] : [])];
const r = spawnSync(cmd, args, { stdio: 'inherit', env: process.env });
const out = join(here, 'build', 'Release', 'canopy_srtp.node');
if (r.status === 0 && existsSync(out)) {
  console.log(`canopy: native SRTP addon built: ${out}`);
} else {
  const why = r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`;
  console.warn('');
  console.warn('canopy: WARNING: the native SRTP addon (native/srtp.c) did not build: ' + why);
  console.warn('canopy: the relay will run the slower JavaScript SRTP egress path.');
  console.warn('canopy: it needs python3, make and a C compiler; retry with `npm run build:native`.');
  console.warn('');
}
process.exit(0);
