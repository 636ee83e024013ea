/**
 * One direction of an SRTP/SRTCP crypto context (RFC 3711 §3.2): session keys derived once,
 * long-lived cipher objects, per-SSRC packet indexes. The protect and unprotect calls read
 * from one region and write to another (or the same one: in place), never throw, and return
 * the number of bytes written or a negative SrtpStatus.
 *
 * Per packet work, AES_CM_128_HMAC_SHA1_80:
 *   - keystream (RFC 3711 §4.1.1): counter blocks IV + i are written into a buffer kept by the
 *     context and encrypted with ONE long-lived `aes-128-ecb` cipher (no padding); the payload
 *     is XORed with it 32 bits at a time. No cipher object is created per packet.
 *   - tag (RFC 3711 §4.2): HMAC-SHA1 over header + encrypted payload + ROC, truncated to 80
 *     bits, by the WASM HMAC of assembly/srtp.ts with the key's pad states precomputed
 *     (hmac.ts); it measured cheaper than a Node createHmac object per packet, which remains
 *     the fallback.
 * AEAD_AES_128_GCM (RFC 7714): Node cannot re-IV a GCM cipher, so one createCipheriv per
 * packet remains; everything else (IV, AAD, output) is written without intermediate copies.
 *
 * Regions: src and dst may be the same bytes (in place) or disjoint; partially overlapping
 * regions are not supported. On a failed unprotect dst is left unchanged for GCM and may hold
 * the copied header for AES-CM.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type Cipher, type KeyObject } from 'node:crypto';
import { SrtpStatus } from './errors.ts';
import { checkMasterKeys, deriveSessionKeys } from './kdf.ts';
import { SRTP_AEAD_AES_128_GCM, isSrtpProfile, srtpOverhead, type SrtpProfile } from './profile.ts';
import { IndexState, ReplayWindow, estimateRoc } from './roc.ts';
import { SrtpOptionsError } from './errors.ts';
import { HmacSha1x80, WasmHmacEngine, type HmacChoice, type TagBatch } from './hmac.ts';
import { NativeSrtpContext, nativeSrtp } from './native.ts';

/** Supplies the next SRTCP index (31 bits, RFC 3711 §3.4) for a sender SSRC. */
export type SrtcpIndexSource = (ssrc: number) => number;

export interface SrtpCryptoContextOptions {
  profile: SrtpProfile;
  masterKey: Uint8Array;
  masterSalt: Uint8Array;
  /**
   * Where SRTCP indexes come from when protecting. Default: a counter per SSRC in this
   * context starting at 1. FastRtpSender passes werift's own counter so RTCP werift sends
   * and RTCP the relay sends under the same key never reuse an index.
   */
  srtcpIndex?: SrtcpIndexSource;
  /**
   * HMAC-SHA1 engine for AES-CM tags: 'auto' (default: WASM from build/core.wasm when it has
   * the srtp exports, else Node), 'node', or a specific WasmHmacEngine.
   */
  hmac?: HmacChoice;
  /**
   * AES-CM: packets of one SSRC whose keystream is generated ahead in one cipher call when a
   * packet moves the stream forward (default 8; 1 = one call per packet). Retransmissions and
   * larger-than-usual packets fall back to a call of their own.
   */
  keystreamRun?: number;
  /**
   * unprotectRtp, protectRtcp and unprotectRtcp in the native addon when it is loaded and
   * `hmac` is 'auto' (default true): no cipher object or keystream Buffer per packet. RTP
   * protect stays here (FastRtpSender uses the addon's protect itself); index, ROC and replay
   * bookkeeping stay here either way. false keeps everything in JavaScript.
   */
  native?: boolean;
}

const MAX_SRTCP_INDEX = 0x7fffffff;

/** ECB keystream generator for AES-CM (RFC 3711 §4.1.1) with a reusable counter buffer. */
export class AesCmKeystream {
  readonly #ecb: Cipher;
  readonly #salt: Buffer; // 14 bytes
  #ctr = Buffer.alloc(0);
  #ctr32 = new Int32Array(0);
  #ctr16 = new Uint16Array(0);
  #run = Buffer.alloc(0);
  #run32 = new Int32Array(0);
  #run16 = new Uint16Array(0);
  readonly #iv = Buffer.alloc(16);
  readonly #iv32 = new Int32Array(this.#iv.buffer, this.#iv.byteOffset, 4);
  readonly #iv16 = new Uint16Array(this.#iv.buffer, this.#iv.byteOffset, 8);

  constructor(key: Buffer, salt: Buffer) {
    this.#ecb = createCipheriv('aes-128-ecb', key, null);
    this.#ecb.setAutoPadding(false);
    this.#salt = salt;
    this.#grow(128);
  }

  #grow(blocks: number): void {
    // Own ArrayBuffer (not the Buffer pool) so the typed views start 4-byte aligned.
    const ab = new ArrayBuffer(blocks * 16);
    this.#ctr = Buffer.from(ab);
    this.#ctr32 = new Int32Array(ab);
    this.#ctr16 = new Uint16Array(ab);
    // The low 16 bits of each block are the block counter i (IV + i, i < 2^16); set once.
    for (let b = 0; b < blocks; b++) {
      this.#ctr[b * 16 + 14] = (b >> 8) & 0xff;
      this.#ctr[b * 16 + 15] = b & 0xff;
    }
  }

  /** IV bytes 0..13 = salt XOR (SSRC at 4..7) XOR (48-bit index at 8..13), RFC 3711 §4.1.1. */
  #setIv(ssrc: number, hi32: number, lo16: number): void {
    const iv = this.#iv;
    const s = this.#salt;
    iv[0] = s[0]!;
    iv[1] = s[1]!;
    iv[2] = s[2]!;
    iv[3] = s[3]!;
    iv[4] = s[4]! ^ (ssrc >>> 24);
    iv[5] = s[5]! ^ ((ssrc >>> 16) & 0xff);
    iv[6] = s[6]! ^ ((ssrc >>> 8) & 0xff);
    iv[7] = s[7]! ^ (ssrc & 0xff);
    iv[8] = s[8]! ^ (hi32 >>> 24);
    iv[9] = s[9]! ^ ((hi32 >>> 16) & 0xff);
    iv[10] = s[10]! ^ ((hi32 >>> 8) & 0xff);
    iv[11] = s[11]! ^ (hi32 & 0xff);
    iv[12] = s[12]! ^ (lo16 >>> 8);
    iv[13] = s[13]! ^ (lo16 & 0xff);
  }

  /**
   * Keystream for `bytes` bytes of the packet with this SSRC and 48-bit index (hi32 = ROC for
   * SRTP or index >>> 16 for SRTCP, lo16 = SEQ or index & 0xffff). IV = salt*2^16 XOR
   * SSRC*2^64 XOR index*2^16 (RFC 3711 §4.1.1).
   */
  generate(ssrc: number, hi32: number, lo16: number, bytes: number): Buffer {
    const blocks = (bytes + 15) >> 4;
    if (blocks > 65536) throw new RangeError('AES-CM keystream limited to 2^16 blocks per packet');
    if (blocks * 16 > this.#ctr.length) this.#grow(Math.max(blocks, (this.#ctr.length >> 4) * 2));
    this.#setIv(ssrc, hi32, lo16);
    const w0 = this.#iv32[0]!;
    const w1 = this.#iv32[1]!;
    const w2 = this.#iv32[2]!;
    const h = this.#iv16[6]!;
    const c32 = this.#ctr32;
    const c16 = this.#ctr16;
    for (let b = 0, j = 0; b < blocks; b++, j += 4) {
      c32[j] = w0;
      c32[j + 1] = w1;
      c32[j + 2] = w2;
      c16[(j << 1) + 6] = h;
    }
    return this.#ecb.update(this.#ctr.subarray(0, blocks << 4));
  }

  /**
   * Keystream for `count` consecutive SRTP packet indexes starting at `index0` (ROC * 2^16 +
   * SEQ, so a run may cross a ROC increment), `stride` bytes (a multiple of 16) each, in ONE
   * ECB call: entry k starts at k * stride. Amortizes the fixed cost of a cipher call over the
   * next packets of a stream, which a sender protects in sequence.
   */
  generateRun(ssrc: number, index0: number, count: number, stride: number): Buffer {
    const per = stride >> 4;
    const blocks = per * count;
    if (per > 65536 || (stride & 15) !== 0) throw new RangeError('generateRun: stride must be a multiple of 16, at most 2^20');
    if (blocks * 16 > this.#run.length) {
      // Its own buffer: the single-packet buffer keeps its preset block counters.
      const ab = new ArrayBuffer(blocks * 16);
      this.#run = Buffer.from(ab);
      this.#run32 = new Int32Array(ab);
      this.#run16 = new Uint16Array(ab);
    }
    const c32 = this.#run32;
    const c16 = this.#run16;
    let j = 0;
    for (let k = 0; k < count; k++) {
      const index = index0 + k;
      this.#setIv(ssrc, Math.floor(index / 65536) >>> 0, index & 0xffff);
      const w0 = this.#iv32[0]!;
      const w1 = this.#iv32[1]!;
      const w2 = this.#iv32[2]!;
      const h = this.#iv16[6]!;
      for (let i = 0; i < per; i++, j += 4) {
        c32[j] = w0;
        c32[j + 1] = w1;
        c32[j + 2] = w2;
        c16[(j << 1) + 6] = h;
        // Block counter i in bytes 14..15 (big-endian), written through the host-endian view.
        c16[(j << 1) + 7] = LITTLE_ENDIAN ? ((i & 0xff) << 8) | (i >>> 8) : i;
      }
    }
    return this.#ecb.update(this.#run.subarray(0, blocks << 4));
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Cached Int32Array over a whole ArrayBuffer, rebuilt only when the buffer changes. */
class WordView {
  #ab: ArrayBufferLike | null = null;
  #view: Int32Array<ArrayBufferLike> = new Int32Array(0);
  of(u8: Uint8Array): Int32Array<ArrayBufferLike> {
    if (u8.buffer !== this.#ab) {
      this.#ab = u8.buffer;
      this.#view = new Int32Array(u8.buffer, 0, u8.buffer.byteLength >>> 2);
    }
    return this.#view;
  }
}

/** dst[d..d+n) = src[s..s+n) XOR ks[k..k+n). 32-bit words when all three are aligned alike. */
function xorKeystream(
  src: Uint8Array, s: number, dst: Uint8Array, d: number, ks: Buffer, k: number, n: number, sv: WordView, dv: WordView, kv: WordView,
): void {
  const sa = src.byteOffset + s;
  const da = dst.byteOffset + d;
  let i = 0;
  const ka = ks.byteOffset + k;
  if (((sa | da | ka) & 3) === 0 && n >= 16) {
    const words = n >>> 2;
    const s32 = sv.of(src);
    const d32 = dv.of(dst);
    const k32 = kv.of(ks);
    const so = sa >>> 2;
    const dO = da >>> 2;
    const ko = ka >>> 2;
    for (let w = 0; w < words; w++) d32[dO + w] = s32[so + w]! ^ k32[ko + w]!;
    i = words << 2;
  }
  for (; i < n; i++) dst[d + i] = src[s + i]! ^ ks[k + i]!;
}

/** RTP header length (RFC 3550 §5.1, RFC 8285), or a negative SrtpStatus. */
export function rtpHeaderLength(buf: Uint8Array, off: number, len: number): number {
  if (len < 12) return SrtpStatus.TooShort;
  const b0 = buf[off]!;
  if (b0 >> 6 !== 2) return SrtpStatus.BadVersion;
  let h = 12 + (b0 & 0x0f) * 4;
  if (b0 & 0x10) {
    if (h + 4 > len) return SrtpStatus.BadHeader;
    h += 4 + ((buf[off + h + 2]! << 8) | buf[off + h + 3]!) * 4;
  }
  return h > len ? SrtpStatus.BadHeader : h;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

function copyBytes(src: Uint8Array, s: number, dst: Uint8Array, d: number, n: number): void {
  if (src === dst && s === d) return;
  if (n <= 64) for (let i = 0; i < n; i++) dst[d + i] = src[s + i]!;
  else dst.set(src.subarray(s, s + n), d);
}

/** Constant-time comparison of n bytes. */
function equalCT(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  let diff = 0;
  for (let i = 0; i < n; i++) diff |= a[ao + i]! ^ b[bo + i]!;
  return diff === 0;
}

function validRegion(buf: Uint8Array, off: number, len: number): boolean {
  return buf instanceof Uint8Array && Number.isInteger(off) && Number.isInteger(len) && off >= 0 && len >= 0 && off + len <= buf.length;
}

class RecvState extends IndexState {
  readonly replay = new ReplayWindow();
}

/** Sender state of one SSRC: index plus the keystream run generated ahead (AES-CM). */
class SendState extends IndexState {
  /** Largest payload since the current run started; sets the stride of the next run. */
  maxPlen = 0;
  run: Buffer | null = null;
  runBase = 0;
  runStride = 0;
}

/** Default number of packets whose AES-CM keystream one ECB call produces ahead. */
const DEFAULT_KEYSTREAM_RUN = 8;
/** Payloads above this (bigger than any MTU-sized packet) never go into a run. */
const RUN_MAX_PAYLOAD = 2048;

export class SrtpCryptoContext {
  readonly profile: SrtpProfile;
  /** Bytes protectRtp adds (tag). */
  readonly rtpOverhead: number;
  /** Bytes protectRtcp adds (E/index word + tag). */
  readonly rtcpOverhead: number;
  readonly #gcm: boolean;
  readonly #tagLen: number;
  // AES-CM
  readonly #rtpKs: AesCmKeystream | null;
  readonly #rtcpKs: AesCmKeystream | null;
  readonly #rtpAuth: HmacSha1x80 | null;
  readonly #rtcpAuth: HmacSha1x80 | null;
  readonly #tag = Buffer.alloc(10);
  // GCM
  readonly #rtpKey: KeyObject;
  readonly #rtcpKey: KeyObject;
  readonly #rtpSalt: Buffer;
  readonly #rtcpSalt: Buffer;
  readonly #iv = Buffer.alloc(12);
  readonly #word = Buffer.alloc(4);
  readonly #aad = Buffer.alloc(12);
  // state
  readonly #send = new Map<number, SendState>();
  readonly #runLength: number;
  readonly #recv = new Map<number, RecvState>();
  readonly #rtcpRecv = new Map<number, ReplayWindow>();
  readonly #rtcpSendIndex = new Map<number, number>();
  readonly #srtcpIndex: SrtcpIndexSource;
  readonly #sv = new WordView();
  readonly #dv = new WordView();
  readonly #kv = new WordView();
  #lastSsrc = -1;
  #lastState: SendState | null = null;
  /** With the addon: the crypto of unprotectRtp, protectRtcp and unprotectRtcp (see options.native). */
  readonly #nativeRx: NativeSrtpContext | null = null;

  constructor(opts: SrtpCryptoContextOptions) {
    if (!opts || !isSrtpProfile(opts.profile)) {
      throw new SrtpOptionsError(
        `SrtpCryptoContext: profile must be SRTP_AES128_CM_HMAC_SHA1_80 (1) or SRTP_AEAD_AES_128_GCM (7), got ${opts?.profile}`,
      );
    }
    checkMasterKeys(opts.profile, opts.masterKey, opts.masterSalt, 'SrtpCryptoContext');
    const hmac = opts.hmac ?? 'auto';
    if (hmac !== 'auto' && hmac !== 'node' && !(hmac instanceof WasmHmacEngine)) {
      throw new SrtpOptionsError("SrtpCryptoContext: hmac must be 'auto', 'node' or a WasmHmacEngine");
    }
    const run = opts.keystreamRun ?? DEFAULT_KEYSTREAM_RUN;
    if (!Number.isInteger(run) || run < 1 || run > 64) {
      throw new SrtpOptionsError(`SrtpCryptoContext: keystreamRun must be an integer in 1..64, got ${opts.keystreamRun}`);
    }
    this.#runLength = run;
    if (opts.srtcpIndex !== undefined && typeof opts.srtcpIndex !== 'function') {
      throw new SrtpOptionsError('SrtpCryptoContext: srtcpIndex must be a function (ssrc) => next index');
    }
    this.profile = opts.profile;
    this.#gcm = opts.profile === SRTP_AEAD_AES_128_GCM;
    this.#tagLen = srtpOverhead(opts.profile);
    this.rtpOverhead = this.#tagLen;
    this.rtcpOverhead = this.#tagLen + 4;
    const k = deriveSessionKeys(opts.profile, opts.masterKey, opts.masterSalt);
    this.#rtpKey = createSecretKey(k.rtpKey);
    this.#rtcpKey = createSecretKey(k.rtcpKey);
    this.#rtpSalt = k.rtpSalt;
    this.#rtcpSalt = k.rtcpSalt;
    if (this.#gcm) {
      this.#rtpKs = this.#rtcpKs = null;
      this.#rtpAuth = this.#rtcpAuth = null;
    } else {
      this.#rtpKs = new AesCmKeystream(k.rtpKey, k.rtpSalt);
      this.#rtcpKs = new AesCmKeystream(k.rtcpKey, k.rtcpSalt);
      this.#rtpAuth = new HmacSha1x80(k.rtpAuthKey, hmac);
      this.#rtcpAuth = new HmacSha1x80(k.rtcpAuthKey, hmac);
    }
    const addon = opts.native !== false && hmac === 'auto' ? nativeSrtp() : null;
    if (addon !== null) {
      try {
        this.#nativeRx = new NativeSrtpContext(addon, opts.masterKey, opts.masterSalt, opts.profile);
      } catch {
        this.#nativeRx = null; // the JavaScript path, as without the addon
      }
    }
    this.#srtcpIndex = opts.srtcpIndex ?? ((ssrc) => {
      const next = ((this.#rtcpSendIndex.get(ssrc) ?? 0) + 1) & MAX_SRTCP_INDEX;
      this.#rtcpSendIndex.set(ssrc, next);
      return next;
    });
  }

  /** Which HMAC engine computes AES-CM tags ('none' for GCM, which has its own tag). */
  get hmacEngine(): 'wasm' | 'node' | 'none' {
    return this.#rtpAuth?.engine ?? 'none';
  }

  /** Sender ROC of an SSRC this context has protected, or undefined. */
  rocOf(ssrc: number): number | undefined {
    return this.#send.get(ssrc >>> 0)?.roc;
  }

  /** Whether this context has protected RTP with this SSRC. */
  hasSendState(ssrc: number): boolean {
    return this.#send.has(ssrc >>> 0);
  }

  /**
   * Protect one RTP packet: src[srcOff, srcOff+len) -> dst[dstOff, dstOff+len+rtpOverhead).
   * Returns the protected length or a negative SrtpStatus. With `tags` (AES-CM), the
   * authentication tag is recorded there instead of computed: dst is complete only after
   * tags.flush().
   */
  protectRtp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, tags?: TagBatch): number {
    if (!validRegion(src, srcOff, len)) return SrtpStatus.TooShort;
    const hlen = rtpHeaderLength(src, srcOff, len);
    if (hlen < 0) return hlen;
    const outLen = len + this.#tagLen;
    if (!validRegion(dst, dstOff, outLen)) return SrtpStatus.OutputTooSmall;
    const seq = (src[srcOff + 2]! << 8) | src[srcOff + 3]!;
    const ssrc = readU32(src, srcOff + 8);
    let st = ssrc === this.#lastSsrc ? this.#lastState : this.#send.get(ssrc);
    let roc: number;
    let ahead: boolean;
    if (st === undefined || st === null) {
      st = new SendState(seq, 0);
      this.#send.set(ssrc, st);
      roc = 0;
      ahead = true;
    } else {
      // RFC 3711 §3.3.1: a sender resending an older packet (a retransmission) must use the
      // ROC that packet had, so the sender estimates like a receiver does.
      roc = estimateRoc(seq, st.sl, st.roc);
      if (roc < 0) return SrtpStatus.IndexOutOfRange;
      ahead = roc * 65536 + seq > st.highest;
      st.advance(seq, roc);
    }
    this.#lastSsrc = ssrc;
    this.#lastState = st;
    copyBytes(src, srcOff, dst, dstOff, hlen);
    const plen = len - hlen;
    try {
      if (this.#gcm) return this.#gcmSeal(this.#rtpKey, src, srcOff + hlen, plen, dst, dstOff, hlen, this.#rtpIvFor(ssrc, roc, seq), null);
      if (plen > 0) {
        const index = roc * 65536 + seq;
        const k = index - st.runBase;
        let ks: Buffer;
        let ksOff = 0;
        if (st.run !== null && k >= 0 && k < this.#runLength && plen <= st.runStride) {
          ks = st.run;
          ksOff = k * st.runStride;
          if (plen > st.maxPlen) st.maxPlen = plen;
        } else if (ahead && this.#runLength > 1 && plen <= RUN_MAX_PAYLOAD) {
          // Stride: the largest payload of the previous run (or this one), so the run adapts
          // to the stream's packet sizes both ways.
          const stride = (Math.max(st.maxPlen, plen) + 15) & ~15;
          ks = st.run = this.#rtpKs!.generateRun(ssrc, index, this.#runLength, stride);
          st.runBase = index;
          st.runStride = stride;
          st.maxPlen = plen;
        } else {
          ks = this.#rtpKs!.generate(ssrc, roc, seq, plen);
        }
        xorKeystream(src, srcOff + hlen, dst, dstOff + hlen, ks, ksOff, plen, this.#sv, this.#dv, this.#kv);
      }
      // RFC 3711 §4.2: M = header || encrypted payload || ROC.
      if (tags !== undefined) tags.add(this.#rtpAuth!, dst, dstOff, len, roc);
      else this.#rtpAuth!.tag(dst, dstOff, len, roc, dst, dstOff + len);
    } catch {
      return SrtpStatus.OutputTooSmall;
    }
    return outLen;
  }

  /**
   * Verify and decrypt one SRTP packet into dst[dstOff, dstOff+len-rtpOverhead). Updates the
   * receive ROC and replay window only when the packet authenticates.
   */
  unprotectRtp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (!validRegion(src, srcOff, len)) return SrtpStatus.TooShort;
    const tagLen = this.#tagLen;
    if (len < 12 + tagLen) return SrtpStatus.TooShort;
    const plainLen = len - tagLen;
    const hlen = rtpHeaderLength(src, srcOff, plainLen);
    if (hlen < 0) return hlen;
    if (!validRegion(dst, dstOff, plainLen)) return SrtpStatus.OutputTooSmall;
    const seq = (src[srcOff + 2]! << 8) | src[srcOff + 3]!;
    const ssrc = readU32(src, srcOff + 8);
    const st = this.#recv.get(ssrc);
    const roc = st === undefined ? 0 : estimateRoc(seq, st.sl, st.roc);
    if (roc < 0) return SrtpStatus.IndexOutOfRange;
    const index = roc * 65536 + seq;
    if (st !== undefined && !st.replay.check(index)) return SrtpStatus.Replay;
    const plen = plainLen - hlen;
    try {
      if (this.#nativeRx !== null) {
        const r = this.#nativeRx.unprotectRtp(src, srcOff, len, dst, dstOff, roc);
        if (r < 0) return r;
      } else if (this.#gcm) {
        const r = this.#gcmOpen(this.#rtpKey, src, srcOff, hlen, plen, dst, dstOff, this.#rtpIvFor(ssrc, roc, seq), null);
        if (r < 0) return r;
      } else {
        this.#rtpAuth!.tag(src, srcOff, plainLen, roc, this.#tag, 0);
        if (!equalCT(this.#tag, 0, src, srcOff + plainLen, tagLen)) return SrtpStatus.AuthFailed;
        copyBytes(src, srcOff, dst, dstOff, hlen);
        if (plen > 0) {
          const ks = this.#rtpKs!.generate(ssrc, roc, seq, plen);
          xorKeystream(src, srcOff + hlen, dst, dstOff + hlen, ks, 0, plen, this.#sv, this.#dv, this.#kv);
        }
      }
    } catch {
      return SrtpStatus.AuthFailed;
    }
    if (st === undefined) {
      const ns = new RecvState(seq, roc);
      ns.replay.accept(index);
      this.#recv.set(ssrc, ns);
    } else {
      st.advance(seq, roc);
      st.replay.accept(index);
    }
    return plainLen;
  }

  /**
   * Protect one (compound) RTCP packet, RFC 3711 §3.4: encrypt everything after the first 8
   * bytes, append E-flag|SRTCP index and the tag (RFC 7714 §9 layout for GCM).
   */
  protectRtcp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (!validRegion(src, srcOff, len)) return SrtpStatus.TooShort;
    if (len < 8) return SrtpStatus.TooShort;
    if (src[srcOff]! >> 6 !== 2) return SrtpStatus.BadVersion;
    const outLen = len + this.rtcpOverhead;
    if (!validRegion(dst, dstOff, outLen)) return SrtpStatus.OutputTooSmall;
    const ssrc = readU32(src, srcOff + 4);
    const index = this.#srtcpIndex(ssrc) & MAX_SRTCP_INDEX;
    if (this.#nativeRx !== null) return this.#nativeRx.protectRtcp(src, srcOff, len, dst, dstOff, index);
    copyBytes(src, srcOff, dst, dstOff, 8);
    const plen = len - 8;
    const eIndex = (0x80000000 | index) >>> 0;
    try {
      if (this.#gcm) {
        // RFC 7714 §9.1/§17: AAD = first 8 bytes || E|index; index word goes after the tag.
        const aad = this.#aad;
        for (let i = 0; i < 8; i++) aad[i] = src[srcOff + i]!;
        writeU32(aad, 8, eIndex);
        const r = this.#gcmSeal(this.#rtcpKey, src, srcOff + 8, plen, dst, dstOff, 8, this.#rtcpIvFor(ssrc, index), aad);
        if (r < 0) return r;
        writeU32(dst, dstOff + len + 16, eIndex);
        return outLen;
      }
      if (plen > 0) {
        const ks = this.#rtcpKs!.generate(ssrc, index >>> 16, index & 0xffff, plen);
        xorKeystream(src, srcOff + 8, dst, dstOff + 8, ks, 0, plen, this.#sv, this.#dv, this.#kv);
      }
      writeU32(dst, dstOff + len, eIndex);
      this.#rtcpAuth!.tag(dst, dstOff, len + 4, -1, dst, dstOff + len + 4);
    } catch {
      return SrtpStatus.OutputTooSmall;
    }
    return outLen;
  }

  /** Verify and decrypt one SRTCP packet; returns the RTCP length or a negative SrtpStatus. */
  unprotectRtcp(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (!validRegion(src, srcOff, len)) return SrtpStatus.TooShort;
    const tagLen = this.#tagLen;
    if (len < 8 + 4 + tagLen) return SrtpStatus.TooShort;
    if (src[srcOff]! >> 6 !== 2) return SrtpStatus.BadVersion;
    const plainLen = len - 4 - tagLen;
    if (!validRegion(dst, dstOff, plainLen)) return SrtpStatus.OutputTooSmall;
    const ssrc = readU32(src, srcOff + 4);
    // CM: E|index then tag; GCM: tag then E|index (RFC 7714 §17).
    const idxOff = srcOff + (this.#gcm ? len - 4 : plainLen);
    const eIndex = readU32(src, idxOff);
    const encrypted = eIndex >>> 31 === 1;
    const index = eIndex & MAX_SRTCP_INDEX;
    let win = this.#rtcpRecv.get(ssrc);
    if (win !== undefined && !win.check(index)) return SrtpStatus.Replay;
    try {
      if (this.#nativeRx !== null) {
        const r = this.#nativeRx.unprotectRtcp(src, srcOff, len, dst, dstOff);
        if (r < 0) return r;
      } else if (this.#gcm) {
        const aad = this.#aad;
        const iv = this.#rtcpIvFor(ssrc, index);
        if (encrypted) {
          for (let i = 0; i < 8; i++) aad[i] = src[srcOff + i]!;
          writeU32(aad, 8, eIndex);
          const r = this.#gcmOpen(this.#rtcpKey, src, srcOff, 8, plainLen - 8, dst, dstOff, iv, aad);
          if (r < 0) return r;
        } else {
          // E = 0: the whole packet is authenticated only (RFC 7714 §9.2).
          const d = createDecipheriv('aes-128-gcm', this.#rtcpKey, iv);
          d.setAAD(src.subarray(srcOff, srcOff + plainLen));
          writeU32(this.#word, 0, eIndex);
          d.setAAD(this.#word);
          d.setAuthTag(src.subarray(srcOff + plainLen, srcOff + plainLen + 16));
          d.final();
          copyBytes(src, srcOff, dst, dstOff, plainLen);
        }
      } else {
        this.#rtcpAuth!.tag(src, srcOff, plainLen + 4, -1, this.#tag, 0);
        if (!equalCT(this.#tag, 0, src, srcOff + plainLen + 4, tagLen)) return SrtpStatus.AuthFailed;
        copyBytes(src, srcOff, dst, dstOff, encrypted ? 8 : plainLen);
        if (encrypted && plainLen > 8) {
          const ks = this.#rtcpKs!.generate(ssrc, index >>> 16, index & 0xffff, plainLen - 8);
          xorKeystream(src, srcOff + 8, dst, dstOff + 8, ks, 0, plainLen - 8, this.#sv, this.#dv, this.#kv);
        }
      }
    } catch {
      return SrtpStatus.AuthFailed;
    }
    if (win === undefined) {
      win = new ReplayWindow();
      this.#rtcpRecv.set(ssrc, win);
    }
    win.accept(index);
    return plainLen;
  }

  /** RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt. */
  #rtpIvFor(ssrc: number, roc: number, seq: number): Buffer {
    const iv = this.#iv;
    const s = this.#rtpSalt;
    iv[0] = s[0]!;
    iv[1] = s[1]!;
    iv[2] = s[2]! ^ (ssrc >>> 24);
    iv[3] = s[3]! ^ ((ssrc >>> 16) & 0xff);
    iv[4] = s[4]! ^ ((ssrc >>> 8) & 0xff);
    iv[5] = s[5]! ^ (ssrc & 0xff);
    iv[6] = s[6]! ^ (roc >>> 24);
    iv[7] = s[7]! ^ ((roc >>> 16) & 0xff);
    iv[8] = s[8]! ^ ((roc >>> 8) & 0xff);
    iv[9] = s[9]! ^ (roc & 0xff);
    iv[10] = s[10]! ^ (seq >>> 8);
    iv[11] = s[11]! ^ (seq & 0xff);
    return iv;
  }

  /** RFC 7714 §9.1: IV = (0x0000 || SSRC || 0x0000 || SRTCP index) XOR salt. */
  #rtcpIvFor(ssrc: number, index: number): Buffer {
    const iv = this.#iv;
    const s = this.#rtcpSalt;
    iv[0] = s[0]!;
    iv[1] = s[1]!;
    iv[2] = s[2]! ^ (ssrc >>> 24);
    iv[3] = s[3]! ^ ((ssrc >>> 16) & 0xff);
    iv[4] = s[4]! ^ ((ssrc >>> 8) & 0xff);
    iv[5] = s[5]! ^ (ssrc & 0xff);
    iv[6] = s[6]!;
    iv[7] = s[7]!;
    iv[8] = s[8]! ^ (index >>> 24);
    iv[9] = s[9]! ^ ((index >>> 16) & 0xff);
    iv[10] = s[10]! ^ ((index >>> 8) & 0xff);
    iv[11] = s[11]! ^ (index & 0xff);
    return iv;
  }

  /**
   * GCM seal: dst[dstOff, dstOff+hlen) already holds the header (the AAD unless `aad` is
   * given); writes ciphertext after it and the 16-byte tag after that.
   */
  #gcmSeal(
    key: KeyObject, src: Uint8Array, pOff: number, plen: number, dst: Uint8Array, dstOff: number, hlen: number,
    iv: Buffer, aad: Buffer | null,
  ): number {
    const c = createCipheriv('aes-128-gcm', key, iv);
    c.setAAD(aad ?? dst.subarray(dstOff, dstOff + hlen));
    if (plen > 0) {
      const enc = c.update(src.subarray(pOff, pOff + plen));
      dst.set(enc, dstOff + hlen);
    }
    c.final();
    dst.set(c.getAuthTag(), dstOff + hlen + plen);
    return hlen + plen + 16;
  }

  /** GCM open of src[off, off+hlen+plen+16); writes header + plaintext to dst only if the tag verifies. */
  #gcmOpen(
    key: KeyObject, src: Uint8Array, off: number, hlen: number, plen: number, dst: Uint8Array, dstOff: number,
    iv: Buffer, aad: Buffer | null,
  ): number {
    const d = createDecipheriv('aes-128-gcm', key, iv);
    d.setAAD(aad ?? src.subarray(off, off + hlen));
    d.setAuthTag(src.subarray(off + hlen + plen, off + hlen + plen + 16));
    const plain = plen > 0 ? d.update(src.subarray(off + hlen, off + hlen + plen)) : null;
    try {
      d.final();
    } catch {
      return SrtpStatus.AuthFailed;
    }
    copyBytes(src, off, dst, dstOff, hlen);
    if (plain !== null) dst.set(plain, dstOff + hlen);
    return hlen + plen;
  }
}
