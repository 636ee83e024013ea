/**
 * The Canopy player: `watch(video, url, token)` plays a stream with low latency and keeps it
 * playing. Over the WebSocket protocol (default) signaling places the viewer and brokers SDP;
 * when the relay dies or drains, signaling sends MIGRATE and the player re-offers on the same
 * socket. When the socket itself drops, or media stalls and no MIGRATE comes, it rejoins with
 * exponential backoff. With `{ whep: true }` it uses plain WHEP (POST, 307, DELETE) and re-POSTs
 * on failure.
 *
 * Embedding: bundle this module (it pulls in protobufjs and the schema text), then
 *   const player = watch(videoElement, 'https://live.example.com/whep/cam1', token);
 *   player.on('state', ({ state }) => …); player.on('stats', (s) => …); player.close();
 */
import { backoffDelay, DEFAULT_BACKOFF, validateBackoff, type BackoffOptions } from './backoff.ts';
import { Emitter } from './emitter.ts';
import { PlayerOptionsError, streamEndpoints, type StreamEndpoints } from './endpoints.ts';
import { deleteSession, enableAbsCaptureTime, iceGathered, postSdp } from './http-sdp.ts';
import { firstFrameOverdue, isFatal, isStalled, onMediaLost, unsolicitedError } from './recovery.ts';
import { captureLatencyMs, intervalStats, readInbound, statsLatencyMs, type InboundSample } from './stats.ts';
import { decodeEnvelope, encodeEnvelope, errorName, MsgType, type EnvelopeMsg, type PlacementMsg } from './wire.ts';

export { PlayerOptionsError } from './endpoints.ts';

export type PlayerState =
  | 'connecting' // opening the socket / joining
  | 'negotiating' // offer sent, waiting for the first frame
  | 'playing'
  | 'migrating' // signaling moved us to another relay; re-offering
  | 'reconnecting' // socket or media lost; rejoining after backoff
  | 'failed' // will not retry (e.g. the token is refused)
  | 'closed';

export interface PlayerPlacement {
  relayId: string;
  relayUrl: string;
  /** Depth in the stream's tree, 0 = origin; undefined over plain WHEP (signaling does not say). */
  depth?: number;
  region?: string;
}

export interface PlayerStats {
  state: PlayerState;
  relay?: PlayerPlacement;
  /** Frames decoded since watch(), summed over every peer connection. */
  framesDecoded: number;
  framesPerSecond?: number;
  width?: number;
  height?: number;
  kbps: number;
  /** Loss over the last interval, 0..1. */
  lossFraction: number;
  packetsLost: number;
  packetsReceived: number;
  jitterMs?: number;
  latencyMs?: number;
  /** Where latencyMs came from: abs-capture-time (glass-to-glass) or a stats estimate. */
  latencySource: 'abs-capture-time' | 'stats' | 'none';
  /** watch() to the first decoded frame. */
  ttffMs?: number;
  /** MIGRATE/reconnect to the first decoded frame on the new relay, for the last recovery. */
  lastRecoveryMs?: number;
  migrations: number;
  reconnects: number;
}

export interface PlayerEvents extends Record<string, unknown> {
  state: { state: PlayerState; reason?: string };
  stats: PlayerStats;
  migrate: { reason: string; from?: PlayerPlacement; to?: PlayerPlacement };
  placement: PlayerPlacement;
  firstframe: { ttffMs: number; recoveryMs?: number };
  error: { code: string; message: string; fatal: boolean };
}

export interface WatchOptions {
  /** Plain WHEP instead of the WebSocket protocol (no migrate; re-POSTs on failure). */
  whep?: boolean;
  /** Region hint for placement. */
  region?: string;
  /** Target jitter buffer, ms (RTCRtpReceiver.jitterBufferTarget); 0 = as low as the browser goes. */
  jitterBufferTargetMs?: number;
  /** Mute the element so autoplay is allowed (default true). */
  muted?: boolean;
  iceServers?: RTCIceServer[];
  backoff?: Partial<BackoffOptions>;
  /** Stats sampling while playing, ms (default 250: it also paces relay-failure detection). */
  statsIntervalMs?: number;
  /** Send STATS to signaling every this many ms (default 2000; 0 = never). */
  reportIntervalMs?: number;
  /** No new frame for this long while playing ⇒ reconnect (default 4000). */
  stallMs?: number;
  /**
   * No packet for this long while playing ⇒ tell signaling (STALLED), which probes the relay and,
   * if it is dead, moves every viewer on it at once instead of waiting for its lease. Checked at
   * each stats sample, so a dead relay is reported 300-550 ms after its last packet with the
   * default sampling. Default 300 ms (audio alone arrives every 20 ms; a false report costs
   * signaling one probe); 0 = never.
   */
  stallReportMs?: number;
  /** A new connection that shows no frame for this long is given up and rejoined (default 8000). */
  firstFrameTimeoutMs?: number;
  /** After ICE fails or media stalls, wait this long for a MIGRATE before rejoining on our own
   *  (default 6000: longer than a relay lease, so the mesh gets to say where to go first). */
  migrateGraceMs?: number;
  /** Bound for each signaling request and each WHEP exchange, ms (default 10000). */
  requestTimeoutMs?: number;
}

interface Resolved {
  whep: boolean;
  region: string;
  jitterBufferTargetMs: number;
  muted: boolean;
  iceServers: RTCIceServer[];
  backoff: BackoffOptions;
  statsIntervalMs: number;
  reportIntervalMs: number;
  stallMs: number;
  stallReportMs: number;
  firstFrameTimeoutMs: number;
  migrateGraceMs: number;
  requestTimeoutMs: number;
}

function resolveOptions(o: WatchOptions): Resolved {
  const num = (name: string, v: number | undefined, dflt: number, min: number): number => {
    const x = v ?? dflt;
    if (!Number.isFinite(x) || x < min) throw new PlayerOptionsError(`option ${name} must be a number >= ${min} (got ${String(v)})`);
    return x;
  };
  return {
    whep: o.whep ?? false,
    region: o.region ?? '',
    jitterBufferTargetMs: num('jitterBufferTargetMs', o.jitterBufferTargetMs, 0, 0),
    muted: o.muted ?? true,
    iceServers: o.iceServers ?? [],
    backoff: validateBackoff({ ...DEFAULT_BACKOFF, ...o.backoff }),
    statsIntervalMs: num('statsIntervalMs', o.statsIntervalMs, 250, 100),
    reportIntervalMs: num('reportIntervalMs', o.reportIntervalMs, 2000, 0),
    stallMs: num('stallMs', o.stallMs, 4000, 500),
    stallReportMs: num('stallReportMs', o.stallReportMs, 300, 0),
    firstFrameTimeoutMs: num('firstFrameTimeoutMs', o.firstFrameTimeoutMs, 8000, 1000),
    migrateGraceMs: num('migrateGraceMs', o.migrateGraceMs, 6000, 0),
    requestTimeoutMs: num('requestTimeoutMs', o.requestTimeoutMs, 10_000, 100),
  };
}

/** A signaling reply that is an ERROR; `fatal` when retrying cannot help. */
class SignalError extends Error {
  readonly code: string;
  readonly fatal: boolean;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'SignalError';
    this.code = code;
    this.fatal = isFatal(code);
  }
}

interface Pending {
  resolve(m: EnvelopeMsg): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const PING_INTERVAL_MS = 10_000;
const FIRST_FRAME_POLL_MS = 100;

function placementOf(p: PlacementMsg | undefined): PlayerPlacement | undefined {
  if (!p || !p.relayId) return undefined;
  return { relayId: p.relayId, relayUrl: p.relayUrl ?? '', depth: p.depth ?? 0, region: p.region ?? '' };
}

export class Player extends Emitter<PlayerEvents> {
  readonly endpoints: StreamEndpoints;
  readonly #video: HTMLVideoElement;
  readonly #token: string;
  readonly #o: Resolved;
  readonly #startedAt = performance.now();

  #state: PlayerState = 'connecting';
  #closed = false;
  /** Bumped whenever the socket (or, over WHEP, the session) is replaced; stale callbacks check it. */
  #gen = 0;
  #ws: WebSocket | undefined;
  #pc: RTCPeerConnection | undefined;
  #whepResource: string | undefined;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #placement: PlayerPlacement | undefined;
  #attempt = 0;

  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #statsTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;

  // Statistics: counters of closed peer connections are carried so totals never go backwards.
  #framesBefore = 0;
  #lostBefore = 0;
  #receivedBefore = 0;
  #prev: InboundSample | undefined;
  #pcFirstFrame = false;
  readonly #stream = new MediaStream();
  #pcStartedAt = 0;
  #lastFrameAt = 0;
  /** When this peer connection's packet count last grew, and whether STALLED was sent for it. */
  #lastPacketAt = 0;
  #stallReported = false;
  #recoverySince: number | undefined;
  #lastReportAt = 0;
  #stats: PlayerStats = { state: 'connecting', framesDecoded: 0, kbps: 0, lossFraction: 0, packetsLost: 0, packetsReceived: 0, latencySource: 'none', migrations: 0, reconnects: 0 };

  constructor(video: HTMLVideoElement, url: string, token: string, opts: WatchOptions = {}) {
    super();
    if (!video || typeof (video as { play?: unknown }).play !== 'function') throw new PlayerOptionsError('watch() needs an HTMLVideoElement to play into');
    if (!token) throw new PlayerOptionsError('watch() needs a watch token (mint one with `canopy token --role watch`)');
    this.endpoints = streamEndpoints(url);
    this.#video = video;
    this.#token = token;
    this.#o = resolveOptions(opts);
    video.autoplay = true;
    video.playsInline = true;
    video.muted = this.#o.muted;
    // Start on the next tick so callers can subscribe to the first events.
    setTimeout(() => void this.#connect(), 0);
  }

  get state(): PlayerState {
    return this.#state;
  }
  /** The relay we are on (from JOINED/MIGRATE, or the host that answered the WHEP POST). */
  get placement(): PlayerPlacement | undefined {
    return this.#placement;
  }
  /** The current peer connection (for getStats in tests and diagnostics). */
  get pc(): RTCPeerConnection | undefined {
    return this.#pc;
  }
  get stats(): PlayerStats {
    return { ...this.#stats };
  }

  /** Stop playing: LEAVE (or DELETE over WHEP), close everything. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#gen++;
    this.#clearTimers();
    if (this.#ws && this.#ws.readyState === WebSocket.OPEN) {
      try {
        this.#ws.send(encodeEnvelope({ type: MsgType.LEAVE, id: this.#nextId++, leave: { reason: 'closed' } }));
      } catch {
        // closing anyway
      }
    }
    this.#dropSocket();
    void deleteSession(this.#whepResource, this.#token);
    this.#whepResource = undefined;
    this.#closePc();
    this.#setState('closed', 'closed by the page');
  }

  // ---- connection lifecycle -------------------------------------------------------------

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const gen = ++this.#gen;
    try {
      if (this.#o.whep) await this.#connectWhep(gen);
      else await this.#connectWs(gen);
    } catch (e) {
      if (gen !== this.#gen || this.#closed) return;
      const err = e as Error;
      const code = err instanceof SignalError ? err.code : 'connect_failed';
      const fatal = err instanceof SignalError && err.fatal;
      this.emit('error', { code, message: err.message, fatal });
      if (fatal) {
        this.#clearTimers();
        this.#dropSocket();
        this.#closePc();
        this.#setState('failed', err.message);
      } else {
        this.#reconnect(err.message);
      }
    }
  }

  /** Tear down the session and rejoin after backoff (socket lost, stall, ICE failure, error). */
  #reconnect(reason: string): void {
    if (this.#closed) return;
    const gen = ++this.#gen; // invalidates callbacks of the old socket/session
    this.#dropSocket();
    if (this.#whepResource) void deleteSession(this.#whepResource, this.#token);
    this.#whepResource = undefined;
    this.#closePc();
    this.#stats.reconnects++;
    this.#recoverySince ??= performance.now();
    this.#setState('reconnecting', reason);
    const delay = backoffDelay(this.#attempt++, this.#o.backoff, Math.random());
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      if (gen === this.#gen) void this.#connect();
    }, delay);
  }

  async #connectWs(gen: number): Promise<void> {
    this.#setState(this.#stats.reconnects > 0 ? 'reconnecting' : 'connecting', 'joining');
    const ws = new WebSocket(this.endpoints.ws);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socket to ${this.endpoints.ws} did not open within ${this.#o.requestTimeoutMs} ms`)), this.#o.requestTimeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`cannot open ${this.endpoints.ws}`));
      };
    });
    if (gen !== this.#gen) return;
    ws.onmessage = (ev) => this.#onMessage(gen, ev);
    ws.onerror = null;
    ws.onclose = (ev) => {
      if (gen !== this.#gen || this.#closed) return;
      this.#rejectPending(new Error(`socket closed (${ev.code})`));
      this.#reconnect(`signaling socket closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
    };
    this.#pingTimer = setInterval(() => this.#send({ type: MsgType.PING, id: 0, ping: { t: Date.now() } }), PING_INTERVAL_MS);

    const joined = await this.#request({
      type: MsgType.JOIN,
      join: { stream: this.endpoints.stream, role: 'watch', token: this.#token, region: this.#o.region },
    });
    if (gen !== this.#gen) return;
    const placement = placementOf(joined.joined?.placement);
    if (placement) this.#setPlacement(placement);
    await this.#negotiateWs(gen);
  }

  /** Offer a fresh recvonly peer connection over the socket (after JOINED or MIGRATE). */
  async #negotiateWs(gen: number): Promise<void> {
    const pc = this.#newPc();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await iceGathered(pc);
    if (gen !== this.#gen || pc !== this.#pc) return;
    let reply: EnvelopeMsg;
    try {
      reply = await this.#request({ type: MsgType.OFFER, offer: { sdp: pc.localDescription!.sdp } });
    } catch (e) {
      // A MIGRATE replaced this connection while its offer was out: the failure is moot.
      if (gen !== this.#gen || pc !== this.#pc) return;
      throw e;
    }
    if (gen !== this.#gen || pc !== this.#pc) return;
    const sdp = reply.answer?.sdp;
    if (!sdp) throw new Error('signaling answered the offer without SDP');
    await pc.setRemoteDescription({ type: 'answer', sdp });
    if (pc === this.#pc && this.#state !== 'playing') this.#setState('negotiating', 'waiting for the first frame');
  }

  async #connectWhep(gen: number): Promise<void> {
    this.#setState(this.#stats.reconnects > 0 ? 'reconnecting' : 'connecting', 'posting offer');
    const pc = this.#newPc();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await iceGathered(pc);
    if (gen !== this.#gen || pc !== this.#pc) return;
    const ex = await postSdp(this.endpoints.whep, pc.localDescription!.sdp, this.#token, this.#o.requestTimeoutMs);
    if (gen !== this.#gen || pc !== this.#pc) {
      void deleteSession(ex.resource, this.#token);
      return;
    }
    this.#whepResource = ex.resource;
    const host = new URL(ex.answeredBy);
    this.#setPlacement({ relayId: host.host, relayUrl: host.origin });
    await pc.setRemoteDescription({ type: 'answer', sdp: ex.answer });
    this.#setState('negotiating', 'waiting for the first frame');
  }

  // ---- signaling messages ---------------------------------------------------------------

  #onMessage(gen: number, ev: MessageEvent): void {
    if (gen !== this.#gen || !(ev.data instanceof ArrayBuffer)) return;
    let msg: EnvelopeMsg;
    try {
      msg = decodeEnvelope(new Uint8Array(ev.data));
    } catch (e) {
      this.emit('error', { code: 'malformed', message: (e as Error).message, fatal: false });
      return;
    }
    const id = msg.id ?? 0;
    switch (msg.type) {
      case MsgType.PING:
        this.#send({ type: MsgType.PONG, id, pong: { t: msg.ping?.t ?? 0 } });
        return;
      case MsgType.PONG:
        return;
      case MsgType.MIGRATE:
        this.#onMigrate(gen, msg);
        return;
      case MsgType.ERROR: {
        const p = this.#pending.get(id);
        const err = new SignalError(errorName(msg.error?.code), msg.error?.message || errorName(msg.error?.code));
        if (p) {
          this.#pending.delete(id);
          clearTimeout(p.timer);
          p.reject(err);
        } else {
          const action = unsolicitedError(err.code, id);
          this.emit('error', { code: err.code, message: err.message, fatal: action === 'fail' });
          if (action === 'fail') this.#failed(err.message);
          else if (action === 'rejoin') this.#reconnect(err.message);
        }
        return;
      }
      default: {
        const p = this.#pending.get(id);
        if (!p) return; // a late reply to a request we gave up on
        this.#pending.delete(id);
        clearTimeout(p.timer);
        p.resolve(msg);
      }
    }
  }

  #onMigrate(gen: number, msg: EnvelopeMsg): void {
    const from = this.#placement;
    const to = placementOf(msg.migrate?.placement);
    const reason = msg.migrate?.reason || 'relay_down';
    this.#stats.migrations++;
    this.#recoverySince = performance.now();
    clearTimeout(this.#graceTimer);
    this.emit('migrate', { reason, from, to });
    if (to) this.#setPlacement(to);
    this.#setState('migrating', `${reason}: moving to ${to?.relayId ?? 'a new relay'}`);
    // Close the old connection first: its relay is gone or draining, and one decoder at a time
    // keeps the element's stream simple.
    this.#closePc();
    this.#negotiateWs(gen).catch((e: Error) => {
      if (gen !== this.#gen || this.#closed) return;
      this.emit('error', { code: e instanceof SignalError ? e.code : 'migrate_failed', message: e.message, fatal: false });
      this.#reconnect(`migration failed: ${e.message}`);
    });
  }

  #request(msg: EnvelopeMsg): Promise<EnvelopeMsg> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('signaling socket is not open'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`signaling did not answer request ${id} within ${this.#o.requestTimeoutMs} ms`));
      }, this.#o.requestTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(encodeEnvelope({ ...msg, id }));
    });
  }

  #send(msg: EnvelopeMsg): void {
    if (this.#ws && this.#ws.readyState === WebSocket.OPEN) this.#ws.send(encodeEnvelope(msg));
  }

  #rejectPending(err: Error): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
  }

  // ---- media ----------------------------------------------------------------------------

  #newPc(): RTCPeerConnection {
    this.#closePc();
    const pc = new RTCPeerConnection({ iceServers: this.#o.iceServers });
    this.#pc = pc;
    this.#pcFirstFrame = false;
    this.#stallReported = false;
    this.#pcStartedAt = performance.now();
    this.#prev = undefined;
    for (const kind of ['video', 'audio'] as const) {
      const t = pc.addTransceiver(kind, { direction: 'recvonly' });
      enableAbsCaptureTime(t);
      this.#lowLatency(t.receiver);
    }
    pc.ontrack = (ev) => {
      if (pc !== this.#pc) return;
      // One MediaStream for the player's lifetime: a migration swaps its tracks, so the element
      // keeps its source (and its last frame) instead of starting over.
      const stream = this.#stream;
      for (const old of stream.getTracks()) if (old.kind === ev.track.kind) stream.removeTrack(old);
      stream.addTrack(ev.track);
      if (this.#video.srcObject !== stream) this.#video.srcObject = stream;
      this.#video.play().catch(() => {
        // Autoplay refused (unmuted without a gesture): the page shows the element's controls.
      });
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.#pc || this.#closed) return;
      const s = pc.connectionState;
      if (s === 'failed' || s === 'disconnected') this.#onMediaLost(`connection ${s}`);
      else if (s === 'connected') clearTimeout(this.#graceTimer);
    };
    this.#scheduleStats(FIRST_FRAME_POLL_MS);
    return pc;
  }

  /**
   * Ask for the smallest playout delay the browser allows: jitterBufferTarget (ms, WebRTC
   * Extensions) where present, else Chrome's older playoutDelayHint (seconds).
   */
  #lowLatency(r: RTCRtpReceiver): void {
    const rx = r as unknown as { jitterBufferTarget?: number | null; playoutDelayHint?: number | null };
    try {
      if ('jitterBufferTarget' in r) rx.jitterBufferTarget = this.#o.jitterBufferTargetMs;
      else if ('playoutDelayHint' in r) rx.playoutDelayHint = this.#o.jitterBufferTargetMs / 1000;
    } catch {
      // Out-of-range values throw; the browser's default then applies.
    }
  }

  /**
   * ICE failed or disconnected. Over the socket, signaling normally sends MIGRATE when a relay
   * dies, so wait a moment for it before rejoining on our own; over WHEP, re-POST.
   */
  #onMediaLost(why: string): void {
    const action = onMediaLost(this.#o.whep ? 'whep' : 'ws', this.#o.migrateGraceMs);
    if (action.kind === 'reconnect') {
      this.#reconnect(why);
      return;
    }
    if (this.#graceTimer !== undefined) return;
    const pc = this.#pc;
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined;
      if (pc === this.#pc && !this.#closed) this.#reconnect(`${why} and no migrate within ${action.ms} ms`);
    }, action.ms);
  }

  #closePc(): void {
    const pc = this.#pc;
    if (!pc) return;
    this.#pc = undefined;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
    if (this.#prev) {
      this.#framesBefore += this.#prev.framesDecoded;
      this.#lostBefore += Math.max(0, this.#prev.packetsLost);
      this.#receivedBefore += this.#prev.packetsReceived;
    }
    this.#prev = undefined;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.close();
  }

  // ---- statistics -----------------------------------------------------------------------

  #scheduleStats(ms: number): void {
    clearTimeout(this.#statsTimer);
    if (this.#closed) return;
    this.#statsTimer = setTimeout(() => void this.#sampleStats(), ms);
  }

  async #sampleStats(): Promise<void> {
    const pc = this.#pc;
    if (!pc || this.#closed) return;
    let report: RTCStatsReport;
    try {
      report = await pc.getStats();
    } catch {
      this.#scheduleStats(this.#o.statsIntervalMs);
      return;
    }
    if (pc !== this.#pc) return; // replaced meanwhile; the new pc has its own loop
    const now = performance.now();
    const cur = readInbound(report as unknown as { forEach(cb: (v: Record<string, unknown>) => void): void });
    if (cur) {
      const iv = intervalStats(this.#prev, cur);
      const grew = cur.framesDecoded > (this.#prev?.framesDecoded ?? 0);
      if (cur.packetsReceived > (this.#prev?.packetsReceived ?? 0)) this.#lastPacketAt = now;
      this.#prev = cur;
      if (grew) this.#lastFrameAt = now;
      if (cur.framesDecoded > 0 && !this.#pcFirstFrame) this.#onFirstFrame(now);
      const video = pc.getReceivers().find((r) => r.track.kind === 'video');
      const src = video?.getSynchronizationSources()[0] as (RTCRtpSynchronizationSource & { captureTimestamp?: number; senderCaptureTimeOffset?: number }) | undefined;
      // getSynchronizationSources().timestamp is on the timeOrigin + performance.now() base.
      const abs = captureLatencyMs(src ? { timestamp: src.timestamp, captureTimestamp: src.captureTimestamp, senderCaptureTimeOffset: src.senderCaptureTimeOffset } : undefined);
      const est = abs === undefined ? statsLatencyMs(cur) : undefined;
      Object.assign(this.#stats, {
        state: this.#state,
        relay: this.#placement,
        framesDecoded: this.#framesBefore + cur.framesDecoded,
        framesPerSecond: cur.framesPerSecond,
        width: cur.frameWidth,
        height: cur.frameHeight,
        kbps: iv.kbps,
        lossFraction: iv.lossFraction,
        packetsLost: this.#lostBefore + Math.max(0, cur.packetsLost),
        packetsReceived: this.#receivedBefore + cur.packetsReceived,
        jitterMs: cur.jitter !== undefined ? cur.jitter * 1000 : undefined,
        latencyMs: abs ?? est,
        latencySource: abs !== undefined ? 'abs-capture-time' : est !== undefined ? 'stats' : 'none',
      } satisfies Partial<PlayerStats>);
      this.emit('stats', this.stats);
      this.#report(now);
      if (this.#o.stallReportMs > 0 && !this.#o.whep && !this.#stallReported && isStalled(this.#state === 'playing', now, Math.max(this.#lastPacketAt, this.#lastFrameAt), this.#o.stallReportMs)) {
        this.#stallReported = true;
        this.#send({ type: MsgType.STALLED, id: this.#nextId++, stalled: { relayId: this.#placement?.relayId ?? '', silentMs: Math.round(now - Math.max(this.#lastPacketAt, this.#lastFrameAt)) } });
      }
      if (isStalled(this.#state === 'playing', now, this.#lastFrameAt, this.#o.stallMs)) {
        this.#onMediaLost(`no frame for ${Math.round(now - this.#lastFrameAt)} ms`);
      }
    }
    if (firstFrameOverdue(this.#pcFirstFrame, now, this.#pcStartedAt, this.#o.firstFrameTimeoutMs)) {
      this.#reconnect(`no frame within ${this.#o.firstFrameTimeoutMs} ms of offering`);
      return;
    }
    this.#scheduleStats(this.#pcFirstFrame ? this.#o.statsIntervalMs : FIRST_FRAME_POLL_MS);
  }

  #onFirstFrame(now: number): void {
    this.#pcFirstFrame = true;
    this.#lastFrameAt = now;
    this.#attempt = 0;
    let recoveryMs: number | undefined;
    if (this.#stats.ttffMs === undefined) this.#stats.ttffMs = now - this.#startedAt;
    if (this.#recoverySince !== undefined) {
      recoveryMs = now - this.#recoverySince;
      this.#stats.lastRecoveryMs = recoveryMs;
      this.#recoverySince = undefined;
    }
    this.#setState('playing', 'decoding frames');
    this.emit('firstframe', { ttffMs: this.#stats.ttffMs, recoveryMs });
  }

  #report(now: number): void {
    if (this.#o.whep || this.#o.reportIntervalMs === 0 || now - this.#lastReportAt < this.#o.reportIntervalMs) return;
    this.#lastReportAt = now;
    const s = this.#stats;
    this.#send({
      type: MsgType.STATS,
      id: 0,
      stats: {
        packets: s.packetsReceived,
        lost: s.packetsLost,
        latencyMs: s.latencyMs ?? 0,
        jitterMs: s.jitterMs ?? 0,
        framesDecoded: s.framesDecoded,
        ttffMs: s.ttffMs ?? 0,
      },
    });
  }

  // ---- helpers --------------------------------------------------------------------------

  #setPlacement(p: PlayerPlacement): void {
    this.#placement = p;
    this.#stats.relay = p;
    this.emit('placement', p);
  }

  #setState(state: PlayerState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#stats.state = state;
    this.emit('state', { state, reason });
  }

  #failed(reason: string): void {
    this.#gen++;
    this.#clearTimers();
    this.#dropSocket();
    this.#closePc();
    this.#setState('failed', reason);
  }

  #dropSocket(): void {
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
    this.#rejectPending(new Error('socket replaced'));
    const ws = this.#ws;
    this.#ws = undefined;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(1000);
    } catch {
      // already closed
    }
  }

  #clearTimers(): void {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#statsTimer);
    clearTimeout(this.#graceTimer);
    clearInterval(this.#pingTimer);
    this.#graceTimer = undefined;
  }
}

/** Play `url` (the stream's WHEP URL on signaling, e.g. https://live.example.com/whep/cam1) into `element`. */
export function watch(element: HTMLVideoElement, url: string, token: string, opts?: WatchOptions): Player {
  return new Player(element, url, token, opts);
}
