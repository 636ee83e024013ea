/**
 * One stream on a relay: its upstream (a WHIP publisher or a pull from a parent), its tracks, its
 * downstreams, and the per-packet path through the forwarding core.
 *
 * Decide, then act: the core decides (store, keyframe, which seqs are missing, what each
 * downstream's header becomes, which packet answers a NACK); this file carries the decisions out
 * (sends, RTCP, keyframe requests) and never makes a forwarding decision of its own.
 */
import type { RTCDtlsTransport } from 'werift';
import { logger } from '../util/log.ts';
import { codecKind } from './media.ts';
import type { RelayMetrics } from './metrics.ts';
import { PliMerger } from './pli.ts';
import { sendRawRtcp } from './peer.ts';
import type { Downstream } from './downstream.ts';
import { ForwardCore, type CoreHost, type FanoutFn } from './forward.ts';

const log = logger('relay:stream');

export interface TrackInfo {
  kind: 'video' | 'audio';
  mimeType: string;
  clockRate: number;
  payloadType: number;
  extIds: Map<string, number>;
  mid: string;
}

export interface Upstream {
  kind: 'publisher' | 'pull';
  /** our SSRC in RTCP toward the upstream */
  rtcpSsrc: number;
  /** extension ids negotiated on the upstream leg, per stream track */
  extIds: Map<string, number>[];
  transport(): RTCDtlsTransport | undefined;
}

/** How one downstream m-line maps to a stream track (the downstream's own Binding). */
export type { Binding as DownstreamBinding } from './downstream.ts';

export interface StreamOptions {
  name: string;
  tracks: TrackInfo[];
  pliIntervalMs: number;
  metrics: RelayMetrics;
  host: CoreHost;
}

export class RelayStream {
  readonly name: string;
  readonly tracks: TrackInfo[];
  publisherSession?: string;
  #upstream?: Upstream;
  #metrics: RelayMetrics;
  #plis: PliMerger[];
  #core: ForwardCore;
  #downstreams = new Set<Downstream>();
  /** upstream SSRC per track as last seen */
  #ssrc: number[];
  #closed = false;
  #lastRr = 0;
  #upstreamExtIds: Map<string, number>[] = [];
  #fanSend: FanoutFn[];

  constructor(o: StreamOptions) {
    this.name = o.name;
    this.tracks = o.tracks;
    this.#metrics = o.metrics;
    this.#plis = o.tracks.map(() => new PliMerger(o.pliIntervalMs));
    this.#ssrc = o.tracks.map(() => 0);
    // One send callback per track, made once: nothing is allocated per packet on the fan-out.
    this.#fanSend = o.tracks.map((_, track) => (ds: Downstream, buf: Uint8Array, off: number, len: number, ts: number, pb: number) => ds.send(track, buf, off, len, ts, pb));
    this.#core = new ForwardCore(
      o.host,
      o.tracks.map((t) => ({ clockRate: t.clockRate, codec: codecKind(t.mimeType), payloadType: t.payloadType, kind: t.kind, extIds: t.extIds })),
    );
  }

  get upstreamKind(): 'publisher' | 'pull' | undefined {
    return this.#upstream?.kind;
  }

  get downstreamCount(): number {
    return this.#downstreams.size;
  }

  /** Tracks from another parent match ours (same kinds and codecs, in order). */
  compatible(tracks: TrackInfo[]): boolean {
    if (tracks.length !== this.tracks.length) return false;
    return tracks.every((t, i) => t.kind === this.tracks[i]!.kind && t.mimeType.toLowerCase() === this.tracks[i]!.mimeType.toLowerCase());
  }

  /**
   * A new upstream (first publish, first pull, or a re-parent). On a re-parent the core starts a
   * new source epoch so each downstream's munger continues its sequence numbers and timestamps
   * across the switch, and a keyframe is requested at once (the parent also serves its cached one).
   */
  setUpstream(up: Upstream, now: number): void {
    const reparent = this.#upstream !== undefined;
    this.#upstream = up;
    this.#upstreamExtIds = up.extIds;
    for (const ds of this.#downstreams) ds.setUpstreamExtIds(up.extIds);
    if (reparent) {
      this.#core.newSource(up.extIds);
      for (let i = 0; i < this.tracks.length; i++) {
        this.#plis[i]!.reset();
        if (this.tracks[i]!.kind === 'video') this.#requestKeyframe(i, now);
      }
    }
  }

  // ---- ingress -----------------------------------------------------------------------------------

  /** One upstream RTP packet (decrypted) of track `track`. */
  ingest(track: number, ssrc: number, pkt: Uint8Array, now: number): void {
    if (this.#closed) return;
    this.#metrics.packetsIn++;
    this.#metrics.bytesIn += pkt.byteLength;
    this.#ssrc[track] = ssrc;
    const r = this.#core.ingest(track, pkt, now);
    if (r < 0) {
      this.#metrics.invalidPackets++;
      return;
    }
    if (this.#core.lastKeyframe) this.#plis[track]!.keyframeArrived();
    if (this.#core.lastCaptureMs > 0) this.#metrics.captureLatency(this.#wallNow() - this.#core.lastCaptureMs);
    if (this.#core.lastNeedKeyframe) this.#requestKeyframe(track, now);
    // Act on the fan-out decisions: every ready downstream bound to this track.
    const waiting = this.#core.fanout(track, this.#fanSend[track]!);
    // Downstreams the core holds back until a keyframe (joined with an empty cache, or after a
    // switch): ask upstream, merged with every other request.
    if (waiting > 0) this.#requestKeyframe(track, now);
  }

  upstreamSenderReport(track: number, ssrc: number, ntp: bigint, now: number): void {
    this.#core.senderReport(track, ssrc, ntp, now);
  }

  // ---- downstreams -------------------------------------------------------------------------------

  addDownstream(ds: Downstream, now: number): void {
    this.#downstreams.add(ds);
    ds.setUpstreamExtIds(this.#upstreamExtIds);
    this.#core.addDownstream(ds);
    ds.start({
      ready: (d) => this.#fastJoin(d, this.#nowFrom(now)),
      nack: (d, track, seqs) => this.#onNack(d, track, seqs),
      keyframeRequest: (_d, track) => this.#requestKeyframe(track, this.#nowFrom(now)),
      connectionChanged: (d) => this.#core.dropRoutes(d),
    });
  }

  #clockNow = 0;
  #nowFrom(fallback: number): number {
    return this.#clockNow || fallback;
  }

  removeDownstream(ds: Downstream): void {
    if (!this.#downstreams.delete(ds)) return;
    this.#core.removeDownstream(ds);
  }

  /**
   * Fast join (DESIGN "Fast join"): the downstream's transport is up; send it the latest keyframe
   * and everything after it from the ring at once, then it follows live packets. When the ring
   * has no keyframe yet, ask upstream for one (merged with everyone else's requests).
   */
  #fastJoin(ds: Downstream, now: number): void {
    if (this.#closed || ds.closed) return;
    let any = false;
    for (let t = 0; t < this.tracks.length; t++) {
      if (!ds.byTrack[t]) continue;
      const n = this.#core.joinFromCache(ds, t, now, (buf, off, len, ts, payloadBytes) => ds.send(t, buf, off, len, ts, payloadBytes));
      if (n > 0) {
        any = true;
        this.#metrics.fastJoinPackets += n;
      } else if (this.tracks[t]!.kind === 'video') {
        this.#requestKeyframe(t, now);
      }
    }
    if (any) this.#metrics.fastJoins++;
  }

  /** RFC 4585 §6.2.1: answer from the ring; what the ring no longer has is lost for this viewer. */
  #onNack(ds: Downstream, track: number, seqs: number[]): void {
    for (const seq of seqs) {
      const ok = this.#core.retransmit(ds, track, seq, this.#clockNow, (buf, off, len, ts, payloadBytes) => ds.send(track, buf, off, len, ts, payloadBytes));
      if (ok) this.#metrics.retransmits++;
      else this.#metrics.retransmitMisses++;
    }
  }

  /** Wall-clock ms for comparing with abs-capture-time (an observation, not a decision). */
  #wallNow(): number {
    return Date.now();
  }

  #requestKeyframe(track: number, now: number): void {
    if (this.tracks[track]?.kind !== 'video') return;
    // Nothing received yet: the upstream's first packets start with a keyframe (a publisher's
    // encoder starts with one; a parent's fast join sends its cached one), so nothing to ask.
    if (!this.#ssrc[track]) return;
    if (this.#plis[track]!.request(now)) this.#sendPli(track);
  }

  #sendPli(track: number): void {
    const up = this.#upstream;
    const ssrc = this.#ssrc[track];
    if (!up || !ssrc) return;
    this.#metrics.plisSentUpstream++;
    // RFC 4585 §6.3.1: PLI is a PSFB (PT 206) with FMT 1 and no FCI.
    const b = Buffer.allocUnsafe(12);
    b[0] = 0x81;
    b[1] = 206;
    b.writeUInt16BE(2, 2);
    b.writeUInt32BE(up.rtcpSsrc >>> 0, 4);
    b.writeUInt32BE(ssrc >>> 0, 8);
    sendRawRtcp(up.transport(), b);
  }

  /** Timer: merged PLIs, upstream NACKs and RRs, downstream SRs. */
  tick(now: number): void {
    if (this.#closed) return;
    this.#clockNow = now;
    const up = this.#upstream;
    for (let t = 0; t < this.tracks.length; t++) {
      if (this.#plis[t]!.poll(now)) this.#sendPli(t);
      if (!up) continue;
      const nack = this.#core.pollNacks(t, up.rtcpSsrc, this.#ssrc[t]!, now);
      if (nack) {
        this.#metrics.nacksSentUpstream++;
        sendRawRtcp(up.transport(), nack);
      }
    }
    // Receiver reports upstream every second (RFC 3550 §6.2 allows a fixed interval at this rate).
    if (up && now - this.#lastRr >= 1000) {
      this.#lastRr = now;
      const rr = this.#core.receiverReport(up.rtcpSsrc, this.#ssrc, now);
      if (rr) sendRawRtcp(up.transport(), rr);
    }
    for (const ds of this.#downstreams) ds.tick(now);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ds of this.#downstreams) ds.close();
    this.#downstreams.clear();
    this.#core.close();
    log.debug('stream closed', { stream: this.name });
  }
}
