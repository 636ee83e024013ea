/**
 * HMAC-SHA1-80 for SRTP/SRTCP authentication tags (RFC 3711 §4.2.1), two engines:
 *   - wasm: assembly/srtp.ts in the forwarding core's module (a private instance, own memory).
 *     The key's inner/outer pad states are computed once per key; per packet the data is copied
 *     into linear memory and hashed, and no object is created. Measured the cheaper of the two
 *     (bench/srtp.ts prints both), so it is used whenever the core build has it.
 *   - node: one createHmac object per packet (OpenSSL). The fallback when build/core.wasm is
 *     missing or older than assembly/srtp.ts, and for messages over HMAC_MAX bytes.
 * TagBatch defers tags and computes equal-length ones four at a time (srtp_hmac_sha1_x4, one
 * message per SIMD lane): the relay protects each packet for many viewers with equal lengths.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { coreModule } from '../wasm/load.ts';
import { RegionViews } from './views.ts';

interface SrtpWasmExports {
  memory: WebAssembly.Memory;
  srtp_msg_ptr(): number;
  srtp_states_ptr(): number;
  srtp_out_ptr(): number;
  srtp_hmac_sha1_setkey(key: number, keyLen: number, states: number): number;
  srtp_hmac_sha1(states: number, msg: number, len: number, out: number): number;
  srtp_msg4_ptr?(lane: number): number;
  srtp_states4_ptr?(): number;
  srtp_out4_ptr?(): number;
  srtp_hmac_sha1_x4?(len: number): number;
}

/** Largest message the WASM engine hashes (assembly/srtp.ts HMAC_MAX). */
const HMAC_MAX = 4096;

function hasSrtpExports(x: WebAssembly.Exports): boolean {
  return ['srtp_msg_ptr', 'srtp_states_ptr', 'srtp_out_ptr', 'srtp_hmac_sha1_setkey', 'srtp_hmac_sha1'].every(
    (n) => typeof x[n] === 'function',
  ) && x.memory instanceof WebAssembly.Memory;
}

/** Views of the messages tag80x4 copies in (the same slab regions every turn on a relay). */
const messageViews = new RegionViews();

/** One WASM instance providing srtp_hmac_sha1; shared by every context in the process. */
export class WasmHmacEngine {
  readonly #x: SrtpWasmExports;
  #mem: Uint8Array;
  readonly #msg: number;
  readonly #states: number;
  readonly #out: number;
  /** Whether the module has the four-lane HMAC (older core builds do not). */
  readonly hasX4: boolean;
  readonly #msg4: number[] = [];
  readonly #states4: number = 0;
  readonly #out4: number = 0;

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
    const x = this.#x;
    this.hasX4 = typeof x.srtp_hmac_sha1_x4 === 'function' && typeof x.srtp_msg4_ptr === 'function' &&
      typeof x.srtp_states4_ptr === 'function' && typeof x.srtp_out4_ptr === 'function';
    if (this.hasX4) {
      for (let l = 0; l < 4; l++) this.#msg4.push(x.srtp_msg4_ptr!(l));
      this.#states4 = x.srtp_states4_ptr!();
      this.#out4 = x.srtp_out4_ptr!();
    }
  }

  /**
   * Four tags at once, all over messages of the same `len` (+ 4-byte tail if tail >= 0):
   * lane l = item idx[l] of the parallel arrays; each tag goes to buf[off + len ..+10).
   * Caller guarantees hasX4 and len + 4 <= HMAC_MAX.
   */
  tag80x4(
    states: readonly Uint8Array[], bufs: readonly Uint8Array[], offs: readonly number[], len: number,
    tails: readonly number[], idx: readonly number[],
  ): void {
    const mem = this.#memory();
    let total = len;
    for (let l = 0; l < 4; l++) {
      const i = idx[l]!;
      const msg = this.#msg4[l]!;
      const buf = bufs[i]!;
      const off = offs[i]!;
      mem.set(states[i]!, this.#states4 + l * 40);
      mem.set(messageViews.of(buf, off, len), msg);
      const tail = tails[i]!;
      if (tail >= 0) {
        mem[msg + len] = tail >>> 24;
        mem[msg + len + 1] = (tail >>> 16) & 0xff;
        mem[msg + len + 2] = (tail >>> 8) & 0xff;
        mem[msg + len + 3] = tail & 0xff;
        total = len + 4;
      }
    }
    this.#x.srtp_hmac_sha1_x4!(total);
    for (let l = 0; l < 4; l++) {
      const i = idx[l]!;
      const buf = bufs[i]!;
      const at = offs[i]! + len;
      const o = this.#out4 + l * 20;
      for (let k = 0; k < 10; k++) buf[at + k] = mem[o + k]!;
    }
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
    if (total > HMAC_MAX) return false;
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
  /** The WASM engine and this key's pad states, for TagBatch (null on the Node engine). */
  readonly wasm: WasmHmacEngine | null;
  readonly states: Uint8Array;
  readonly #word = Buffer.alloc(4);

  constructor(key: Buffer, choice: HmacChoice = 'auto') {
    this.#key = createSecretKey(key);
    this.wasm = choice === 'node' ? null : choice === 'auto' ? coreHmacEngine() : choice;
    this.states = this.wasm ? this.wasm.keyStates(key) : new Uint8Array(0);
    this.engine = this.wasm ? 'wasm' : 'node';
  }

  /** First 10 bytes of HMAC(data[off, off+len) || tail-as-u32be (if tail >= 0)) into out[outOff..]. */
  tag(data: Uint8Array, off: number, len: number, tail: number, out: Uint8Array, outOff: number): void {
    if (this.wasm !== null && this.wasm.tag80(this.states, data, off, len, tail, out, outOff)) return;
    const h = createHmac('sha1', this.#key).update(data.subarray(off, off + len));
    if (tail >= 0) {
      this.#word.writeUInt32BE(tail >>> 0, 0);
      h.update(this.#word);
    }
    const d = h.digest();
    for (let i = 0; i < 10; i++) out[outOff + i] = d[i]!;
  }
}

/**
 * Deferred tags. add() records where a tag goes; flush() computes them, equal-length messages
 * under WASM keys four at a time, the rest one by one. Until flush() the tag bytes are not
 * written, so the packets must not be sent before it.
 */
/** Up to 4 recorded messages of one length waiting for a four-lane HMAC. */
class TagGroup {
  readonly idx = [0, 0, 0, 0];
  n = 0;
}

export class TagBatch {
  // Entries [0, #n) are recorded; the arrays only grow, so a turn reallocates nothing.
  readonly #h: (HmacSha1x80 | null)[] = [];
  readonly #states: Uint8Array[] = [];
  readonly #buf: (Uint8Array | null)[] = [];
  readonly #off: number[] = [];
  readonly #len: number[] = [];
  readonly #tail: number[] = [];
  #n = 0;
  /** Open groups of equal-length messages by key (length * 2 + has tail); each holds < 4. */
  readonly #open = new Map<number, TagGroup>();
  readonly #pool: TagGroup[] = [];

  get size(): number {
    return this.#n;
  }

  /** Tag of buf[off, off+len) || tail (u32, if tail >= 0) to buf[off+len, off+len+10). */
  add(h: HmacSha1x80, buf: Uint8Array, off: number, len: number, tail: number): void {
    const w = h.wasm;
    if (w === null || !w.hasX4 || len + 4 > HMAC_MAX) {
      h.tag(buf, off, len, tail, buf, off + len);
      return;
    }
    const i = this.#n++;
    this.#h[i] = h;
    this.#states[i] = h.states;
    this.#buf[i] = buf;
    this.#off[i] = off;
    this.#len[i] = len;
    this.#tail[i] = tail;
  }

  /** Compute every recorded tag. */
  flush(): void {
    const n = this.#n;
    if (n === 0) return;
    // Group by length (+ whether a tail word follows); a full group of 4 goes at once. Groups
    // and their arrays are reused from flush to flush: this runs once per event-loop turn.
    const open = this.#open;
    const hs = this.#h as HmacSha1x80[];
    const bufs = this.#buf as Uint8Array[];
    for (let i = 0; i < n; i++) {
      const w = hs[i]!.wasm!;
      const key = this.#len[i]! * 2 + (this.#tail[i]! >= 0 ? 1 : 0);
      let g = open.get(key);
      if (g === undefined) {
        g = this.#pool.pop() ?? new TagGroup();
        open.set(key, g);
      }
      if (g.n > 0 && hs[g.idx[0]!]!.wasm !== w) {
        // Another engine (only with hand-made engines): not in this group.
        hs[i]!.tag(bufs[i]!, this.#off[i]!, this.#len[i]!, this.#tail[i]!, bufs[i]!, this.#off[i]! + this.#len[i]!);
        continue;
      }
      g.idx[g.n++] = i;
      if (g.n === 4) {
        w.tag80x4(this.#states, bufs, this.#off, this.#len[i]!, this.#tail, g.idx);
        g.n = 0;
      }
    }
    for (const g of open.values()) {
      for (let j = 0; j < g.n; j++) {
        const i = g.idx[j]!;
        hs[i]!.tag(bufs[i]!, this.#off[i]!, this.#len[i]!, this.#tail[i]!, bufs[i]!, this.#off[i]! + this.#len[i]!);
      }
      g.n = 0;
      if (this.#pool.length < 64) this.#pool.push(g);
    }
    open.clear();
    for (let i = 0; i < n; i++) {
      this.#h[i] = null;
      this.#buf[i] = null;
    }
    this.#n = 0;
  }
}
