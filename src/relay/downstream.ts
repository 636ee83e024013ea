/**
 * One downstream (viewer or child relay) of a stream: its werift peer, the negotiated output of
 * each stream track (SSRC, payload type, extension ids), its egress (the SRTP fast path, or
 * werift's own send when the fast path cannot be set up), and its RTCP in (NACK, PLI/FIR, RR).
 *
 * Backpressure: every send goes through a per-downstream bound (`maxQueue` datagrams waiting in
 * the socket's send queue). Past it the packet is dropped for this downstream only and counted,
 * so one slow or dead viewer never delays the others.
 */
import { RtpPacket, type RTCPeerConnection, type RTCRtpTransceiver, type RTCDtlsTransport } from 'werift';
import type { Clock } from '../util/clock.ts';
import { logger } from '../util/log.ts';
import type { RelayMetrics } from './metrics.ts';
import { sendRawRtcp } from './peer.ts';
import { createFastEgress, type Egress } from './egress.ts';
import { buildExtMap, remapExtIds } from './extmap.ts';
import { FastFeedback } from './feedback.ts';
import { FastIce } from './werift-stun.ts';

const log = logger('relay:downstream');

export interface Binding {
  /** stream track index */
  track: number;
  transceiver: RTCRtpTransceiver;
  ssrc: number;
  payloadType: number;
  clockRate: number;
  extIds: Map<string, number>;
  /** upstream -> downstream extension id map, null for identity (see extmap.ts) */
  extMap?: Uint8Array | null;
}

export interface DownstreamEvents {
  nack(ds: Downstream, track: number, seqs: number[]): void;
  keyframeRequest(ds: Downstream, track: number): void;
  /** the transport became able to send (DTLS up): start with the cached keyframe */
  ready(ds: Downstream): void;
  /** the ICE connection changed state (consent expiry, restart, failure): re-check before sending */
  connectionChanged?(ds: Downstream): void;
}

export interface DownstreamOptions {
  id: string;
  kind: 'viewer' | 'relay';
  pc: RTCPeerConnection;
  bindings: Binding[];
  metrics: RelayMetrics;
  maxQueue: number;
  fastPath: boolean;
  clock: Clock;
}

/** Per-binding sender statistics for RTCP SR (RFC 3550 §6.4.1). */
interface SendStats {
  packets: number;
  octets: number;
  lastTs: number;
  lastAt: number;
  sent: boolean;
}

export class Downstream {
  readonly id: string;
  readonly kind: 'viewer' | 'relay';
  readonly bindings: Binding[];
  /** binding by stream track index */
  readonly byTrack: (Binding | undefined)[] = [];
  /** index of this downstream in the core (set by the stream) */
  coreIndex = -1;
  /** per stream track: core munger output index */
  coreOuts: number[] = [];
  readonly stats: SendStats[] = [];
  dropped = 0;
  sent = 0;
  #pc: RTCPeerConnection;
  #metrics: RelayMetrics;
  #maxQueue: number;
  #fastPath: boolean;
  #egress?: Egress;
  #events?: DownstreamEvents;
  #closed = false;
  #ready = false;
  #subs: { unSubscribe: () => void }[] = [];
  #clock: Clock;
  #lastSr = 0;
  /** Clock time of the next tick with work to do (sender report, consent check or expiry). */
  #due = 0;
  #feedback?: FastFeedback;
  #ice?: FastIce;

  constructor(o: DownstreamOptions) {
    this.id = o.id;
    this.kind = o.kind;
    this.bindings = o.bindings;
    this.#pc = o.pc;
    this.#metrics = o.metrics;
    this.#maxQueue = o.maxQueue;
    this.#fastPath = o.fastPath;
    this.#clock = o.clock;
    for (const b of o.bindings) {
      this.byTrack[b.track] = b;
      this.stats[b.track] = { packets: 0, octets: 0, lastTs: 0, lastAt: 0, sent: false };
    }
  }

  /** Recompute the extension id maps for the upstream's negotiated ids (per stream track). */
  setUpstreamExtIds(ids: Map<string, number>[]): void {
    for (const b of this.bindings) b.extMap = buildExtMap(ids[b.track] ?? new Map(), b.extIds);
  }

  get ready(): boolean {
    return this.#ready && !this.#closed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Wire RTCP and wait for DTLS; `events.ready` fires once the first packet may be sent. */
  start(events: DownstreamEvents): void {
    this.#events = events;
    for (const b of this.bindings) {
      const sub = b.transceiver.sender.onRtcp.subscribe((pkt) => this.#onRtcp(b, pkt));
      this.#subs.push(sub);
    }
    const dtls = this.#dtls();
    const check = (): void => {
      if (this.#ready || this.#closed) return;
      const d = this.#dtls();
      if (d && d.state === 'connected' && (d as unknown as { srtp?: unknown }).srtp) {
        this.#ready = true;
        this.#due = 0;
        this.#egress = this.#makeEgress(d);
        if (this.#fastPath) {
          // NACK/PLI/FIR from this downstream without werift's per-packet objects (feedback.ts);
          // werift's onRtcp above still sees whatever the fast intake passes on.
          this.#feedback = new FastFeedback(d, {
            nack: (ssrc, lost) => {
              const b = this.#binding(ssrc);
              if (b) this.#nack(b, lost);
            },
            keyframe: (ssrc) => {
              const b = this.#binding(ssrc);
              if (b) this.#keyframe(b);
            },
            taken: () => this.#metrics.rtcpInFast++,
          });
          // Keepalive answers and RFC 7675 consent checks without werift's objects (werift-stun.ts).
          this.#ice = FastIce.install(d, {
            now: () => this.#clock.now(),
            onAnswered: () => this.#metrics.stunFast++,
            send: (m) => this.#egress?.sendDatagram?.(m) ?? false,
            onConsentCheck: () => this.#metrics.consentChecks++,
            onConsentResponse: () => this.#metrics.consentResponses++,
          });
        }
        // Routes (forward.ts) skip the per-packet checks; any ICE state change ends them at once.
        const conn = (d.iceTransport as unknown as { connection?: { stateChanged?: { subscribe(f: () => void): { unSubscribe(): void } } } }).connection;
        const sub = conn?.stateChanged?.subscribe(() => this.#events?.connectionChanged?.(this));
        if (sub) this.#subs.push(sub);
        this.#events?.ready(this);
      }
    };
    if (dtls) {
      const sub = dtls.onStateChange.subscribe(() => check());
      this.#subs.push(sub);
    }
    const sub2 = this.#pc.connectionStateChange.subscribe(() => check());
    this.#subs.push(sub2);
    check();
  }

  #dtls(): RTCDtlsTransport | undefined {
    return this.bindings[0]?.transceiver.sender.dtlsTransport ?? this.#pc.dtlsTransports[0];
  }

  #makeEgress(d: RTCDtlsTransport): Egress {
    if (this.#fastPath) {
      try {
        const e = createFastEgress(d, this.#maxQueue);
        if (e) return e;
      } catch (err) {
        log.warn('fast path unavailable; using werift send', { id: this.id, err: err as Error });
      }
    }
    return new WeriftEgress(d, this.#maxQueue);
  }

  get egressKind(): string {
    return this.#egress?.kind ?? 'none';
  }

  /**
   * Protect and send one rewritten RTP packet of stream track `track` at buf[off, off+len)
   * (WASM memory); it is consumed before this returns. Returns false when dropped (backpressure).
   */
  send(track: number, buf: Uint8Array, off: number, len: number, ts: number, payloadBytes: number): boolean {
    const map = this.byTrack[track]?.extMap;
    if (map && this.#egress && !this.#closed) remapExtIds(buf, off, len, map);
    return this.sendTranslated(track, buf, off, len, ts, payloadBytes);
  }

  /** send() for a packet whose extension ids are already this downstream's. */
  sendTranslated(track: number, buf: Uint8Array, off: number, len: number, ts: number, payloadBytes: number): boolean {
    const e = this.#egress;
    if (!e || this.#closed) return false;
    if (!e.sendRtp(buf, off, len)) {
      this.dropped++;
      this.#metrics.packetsDropped++;
      return false;
    }
    this.#sent(track, len, ts, payloadBytes);
    return true;
  }

  /**
   * First half of a batched send (forward.ts): when the egress can protect and send this packet
   * in one native call for the whole fan-out, translates its extension ids (as send() does) and
   * returns the native context id; -1 means "use send()" (nothing was changed).
   */
  batchPrepare(track: number, buf: Uint8Array, off: number, len: number): number {
    const e = this.#egress;
    if (!e || this.#closed || e.batchId === undefined) return -1;
    const id = e.batchId(buf, off, len);
    if (id < 0) return -1;
    const map = this.byTrack[track]?.extMap;
    if (map) remapExtIds(buf, off, len, map);
    return id;
  }

  /** Header extension id map of a track's binding (null: forward ids unchanged), for routes. */
  extMapOf(track: number): Uint8Array | null {
    return this.byTrack[track]?.extMap ?? null;
  }

  /**
   * Packets the addon sent for this relay's routed records (forward.ts), counted in one call
   * per fan-out: the per-downstream figures (SR sender info) are kept in C (nativeSsrcStats).
   */
  countRouted(packets: number, bytes: number): void {
    this.#metrics.packetsOut += packets;
    this.#metrics.bytesOut += bytes;
  }

  /**
   * Of the packets this relay sent at the end of an input batch, `packets` left in `sends`
   * sendmsg calls carrying several packets each (UDP GSO; forward.ts StagedSends).
   */
  countCoalesced(sends: number, packets: number): void {
    this.#metrics.gsoSends += sends;
    this.#metrics.packetsOutGso += packets;
  }

  /** Second half: the batch record's result (protected length or a negative SrtpStatus). */
  batchDone(track: number, result: number, len: number, ts: number, payloadBytes: number): boolean {
    if (!this.#egress?.batchResult!(result)) {
      this.dropped++;
      this.#metrics.packetsDropped++;
      return false;
    }
    this.#sent(track, len, ts, payloadBytes);
    return true;
  }

  #sent(track: number, len: number, ts: number, payloadBytes: number): void {
    this.sent++;
    this.#metrics.packetsOut++;
    this.#metrics.bytesOut += len;
    const st = this.stats[track];
    if (st) {
      st.packets = (st.packets + 1) >>> 0;
      st.octets = (st.octets + payloadBytes) >>> 0;
      st.lastTs = ts >>> 0;
      st.lastAt = this.#clock.now();
      st.sent = true;
    }
  }

  sendRtcp(compound: Uint8Array): void {
    if (this.#closed) return;
    if (this.#egress) this.#egress.sendRtcp(compound);
    else sendRawRtcp(this.#dtls(), compound);
  }

  /** Sender reports once a second (RFC 3550 §6.2 lets a relay pick the interval; 1 s keeps lip-sync fresh). */
  tick(now: number): void {
    // Called for every downstream every 20 ms: one comparison until something is due.
    if (now < this.#due) return;
    const ice = this.#ice;
    if (ice) ice.tick(now);
    if (!this.ready) {
      this.#due = Infinity; // becoming ready resets it
      return;
    }
    this.#due = Math.min(ice ? ice.due : Infinity, now - this.#lastSr < 1000 ? this.#lastSr + 1000 : now + 1000);
    if (now - this.#lastSr < 1000) return;
    this.#lastSr = now;
    const parts: Buffer[] = [];
    for (const b of this.bindings) {
      const st = this.stats[b.track];
      if (!st) continue;
      // Packets sent on routes (forward.ts) are counted in C; the rest here.
      const nat = this.#egress?.nativeSsrcStats?.(b.ssrc) ?? null;
      const routed = nat !== null && nat.packets > 0;
      if (!st.sent && !routed) continue;
      const useNat = routed && (!st.sent || nat.lastAt >= st.lastAt);
      const lastTs = useNat ? nat.lastTs : st.lastTs;
      const lastAt = useNat ? nat.lastAt : st.lastAt;
      const packets = (st.packets + (routed ? nat.packets : 0)) >>> 0;
      const octets = (st.octets + (routed ? nat.octets : 0)) >>> 0;
      parts.push(buildSenderReport(b.ssrc, now, (lastTs + Math.round(((now - lastAt) * b.clockRate) / 1000)) >>> 0, packets, octets));
    }
    if (parts.length) this.sendRtcp(Buffer.concat(parts));
  }

  /** RTCP that werift parsed (when the fast intake, feedback.ts, is not in use or passed it on). */
  #onRtcp(b: Binding, pkt: unknown): void {
    const p = pkt as { type: number; feedback?: { count?: number; lost?: number[]; mediaSourceSsrc?: number; mediaSsrc?: number } };
    if (p.type === 205 && p.feedback?.count === 1 && Array.isArray(p.feedback.lost)) {
      this.#nack(b, p.feedback.lost); // RFC 4585 §6.2.1 Generic NACK
    } else if (p.type === 206 && (p.feedback?.count === 1 || p.feedback?.count === 4)) {
      this.#keyframe(b); // RFC 4585 §6.3.1 PLI, RFC 5104 §4.3.1 FIR
    }
  }

  #nack(b: Binding, lost: number[]): void {
    this.#metrics.nacksReceived++;
    try {
      this.#events?.nack(this, b.track, lost);
    } catch (e) {
      this.#metrics.rtcpErrors++;
      log.debug('nack handling failed', { err: e as Error });
    }
  }

  #keyframe(b: Binding): void {
    this.#metrics.plisReceived++;
    try {
      this.#events?.keyframeRequest(this, b.track);
    } catch (e) {
      this.#metrics.rtcpErrors++;
      log.debug('keyframe request handling failed', { err: e as Error });
    }
  }

  #binding(ssrc: number): Binding | undefined {
    for (const b of this.bindings) if (b.ssrc >>> 0 === ssrc) return b;
    return undefined;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#subs) s.unSubscribe();
    this.#subs = [];
    this.#feedback?.close();
    this.#ice?.close();
    this.#egress?.close();
  }
}

/** RFC 3550 §6.4.1 SR without report blocks. */
export function buildSenderReport(ssrc: number, nowMs: number, rtpTs: number, packets: number, octets: number): Buffer {
  const b = Buffer.allocUnsafe(28);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(6, 2);
  b.writeUInt32BE(ssrc >>> 0, 4);
  const secs = Math.floor(nowMs / 1000) + 2208988800;
  const frac = Math.floor(((nowMs % 1000) / 1000) * 4294967296);
  b.writeUInt32BE(secs >>> 0, 8);
  b.writeUInt32BE(frac >>> 0, 12);
  b.writeUInt32BE(rtpTs >>> 0, 16);
  b.writeUInt32BE(packets >>> 0, 20);
  b.writeUInt32BE(octets >>> 0, 24);
  return b;
}

/**
 * werift's own send path (an RtpPacket and werift's cipher objects per packet): used only when
 * the fast path cannot be set up. The bound counts sends not yet completed.
 */
class WeriftEgress implements Egress {
  readonly kind = 'werift';
  #inflight = 0;
  constructor(readonly dtls: RTCDtlsTransport, readonly maxQueue: number) {}
  sendRtp(buf: Uint8Array, off: number, len: number): boolean {
    if (this.#inflight >= this.maxQueue) return false;
    let rtp: RtpPacket;
    try {
      rtp = RtpPacket.deSerialize(Buffer.from(buf.subarray(off, off + len)));
    } catch {
      return false;
    }
    this.#inflight++;
    this.dtls.sendRtp(rtp.payload, rtp.header).then(
      () => this.#inflight--,
      () => this.#inflight--,
    );
    return true;
  }
  sendRtcp(compound: Uint8Array): void {
    sendRawRtcp(this.dtls, compound);
  }
  close(): void {}
}
