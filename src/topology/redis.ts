/**
 * RedisTopology: the topology shared by many signaling and relay processes through one Redis.
 * Every read-modify-write is one Lua script (scripts.ts), so concurrent processes never overfill
 * a relay or build a cycle. Events are TopologyEvent protobufs (src/proto) on one pub/sub channel.
 *
 * Time: leases and idle marks use the Redis server's clock (TIME inside each script), so
 * processes with skewed clocks still agree on who expired. Tests pass a `clock` instead; its
 * now() is then sent to every script. Leases are explicit expiry times (a ZSET), not PEXPIRE:
 * a down relay's record must outlive its lease so the repair knows what it carried.
 *
 * Redis unreachable: commands are never queued (enableOfflineQueue: false) and time out after
 * `commandTimeoutMs`; every call then rejects with StoreUnavailableError. The connection keeps
 * reconnecting in the background, scripts are re-loaded on NOSCRIPT, and the event subscription
 * is re-established by ioredis, so calls work again as soon as Redis is back.
 */
import { randomUUID } from 'node:crypto';
import { Redis, ReplyError } from 'ioredis';
import { decodeTopologyEvent, encodeTopologyEvent, TopologyEventKind as KindNum } from '../proto/index.ts';
import type { Clock } from '../util/clock.ts';
import { logger } from '../util/log.ts';
import {
  InvalidTopologyArgumentError,
  NoCapacityError,
  NoStreamError,
  RelayUnavailableError,
  StoreUnavailableError,
  StreamExistsError,
  TopologyError,
  UnknownRelayError,
} from './errors.ts';
import { FUNCTION_NAMES, LIBRARY, type ScriptName } from './scripts.ts';
import { MAX_PLACE_BATCH } from './types.ts';
import type {
  Placement,
  PlaceOptions,
  ReapResult,
  RegisterResult,
  RelayInfo,
  RelayRegistration,
  StreamTree,
  Topology,
  TopologyEvent,
  TopologyEventKind,
  TopologyListener,
  TopologyOptions,
} from './types.ts';
import { checkId, checkLoad, checkRegistration, resolveOptions, type ResolvedOptions } from './validate.ts';

const log = logger('topology:redis');

export interface RedisTopologyOptions extends TopologyOptions {
  /** redis://host:port[/db]. */
  url: string;
  /** Key prefix, e.g. 'canopy:' (letters, digits, `_ . : -`; no braces). Default 'canopy:'. */
  prefix?: string;
  /** A command not answered within this many ms fails with StoreUnavailableError. Default 1000. */
  commandTimeoutMs?: number;
  /** Use this clock instead of the Redis server's TIME (tests; single-host setups). */
  clock?: Clock;
}

const KIND_NAMES = new Map<number, TopologyEventKind>(
  Object.entries(KindNum).filter(([, v]) => v !== 0).map(([k, v]) => [v, k as TopologyEventKind]),
);

type RawEvent = [TopologyEventKind, string, string, string, string, string, number];

interface Reply {
  err?: string;
  origin?: string;
  ev: RawEvent[] | Record<string, never>;
  now: number;
  [k: string]: unknown;
}

const list = <T>(x: T[] | Record<string, never> | undefined): T[] => (Array.isArray(x) ? x : []);

export class RedisTopology implements Topology {
  readonly #opts: ResolvedOptions;
  readonly #prefix: string;
  readonly #clock: Clock | undefined;
  readonly #redis: Redis;
  readonly #sub: Redis;
  readonly #channel: string;
  readonly #listeners = new Set<TopologyListener>();
  readonly #relayCache = new Map<string, { at: number; info: RelayInfo | undefined }>();
  #delivery: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #ready: Promise<void>;

  constructor(opts: RedisTopologyOptions) {
    if (typeof opts?.url !== 'string' || !/^rediss?:\/\//.test(opts.url)) {
      throw new InvalidTopologyArgumentError(`RedisTopology: url must be redis://host:port, got ${JSON.stringify(opts?.url)}`);
    }
    const prefix = opts.prefix ?? 'canopy:';
    if (!/^[A-Za-z0-9_.:-]{0,100}$/.test(prefix)) {
      throw new InvalidTopologyArgumentError(`RedisTopology: prefix ${JSON.stringify(prefix)} may only hold letters, digits and _ . : - (no braces: they are hash tags)`);
    }
    const timeout = opts.commandTimeoutMs ?? 1000;
    if (!Number.isInteger(timeout) || timeout < 10 || timeout > 60_000) {
      throw new InvalidTopologyArgumentError(`RedisTopology: commandTimeoutMs must be an integer from 10 to 60000, got ${timeout}`);
    }
    this.#opts = resolveOptions(opts);
    this.#prefix = prefix;
    this.#clock = opts.clock;
    this.#channel = `${prefix}{reg}:events`;
    const common = {
      lazyConnect: false,
      // Reconnect forever, quickly at first, at most every 500 ms.
      retryStrategy: (n: number) => Math.min(50 * n, 500),
      connectTimeout: Math.max(timeout, 500),
    };
    this.#redis = new Redis(opts.url, {
      ...common,
      enableOfflineQueue: false, // fail fast while disconnected instead of queueing
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      enableAutoPipelining: true, // concurrent calls share round trips
    });
    this.#sub = new Redis(opts.url, { ...common, maxRetriesPerRequest: null, autoResubscribe: true });
    for (const c of [this.#redis, this.#sub]) c.on('error', (e: Error) => log.debug('redis connection error', { err: e }));
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() === this.#channel) this.#onMessage(message);
    });
    this.#ready = Promise.all([
      this.#sub.subscribe(this.#channel).then(() => undefined),
      new Promise<void>((resolve) => (this.#redis.status === 'ready' ? resolve() : this.#redis.once('ready', () => resolve()))),
    ]).then(() => undefined);
    this.#ready.catch(() => {});
    if (this.#opts.reapIntervalMs > 0) {
      this.#timer = setInterval(() => void this.reapExpired().catch((e) => log.warn('reap failed', { err: e })), this.#opts.reapIntervalMs);
      this.#timer.unref();
    }
  }

  /** Resolves when both connections are up and the event subscription is active (bounded by `ms`). */
  async ready(ms = 5000): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      t = setTimeout(() => reject(new StoreUnavailableError(`Redis not ready within ${ms} ms`)), ms);
    });
    try {
      await Promise.race([this.#ready, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  // ---- script plumbing ---------------------------------------------------------------------

  /** FCALL one function; loads the library on first use or after Redis lost it. */
  async #fcall(name: ScriptName, args: string[]): Promise<unknown> {
    if (this.#closed) throw new InvalidTopologyArgumentError('topology is closed');
    const now = this.#clock ? String(Math.floor(this.#clock.now())) : '';
    try {
      try {
        return await this.#redis.fcall(FUNCTION_NAMES[name], 0, this.#prefix, now, ...args);
      } catch (e) {
        // First use, or Redis restarted empty: load the library and try once more.
        if (!(e instanceof ReplyError) || !/Function not found/i.test((e as Error).message)) throw e;
        await this.#redis.function('LOAD', 'REPLACE', LIBRARY);
        return await this.#redis.fcall(FUNCTION_NAMES[name], 0, this.#prefix, now, ...args);
      }
    } catch (e) {
      if (e instanceof ReplyError && !/^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN)/.test((e as Error).message)) throw e;
      throw new StoreUnavailableError(`Redis unavailable (${(e as Error).message}); retry when it is back`, e);
    }
  }

  /** Run a function that answers JSON; publish the events it reports. */
  async #run(name: ScriptName, ...args: string[]): Promise<Reply> {
    const reply = JSON.parse((await this.#fcall(name, args)) as string) as Reply;
    const evs = list(reply.ev);
    if (evs.length > 0) await this.#publish(evs, reply.now);
    return reply;
  }

  async #publish(evs: RawEvent[], atMs: number): Promise<void> {
    // Published after the script: a process that dies in between loses these events (state is
    // already consistent; subscribers re-read the tree on reconnect). See docs/architecture.md.
    const pipe = this.#redis.pipeline();
    for (const [kind, stream, relayId, parentId, viewerId, originId] of evs) {
      const body = encodeTopologyEvent({ kind: KindNum[kind], stream, relayId, parentId, viewerId, originId, atMs });
      pipe.publish(this.#channel, Buffer.from(body));
    }
    try {
      await pipe.exec();
    } catch (e) {
      log.warn('publishing topology events failed', { err: e, count: evs.length });
    }
  }

  #onMessage(buf: Buffer): void {
    let raw: Record<string, unknown>;
    try {
      raw = decodeTopologyEvent(buf);
    } catch (e) {
      log.warn('undecodable topology event', { err: e });
      return;
    }
    const kind = KIND_NAMES.get(raw.kind as number);
    if (!kind) return;
    const ev: TopologyEvent = {
      kind,
      stream: (raw.stream as string) ?? '',
      relayId: (raw.relayId as string) ?? '',
      parentId: (raw.parentId as string) ?? '',
      viewerId: (raw.viewerId as string) ?? '',
      originId: (raw.originId as string) ?? '',
      atMs: (raw.atMs as number) ?? 0,
    };
    // Deliver in arrival order; enrichment (relay record, depth) is async, so chain it.
    this.#delivery = this.#delivery.then(async () => {
      if (this.#listeners.size === 0) return;
      if (ev.relayId !== '' && (kind === 'VIEWER_MOVE' || kind === 'RELAY_ATTACHED' || kind === 'RELAY_REPARENTED')) {
        try {
          const [info, depth] = await Promise.all([this.#cachedRelay(ev.relayId), this.#redis.hget(this.#key(ev.stream, 'dep'), ev.relayId)]);
          if (info) ev.relay = info;
          if (depth !== null) ev.depth = Number(depth);
        } catch {
          /* store unavailable: deliver without enrichment */
        }
      }
      for (const l of this.#listeners) {
        try {
          l(ev);
        } catch (e) {
          log.warn('topology listener threw', { err: e, kind });
        }
      }
    });
  }

  async #cachedRelay(id: string): Promise<RelayInfo | undefined> {
    const now = Date.now(); // cache freshness only, not a decision
    const c = this.#relayCache.get(id);
    if (c && now - c.at < 500) return c.info;
    const h = await this.#redis.hgetall(`${this.#prefix}{reg}:r:${id}`);
    const info = h && h.cap !== undefined ? toRelayInfo(id, h) : undefined;
    this.#relayCache.set(id, { at: now, info });
    if (this.#relayCache.size > 10_000) this.#relayCache.clear();
    return info;
  }

  #key(stream: string, name: string): string {
    return `${this.#prefix}{${stream}}:${name}`;
  }

  // ---- relays ------------------------------------------------------------------------------

  async registerRelay(reg: RelayRegistration): Promise<RegisterResult> {
    const r = checkRegistration(reg, this.#opts.leaseMs);
    const carrying = reg.carrying === undefined ? '' : JSON.stringify(r.carrying.map((c) => ({ stream: c.stream, parent: c.parentId ?? '', viewers: c.viewers })));
    const rep = await this.#run('register', r.id, r.region, r.url, String(r.capacity), String(r.fanout), String(r.leaseMs), carrying);
    this.#relayCache.delete(r.id);
    return {
      relay: toRelayInfo(r.id, rep.relay as Record<string, string>),
      accepted: list(rep.accepted as string[]),
      rejected: list(rep.rejected as Array<{ stream: string; reason: string }>),
    };
  }

  async heartbeat(relayId: string, load: number): Promise<void> {
    checkId('relay id', relayId);
    checkLoad(load);
    const rep = await this.#run('heartbeat', relayId, String(load));
    if (rep.err) throw new UnknownRelayError(relayId);
  }

  async drainRelay(relayId: string): Promise<void> {
    checkId('relay id', relayId);
    const rep = await this.#run('drain', relayId);
    if (rep.err) throw new UnknownRelayError(relayId);
    this.#relayCache.delete(relayId);
  }

  async deregisterRelay(relayId: string): Promise<void> {
    checkId('relay id', relayId);
    await this.#run('deregister', relayId);
    this.#relayCache.delete(relayId);
  }

  async expireLease(relayId: string): Promise<boolean> {
    checkId('relay id', relayId);
    // Score 0 is in the past of every server clock; XX: only a relay that holds a lease. The
    // reap below (or any other process's) then declares it down exactly once, unless a
    // heartbeat renews the lease first.
    const changed = await this.#cmd(() => this.#redis.zadd(`${this.#prefix}{reg}:leases`, 'XX', 'CH', 0, relayId));
    if (Number(changed) === 0) return false;
    this.#relayCache.delete(relayId);
    const res = await this.reapExpired();
    return res.down.includes(relayId);
  }

  // ---- streams -----------------------------------------------------------------------------

  async registerStream(stream: string, originRelayId: string): Promise<StreamTree> {
    checkId('stream', stream);
    checkId('relay id', originRelayId);
    const rep = await this.#run('stream', stream, originRelayId);
    if (rep.err === 'unknown_relay') throw new UnknownRelayError(originRelayId);
    if (rep.err === 'stream_exists') throw new StreamExistsError(stream, rep.origin ?? '');
    if (rep.err === 'relay_unavailable') throw new RelayUnavailableError(originRelayId, 'draining');
    return toTree(stream, rep.tree as LuaTree);
  }

  async endStream(stream: string): Promise<void> {
    checkId('stream', stream);
    await this.#run('end', stream);
  }

  // ---- viewers -----------------------------------------------------------------------------

  async placeViewer(stream: string, opts: PlaceOptions = {}): Promise<Placement> {
    checkId('stream', stream);
    const region = opts.region ?? '';
    if (typeof region !== 'string') throw new InvalidTopologyArgumentError('region must be a string');
    const viewerId = opts.viewerId === undefined ? randomUUID() : checkId('viewer id', opts.viewerId);
    const [status, depth, parent, flat, evs, now, relayId] = (await this.#fcall('place', [stream, viewerId, region, opts.viewerId === undefined ? '' : '1'])) as [string, number, string, string[], RawEvent[], number, string];
    if (evs.length > 0) await this.#publish(evs, now);
    if (status === 'no_stream') throw new NoStreamError(stream);
    if (status === 'no_capacity') throw new NoCapacityError(stream);
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]!] = flat[i + 1]!;
    const relay = toRelayInfo(relayId, h);
    const p: Placement = { stream, viewerId, relay, depth };
    if (parent !== '') p.attach = { relayId: relay.id, parentId: parent };
    return p;
  }

  async placeViewers(stream: string, requests: readonly PlaceOptions[]): Promise<Array<Placement | TopologyError>> {
    checkId('stream', stream);
    if (!Array.isArray(requests) || requests.length > MAX_PLACE_BATCH) {
      throw new InvalidTopologyArgumentError(`placeViewers takes an array of at most ${MAX_PLACE_BATCH} requests`);
    }
    const out: Array<Placement | TopologyError | undefined> = new Array(requests.length);
    const args: string[] = [];
    const index: number[] = [];
    requests.forEach((r, i) => {
      try {
        const region = r.region ?? '';
        if (typeof region !== 'string') throw new InvalidTopologyArgumentError('region must be a string');
        const viewerId = r.viewerId === undefined ? randomUUID() : checkId('viewer id', r.viewerId);
        args.push(viewerId, region);
        index.push(i);
      } catch (e) {
        out[i] = e as TopologyError;
      }
    });
    if (index.length > 0) {
      const [status, results, relays, evs, now] = (await this.#fcall('placeMany', [stream, String(index.length), ...args])) as [
        string,
        Array<[string, string, number, string]>,
        Array<[string, string[]]>,
        RawEvent[],
        number,
      ];
      if (evs.length > 0) await this.#publish(evs, now);
      if (status === 'no_stream') throw new NoStreamError(stream);
      const infos = new Map<string, RelayInfo>();
      for (const [id, flat] of relays) {
        const h: Record<string, string> = {};
        for (let k = 0; k + 1 < flat.length; k += 2) h[flat[k]!] = flat[k + 1]!;
        infos.set(id, toRelayInfo(id, h));
      }
      results.forEach(([st, relayId, depth, parent], k) => {
        const i = index[k]!;
        if (st !== 'ok') {
          out[i] = new NoCapacityError(stream);
          return;
        }
        const p: Placement = { stream, viewerId: args[2 * k]!, relay: infos.get(relayId)!, depth };
        if (parent !== '') p.attach = { relayId, parentId: parent };
        out[i] = p;
      });
    }
    return out as Array<Placement | TopologyError>;
  }

  async releaseViewer(stream: string, viewerId: string): Promise<boolean> {
    checkId('stream', stream);
    checkId('viewer id', viewerId);
    const rep = await this.#run('release', stream, viewerId);
    return rep.released === true;
  }

  // ---- reads -------------------------------------------------------------------------------

  async getTree(stream: string): Promise<StreamTree | undefined> {
    checkId('stream', stream);
    const rep = await this.#run('tree', stream);
    return rep.tree ? toTree(stream, rep.tree as LuaTree) : undefined;
  }

  async getRelay(relayId: string): Promise<RelayInfo | undefined> {
    checkId('relay id', relayId);
    try {
      const h = await this.#redis.hgetall(`${this.#prefix}{reg}:r:${relayId}`);
      return h.cap !== undefined ? toRelayInfo(relayId, h) : undefined;
    } catch (e) {
      throw new StoreUnavailableError(`Redis unavailable (${(e as Error).message}); retry when it is back`, e);
    }
  }

  async listRelays(): Promise<RelayInfo[]> {
    const rep = await this.#run('relays');
    return list(rep.relays as Array<Record<string, string>>).map((h) => toRelayInfo(h.id ?? '', h));
  }

  async listStreams(): Promise<string[]> {
    const rep = await this.#run('relays');
    return list(rep.streams as string[]);
  }

  subscribe(listener: TopologyListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- maintenance -------------------------------------------------------------------------

  async reapExpired(): Promise<ReapResult> {
    const res: ReapResult = { down: [], repaired: [], detached: [], movedViewers: 0, movedRelays: 0 };
    const rep = await this.#run('reap');
    res.down = list(rep.down as string[]);
    // Repair every stream of every down relay (including ones a crashed process left undone).
    const pending = await this.#cmd(() => this.#redis.smembers(`${this.#prefix}{reg}:repair`));
    for (const relayId of pending.sort()) {
      const streams = await this.#cmd(() => this.#redis.smembers(`${this.#prefix}{reg}:rs:${relayId}`));
      for (const s of streams.sort()) {
        const r = await this.#run('repair', relayId, s);
        if (r.done) {
          res.repaired.push(s);
          res.movedViewers += r.viewers as number;
          res.movedRelays += r.relays as number;
        }
      }
    }
    const streams = await this.#cmd(() => this.#redis.smembers(`${this.#prefix}{reg}:streams`));
    for (const s of streams.sort()) {
      const r = await this.#run('idle', s, String(this.#opts.idleGraceMs));
      for (const id of list(r.detached as string[])) res.detached.push(`${s}/${id}`);
    }
    return res;
  }

  async #cmd<T>(f: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new InvalidTopologyArgumentError('topology is closed');
    try {
      return await f();
    } catch (e) {
      throw new StoreUnavailableError(`Redis unavailable (${(e as Error).message}); retry when it is back`, e);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#listeners.clear();
    await this.#delivery.catch(() => {});
    for (const c of [this.#sub, this.#redis]) {
      try {
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 500))]);
      } catch {
        /* already gone */
      }
      c.disconnect();
    }
  }
}

type LuaTree = {
  origin: string;
  nodes: Array<[string, string, number, number, number, string]> | Record<string, never>;
  viewers: number;
};

function toTree(stream: string, t: LuaTree): StreamTree {
  const nodes = list(t.nodes)
    .map(([relayId, parent, depth, viewers, children, idle]) => ({
      relayId,
      parentId: parent === '' ? null : parent,
      depth,
      viewers,
      children,
      idleSinceMs: idle === '' ? null : Number(idle),
    }))
    .sort((a, b) => a.depth - b.depth || (a.relayId < b.relayId ? -1 : a.relayId > b.relayId ? 1 : 0));
  return { stream, originId: t.origin, nodes, viewers: t.viewers };
}

function toRelayInfo(id: string, h: Record<string, string>): RelayInfo {
  return {
    id: id || (h.id ?? ''),
    region: h.region ?? '',
    url: h.url ?? '',
    capacity: Number(h.cap),
    fanout: Number(h.fan),
    load: Number(h.load ?? 0),
    viewers: Number(h.v),
    children: Number(h.ch),
    streams: Number(h.ns),
    draining: h.dr === '1',
    up: h.up === '1',
    leaseExpiresAt: Number(h.lease),
  };
}
