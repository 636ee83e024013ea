/**
 * The simulated broadcaster: a werift publisher that sends the shipped VP8 clip and Opus track
 * over WHIP through the public entry, looped in real time with RTP timestamps advancing, and
 * stamps every packet with abs-capture-time so viewers can measure glass-to-glass latency.
 *
 * When its relay dies (no RTCP from it for `deadAfterMs`, or the peer connection fails) it
 * publishes again through the entry, like any WHIP encoder that reconnects.
 */
import {
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RTCRtpHeaderExtensionParameters,
  RtpHeader,
  RtpPacket,
  type RTCRtpTransceiver,
} from 'werift';
import { ABS_CAPTURE_TIME_URI, serializeAbsCaptureTime, unixMsToNtpQ32 } from './metrics.ts';
import { ClipLoop, fnv1a, loadAudio, loadVideo, opusPacketDurationMs, packetizeVp8, type BitrateClass } from './media.ts';
import { deleteResource, extmapIds, postSdp } from './http.ts';
import { systemClock, type Clock } from '../src/util/clock.ts';
import { logger } from '../src/util/log.ts';
import { hostOnlyIce } from '../src/relay/media.ts';

const log = logger('loadtest:broadcaster');
const MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid';

export interface BroadcasterOptions {
  /** Public entry, e.g. http://127.0.0.1:8080 */
  signalingUrl: string;
  stream: string;
  /** A publish token for the stream. */
  token: string;
  bitrate?: BitrateClass;
  keyframeIntervalS?: number;
  /** Answer PLI/FIR by continuing from the clip's next keyframe (default) or ignore them. */
  pli?: 'respond' | 'ignore';
  /** Republish when the relay has sent no RTCP for this long after having sent some. */
  deadAfterMs?: number;
  /** Bound on republish attempts over the broadcaster's life. */
  maxRepublish?: number;
  clock?: Clock;
}

export class BroadcasterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BroadcasterError';
  }
}

export interface BroadcasterStats {
  framesSent: number;
  packetsSent: number;
  bytesSent: number;
  keyframeRequests: number;
  keyframesSent: number;
  republishes: number;
  relayUrl: string | undefined;
}

/** Loopback ICE for werift 0.25: host candidates only, no STUN stall (see hostOnlyIce). */
export const LOOPBACK_ICE = hostOnlyIce('127.0.0.1');

export function publisherConfig() {
  const fb = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }];
  return {
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: fb })],
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })],
    },
    headerExtensions: {
      video: [new RTCRtpHeaderExtensionParameters({ uri: MID_URI }), new RTCRtpHeaderExtensionParameters({ uri: ABS_CAPTURE_TIME_URI })],
      audio: [new RTCRtpHeaderExtensionParameters({ uri: MID_URI }), new RTCRtpHeaderExtensionParameters({ uri: ABS_CAPTURE_TIME_URI })],
    },
    ...LOOPBACK_ICE,
    // One transport from the start: werift's offerer never closes the sockets of per-m-line
    // transports that BUNDLE leaves unused.
    bundlePolicy: 'max-bundle' as const,
  };
}

/** Resolve once ICE gathering is complete (no trickle), bounded. */
export async function gatheringComplete(pc: RTCPeerConnection, timeoutMs = 5000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      sub.unSubscribe();
      reject(new BroadcasterError(`ICE gathering did not complete within ${timeoutMs} ms`));
    }, timeoutMs);
    const sub = pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') {
        clearTimeout(t);
        sub.unSubscribe();
        resolve();
      }
    });
  });
}

/** Resolve when the peer connection is connected, bounded. */
export async function connected(pc: RTCPeerConnection, timeoutMs = 10_000): Promise<void> {
  if (pc.connectionState === 'connected') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      sub.unSubscribe();
      reject(new BroadcasterError(`peer connection not connected within ${timeoutMs} ms (state ${pc.connectionState})`));
    }, timeoutMs);
    const sub = pc.connectionStateChange.subscribe((s) => {
      if (s === 'connected') {
        clearTimeout(t);
        sub.unSubscribe();
        resolve();
      } else if (s === 'failed' || s === 'closed') {
        clearTimeout(t);
        sub.unSubscribe();
        reject(new BroadcasterError(`peer connection ${s} before connecting`));
      }
    });
  });
}

interface Session {
  pc: RTCPeerConnection;
  video: RTCRtpTransceiver;
  audio: RTCRtpTransceiver;
  videoExt: number;
  audioExt: number;
  resource: string | undefined;
  relayUrl: string;
  lastRtcpAt: number | undefined;
  seq: { video: number; audio: number };
}

export class Broadcaster {
  readonly opts: Required<Omit<BroadcasterOptions, 'clock'>>;
  #clock: Clock;
  #video;
  #audio: Buffer[];
  #videoLoop: ClipLoop;
  #audioLoop: ClipLoop;
  #session: Session | undefined;
  #timer: NodeJS.Timeout | undefined;
  #t0 = 0;
  #running = false;
  #republishing = false;
  #pendingKeyframe = false;
  #pictureId = 0;
  readonly frameHashes: Set<number>;
  readonly audioHashes: Set<number>;
  #stats: BroadcasterStats = { framesSent: 0, packetsSent: 0, bytesSent: 0, keyframeRequests: 0, keyframesSent: 0, republishes: 0, relayUrl: undefined };

  constructor(o: BroadcasterOptions) {
    if (!/^https?:\/\//.test(o.signalingUrl)) throw new BroadcasterError(`signalingUrl must be an http(s) URL, got ${JSON.stringify(o.signalingUrl)}`);
    if (!o.stream) throw new BroadcasterError('stream is required');
    if (!o.token) throw new BroadcasterError('a publish token is required (mint one with `canopy token --role publish`)');
    this.opts = {
      signalingUrl: o.signalingUrl.replace(/\/$/, ''),
      stream: o.stream,
      token: o.token,
      bitrate: o.bitrate ?? 'high',
      keyframeIntervalS: o.keyframeIntervalS ?? 4,
      pli: o.pli ?? 'respond',
      deadAfterMs: o.deadAfterMs ?? 2000,
      maxRepublish: o.maxRepublish ?? 20,
    };
    this.#clock = o.clock ?? systemClock;
    this.#video = loadVideo({ bitrate: this.opts.bitrate, keyframeIntervalS: this.opts.keyframeIntervalS });
    this.#audio = loadAudio();
    this.#videoLoop = new ClipLoop(this.#video.frames.length, this.#video.fps, 90000);
    this.#audioLoop = new ClipLoop(this.#audio.length, 1000 / opusPacketDurationMs(this.#audio[0]!), 48000);
    this.frameHashes = new Set(this.#video.frames.map(fnv1a));
    this.audioHashes = new Set(this.#audio.map(fnv1a));
  }

  get stats(): BroadcasterStats {
    return { ...this.#stats };
  }

  /** Publish and start sending; resolves once the first session is connected. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#session = await this.#publish();
    this.#t0 = performance.now();
    this.#tick();
  }

  async #publish(): Promise<Session> {
    const pc = new RTCPeerConnection(publisherConfig());
    try {
      const video = pc.addTransceiver('video', { direction: 'sendonly' });
      const audio = pc.addTransceiver('audio', { direction: 'sendonly' });
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc);
      const offer = pc.localDescription!.sdp;
      const ex = await postSdp(`${this.opts.signalingUrl}/whip/${encodeURIComponent(this.opts.stream)}`, offer, this.opts.token);
      await pc.setRemoteDescription({ type: 'answer', sdp: ex.answer });
      // The relay's answer decides the extension ids; fall back to ours if it echoed none.
      const ans = extmapIds(ex.answer, ABS_CAPTURE_TIME_URI);
      const ours = extmapIds(offer, ABS_CAPTURE_TIME_URI);
      const s: Session = {
        pc,
        video,
        audio,
        videoExt: ans.get('video') ?? ours.get('video') ?? 2,
        audioExt: ans.get('audio') ?? ours.get('audio') ?? 2,
        resource: ex.resource,
        relayUrl: new URL(ex.answeredBy).origin,
        lastRtcpAt: undefined,
        seq: { video: Math.floor(Math.random() * 65536), audio: Math.floor(Math.random() * 65536) },
      };
      const onRtcp = () => {
        s.lastRtcpAt = this.#clock.now();
      };
      video.sender.onRtcp.subscribe(onRtcp);
      audio.sender.onRtcp.subscribe(onRtcp);
      video.sender.onPictureLossIndication.subscribe(() => this.#keyframeRequested());
      video.sender.onRtcp.subscribe((p) => {
        // FIR (RFC 5104 section 4.3.1) arrives as payload-specific feedback with FMT 4.
        const fb = (p as { feedback?: { count?: number } }).feedback;
        if ((p as { type?: number }).type === 206 && fb?.count === 4) this.#keyframeRequested();
      });
      pc.connectionStateChange.subscribe((st) => {
        if ((st === 'failed' || st === 'closed') && this.#session === s && this.#running) void this.#republish('peer connection ' + st);
      });
      await connected(pc);
      this.#stats.relayUrl = s.relayUrl;
      // A fresh session starts at a keyframe so the relay's keyframe cache fills at once.
      this.#pendingKeyframe = true;
      log.info('publishing', { stream: this.opts.stream, relay: s.relayUrl });
      return s;
    } catch (e) {
      await pc.close().catch(() => undefined);
      throw e;
    }
  }

  #keyframeRequested(): void {
    this.#stats.keyframeRequests++;
    if (this.opts.pli === 'respond') this.#pendingKeyframe = true;
  }

  async #republish(reason: string): Promise<void> {
    if (this.#republishing || !this.#running) return;
    if (this.#stats.republishes >= this.opts.maxRepublish) {
      log.error('giving up republishing', { reason, attempts: this.#stats.republishes });
      return;
    }
    this.#republishing = true;
    this.#stats.republishes++;
    log.warn('relay lost, publishing again', { reason });
    const old = this.#session;
    this.#session = undefined;
    if (old) void old.pc.close().catch(() => undefined);
    for (let attempt = 0; attempt < 10 && this.#running; attempt++) {
      try {
        const s = await this.#publish();
        if (!this.#running) {
          await s.pc.close().catch(() => undefined);
          break;
        }
        // Keep sequence numbers continuous across sessions (a new SSRC starts anyway).
        if (old) s.seq = { ...old.seq };
        this.#session = s;
        break;
      } catch (e) {
        log.warn('republish failed', { error: e as Error, attempt });
        await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
      }
    }
    this.#republishing = false;
  }

  #nextKeyframeIndex(from: number): number {
    const kf = this.#video.keyframe;
    for (let i = 0; i < kf.length; i++) {
      const j = (from + i) % kf.length;
      if (kf[j]) return j;
    }
    return 0;
  }

  /** Send every frame that is due; reschedule for the next one. */
  #tick = (): void => {
    if (!this.#running) return;
    const elapsed = performance.now() - this.#t0;
    const s = this.#session;
    const now = this.#clock.now();
    if (s && s.lastRtcpAt !== undefined && now - s.lastRtcpAt > this.opts.deadAfterMs) void this.#republish(`no RTCP for ${this.opts.deadAfterMs} ms`);
    // Bounded catch-up: after a long stall send at most 10 frames per track, skip the rest.
    for (let n = 0; n < 10 && this.#videoLoop.peek().dueMs <= elapsed; n++) this.#sendVideo(now);
    while (this.#videoLoop.peek().dueMs <= elapsed) this.#videoLoop.advance();
    for (let n = 0; n < 10 && this.#audioLoop.peek().dueMs <= elapsed; n++) this.#sendAudio(now);
    while (this.#audioLoop.peek().dueMs <= elapsed) this.#audioLoop.advance();
    const next = Math.min(this.#videoLoop.peek().dueMs, this.#audioLoop.peek().dueMs);
    this.#timer = setTimeout(this.#tick, Math.max(0, next - (performance.now() - this.#t0)));
  };

  #sendVideo(now: number): void {
    if (this.#pendingKeyframe) {
      const cur = this.#videoLoop.peek().index;
      if (!this.#video.keyframe[cur]) this.#videoLoop.jumpTo(this.#nextKeyframeIndex(cur));
      this.#pendingKeyframe = false;
    }
    const f = this.#videoLoop.peek();
    this.#videoLoop.advance();
    const s = this.#session;
    if (!s) return;
    const frame = this.#video.frames[f.index]!;
    if (this.#video.keyframe[f.index]) this.#stats.keyframesSent++;
    // Capture happens now: the frame leaves the "camera" the moment it is sent.
    const abs = serializeAbsCaptureTime({ captureNtp: unixMsToNtpQ32(now) });
    const parts = packetizeVp8(frame, this.#pictureId++);
    parts.forEach((payload, i) => {
      const header = new RtpHeader({
        payloadType: 96,
        sequenceNumber: s.seq.video,
        timestamp: f.rtpTs >>> 0,
        marker: i === parts.length - 1,
        extension: true,
        extensions: [{ id: s.videoExt, payload: abs }],
      });
      s.seq.video = (s.seq.video + 1) & 0xffff;
      this.#stats.packetsSent++;
      this.#stats.bytesSent += payload.length;
      void s.video.sender.sendRtp(new RtpPacket(header, payload)).catch(() => undefined);
    });
    this.#stats.framesSent++;
  }

  #sendAudio(now: number): void {
    const f = this.#audioLoop.peek();
    this.#audioLoop.advance();
    const s = this.#session;
    if (!s) return;
    const payload = this.#audio[f.index]!;
    const header = new RtpHeader({
      payloadType: 111,
      sequenceNumber: s.seq.audio,
      timestamp: f.rtpTs >>> 0,
      marker: false,
      extension: true,
      extensions: [{ id: s.audioExt, payload: serializeAbsCaptureTime({ captureNtp: unixMsToNtpQ32(now) }) }],
    });
    s.seq.audio = (s.seq.audio + 1) & 0xffff;
    this.#stats.packetsSent++;
    this.#stats.bytesSent += payload.length;
    void s.audio.sender.sendRtp(new RtpPacket(header, payload)).catch(() => undefined);
  }

  /** Stop sending, DELETE the WHIP session and close the peer. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    const s = this.#session;
    this.#session = undefined;
    if (s) {
      await deleteResource(s.resource, this.opts.token);
      await s.pc.close().catch(() => undefined);
    }
  }
}
