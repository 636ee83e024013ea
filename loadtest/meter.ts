/**
 * Everything one simulated viewer measures, fed with raw RTP packets and the time: join time,
 * time to first frame, glass-to-glass latency, loss, jitter, freezes, retransmissions, bytes,
 * and recovery after a relay kill. Sans-IO: the peer wrapper (viewer.ts) hands packets in and
 * reads the numbers out; tests drive it with synthetic packets and a fake time.
 */
import {
  FrameTracker,
  FreezeDetector,
  JitterEstimator,
  LossTracker,
  Reservoir,
  glassToGlassMs,
  parseAbsCaptureTime,
  parseVp8Descriptor,
} from './metrics.ts';
import { parseRtp, type RtpView } from './rtp.ts';
import { NackScheduler } from './nack.ts';
import { fnv1a } from './media.ts';

export interface MeterOptions {
  id: string;
  /** Payload types from the negotiated SDP. */
  videoPt: number;
  audioPt: number;
  /** abs-capture-time extension ids to try first (from the SDP); others are discovered. */
  absIds?: number[];
  /** Light mode: headers only; the meter asks for payloads only while looking for the first keyframe. */
  light: boolean;
  /** Hashes of the clip's frames and audio packets, for payload verification when decrypting. */
  frameHashes?: Set<number>;
  audioHashes?: Set<number>;
  freezeThresholdMs?: number;
  /** Seed for the latency reservoir. */
  seed?: number;
}

interface SsrcState {
  kind: 'video' | 'audio';
  loss: LossTracker;
  jitter: JitterEstimator;
  frames: FrameTracker | undefined;
  nack: NackScheduler;
  lastTs: number | undefined;
  /** Capture time (ms) by RTP timestamp, for frame latency; bounded. */
  capture: Map<number, number>;
  /** Payload slices by RTP timestamp, for frame verification (decrypting viewers only); bounded. */
  payloads: Map<number, Map<number, Uint8Array>>;
}

export interface ViewerSummary {
  id: string;
  light: boolean;
  connected: boolean;
  relay: string | undefined;
  connections: number;
  joinMs: number | null;
  ttffMs: number | null;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  latencyMeanMs: number | null;
  lossPct: number;
  lost: number;
  expected: number;
  jitterMs: number | null;
  freezes: number;
  freezeMs: number;
  retransmissions: number;
  /** Sequence restarts seen (RFC 3550 A.1 very large jumps): a relay discontinuity, not loss. */
  seqRestarts: number;
  /** Frames/packets replayed from the keyframe cache on join (captured before the connection). */
  backlog: number;
  packets: number;
  bytes: number;
  framesComplete: number;
  framesVerified: number;
  framesCorrupt: number;
  audioVerified: number;
  audioCorrupt: number;
  affected: boolean;
  recoveryMs: number | null;
  /** Failed join attempts (retried), and the last such error. */
  joinErrors: number;
  lastJoinError: string | undefined;
  error: string | undefined;
}

const MAX_SSRCS = 8;
const MAX_PENDING_TS = 128;

export class ViewerMeter {
  readonly o: MeterOptions;
  #joinAt: number | undefined;
  #firstPacketAt: number | undefined;
  #firstFrameAt: number | undefined;
  #lastPacketAt: number | undefined;
  #connStartMedia: number | undefined;
  #ssrcs = new Map<number, SsrcState>();
  #retired = { lost: 0, expected: 0, restarts: 0 };
  #absIds: number[];
  #freeze: FreezeDetector;
  #latency: Reservoir;
  #latSum = 0;
  #latCount = 0;
  #packets = 0;
  #bytes = 0;
  #retx = 0;
  #backlog = 0;
  #joinErrors = 0;
  #lastJoinError: string | undefined;
  #framesComplete = 0;
  #framesVerified = 0;
  #framesCorrupt = 0;
  #audioVerified = 0;
  #audioCorrupt = 0;
  #keyframeSeen = false;
  #connections = 0;
  #relay: string | undefined;
  #connected = false;
  #killAt: number | undefined;
  #killConn = 0;
  #affected = false;
  #recoveryMs: number | undefined;
  #error: string | undefined;
  /** Latency samples since the last drain, for the live line and the time series. */
  recent: number[] = [];

  constructor(o: MeterOptions) {
    this.o = o;
    this.#absIds = [...(o.absIds ?? [])];
    this.#freeze = new FreezeDetector(o.freezeThresholdMs ?? 500);
    this.#latency = new Reservoir(512, o.seed ?? 1);
  }

  /** The join request was sent (first join only; a migration is a new connection, not a new join). */
  joinRequested(now: number): void {
    if (this.#joinAt === undefined) this.#joinAt = now;
  }

  /** A new peer connection to `relay` starts receiving (join, migration or rejoin). */
  newConnection(relay: string | undefined): void {
    for (const s of this.#ssrcs.values()) {
      this.#retired.lost += s.loss.lost;
      this.#retired.expected += s.loss.expected;
      this.#retired.restarts += s.loss.restarts;
    }
    this.#ssrcs.clear();
    this.#connStartMedia = undefined;
    // Look for the new relay's first keyframe again (a light viewer decrypts until it has it).
    this.#keyframeSeen = false;
    this.#connections++;
    this.#relay = relay;
    this.#connected = true;
  }

  /** The viewer left on purpose (churn): the gap until it rejoins is not a freeze. */
  left(): void {
    this.#connected = false;
    this.#freeze.reset();
  }

  /** A join attempt failed (it may be retried). */
  joinFailed(message: string): void {
    this.#joinErrors++;
    this.#lastJoinError = message;
  }

  failed(message: string): void {
    this.#error = message;
    this.#connected = false;
  }

  get relay(): string | undefined {
    return this.#relay;
  }
  get connections(): number {
    return this.#connections;
  }
  get hasMedia(): boolean {
    return this.#firstPacketAt !== undefined;
  }

  /** A relay was killed at `at`: remember whether this viewer was on it. */
  relayKilled(relay: string, at: number): void {
    if (this.#relay === relay && this.#connected) {
      this.#affected = true;
      this.#killAt = at;
      this.#killConn = this.#connections;
      this.#recoveryMs = undefined;
    }
  }

  /**
   * Light mode: does this packet's payload need reading? Only video packets that may start a
   * frame (a new timestamp, or a late packet) until the first keyframe has been seen.
   */
  wantsPayload(v: RtpView): boolean {
    if (!this.o.light) return true;
    if (this.#keyframeSeen || v.payloadType !== this.o.videoPt) return false;
    const s = this.#ssrcs.get(v.ssrc);
    return !s || s.lastTs !== v.timestamp;
  }

  #state(v: RtpView): SsrcState | undefined {
    let s = this.#ssrcs.get(v.ssrc);
    if (s) return s;
    const kind = v.payloadType === this.o.videoPt ? 'video' : v.payloadType === this.o.audioPt ? 'audio' : undefined;
    if (!kind || this.#ssrcs.size >= MAX_SSRCS) return undefined;
    s = {
      kind,
      loss: new LossTracker(),
      jitter: new JitterEstimator(kind === 'video' ? 90000 : 48000),
      frames: kind === 'video' ? new FrameTracker() : undefined,
      nack: new NackScheduler(),
      lastTs: undefined,
      capture: new Map(),
      payloads: new Map(),
    };
    this.#ssrcs.set(v.ssrc, s);
    return s;
  }

  /** Capture time (Unix ms, in our clock) from abs-capture-time, if the packet carries it. */
  #absCapture(b: Uint8Array, v: RtpView, now: number): number | undefined {
    for (const id of this.#absIds) {
      const e = v.extensions.get(id);
      if (!e) continue;
      const a = parseAbsCaptureTime(b.subarray(e[0], e[0] + e[1]));
      if (a) return now - glassToGlassMs(a, now);
    }
    // Discover the id: an 8- or 16-byte element that decodes to a time within a minute of now
    // is abs-capture-time (relays may forward the broadcaster's id untouched).
    for (const [id, [off, len]] of v.extensions) {
      if (len !== 8 && len !== 16) continue;
      const a = parseAbsCaptureTime(b.subarray(off, off + len));
      if (!a) continue;
      const t = now - glassToGlassMs(a, now);
      if (Math.abs(t - now) < 60_000) {
        this.#absIds.push(id);
        return t;
      }
    }
    return undefined;
  }

  /**
   * One packet arrived at `now` (Unix ms). `b` is the packet as far as it is readable: the
   * SRTP ciphertext (header readable) when `decrypted` is false, the plain RTP packet otherwise.
   * `wireBytes` is its size on the wire.
   */
  onPacket(now: number, b: Uint8Array, decrypted: boolean, wireBytes = b.byteLength): void {
    const v = parseRtp(b, decrypted);
    if (!v) return;
    const s = this.#state(v);
    if (!s) return;
    this.#packets++;
    this.#bytes += wireBytes;
    if (this.#firstPacketAt === undefined) this.#firstPacketAt = now;
    this.#lastPacketAt = now;
    if (this.#connStartMedia === undefined) this.#connStartMedia = now;
    const verdict = s.loss.onPacket(v.seq);
    if (verdict.probe) return;
    if (verdict.restarted) {
      // The sender restarted its sequence: frame and NACK state keyed by seq start over.
      s.frames = s.kind === 'video' ? new FrameTracker() : undefined;
      s.nack = new NackScheduler();
      s.payloads.clear();
    }
    s.nack.onPacket(v.seq, now);
    if (verdict.duplicate) {
      this.#retx++;
      return;
    }
    if (verdict.late) this.#retx++;
    else s.jitter.onPacket(now, v.timestamp);
    const capture = this.#absCapture(b, v, now);
    if (s.kind === 'audio') {
      if (capture !== undefined && this.#live(capture)) this.#sample(now - capture);
      if (decrypted && this.o.audioHashes) {
        const payload = b.subarray(v.payloadOffset, b.byteLength - v.padding);
        if (this.o.audioHashes.has(fnv1a(payload))) this.#audioVerified++;
        else this.#audioCorrupt++;
      }
      s.lastTs = v.timestamp;
      return;
    }
    if (capture !== undefined && !s.capture.has(v.timestamp)) {
      s.capture.set(v.timestamp, capture);
      if (s.capture.size > MAX_PENDING_TS) s.capture.delete(s.capture.keys().next().value as number);
    }
    let start: boolean | undefined;
    let keyframe: boolean | undefined;
    if (decrypted) {
      const payload = b.subarray(v.payloadOffset, b.byteLength - v.padding);
      const d = parseVp8Descriptor(payload);
      if (d) {
        start = d.start;
        keyframe = d.start ? d.keyframe : undefined;
        if (d.start && d.keyframe) this.#keyframeSeen = true;
        if (!this.o.light && this.o.frameHashes) {
          let m = s.payloads.get(v.timestamp);
          if (!m) {
            m = new Map();
            s.payloads.set(v.timestamp, m);
            if (s.payloads.size > MAX_PENDING_TS) s.payloads.delete(s.payloads.keys().next().value as number);
          }
          m.set(verdict.ext, payload.subarray(d.headerLen));
        }
      }
    }
    s.lastTs = v.timestamp;
    const done = s.frames!.onPacket({ ext: verdict.ext, ts: v.timestamp, marker: v.marker, start, keyframe }, now);
    for (const f of done) {
      this.#framesComplete++;
      this.#freeze.onFrame(now);
      if (this.#firstFrameAt === undefined && f.keyframe === true) this.#firstFrameAt = now;
      if (this.#affected && this.#recoveryMs === undefined && this.#connections > this.#killConn && this.#killAt !== undefined) {
        this.#recoveryMs = now - this.#killAt;
      }
      const c = s.capture.get(f.ts);
      if (c !== undefined) {
        if (this.#live(c)) this.#sample(now - c);
        s.capture.delete(f.ts);
      }
      const parts = s.payloads.get(f.ts);
      if (parts) {
        s.payloads.delete(f.ts);
        const chunks: Uint8Array[] = [];
        for (let e = f.firstExt; e <= f.lastExt; e++) {
          const p = parts.get(e);
          if (p) chunks.push(p);
        }
        if (chunks.length === f.lastExt - f.firstExt + 1 && this.o.frameHashes!.has(fnv1a(Buffer.concat(chunks)))) this.#framesVerified++;
        else this.#framesCorrupt++;
      }
    }
  }

  /**
   * A frame captured before this connection's first packet arrived was replayed from the relay's
   * keyframe cache (the GOP since the last keyframe, sent at once on join): its age says how old
   * the cache was, not how long the path takes, so it is counted apart from latency.
   */
  #live(capture: number): boolean {
    if (this.#connStartMedia !== undefined && capture < this.#connStartMedia) {
      this.#backlog++;
      return false;
    }
    return true;
  }

  #sample(ms: number): void {
    this.#latency.add(ms);
    this.#latSum += ms;
    this.#latCount++;
    if (this.recent.length < 64) this.recent.push(ms);
  }

  /** Retransmission requests due now, per media SSRC (light mode; werift does this otherwise). */
  nacksDue(now: number): Array<{ ssrc: number; seqs: number[] }> {
    const out: Array<{ ssrc: number; seqs: number[] }> = [];
    for (const [ssrc, s] of this.#ssrcs) {
      const seqs = s.nack.poll(now);
      if (seqs.length) out.push({ ssrc, seqs });
    }
    return out;
  }

  /** True when video has stalled for more than the freeze threshold. */
  frozen(now: number): boolean {
    return this.#freeze.frozen(now);
  }
  get lastPacketAt(): number | undefined {
    return this.#lastPacketAt;
  }
  /** SSRC of the current video stream, for RTCP feedback. */
  get videoSsrc(): number | undefined {
    for (const [ssrc, s] of this.#ssrcs) if (s.kind === 'video') return ssrc;
    return undefined;
  }
  /** How long (ms) video has been arriving on the current connection without a keyframe. */
  videoPacketsFor(now: number): number {
    return this.#connStartMedia === undefined ? 0 : now - this.#connStartMedia;
  }
  get keyframeSeen(): boolean {
    return this.#keyframeSeen;
  }

  /** Cheap running totals for the once-a-second tick (no percentiles, no allocation per SSRC). */
  counters(): { packets: number; bytes: number; lost: number; expected: number; hasMedia: boolean } {
    let lost = this.#retired.lost;
    let expected = this.#retired.expected;
    for (const s of this.#ssrcs.values()) {
      lost += s.loss.lost;
      expected += s.loss.expected;
    }
    return { packets: this.#packets, bytes: this.#bytes, lost, expected, hasMedia: this.#connections > 0 && this.#firstPacketAt !== undefined };
  }

  summary(now: number, pct: (xs: readonly number[], p: number) => number): ViewerSummary {
    const freeze = this.#freeze;
    // A stall still running at the end counts (without closing the detector for later calls).
    const liveStall = this.#connected && freeze.frozen(now) ? 1 : 0;
    let lost = this.#retired.lost;
    let expected = this.#retired.expected;
    let jitter: number | null = null;
    let restarts = this.#retired.restarts;
    for (const s of this.#ssrcs.values()) {
      restarts += s.loss.restarts;
      lost += s.loss.lost;
      expected += s.loss.expected;
      if (s.kind === 'video') jitter = s.jitter.ms;
    }
    const lat = this.#latency.values;
    const fin = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : x);
    return {
      id: this.o.id,
      light: this.o.light,
      connected: this.#connections > 0 && this.#firstPacketAt !== undefined,
      relay: this.#relay,
      connections: this.#connections,
      joinMs: fin(this.#firstPacketAt !== undefined && this.#joinAt !== undefined ? this.#firstPacketAt - this.#joinAt : undefined),
      ttffMs: fin(this.#firstFrameAt !== undefined && this.#joinAt !== undefined ? this.#firstFrameAt - this.#joinAt : undefined),
      latencyP50Ms: fin(lat.length ? pct(lat, 50) : undefined),
      latencyP95Ms: fin(lat.length ? pct(lat, 95) : undefined),
      latencyMeanMs: fin(this.#latCount ? this.#latSum / this.#latCount : undefined),
      lossPct: expected > 0 ? (100 * lost) / expected : 0,
      lost,
      expected,
      jitterMs: jitter,
      freezes: freeze.count + liveStall,
      freezeMs: freeze.totalMs,
      retransmissions: this.#retx,
      seqRestarts: restarts,
      backlog: this.#backlog,
      packets: this.#packets,
      bytes: this.#bytes,
      framesComplete: this.#framesComplete,
      framesVerified: this.#framesVerified,
      framesCorrupt: this.#framesCorrupt,
      audioVerified: this.#audioVerified,
      audioCorrupt: this.#audioCorrupt,
      affected: this.#affected,
      recoveryMs: fin(this.#recoveryMs),
      joinErrors: this.#joinErrors,
      lastJoinError: this.#lastJoinError,
      error: this.#error,
    };
  }
}
