/**
 * Fast RTCP intake on a downstream leg (a viewer or a child relay): the SRTCP it sends (receiver
 * reports, generic NACKs, PLIs, FIRs) is verified and decrypted with the fast path's crypto
 * context and parsed here, without werift's per-packet cipher and HMAC objects and RTCP objects
 * (werift spent ~150 us on each receiver report of a bench viewer; this path a few).
 *
 * Only compounds made of packet types this relay understands are taken: SR, RR and SDES
 * (nothing to do: the relay keeps no per-viewer reception statistics), RTPFB (generic NACK,
 * RFC 4585 §6.2.1; other formats such as transport-cc are not used) and PSFB (PLI, RFC 4585
 * §6.3.1; FIR, RFC 5104 §4.3.1; others such as REMB are not used). Anything else (BYE, APP, XR,
 * unknown types), a malformed compound, and a packet the context does not accept (bad tag,
 * replay, keys not readable) goes to werift exactly as it arrived: it decrypts into a separate
 * buffer, so the datagram is untouched when werift gets it.
 */
import type { RTCDtlsTransport } from 'werift';
import { logger } from '../util/log.ts';
import { interceptDatagrams, RemoteSrtp } from './werift-datagrams.ts';

const log = logger('relay:feedback');

export interface FeedbackSink {
  /** Generic NACK for media SSRC `ssrc`: the lost sequence numbers. */
  nack(ssrc: number, lost: number[]): void;
  /** PLI or FIR for media SSRC `ssrc`. */
  keyframe(ssrc: number): void;
  /** A compound was taken by the fast intake (for metrics). */
  taken?(): void;
}

const RTCP_SR = 200;
const RTCP_RR = 201;
const RTCP_SDES = 202;
const RTCP_RTPFB = 205;
const RTCP_PSFB = 206;
const FMT_NACK = 1;
const FMT_PLI = 1;
const FMT_FIR = 4;

/** Decrypted RTCP goes here (grown on demand; one thread). */
let plain = Buffer.alloc(2048);

export class FastFeedback {
  readonly #remote: RemoteSrtp;
  readonly #sink: FeedbackSink;
  #unhook: (() => void) | undefined;
  #broken = false;
  /** compounds handled here, and ones handed to werift after a failed check */
  handled = 0;
  passed = 0;

  constructor(dtls: RTCDtlsTransport, sink: FeedbackSink) {
    this.#remote = new RemoteSrtp(dtls);
    this.#sink = sink;
    this.#unhook = interceptDatagrams(dtls, (data) => this.#take(data));
  }

  /** Whether the intercept is installed (false: werift handles all RTCP). */
  get active(): boolean {
    return this.#unhook !== undefined;
  }

  #take(data: Buffer): boolean {
    // RFC 7983 §7: 128..191 is RTP/RTCP; RFC 5761 §4: PT 192..223 is RTCP.
    const len = data.length;
    if (len < 8 || this.#broken) return false;
    const b0 = data[0]!;
    const pt = data[1]!;
    if (b0 < 128 || b0 > 191 || pt < 192 || pt > 223) return false;
    let ctx;
    try {
      ctx = this.#remote.get();
    } catch (e) {
      this.#broken = true; // keys not readable: werift keeps this leg's RTCP for good
      log.warn('fast RTCP intake unavailable; werift handles it', { err: e as Error });
      return false;
    }
    if (!ctx) return false;
    if (plain.length < len) plain = Buffer.alloc(len * 2);
    const n = ctx.unprotectRtcp(data, 0, len, plain, 0);
    if (n < 0 || !wellFormed(plain, n)) {
      this.passed++;
      return false;
    }
    this.handled++;
    this.#sink.taken?.();
    dispatchFeedback(plain, n, this.#sink);
    return true;
  }

  close(): void {
    this.#unhook?.();
    this.#unhook = undefined;
  }
}

/** Call `sink` for each NACK, PLI and FIR of the compound b[0, n) (checked with wellFormed). */
export function dispatchFeedback(b: Buffer, n: number, sink: FeedbackSink): void {
  for (let off = 0; off + 4 <= n; ) {
    const fmt = b[off]! & 0x1f;
    const pt = b[off + 1]!;
    const end = off + 4 + b.readUInt16BE(off + 2) * 4;
    if (pt === RTCP_RTPFB && fmt === FMT_NACK && end - off >= 12) {
      // FCI: PID (16) and BLP (16) per entry, RFC 4585 §6.2.1.
      const lost: number[] = [];
      for (let f = off + 12; f + 4 <= end; f += 4) {
        const pid = b.readUInt16BE(f);
        const blp = b.readUInt16BE(f + 2);
        lost.push(pid);
        for (let i = 0; i < 16; i++) if (blp & (1 << i)) lost.push((pid + i + 1) & 0xffff);
      }
      if (lost.length > 0) sink.nack(b.readUInt32BE(off + 8), lost);
    } else if (pt === RTCP_PSFB && fmt === FMT_PLI && end - off >= 12) {
      sink.keyframe(b.readUInt32BE(off + 8));
    } else if (pt === RTCP_PSFB && fmt === FMT_FIR) {
      // RFC 5104 §4.3.1.1: the media source field is unused; each FCI entry names an SSRC.
      for (let f = off + 12; f + 8 <= end; f += 8) sink.keyframe(b.readUInt32BE(f));
    }
    off = end;
  }
}

/**
 * A compound of version-2 packets whose lengths add up to exactly `n`, each of a type this
 * relay understands (see the header comment).
 */
export function wellFormed(b: Uint8Array, n: number): boolean {
  let off = 0;
  while (off < n) {
    if (off + 4 > n) return false;
    if (b[off]! >> 6 !== 2) return false;
    const pt = b[off + 1]!;
    if (pt !== RTCP_SR && pt !== RTCP_RR && pt !== RTCP_SDES && pt !== RTCP_RTPFB && pt !== RTCP_PSFB) return false;
    const words = (b[off + 2]! << 8) | b[off + 3]!;
    off += 4 + words * 4;
  }
  return off === n && n > 0;
}
