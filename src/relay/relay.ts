/**
 * The relay: WHIP server (origin), WHEP server (viewers and child relays), WHEP client (pull from
 * a parent), control and observability endpoints. Media forwarding per stream lives in stream.ts;
 * this file owns HTTP, sessions, tokens and werift peer set-up.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver } from 'werift';
import { authorize, bearer, TokenError, type Claims, type Role } from '../auth/token.ts';
import { decodeControl, encodeControlResponse, WireError } from '../proto/index.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { logger } from '../util/log.ts';
import { HttpError, PullError, RelayOptionsError } from './errors.ts';
import { HttpServer, type Request, type Response } from './http.ts';
import { negotiated } from './media.ts';
import { RelayMetrics } from './metrics.ts';
import { createPeer, iceGathered, looksLikeSdpOffer, muteReceiverFeedback, parseSdpFrag, sdpUfrag } from './peer.ts';
import { preferSrtpProfiles } from '../srtp/index.ts';
import { fastSrtpProfiles } from '../srtp/native.ts';
import { RelayStream, type TrackInfo, type Upstream, type DownstreamBinding } from './stream.ts';
import { Downstream } from './downstream.ts';
import { CoreHost } from './forward.ts';
import { FastIngress } from './ingress.ts';

const log = logger('relay');

export interface RelayOptions {
  id: string;
  /** address for HTTP and media (default 127.0.0.1) */
  host?: string;
  /** HTTP port; 0 = ephemeral (default) */
  port?: number;
  /** mesh secret that signs tokens */
  secret: string;
  region?: string;
  /** UDP port range for ICE */
  mediaPortRange?: [number, number];
  /**
   * STUN/TURN servers for ICE. Default none: host candidates only, which is right for loopback,
   * a LAN or a host with a public address; behind NAT give a STUN server here.
   */
  iceServers?: { urls: string }[];
  /** downstream slots (viewers + child relays); default 1000 */
  capacity?: number;
  /** at most one upstream keyframe request per stream track per interval (default 500 ms) */
  pliIntervalMs?: number;
  clock?: Clock;
  /** Test hook: decides whether to drop an upstream RTP packet on pulled streams before the core sees it. */
  ingressDrop?: (stream: string, track: number, seq: number) => boolean;
  /** Per-downstream send queue bound in packets (default 256). */
  maxSendQueue?: number;
  /** Use the SRTP fast path for egress when available (default true). */
  fastPath?: boolean;
  /** A session whose peer is not connected this long after its answer is closed (default 20000 ms). */
  connectTimeoutMs?: number;
}

export type SessionKind = 'publisher' | 'viewer' | 'relay';

interface Session {
  id: string;
  stream: string;
  kind: SessionKind;
  pc: RTCPeerConnection;
  etag: string;
  viewer?: string;
  /** For a child relay's session: the child's relay id (the `sub` of its relay token). */
  peerRelay?: string;
  remoteUfrag?: string;
  downstream?: Downstream;
  closed: boolean;
}

const STREAM_RE = /^[A-Za-z0-9_.~-]{1,128}$/;
const DEFAULT_CAPACITY = 1000;

export class Relay extends EventEmitter {
  readonly id: string;
  readonly region: string;
  readonly #host: string;
  readonly #port: number;
  readonly #secret: string;
  readonly #clock: Clock;
  readonly #capacity: number;
  readonly #pliIntervalMs: number;
  readonly #portRange?: [number, number];
  readonly #iceServers: { urls: string }[];
  readonly #opts: RelayOptions;
  readonly #http: HttpServer;
  readonly #metrics = new RelayMetrics();
  readonly #streams = new Map<string, RelayStream>();
  readonly #sessions = new Map<string, Session>();
  /** current pull per stream: its peer and parent */
  readonly #pulls = new Map<string, { pc: RTCPeerConnection; parentUrl: string; sessionUrl?: string; token: string; gen: number; up: Upstream }>();
  /** First pulls of streams this relay does not carry yet: a WHEP request for one waits for it. */
  readonly #arriving = new Map<string, Promise<unknown>>();
  #pullGen = 0;
  #url = '';
  #draining = false;
  #closed = false;
  #closing?: Promise<void>;
  #timer?: NodeJS.Timeout;
  #coreHost?: CoreHost;

  constructor(opts: RelayOptions) {
    super();
    if (!opts || typeof opts.id !== 'string' || !opts.id) throw new RelayOptionsError('RelayOptions.id must be a non-empty string (the relay id in the topology)');
    if (typeof opts.secret !== 'string' || !opts.secret) throw new RelayOptionsError('RelayOptions.secret must be the mesh secret (CANOPY_SECRET)');
    const port = opts.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RelayOptionsError(`RelayOptions.port must be 0..65535, got ${opts.port}`);
    const capacity = opts.capacity ?? DEFAULT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 0) throw new RelayOptionsError(`RelayOptions.capacity must be a non-negative integer, got ${opts.capacity}`);
    const pli = opts.pliIntervalMs ?? 500;
    if (!(pli > 0)) throw new RelayOptionsError(`RelayOptions.pliIntervalMs must be > 0, got ${opts.pliIntervalMs}`);
    if (opts.mediaPortRange) {
      const [a, b] = opts.mediaPortRange;
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1024 || b > 65535 || a > b) {
        throw new RelayOptionsError(`RelayOptions.mediaPortRange must be [min, max] with 1024 <= min <= max <= 65535, got [${a}, ${b}]`);
      }
    }
    const ct = opts.connectTimeoutMs ?? 20_000;
    if (!(ct > 0)) throw new RelayOptionsError(`RelayOptions.connectTimeoutMs must be > 0, got ${opts.connectTimeoutMs}`);
    const q = opts.maxSendQueue ?? 256;
    if (!Number.isInteger(q) || q < 1) throw new RelayOptionsError(`RelayOptions.maxSendQueue must be a positive integer, got ${opts.maxSendQueue}`);
    this.id = opts.id;
    this.region = opts.region ?? '';
    this.#host = opts.host ?? '127.0.0.1';
    this.#port = port;
    this.#secret = opts.secret;
    this.#clock = opts.clock ?? systemClock;
    this.#capacity = capacity;
    this.#pliIntervalMs = pli;
    this.#portRange = opts.mediaPortRange;
    this.#iceServers = opts.iceServers ?? [];
    this.#opts = opts;
    this.#http = new HttpServer();
    this.#routes();
  }

  get url(): string {
    return this.#url;
  }

  async listen(): Promise<void> {
    if (this.#closed) throw new RelayOptionsError('relay is closed; create a new Relay');
    const port = await this.#http.listen(this.#host, this.#port);
    const h = this.#host.includes(':') ? `[${this.#host}]` : this.#host;
    this.#url = `http://${h}:${port}`;
    // One timer drives merged keyframe requests, upstream NACK/RR and downstream SR for all streams.
    this.#timer = setInterval(() => this.#tick(), 20);
    this.#timer.unref();
    log.info('listening', { id: this.id, url: this.#url });
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const s of this.#streams.values()) {
      try {
        s.tick(now);
      } catch (e) {
        log.error('stream tick failed', { stream: s.name, err: e as Error });
      }
    }
  }

  // ---- public API --------------------------------------------------------------------------------

  streams(): string[] {
    return [...this.#streams.keys()];
  }

  viewerCount(stream?: string): number {
    let n = 0;
    for (const s of this.#sessions.values()) {
      if (s.closed || s.kind === 'publisher') continue;
      if (stream === undefined || s.stream === stream) n++;
    }
    return n;
  }

  metrics(): string {
    let viewers = 0;
    let relays = 0;
    let publishers = 0;
    for (const s of this.#sessions.values()) {
      if (s.kind === 'viewer') viewers++;
      else if (s.kind === 'relay') relays++;
      else publishers++;
    }
    return this.#metrics.render(this.id, { streams: this.#streams.size, viewers, relays, publishers });
  }

  /** Stop accepting new publishers, viewers and pulls; existing sessions continue. */
  drain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * The mesh declared relay `relayId` down: close the sessions it held here as a child relay now,
   * so its slots are free for the repair's re-attached relays instead of waiting for ICE consent
   * to time out. Returns how many were closed.
   */
  async dropRelay(relayId: string): Promise<number> {
    const gone = [...this.#sessions.values()].filter((x) => x.peerRelay === relayId);
    await Promise.all(gone.map((x) => this.#closeSession(x, `relay ${relayId} is down`)));
    return gone.length;
  }

  /**
   * Carry `stream` from the relay at `parentUrl` (WHEP client). Called again with another parent,
   * it re-parents: the new pull comes up first, then the old one is closed; downstreams keep
   * continuous sequence numbers and timestamps and a keyframe is requested at once.
   */
  async pull(stream: string, parentUrl: string, token: string): Promise<void> {
    if (this.#closed) throw new PullError('relay is closed');
    if (this.#streams.has(stream) || this.#arriving.has(stream)) return this.#pull(stream, parentUrl, token);
    const p = this.#pull(stream, parentUrl, token);
    const settled = p.catch(() => undefined);
    this.#arriving.set(stream, settled);
    void settled.then(() => {
      if (this.#arriving.get(stream) === settled) this.#arriving.delete(stream);
    });
    return p;
  }

  async #pull(stream: string, parentUrl: string, token: string): Promise<void> {
    if (!STREAM_RE.test(stream)) throw new PullError(`invalid stream name ${JSON.stringify(stream)}`);
    const existing = this.#streams.get(stream);
    if (existing?.upstreamKind === 'publisher') throw new PullError(`stream ${stream} is published here; an origin does not pull`);
    if (this.#draining && !existing) throw new PullError('relay is draining; it takes no new streams');
    const gen = ++this.#pullGen;
    const pc = createPeer(this.#host, this.#portRange, this.#iceServers, true);
    const prev = this.#pulls.get(stream);
    let sessionUrl: string | undefined;
    try {
      // Offer as many tracks as the current stream has, else one video and one audio plus spares
      // so a parent with several tracks can fill them (unused m-lines come back inactive).
      const kinds: ('video' | 'audio')[] = existing ? existing.tracks.map((t) => t.kind) : ['video', 'audio', 'video', 'audio'];
      const transceivers = kinds.map((k) => pc.addTransceiver(k, { direction: 'recvonly' }));
      await pc.setLocalDescription(await pc.createOffer());
      preferSrtpProfiles(pc, fastSrtpProfiles());
      await iceGathered(pc);
      const whep = `${parentUrl.replace(/\/+$/, '')}/whep/${encodeURIComponent(stream)}`;
      let res: globalThis.Response;
      try {
        res = await fetch(whep, {
          method: 'POST',
          headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
          body: pc.localDescription!.sdp,
          signal: AbortSignal.timeout(10_000),
        });
      } catch (e) {
        throw new PullError(`parent ${parentUrl} did not answer: ${(e as Error).message}`);
      }
      const body = await res.text();
      if (res.status !== 201) throw new PullError(`parent ${parentUrl} refused the pull: ${res.status} ${body.trim()}`, res.status);
      const loc = res.headers.get('location');
      sessionUrl = loc ? new URL(loc, whep).toString() : undefined;
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      const active = transceivers.filter((t) => t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv');
      const tracks = this.#trackInfos(active);
      if (tracks.length === 0) throw new PullError(`parent ${parentUrl} answered without any track for ${stream}`);
      if (this.#closed) throw new PullError('relay closed during pull');
      let s = this.#streams.get(stream);
      if (s && !s.compatible(tracks)) {
        throw new PullError(`parent ${parentUrl} carries different tracks for ${stream} than this relay; unpull first`);
      }
      if (!s) s = this.#createStream(stream, tracks);
      const up = this.#pullUpstream(stream, pc, active, gen);
      this.#pulls.set(stream, { pc, parentUrl, sessionUrl, token, gen, up });
      if (prev) this.#metrics.reparents++;
      s.setUpstream(up, this.#clock.now());
      await this.#waitConnected(pc, 10_000).catch((e: Error) => {
        throw new PullError(`pull from ${parentUrl} did not connect: ${e.message}`);
      });
      log.info('pulling', { stream, parent: parentUrl, reparent: !!prev });
    } catch (e) {
      if (this.#pulls.get(stream)?.gen === gen) {
        this.#pulls.delete(stream);
        // A failed re-parent falls back to the previous parent (still connected: it is closed
        // only after the new one is up); the munger starts another epoch, output stays continuous.
        if (prev) {
          this.#pulls.set(stream, prev);
          this.#streams.get(stream)?.setUpstream(prev.up, this.#clock.now());
        } else if (this.#streams.get(stream)?.upstreamKind === 'pull') {
          await this.#endStream(stream);
        }
      }
      // Release the session the parent already created for us.
      if (sessionUrl) void fetch(sessionUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) }).catch(() => {});
      await pc.close().catch(() => {});
      throw e instanceof PullError ? e : new PullError((e as Error).message);
    }
    if (prev) await this.#closePull(prev);
  }

  async unpull(stream: string): Promise<void> {
    const p = this.#pulls.get(stream);
    this.#pulls.delete(stream);
    if (p) await this.#closePull(p);
    const s = this.#streams.get(stream);
    if (s && s.upstreamKind === 'pull') await this.#endStream(stream);
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      clearInterval(this.#timer);
      this.#http.close();
      const pulls = [...this.#pulls.values()];
      this.#pulls.clear();
      await Promise.all(pulls.map((p) => this.#closePull(p)));
      await Promise.all([...this.#sessions.values()].map((s) => this.#closeSession(s, 'relay closed')));
      for (const name of [...this.#streams.keys()]) await this.#endStream(name);
    })();
    return this.#closing;
  }

  // ---- HTTP ----------------------------------------------------------------------------------------

  #routes(): void {
    const h = this.#http;
    const wrap = (fn: (r: Request) => Promise<Response> | Response) => async (r: Request): Promise<Response> => {
      try {
        return await fn(r);
      } catch (e) {
        if (e instanceof TokenError) {
          this.#metrics.httpError(e.status);
          throw new HttpError(e.status, e.message, e.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : undefined);
        }
        if (e instanceof HttpError) this.#metrics.httpError(e.status);
        throw e;
      }
    };
    h.route('post', '/whip/:stream', wrap((r) => this.#postWhip(r)), 1);
    h.route('post', '/whep/:stream', wrap((r) => this.#postWhep(r)), 1);
    for (const kind of ['whip', 'whep'] as const) {
      h.route('del', `/${kind}/:stream/:session`, wrap((r) => this.#deleteSession(kind, r)), 2);
      h.route('patch', `/${kind}/:stream/:session`, wrap((r) => this.#patchSession(kind, r)), 2);
      h.route('options', `/${kind}/:stream`, () => this.#options(), 1);
      h.route('options', `/${kind}/:stream/:session`, () => ({ status: 204, headers: { 'Accept-Patch': 'application/trickle-ice-sdpfrag' } }), 2);
      h.route('any', `/${kind}/:stream`, wrap(() => {
        throw new HttpError(405, `use POST to open a ${kind.toUpperCase()} session`, { Allow: 'POST, OPTIONS' });
      }), 1);
      h.route('any', `/${kind}/:stream/:session`, wrap(() => {
        throw new HttpError(405, 'use PATCH or DELETE on a session', { Allow: 'PATCH, DELETE, OPTIONS' });
      }), 2);
    }
    h.route('post', '/control', wrap((r) => this.#control(r)));
    h.route('options', '/control', () => ({ status: 204 }));
    h.route('get', '/metrics', () => ({ status: 200, headers: { 'Content-Type': 'text/plain; version=0.0.4' }, body: this.metrics() }));
    h.route('get', '/healthz', () => ({
      status: this.#closed ? 503 : 200,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ok: !this.#closed, id: this.id, draining: this.#draining, streams: this.#streams.size, viewers: this.viewerCount() }),
    }));
    h.route('any', '/*', wrap(() => {
      throw new HttpError(404, 'not found');
    }));
  }

  #options(): Response {
    // RFC 9725 §4.6: OPTIONS answers CORS preflight; Accept-Post names the offer type.
    return { status: 204, headers: { 'Accept-Post': 'application/sdp', Allow: 'POST, OPTIONS' } };
  }

  #token(r: Request): string | undefined {
    return bearer(r.headers.authorization) ?? r.q('token');
  }

  #auth(r: Request, role: Role, stream: string): Claims {
    return authorize(this.#token(r), this.#secret, this.#clock.now(), role, stream);
  }

  #checkOffer(r: Request): string {
    const ct = (r.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/sdp') throw new HttpError(415, 'Content-Type must be application/sdp', { 'Accept-Post': 'application/sdp' });
    const sdp = r.body.toString('utf8');
    const bad = looksLikeSdpOffer(sdp);
    if (bad) throw new HttpError(400, bad);
    return sdp;
  }

  #streamParam(r: Request): string {
    const s = r.params[0] ?? '';
    if (!STREAM_RE.test(s)) throw new HttpError(400, 'stream name must be 1-128 characters of A-Z a-z 0-9 _ . ~ -');
    return s;
  }

  #newSessionId(): string {
    return randomBytes(12).toString('base64url');
  }

  #etag(): string {
    return `"${randomBytes(8).toString('hex')}"`;
  }

  async #postWhip(r: Request): Promise<Response> {
    const stream = this.#streamParam(r);
    this.#auth(r, 'publish', stream);
    const sdp = this.#checkOffer(r);
    if (this.#closed || this.#draining) throw new HttpError(503, 'relay is draining; publish elsewhere');
    if (this.#streams.has(stream)) throw new HttpError(409, `stream ${stream} is already being published or pulled here`);
    const pc = createPeer(this.#host, this.#portRange, this.#iceServers);
    const id = this.#newSessionId();
    const session: Session = { id, stream, kind: 'publisher', pc, etag: this.#etag(), remoteUfrag: sdpUfrag(sdp), closed: false };
    try {
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp });
      } catch (e) {
        throw new HttpError(400, `SDP offer rejected: ${(e as Error).message}`);
      }
      const recv = pc.getTransceivers().filter((t) => t.codecs.length > 0 && (t.direction === 'recvonly' || t.direction === 'sendrecv'));
      for (const t of pc.getTransceivers()) if (!recv.includes(t)) t.setDirection('inactive');
      const tracks = this.#trackInfos(recv);
      if (tracks.length === 0) throw new HttpError(422, 'no supported codec in the offer: send VP8, H264, VP9 or AV1 video, or Opus audio');
      await pc.setLocalDescription(await pc.createAnswer());
      preferSrtpProfiles(pc, fastSrtpProfiles());
      await iceGathered(pc);
      if (this.#streams.has(stream)) throw new HttpError(409, `stream ${stream} is already being published here`);
      if (this.#closed) throw new HttpError(503, 'relay is closing');
      const s = this.#createStream(stream, tracks);
      s.setUpstream(this.#whipUpstream(stream, pc, recv), this.#clock.now());
      s.publisherSession = id;
      this.#sessions.set(id, session);
      this.#watchPeer(session);
      this.#metrics.sessionsOpened++;
      this.emit('publish', stream, id);
      return {
        status: 201,
        headers: { 'Content-Type': 'application/sdp', Location: `/whip/${encodeURIComponent(stream)}/${id}`, ETag: session.etag },
        body: pc.localDescription!.sdp,
        onUnsent: () => void this.#closeSession(session, 'client went away before the answer'),
      };
    } catch (e) {
      await pc.close().catch(() => {});
      throw e;
    }
  }

  async #postWhep(r: Request): Promise<Response> {
    const stream = this.#streamParam(r);
    const claims = this.#auth(r, 'watch', stream);
    const sdp = this.#checkOffer(r);
    if (this.#closed || this.#draining) throw new HttpError(503, 'relay is draining; ask signaling for another relay');
    let s = this.#streams.get(stream);
    // A relay the tree just attached may be asked for the stream while its first pull is still
    // connecting (a migrating viewer is sent here at once): wait for that pull rather than 404
    // and a retry. The pull is bounded by its own timeouts.
    const arriving = s ? undefined : this.#arriving.get(stream);
    if (arriving) {
      await arriving;
      if (this.#closed || this.#draining) throw new HttpError(503, 'relay is draining; ask signaling for another relay');
      s = this.#streams.get(stream);
    }
    if (!s) throw new HttpError(404, `stream ${stream} is not carried by this relay`);
    const kind: SessionKind = claims.role === 'relay' ? 'relay' : 'viewer';
    const peerRelay = kind === 'relay' && claims.sub ? claims.sub : undefined;
    // A child relay that pulls again (it restarted, or re-parented back here) replaces its old
    // session for the stream: that one is dead or about to be, and must not hold a slot.
    if (peerRelay) for (const old of this.#sessions.values()) if (old.peerRelay === peerRelay && old.stream === stream) await this.#closeSession(old, 'replaced by a new pull from the same relay');
    if (this.viewerCount() >= this.#capacity) throw new HttpError(503, 'relay is at capacity; ask signaling for another relay');
    const viewer = r.q('viewer');
    const pc = createPeer(this.#host, this.#portRange, this.#iceServers);
    const id = this.#newSessionId();
    const session: Session = { id, stream, kind, pc, etag: this.#etag(), viewer, ...(peerRelay ? { peerRelay } : {}), remoteUfrag: sdpUfrag(sdp), closed: false };
    try {
      // Pre-create one sendonly transceiver per stream track so the offer's m-lines bind to them by kind, in order.
      const mine = s.tracks.map((t) => pc.addTransceiver(t.kind, { direction: 'sendonly' }));
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp });
      } catch (e) {
        throw new HttpError(400, `SDP offer rejected: ${(e as Error).message}`);
      }
      const bindings: DownstreamBinding[] = [];
      mine.forEach((t, i) => {
        const n = t.mid != null && t.codecs.length > 0 ? negotiated(t) : undefined;
        if (!n || !(t.direction === 'sendonly' || t.direction === 'sendrecv')) {
          return;
        }
        const src = s.tracks[i]!;
        if (n.mimeType.toLowerCase() !== src.mimeType.toLowerCase()) return; // viewer cannot decode this track
        bindings.push({ track: i, transceiver: t, ssrc: t.sender.ssrc, payloadType: n.payloadType, extIds: n.extIds, clockRate: n.clockRate });
      });
      for (const t of pc.getTransceivers()) if (!mine.includes(t) || !bindings.some((b) => b.transceiver === t)) t.setDirection('inactive');
      if (bindings.length === 0) {
        throw new HttpError(422, `offer accepts none of the stream's tracks (${s.tracks.map((t) => t.mimeType).join(', ')}); offer recvonly m-lines with those codecs`);
      }
      await pc.setLocalDescription(await pc.createAnswer());
      preferSrtpProfiles(pc, fastSrtpProfiles());
      await iceGathered(pc);
      if (this.#closed || this.#streams.get(stream) !== s) throw new HttpError(404, `stream ${stream} ended`);
      const ds = new Downstream({
        id,
        kind: kind === 'relay' ? 'relay' : 'viewer',
        pc,
        bindings,
        metrics: this.#metrics,
        maxQueue: this.#opts.maxSendQueue ?? 256,
        fastPath: this.#opts.fastPath ?? true,
        clock: this.#clock,
      });
      session.downstream = ds;
      this.#sessions.set(id, session);
      s.addDownstream(ds, this.#clock.now());
      this.#watchPeer(session);
      this.#metrics.sessionsOpened++;
      this.emit('session-open', { stream, sessionId: id, kind: session.kind, viewer });
      return {
        status: 201,
        headers: { 'Content-Type': 'application/sdp', Location: `/whep/${encodeURIComponent(stream)}/${id}`, ETag: session.etag },
        body: pc.localDescription!.sdp,
        onUnsent: () => void this.#closeSession(session, 'client went away before the answer'),
      };
    } catch (e) {
      await pc.close().catch(() => {});
      throw e;
    }
  }

  #sessionFor(kind: 'whip' | 'whep', r: Request): Session {
    const stream = this.#streamParam(r);
    const s = this.#sessions.get(r.params[1] ?? '');
    const want = kind === 'whip' ? 'publisher' : undefined;
    if (!s || s.closed || s.stream !== stream || (want ? s.kind !== want : s.kind === 'publisher')) {
      throw new HttpError(404, 'no such session');
    }
    return s;
  }

  async #deleteSession(kind: 'whip' | 'whep', r: Request): Promise<Response> {
    const stream = this.#streamParam(r);
    this.#auth(r, kind === 'whip' ? 'publish' : 'watch', stream);
    const s = this.#sessionFor(kind, r);
    await this.#closeSession(s, 'deleted by client');
    return { status: 200 };
  }

  async #patchSession(kind: 'whip' | 'whep', r: Request): Promise<Response> {
    const stream = this.#streamParam(r);
    this.#auth(r, kind === 'whip' ? 'publish' : 'watch', stream);
    const s = this.#sessionFor(kind, r);
    const ct = (r.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/trickle-ice-sdpfrag') {
      throw new HttpError(415, 'Content-Type must be application/trickle-ice-sdpfrag', { 'Accept-Patch': 'application/trickle-ice-sdpfrag' });
    }
    const ifMatch = r.headers['if-match'];
    // RFC 9725 §4.3.1: trickle PATCHes carry If-Match with the session's ETag; "*" means ICE restart.
    if (!ifMatch) throw new HttpError(428, 'If-Match with the session ETag is required');
    const frag = parseSdpFrag(r.body.toString('utf8'));
    const restart = ifMatch === '*' || (frag.ufrag !== undefined && frag.ufrag !== s.remoteUfrag);
    if (restart) {
      // An ICE restart needs a new answer from werift's answerer, which it cannot produce for an
      // existing session; the client re-POSTs instead (RFC 9725 §4.3.2 allows refusing).
      throw new HttpError(422, 'ICE restart is not supported on this relay; DELETE the session and POST a new offer');
    }
    if (ifMatch !== s.etag) throw new HttpError(412, 'If-Match does not match the session ETag');
    for (const c of frag.candidates) {
      try {
        await s.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.mid ?? s.pc.getTransceivers()[0]?.mid ?? '0' });
      } catch (e) {
        throw new HttpError(400, `bad candidate: ${(e as Error).message}`);
      }
    }
    return { status: 204 };
  }

  async #control(r: Request): Promise<Response> {
    // Control needs a relay or admin token valid for every stream ('*').
    authorize(this.#token(r), this.#secret, this.#clock.now(), 'relay', '*');
    let req: { id?: number; pull?: { stream: string; parentUrl: string; token: string }; unpull?: { stream: string }; drain?: object };
    try {
      req = decodeControl(r.body);
    } catch (e) {
      if (e instanceof WireError) throw new HttpError(400, e.message);
      throw new HttpError(400, 'body is not a protobuf ControlRequest');
    }
    const id = req.id ?? 0;
    const reply = (ok: boolean, error = ''): Response => ({
      status: ok ? 200 : 502,
      headers: { 'Content-Type': 'application/x-protobuf' },
      body: encodeControlResponse({ id, ok, error }),
    });
    try {
      if (req.pull) {
        await this.pull(req.pull.stream, req.pull.parentUrl, req.pull.token);
      } else if (req.unpull) {
        await this.unpull(req.unpull.stream);
      } else if (req.drain) {
        this.drain();
      } else {
        throw new HttpError(400, 'ControlRequest has no operation (pull, unpull or drain)');
      }
      return reply(true);
    } catch (e) {
      if (e instanceof HttpError) throw e;
      return reply(false, (e as Error).message);
    }
  }

  // ---- sessions, streams, upstreams ---------------------------------------------------------------

  #trackInfos(ts: RTCRtpTransceiver[]): TrackInfo[] {
    const out: TrackInfo[] = [];
    for (const t of ts) {
      const n = negotiated(t);
      if (!n) continue;
      out.push({ kind: n.kind, mimeType: n.mimeType, clockRate: n.clockRate, payloadType: n.payloadType, extIds: n.extIds, mid: n.mid });
    }
    return out;
  }

  #createStream(name: string, tracks: TrackInfo[]): RelayStream {
    // One WASM core per relay, created on first use: a track is a core stream, a (downstream, track) pair a munger.
    this.#coreHost ??= new CoreHost(256, Math.min(1 << 20, Math.max(256, (this.#capacity + 16) * 4)));
    const s = new RelayStream({ name, tracks, pliIntervalMs: this.#pliIntervalMs, metrics: this.#metrics, host: this.#coreHost });
    this.#streams.set(name, s);
    return s;
  }

  #bindReceivers(stream: string, pc: RTCPeerConnection, ts: RTCRtpTransceiver[], drop: boolean, isCurrent: () => boolean): void {
    const hook = this.#opts.ingressDrop;
    const dropFn = drop && hook ? (i: number, seq: number) => hook(stream, i, seq) : undefined;
    const deliver = (i: number, ssrc: number, pkt: Uint8Array): void => {
      if (!isCurrent()) return;
      this.#streams.get(stream)?.ingest(i, ssrc, pkt, this.#clock.now());
    };
    // After werift has routed the first packet of an SSRC, the fast ingress decrypts the rest.
    const dtls = ts[0]?.receiver.dtlsTransport ?? pc.dtlsTransports[0];
    const m = this.#metrics;
    const fast =
      (this.#opts.fastPath ?? true) && dtls
        ? new FastIngress(dtls, deliver, { drop: dropFn, onFast: () => m.packetsInFast++, onBatched: () => m.packetsInBatched++ })
        : undefined;
    if (fast) pc.connectionStateChange.subscribe((st) => st === 'closed' && fast.close());
    ts.forEach((t, i) => {
      muteReceiverFeedback(t.receiver);
      // The remote track may already exist (werift fires onTrack inside setRemoteDescription) or
      // appear later; subscribe to each track object once.
      const seen = new WeakSet<object>();
      const bind = (track: MediaStreamTrack): void => {
        if (seen.has(track)) return;
        seen.add(track);
        track.onReceiveRtp.subscribe((rtp) => {
          fast?.learn(rtp.header.ssrc, i);
          if (dropFn?.(i, rtp.header.sequenceNumber)) return;
          deliver(i, rtp.header.ssrc, rtp.serialize());
        });
      };
      bind(t.receiver.track);
      for (const tr of t.receiver.tracks) bind(tr);
      t.onTrack.subscribe(bind);
      t.receiver.onRtcp.subscribe((pkt) => {
        // Sender reports from upstream feed LSR/DLSR of our receiver reports (RFC 3550 §6.4.2).
        const p = pkt as unknown as { type: number; ssrc?: number; senderInfo?: { ntpTimestamp: bigint } };
        if (p.type === 200 && p.senderInfo && p.ssrc !== undefined && isCurrent()) {
          this.#streams.get(stream)?.upstreamSenderReport(i, p.ssrc, p.senderInfo.ntpTimestamp, this.#clock.now());
        }
      });
    });
  }

  #whipUpstream(stream: string, pc: RTCPeerConnection, ts: RTCRtpTransceiver[]): Upstream {
    this.#bindReceivers(stream, pc, ts, false, () => true);
    return this.#upstreamOf('publisher', pc, ts);
  }

  #pullUpstream(stream: string, pc: RTCPeerConnection, ts: RTCRtpTransceiver[], gen: number): Upstream {
    const isCurrent = () => this.#pulls.get(stream)?.gen === gen || !this.#pulls.has(stream);
    this.#bindReceivers(stream, pc, ts, true, isCurrent);
    pc.connectionStateChange.subscribe((state) => {
      if ((state === 'failed' || state === 'closed' || state === 'disconnected') && this.#pulls.get(stream)?.gen === gen && !this.#closed) {
        log.warn('parent lost', { stream, state });
        this.emit('parent-lost', stream);
      }
    });
    return this.#upstreamOf('pull', pc, ts);
  }

  #upstreamOf(kind: 'publisher' | 'pull', pc: RTCPeerConnection, ts: RTCRtpTransceiver[]): Upstream {
    return {
      kind,
      extIds: ts.map((t) => negotiated(t)?.extIds ?? new Map<string, number>()),
      rtcpSsrc: ts[0]?.receiver.rtcpSsrc ?? 1,
      transport: () => ts[0]?.receiver.dtlsTransport ?? pc.dtlsTransports[0],
    };
  }

  #watchPeer(s: Session): void {
    s.pc.connectionStateChange.subscribe((state) => {
      if (state === 'failed' || state === 'closed') void this.#closeSession(s, `peer ${state}`);
    });
    // A client that never connects (it left before reading the answer, or ICE cannot reach it)
    // must not hold a slot: close the session when it is not up in time.
    const t = setTimeout(() => {
      if (!s.closed && s.pc.connectionState !== 'connected') void this.#closeSession(s, 'peer never connected');
    }, this.#opts.connectTimeoutMs ?? 20_000);
    t.unref();
  }

  async #closeSession(s: Session, why: string): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    this.#sessions.delete(s.id);
    this.#metrics.sessionsClosed++;
    log.debug('session closed', { id: s.id, stream: s.stream, kind: s.kind, why });
    const stream = this.#streams.get(s.stream);
    if (s.kind === 'publisher') {
      if (stream && stream.publisherSession === s.id) await this.#endStream(s.stream);
    } else {
      if (stream && s.downstream) stream.removeDownstream(s.downstream);
      s.downstream?.close();
      this.emit('session-close', { stream: s.stream, sessionId: s.id, kind: s.kind, viewer: s.viewer });
    }
    await s.pc.close().catch(() => {});
  }

  async #endStream(name: string): Promise<void> {
    const s = this.#streams.get(name);
    if (!s) return;
    this.#streams.delete(name);
    const wasPublished = s.upstreamKind === 'publisher';
    // Downstreams of an ended stream are closed: viewers re-join through signaling.
    for (const sess of [...this.#sessions.values()]) {
      if (sess.stream === name && sess.kind !== 'publisher') await this.#closeSession(sess, 'stream ended');
      else if (sess.stream === name && sess.kind === 'publisher' && !sess.closed) {
        sess.closed = true;
        this.#sessions.delete(sess.id);
        this.#metrics.sessionsClosed++;
        await sess.pc.close().catch(() => {});
      }
    }
    s.close();
    if (wasPublished) this.emit('unpublish', name);
  }

  async #closePull(p: { pc: RTCPeerConnection; sessionUrl?: string; token: string }): Promise<void> {
    if (p.sessionUrl) {
      await fetch(p.sessionUrl, { method: 'DELETE', headers: { authorization: `Bearer ${p.token}` }, signal: AbortSignal.timeout(2000) }).catch(() => {});
    }
    await p.pc.close().catch(() => {});
  }

  #waitConnected(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
    if (pc.connectionState === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        sub.unSubscribe();
        reject(new Error(`not connected after ${timeoutMs} ms`));
      }, timeoutMs);
      const sub = pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') {
          clearTimeout(t);
          sub.unSubscribe();
          resolve();
        } else if (s === 'failed' || s === 'closed') {
          clearTimeout(t);
          sub.unSubscribe();
          reject(new Error(`connection ${s}`));
        }
      });
    });
  }
}

