import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** build/core.wasm is missing or unreadable. */
export class CoreLoadError extends Error {
  override name = 'CoreLoadError';
}

let compiled: WebAssembly.Module | undefined;

/** Path of the release build, resolved from this file (src/wasm/ -> build/core.wasm). */
export const CORE_WASM_PATH = fileURLToPath(new URL('../../build/core.wasm', import.meta.url));

/**
 * The compiled core module, compiled once per process; each Core instantiates its own copy
 * (own memory), so several relays can run in one process.
 */
export function coreModule(): WebAssembly.Module {
  if (compiled) return compiled;
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = new Uint8Array(readFileSync(CORE_WASM_PATH));
  } catch (err) {
    throw new CoreLoadError(
      `WASM core not found at ${CORE_WASM_PATH}: run npm run build:wasm (${(err as Error).message})`,
    );
  }
  try {
    compiled = new WebAssembly.Module(bytes);
  } catch (err) {
    throw new CoreLoadError(
      `WASM core at ${CORE_WASM_PATH} does not compile: run npm run build:wasm (${(err as Error).message})`,
    );
  }
  return compiled;
}
