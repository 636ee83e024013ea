/**
 * HMAC-SHA1-80 for SRTP/SRTCP authentication tags (RFC 3711 §4.2.1), two engines:
 *   - wasm: assembly/srtp.ts in the forwarding core's module (a private instance, own memory).
 *     The key's inner/outer pad states are computed once per key; per packet the data is copied
 *     into linear memory and hashed, and no object is created. Measured the cheaper of the two
 *     (bench/srtp.ts prints both), so it is used whenever the core build has it.
 *   - node: one createHmac object per packet (OpenSSL). The fallback when build/core.wasm is
 *     missing or older than assembly/srtp.ts, and for messages over HMAC_MAX bytes.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { coreModule } from '../wasm/load.ts';

interface SrtpWasmExports {
  memory: WebAssembly.Memory;
  srtp_msg_ptr(): number;
  srtp_states_ptr(): number;
  srtp_out_ptr(): number;
  srtp_hmac_sha1_setkey(key: number, keyLen: number, states: number): number;
  srtp_hmac_sha1(states: number, msg: number, len: number, out: number): number;
}

/** Largest message the WASM engine hashes (assembly/srtp.ts HMAC_MAX). */
const WASM_MAX = 4096;

function hasSrtpExports(x: WebAssembly.Exports): boolean {
  return ['srtp_msg_ptr', 'srtp_states_ptr', 'srtp_out_ptr', 'srtp_hmac_sha1_setkey', 'srtp_hmac_sha1'].every(
    (n) => typeof x[n] === 'function',
  ) && x.memory instanceof WebAssembly.Memory;
}

/** One WASM instance providing srtp_hmac_sha1; shared by every context in the process. */
export class WasmHmacEngine {
  readonly #x: SrtpWasmExports;
  #mem: Uint8Array;
  readonly #msg: number;
  readonly #states: number;
  readonly #out: number;

  /** Instantiate `module` (the core module, or assembly/srtp.ts compiled alone). */
  constructor(module: WebAssembly.Module) {
    const inst = new WebAssembly.Instance(module, {
      env: {
        abort: () => {
          throw new Error('srtp wasm abort');
        },
      },
    });
    if (!hasSrtpExports(inst.exports)) throw new TypeError('WasmHmacEngine: module has no srtp_hmac_sha1 exports');
    this.#x = inst.exports as unknown as SrtpWasmExports;
    this.#mem = new Uint8Array(this.#x.memory.buffer);
    this.#msg = this.#x.srtp_msg_ptr();
    this.#states = this.#x.srtp_states_ptr();
    this.#out = this.#x.srtp_out_ptr();
  }

  /** The 40-byte inner/outer states of a key (at most 64 bytes). */
  keyStates(key: Uint8Array): Uint8Array {
    const mem = this.#memory();
    mem.set(key, this.#msg);
    if (this.#x.srtp_hmac_sha1_setkey(this.#msg, key.length, this.#states) !== 0) throw new RangeError('HMAC key over 64 bytes');
    return mem.slice(this.#states, this.#states + 40);
  }

  /**
   * First 10 bytes of HMAC(data[off, off+len) || tail) into out[outOff..]; tail is the 4-byte
   * ROC or nothing (tail < 0). Returns false when the message is too long for this engine.
   */
  tag80(states: Uint8Array, data: Uint8Array, off: number, len: number, tail: number, out: Uint8Array, outOff: number): boolean {
    const total = tail >= 0 ? len + 4 : len;
    if (total > WASM_MAX) return false;
    const mem = this.#memory();
    const msg = this.#msg;
    mem.set(states, this.#states);
    if (len <= 32) for (let i = 0; i < len; i++) mem[msg + i] = data[off + i]!;
    else mem.set(data.subarray(off, off + len), msg);
    if (tail >= 0) {
      mem[msg + len] = tail >>> 24;
      mem[msg + len + 1] = (tail >>> 16) & 0xff;
      mem[msg + len + 2] = (tail >>> 8) & 0xff;
      mem[msg + len + 3] = tail & 0xff;
    }
    this.#x.srtp_hmac_sha1(this.#states, msg, total, this.#out);
    const o = this.#out;
    for (let i = 0; i < 10; i++) out[outOff + i] = mem[o + i]!;
    return true;
  }

  #memory(): Uint8Array {
    // Nothing here grows memory, but a detached view would fail silently: recheck cheaply.
    if (this.#mem.byteLength === 0) this.#mem = new Uint8Array(this.#x.memory.buffer);
    return this.#mem;
  }
}

let coreEngine: WasmHmacEngine | null | undefined;

/** The engine from build/core.wasm, or null when the build is missing or lacks srtp exports. */
export function coreHmacEngine(): WasmHmacEngine | null {
  if (coreEngine !== undefined) return coreEngine;
  try {
    const mod = coreModule();
    const names = new Set(WebAssembly.Module.exports(mod).map((e) => e.name));
    coreEngine = names.has('srtp_hmac_sha1') ? new WasmHmacEngine(mod) : null;
  } catch {
    coreEngine = null;
  }
  return coreEngine;
}

export type HmacChoice = 'auto' | 'node' | WasmHmacEngine;

/** HMAC-SHA1-80 under one key, on the chosen engine. */
export class HmacSha1x80 {
  readonly engine: 'wasm' | 'node';
  readonly #key: KeyObject;
  readonly #wasm: WasmHmacEngine | null;
  readonly #states: Uint8Array;
  readonly #word = Buffer.alloc(4);

  constructor(key: Buffer, choice: HmacChoice = 'auto') {
    this.#key = createSecretKey(key);
    this.#wasm = choice === 'node' ? null : choice === 'auto' ? coreHmacEngine() : choice;
    this.#states = this.#wasm ? this.#wasm.keyStates(key) : new Uint8Array(0);
    this.engine = this.#wasm ? 'wasm' : 'node';
  }

  /** First 10 bytes of HMAC(data[off, off+len) || tail-as-u32be (if tail >= 0)) into out[outOff..]. */
  tag(data: Uint8Array, off: number, len: number, tail: number, out: Uint8Array, outOff: number): void {
    if (this.#wasm !== null && this.#wasm.tag80(this.#states, data, off, len, tail, out, outOff)) return;
    const h = createHmac('sha1', this.#key).update(data.subarray(off, off + len));
    if (tail >= 0) {
      this.#word.writeUInt32BE(tail >>> 0, 0);
      h.update(this.#word);
    }
    const d = h.digest();
    for (let i = 0; i < 10; i++) out[outOff + i] = d[i]!;
  }
}
