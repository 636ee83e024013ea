/**
 * One simulated viewer: a real werift peer that joins through the public entry, over the
 * WebSocket protocol (JOIN, OFFER/ANSWER, MIGRATE; see contracts) or over WHEP, and feeds every
 * received RTP packet to its ViewerMeter.
 *
 * Packets are taken from werift one step below SRTP decryption (the DTLS transport's SRTP
 * session is wrapped when it is created). A light viewer reads the header and extensions of the
 * still-encrypted packet and drops it there, so it costs no cipher, no HMAC and no werift packet
 * objects; it asks for retransmissions itself. A full viewer decrypts, hands the packet on to
 * werift (which then does NACK and receiver reports) and verifies the payloads against the clip.
 */
import WebSocket from 'ws';
import {
  GenericNack,
  PictureLossIndication,
  RtcpPayloadSpecificFeedback,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RTCRtpHeaderExtensionParameters,
  RtcpTransportLayerFeedback,
  SrtpAuthenticationError,
  type RTCDtlsTransport,
} from 'werift';
import { ABS_CAPTURE_TIME_URI, percentile } from './metrics.ts';
import { ViewerMeter, type ViewerSummary } from './meter.ts';
import { parseRtp } from './rtp.ts';
import { deleteResource, extmapIds, postSdp } from './http.ts';
import { LOOPBACK_ICE, connected, gatheringComplete } from './broadcaster.ts';
import { MsgType, decodeEnvelope, encodeEnvelope } from '../src/proto/index.ts';
import { systemClock, type Clock } from '../src/util/clock.ts';
import { logger } from '../src/util/log.ts';

const log = logger('loadtest:viewer');
const MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid';

export type ViewerProtocol = 'ws' | 'whep';

export interface ViewerOptions {
  id: string;
  signalingUrl: string;
  stream: string;
  token: string;
  protocol: ViewerProtocol;
  light: boolean;
  region?: string;
  frameHashes?: Set<number>;
  audioHashes?: Set<number>;
  /** WHEP viewers re-POST after this long without packets (WebSocket viewers wait for MIGRATE). */
  mediaTimeoutMs?: number;
  /**
   * WebSocket viewers send STALLED after this long without packets (signaling probes the relay).
   * Default 250 ms: video and audio together arrive every few milliseconds, so a quarter second of
   * silence is already far outside normal; a false report costs one /healthz probe. 0 = never.
   */
  stallReportMs?: number;
  /** Join attempts before the viewer counts as failed (default 3). */
  joinAttempts?: number;
  /** Maps a relay base URL to its id, for WHEP viewers (whose answer names no relay). */
  relayIdOf?: (url: string) => string | undefined;
  seed?: number;
  clock?: Clock;
}

export class ViewerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ViewerError';
  }
}

export function viewerConfig() {
  const fb = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }];
  return {
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: fb })],
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111, rtcpFeedback: [{ type: 'nack' }] })],
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

function payloadTypeOf(sdp: string, codec: string): number | undefined {
  const m = new RegExp(`^a=rtpmap:(\\d+) ${codec}/`, 'im').exec(sdp);
  return m ? Number(m[1]) : undefined;
}

/** Thrown (one instance, no stack) to make werift drop a packet a light viewer has read. */
const CONSUMED = Object.assign(Object.create(SrtpAuthenticationError.prototype) as Error, { message: 'consumed by light viewer', name: 'SrtpAuthenticationError' });

const hooked = new WeakSet<RTCDtlsTransport>();

interface Conn {
  pc: RTCPeerConnection;
  dtls: RTCDtlsTransport | undefined;
  resource: string | undefined;
  relay: string | undefined;
  videoPt: number;
  audioPt: number;
  /** Our receiver SSRC for RTCP feedback. */
  rtcpSsrc: number;
  /** STALLED already sent for this connection. */
  stallReported?: boolean;
}

export class Viewer {
  readonly o: Required<Omit<ViewerOptions, 'frameHashes' | 'audioHashes' | 'relayIdOf' | 'region' | 'clock' | 'seed'>> & ViewerOptions;
  readonly meter: ViewerMeter;
  #clock: Clock;
  #ws: WebSocket | undefined;
  #conn: Conn | undefined;
  #nextId = 2;
  #pending = new Map<number, { resolve: (e: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #closed = false;
  #reconnecting = false;
  #lastPli = 0;
  #connectedAt = 0;

  constructor(o: ViewerOptions) {
    if (!/^https?:\/\//.test(o.signalingUrl)) throw new ViewerError(`signalingUrl must be an http(s) URL, got ${JSON.stringify(o.signalingUrl)}`);
    if (!o.token) throw new ViewerError('a watch token is required');
    this.o = { mediaTimeoutMs: 2000, stallReportMs: 250, joinAttempts: 3, ...o, signalingUrl: o.signalingUrl.replace(/\/$/, '') };
    this.#clock = o.clock ?? systemClock;
    this.meter = new ViewerMeter({
      id: o.id,
      videoPt: 96,
      audioPt: 111,
      light: o.light,
      ...(o.frameHashes ? { frameHashes: o.frameHashes } : {}),
      ...(o.audioHashes ? { audioHashes: o.audioHashes } : {}),
      seed: o.seed ?? 1,
    });
  }

  /** Join and wait until the peer connection is connected (not until media: the meter sees that). */
  async join(): Promise<void> {
    this.#closed = false;
    this.meter.joinRequested(this.#clock.now());
    // A refused or timed-out join is retried like a player would (bounded); the join time then
    // includes the retries, and the errors are kept in the report.
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.o.protocol === 'whep') await this.#connectWhep();
        else await this.#joinWs();
        return;
      } catch (e) {
        this.meter.joinFailed((e as Error).message);
        this.#dropWs();
        if (attempt >= this.o.joinAttempts || this.#closed) throw e;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  // ----- WebSocket protocol -----

  async #joinWs(): Promise<void> {
    const wsUrl = this.o.signalingUrl.replace(/^http/, 'ws') + '/ws';
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    ws.binaryType = 'nodebuffer';
    this.#ws = ws;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new ViewerError(`WebSocket ${wsUrl} did not open within 10 s`)), 10_000);
      ws.once('open', () => {
        clearTimeout(t);
        resolve();
      });
      ws.once('error', (e) => {
        clearTimeout(t);
        reject(new ViewerError(`WebSocket ${wsUrl}: ${e.message}`));
      });
    });
    ws.on('message', (data: Buffer) => this.#onWsMessage(data));
    ws.on('close', () => {
      if (this.#ws === ws) this.#failPending('WebSocket closed');
    });
    ws.on('error', () => undefined);
    const joined = await this.#request(1, { type: MsgType.JOIN, id: 1, join: { stream: this.o.stream, role: 'watch', token: this.o.token, region: this.o.region ?? '' } });
    const placement = (joined.joined as { placement?: { relayId?: string } } | undefined)?.placement;
    log.debug('joined', { viewer: this.o.id, relay: placement?.relayId });
    await this.#offerWs(placement?.relayId);
  }

  /** Reject every request in flight (their socket is gone) and forget the socket. */
  #dropWs(): void {
    this.#failPending('WebSocket replaced');
    this.#ws?.terminate();
    this.#ws = undefined;
  }

  #failPending(why: string): void {
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new ViewerError(why));
    }
    this.#pending.clear();
  }

  #request(id: number, env: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new ViewerError('WebSocket is not open'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ViewerError(`no reply to request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(encodeEnvelope(env));
    });
  }

  #onWsMessage(data: Buffer): void {
    let env: Record<string, unknown>;
    try {
      env = decodeEnvelope(data);
    } catch (e) {
      log.warn('bad frame from signaling', { viewer: this.o.id, error: e as Error });
      return;
    }
    const id = (env.id as number | undefined) ?? 0;
    const type = env.type as number;
    if (type === MsgType.PING) {
      this.#ws?.send(encodeEnvelope({ type: MsgType.PONG, id, pong: { t: (env.ping as { t?: number } | undefined)?.t ?? 0 } }));
      return;
    }
    if (type === MsgType.MIGRATE) {
      const p = (env.migrate as { placement?: { relayId?: string } } | undefined)?.placement;
      void this.#reconnect(`migrate to ${p?.relayId ?? '?'}`, p?.relayId, true);
      return;
    }
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (type === MsgType.ERROR) {
      const err = env.error as { code?: number; message?: string } | undefined;
      pending.reject(new ViewerError(`signaling error ${err?.code ?? '?'}: ${err?.message ?? ''}`));
    } else pending.resolve(env);
  }

  async #offerWs(relay: string | undefined): Promise<void> {
    const c = await this.#newPeer();
    log.debug('offer', { viewer: this.o.id });
    try {
      const id = this.#nextId++;
      const reply = await this.#request(id, { type: MsgType.OFFER, id, offer: { sdp: c.pc.localDescription!.sdp } });
      const sdp = (reply.answer as { sdp?: string } | undefined)?.sdp;
      if (!sdp) throw new ViewerError('ANSWER without SDP');
      log.debug('answer', { viewer: this.o.id, relay });
      await this.#finish(c, sdp, relay);
    } catch (e) {
      await c.pc.close().catch(() => undefined);
      throw e;
    }
  }

  // ----- WHEP -----

  async #connectWhep(): Promise<void> {
    const c = await this.#newPeer();
    try {
      const ex = await postSdp(`${this.o.signalingUrl}/whep/${encodeURIComponent(this.o.stream)}`, c.pc.localDescription!.sdp, this.o.token);
      c.resource = ex.resource;
      const base = new URL(ex.answeredBy).origin;
      await this.#finish(c, ex.answer, this.o.relayIdOf?.(base) ?? base);
    } catch (e) {
      await c.pc.close().catch(() => undefined);
      throw e;
    }
  }

  // ----- the peer -----

  async #newPeer(): Promise<Conn> {
    const pc = new RTCPeerConnection(viewerConfig());
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const c: Conn = { pc, dtls: undefined, resource: undefined, relay: undefined, videoPt: 96, audioPt: 111, rtcpSsrc: (Math.random() * 2 ** 32) >>> 0 };
    for (const t of pc.dtlsTransports) this.#hook(c, t);
    return c;
  }

  /** Wrap the SRTP session werift creates once DTLS completes (see file comment). */
  #hook(c: Conn, t: RTCDtlsTransport): void {
    if (hooked.has(t)) return;
    hooked.add(t);
    const self = this;
    const tt = t as unknown as { updateSrtpSession(): void; srtp: { decrypt(b: Buffer): Buffer } };
    const orig = tt.updateSrtpSession.bind(t);
    tt.updateSrtpSession = function () {
      orig();
      const session = tt.srtp;
      const decrypt = session.decrypt.bind(session);
      session.decrypt = (data: Buffer): Buffer => {
        if (self.#conn !== c) throw CONSUMED;
        const now = self.#clock.now();
        if (self.o.light) {
          const v = parseRtp(data, false);
          if (v && self.meter.wantsPayload(v)) {
            const dec = decrypt(data);
            self.meter.onPacket(now, dec, true, data.length);
          } else self.meter.onPacket(now, data, false);
          throw CONSUMED;
        }
        const dec = decrypt(data);
        self.meter.onPacket(now, dec, true, data.length);
        return dec;
      };
    };
  }

  async #finish(c: Conn, answer: string, relay: string | undefined): Promise<void> {
    c.videoPt = payloadTypeOf(answer, 'VP8') ?? 96;
    c.audioPt = payloadTypeOf(answer, 'opus') ?? 111;
    const ids = extmapIds(answer, ABS_CAPTURE_TIME_URI);
    (this.meter.o as { videoPt: number }).videoPt = c.videoPt;
    (this.meter.o as { audioPt: number }).audioPt = c.audioPt;
    (this.meter.o as { absIds?: number[] }).absIds = [...new Set([...ids.values()])];
    c.relay = relay;
    const old = this.#conn;
    this.#conn = c;
    this.meter.newConnection(relay);
    if (old) void this.#closeConn(old);
    await c.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    // With BUNDLE one transport carries everything: the video transceiver's.
    for (const t of c.pc.dtlsTransports) this.#hook(c, t);
    c.dtls = c.pc.getTransceivers()[0]?.dtlsTransport;
    await connected(c.pc);
    this.#connectedAt = this.#clock.now();
    log.debug('connected', { viewer: this.o.id, relay });
    c.pc.connectionStateChange.subscribe((st) => {
      if ((st === 'failed' || st === 'closed') && this.#conn === c && this.o.protocol === 'whep') void this.#reconnect(`peer connection ${st}`);
    });
  }

  async #closeConn(c: Conn): Promise<void> {
    await deleteResource(c.resource, this.o.token);
    await c.pc.close().catch(() => undefined);
  }

  /** MIGRATE (WebSocket) or media timeout (WHEP): a fresh peer on the new relay. Bounded retries. */
  async #reconnect(reason: string, relay?: string, viaMigrate = false): Promise<void> {
    if (this.#closed || this.#reconnecting) return;
    this.#reconnecting = true;
    log.debug('reconnecting', { viewer: this.o.id, reason });
    let lastError = 'closed while reconnecting';
    try {
      for (let attempt = 0; attempt < 8 && !this.#closed; attempt++) {
        try {
          if (this.o.protocol === 'whep') await this.#connectWhep();
          else if (viaMigrate && this.#ws && this.#ws.readyState === WebSocket.OPEN) await this.#offerWs(relay);
          else {
            // Signaling did not move us (no MIGRATE) or the socket is gone: its session is
            // stale, so join again from scratch for a fresh placement.
            this.#dropWs();
            await this.#joinWs();
          }
          return;
        } catch (e) {
          lastError = (e as Error).message;
          log.debug('reconnect failed', { viewer: this.o.id, attempt, error: e as Error });
          await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        }
      }
      this.meter.failed(`could not reconnect after ${reason}: ${lastError}`);
    } finally {
      this.#reconnecting = false;
    }
  }

  /**
   * Periodic duties, called by the worker every ~20 ms: NACKs (light mode), a keyframe request
   * when no frame has completed for a while, and the WHEP media watchdog.
   */
  tick(now: number): void {
    const c = this.#conn;
    if (!c || this.#closed || !c.dtls) return;
    if (this.o.light) {
      for (const { ssrc, seqs } of this.meter.nacksDue(now)) {
        const nack = new GenericNack({ senderSsrc: c.rtcpSsrc, mediaSourceSsrc: ssrc, lost: seqs });
        void c.dtls.sendRtcp([new RtcpTransportLayerFeedback({ feedback: nack })]).catch(() => undefined);
      }
    }
    // Keyframe request (RFC 4585 section 6.3.1) when video has stalled or never started, at most
    // once a second; relays merge these, so the broadcaster sees a bounded rate.
    const vssrc = this.meter.videoSsrc;
    if (vssrc !== undefined && now - this.#lastPli > 1000 && (this.meter.frozen(now) || (!this.meter.keyframeSeen && this.meter.videoPacketsFor(now) > 1000))) {
      this.#lastPli = now;
      const pli = new PictureLossIndication({ senderSsrc: c.rtcpSsrc, mediaSsrc: vssrc });
      void c.dtls.sendRtcp([new RtcpPayloadSpecificFeedback({ feedback: pli })]).catch(() => undefined);
    }
    // A WebSocket viewer that hears nothing from its relay tells signaling, which probes the
    // relay and declares it down at once if it does not answer (instead of waiting for its
    // lease); once per connection.
    const heard = this.meter.lastPacketAt;
    const stall = this.o.stallReportMs;
    if (stall > 0 && this.o.protocol !== 'whep' && !c.stallReported && heard !== undefined && now - heard > stall && now - this.#connectedAt > stall) {
      const ws = this.#ws;
      if (ws && ws.readyState === WebSocket.OPEN) {
        c.stallReported = true;
        ws.send(encodeEnvelope({ type: MsgType.STALLED, id: this.#nextId++, stalled: { relayId: c.relay ?? '', silentMs: Math.round(now - heard) } }));
      }
    }
    // Media watchdog. WHEP viewers have nobody to tell them their relay died, so they re-POST
    // after mediaTimeoutMs of silence; WebSocket viewers wait for MIGRATE and only fall back to a
    // fresh offer after much longer (signaling missed the failure).
    const last = this.meter.lastPacketAt;
    const limit = this.o.protocol === 'whep' ? this.o.mediaTimeoutMs : 2 * this.o.mediaTimeoutMs;
    if (last !== undefined && now - last > limit && now - this.#connectedAt > limit && this.meter.connections > 0) {
      void this.#reconnect(`no media for ${limit} ms`);
    }
  }

  summary(now: number): ViewerSummary {
    return this.meter.summary(now, percentile);
  }

  /** Leave: LEAVE + close (WebSocket) or DELETE (WHEP). Idempotent. */
  async leave(reason = 'done'): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.meter.left();
    const c = this.#conn;
    this.#conn = undefined;
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws && ws.readyState === WebSocket.OPEN) {
      try {
        ws.send(encodeEnvelope({ type: MsgType.LEAVE, id: this.#nextId++, leave: { reason } }));
      } catch {
        /* closing anyway */
      }
      ws.close();
    } else ws?.terminate();
    if (c) await this.#closeConn(c);
  }
}
