/**
 * werift test peers for WHIP/WHEP (reused by the relay, signaling, mesh and load-test suites).
 *
 * TestPublisher: a werift peer that POSTs a WHIP offer and sends synthetic media:
 *   - video: VP8-shaped RTP (RFC 7741 payload descriptor; the first packet of a frame starts a
 *     partition, the VP8 frame tag's P bit is 0 on keyframes), a keyframe every
 *     `keyframeIntervalMs` or when the relay sends PLI/FIR, marker bit on a frame's last packet;
 *   - audio: Opus-sized packets (20 ms, 48 kHz clock);
 *   - every packet carries the abs-capture-time extension
 *     (http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time, 8-byte NTP UQ32.32).
 *   Each payload embeds a tag (track index, packet index) followed by seeded pseudo-random bytes,
 *   so a viewer can match what it received to what was sent, byte for byte (`publisher.sent`).
 *
 * TestViewer: a werift peer that POSTs a WHEP offer (recvonly) and records every RTP packet
 *   (`viewer.packets`), with helpers to wait for conditions and to send PLI.
 *
 * Both bind to 127.0.0.1 only and must be closed (`await p.close()`), which also DELETEs the
 * WHIP/WHEP session.
 */
import {
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RTCRtpHeaderExtensionParameters,
  RtpHeader,
  RtpPacket,
  type PeerConfig,
  type RTCRtpTransceiver,
} from 'werift';
import { hostOnlyIce } from '../../src/relay/media.ts';
import { mulberry32 as seeded } from '../../src/util/random.ts';

export const ABS_CAPTURE_TIME_URI = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';
const MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid';
/** Extension ids configured on the test peers (werift renumbers them in its offers: use TestViewer.extId). */
export const TEST_EXT_IDS = { mid: 1, absCaptureTime: 3 } as const;

/** Deterministic PRNG for payload bytes and test decisions (src/util/random.ts). */
export { seeded };

function peerConfig(opts: { video?: 'vp8' | 'h264' } = {}) {
  const fb = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }];
  const video =
    opts.video === 'h264'
      ? new RTCRtpCodecParameters({
          mimeType: 'video/H264',
          clockRate: 90000,
          payloadType: 102,
          rtcpFeedback: fb,
          parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
        })
      : new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: fb });
  const ext = () => [
    new RTCRtpHeaderExtensionParameters({ id: TEST_EXT_IDS.mid, uri: MID_URI }),
    new RTCRtpHeaderExtensionParameters({ id: TEST_EXT_IDS.absCaptureTime, uri: ABS_CAPTURE_TIME_URI }),
  ];
  return {
    codecs: {
      video: [video],
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111, rtcpFeedback: [{ type: 'nack' }] })],
    },
    headerExtensions: { video: ext(), audio: ext() },
    ...hostOnlyIce('127.0.0.1'),
    // One transport from the start: werift's offerer never closes the sockets of per-m-line
    // transports that BUNDLE leaves unused (tests count descriptors).
    bundlePolicy: 'max-bundle' as const,
  };
}

async function gathered(pc: RTCPeerConnection, timeoutMs = 5000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('ICE gathering did not complete')), timeoutMs);
    const { unSubscribe } = pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') {
        clearTimeout(t);
        unSubscribe();
        resolve();
      }
    });
  });
}

/** Wait until `pred()` is true, polling every `stepMs`; throws `what` on timeout. */
export async function waitUntil(pred: () => boolean, timeoutMs: number, what: string, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * Two werift peers with `config` connected over loopback (offer, answer, ICE, DTLS, SCTP) and a
 * data channel open from a to b; b's received messages collect in `received`. Close both peers.
 */
export async function connectDataChannelPair(config: Partial<PeerConfig>): Promise<{
  a: RTCPeerConnection;
  b: RTCPeerConnection;
  send(text: string): void;
  received: string[];
}> {
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  const dc = a.createDataChannel('test');
  const received: string[] = [];
  b.onDataChannel.subscribe((ch) => ch.onMessage.subscribe((m) => received.push(m.toString())));
  try {
    await a.setLocalDescription(await a.createOffer());
    await gathered(a);
    await b.setRemoteDescription(a.localDescription!);
    await b.setLocalDescription(await b.createAnswer());
    await gathered(b);
    await a.setRemoteDescription(b.localDescription!);
    await waitUntil(() => dc.readyState === 'open', 10_000, 'the data channel to open (ICE, DTLS and SCTP up)');
  } catch (e) {
    await Promise.all([a.close(), b.close()]).catch(() => undefined);
    throw e;
  }
  return { a, b, send: (text) => dc.send(text), received };
}

export interface WhipWhepResult {
  status: number;
  location?: string;
  etag?: string;
  body: string;
}

/** POST an SDP offer; returns the raw response (no throw on error statuses). */
export async function postSdp(url: string, sdp: string, token?: string): Promise<WhipWhepResult> {
  const headers: Record<string, string> = { 'content-type': 'application/sdp' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: sdp, redirect: 'follow' });
  const body = await res.text();
  const loc = res.headers.get('location');
  return {
    status: res.status,
    location: loc ? new URL(loc, res.url || url).toString() : undefined,
    etag: res.headers.get('etag') ?? undefined,
    body,
  };
}

/** NTP 64-bit (UQ32.32) time for a wall-clock millisecond value. */
export function ntp64(ms: number): Buffer {
  const b = Buffer.alloc(8);
  const secs = Math.floor(ms / 1000) + 2208988800;
  const frac = Math.floor(((ms % 1000) / 1000) * 4294967296);
  b.writeUInt32BE(secs >>> 0, 0);
  b.writeUInt32BE(frac >>> 0, 4);
  return b;
}

export interface SentPacket {
  track: number;
  index: number;
  seq: number;
  timestamp: number;
  marker: boolean;
  keyframe: boolean;
  payload: Buffer;
  absCaptureTime: Buffer;
  /** Date.now() when sent */
  at: number;
}

export interface PublisherOptions {
  /** WHIP endpoint, e.g. `${relay.url}/whip/cam1` */
  url: string;
  token?: string;
  /** number of video tracks (default 1) */
  video?: number;
  /** number of audio tracks (default 1) */
  audio?: number;
  codec?: 'vp8' | 'h264';
  fps?: number; // default 25
  packetsPerFrame?: number; // default 2
  keyframePackets?: number; // default 4
  packetSize?: number; // payload bytes, default 1000
  keyframeIntervalMs?: number; // default 2000
  /** first sequence number (default 65500 so tests cross the 16-bit wrap) */
  firstSeq?: number;
  seed?: number;
  /** keep every sent packet in `sent` (default true) */
  record?: boolean;
  /**
   * Spread a video frame's packets: packet p of a frame leaves p * paceMs after the first, as a
   * browser's pacer sends them (default 0: the whole frame at once). `sent[].at` and the
   * abs-capture-time stay the frame's time, as a capture time does.
   */
  paceMs?: number;
}

/** Builds the synthetic media of one video or audio track. */
class SyntheticTrack {
  seq: number;
  ts: number;
  index = 0;
  constructor(readonly track: number, readonly kind: 'video' | 'audio', firstSeq: number, firstTs: number) {
    this.seq = firstSeq & 0xffff;
    this.ts = firstTs >>> 0;
  }
}

export class TestPublisher {
  readonly pc: RTCPeerConnection;
  readonly sent: SentPacket[] = [];
  sessionUrl = '';
  etag = '';
  pliCount = 0;
  firCount = 0;
  nackCount = 0;
  keyframesSent = 0;
  #opts: Required<Omit<PublisherOptions, 'token'>> & { token?: string };
  #transceivers: RTCRtpTransceiver[] = [];
  #tracks: SyntheticTrack[] = [];
  #timer?: NodeJS.Timeout;
  #audioTimer?: NodeJS.Timeout;
  #rand: () => number;
  #forceKeyframe = true;
  #lastKeyframeAt = 0;
  #closed = false;
  #frames = 0;

  private constructor(opts: PublisherOptions) {
    this.#opts = {
      video: 1,
      audio: 1,
      codec: 'vp8',
      fps: 25,
      packetsPerFrame: 2,
      keyframePackets: 4,
      packetSize: 1000,
      keyframeIntervalMs: 2000,
      firstSeq: 65500,
      seed: 1,
      record: true,
      paceMs: 0,
      ...opts,
    };
    this.#rand = seeded(this.#opts.seed);
    this.pc = new RTCPeerConnection(peerConfig({ video: this.#opts.codec }));
  }

  static async start(opts: PublisherOptions): Promise<TestPublisher> {
    const p = new TestPublisher(opts);
    try {
      await p.#connect();
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  async #connect(): Promise<void> {
    const o = this.#opts;
    let n = 0;
    for (let i = 0; i < o.video; i++) {
      const t = this.pc.addTransceiver('video', { direction: 'sendonly' });
      this.#transceivers.push(t);
      this.#tracks.push(new SyntheticTrack(n++, 'video', o.firstSeq + i * 1000, 1000 + i));
      t.sender.onPictureLossIndication.subscribe(() => {
        this.pliCount++;
        this.#forceKeyframe = true;
      });
      t.sender.onRtcp.subscribe((r) => {
        const fb = r as unknown as { type: number; feedback?: { count?: number } };
        if (fb.type === 206 && fb.feedback?.count === 4) {
          this.firCount++;
          this.#forceKeyframe = true;
        }
        if (fb.type === 205 && fb.feedback?.count === 1) this.nackCount++;
      });
    }
    for (let i = 0; i < o.audio; i++) {
      const t = this.pc.addTransceiver('audio', { direction: 'sendonly' });
      this.#transceivers.push(t);
      this.#tracks.push(new SyntheticTrack(n++, 'audio', o.firstSeq + 500 + i * 1000, 5000 + i));
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc);
    const res = await postSdp(o.url, this.pc.localDescription!.sdp, o.token);
    if (res.status !== 201) throw new Error(`WHIP POST ${o.url} failed: ${res.status} ${res.body}`);
    this.sessionUrl = res.location ?? '';
    this.etag = res.etag ?? '';
    await this.pc.setRemoteDescription({ type: 'answer', sdp: res.body });
    await waitUntil(() => this.pc.connectionState === 'connected', 10_000, 'publisher connected');
    // Wait for DTLS-SRTP on every sender so the first keyframe is not dropped by werift.
    await waitUntil(() => this.#transceivers.every((t) => t.sender.dtlsTransport?.state === 'connected'), 5000, 'publisher DTLS');
    const frameMs = 1000 / o.fps;
    this.#timer = setInterval(() => this.#sendVideoFrame(), frameMs);
    if (o.audio > 0) this.#audioTimer = setInterval(() => this.#sendAudio(), 20);
    this.#sendVideoFrame();
  }

  /** Ask for a keyframe on the next frame (as if an encoder got a PLI). */
  forceKeyframe(): void {
    this.#forceKeyframe = true;
  }

  /** Stop sending media (the peer stays up). */
  pause(): void {
    clearInterval(this.#timer);
    clearInterval(this.#audioTimer);
    this.#timer = this.#audioTimer = undefined;
  }

  #payload(track: number, index: number, size: number, header: Buffer): Buffer {
    const b = Buffer.allocUnsafe(size);
    header.copy(b, 0);
    let off = header.length;
    b.writeUInt8(track, off);
    b.writeUInt32BE(index >>> 0, off + 1);
    off += 5;
    for (; off < size; off++) b[off] = (this.#rand() * 256) | 0;
    return b;
  }

  #send(ti: number, st: SyntheticTrack, payload: Buffer, marker: boolean, keyframe: boolean, delayMs = 0): void {
    const t = this.#transceivers[ti]!;
    const abs = ntp64(Date.now());
    const absId = t.headerExtensions.find((e) => e.uri === ABS_CAPTURE_TIME_URI)?.id ?? TEST_EXT_IDS.absCaptureTime;
    const header = new RtpHeader({
      payloadType: t.codecs[0]?.payloadType ?? 96,
      sequenceNumber: st.seq,
      timestamp: st.ts,
      marker,
      ssrc: t.sender.ssrc,
      extension: true,
      extensionProfile: 0xbede,
      extensions: [{ id: absId, payload: abs }],
    });
    const pkt = new RtpPacket(header, payload);
    if (this.#opts.record) {
      this.sent.push({ track: st.track, index: st.index, seq: st.seq, timestamp: st.ts, marker, keyframe, payload, absCaptureTime: abs, at: Date.now() });
    }
    st.index++;
    st.seq = (st.seq + 1) & 0xffff;
    const bytes = pkt.serialize();
    if (!(delayMs > 0)) {
      void t.sender.sendRtp(bytes).catch(() => {});
      return;
    }
    setTimeout(() => {
      if (!this.#closed) void t.sender.sendRtp(bytes).catch(() => {});
    }, delayMs);
  }

  #sendVideoFrame(): void {
    if (this.#closed) return;
    const o = this.#opts;
    const now = Date.now();
    this.#frames++;
    const key = this.#forceKeyframe || now - this.#lastKeyframeAt >= o.keyframeIntervalMs;
    if (key) {
      this.#forceKeyframe = false;
      this.#lastKeyframeAt = now;
      this.keyframesSent++;
    }
    for (let i = 0; i < o.video; i++) {
      const st = this.#tracks[i]!;
      const count = key ? o.keyframePackets : o.packetsPerFrame;
      for (let p = 0; p < count; p++) {
        let hdr: Buffer;
        if (o.codec === 'h264') {
          // One FU-A (RFC 6184 §5.8) per packet: S bit on the first, E bit on the last; IDR (5) on keyframes.
          const nalType = key ? 5 : 1;
          hdr = Buffer.from([0x7c, (p === 0 ? 0x80 : 0) | (p === count - 1 ? 0x40 : 0) | nalType]);
        } else {
          // RFC 7741 §4.2: descriptor with S=1 and PID 0 on a frame's first packet; the VP8 frame
          // tag's lowest bit (P) is 0 on a keyframe (RFC 6386 §9.1), with the 9d 01 2a start code.
          hdr = p === 0 ? (key ? Buffer.from([0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]) : Buffer.from([0x10, 0x01, 0x00, 0x00])) : Buffer.from([0x00]);
        }
        this.#send(i, st, this.#payload(st.track, st.index, o.packetSize, hdr), p === count - 1, key && p === 0, p * o.paceMs);
      }
      st.ts = (st.ts + Math.round(90000 / o.fps)) >>> 0;
    }
  }

  #sendAudio(): void {
    if (this.#closed) return;
    const o = this.#opts;
    for (let i = 0; i < o.audio; i++) {
      const st = this.#tracks[o.video + i]!;
      this.#send(o.video + i, st, this.#payload(st.track, st.index, 120, Buffer.from([0xfc])), true, false);
      st.ts = (st.ts + 960) >>> 0;
    }
  }

  /** Packets sent on track `track` (0-based over video then audio tracks). */
  sentOn(track: number): SentPacket[] {
    return this.sent.filter((p) => p.track === track);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.pause();
    if (this.sessionUrl) {
      await fetch(this.sessionUrl, {
        method: 'DELETE',
        headers: this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : {},
      }).catch(() => {});
    }
    await this.pc.close().catch(() => {});
  }
}

export interface ReceivedPacket {
  /** m-line index among this viewer's transceivers */
  track: number;
  kind: 'video' | 'audio';
  seq: number;
  timestamp: number;
  ssrc: number;
  payloadType: number;
  marker: boolean;
  payload: Buffer;
  extensions: { id: number; payload: Buffer }[];
  /** Date.now() at arrival */
  at: number;
  /** publisher's tag embedded in the payload (track, index), when present */
  tagTrack: number;
  tagIndex: number;
  keyframe: boolean;
}

export interface ViewerOptions {
  /** WHEP endpoint, e.g. `${relay.url}/whep/cam1` */
  url: string;
  token?: string;
  video?: number; // default 1
  audio?: number; // default 1
  codec?: 'vp8' | 'h264';
  /** keep payload buffers (default true) */
  record?: boolean;
}

/** True when a VP8 RTP payload starts a keyframe (RFC 7741 §4.2, RFC 6386 §9.1). */
export function isVp8Keyframe(p: Buffer): boolean {
  if (p.length < 2) return false;
  const b0 = p[0]!;
  if (!(b0 & 0x10) || (b0 & 0x07) !== 0) return false;
  let off = 1;
  if (b0 & 0x80) {
    const x = p[off++]!;
    if (x & 0x80) off += (p[off]! & 0x80) ? 2 : 1;
    if (x & 0x40) off++;
    if (x & 0x30) off++;
  }
  return off < p.length && (p[off]! & 0x01) === 0;
}

function vp8HeaderLength(p: Buffer): number {
  if (p.length === 0) return 0;
  const b0 = p[0]!;
  if (!(b0 & 0x10)) return 1;
  // synthetic frames from TestPublisher: 7-byte (key) or 4-byte (delta) start headers
  return isVp8Keyframe(p) ? 7 : 4;
}

export class TestViewer {
  readonly pc: RTCPeerConnection;
  readonly packets: ReceivedPacket[] = [];
  sessionUrl = '';
  etag = '';
  status = 0;
  /** Date.now() when the first video keyframe packet arrived */
  firstKeyframeAt?: number;
  startedAt = Date.now();
  #opts: ViewerOptions;
  #transceivers: RTCRtpTransceiver[] = [];
  #closed = false;
  #count = 0;

  private constructor(opts: ViewerOptions) {
    this.#opts = opts;
    this.pc = new RTCPeerConnection(peerConfig({ video: opts.codec }));
  }

  /** POST WHEP and wait for the connection. Throws on a non-201 answer. */
  static async start(opts: ViewerOptions): Promise<TestViewer> {
    const v = new TestViewer(opts);
    try {
      await v.#connect();
    } catch (e) {
      await v.close();
      throw e;
    }
    return v;
  }

  async #connect(): Promise<void> {
    const o = this.#opts;
    for (let i = 0; i < (o.video ?? 1); i++) this.#transceivers.push(this.pc.addTransceiver('video', { direction: 'recvonly' }));
    for (let i = 0; i < (o.audio ?? 1); i++) this.#transceivers.push(this.pc.addTransceiver('audio', { direction: 'recvonly' }));
    this.#transceivers.forEach((t, idx) => {
      t.onTrack.subscribe((track) => {
        track.onReceiveRtp.subscribe((rtp) => this.#onRtp(idx, t.kind as 'video' | 'audio', rtp));
      });
    });
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc);
    this.startedAt = Date.now();
    const res = await postSdp(o.url, this.pc.localDescription!.sdp, o.token);
    this.status = res.status;
    if (res.status !== 201) throw new Error(`WHEP POST ${o.url} failed: ${res.status} ${res.body}`);
    this.sessionUrl = res.location ?? '';
    this.etag = res.etag ?? '';
    await this.pc.setRemoteDescription({ type: 'answer', sdp: res.body });
    await waitUntil(() => this.pc.connectionState === 'connected', 10_000, 'viewer connected');
  }

  #onRtp(track: number, kind: 'video' | 'audio', rtp: RtpPacket): void {
    const h = rtp.header;
    const p = rtp.payload;
    const key = kind === 'video' && (this.#opts.codec === 'h264' ? p.length > 1 && (p[1]! & 0x9f) === 0x85 : isVp8Keyframe(p));
    if (key && this.firstKeyframeAt === undefined) this.firstKeyframeAt = Date.now();
    const hl = kind === 'video' ? (this.#opts.codec === 'h264' ? 2 : vp8HeaderLength(p)) : 1;
    const tagged = p.length >= hl + 5;
    this.#count++;
    this.packets.push({
      track,
      kind,
      seq: h.sequenceNumber,
      timestamp: h.timestamp,
      ssrc: h.ssrc,
      payloadType: h.payloadType,
      marker: h.marker,
      payload: this.#opts.record === false ? Buffer.alloc(0) : Buffer.from(p),
      extensions: h.extensions.map((e) => ({ id: e.id, payload: Buffer.from(e.payload) })),
      at: Date.now(),
      tagTrack: tagged ? p[hl]! : -1,
      tagIndex: tagged ? p.readUInt32BE(hl + 1) : -1,
      keyframe: key,
    });
  }

  /** Extension id negotiated for `uri` on this viewer's m-line `track` (werift renumbers its offers). */
  extId(track: number, uri = ABS_CAPTURE_TIME_URI): number | undefined {
    return this.#transceivers[track]?.headerExtensions.find((e) => e.uri === uri)?.id;
  }

  get count(): number {
    return this.#count;
  }

  on(track: number): ReceivedPacket[] {
    return this.packets.filter((p) => p.track === track);
  }

  /** Send a PLI (RFC 4585 §6.3.1) for the video track `track`. */
  async requestKeyframe(track = 0): Promise<void> {
    const t = this.#transceivers[track];
    const ssrc = this.packets.find((p) => p.track === track)?.ssrc;
    if (t && ssrc !== undefined) await t.receiver.sendRtcpPLI(ssrc);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.sessionUrl) {
      await fetch(this.sessionUrl, {
        method: 'DELETE',
        headers: this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : {},
      }).catch(() => {});
    }
    await this.pc.close().catch(() => {});
  }
}
