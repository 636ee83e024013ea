/**
 * The native SRTP addon (native/srtp.c, built by `npm install`): SRTP and SRTCP for
 * AES_CM_128_HMAC_SHA1_80 (RFC 3711) and AEAD_AES_128_GCM (RFC 7714) with Node's own OpenSSL,
 * writing into caller memory or a static scratch buffer, and sendto on the dgram socket's file
 * descriptor. No allocation per packet.
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
import { SRTP_AES128_CM_HMAC_SHA1_80, SRTP_AEAD_AES_128_GCM, isSrtpProfile, srtpOverhead, type SrtpProfile } from './profile.ts';
import { SrtpOptionsError, SrtpStatus } from './errors.ts';

/** The addon's exports (see native/srtp.c for the contract of each). */
export interface NativeSrtpAddon {
  createContext(
    profile: SrtpProfile, rtpKey: Uint8Array, rtpSalt: Uint8Array, rtpAuthKey: Uint8Array,
    rtcpKey: Uint8Array, rtcpSalt: Uint8Array, rtcpAuthKey: Uint8Array,
  ): number;
  destroyContext(id: number): boolean;
  protect(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
  protectSend(id: number, src: Uint8Array, off: number, len: number): number;
  unprotect(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, roc: number): number;
  protectRtcp(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, index: number): number;
  unprotectRtcp(id: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
  sendRaw(id: number, buf: Uint8Array, off: number, len: number): number;
  /** defer: stage instead of sending (result 0); flushSends() sends and hands over the results. */
  sendBatch(mem: Uint8Array, desc: Int32Array, count: number, payloadBytes?: number, now?: number, defer?: boolean): number;
  /**
   * Send everything sendBatch staged (each context's packets in order, in UDP GSO runs), write
   * the results of the n records staged since the last call to results[0, n) and, to gso, the
   * GSO sends since then and the packets they carried; returns n.
   */
  flushSends(results: Int32Array, gso?: Int32Array): number;
  /** Most records sendBatch stages between two flushSends (then it sends at once). */
  readonly STAGE_RECORDS: number;
  setDestination(id: number, fd: number, ip: string, port: number): number;
  rocOf(id: number, ssrc: number): number;
  /** [sent, bytes, queueFull, sendErrors, lastErrno, routed, routedBytes, gsoSends, gsoPackets] */
  stats(id: number): number[] | null;
  /** Sender info of routed sendBatch records: [packets, octets, lastTs, lastAt]. */
  ssrcStats(id: number, ssrc: number): number[] | null;
  liveContexts(): number;
  openssl(): string;
  /** A twin of the destination's socket connected to it (see native/srtp.c): its fd, or a negative SrtpStatus. */
  connectTwin(id: number): number;
  /** HMAC-SHA1 (RFC 2104) of data[off, off+len) into out[outOff, outOff+20): 20, or a negative SrtpStatus. */
  hmacSha1(key: Uint8Array, data: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number;
  /**
   * Batched reads of a UDP socket (native/recv.c): watches its own dup() of `fd` and calls
   * onBatch(count) with up to 32 datagrams in `buf` (RECV_SLOT bytes per slot) and `meta`
   * (RECV_META int32 per slot: length, port, family 4|6, truncated, address words).
   */
  recvStart(fd: number, buf: Uint8Array, meta: Int32Array, onBatch: (count: number) => void): object;
  recvStop(handle: object): boolean;
  readonly RECV_SLOT: number;
  readonly RECV_META: number;
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

/**
 * The DTLS-SRTP profiles a relay leg should accept, best first (for preferSrtpProfiles).
 * With the addon: AEAD_AES_128_GCM first (RFC 7714; with AES-NI and PCLMUL it costs about half
 * of AES-CM + HMAC-SHA1 per 1100-byte packet), then AES-CM. Without it: AES-CM only, which the
 * JavaScript path does with a kept key schedule while its GCM needs a cipher object per packet.
 */
export function fastSrtpProfiles(): SrtpProfile[] {
  return nativeSrtp() !== null ? [SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_HMAC_SHA1_80] : [SRTP_AES128_CM_HMAC_SHA1_80];
}

/** Why the native path is not in use ('' when it is). */
export function nativeSrtpReason(): string {
  nativeSrtp();
  return reason;
}

const registry = new FinalizationRegistry<number>((id) => addon?.destroyContext(id));

/**
 * One SRTP context in the addon (either profile): the session keys derived here (kdf.ts),
 * per-SSRC ROC state and a UDP destination kept in C. SRTP index, ROC and replay bookkeeping
 * of received packets, and SRTCP indexes, stay with the caller (SrtpCryptoContext, FastRtpSender).
 */
export class NativeSrtpContext {
  readonly id: number;
  readonly profile: SrtpProfile;
  /** Bytes protectRtp adds (the tag: 10 for AES-CM, 16 for GCM). */
  readonly rtpOverhead: number;
  /** Bytes protectRtcp adds (E|index word and tag). */
  readonly rtcpOverhead: number;
  readonly #addon: NativeSrtpAddon;
  #destroyed = false;

  constructor(addonIn: NativeSrtpAddon, masterKey: Uint8Array, masterSalt: Uint8Array, profile: SrtpProfile = SRTP_AES128_CM_HMAC_SHA1_80) {
    if (!isSrtpProfile(profile)) throw new SrtpOptionsError(`NativeSrtpContext: unknown SRTP profile ${profile}`);
    const k = deriveSessionKeys(profile, masterKey, masterSalt);
    this.#addon = addonIn;
    this.profile = profile;
    this.rtpOverhead = srtpOverhead(profile);
    this.rtcpOverhead = this.rtpOverhead + 4;
    try {
      this.id = addonIn.createContext(profile, k.rtpKey, k.rtpSalt, k.rtpAuthKey, k.rtcpKey, k.rtcpSalt, k.rtcpAuthKey);
    } catch (err) {
      throw new SrtpOptionsError(`NativeSrtpContext: ${(err as Error).message}`);
    } finally {
      k.rtpKey.fill(0);
      k.rtpAuthKey.fill(0);
      k.rtcpKey.fill(0);
      k.rtcpAuthKey.fill(0);
    }
    registry.register(this, this.id, this);
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

  /**
   * Protect one (compound) RTCP packet with SRTCP index `index` (RFC 3711 §3.4, RFC 7714 §9.1);
   * the SRTCP length or a negative SrtpStatus.
   */
  protectRtcp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, index: number): number {
    if (!(src instanceof Uint8Array) || !(dst instanceof Uint8Array)) return SrtpStatus.TooShort;
    return this.#addon.protectRtcp(this.id, src, srcOff, len, dst, dstOff, index);
  }

  /**
   * Verify and decrypt one SRTCP packet into dst (written only when it verifies); the RTCP length
   * or a negative SrtpStatus. The replay window is the caller's (srtcpIndexOf reads the index).
   */
  unprotectRtcp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    return this.#addon.unprotectRtcp(this.id, src, srcOff, len, dst, dstOff);
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

  /**
   * Send from now on through a twin of the destination's socket connected to the destination
   * (IPv4): the twin's fd, which the caller must read until the next setDestination or destroy
   * (the kernel delivers the destination's datagrams to it), or a negative SrtpStatus when the
   * context keeps sending on the original socket.
   */
  connectTwin(): number {
    return this.#addon.connectTwin(this.id);
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

  /** GSO sends (one sendmsg carrying several staged packets) and the packets they carried. */
  gso(): [number, number] {
    const s = this.#addon.stats(this.id);
    return s === null ? [0, 0] : [s[7] ?? 0, s[8] ?? 0];
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
