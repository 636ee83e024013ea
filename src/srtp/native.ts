/**
 * The native SRTP egress addon (native/srtp.c, built by `npm install`): AES_CM_128_HMAC_SHA1_80
 * protect (RFC 3711) with Node's own OpenSSL, writing into caller memory or a static scratch
 * buffer, and sendto on the dgram socket's file descriptor. No allocation per packet.
 *
 * Loaded once, on first use. When the addon is missing or does not load, or CANOPY_NATIVE=0,
 * `nativeSrtp()` returns null and every caller keeps the JavaScript path (context.ts, udp.ts);
 * which path is in use is logged once.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { logger } from '../util/log.ts';
import { deriveSessionKeys } from './kdf.ts';
import { SRTP_AES128_CM_HMAC_SHA1_80 } from './profile.ts';
import { SrtpOptionsError, SrtpStatus } from './errors.ts';

/** The addon's exports (see native/srtp.c for the contract of each). */
export interface NativeSrtpAddon {
  createContext(rtpKey: Uint8Array, rtpSalt: Uint8Array, rtpAuthKey: Uint8Array): number;
  destroyContext(id: number): boolean;
  protect(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
  protectSend(id: number, src: Uint8Array, off: number, len: number): number;
  unprotect(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, roc: number): number;
  sendRaw(id: number, buf: Uint8Array, off: number, len: number): number;
  sendBatch(mem: Uint8Array, desc: Int32Array, count: number, payloadBytes?: number, now?: number): number;
  setDestination(id: number, fd: number, ip: string, port: number): number;
  rocOf(id: number, ssrc: number): number;
  /** [sent, bytes, queueFull, sendErrors, lastErrno, routed, routedBytes] */
  stats(id: number): number[] | null;
  /** Sender info of routed sendBatch records: [packets, octets, lastTs, lastAt]. */
  ssrcStats(id: number, ssrc: number): number[] | null;
  liveContexts(): number;
  openssl(): string;
}

/**
 * Records of NativeSrtpAddon.sendBatch's descriptor array: [context id, offset, length,
 * flag in / result out]. Flag BATCH_ROUTED: count the sent packet in the context's sender info
 * (ssrcStats) and routed totals, because no JavaScript accounts for it.
 */
export const BATCH_RECORD = 4;
export const BATCH_ROUTED = 1;

/** RFC 3550 §6.4.1 sender info kept in C for routed packets of one SSRC. */
export interface NativeSsrcStats {
  packets: number;
  octets: number;
  lastTs: number;
  lastAt: number;
}

const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/canopy_srtp.node', import.meta.url));

const log = logger('srtp');
let addon: NativeSrtpAddon | null | undefined;
let reason = '';

/** The addon, or null when the JavaScript path is in use (the first call logs which). */
export function nativeSrtp(): NativeSrtpAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.env.CANOPY_NATIVE === '0') {
    reason = 'disabled by CANOPY_NATIVE=0';
  } else if (!existsSync(ADDON_PATH)) {
    reason = `not built (${ADDON_PATH} missing; run \`npm run build:native\`)`;
  } else {
    try {
      const a = createRequire(import.meta.url)(ADDON_PATH) as NativeSrtpAddon;
      if (typeof a.createContext !== 'function' || typeof a.sendBatch !== 'function') throw new Error('unexpected exports');
      addon = a;
    } catch (err) {
      reason = `failed to load: ${(err as Error).message}`;
    }
  }
  if (addon !== null) log.info('SRTP egress: native path (canopy_srtp addon)', { openssl: addon.openssl() });
  else log.warn(`SRTP egress: JavaScript path, slower (native addon ${reason})`);
  return addon;
}

/** Why the native path is not in use ('' when it is). */
export function nativeSrtpReason(): string {
  nativeSrtp();
  return reason;
}

const registry = new FinalizationRegistry<number>((id) => addon?.destroyContext(id));

/**
 * One AES-CM SRTP sending context in the addon: the RTP session keys derived here (kdf.ts),
 * per-SSRC ROC state and a UDP destination kept in C. Only RTP protect is native; SRTCP and
 * unprotect stay in SrtpCryptoContext.
 */
export class NativeSrtpContext {
  readonly id: number;
  readonly #addon: NativeSrtpAddon;
  #destroyed = false;

  constructor(addonIn: NativeSrtpAddon, masterKey: Uint8Array, masterSalt: Uint8Array) {
    const k = deriveSessionKeys(SRTP_AES128_CM_HMAC_SHA1_80, masterKey, masterSalt);
    this.#addon = addonIn;
    try {
      this.id = addonIn.createContext(k.rtpKey, k.rtpSalt, k.rtpAuthKey);
    } catch (err) {
      throw new SrtpOptionsError(`NativeSrtpContext: ${(err as Error).message}`);
    } finally {
      k.rtpKey.fill(0);
      k.rtpAuthKey.fill(0);
    }
    registry.register(this, this.id, this);
  }

  /** Bytes protectRtp adds (the 80-bit tag). */
  get rtpOverhead(): number {
    return 10;
  }

  /** Same contract as SrtpCryptoContext.protectRtp (without tag batching). */
  protectRtp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (!(src instanceof Uint8Array) || !(dst instanceof Uint8Array)) return SrtpStatus.TooShort;
    return this.#addon.protect(this.id, src, srcOff, len, dst, dstOff);
  }

  /**
   * Verify the tag of src[srcOff, srcOff+len) with this ROC and decrypt into dst (written only
   * when the tag verifies); the plaintext length or a negative SrtpStatus. Index, ROC and
   * replay bookkeeping are the caller's (SrtpCryptoContext.unprotectRtp).
   */
  unprotectRtp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, roc: number): number {
    return this.#addon.unprotect(this.id, src, srcOff, len, dst, dstOff, roc);
  }

  /** Protect and send to the destination; the protected length or a negative SrtpStatus. */
  protectSend(buf: Uint8Array, off: number, len: number): number {
    return this.#addon.protectSend(this.id, buf, off, len);
  }

  /** Send already-protected bytes to the destination. */
  sendRaw(buf: Uint8Array, off: number, len: number): number {
    return this.#addon.sendRaw(this.id, buf, off, len);
  }

  /** Where protectSend sends: fd of a bound, unconnected UDP socket and an IP literal; fd -1 clears. */
  setDestination(fd: number, ip: string, port: number): boolean {
    return this.#addon.setDestination(this.id, fd, ip, port) === 0;
  }

  /** Sender ROC of an SSRC protected with this context, or undefined. */
  rocOf(ssrc: number): number | undefined {
    const r = this.#addon.rocOf(this.id, ssrc >>> 0);
    return r < 0 ? undefined : r;
  }

  /** Sender info of this SSRC's routed packets (sendBatch records flagged BATCH_ROUTED), or null. */
  ssrcStats(ssrc: number): NativeSsrcStats | null {
    const s = this.#addon.ssrcStats(this.id, ssrc >>> 0);
    return s === null ? null : { packets: s[0]!, octets: s[1]!, lastTs: s[2]!, lastAt: s[3]! };
  }

  /** Routed packets and plaintext bytes sent so far ([0, 0] once destroyed). */
  routed(): [number, number] {
    const s = this.#addon.stats(this.id);
    return s === null ? [0, 0] : [s[5]!, s[6]!];
  }

  /** errno of the last failed send (for the error reported to onSendError). */
  lastErrno(): number {
    return this.#addon.stats(this.id)?.[4] ?? 0;
  }

  /** Free the C state now (idempotent); later calls return SrtpStatus.Closed. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    registry.unregister(this);
    this.#addon.destroyContext(this.id);
  }
}
