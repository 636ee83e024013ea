/**
 * RedisTopology beyond the shared contract: store outages, concurrent placement from several
 * clients, server-time leases, the event channel, and agreement with MemoryTopology on a long
 * seeded run. Every test uses its own redis-server or key prefix and cleans up after itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { FakeClock } from '../src/util/clock.ts';
import { decodeTopologyEvent, TopologyEventKind } from '../src/proto/index.ts';
import {
  InvalidTopologyArgumentError,
  MemoryTopology,
  NoCapacityError,
  RedisTopology,
  StoreUnavailableError,
  type Topology,
  type TopologyEvent,
} from '../src/topology/index.ts';
import { startRedis, uniquePrefix, type TestRedis } from './helpers/redis.ts';

const T0 = 1_700_000_000_000;

async function until<T>(f: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last error: ${String(last)}`);
}

describe('store options', () => {
  it('are validated at construction with named errors', () => {
    expect(() => new RedisTopology({ url: 'http://127.0.0.1:6379' })).toThrow(InvalidTopologyArgumentError);
    expect(() => new RedisTopology({ url: 'redis://127.0.0.1:1', prefix: 'a{b}' })).toThrow(/no braces/);
    expect(() => new RedisTopology({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 0 })).toThrow(InvalidTopologyArgumentError);
    expect(() => new MemoryTopology({ leaseMs: 0 })).toThrow(/leaseMs/);
    expect(() => new MemoryTopology({ idleGraceMs: -1 })).toThrow(InvalidTopologyArgumentError);
    expect(() => new MemoryTopology({ reapIntervalMs: 1.5 })).toThrow(InvalidTopologyArgumentError);
  });

  it('ready() fails with StoreUnavailableError when Redis is not there', async () => {
    const { freePort } = await import('./helpers/redis.ts');
    const t = new RedisTopology({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 200 });
    try {
      await expect(t.ready(300)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(t.placeViewer('s')).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      await t.close();
    }
  });
});

describe('RedisTopology with a Redis outage', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis({ own: true }); // this test stops and restarts it
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('fails fast while Redis is down, works again when it is back, and relays reconcile', async () => {
    const clock = new FakeClock(T0);
    const prefix = uniquePrefix('outage');
    const opts = { url: redis.url, prefix, clock, commandTimeoutMs: 300, leaseMs: 10_000 };
    const a = new RedisTopology(opts);
    const b = new RedisTopology(opts);
    try {
      await Promise.all([a.ready(), b.ready()]);
      await a.registerRelay({ id: 'o', url: 'http://127.0.0.1:9001', capacity: 4, fanout: 2 });
      await a.registerRelay({ id: 'e', url: 'http://127.0.0.1:9002', capacity: 4, fanout: 2 });
      await a.registerStream('cam', 'o');
      const v1 = await a.placeViewer('cam');
      const v2 = await a.placeViewer('cam');
      const v3 = await a.placeViewer('cam'); // o keeps 2 slots in reserve: this one grows to e
      expect(v3.attach).toEqual({ relayId: 'e', parentId: 'o' });

      await redis.stop();
      // Every kind of call fails fast with the typed error, none hangs.
      const calls: Array<() => Promise<unknown>> = [
        () => a.placeViewer('cam'),
        () => a.heartbeat('o', 1),
        () => b.getTree('cam'),
        () => b.listRelays(),
        () => a.reapExpired(),
        () => a.releaseViewer('cam', v1.viewerId),
        () => b.getRelay('o'),
      ];
      for (const call of calls) {
        const t = performance.now();
        const err = await call().then(() => undefined, (e: unknown) => e);
        const ms = performance.now() - t;
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect(ms).toBeLessThan(1500); // command timeout 300 ms, plus slack for a loaded machine
      }

      await redis.restart(); // comes back empty (--save '' --appendonly no)
      // Calls work again once the client has reconnected (bounded wait).
      await until(async () => (await a.listStreams()).length === 0 || undefined, 5000, 'reconnect');
      expect(await a.getTree('cam')).toBeUndefined(); // the store lost everything

      // Events flow again once the subscriber connections have re-subscribed (ioredis does it by
      // itself on reconnect; Redis pub/sub drops what is published before that, see the docs), so
      // wait until the server counts both subscriptions.
      const probe = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      try {
        await until(async () => {
          const [, n] = (await probe.pubsub('NUMSUB', `${prefix}{reg}:events`)) as [string, number];
          return Number(n) >= 2 || undefined;
        }, 5000, 'both subscriptions back');
      } finally {
        probe.disconnect();
      }
      const seen: TopologyEvent[] = [];
      b.subscribe((e) => seen.push(e));

      // The relays re-register with what they carry; the store adopts it.
      const ro = await a.registerRelay({ id: 'o', url: 'http://127.0.0.1:9001', capacity: 4, fanout: 2, carrying: [{ stream: 'cam', parentId: null, viewers: [v1.viewerId, v2.viewerId] }] });
      expect(ro.accepted).toEqual(['cam']);
      const re = await b.registerRelay({ id: 'e', url: 'http://127.0.0.1:9002', capacity: 4, fanout: 2, carrying: [{ stream: 'cam', parentId: 'o', viewers: [v3.viewerId] }] });
      expect(re.accepted).toEqual(['cam']);
      const tree = (await a.getTree('cam'))!;
      expect(tree.nodes.map((n) => `${n.relayId}<${n.parentId}:${n.viewers}`)).toEqual(['o<null:2', 'e<o:1']);
      expect((await a.getRelay('o'))!).toMatchObject({ viewers: 2, children: 1, streams: 1 });
      // Reservations made before the outage can be released after it.
      expect(await b.releaseViewer('cam', v3.viewerId)).toBe(true);
      // And placement continues on the reconciled tree.
      expect((await b.placeViewer('cam')).relay.id).toBe('e');
      await a.deregisterRelay('e');
      await until(async () => (seen.some((e) => e.kind === 'VIEWER_MOVE') ? true : undefined), 3000, 'events after restart');
      await redis.cleanup(prefix);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('RedisTopology on a shared Redis', () => {
  let redis: TestRedis;
  const prefixes: string[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const p of prefixes) await redis.cleanup(p);
    await redis.stop();
  });
  const prefix = (tag: string): string => {
    const p = uniquePrefix(tag);
    prefixes.push(p);
    return p;
  };

  it('several clients placing concurrently never overfill a relay', async () => {
    const p = prefix('concurrent');
    const clients = Array.from({ length: 4 }, () => new RedisTopology({ url: redis.url, prefix: p }));
    try {
      await Promise.all(clients.map((c) => c.ready()));
      // 12 relays, capacity 10, fan-out 3: 7 viewer slots each once carrying the stream.
      for (let i = 0; i < 12; i++) {
        await clients[0]!.registerRelay({ id: `r${i}`, url: `http://127.0.0.1:${9100 + i}`, capacity: 10, fanout: 3, region: i % 2 ? 'eu' : 'us', leaseMs: 60_000 });
      }
      await clients[0]!.registerStream('s', 'r0');
      // 200 placements in flight at once across 4 connections: far more than fit (12 * 7 = 84).
      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => clients[i % 4]!.placeViewer('s', { region: i % 3 ? 'eu' : 'us' })),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      const full = results.filter((r) => r.status === 'rejected' && r.reason instanceof NoCapacityError);
      expect(ok.length + full.length).toBe(200);
      expect(ok.length).toBe(84);
      const relays = await clients[1]!.listRelays();
      for (const r of relays) {
        expect(r.viewers + r.children).toBeLessThanOrEqual(r.capacity);
        expect(r.viewers).toBeLessThanOrEqual(r.capacity - r.fanout * r.streams);
      }
      const tree = (await clients[2]!.getTree('s'))!;
      expect(tree.viewers).toBe(84);
      expect(tree.nodes).toHaveLength(12);
      for (const n of tree.nodes) expect(n.children).toBeLessThanOrEqual(3);
      const ids = new Set(ok.map((r) => (r as PromiseFulfilledResult<{ viewerId: string }>).value.viewerId));
      expect(ids.size).toBe(84);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('uses the Redis server clock for leases when no clock is given', async () => {
    const p = prefix('servertime');
    const t = new RedisTopology({ url: redis.url, prefix: p });
    const raw = new Redis(redis.url);
    try {
      await t.ready();
      const [sec, usec] = await raw.time();
      const serverNow = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      const r = await t.registerRelay({ id: 'a', url: 'http://127.0.0.1:9001', capacity: 2, fanout: 0, leaseMs: 60_000 });
      expect(r.relay.leaseExpiresAt).toBeGreaterThanOrEqual(serverNow + 60_000);
      expect(r.relay.leaseExpiresAt).toBeLessThan(serverNow + 60_000 + 2000);
      // A 30 ms lease really expires on the server's clock (bounded poll, not a fixed sleep).
      await t.registerRelay({ id: 'b', url: 'http://127.0.0.1:9002', capacity: 2, fanout: 0, leaseMs: 30 });
      const down = await until(async () => {
        const res = await t.reapExpired();
        return res.down.length ? res.down : undefined;
      }, 3000, 'lease expiry');
      expect(down).toEqual(['b']);
    } finally {
      raw.disconnect();
      await t.close();
    }
  });

  it('publishes TopologyEvent protobufs and survives garbage on the channel', async () => {
    const p = prefix('events');
    const t = new RedisTopology({ url: redis.url, prefix: p, clock: new FakeClock(T0) });
    const raw = new Redis(redis.url);
    const rawSub = new Redis(redis.url);
    try {
      await t.ready();
      const frames: Buffer[] = [];
      rawSub.on('messageBuffer', (_c: Buffer, m: Buffer) => frames.push(m));
      await rawSub.subscribe(`${p}{reg}:events`);
      const seen: TopologyEvent[] = [];
      t.subscribe((e) => seen.push(e));
      await raw.publish(`${p}{reg}:events`, Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01])); // not a TopologyEvent
      await t.registerRelay({ id: 'o', url: 'http://127.0.0.1:9001', capacity: 3, fanout: 2 });
      await t.registerRelay({ id: 'e', url: 'http://127.0.0.1:9002', capacity: 3, fanout: 2 });
      await t.registerStream('s', 'o');
      await t.placeViewer('s'); // o has 1 viewer slot (3 - 2 reserved)
      const p2 = await t.placeViewer('s'); // grows: e under o
      expect(p2.attach).toEqual({ relayId: 'e', parentId: 'o' });
      await until(async () => (seen.some((e) => e.kind === 'RELAY_ATTACHED') ? true : undefined), 3000, 'attach event');
      const ev = seen.find((e) => e.kind === 'RELAY_ATTACHED')!;
      expect(ev).toMatchObject({ stream: 's', relayId: 'e', parentId: 'o', atMs: T0, depth: 1 });
      expect(ev.relay?.url).toBe('http://127.0.0.1:9002');
      await until(async () => (frames.length >= 2 ? true : undefined), 3000, 'raw frames');
      const decoded = decodeTopologyEvent<{ kind: number; relayId: string }>(frames[frames.length - 1]!);
      expect(decoded.kind).toBe(TopologyEventKind.RELAY_ATTACHED);
      expect(decoded.relayId).toBe('e');
    } finally {
      raw.disconnect();
      rawSub.disconnect();
      await t.close();
    }
  });

  it('agrees with MemoryTopology on a long seeded run (placements, releases, failures, drains)', async () => {
    const p = prefix('agree');
    const mc = new FakeClock(T0);
    const rc = new FakeClock(T0);
    const mem = new MemoryTopology({ clock: mc, leaseMs: 1000, idleGraceMs: 3000 });
    const red = new RedisTopology({ url: redis.url, prefix: p, clock: rc, leaseMs: 1000, idleGraceMs: 3000 });
    try {
      await red.ready();
      let seed = 7;
      const rand = (): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed / 2147483648;
      };
      const regions = ['eu', 'us', 'ap'];
      const both = async <T>(f: (t: Topology) => Promise<T>): Promise<[T | string, T | string]> => {
        const run = (t: Topology) => f(t).catch((e: Error) => `error:${e.name}`);
        return [await run(mem), await run(red)];
      };
      for (let i = 0; i < 40; i++) {
        const reg = { id: `r${String(i).padStart(2, '0')}`, url: `http://127.0.0.1:${9200 + i}`, region: regions[i % 3]!, capacity: 6 + (i % 5), fanout: 2 + (i % 2) };
        await both((t) => t.registerRelay(reg));
      }
      await both((t) => t.registerStream('live', 'r00'));
      const viewers: string[] = [];
      let failures = 0;
      let moved = 0;
      let drains = 0;
      let alive = new Set(Array.from({ length: 40 }, (_, i) => `r${String(i).padStart(2, '0')}`));
      for (let step = 0; step < 400; step++) {
        const x = rand();
        if (x < 0.7) {
          const vid = `v${step}`;
          const region = regions[Math.floor(rand() * 3)]!;
          const [a, b] = await both((t) => t.placeViewer('live', { viewerId: vid, region }));
          const fmt = (pl: typeof a) => (typeof pl === 'string' ? pl : `${pl.relay.id}@${pl.depth}${pl.attach ? `<${pl.attach.parentId}` : ''}`);
          expect(fmt(b), `step ${step}`).toBe(fmt(a));
          if (typeof a !== 'string') viewers.push(vid);
        } else if (x < 0.9 && viewers.length > 0) {
          const vid = viewers.splice(Math.floor(rand() * viewers.length), 1)[0]!;
          const [a, b] = await both((t) => t.releaseViewer('live', vid));
          expect(b, `step ${step}`).toBe(a);
        } else if (x < 0.96) {
          // A relay dies: everyone else heartbeats, time passes, both stores reap.
          const victims = [...alive].filter((id) => id !== 'r00');
          const victim = victims[Math.floor(rand() * victims.length)]!;
          alive.delete(victim);
          mc.advance(600);
          rc.advance(600);
          for (const id of alive) await both((t) => t.heartbeat(id, 0));
          mc.advance(600);
          rc.advance(600);
          const [a, b] = await both((t) => t.reapExpired());
          expect(b, `step ${step}`).toEqual(a);
          if (typeof a !== 'string') {
            failures += a.down.length;
            moved += a.movedViewers + a.movedRelays;
          }
        } else {
          const victims = [...alive].filter((id) => id !== 'r00');
          const victim = victims[Math.floor(rand() * victims.length)]!;
          await both((t) => t.drainRelay(victim));
          drains++;
          alive.delete(victim);
          await both((t) => t.deregisterRelay(victim));
        }
        if (step % 50 === 49) {
          const [ta, tb] = await both((t) => t.getTree('live'));
          expect(tb, `tree at step ${step}`).toEqual(ta);
        }
      }
      const [ra, rb] = await both((t) => t.listRelays());
      const strip = (rs: typeof ra) => (typeof rs === 'string' ? rs : rs.map(({ load: _l, ...r }) => r));
      expect(strip(rb)).toEqual(strip(ra));
      alive = new Set();
      // The run exercised what it claims to.
      expect(failures).toBeGreaterThanOrEqual(3);
      expect(moved).toBeGreaterThan(0);
      expect(drains).toBeGreaterThanOrEqual(2);
      expect(viewers.length).toBeGreaterThan(50);
    } finally {
      await mem.close();
      await red.close();
    }
  });
});
