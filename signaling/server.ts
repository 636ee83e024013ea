/**
 * Signaling: the public HTTP and WebSocket entry of the mesh, on uWebSockets.js.
 *
 * HTTP: WHIP/WHEP entry (307 to the chosen relay, or brokered), admin API, /metrics, /healthz,
 * static pages. WebSocket /ws: the Envelope protocol (JOIN, OFFER, MIGRATE, ...) for viewers
 * whose session must outlive their relay. Sessions live in this process; placement and events
 * come from the shared store, so any number of signaling processes can share one Redis.
 */
import uWS from 'uWebSockets.js';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, us_socket_context_t, WebSocket } from 'uWebSockets.js';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { authorize, mintToken, type Role } from '../src/auth/token.ts';
import { decodeEnvelope, encodeEnvelope, ErrorCode, MAX_FRAME_BYTES, MsgType, WireError } from '../src/proto/index.ts';
import { systemClock, type Clock } from '../src/util/clock.ts';
import { logger } from '../src/util/log.ts';
import { classify, SignalingError, type CodeName } from './errors.ts';
import { HttpError, json, requestToken, serve, text, type Reply, type Req } from './http.ts';
import { PerKeyLimit, TokenBucket } from './limits.ts';
import { Registry } from './metrics.ts';
import { control, deleteSession, postOffer, probeRelay, RelayCallError } from './relay-client.ts';
import { serveStatic } from './static.ts';
import { pickOrigin } from './origin.ts';
import type { Placement, RelayInfo, Topology, TopologyEvent } from '../src/topology/index.ts';

const log = logger('signaling');

export class SignalingOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignalingOptionsError';
  }
}

export interface SignalingLimits {
  /** Largest HTTP request body (SDP offers, control). Default 64 KiB. */
  maxBodyBytes: number;
  /** Largest WebSocket frame; bigger frames get ERR_TOO_LARGE and the socket is closed. Default MAX_FRAME_BYTES. */
  maxFrameBytes: number;
  /** JOINs per socket per second (token bucket rate). Default 5. */
  joinsPerSecond: number;
  /** JOINs a socket may send in a burst. Default 10. */
  joinBurst: number;
  /** Frames of any kind per socket per second before ERR_RATE_LIMITED. Default 50. */
  framesPerSecond: number;
  /** Open WebSocket sessions per client IP. Default 200. */
  sessionsPerIp: number;
  /** Malformed/unknown/oversized frames a socket may send before it is closed. Default 10. */
  maxBadFrames: number;
  /** Close sockets silent for this long (uWS resolution is ~4 s). Default 60. */
  idleTimeoutSec: number;
}

export interface SignalingOptions {
  secret: string;
  topology: Topology;
  host?: string;
  /** 0 = ephemeral. Default 8080. */
  port?: number;
  clock?: Clock;
  /** Directory of the web pages. Default build/web in the checkout. */
  webRoot?: string;
  /** Broker every WHIP/WHEP request (forward the SDP) instead of redirecting. Default false. */
  broker?: boolean;
  /** Lifetime of the relay-scoped tokens put in redirects and control calls. Default 60 s. */
  relayTokenTtlSec?: number;
  /** Bound on every call to a relay (a WHEP answer includes the relay's ICE gathering). Default 10000 ms. */
  relayTimeoutMs?: number;
  /**
   * Bound on a pull control call, which returns once the new relay's WHEP session with its
   * parent is connected (ICE + DTLS). Default 15000 ms.
   */
  pullTimeoutMs?: number;
  /** Retries of a migrate placement when no relay has room yet. Default 5, 300 ms apart. */
  migrateRetries?: number;
  /**
   * After RELAY_DOWN / RELAY_DRAINING, how long to wait for the store's VIEWER_MOVE before
   * re-placing a viewer ourselves. Default 1500 ms.
   */
  moveGraceMs?: number;
  /**
   * A viewer's STALLED report makes signaling probe its relay (GET /healthz) with this bound. A
   * refused connection (nothing listens: the process is gone) declares the relay down at once
   * instead of waiting for its lease. No answer within the bound proves nothing (a relay busy
   * with a renegotiation storm looks the same as a dead host), so it is left to the lease.
   * Default 400 ms.
   */
  stallProbeTimeoutMs?: number;
  /** After a relay answered a probe, further STALLED reports about it are ignored this long. Default 2000 ms. */
  stallProbeCooldownMs?: number;
  limits?: Partial<SignalingLimits>;
}

const DEFAULT_LIMITS: SignalingLimits = {
  maxBodyBytes: 64 * 1024,
  maxFrameBytes: MAX_FRAME_BYTES,
  joinsPerSecond: 5,
  joinBurst: 10,
  framesPerSecond: 50,
  sessionsPerIp: 200,
  maxBadFrames: 10,
  idleTimeoutSec: 60,
};

type MoveReason = 'relay_down' | 'drain' | 'rebalance';

const STREAM_RE = /^[A-Za-z0-9._~-]{1,128}$/;
const REGION_RE = /^[A-Za-z0-9._-]{0,64}$/;

interface Joined {
  stream: string;
  region: string;
  viewerId: string;
  relay: RelayInfo;
  depth: number;
}

interface WsData {
  id: string;
  ip: string;
  joins: TokenBucket;
  frames: TokenBucket;
  badFrames: number;
  closed: boolean;
  joining: boolean;
  joined?: Joined;
  /** The relay-side WHEP session currently serving this viewer. */
  relaySession?: { location: string; relayId: string };
  /** Bumped on every migrate so a late offer result for the old relay is not delivered. */
  epoch: number;
  ws?: WebSocket<WsData>;
}

const codeName = (n: number): string => Object.keys(ErrorCode).find((k) => ErrorCode[k] === n) ?? String(n);

export class SignalingServer {
  readonly #opts: Required<Omit<SignalingOptions, 'limits' | 'webRoot' | 'topology'>> & { webRoot: string };
  readonly #limits: SignalingLimits;
  readonly #clock: Clock;
  readonly #topo: Topology;
  /** Relays recently reported down or draining, so a VIEWER_MOVE can say why. Bounded. */
  readonly #leaving = new Map<string, 'relay_down' | 'drain'>();
  readonly #app: TemplatedApp;
  #listen: us_listen_socket | undefined;
  #port = 0;
  #closed = false;
  #unsubscribe: (() => void) | undefined;
  readonly #perIp: PerKeyLimit;
  readonly #sessions = new Set<WsData>();
  readonly #byViewer = new Map<string, WsData>();
  readonly #pendingPulls = new Map<string, Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Relay liveness probes after STALLED reports: one in flight per relay, then a cooldown. */
  readonly #probes = new Map<string, { running: boolean; at: number }>();

  readonly #reg = new Registry();
  readonly #m = {
    joins: this.#reg.counter('canopy_signaling_joins_total', 'Viewer placements made (WebSocket JOIN and WHEP)'),
    publishes: this.#reg.counter('canopy_signaling_publishes_total', 'WHIP requests placed on an origin'),
    errors: this.#reg.counter('canopy_signaling_errors_total', 'Errors returned, by code and transport'),
    http: this.#reg.counter('canopy_signaling_http_responses_total', 'HTTP responses by status'),
    storeErrors: this.#reg.counter('canopy_signaling_store_errors_total', 'Topology store calls that failed because the store was unavailable'),
    migrations: this.#reg.counter('canopy_signaling_migrations_total', 'MIGRATE messages sent, by reason'),
    stalls: this.#reg.counter('canopy_signaling_stall_reports_total', 'STALLED reports from viewers, by what the probe of their relay found'),
    declaredDown: this.#reg.counter('canopy_signaling_relays_declared_down_total', 'Relays this process declared down because they did not answer a probe'),
    offers: this.#reg.counter('canopy_signaling_offers_total', 'SDP offers brokered to relays, by result'),
    assign: this.#reg.histogram('canopy_signaling_assignment_seconds', 'Time to place a viewer (authorize + reserve + grow the tree)', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
  };

  constructor(opts: SignalingOptions) {
    if (!opts || typeof opts.secret !== 'string' || opts.secret.length < 16) {
      throw new SignalingOptionsError('SignalingServer: secret must be at least 16 characters; set CANOPY_SECRET');
    }
    if (!opts.topology) throw new SignalingOptionsError('SignalingServer: topology is required (a MemoryTopology or RedisTopology)');
    const port = opts.port ?? 8080;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SignalingOptionsError(`SignalingServer: port must be 0..65535, got ${port}`);
    const limits = { ...DEFAULT_LIMITS, ...opts.limits };
    for (const [k, v] of Object.entries(limits)) {
      if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new SignalingOptionsError(`SignalingServer: limits.${k} must be a positive number, got ${v}`);
    }
    if (limits.maxFrameBytes > 16 * 1024 * 1024) throw new SignalingOptionsError('SignalingServer: limits.maxFrameBytes must be at most 16 MiB');
    this.#limits = limits;
    this.#clock = opts.clock ?? systemClock;
    this.#topo = opts.topology;
    this.#opts = {
      secret: opts.secret,
      host: opts.host ?? '127.0.0.1',
      port,
      clock: this.#clock,
      webRoot: opts.webRoot ?? fileURLToPath(new URL('../build/web/', import.meta.url)),
      broker: opts.broker ?? false,
      relayTokenTtlSec: opts.relayTokenTtlSec ?? 60,
      relayTimeoutMs: opts.relayTimeoutMs ?? 10_000,
      pullTimeoutMs: opts.pullTimeoutMs ?? 15_000,
      migrateRetries: opts.migrateRetries ?? 5,
      moveGraceMs: opts.moveGraceMs ?? 1500,
      stallProbeTimeoutMs: opts.stallProbeTimeoutMs ?? 400,
      stallProbeCooldownMs: opts.stallProbeCooldownMs ?? 2000,
    };
    this.#perIp = new PerKeyLimit(limits.sessionsPerIp);
    this.#reg.gauge('canopy_signaling_sessions', 'Open WebSocket sessions on this process', () => this.#sessions.size);
    this.#reg.gauge('canopy_signaling_viewers', 'WebSocket sessions that have joined a stream', () => this.#byViewer.size);
    this.#app = this.#build();
  }

  /** `http://host:port` once listening. */
  get url(): string {
    return `http://${this.#opts.host}:${this.#port}`;
  }
  get port(): number {
    return this.#port;
  }
  get sessionCount(): number {
    return this.#sessions.size;
  }
  metrics(): string {
    return this.#reg.render();
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#app.listen(this.#opts.host, this.#opts.port, (sock) => {
        if (!sock) {
          reject(new SignalingOptionsError(`SignalingServer: could not listen on ${this.#opts.host}:${this.#opts.port} (port in use?)`));
          return;
        }
        this.#listen = sock;
        this.#port = uWS.us_socket_local_port(sock);
        this.#unsubscribe = this.#topo.subscribe((e) => this.#onEvent(e));
        resolve();
      });
    });
  }

  /** Stop listening, close every socket, stop handling events. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (this.#listen) uWS.us_listen_socket_close(this.#listen);
    this.#listen = undefined;
    for (const s of [...this.#sessions]) {
      try {
        s.ws?.end(1001, 'server shutting down');
      } catch {
        /* already closed */
      }
    }
    // uWS.App has close() on newer builds; it tears down keep-alive HTTP sockets too.
    (this.#app as unknown as { close?: () => void }).close?.();
  }

  // ---------------------------------------------------------------------------------------
  // HTTP

  #build(): TemplatedApp {
    const app = uWS.App();
    const sopts = {
      maxBodyBytes: this.#limits.maxBodyBytes,
      onReply: (status: number) => this.#m.http.inc({ status: String(status) }),
      onInternalError: (e: unknown) => log.error('handler failed', { err: e as Error, stack: (e as Error)?.stack }),
    };
    const route = (h: (r: Req) => Promise<Reply> | Reply) => (res: HttpResponse, req: HttpRequest) => serve(res, req, sopts, h);

    app.options('/*', route(() => ({ status: 204 })));
    app.post('/whip/:stream', (res, req) => {
      const stream = req.getParameter(0);
      serve(res, req, sopts, (r) => this.#whip(r, stream));
    });
    app.post('/whep/:stream', (res, req) => {
      const stream = req.getParameter(0);
      serve(res, req, sopts, (r) => this.#whep(r, stream));
    });
    app.get('/healthz', route(() => text(200, 'ok')));
    app.get('/metrics', route(() => ({ status: 200, headers: { 'Content-Type': 'text/plain; version=0.0.4' }, body: this.metrics() })));
    app.get('/admin/streams', route((r) => this.#admin(r, () => this.#streams())));
    app.get('/admin/streams/:stream', (res, req) => {
      const stream = req.getParameter(0);
      serve(res, req, sopts, (r) => this.#admin(r, () => this.#tree(stream)));
    });
    app.get('/admin/relays', route((r) => this.#admin(r, () => this.#topo.listRelays())));
    app.post('/admin/relays/:id/drain', (res, req) => {
      const id = req.getParameter(0);
      serve(res, req, sopts, (r) => this.#admin(r, () => this.#drain(id)));
    });
    app.get('/*', route((r) => serveStatic(this.#opts.webRoot, r.path)));
    app.head('/*', route((r) => serveStatic(this.#opts.webRoot, r.path, true)));
    app.any('/*', route(() => text(405, 'method not allowed', { Allow: 'GET, HEAD, POST, OPTIONS' })));

    app.ws<WsData>('/ws', {
      // Frames up to 4x the limit are read and answered with ERR_TOO_LARGE; beyond that uWS
      // closes the socket itself (1009) without buffering them.
      maxPayloadLength: Math.min(this.#limits.maxFrameBytes * 4, 16 * 1024 * 1024),
      idleTimeout: this.#limits.idleTimeoutSec,
      maxBackpressure: 256 * 1024,
      closeOnBackpressureLimit: 1,
      sendPingsAutomatically: true,
      upgrade: (res, req, ctx) => this.#upgrade(res, req, ctx),
      open: (ws) => {
        const d = ws.getUserData();
        d.ws = ws;
        this.#sessions.add(d);
      },
      message: (ws, msg) => this.#onFrame(ws.getUserData(), new Uint8Array(msg.slice(0))),
      close: (ws) => this.#onClose(ws.getUserData()),
    });
    return app;
  }

  #errorReply(e: unknown, transport: 'http'): Reply {
    const c = classify(e);
    this.#countError(c.code, transport, c.store);
    if (c.code === 'ERR_INTERNAL') log.error('request failed', { err: e as Error, stack: (e as Error)?.stack });
    return text(c.status, c.message);
  }

  #countError(code: string, transport: 'http' | 'ws', store = false): void {
    this.#m.errors.inc({ code, transport });
    if (store) this.#m.storeErrors.inc();
  }

  #auth(token: string | undefined, role: Role, stream: string): void {
    authorize(token, this.#opts.secret, this.#clock.now(), role, stream);
  }

  #relayToken(stream: string, role: Role, relayId: string, ttlSec = this.#opts.relayTokenTtlSec): string {
    return mintToken(this.#opts.secret, stream, role, ttlSec, this.#clock.now(), relayId);
  }

  #checkSdp(r: Req): string {
    const ct = (r.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    // RFC 9725 §4.2: the offer is an application/sdp body.
    if (ct !== 'application/sdp') throw new HttpError(415, 'Content-Type must be application/sdp');
    const sdp = r.body.toString('utf8');
    if (!sdp.startsWith('v=0')) throw new HttpError(400, 'body is not an SDP offer (must start with v=0)');
    return sdp;
  }

  #wantBroker(r: Req): boolean {
    return this.#opts.broker || r.query.get('broker') === '1';
  }

  async #whip(r: Req, stream: string): Promise<Reply> {
    try {
      if (!STREAM_RE.test(stream)) throw new HttpError(400, 'stream names are 1-128 characters of A-Z a-z 0-9 . _ ~ -');
      this.#auth(requestToken(r), 'publish', stream);
      const sdp = this.#checkSdp(r);
      const region = this.#region(r);
      const [relays, tree] = await Promise.all([this.#topo.listRelays(), this.#topo.getTree(stream)]);
      const origin = pickOrigin(relays, region ?? '', tree?.originId);
      if (!origin) throw new SignalingError('ERR_NO_CAPACITY', 503, 'no live relay is registered to take a publish; start a relay');
      this.#m.publishes.inc();
      const token = this.#relayToken(stream, 'publish', origin.id);
      if (!this.#wantBroker(r)) {
        return { status: 307, headers: { Location: `${origin.url}/whip/${encodeURIComponent(stream)}?token=${encodeURIComponent(token)}` } };
      }
      const ans = await postOffer(origin.url, 'whip', stream, sdp, token, { timeoutMs: this.#opts.relayTimeoutMs, signal: r.signal });
      return this.#sdpReply(ans.sdp, ans.location, ans.etag);
    } catch (e) {
      return this.#errorReply(e, 'http');
    }
  }

  async #whep(r: Req, stream: string): Promise<Reply> {
    let placed: Placement | undefined;
    try {
      if (!STREAM_RE.test(stream)) throw new HttpError(400, 'stream names are 1-128 characters of A-Z a-z 0-9 . _ ~ -');
      this.#auth(requestToken(r), 'watch', stream);
      const sdp = this.#checkSdp(r);
      const t0 = performance.now();
      placed = await this.#place(stream, this.#region(r), 'whep');
      this.#m.assign.observe((performance.now() - t0) / 1000);
      if (r.signal.aborted) {
        // The client hung up while we placed it: nobody will follow the redirect.
        this.#release(stream, placed.viewerId);
        return { status: 499 };
      }
      this.#m.joins.inc({ transport: 'whep' });
      const token = this.#relayToken(stream, 'watch', placed.relay.id);
      if (!this.#wantBroker(r)) {
        const q = `token=${encodeURIComponent(token)}&viewer=${encodeURIComponent(placed.viewerId)}`;
        return { status: 307, headers: { Location: `${placed.relay.url}/whep/${encodeURIComponent(stream)}?${q}` } };
      }
      const ans = await postOffer(placed.relay.url, 'whep', stream, sdp, token, { viewer: placed.viewerId, timeoutMs: this.#opts.relayTimeoutMs, signal: r.signal });
      return this.#sdpReply(ans.sdp, ans.location, ans.etag);
    } catch (e) {
      // A brokered offer that failed after placement must give its slot back.
      if (placed && (this.#wantBroker(r) || r.signal.aborted)) this.#release(stream, placed.viewerId);
      return this.#errorReply(e, 'http');
    }
  }

  #sdpReply(sdp: string, location: string, etag?: string): Reply {
    // Brokered: the session resource is on the relay; the Location is absolute so PATCH/DELETE
    // go straight to it (RFC 9725 §4.2 allows any URL). The client's own bearer token works there.
    const headers: Record<string, string> = { 'Content-Type': 'application/sdp', Location: location };
    if (etag) headers.ETag = etag;
    return { status: 201, headers, body: sdp };
  }

  #region(r: Req): string | undefined {
    const region = r.query.get('region') ?? r.headers.get('x-canopy-region') ?? '';
    if (!REGION_RE.test(region)) throw new HttpError(400, 'region must be up to 64 characters of A-Z a-z 0-9 . _ -');
    return region || undefined;
  }

  async #admin(r: Req, fn: () => Promise<unknown>): Promise<Reply> {
    try {
      this.#auth(requestToken(r), 'admin', '*');
      return json(200, await fn());
    } catch (e) {
      return this.#errorReply(e, 'http');
    }
  }

  async #streams(): Promise<unknown[]> {
    const names = await this.#topo.listStreams();
    const trees = await Promise.all(names.map((n) => this.#topo.getTree(n)));
    return trees.filter((t) => t !== undefined).map((t) => ({ stream: t.stream, originId: t.originId, viewers: t.viewers, relays: t.nodes.length, depth: Math.max(0, ...t.nodes.map((n) => n.depth)) }));
  }

  async #tree(stream: string): Promise<unknown> {
    const t = await this.#topo.getTree(stream);
    if (!t) throw new HttpError(404, `stream ${stream} is not live`);
    return t;
  }

  /** Drain a relay: the store stops placing on it and moves its viewers (events); the relay refuses new sessions. */
  async #drain(relayId: string): Promise<{ relay: string; draining: true }> {
    const relay = await this.#topo.getRelay(relayId);
    if (!relay) throw new HttpError(404, `no relay ${relayId}`);
    await this.#topo.drainRelay(relayId);
    await control(relay.url, { drain: {} }, this.#relayToken('*', 'relay', relayId), this.#opts.relayTimeoutMs).catch((e) => {
      // The store has it draining already; viewers move either way. Report, do not fail.
      log.warn('relay did not take the drain call', { relay: relayId, err: e as Error });
    });
    return { relay: relayId, draining: true };
  }

  // ---------------------------------------------------------------------------------------
  // Placement shared by WHEP and WebSocket

  /** Reserve a slot and, when the tree grew, make the new relay pull from its parent first. */
  async #place(stream: string, region: string | undefined, kind: 'ws' | 'whep'): Promise<Placement> {
    // Viewer ids say who owns the reservation's lifetime (see docs/architecture.md): a WebSocket
    // session's slot is released by this process when the socket closes; a WHEP client's by the
    // relay agent when the relay session closes.
    const p = await this.#topo.placeViewer(stream, { ...(region ? { region } : {}), viewerId: `${kind}-${randomUUID()}` });
    try {
      if (p.attach) await this.#pull(stream, p.attach.relayId, p.attach.parentId);
      else await this.#pendingPulls.get(`${p.relay.id}/${stream}`);
    } catch (e) {
      // A WebSocket viewer keeps its placement: the relay's agent retries the pull while the
      // tree wants the edge, and the viewer's OFFER waits (404 retry) until the stream is there.
      // A WHEP client would be redirected to a relay without the stream, so it gets the error.
      if (kind === 'ws' && classify(e).code === 'ERR_RELAY_FAILED') {
        log.warn('pull for a new edge failed; the relay agent retries', { stream, relay: p.relay.id, err: e as Error });
        return p;
      }
      this.#release(stream, p.viewerId);
      throw e;
    }
    return p;
  }

  #pull(stream: string, relayId: string, parentId: string): Promise<void> {
    const key = `${relayId}/${stream}`;
    const run = async (): Promise<void> => {
      const [relay, parent] = await Promise.all([this.#topo.getRelay(relayId), this.#topo.getRelay(parentId)]);
      if (!relay || !parent) throw new SignalingError('ERR_RELAY_FAILED', 502, `relay ${relay ? parentId : relayId} is not registered`);
      // The child presents this token at its parent's WHEP endpoint; it names the child.
      const token = this.#relayToken(stream, 'relay', relayId, 600);
      await control(relay.url, { pull: { stream, parentUrl: parent.url, token } }, this.#relayToken('*', 'relay', relayId), this.#opts.pullTimeoutMs);
    };
    const p = run().finally(() => {
      if (this.#pendingPulls.get(key) === p) this.#pendingPulls.delete(key);
    });
    this.#pendingPulls.set(key, p);
    return p;
  }

  #release(stream: string, viewerId: string): void {
    this.#topo.releaseViewer(stream, viewerId).catch((e) => {
      if (classify(e).store) this.#m.storeErrors.inc();
      log.warn('could not release a viewer slot', { stream, viewer: viewerId, err: e as Error });
    });
  }

  // ---------------------------------------------------------------------------------------
  // WebSocket

  #upgrade(res: HttpResponse, req: HttpRequest, ctx: us_socket_context_t): void {
    const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
    const key = req.getHeader('sec-websocket-key');
    const proto = req.getHeader('sec-websocket-protocol');
    const ext = req.getHeader('sec-websocket-extensions');
    if (this.#closed) {
      res.writeStatus('503 Service Unavailable').end('shutting down');
      return;
    }
    if (!this.#perIp.tryAcquire(ip)) {
      this.#countError('ERR_RATE_LIMITED', 'ws');
      res.cork(() => res.writeStatus('429 Too Many Requests').writeHeader('Content-Type', 'text/plain').end(`more than ${this.#limits.sessionsPerIp} sessions from ${ip}\n`));
      return;
    }
    const now = this.#clock.now();
    const data: WsData = {
      id: randomUUID(),
      ip,
      joins: new TokenBucket(this.#limits.joinsPerSecond, this.#limits.joinBurst, now),
      frames: new TokenBucket(this.#limits.framesPerSecond, this.#limits.framesPerSecond, now),
      badFrames: 0,
      closed: false,
      joining: false,
      epoch: 0,
    };
    res.upgrade(data, key, proto, ext, ctx);
  }

  #send(s: WsData, env: Record<string, unknown>): void {
    if (s.closed || !s.ws) return;
    try {
      s.ws.send(encodeEnvelope(env), true);
    } catch {
      // The socket closed between the check and the send; the close handler cleans up.
    }
  }

  #sendError(s: WsData, id: number, code: CodeName, message: string, store = false): void {
    this.#countError(code, 'ws', store);
    this.#send(s, { type: MsgType.ERROR, id, error: { code: ErrorCode[code], message } });
  }

  #badFrame(s: WsData, code: CodeName, message: string, id = 0): void {
    this.#sendError(s, id, code, message);
    if (++s.badFrames >= this.#limits.maxBadFrames) this.#end(s, 1008, 'too many bad frames');
  }

  #end(s: WsData, code: number, reason: string): void {
    if (s.closed) return;
    try {
      s.ws?.end(code, reason);
    } catch {
      /* already closed */
    }
  }

  #onFrame(s: WsData, bytes: Uint8Array): void {
    if (s.closed) return;
    if (!s.frames.take(this.#clock.now())) {
      this.#badFrame(s, 'ERR_RATE_LIMITED', `more than ${this.#limits.framesPerSecond} frames per second`);
      return;
    }
    let env: { type?: number; id?: number; body?: string; [k: string]: unknown };
    try {
      env = decodeEnvelope(bytes, this.#limits.maxFrameBytes);
    } catch (e) {
      const tooLarge = e instanceof WireError && e.code === 'too_large';
      this.#badFrame(s, tooLarge ? 'ERR_TOO_LARGE' : 'ERR_MALFORMED', (e as Error).message);
      return;
    }
    const id = env.id ?? 0;
    switch (env.type) {
      case MsgType.JOIN:
        this.#onJoin(s, id, env.join as { stream?: string; role?: string; token?: string; region?: string } | undefined);
        return;
      case MsgType.OFFER:
        this.#onOffer(s, id, env.offer as { sdp?: string } | undefined);
        return;
      case MsgType.PING:
        this.#send(s, { type: MsgType.PONG, id, pong: { t: (env.ping as { t?: number } | undefined)?.t ?? 0 } });
        return;
      case MsgType.PONG:
      case MsgType.STATS:
        return;
      case MsgType.STALLED:
        this.#onStalled(s, id);
        return;
      case MsgType.LEAVE:
        // Ends the session (slot and relay session); the socket stays open for another JOIN
        // until the client closes it.
        this.#leave(s);
        return;
      case MsgType.CANDIDATE:
        this.#sendError(s, id, 'ERR_BAD_STATE', 'trickle ICE is not used: gather candidates before sending OFFER');
        return;
      default:
        this.#badFrame(s, 'ERR_UNKNOWN_TYPE', `unknown message type ${env.type ?? 0}`, id);
    }
  }

  #onJoin(s: WsData, id: number, join: { stream?: string; role?: string; token?: string; region?: string } | undefined): void {
    if (!s.joins.take(this.#clock.now())) {
      this.#sendError(s, id, 'ERR_RATE_LIMITED', `more than ${this.#limits.joinsPerSecond} joins per second on one socket`);
      return;
    }
    if (s.joined || s.joining) {
      this.#sendError(s, id, 'ERR_BAD_STATE', 'this socket already joined a stream; send LEAVE first (or open another socket)');
      return;
    }
    const stream = join?.stream ?? '';
    const region = join?.region ?? '';
    if (!STREAM_RE.test(stream) || !REGION_RE.test(region)) {
      this.#badFrame(s, 'ERR_MALFORMED', 'JOIN needs a stream (1-128 of A-Z a-z 0-9 . _ ~ -) and an optional region', id);
      return;
    }
    if (join?.role && join.role !== 'watch') {
      this.#sendError(s, id, 'ERR_FORBIDDEN', 'only role "watch" is offered over WebSocket; publish over WHIP');
      return;
    }
    try {
      this.#auth(join?.token, 'watch', stream);
    } catch (e) {
      const c = classify(e);
      this.#sendError(s, id, c.code, c.message);
      return;
    }
    s.joining = true;
    const epoch = s.epoch;
    const t0 = performance.now();
    this.#place(stream, region || undefined, 'ws').then(
      (p) => {
        s.joining = false;
        this.#m.assign.observe((performance.now() - t0) / 1000);
        if (s.closed || s.epoch !== epoch) {
          this.#release(stream, p.viewerId);
          return;
        }
        s.joined = { stream, region, viewerId: p.viewerId, relay: p.relay, depth: p.depth };
        this.#byViewer.set(p.viewerId, s);
        this.#m.joins.inc({ transport: 'ws' });
        this.#send(s, { type: MsgType.JOINED, id, joined: { session: s.id, placement: this.#placement(p.relay, p.depth) } });
      },
      (e) => {
        s.joining = false;
        const c = classify(e);
        if (c.code === 'ERR_INTERNAL') log.error('join failed', { err: e as Error, stack: (e as Error)?.stack });
        this.#sendError(s, id, c.code, c.message, c.store);
      },
    );
  }

  /**
   * The viewer hears nothing from its relay. Probe the relay; if nothing listens there, declare it
   * down now (the store repairs the tree and moves every viewer on it, which is much sooner than
   * the lease running out). One probe per relay at a time, and a relay that answered is not
   * probed again for the cooldown, so reports from many viewers (or a hostile one) cost one probe.
   * The report names no relay the client could choose: it is always the one this session is on.
   */
  #onStalled(s: WsData, id: number): void {
    const j = s.joined;
    if (!j || !s.relaySession) {
      this.#sendError(s, id, 'ERR_BAD_STATE', 'STALLED is for a joined viewer with a relay session (after ANSWER)');
      return;
    }
    const relay = j.relay;
    const now = this.#clock.now();
    const p = this.#probes.get(relay.id);
    if (p && (p.running || now - p.at < this.#opts.stallProbeCooldownMs)) {
      this.#m.stalls.inc({ result: 'coalesced' });
      return;
    }
    const probe = { running: true, at: now };
    this.#probes.set(relay.id, probe);
    if (this.#probes.size > 4096) this.#probes.delete(this.#probes.keys().next().value!);
    void (async () => {
      const found = await probeRelay(relay.url, this.#opts.stallProbeTimeoutMs);
      probe.running = false;
      probe.at = this.#clock.now();
      if (this.#closed) return;
      this.#m.stalls.inc({ result: found === 'alive' ? 'relay_alive' : found === 'refused' ? 'relay_dead' : 'relay_silent' });
      // Only a refused connection is proof. A silent relay may just be busy: declaring it down
      // would move its viewers onto the others and could cascade; its lease decides instead.
      if (found !== 'refused') return;
      // Same path as a lease expiry: RELAY_DOWN, VIEWER_MOVE for its viewers, children
      // re-attached. A relay that was only unreachable from here and heartbeats first stays up;
      // one declared down re-registers (its agent sees RELAY_DOWN for itself).
      if (await this.#topo.expireLease(relay.id)) {
        log.warn('relay did not answer a probe; declared it down', { relay: relay.id, url: relay.url, reportedBy: s.id });
        this.#m.declaredDown.inc();
      }
    })().catch((e) => {
      probe.running = false;
      if (classify(e).store) this.#m.storeErrors.inc();
      log.warn('stall probe failed', { relay: relay.id, err: e as Error });
    });
  }

  #placement(relay: RelayInfo, depth: number): Record<string, unknown> {
    return { relayId: relay.id, relayUrl: relay.url, depth, region: relay.region ?? '' };
  }

  #onOffer(s: WsData, id: number, offer: { sdp?: string } | undefined): void {
    const j = s.joined;
    if (!j) {
      this.#sendError(s, id, 'ERR_BAD_STATE', 'send JOIN and wait for JOINED before OFFER');
      return;
    }
    const sdp = offer?.sdp ?? '';
    if (!sdp.startsWith('v=0')) {
      this.#badFrame(s, 'ERR_MALFORMED', 'OFFER needs an SDP offer (starting with v=0)', id);
      return;
    }
    const epoch = s.epoch;
    const relay = j.relay;
    const token = this.#relayToken(j.stream, 'watch', relay.id);
    const previous = s.relaySession;
    this.#offerWithRetry(relay, j.stream, sdp, token, j.viewerId, () => s.closed || s.epoch !== epoch).then(
      (ans) => {
        if (s.closed || s.epoch !== epoch) {
          // The viewer left or moved while the relay answered; drop the orphan session.
          void deleteSession(ans.location, token, this.#opts.relayTimeoutMs);
          if (!s.closed) this.#sendError(s, id, 'ERR_BAD_STATE', 'the placement changed while this offer was in flight; re-offer after MIGRATE');
          return;
        }
        s.relaySession = { location: ans.location, relayId: relay.id };
        this.#m.offers.inc({ result: 'ok' });
        this.#send(s, { type: MsgType.ANSWER, id, answer: { sdp: ans.sdp, session: ans.session } });
        // A re-offer replaces the previous relay session (after a migrate, or a client restart).
        if (previous && previous.location !== ans.location) void deleteSession(previous.location, this.#relayToken(j.stream, 'watch', previous.relayId), this.#opts.relayTimeoutMs);
      },
      (e) => {
        this.#m.offers.inc({ result: 'error' });
        const c = classify(e);
        this.#sendError(s, id, c.code, c.message, c.store);
      },
    );
  }

  /**
   * Broker one offer. A relay the repair just attached answers 404 until its pull is up (its
   * agent starts it), so a 404 is retried until the pull timeout; anything else fails at once.
   */
  async #offerWithRetry(relay: RelayInfo, stream: string, sdp: string, token: string, viewer: string, stale: () => boolean) {
    // A pull takes up to pullTimeoutMs to connect; keep retrying the 404 for that long.
    const deadline = performance.now() + this.#opts.pullTimeoutMs;
    for (;;) {
      await this.#pendingPulls.get(`${relay.id}/${stream}`)?.catch(() => undefined);
      try {
        return await postOffer(relay.url, 'whep', stream, sdp, token, { viewer, timeoutMs: this.#opts.relayTimeoutMs });
      } catch (e) {
        if (!(e instanceof RelayCallError) || e.status !== 404 || stale() || performance.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  #onClose(s: WsData): void {
    if (s.closed) return;
    s.closed = true;
    this.#sessions.delete(s);
    this.#perIp.release(s.ip);
    this.#leave(s);
  }

  /** End the viewer session on this socket: the relay session and the slot. Idempotent. */
  #leave(s: WsData): void {
    s.epoch++; // a JOIN or OFFER in flight is now stale
    const j = s.joined;
    if (!j) return;
    s.joined = undefined;
    if (this.#byViewer.get(j.viewerId) === s) this.#byViewer.delete(j.viewerId);
    // WebSocket viewers' slots follow the session (the relay agent ignores their session-close).
    if (s.relaySession) void deleteSession(s.relaySession.location, this.#relayToken(j.stream, 'watch', s.relaySession.relayId), this.#opts.relayTimeoutMs);
    s.relaySession = undefined;
    this.#release(j.stream, j.viewerId);
  }

  // ---------------------------------------------------------------------------------------
  // Events from the store (any process may have detected them)

  #onEvent(e: TopologyEvent): void {
    if (this.#closed) return;
    switch (e.kind) {
      case 'RELAY_DOWN':
      case 'RELAY_DRAINING': {
        const reason = e.kind === 'RELAY_DOWN' ? 'relay_down' : 'drain';
        this.#leaving.set(e.relayId, reason);
        if (this.#leaving.size > 1024) this.#leaving.delete(this.#leaving.keys().next().value!);
        // The store's repair moves each viewer (VIEWER_MOVE). If none arrives for a session on
        // that relay (its reservation was lost, or the repair found no room), re-place it here.
        for (const s of this.#sessions) {
          if (!s.joined || s.joined.relay.id !== e.relayId) continue;
          const epoch = s.epoch;
          this.#later(this.#opts.moveGraceMs, () => {
            if (!s.closed && s.epoch === epoch && s.joined?.relay.id === e.relayId) this.#migrate(s, reason);
          });
        }
        return;
      }
      case 'VIEWER_MOVE': {
        const s = this.#byViewer.get(e.viewerId);
        if (!s || !s.joined || s.closed) return;
        const reason = this.#leaving.get(s.joined.relay.id) ?? 'rebalance';
        if (!e.relayId) {
          // The repair found no room: try a fresh placement (with retries) ourselves.
          this.#migrate(s, reason);
          return;
        }
        if (s.joined.relay.id === e.relayId) return;
        void this.#moveTo(s, e, reason);
        return;
      }
      case 'STREAM_ENDED':
        // The store dropped the tree and every reservation. Tell the viewers and let each socket
        // JOIN again (a broadcaster that reconnects starts a new tree).
        for (const s of this.#sessions) {
          const j = s.joined;
          if (!j || j.stream !== e.stream) continue;
          s.epoch++;
          s.joined = undefined;
          if (this.#byViewer.get(j.viewerId) === s) this.#byViewer.delete(j.viewerId);
          if (s.relaySession) void deleteSession(s.relaySession.location, this.#relayToken(j.stream, 'watch', s.relaySession.relayId), this.#opts.relayTimeoutMs);
          s.relaySession = undefined;
          this.#sendError(s, 0, 'ERR_NO_STREAM', `stream ${e.stream} ended; JOIN again when it is back`);
        }
        return;
      default:
        // RELAY_ATTACHED / REPARENTED / DETACHED are for the relay agents (src/mesh.ts).
        return;
    }
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  /** The store moved the viewer's reservation to `e.relayId` (VIEWER_MOVE): tell the client. */
  async #moveTo(s: WsData, e: TopologyEvent, reason: MoveReason): Promise<void> {
    s.epoch++;
    const epoch = s.epoch;
    try {
      const relay = e.relay ?? (await this.#topo.getRelay(e.relayId));
      if (!relay) throw new SignalingError('ERR_RELAY_FAILED', 502, `relay ${e.relayId} is not registered`);
      // The repair may have attached the target relay; its agent pulls on RELAY_ATTACHED, and a
      // pull this process started is awaited here.
      await this.#pendingPulls.get(`${relay.id}/${s.joined!.stream}`);
      if (s.closed || s.epoch !== epoch || !s.joined) return;
      s.joined.relay = relay;
      s.joined.depth = e.depth ?? s.joined.depth;
      this.#m.migrations.inc({ reason });
      log.info('migrate', { session: s.id, viewer: s.joined.viewerId, to: relay.id, reason });
      this.#send(s, { type: MsgType.MIGRATE, id: 0, migrate: { reason, placement: this.#placement(relay, s.joined.depth) } });
    } catch (err) {
      if (classify(err).store) this.#m.storeErrors.inc();
      log.warn('viewer move failed; re-placing', { viewer: s.joined?.viewerId, err: err as Error });
      if (!s.closed && s.epoch === epoch) this.#migrate(s, reason);
    }
  }

  /** Re-place a viewer whose relay died or drains, then send MIGRATE; the client re-offers. */
  #migrate(s: WsData, reason: MoveReason): void {
    if (!s.joined || s.closed) return;
    s.epoch++;
    this.#tryMigrate(s, reason, s.epoch, 0);
  }

  #tryMigrate(s: WsData, reason: MoveReason, epoch: number, attempt: number): void {
    const j = s.joined;
    if (!j || s.closed || s.epoch !== epoch) return;
    const from = j.relay.id;
    this.#place(j.stream, j.region || undefined, 'ws').then(
      (p) => {
        if (s.closed || s.epoch !== epoch || !s.joined) {
          this.#release(j.stream, p.viewerId);
          return;
        }
        const oldViewer = j.viewerId;
        this.#byViewer.delete(oldViewer);
        s.joined = { ...j, viewerId: p.viewerId, relay: p.relay, depth: p.depth };
        this.#byViewer.set(p.viewerId, s);
        // The old slot: a dead relay's slots go with it; a draining relay's are freed when its
        // session ends (after the client re-offers and we DELETE it) — release anyway, idempotent.
        this.#release(j.stream, oldViewer);
        this.#m.migrations.inc({ reason });
        log.info('migrate', { session: s.id, from, to: p.relay.id, reason });
        this.#send(s, { type: MsgType.MIGRATE, id: 0, migrate: { reason, placement: this.#placement(p.relay, p.depth) } });
      },
      (e) => {
        const c = classify(e);
        if (c.store) this.#m.storeErrors.inc();
        if (s.closed || s.epoch !== epoch) return;
        if (attempt < this.#opts.migrateRetries) {
          // The tree may be repairing itself (re-parenting) or capacity freeing up; retry.
          this.#later(300, () => this.#tryMigrate(s, reason, epoch, attempt + 1));
          return;
        }
        this.#sendError(s, 0, c.code, `could not move off relay ${from}: ${c.message}`, false);
      },
    );
  }
}

export { codeName };
