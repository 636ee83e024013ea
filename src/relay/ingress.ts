/**
 * Fast ingress: SRTP packets from the upstream are verified and decrypted with the fast path's
 * crypto context (src/srtp) in the datagram buffer itself and handed to the core, skipping
 * werift's per-packet objects (a decipher and HMAC object, an RtpPacket, its clone and a
 * re-serialization).
 *
 * werift still makes the demultiplexing decision: the first packet of every SSRC goes through
 * werift's receiver, whose track tells us which stream track the SSRC belongs to (`learn`); the
 * following packets of that SSRC take the fast path. Everything else (STUN, DTLS, SRTCP, unknown
 * SSRCs) goes to werift unchanged. A packet that fails authentication is dropped, as werift does
 * (RFC 3711 §3.3 step 5).
 */
import type { RTCDtlsTransport } from 'werift';
import type { SrtpCryptoContext } from '../srtp/index.ts';
import { logger } from '../util/log.ts';
import { interceptDatagrams, readConnectionSockets, RemoteSrtp } from './werift-datagrams.ts';

const log = logger('relay:ingress');

export type Deliver = (track: number, ssrc: number, pkt: Uint8Array) => void;

export interface FastIngressOptions {
  /** test hook: sees the clear header before decryption, as a lossy network would; true drops */
  drop?: (track: number, seq: number) => boolean;
  /** a packet was decrypted here instead of by werift */
  onFast?: () => void;
  /** a packet was taken straight from the native batched reader (no per-datagram Node callback) */
  onBatched?: () => void;
}

export class FastIngress {
  readonly #dtls: RTCDtlsTransport;
  readonly #deliver: Deliver;
  readonly #tracks = new Map<number, number>();
  readonly #remote: RemoteSrtp;
  #unhook: (() => void) | undefined;
  #unread: (() => void) | undefined;
  /** packets that failed SRTP authentication on the fast path */
  rejected = 0;
  handled = 0;

  readonly #drop?: (track: number, seq: number) => boolean;
  readonly #onFast?: () => void;
  readonly #onBatched?: () => void;

  constructor(dtls: RTCDtlsTransport, deliver: Deliver, opts: FastIngressOptions = {}) {
    this.#dtls = dtls;
    this.#remote = new RemoteSrtp(dtls);
    this.#deliver = deliver;
    this.#drop = opts.drop;
    this.#onFast = opts.onFast;
    this.#onBatched = opts.onBatched;
  }

  /** werift routed a packet of `ssrc` to stream track `track`: later packets of it go fast. */
  learn(ssrc: number, track: number): void {
    if (this.#tracks.get(ssrc) === track) return;
    this.#tracks.set(ssrc, track);
    this.#install();
  }

  #install(): void {
    if (this.#unhook) return;
    const take = (data: Buffer): boolean => this.#fast(data);
    this.#unhook = interceptDatagrams(this.#dtls, take);
    // Every upstream packet comes in here: read the sockets in native batches when possible.
    const onBatched = this.#onBatched;
    this.#unread = readConnectionSockets(this.#dtls, (data) => {
      if (!this.#fast(data)) return false;
      onBatched?.();
      return true;
    });
  }

  /** True when the packet was taken (delivered or rejected). */
  #fast(data: Buffer): boolean {
    // RFC 7983 §7: 128..191 is RTP/RTCP; RFC 5761 §4: PT 192..223 is RTCP (left to werift).
    const len = data.length;
    if (len < 12) return false;
    const b0 = data[0]!;
    const pt = data[1]!;
    if (b0 < 128 || b0 > 191 || (pt >= 192 && pt <= 223)) return false;
    const ssrc = ((data[8]! << 24) | (data[9]! << 16) | (data[10]! << 8) | data[11]!) >>> 0;
    const track = this.#tracks.get(ssrc);
    if (track === undefined) return false;
    const ctx = this.#context();
    if (!ctx) return false;
    // Dropped before the replay window sees it, so a retransmission of it is still accepted.
    if (this.#drop?.(track, (data[2]! << 8) | data[3]!)) return true;
    const n = ctx.unprotectRtp(data, 0, len, data, 0);
    if (n < 0) {
      this.rejected++;
      return true;
    }
    this.handled++;
    this.#onFast?.();
    this.#deliver(track, ssrc, data.subarray(0, n));
    return true;
  }

  #context(): SrtpCryptoContext | undefined {
    try {
      return this.#remote.get();
    } catch (e) {
      log.warn('fast ingress unavailable; werift decrypts', { err: e as Error });
      this.#tracks.clear();
      return undefined;
    }
  }

  close(): void {
    this.#unread?.();
    this.#unread = undefined;
    this.#unhook?.();
    this.#unhook = undefined;
    this.#tracks.clear();
  }
}
