/**
 * FastRtpSender: protect RTP/RTCP with the connection's SRTP keys and put it straight on the
 * selected ICE candidate pair's UDP socket, next to a werift RTCPeerConnection that keeps
 * doing ICE (including consent freshness), DTLS, SDP and incoming SRTP/SRTCP.
 *
 * What is shared with werift and how they stay apart:
 *   - Keys: read from werift's SRTP session (keys.ts). A new DTLS session (werift replaces
 *     `dtlsTransport.srtp`) is noticed on the next send and a fresh crypto context is built.
 *   - SRTP: the fast path owns the RTP SSRCs it sends; werift's sender never sends RTP unless
 *     someone calls writeRtp on it. If werift has already protected RTP with an SSRC, send()
 *     refuses that SSRC (SrtpStatus.SsrcInUse) instead of reusing keystream (RFC 3711 §9.1).
 *   - SRTCP: werift sends RTCP of its own (receiver reports, its sender's SR once it sent RTP)
 *     under the same key. The SRTCP index is therefore taken from werift's own per-SSRC
 *     counter, so both senders never reuse an index (RFC 3711 §3.4, §9.1).
 *   - Socket: UDP pairs are sent on with dgram directly; any other pair type (TURN, TCP) goes
 *     through werift's `connection.send`, which frames it correctly.
 *
 * Batching: send() encrypts at once but records the authentication tag in a process-wide
 * TagBatch and queues the datagram; a microtask computes the tags of everything queued in
 * this turn (equal-length packets four at a time in SIMD lanes) and hands the datagrams to
 * the sockets in the order they were sent. dgram only sends after a lookup tick anyway, so
 * this adds no delay. SRTCP is queued too (with its tag already computed) to keep the order.
 *
 * Sending: for a UDP pair with an IP literal the datagram goes straight to the socket's libuv
 * handle (udp.ts), which hands it to the kernel synchronously in the common case; otherwise
 * dgram's socket.send, which reads the bytes only after a DNS-lookup tick.
 *
 * Output buffers: protected packets are bump-allocated from a process-wide slab. Bytes that
 * went to dgram or werift, or that libuv queued, may be read later, so such a slab is never
 * rewritten: when it is full a new one is allocated and the old one is freed by the GC once
 * its sends completed. When every datagram of the turn was taken by the kernel at once (the
 * usual case on the direct path), the slab is reused from its start after the flush. One slab
 * serves every sender, so memory does not grow with the number of viewers.
 *
 * Native path (native/srtp.c via native.ts, AES-CM and GCM): when the addon is loaded, RTP is
 * protected in C with the index state kept there (one state for the whole session, whatever
 * the send path). For a UDP pair with an IP literal on a bound, unconnected dgram socket, the
 * protected datagram is written at once (protectSend, or one sendBatch call per fan-out:
 * batchId/batchResult), without the queue and the end-of-turn flush, on a twin of the socket
 * connected to the remote (connectedSend; IPv4) or else with sendto on the socket's fd; a full
 * socket buffer (EAGAIN) drops the packet and counts it as queueFull. The twin receives what
 * the remote sends, so it is read in native batches into werift's socket handler (#startTwin). SRTCP is still protected by SrtpCryptoContext and, on that path, sent the same way
 * (synchronously, so it keeps its order with the RTP). Any other pair goes through the slab and
 * the queue as before.
 */
import type { RTCDtlsTransport, RTCPeerConnection } from 'werift';
import { SrtpOptionsError, SrtpStatus } from './errors.ts';
import { SrtpCryptoContext } from './context.ts';
import { TagBatch } from './hmac.ts';
import { logger } from '../util/log.ts';
import { dtlsTransportOf, keysFromSession, type WeriftDtlsLike, type WeriftSrtpSessionLike } from './keys.ts';
import type { SrtpProfile } from './profile.ts';
import { DirectUdp, UDP_SENT, directUdp, udpDestinationOf, udpSendError, type UdpDestination } from './udp.ts';
import { NativeSrtpContext, nativeSrtp, type NativeSsrcStats } from './native.ts';
import { SRTP_AES128_CM_HMAC_SHA1_80 } from './profile.ts';
import { deliverTo, readDatagrams, type DatagramHandlerLike } from './reader.ts';

export interface FastRtpSenderOptions {
  /** Called when the socket reports a send error (the count is in stats.sendErrors either way). */
  onSendError?: (err: Error) => void;
  /**
   * Most datagrams handed to the socket and not yet reported sent (waiting for dgram's lookup
   * tick or queued in libuv because the kernel buffer is full). Past it send()/sendRtcp()
   * drop and return SrtpStatus.QueueFull, so a slow or dead viewer costs bounded memory and
   * never delays others. 0 (default) = no limit.
   */
  maxInFlight?: number;
  /**
   * With the native addon, send on a twin of the pair's socket connected to the remote
   * (connectTwin in native/srtp.c: no route lookup per packet) and read what the remote sends
   * from the twin in native batches, handing it to werift's socket handler. Default true.
   */
  connectedSend?: boolean;
}

export interface FastRtpSenderStats {
  rtpPackets: number;
  rtpBytes: number;
  rtcpPackets: number;
  rtcpBytes: number;
  /** Packets not sent, by cause. */
  notConnected: number;
  rejected: number;
  sendErrors: number;
  /** Dropped because maxInFlight datagrams were pending. */
  queueFull: number;
  /** Times a new DTLS session was picked up. */
  rekeys: number;
  /** RTP packets protected and sent by the native addon (included in rtpPackets). */
  nativePackets: number;
}

interface UdpSocketLike {
  send(msg: Uint8Array, offset: number, length: number, port: number, address: string, cb: (err: Error | null) => void): void;
}

interface PairLike {
  protocol: { type?: string; transport?: { type?: string; socket?: UdpSocketLike; closed?: boolean } & DatagramHandlerLike };
  remoteAddr: [string, number];
  packetsSent: number;
  bytesSent: number;
}

interface ConnectionLike {
  nominated?: PairLike;
  state?: string;
  canSendApplicationData?: () => boolean;
  send(data: Buffer): Promise<void>;
}

/**
 * SSRCs each FastRtpSender claimed under one werift SRTP session (one set of keys). A second
 * sender on the same connection must not protect the same SSRC with fresh index state: that
 * would repeat keystream (RFC 3711 §9.1). Claims last as long as the session.
 */
const claimed = new WeakMap<object, Map<number, FastRtpSender>>();

const SLAB_SIZE = 256 * 1024;
const MAX_PACKET = 65536;

/** The shared output slab (see the header comment). */
let slab: Buffer = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabPos = 0;

/**
 * Whether bytes of the current slab may still be read after the end-of-turn flush: some
 * datagram from it went to dgram or werift, or libuv queued it. While false, every datagram
 * written into the slab has been copied by the kernel when the flush ends, so the slab is
 * reused from the start instead of allocating a new one (fewer external allocations, which is
 * what drives V8's full GCs on a relay).
 */
let slabPinned = false;

/** Offset in `slab` of n fresh bytes; switches to a new slab when the current one is full. */
function reserve(n: number): number {
  if (slabPos + n > slab.length) {
    slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, n));
    slabPos = 0;
    slabPinned = false;
  }
  return slabPos;
}

const log = logger('srtp');

/** Tags of RTP packets protected in this turn of the event loop. */
const tags = new TagBatch();
/** Datagrams waiting for the end-of-turn flush, in send order (parallel arrays). */
// Entries [0, qn) are live; the arrays only grow (no per-turn reallocation of their storage).
const qSender: (FastRtpSender | null)[] = [];
const qPair: (PairLike | null)[] = [];
const qBuf: (Uint8Array | null)[] = [];
const qOff: number[] = [];
const qLen: number[] = [];
const qCounted: boolean[] = [];
let qn = 0;
let flushQueued = false;

/** Mark n bytes at `at` as used; keeps the next packet 8-byte aligned for the word-wise XOR. */
function commit(at: number, n: number): void {
  slabPos = at + ((n + 7) & ~7);
}

export class FastRtpSender {
  readonly stats: FastRtpSenderStats = {
    rtpPackets: 0, rtpBytes: 0, rtcpPackets: 0, rtcpBytes: 0, notConnected: 0, rejected: 0, sendErrors: 0, queueFull: 0, rekeys: 0,
    nativePackets: 0,
  };
  readonly #source: RTCPeerConnection | RTCDtlsTransport;
  readonly #onSendError: ((err: Error) => void) | undefined;
  readonly #sendDone: (err: Error | null) => void;
  /** Completion of a datagram libuv queued on the direct path (status: 0 or a negative errno). */
  readonly #sendQueued: (status: number) => void;
  /** Direct-send state of the socket last sent on (udp.ts), null when it has none. */
  #directSocket: UdpSocketLike | null = null;
  #direct: DirectUdp | null = null;
  readonly #maxInFlight: number;
  #inFlight = 0;
  /** The socket #inFlight counts for; a new socket (ICE restart) starts the count over. */
  #inFlightSocket: UdpSocketLike | null = null;
  #dtls: WeriftDtlsLike | null = null;
  #session: WeriftSrtpSessionLike | null = null;
  #ctx: SrtpCryptoContext | null = null;
  /** AES-CM sessions with the addon loaded: RTP protect (and, with #dest, the send) in C. */
  #native: NativeSrtpContext | null = null;
  /** The pair and socket handle the native context's destination was set for. */
  #destPair: PairLike | null = null;
  #dest: UdpDestination | null = null;
  #destOk = false;
  readonly #connectedSend: boolean;
  /** Stops reading the native context's connected twin (connectTwin), null without one. */
  #twinStop: (() => void) | null = null;
  /** Pair of the last batchId() that returned a context id (for batchResult). */
  #batchPair: PairLike | null = null;
  /** Routed packets/bytes of #native already added to stats and werift's counters. */
  #routedSeen: [number, number] = [0, 0];
  /** SSRCs this sender claimed under the current keys (see `claimed`). */
  #ownedSsrcs = new Set<number>();
  #closed = false;

  constructor(source: RTCPeerConnection | RTCDtlsTransport, opts: FastRtpSenderOptions = {}) {
    if (typeof source !== 'object' || source === null) {
      throw new SrtpOptionsError('FastRtpSender: pass a werift RTCPeerConnection or RTCDtlsTransport');
    }
    if (opts.onSendError !== undefined && typeof opts.onSendError !== 'function') {
      throw new SrtpOptionsError('FastRtpSender: onSendError must be a function');
    }
    this.#source = source;
    const maxInFlight = opts.maxInFlight ?? 0;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 0) {
      throw new SrtpOptionsError(`FastRtpSender: maxInFlight must be an integer >= 0 (0 = no limit), got ${opts.maxInFlight}`);
    }
    this.#maxInFlight = maxInFlight;
    this.#connectedSend = opts.connectedSend ?? true;
    this.#onSendError = opts.onSendError;
    this.#sendDone = (err) => {
      if (this.#inFlight > 0) this.#inFlight--;
      if (err) {
        this.stats.sendErrors++;
        this.#onSendError?.(err);
      }
    };
    this.#sendQueued = (status) => {
      const pair = this.#pair();
      this.#sendDone(status < 0 ? udpSendError(status, pair?.remoteAddr[0] ?? '', pair?.remoteAddr[1] ?? 0) : null);
    };
  }

  /** The negotiated profile once DTLS is connected, else undefined. */
  get profile(): SrtpProfile | undefined {
    return this.#context()?.profile;
  }

  /** True when keys and a selected candidate pair are available. */
  get ready(): boolean {
    return !this.#closed && this.#context() !== null && this.#pair() !== null;
  }

  /** Datagrams handed to the socket whose completion has not been reported yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Sender ROC of an SSRC sent through this sender (current DTLS session), or undefined. */
  rocOf(ssrc: number): number | undefined {
    return this.#native !== null ? this.#native.rocOf(ssrc) : this.#ctx?.rocOf(ssrc);
  }

  /** True while RTP goes out through the native addon's sendto (no libuv send queue in between). */
  get sendsNatively(): boolean {
    return this.#native !== null && this.#destOk && !this.#closed;
  }

  /** True while sends go through a twin socket connected to the remote (connectedSend). */
  get sendsConnected(): boolean {
    return this.#twinStop !== null && this.sendsNatively;
  }

  /**
   * Protect the RTP packet buf[off, off+len) and send it. Returns the protected length (the
   * datagram goes to the socket at the end of this event-loop turn, with the tags of all
   * packets queued in the turn computed together), or a negative SrtpStatus (nothing sent).
   * buf is only read, during this call, and may be reused as soon as it returns.
   */
  send(buf: Uint8Array, off: number, len: number): number {
    const ctx = this.#context();
    if (ctx === null) return this.#notConnected();
    const pair = this.#pair();
    if (pair === null) return this.#notConnected();
    if (this.#maxInFlight > 0 && this.#inFlight >= this.#maxInFlight && this.#sameSocket(pair)) return this.#full();
    if (!(buf instanceof Uint8Array && len > 0 && len <= MAX_PACKET)) return this.#reject(SrtpStatus.TooShort);
    if (len >= 12 && off >= 0 && off + 12 <= buf.length) {
      const ssrc = ((buf[off + 8]! << 24) | (buf[off + 9]! << 16) | (buf[off + 10]! << 8) | buf[off + 11]!) >>> 0;
      if (!this.#ownedSsrcs.has(ssrc) && !this.#claim(ssrc)) return this.#reject(SrtpStatus.SsrcInUse);
    }
    const nat = this.#native;
    if (nat !== null && this.#nativeDest(pair)) return this.#nativeResult(nat.protectSend(buf, off, len), pair);
    // Into the slab, then the queued send: the JavaScript context, or the addon for a pair it
    // cannot send on itself (TURN, TCP, scoped IPv6).
    const at = reserve(len + (nat ?? ctx).rtpOverhead);
    const out = slab;
    const n = nat !== null ? nat.protectRtp(buf, off, len, out, at) : ctx.protectRtp(buf, off, len, out, at, tags);
    if (n < 0) return this.#reject(n);
    commit(at, n);
    this.#enqueue(pair, out, at, n);
    this.stats.rtpPackets++;
    this.stats.rtpBytes += n;
    return n;
  }

  /**
   * For one native call over a whole fan-out (addon sendBatch): runs send()'s checks for
   * buf[off, off+len) and returns the native context id to protect and send it with, or -1
   * when this packet must go through send() instead (no native path, not connected, refused).
   * A caller that got an id passes the record's result to batchResult() after the batch.
   */
  batchId(buf: Uint8Array, off: number, len: number): number {
    if (this.#native === null) return -1;
    if (this.#context() === null) return -1;
    const nat = this.#native;
    const pair = this.#pair();
    if (nat === null || pair === null || !this.#nativeDest(pair)) return -1;
    this.#syncRouted(pair);
    if (!(len >= 12 && len <= MAX_PACKET && off >= 0 && off + len <= buf.length)) return -1;
    const ssrc = ((buf[off + 8]! << 24) | (buf[off + 9]! << 16) | (buf[off + 10]! << 8) | buf[off + 11]!) >>> 0;
    if (!this.#ownedSsrcs.has(ssrc) && !this.#claim(ssrc)) return -1;
    this.#batchPair = pair;
    return nat.id;
  }

  /**
   * Add what the addon sent for routed records (forward.ts sends those without a call per
   * packet) to stats and to werift's pair/transport counters. Runs on every batchId(), so the
   * figures lag by at most one route lease, and before the native context is replaced.
   */
  #syncRouted(pair: PairLike | null): void {
    const nat = this.#native;
    if (nat === null) return;
    const [p, b] = nat.routed();
    const dp = p - this.#routedSeen[0];
    const db = b - this.#routedSeen[1];
    if (dp <= 0) return;
    this.#routedSeen = [p, b];
    this.stats.rtpPackets += dp;
    this.stats.nativePackets += dp;
    this.stats.rtpBytes += db + dp * nat.rtpOverhead;
    if (pair !== null) {
      pair.packetsSent += dp;
      pair.bytesSent += db + dp * nat.rtpOverhead;
    }
    const dtls = this.#dtls;
    if (dtls !== null) {
      if (typeof dtls.packetsSent === 'number') dtls.packetsSent += dp;
      if (typeof dtls.bytesSent === 'number') dtls.bytesSent += db + dp * nat.rtpOverhead;
    }
  }

  /** Bring stats up to date with packets the addon sent for routed records. */
  refreshStats(): FastRtpSenderStats {
    if (!this.#closed) this.#syncRouted(this.#destPair);
    return this.stats;
  }

  /** Sender info (RFC 3550 §6.4.1) of this SSRC's routed packets under the current keys, or null. */
  nativeSsrcStats(ssrc: number): NativeSsrcStats | null {
    return this.#native?.ssrcStats(ssrc) ?? null;
  }

  /** Account for the result of a batched send whose id came from batchId(); returns it. */
  batchResult(n: number): number {
    const pair = this.#batchPair;
    if (pair === null) return this.#reject(n < 0 ? n : SrtpStatus.NotConnected);
    return this.#nativeResult(n, pair);
  }

  /** Statistics and errors of a native protect-and-send (protectSend or a batch record). */
  #nativeResult(n: number, pair: PairLike): number {
    if (n >= 0) {
      this.stats.rtpPackets++;
      this.stats.nativePackets++;
      this.stats.rtpBytes += n;
      this.#sentOn(pair, n);
      return n;
    }
    if (n === SrtpStatus.QueueFull) return this.#full();
    if (n === SrtpStatus.SendFailed) {
      this.stats.sendErrors++;
      if (this.#onSendError !== undefined) {
        const errno = this.#native?.lastErrno() ?? 0;
        this.#onSendError(udpSendError(-errno, pair.remoteAddr[0], pair.remoteAddr[1]));
      }
      return n;
    }
    return this.#reject(n);
  }

  /**
   * Whether the native context's destination is `pair` on its socket's current handle (set
   * here when the pair or handle changed). A closed socket's handle is gone from dgram's state
   * before its fd can be reused, so the handle check keeps sendto off a recycled fd.
   */
  #nativeDest(pair: PairLike): boolean {
    const transport = pair.protocol.transport;
    const socket = transport?.socket;
    if (transport?.type !== 'udp' || socket === undefined || transport.closed) return false;
    const d = this.#dest;
    if (pair === this.#destPair && d !== null && d.socket === socket && d.current()) return this.#destOk;
    this.#stopTwin(); // before setDestination closes the twin
    this.#destPair = pair;
    this.#dest = udpDestinationOf(socket, pair.remoteAddr[0], pair.remoteAddr[1]);
    this.#destOk = this.#dest !== null && this.#native!.setDestination(this.#dest.fd, this.#dest.ip, this.#dest.port);
    if (!this.#destOk) this.#native!.setDestination(-1, '', 0);
    else this.#startTwin(transport, this.#dest!);
    return this.#destOk;
  }

  /**
   * Send on a connected twin of the socket (see connectedSend). The twin receives everything
   * the remote sends from now on, so it is read at once and each datagram handed to werift's
   * handler as Node would; if reading cannot start, the twin is closed again.
   */
  #startTwin(transport: NonNullable<PairLike['protocol']['transport']>, dest: UdpDestination): void {
    const nat = this.#native;
    if (!this.#connectedSend || nat === null || typeof transport.onData !== 'function') return;
    if ((transport.socket as { type?: string } | undefined)?.type !== 'udp4') return;
    const fd = nat.connectTwin();
    if (fd < 0) return;
    const stop = readDatagrams(fd, deliverTo(transport));
    if (stop === undefined) {
      nat.setDestination(dest.fd, dest.ip, dest.port); // closes the twin: the original socket receives again
      return;
    }
    this.#twinStop = stop;
  }

  #stopTwin(): void {
    const stop = this.#twinStop;
    this.#twinStop = null;
    stop?.();
  }

  /** Keep werift's getStats() figures for the pair and the transport meaningful. */
  #sentOn(pair: PairLike, n: number): void {
    pair.packetsSent++;
    pair.bytesSent += n;
    const dtls = this.#dtls;
    if (dtls !== null) {
      if (typeof dtls.packetsSent === 'number') dtls.packetsSent++;
      if (typeof dtls.bytesSent === 'number') dtls.bytesSent += n;
    }
  }

  /**
   * Protect the (compound) RTCP packet buf[off, off+len) as SRTCP and send it, in order with
   * the RTP queued before it. Returns the protected length or a negative SrtpStatus.
   */
  sendRtcp(buf: Uint8Array, off: number, len: number): number {
    const ctx = this.#context();
    if (ctx === null) return this.#notConnected();
    const pair = this.#pair();
    if (pair === null) return this.#notConnected();
    if (this.#maxInFlight > 0 && this.#inFlight >= this.#maxInFlight && this.#sameSocket(pair)) return this.#full();
    if (!(buf instanceof Uint8Array && len > 0 && len <= MAX_PACKET)) return this.#reject(SrtpStatus.TooShort);
    const at = reserve(len + ctx.rtcpOverhead);
    const out = slab;
    const n = ctx.protectRtcp(buf, off, len, out, at);
    if (n < 0) return this.#reject(n);
    if (this.#native !== null && this.#nativeDest(pair)) {
      // Sent now, like the RTP on this path; the slab bytes are not needed after the call.
      const r = this.#native.sendRaw(out, at, n);
      if (r < 0) return r === SrtpStatus.QueueFull ? this.#full() : this.#nativeSendError(r, pair);
      this.#sentOn(pair, n);
      this.stats.rtcpPackets++;
      this.stats.rtcpBytes += n;
      return n;
    }
    commit(at, n);
    this.#enqueue(pair, out, at, n);
    this.stats.rtcpPackets++;
    this.stats.rtcpBytes += n;
    return n;
  }

  /**
   * Send bytes that are already SRTP/SRTCP-protected. buf[off, off+len) must stay unchanged
   * until the next event-loop tick (dgram reads it after its address lookup).
   */
  sendProtected(buf: Uint8Array, off: number, len: number): number {
    if (this.#closed) return SrtpStatus.Closed;
    const pair = this.#pair();
    if (pair === null) return this.#notConnected();
    if (!(buf instanceof Uint8Array && len > 0 && off >= 0 && off + len <= buf.length)) return this.#reject(SrtpStatus.TooShort);
    if (this.#native !== null && this.#context() !== null && this.#nativeDest(pair)) {
      const r = this.#native.sendRaw(buf, off, len);
      if (r < 0) return r === SrtpStatus.QueueFull ? this.#full() : this.#nativeSendError(r, pair);
      this.#sentOn(pair, len);
      return len;
    }
    this.#transmit(pair, buf, off, len, this.#count(pair));
    return len;
  }

  /**
   * Send a datagram that is not media (a STUN message of the ICE upkeep) to the selected pair's
   * remote with the addon's sendto. False when the native path is not in use or the send failed:
   * the caller sends it its own way. Not counted in the SRTP or transport figures.
   */
  sendDatagram(buf: Uint8Array, off: number, len: number): boolean {
    if (this.#closed || this.#native === null || this.#context() === null) return false;
    const pair = this.#pair();
    if (pair === null || !this.#nativeDest(pair)) return false;
    return this.#native.sendRaw(buf, off, len) >= 0;
  }

  #nativeSendError(r: number, pair: PairLike): number {
    if (r !== SrtpStatus.SendFailed) return this.#reject(r);
    this.stats.sendErrors++;
    this.#onSendError?.(udpSendError(-(this.#native?.lastErrno() ?? 0), pair.remoteAddr[0], pair.remoteAddr[1]));
    return r;
  }

  /** Stop sending; later calls return SrtpStatus.Closed. Idempotent; the connection stays open. */
  close(): void {
    this.#syncRouted(this.#destPair);
    this.#closed = true;
    this.#stopTwin();
    this.#native?.destroy();
    this.#native = null;
    this.#destPair = null;
    this.#dest = null;
    this.#destOk = false;
    this.#ctx = null;
    this.#session = null;
    this.#dtls = null;
  }

  #notConnected(): number {
    if (this.#closed) return SrtpStatus.Closed;
    this.stats.notConnected++;
    return SrtpStatus.NotConnected;
  }

  /** First use of `ssrc` under these keys: neither werift nor another sender may have used it. */
  #claim(ssrc: number): boolean {
    const session = this.#session;
    if (session === null) return false;
    const states = session.localContext?.srtpSSRCStates;
    if (states && Object.prototype.hasOwnProperty.call(states, ssrc)) return false;
    let owners = claimed.get(session);
    if (owners === undefined) {
      owners = new Map();
      claimed.set(session, owners);
    }
    const owner = owners.get(ssrc);
    if (owner !== undefined && owner !== this) return false;
    owners.set(ssrc, this);
    this.#ownedSsrcs.add(ssrc);
    return true;
  }

  #full(): number {
    this.stats.queueFull++;
    return SrtpStatus.QueueFull;
  }

  /** Whether `pair` still uses the socket #inFlight counts for (else the count restarts). */
  #sameSocket(pair: PairLike): boolean {
    if (pair.protocol.transport?.socket === this.#inFlightSocket) return true;
    this.#inFlight = 0;
    this.#inFlightSocket = null;
    return false;
  }

  #reject(code: number): number {
    this.stats.rejected++;
    return code;
  }

  /** The crypto context for werift's current SRTP session, rebuilt when werift rekeys. */
  #context(): SrtpCryptoContext | null {
    if (this.#closed) return null;
    let dtls = this.#dtls;
    if (dtls === null) {
      try {
        dtls = dtlsTransportOf(this.#source);
      } catch {
        return null;
      }
      this.#dtls = dtls;
    }
    if (dtls.state !== 'connected') return null;
    const session = dtls.srtp;
    if (session === undefined) return null;
    if (session !== this.#session) {
      // A new DTLS session means new master keys; indexes start over with them.
      let keys;
      try {
        keys = keysFromSession(session);
      } catch {
        return null; // a profile the fast path does not implement: never send under it
      }
      const werift = dtls.srtcp?.localContext;
      const getState = werift?.getSrtcpSsrcState;
      this.#ctx = new SrtpCryptoContext({
        profile: keys.profile,
        masterKey: keys.localMasterKey,
        masterSalt: keys.localMasterSalt,
        // Without werift's counter (another werift version) the context counts on its own.
        srtcpIndex: typeof getState === 'function' ? (ssrc) => nextWeriftSrtcpIndex(getState.call(werift, ssrc)) : undefined,
      });
      // RTP goes through the addon when it is loaded (native.ts logs which path once).
      this.#syncRouted(this.#destPair);
      this.#stopTwin();
      this.#native?.destroy();
      this.#routedSeen = [0, 0];
      this.#native = null;
      this.#destPair = null;
      this.#dest = null;
      this.#destOk = false;
      const addon = nativeSrtp();
      if (addon !== null) {
        try {
          this.#native = new NativeSrtpContext(addon, keys.localMasterKey, keys.localMasterSalt, keys.profile);
        } catch (err) {
          log.warn('native SRTP context failed; this session uses the JavaScript path', { err: err as Error });
        }
      }
      if (this.#session !== null) this.stats.rekeys++;
      this.#session = session;
      this.#ownedSsrcs = new Set();
    }
    return this.#ctx;
  }

  #pair(): PairLike | null {
    const conn = this.#dtls?.iceTransport.connection as ConnectionLike | undefined;
    if (conn === undefined) return null;
    const pair = conn.nominated;
    if (pair === undefined) return null;
    // RFC 7675: no application data without fresh consent (werift keeps checking it).
    if (typeof conn.canSendApplicationData === 'function') {
      if (!conn.canSendApplicationData()) return null;
    } else if (conn.state === 'closed' || conn.state === 'failed') {
      return null;
    }
    return pair;
  }

  /** Count a datagram for `pair` as in flight (UDP pairs only, which report completion). */
  #count(pair: PairLike): boolean {
    const transport = pair.protocol.transport;
    const socket = transport?.socket;
    if (transport?.type !== 'udp' || socket === undefined) return false;
    if (socket !== this.#inFlightSocket) {
      this.#inFlightSocket = socket;
      this.#inFlight = 0;
    }
    this.#inFlight++;
    return true;
  }

  /** Queue a protected datagram for the end-of-turn flush (see the header comment). */
  #enqueue(pair: PairLike, buf: Uint8Array, off: number, n: number): void {
    const i = qn++;
    qSender[i] = this;
    qPair[i] = pair;
    qBuf[i] = buf;
    qOff[i] = off;
    qLen[i] = n;
    qCounted[i] = this.#count(pair);
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(FastRtpSender.#flush);
    }
  }

  /** Compute the queued tags, then send every queued datagram in order. */
  static #flush(): void {
    flushQueued = false;
    try {
      tags.flush();
    } catch (err) {
      // Not expected (pure computation); the receivers will drop what has no valid tag.
      log.error('SRTP tag batch failed', { err: err as Error });
    }
    const n = qn;
    for (let i = 0; i < n; i++) {
      try {
        qSender[i]!.#transmit(qPair[i]!, qBuf[i]!, qOff[i]!, qLen[i]!, qCounted[i]!);
      } catch (err) {
        log.warn('fast-path send failed', { err: err as Error });
      }
    }
    // A send from a callback during the loop queued more (and scheduled the next flush): keep
    // those, in order, for it; they are in the slab, so it is not reused yet.
    const more = qn - n;
    for (let i = 0; i < more; i++) {
      qSender[i] = qSender[n + i]!;
      qPair[i] = qPair[n + i]!;
      qBuf[i] = qBuf[n + i]!;
      qOff[i] = qOff[n + i]!;
      qLen[i] = qLen[n + i]!;
      qCounted[i] = qCounted[n + i]!;
    }
    for (let i = more; i < qn; i++) {
      qSender[i] = null;
      qPair[i] = null;
      qBuf[i] = null;
    }
    qn = more;
    if (more === 0 && !slabPinned) slabPos = 0;
  }

  #directOf(socket: UdpSocketLike): DirectUdp | null {
    if (socket !== this.#directSocket) {
      this.#directSocket = socket;
      this.#direct = directUdp(socket);
    }
    return this.#direct;
  }

  #transmit(pair: PairLike, buf: Uint8Array, off: number, n: number, counted: boolean): void {
    const transport = pair.protocol.transport;
    const socket = transport?.socket;
    if (transport?.type === 'udp' && socket !== undefined && !transport.closed) {
      if (!counted) this.#count(pair);
      let sent = false;
      const port = pair.remoteAddr[1];
      const ip = pair.remoteAddr[0];
      try {
        // Straight to the socket's UDP handle when Node's internals allow (udp.ts), else dgram.
        const r = this.#directOf(socket)?.send(buf, off, n, port, ip, this.#sendQueued) ?? null;
        if (r === UDP_SENT) {
          if (this.#inFlight > 0) this.#inFlight--;
          sent = true;
        } else if (r === null) {
          socket.send(buf, off, n, port, ip, this.#sendDone);
        } else if (r < 0) {
          this.#sendDone(udpSendError(r, ip, port));
          return;
        } // else UDP_QUEUED: #sendQueued runs when libuv has sent it
      } catch (err) {
        // Synchronous throws: socket closed between the check and the call, bad address.
        this.#sendDone(err as Error);
        return;
      } finally {
        if (!sent && buf === slab) slabPinned = true;
      }
    } else {
      if (buf === slab) slabPinned = true;
      if (counted && this.#inFlight > 0) this.#inFlight--; // no callback will come for it
      const conn = this.#dtls?.iceTransport.connection as ConnectionLike | undefined;
      if (conn === undefined) return;
      // werift's own path: it has no completion callback to count, so no in-flight bound here.
      conn.send(Buffer.from(buf.buffer, buf.byteOffset + off, n)).catch((err: Error) => {
        this.stats.sendErrors++;
        this.#onSendError?.(err);
      });
      return;
    }
    this.#sentOn(pair, n);
  }
}

/**
 * Next SRTCP index from werift's per-SSRC SRTCP state, mirroring SrtcpContext.encryptRTCP
 * (increment, wrap past 2^31 - 1 to 0), so werift's and our SRTCP packets under one key share
 * one index sequence per SSRC.
 */
function nextWeriftSrtcpIndex(s: { srtcpIndex: number }): number {
  s.srtcpIndex++;
  if (s.srtcpIndex > 0x7fffffff) s.srtcpIndex = 0;
  return s.srtcpIndex;
}
