/**
 * Process wiring: turns relays + a topology + signaling into a running mesh.
 *
 * `RelayAgent` sits next to one relay (in this process for the embedded mesh, in `canopy relay`
 * for a separate process) and is the only thing that connects the relay's media-plane events to
 * the topology: it registers and heartbeats the relay, registers/ends streams on
 * publish/unpublish, releases WHEP viewer slots when their relay session closes, and starts,
 * moves and stops pulls when the topology says so (RELAY_ATTACHED / RELAY_REPARENTED /
 * RELAY_DETACHED, from whichever process decided it).
 *
 * `startMesh` runs signaling and N relays in one process (MemoryTopology, or RedisTopology when
 * `redisUrl` is given).
 */
import type { EventEmitter } from 'node:events';
import { generateSecret, mintToken, type Role } from './auth/token.ts';
import { systemClock, type Clock } from './util/clock.ts';
import { logger } from './util/log.ts';
import { MemoryTopology, type Topology, type TopologyEvent, type CarriedStream } from './topology/index.ts';
import { Relay } from './relay/index.ts';
import { SignalingServer } from '../signaling/server.ts';

const log = logger('mesh');

/** The part of `Relay` (src/relay) the wiring uses; see contracts. */
export interface RelayLike extends EventEmitter {
  readonly id: string;
  readonly url: string;
  pull(stream: string, parentUrl: string, token: string): Promise<void>;
  unpull(stream: string): Promise<void>;
  drain(): void;
  close(): Promise<void>;
  streams(): string[];
  viewerCount(stream?: string): number;
  /** Close the sessions a (now dead) child relay held here; resolves to how many. */
  dropRelay(relayId: string): Promise<number>;
}

export class MeshOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeshOptionsError';
  }
}

/** Pull attempts after the first fails (ICE can miss its window on a loaded host). */
const PULL_RETRIES = 3;

/** Viewer ids minted by signaling say who releases the slot (see docs/architecture.md). */
export const WS_VIEWER_PREFIX = 'ws-';
export const WHEP_VIEWER_PREFIX = 'whep-';

export interface RelayAgentOptions {
  relay: RelayLike;
  topology: Topology;
  secret: string;
  region?: string;
  /** URL registered for this relay when it differs from `relay.url` (NAT, proxy). */
  publicUrl?: string;
  capacity: number;
  fanout: number;
  /** Lease registered with the store; heartbeats go out every third of it. Default 3000 ms. */
  leaseMs?: number;
  /**
   * How long a RELAY_ATTACHED waits for signaling's own pull call before the agent pulls itself
   * (repairs attach relays with no signaling request behind them). Default 0: pulls from the
   * same parent are merged (see start()), so the agent need not wait, and a relay attached by a
   * repair starts pulling at once, while the moved viewers are still renegotiating.
   */
  attachGraceMs?: number;
  clock?: Clock;
}

interface SessionEvent {
  stream: string;
  sessionId: string;
  kind: 'viewer' | 'relay';
  viewer?: string;
}

export class RelayAgent {
  readonly #o: Required<Omit<RelayAgentOptions, 'clock'>>;
  readonly #clock: Clock;
  readonly #relay: RelayLike;
  readonly #topo: Topology;
  /** stream -> parent relay id this relay pulls it from (or is pulling). */
  readonly #parents = new Map<string, string>();
  /** stream -> the relay is the stream's origin (holds its WHIP publish). */
  readonly #origins = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopped = false;
  #registering: Promise<void> | undefined;
  readonly #graceTimers = new Set<NodeJS.Timeout>();
  readonly #pullStarts = new Map<string, number>();
  /** stream -> consecutive failed pulls (reset by a pull that connects). */
  readonly #pullFailures = new Map<string, number>();
  /** stream -> the upstream the relay was last asked to pull from (see start()). */
  readonly #upstreams = new Map<string, { parentUrl: string; pending: boolean; done: Promise<void> }>();
  #origPull: RelayLike['pull'] | undefined;
  readonly #listeners: Array<[string, (...a: unknown[]) => void]> = [];

  constructor(opts: RelayAgentOptions) {
    if (!opts.relay) throw new MeshOptionsError('RelayAgent: relay is required');
    if (!opts.topology) throw new MeshOptionsError('RelayAgent: topology is required');
    if (!opts.secret) throw new MeshOptionsError('RelayAgent: secret is required (CANOPY_SECRET)');
    if (!(Number.isInteger(opts.capacity) && opts.capacity >= 1)) throw new MeshOptionsError(`RelayAgent: capacity must be an integer >= 1, got ${opts.capacity}`);
    if (!(Number.isInteger(opts.fanout) && opts.fanout >= 0)) throw new MeshOptionsError(`RelayAgent: fanout must be an integer >= 0, got ${opts.fanout}`);
    const leaseMs = opts.leaseMs ?? 3000;
    if (!(leaseMs >= 300)) throw new MeshOptionsError(`RelayAgent: leaseMs must be >= 300, got ${leaseMs}`);
    this.#o = { region: '', attachGraceMs: 0, ...opts, publicUrl: opts.publicUrl ?? '', leaseMs };
    this.#clock = opts.clock ?? systemClock;
    this.#relay = opts.relay;
    this.#topo = opts.topology;
  }

  get relayId(): string {
    return this.#relay.id;
  }

  async start(): Promise<void> {
    // Every pull the relay starts goes through here, whoever asked (this agent, or signaling
    // through the relay's /control endpoint, which calls relay.pull). Two askers can act on the
    // same attach: signaling for the viewer it placed, this agent as the fallback for repairs.
    // Relay.pull always opens a new upstream (a second call re-parents), so pulls from the same
    // parent are merged: one in flight is shared, and one already carrying the stream from that
    // parent is a no-op. A pull from another parent still re-parents.
    const relay = this.#relay;
    const pull = relay.pull.bind(relay);
    this.#origPull = relay.pull;
    relay.pull = (stream: string, parentUrl: string, token: string): Promise<void> => {
      this.#pullStarts.set(stream, (this.#pullStarts.get(stream) ?? 0) + 1);
      const cur = this.#upstreams.get(stream);
      if (cur && cur.parentUrl === parentUrl && (cur.pending || relay.streams().includes(stream))) return cur.done;
      const done = pull(stream, parentUrl, token);
      const rec = { parentUrl, pending: true, done };
      this.#upstreams.set(stream, rec);
      done.then(
        () => {
          rec.pending = false;
          this.#pullFailures.delete(stream);
        },
        (e: unknown) => {
          if (this.#upstreams.get(stream) === rec) this.#upstreams.delete(stream);
          this.#onPullFailed(stream, e);
        },
      );
      return done;
    };
    const on = <A extends unknown[]>(ev: string, fn: (...a: A) => void): void => {
      const h = (...a: A): void => {
        try {
          fn(...a);
        } catch (e) {
          log.error('relay event handler failed', { ev, err: e as Error });
        }
      };
      const hh = h as unknown as (...a: unknown[]) => void;
      this.#relay.on(ev, hh);
      this.#listeners.push([ev, hh]);
    };
    on('publish', (stream: string) => this.#onPublish(stream));
    on('unpublish', (stream: string) => this.#onUnpublish(stream));
    on('session-close', (e: SessionEvent) => this.#onSessionClose(e));
    on('parent-lost', (stream: string) => log.info('parent lost; waiting for the topology to re-parent', { relay: this.relayId, stream }));
    this.#unsubscribe = this.#topo.subscribe((e) => this.#onEvent(e));
    await this.#register();
    const every = Math.max(100, Math.floor(this.#o.leaseMs / 3));
    this.#timer = setInterval(() => void this.#heartbeat(), every);
    this.#timer.unref?.();
  }

  /** Stop heartbeating and handling events. `deregister` removes the relay from the store now. */
  async stop(deregister = true): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const t of this.#graceTimers) clearTimeout(t);
    this.#graceTimers.clear();
    this.#unsubscribe?.();
    for (const [ev, h] of this.#listeners) this.#relay.off(ev, h);
    if (this.#origPull) delete (this.#relay as { pull?: unknown }).pull;
    if (deregister) await this.#topo.deregisterRelay(this.relayId).catch((e) => log.warn('deregister failed', { relay: this.relayId, err: e as Error }));
  }

  #carrying(): CarriedStream[] {
    const out: CarriedStream[] = [];
    for (const s of this.#origins) out.push({ stream: s, parentId: null });
    for (const [s, p] of this.#parents) if (!this.#origins.has(s)) out.push({ stream: s, parentId: p });
    return out;
  }

  #register(): Promise<void> {
    this.#registering ??= (async () => {
      try {
        const r = await this.#topo.registerRelay({
          id: this.relayId,
          url: this.#o.publicUrl || this.#relay.url,
          region: this.#o.region,
          capacity: this.#o.capacity,
          fanout: this.#o.fanout,
          leaseMs: this.#o.leaseMs,
          carrying: this.#carrying(),
        });
        for (const rej of r.rejected) {
          log.warn('store rejected a carried stream; dropping it', { relay: this.relayId, ...rej });
          this.#parents.delete(rej.stream);
          this.#upstreams.delete(rej.stream);
          if (!this.#origins.has(rej.stream)) await this.#relay.unpull(rej.stream).catch(() => undefined);
        }
      } finally {
        this.#registering = undefined;
      }
    })();
    return this.#registering;
  }

  async #heartbeat(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#topo.heartbeat(this.relayId, this.#relay.viewerCount());
    } catch (e) {
      const name = (e as Error).name;
      if (name === 'UnknownRelayError') {
        // Declared down (a long pause, a store outage) or the store restarted: register again
        // with what we carry, so the store adopts it instead of rebuilding the tree around us.
        log.warn('store forgot this relay; re-registering', { relay: this.relayId });
        await this.#register().catch((err) => log.warn('re-register failed', { relay: this.relayId, err: err as Error }));
      } else {
        log.warn('heartbeat failed', { relay: this.relayId, err: e as Error });
      }
    }
  }

  #onPublish(stream: string): void {
    this.#origins.add(stream);
    this.#parents.delete(stream);
    this.#topo.registerStream(stream, this.relayId).catch((e) => log.error('could not register the stream at its origin', { relay: this.relayId, stream, err: e as Error }));
  }

  #onUnpublish(stream: string): void {
    if (!this.#origins.delete(stream)) return;
    void (async () => {
      // Only the origin of record ends the tree; a late unpublish from a replaced origin must not.
      const tree = await this.#topo.getTree(stream);
      if (tree && tree.originId === this.relayId) await this.#topo.endStream(stream);
    })().catch((e) => log.warn('could not end the stream', { relay: this.relayId, stream, err: e as Error }));
  }

  #onSessionClose(e: SessionEvent): void {
    // WebSocket viewers' slots follow the socket (signaling releases them); WHEP viewers' slots
    // follow the relay session, so they are released here.
    if (e.kind !== 'viewer' || !e.viewer || e.viewer.startsWith(WS_VIEWER_PREFIX)) return;
    this.#topo.releaseViewer(e.stream, e.viewer).catch((err) => log.warn('release failed', { relay: this.relayId, viewer: e.viewer, err: err as Error }));
  }

  #onEvent(e: TopologyEvent): void {
    if (this.#stopped) return;
    const me = this.relayId;
    switch (e.kind) {
      case 'RELAY_REPARENTED':
        if (e.relayId === me) void this.#pull(e.stream, e.parentId);
        return;
      case 'RELAY_ATTACHED':
        // Signaling starts the pull for an attach it caused (it must hold the viewer until the
        // stream is here); attaches made by a repair have no such caller. Both look alike, so
        // the agent pulls too (after attachGraceMs, default at once) unless a pull has started;
        // two pulls from the same parent are merged into one.
        if (e.relayId === me) {
          const before = this.#pullStarts.get(e.stream) ?? 0;
          this.#afterGrace(() => {
            // A pull started since the event (signaling's control call) means it is handled.
            if ((this.#pullStarts.get(e.stream) ?? 0) !== before) this.#parents.set(e.stream, e.parentId);
            else void this.#pull(e.stream, e.parentId);
          });
        }
        return;
      case 'RELAY_DETACHED':
        if (e.relayId === me && !this.#origins.has(e.stream)) {
          this.#parents.delete(e.stream);
          this.#upstreams.delete(e.stream);
          if (this.#relay.streams().includes(e.stream)) {
            this.#relay.unpull(e.stream).catch((err) => log.warn('unpull failed', { relay: me, stream: e.stream, err: err as Error }));
          }
        }
        return;
      case 'VIEWER_MOVE':
        // A WHEP viewer's session died with its relay (or is cut by the drain); its client
        // re-POSTs through signaling and gets a fresh slot, so the moved reservation is released
        // by the one agent it was moved to.
        if (e.relayId === me && e.viewerId.startsWith(WHEP_VIEWER_PREFIX)) void this.#topo.releaseViewer(e.stream, e.viewerId).catch(() => undefined);
        return;
      case 'RELAY_DOWN':
        if (e.relayId === me) void this.#register().catch(() => undefined);
        // A dead child's sessions here would hold its slots until ICE consent runs out; the
        // repair may attach another relay under this one right now.
        else void this.#relay.dropRelay(e.relayId).catch((err) => log.warn('could not drop a dead relay\'s sessions', { relay: me, down: e.relayId, err: err as Error }));
        return;
      case 'STREAM_ENDED':
        this.#parents.delete(e.stream);
        this.#upstreams.delete(e.stream);
        if (!this.#origins.has(e.stream) && this.#relay.streams().includes(e.stream)) void this.#relay.unpull(e.stream).catch(() => undefined);
        return;
      default:
        return;
    }
  }

  async #pull(stream: string, parentId: string, retry = false): Promise<void> {
    if (!retry && this.#parents.get(stream) === parentId) return; // already pulling from there
    this.#parents.set(stream, parentId);
    try {
      const parent = await this.#topo.getRelay(parentId);
      if (!parent) throw new Error(`parent ${parentId} is not registered`);
      if (this.#parents.get(stream) !== parentId || this.#stopped) return; // re-parented or stopped meanwhile
      const token = mintToken(this.#o.secret, stream, 'relay', 3600, this.#clock.now(), this.relayId);
      await this.#relay.pull(stream, parent.url, token);
      log.info('pulling', { relay: this.relayId, stream, parent: parentId });
    } catch (e) {
      // A failure of relay.pull itself is retried by #onPullFailed (whoever started the pull).
      if (this.#parents.get(stream) === parentId && !this.#relay.streams().includes(stream)) this.#parents.delete(stream);
      log.warn('pull failed', { relay: this.relayId, stream, parent: parentId, err: e as Error });
    }
  }

  /**
   * A pull failed — started by this agent or by signaling's control call (a join that then
   * failed). The store still has this relay in the tree, and viewers may be sent here, so try
   * again from the parent the tree names now, a bounded number of times.
   */
  #onPullFailed(stream: string, e: unknown): void {
    const n = (this.#pullFailures.get(stream) ?? 0) + 1;
    this.#pullFailures.set(stream, n);
    if (n > PULL_RETRIES || this.#stopped) {
      log.warn('giving up pulling', { relay: this.relayId, stream, failures: n, err: e as Error });
      this.#pullFailures.delete(stream);
      return;
    }
    const t = setTimeout(() => {
      this.#graceTimers.delete(t);
      if (this.#stopped || this.#relay.streams().includes(stream) || this.#upstreams.get(stream)?.pending) return;
      void this.#topo
        .getTree(stream)
        .then((tree) => {
          const node = tree?.nodes.find((x) => x.relayId === this.relayId);
          if (node?.parentId) return this.#pull(stream, node.parentId, true);
          this.#pullFailures.delete(stream);
          return undefined;
        })
        .catch((err) => log.warn('pull retry failed', { relay: this.relayId, stream, err: err as Error }));
    }, 500 * n);
    this.#graceTimers.add(t);
  }

  #afterGrace(fn: () => void): void {
    const t = setTimeout(() => {
      this.#graceTimers.delete(t);
      if (!this.#stopped) fn();
    }, this.#o.attachGraceMs);
    this.#graceTimers.add(t);
  }
}

// -------------------------------------------------------------------------------------------
// The embedded mesh

export interface MeshOptions {
  host?: string;
  /** Signaling port; 8080 by default, 0 = ephemeral. */
  port?: number;
  /** Relays: relay-0 (the origin by default) and edges. Default 3. */
  relays?: number;
  secret?: string;
  /** Slots per relay. Default 50. */
  capacity?: number;
  /** Child relays per relay per stream. Default 2. */
  fanout?: number;
  redisUrl?: string;
  mediaPortRange?: [number, number];
  /** STUN/TURN servers for the relays' ICE; default host candidates only. */
  iceServers?: { urls: string }[];
  webRoot?: string;
  /** Relay lease; a killed relay is declared down within about this long. Default 3000 ms. */
  leaseMs?: number;
  /** Broker every WHIP/WHEP request instead of redirecting. Default false. */
  broker?: boolean;
  region?: string;
  /** Key prefix in Redis (tests use a unique one per run). */
  redisPrefix?: string;
}

export interface Mesh {
  signalingUrl: string;
  secret: string;
  relays: Relay[];
  topology: Topology;
  signaling: SignalingServer;
  /** Simulate a crash: the relay stops and stops heartbeating; the store notices by lease expiry. */
  killRelay(id: string): Promise<void>;
  mint(stream: string, role: Role, ttlSec?: number): string;
  close(): Promise<void>;
}

function splitRange(range: [number, number] | undefined, n: number, i: number): [number, number] | undefined {
  if (!range) return undefined;
  const [a, b] = range;
  const size = Math.floor((b - a + 1) / n);
  if (size < 2) throw new MeshOptionsError(`mediaPortRange ${a}-${b} is too small for ${n} relays (need at least 2 ports each)`);
  return [a + i * size, a + (i + 1) * size - 1];
}

export async function startMesh(opts: MeshOptions = {}): Promise<Mesh> {
  const n = opts.relays ?? 3;
  if (!(Number.isInteger(n) && n >= 1 && n <= 64)) throw new MeshOptionsError(`relays must be an integer 1..64, got ${n}`);
  const secret = opts.secret ?? process.env.CANOPY_SECRET ?? generateSecret();
  const host = opts.host ?? '127.0.0.1';
  const capacity = opts.capacity ?? 50;
  const fanout = opts.fanout ?? 2;
  const leaseMs = opts.leaseMs ?? 3000;
  const reapIntervalMs = Math.max(100, Math.floor(leaseMs / 4));
  const topology: Topology = opts.redisUrl
    ? await redisTopology({ url: opts.redisUrl, leaseMs, reapIntervalMs, ...(opts.redisPrefix ? { prefix: opts.redisPrefix } : {}) })
    : new MemoryTopology({ leaseMs, reapIntervalMs });
  const relays: Relay[] = [];
  const agents = new Map<string, RelayAgent>();
  let signaling: SignalingServer | undefined;
  const cleanup = async (): Promise<void> => {
    await signaling?.close();
    await Promise.all([...agents.values()].map((a) => a.stop(true)));
    await Promise.all(relays.map((r) => r.close().catch(() => undefined)));
    await topology.close();
  };
  try {
    for (let i = 0; i < n; i++) {
      const mediaPortRange = splitRange(opts.mediaPortRange, n, i);
      const relay = new Relay({ id: `relay-${i}`, host, port: 0, secret, capacity, ...(opts.iceServers ? { iceServers: opts.iceServers } : {}), ...(opts.region ? { region: opts.region } : {}), ...(mediaPortRange ? { mediaPortRange } : {}) });
      await relay.listen();
      relays.push(relay);
      const agent = new RelayAgent({ relay, topology, secret, capacity, fanout, leaseMs, region: opts.region ?? '' });
      await agent.start();
      agents.set(relay.id, agent);
    }
    signaling = new SignalingServer({ secret, topology, host, port: opts.port ?? 8080, broker: opts.broker ?? false, ...(opts.webRoot ? { webRoot: opts.webRoot } : {}) });
    await signaling.listen();
  } catch (e) {
    await cleanup().catch(() => undefined);
    throw e;
  }
  const sig = signaling;
  let closed = false;
  return {
    signalingUrl: sig.url,
    signaling: sig,
    secret,
    relays,
    topology,
    async killRelay(id) {
      const agent = agents.get(id);
      const relay = relays.find((r) => r.id === id);
      if (!agent || !relay) throw new MeshOptionsError(`no relay ${id} in this mesh (have ${relays.map((r) => r.id).join(', ')})`);
      // No deregister: a crashed relay says nothing; the lease runs out and the store repairs.
      await agent.stop(false);
      agents.delete(id);
      await relay.close();
    },
    mint: (stream, role, ttlSec = 3600) => mintToken(secret, stream, role, ttlSec, Date.now()),
    async close() {
      if (closed) return;
      closed = true;
      await cleanup();
    },
  };
}

/**
 * RedisTopology, loaded only when asked for (ioredis stays out of the embedded mesh).
 */
export async function redisTopology(o: { url: string; leaseMs?: number; reapIntervalMs?: number; prefix?: string }): Promise<Topology> {
  const { RedisTopology } = await import('./topology/index.ts');
  const t = new RedisTopology(o);
  try {
    await t.ready(10_000);
  } catch (e) {
    await t.close();
    throw new MeshOptionsError(`Redis at ${o.url} is not reachable: ${(e as Error).message}`);
  }
  return t;
}
