/**
 * One contract, two stores: every test here runs against MemoryTopology and RedisTopology (a real
 * redis-server started by test/helpers/redis.ts, unique key prefix per store). Both stores take a
 * FakeClock, so leases and grace periods are driven by advancing time, never by sleeping.
 * Several tests assert exact placements: the stores must agree with each other and with policy.ts.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/util/clock.ts';
import {
  InvalidTopologyArgumentError,
  MemoryTopology,
  NoCapacityError,
  NoStreamError,
  RedisTopology,
  StreamExistsError,
  UnknownRelayError,
  type RelayRegistration,
  type StreamTree,
  type Topology,
  type TopologyEvent,
} from '../src/topology/index.ts';
import { startRedis, uniquePrefix, type TestRedis } from './helpers/redis.ts';

interface Harness {
  topo: Topology;
  clock: FakeClock;
  /** A second client on the same store (another process), or the same one for memory. */
  peer: Topology;
}

type Factory = () => Promise<Harness>;

const T0 = 1_700_000_000_000;

function reg(id: string, o: Partial<RelayRegistration> = {}): RelayRegistration {
  return { id, region: 'eu', url: `http://127.0.0.1:9${id.replace(/\D/g, '').padStart(3, '0')}`, capacity: 6, fanout: 2, leaseMs: 1000, ...o };
}

/** Collects events; `waitFor` resolves when a predicate matches (bounded; Redis delivers over pub/sub). */
function recorder(t: Topology) {
  const events: TopologyEvent[] = [];
  const unsub = t.subscribe((e) => events.push(e));
  return {
    events,
    unsub,
    async waitFor(pred: (evs: TopologyEvent[]) => boolean, ms = 3000): Promise<TopologyEvent[]> {
      const end = Date.now() + ms;
      while (!pred(events)) {
        if (Date.now() > end) throw new Error(`timed out waiting for events; got ${JSON.stringify(events.map((e) => e.kind))}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return events;
    },
  };
}

/** Structural invariants every tree must keep. */
async function checkInvariants(t: Topology, stream: string): Promise<StreamTree> {
  const tree = (await t.getTree(stream))!;
  const relays = new Map((await t.listRelays()).map((r) => [r.id, r]));
  const byId = new Map(tree.nodes.map((n) => [n.relayId, n]));
  for (const n of tree.nodes) {
    const r = relays.get(n.relayId)!;
    expect(r.viewers + r.children).toBeLessThanOrEqual(r.capacity);
    expect(n.children).toBeLessThanOrEqual(r.fanout);
    // Walk to the origin: no cycle, depths consistent.
    let cur = n;
    let steps = 0;
    while (cur.parentId !== null) {
      const p = byId.get(cur.parentId)!;
      expect(p).toBeDefined();
      expect(cur.depth).toBe(p.depth + 1);
      cur = p;
      expect(++steps).toBeLessThanOrEqual(tree.nodes.length);
    }
    expect(cur.relayId).toBe(tree.originId);
    expect(n.children).toBe(tree.nodes.filter((c) => c.parentId === n.relayId).length);
  }
  return tree;
}

function contract(name: string, factory: Factory): void {
  describe(`Topology contract: ${name}`, () => {
    let h: Harness;
    beforeEach(async () => {
      h = await factory();
    });
    afterEach(async () => {
      await h.topo.close();
      if (h.peer !== h.topo) await h.peer.close();
    });

    it('registerRelay / getRelay / listRelays', async () => {
      const res = await h.topo.registerRelay(reg('r1', { region: 'us', capacity: 9, fanout: 3 }));
      expect(res.relay).toMatchObject({ id: 'r1', region: 'us', capacity: 9, fanout: 3, viewers: 0, children: 0, streams: 0, up: true, draining: false });
      expect(res.relay.leaseExpiresAt).toBe(T0 + 1000);
      await h.topo.registerRelay(reg('r0'));
      expect((await h.peer.listRelays()).map((r) => r.id)).toEqual(['r0', 'r1']);
      expect((await h.peer.getRelay('r1'))?.url).toBe('http://127.0.0.1:9001');
      expect(await h.peer.getRelay('nope')).toBeUndefined();
    });

    it('rejects bad arguments with InvalidTopologyArgumentError', async () => {
      await expect(h.topo.registerRelay(reg('bad{id}'))).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
      await expect(h.topo.registerRelay(reg('r1', { capacity: 0 }))).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
      await expect(h.topo.registerRelay(reg('r1', { url: 'ftp://x' }))).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
      await h.topo.registerRelay(reg('r1'));
      await expect(h.topo.heartbeat('r1', Number.NaN)).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
      await expect(h.topo.placeViewer('a b')).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
    });

    it('registerStream makes the origin depth 0; conflicts and unknown relays are typed errors', async () => {
      await h.topo.registerRelay(reg('r1'));
      await h.topo.registerRelay(reg('r2'));
      const tree = await h.topo.registerStream('cam', 'r1');
      expect(tree).toEqual({ stream: 'cam', originId: 'r1', viewers: 0, nodes: [{ relayId: 'r1', parentId: null, depth: 0, viewers: 0, children: 0, idleSinceMs: T0 }] });
      expect((await h.topo.registerStream('cam', 'r1')).originId).toBe('r1'); // idempotent
      await expect(h.topo.registerStream('cam', 'r2')).rejects.toBeInstanceOf(StreamExistsError);
      await expect(h.topo.registerStream('cam2', 'ghost')).rejects.toBeInstanceOf(UnknownRelayError);
      expect(await h.peer.listStreams()).toEqual(['cam']);
      await expect(h.topo.placeViewer('nostream')).rejects.toBeInstanceOf(NoStreamError);
    });

    it('fills the origin, then grows the tree level by level (exact placements)', async () => {
      const rec = recorder(h.peer);
      // capacity 6, fanout 2: 4 viewer slots per relay per stream.
      for (const id of ['o', 'a', 'b', 'c', 'd']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      const got: string[] = [];
      for (let i = 0; i < 20; i++) {
        const p = await (i % 2 ? h.peer : h.topo).placeViewer('s');
        got.push(`${p.relay.id}@${p.depth}${p.attach ? `<${p.attach.parentId}` : ''}`);
      }
      expect(got).toEqual([
        'o@0', 'o@0', 'o@0', 'o@0',
        'a@1<o', 'a@1', 'a@1', 'a@1',
        'b@1<o', 'b@1', 'b@1', 'b@1',
        'c@2<a', 'c@2', 'c@2', 'c@2',
        'd@2<a', 'd@2', 'd@2', 'd@2',
      ]);
      await expect(h.topo.placeViewer('s')).rejects.toBeInstanceOf(NoCapacityError);
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.viewers).toBe(20);
      await rec.waitFor((e) => e.filter((x) => x.kind === 'RELAY_ATTACHED').length === 4);
      const att = rec.events.filter((e) => e.kind === 'RELAY_ATTACHED').map((e) => `${e.relayId}<${e.parentId}`);
      expect(att).toEqual(['a<o', 'b<o', 'c<a', 'd<a']);
    });

    it('placeViewers places a batch exactly as one-by-one placement would', async () => {
      for (const id of ['o', 'a', 'b']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      const res = await h.topo.placeViewers('s', Array.from({ length: 14 }, (_, i) => ({ viewerId: `v${i}` })));
      const fmt = res.map((r) => (r instanceof Error ? r.name : `${r.viewerId}:${r.relay.id}@${r.depth}${r.attach ? `<${r.attach.parentId}` : ''}`));
      expect(fmt).toEqual([
        'v0:o@0', 'v1:o@0', 'v2:o@0', 'v3:o@0',
        'v4:a@1<o', 'v5:a@1', 'v6:a@1', 'v7:a@1',
        'v8:b@1<o', 'v9:b@1', 'v10:b@1', 'v11:b@1',
        'NoCapacityError', 'NoCapacityError',
      ]);
      expect((res[4] as { relay: { url: string } }).relay.url).toBe('http://127.0.0.1:9000');
      expect((await checkInvariants(h.peer, 's')).viewers).toBe(12);
      await expect(h.topo.placeViewers('nope', [{}])).rejects.toBeInstanceOf(NoStreamError);
      await expect(h.topo.placeViewers('s', Array.from({ length: 1001 }, () => ({})))).rejects.toBeInstanceOf(InvalidTopologyArgumentError);
    });

    it('prefers the viewer region, then shallowest, then least loaded', async () => {
      await h.topo.registerRelay(reg('o', { region: 'us' }));
      await h.topo.registerRelay(reg('e1', { region: 'eu', capacity: 10 }));
      await h.topo.registerRelay(reg('e2', { region: 'eu', capacity: 10 }));
      await h.topo.registerRelay(reg('u1', { region: 'us', capacity: 10 }));
      await h.topo.registerStream('s', 'o');
      const onE1: string[] = [];
      const where = async (region: string): Promise<string> => {
        const p = await h.topo.placeViewer('s', { region });
        if (p.relay.id === 'e1') onE1.push(p.viewerId);
        return `${p.relay.id}${p.attach ? `<${p.attach.parentId}` : ''}`;
      };
      // A relay that carries the stream with room beats growing into the viewer's region.
      expect(await where('eu')).toBe('o');
      for (let i = 0; i < 3; i++) expect(await where('us')).toBe('o');
      // o is full: grow, choosing a new relay in the viewer's region.
      expect(await where('eu')).toBe('e1<o');
      for (let i = 0; i < 7; i++) expect(await where('us')).toBe('e1');
      expect(await where('us')).toBe('u1<o');
      await h.topo.releaseViewer('s', onE1[0]!);
      await h.topo.releaseViewer('s', onE1[1]!);
      // Both have room at the same depth: the viewer's region first, even if more loaded.
      expect(await where('eu')).toBe('e1');
      expect(await where('us')).toBe('u1');
      // No region match: shallowest, then least loaded (u1 2/10, e1 7/10).
      expect(await where('ap')).toBe('u1');
    });

    it('releaseViewer frees the slot once; a viewerId makes placement idempotent', async () => {
      await h.topo.registerRelay(reg('o', { capacity: 3, fanout: 1 }));
      await h.topo.registerStream('s', 'o');
      const a = await h.topo.placeViewer('s', { viewerId: 'va' });
      const again = await h.peer.placeViewer('s', { viewerId: 'va' });
      expect(again.relay.id).toBe(a.relay.id);
      const b = await h.topo.placeViewer('s');
      await expect(h.topo.placeViewer('s')).rejects.toBeInstanceOf(NoCapacityError);
      expect(await h.peer.releaseViewer('s', b.viewerId)).toBe(true);
      expect(await h.peer.releaseViewer('s', b.viewerId)).toBe(false);
      expect((await h.topo.placeViewer('s')).relay.id).toBe('o');
      expect((await h.topo.getRelay('o'))!.viewers).toBe(2);
    });

    it('heartbeat renews the lease; an expired relay is declared down exactly once and repaired', async () => {
      const rec = recorder(h.peer);
      for (const id of ['o', 'a', 'b', 'c', 'd', 'x']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      const placed = [];
      for (let i = 0; i < 20; i++) placed.push(await h.topo.placeViewer('s'));
      // Tree: o -> {a, b}; a -> {c, d}. Keep everyone alive except a.
      h.clock.advance(900);
      for (const id of ['o', 'b', 'c', 'd', 'x']) await h.topo.heartbeat(id, 0.5);
      h.clock.advance(200); // a: 1100 ms since its lease began; others renewed at 900
      const [r1, r2] = await Promise.all([h.topo.reapExpired(), h.peer.reapExpired()]);
      expect([...r1.down, ...r2.down]).toEqual(['a']); // exactly one process declares it
      // Whichever process gets there first repairs the stream, once.
      expect([...r1.repaired, ...r2.repaired]).toEqual(['s']);
      expect(r1.movedViewers + r2.movedViewers).toBe(4);
      expect(r1.movedRelays + r2.movedRelays).toBe(2);
      expect((await h.topo.reapExpired()).down).toEqual([]);
      await rec.waitFor((e) => e.filter((x) => x.kind === 'VIEWER_MOVE').length === 4 && e.some((x) => x.kind === 'RELAY_DOWN'));
      expect(rec.events.filter((e) => e.kind === 'RELAY_DOWN').map((e) => e.relayId)).toEqual(['a']);
      // c and d re-attach to the nearest live ancestor with room: o (it lost a, one free slot), then
      // b (o is full again).
      const rep = rec.events.filter((e) => e.kind === 'RELAY_REPARENTED').map((e) => `${e.relayId}<${e.parentId}@${e.depth}`);
      expect(rep).toEqual(['c<o@1', 'd<b@2']);
      const moves = rec.events.filter((e) => e.kind === 'VIEWER_MOVE');
      const movedIds = placed.filter((p) => p.relay.id === 'a').map((p) => p.viewerId).sort();
      expect(moves.map((m) => m.viewerId).sort()).toEqual(movedIds);
      for (const m of moves) {
        expect(m.relayId).toBe('x'); // everyone else is full: the tree grew by x
        expect(m.relay?.url).toBe('http://127.0.0.1:9000');
      }
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.nodes.map((n) => n.relayId).sort()).toEqual(['b', 'c', 'd', 'o', 'x']);
      expect(tree.viewers).toBe(20);
      expect((await h.topo.getRelay('a'))!.up).toBe(false);
      await expect(h.topo.heartbeat('a', 0)).rejects.toBeInstanceOf(UnknownRelayError);
      // The moved viewers' reservations are on x now.
      expect(await h.topo.releaseViewer('s', movedIds[0]!)).toBe(true);
    });

    it('an origin whose lease expires ends its streams', async () => {
      const rec = recorder(h.peer);
      await h.topo.registerRelay(reg('o'));
      await h.topo.registerStream('s', 'o');
      await h.topo.placeViewer('s');
      h.clock.advance(1000);
      expect((await h.topo.reapExpired()).down).toEqual(['o']);
      await rec.waitFor((e) => e.some((x) => x.kind === 'STREAM_ENDED'));
      expect(rec.events.find((e) => e.kind === 'STREAM_ENDED')).toMatchObject({ stream: 's', originId: 'o' });
      expect(await h.topo.getTree('s')).toBeUndefined();
      expect(await h.topo.listStreams()).toEqual([]);
    });

    it('drainRelay: nothing new lands on it; its viewers and children move', async () => {
      const rec = recorder(h.peer);
      for (const id of ['o', 'a', 'b', 'c', 'd']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      for (let i = 0; i < 13; i++) await h.topo.placeViewer('s'); // o:4 a:4 b:4 c:1 (c under a)
      await h.peer.drainRelay('a');
      await rec.waitFor((e) => e.some((x) => x.kind === 'RELAY_DRAINING') && e.filter((x) => x.kind === 'VIEWER_MOVE').length === 4);
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.nodes.find((n) => n.relayId === 'a')).toBeUndefined();
      expect(tree.nodes.find((n) => n.relayId === 'c')!.parentId).toBe('o');
      expect(tree.viewers).toBe(13);
      expect((await h.topo.getRelay('a'))!).toMatchObject({ draining: true, viewers: 0, streams: 0 });
      for (const e of rec.events.filter((x) => x.kind === 'VIEWER_MOVE')) expect(e.relayId).not.toBe('a');
      await expect(h.topo.registerStream('s2', 'a')).rejects.toMatchObject({ code: 'relay_unavailable' });
    });

    it('endStream frees every slot', async () => {
      for (const id of ['o', 'a']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      for (let i = 0; i < 6; i++) await h.topo.placeViewer('s');
      await h.peer.endStream('s');
      expect(await h.topo.getTree('s')).toBeUndefined();
      for (const r of await h.topo.listRelays()) expect(r).toMatchObject({ viewers: 0, children: 0, streams: 0 });
    });

    it('detaches a relay idle past the grace period (never the origin)', async () => {
      const rec = recorder(h.peer);
      for (const id of ['o', 'a']) await h.topo.registerRelay(reg(id, { leaseMs: 1_000_000 }));
      await h.topo.registerStream('s', 'o');
      const ps = [];
      for (let i = 0; i < 5; i++) ps.push(await h.topo.placeViewer('s'));
      expect(ps[4]!.relay.id).toBe('a');
      await h.topo.releaseViewer('s', ps[4]!.viewerId);
      h.clock.advance(5000);
      expect((await h.topo.reapExpired()).detached).toEqual([]);
      h.clock.advance(5000); // grace is 10 s in this harness
      expect((await h.topo.reapExpired()).detached).toEqual(['s/a']);
      await rec.waitFor((e) => e.some((x) => x.kind === 'RELAY_DETACHED'));
      expect(rec.events.find((e) => e.kind === 'RELAY_DETACHED')).toMatchObject({ stream: 's', relayId: 'a', parentId: 'o' });
      expect((await h.topo.getTree('s'))!.nodes.map((n) => n.relayId)).toEqual(['o']);
      expect((await h.topo.getRelay('o'))!.children).toBe(0);
    });

    it('expireLease declares an unreachable relay down at once, exactly once, with the lease-expiry repair', async () => {
      const rec = recorder(h.peer);
      for (const id of ['o', 'a', 'b', 'c']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      for (let i = 0; i < 9; i++) await h.topo.placeViewer('s'); // o:4 a:4 b:1
      // Two processes find it unreachable at the same time: one declares it.
      const [x, y] = await Promise.all([h.topo.expireLease('a'), h.peer.expireLease('a')]);
      expect([x, y].filter(Boolean)).toHaveLength(1);
      expect((await h.topo.getRelay('a'))!.up).toBe(false); // down, not removed: it may come back
      await rec.waitFor((e) => e.filter((v) => v.kind === 'VIEWER_MOVE').length === 4 && e.some((v) => v.kind === 'RELAY_DOWN'));
      expect(rec.events.filter((e) => e.kind === 'RELAY_DOWN').map((e) => e.relayId)).toEqual(['a']);
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.viewers).toBe(9);
      expect(tree.nodes.map((n) => n.relayId)).not.toContain('a');
      expect(await h.topo.expireLease('a')).toBe(false); // already down
      expect(await h.topo.expireLease('nobody')).toBe(false);
      // A relay that was only unreachable from one place comes back by registering again.
      await h.topo.registerRelay(reg('a'));
      expect((await h.topo.getRelay('a'))!.up).toBe(true);
    });

    it('deregisterRelay repairs at once', async () => {
      for (const id of ['o', 'a', 'b', 'c']) await h.topo.registerRelay(reg(id));
      await h.topo.registerStream('s', 'o');
      for (let i = 0; i < 9; i++) await h.topo.placeViewer('s'); // o:4 a:4 b:1
      await h.topo.deregisterRelay('a'); // 3 of a's viewers go to b, one to c (attached)
      expect(await h.topo.getRelay('a')).toBeUndefined();
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.viewers).toBe(9);
      expect(tree.nodes.map((n) => n.relayId).sort()).toEqual(['b', 'c', 'o']);
    });

    it('subscribe returns an unsubscribe; a throwing listener does not stop the others; close is idempotent', async () => {
      const a = recorder(h.peer);
      const b = recorder(h.peer);
      h.peer.subscribe(() => {
        throw new Error('listener bug');
      });
      await h.topo.registerRelay(reg('o'));
      await h.topo.registerRelay(reg('x'));
      b.unsub();
      await h.topo.drainRelay('x');
      await a.waitFor((e) => e.some((x) => x.kind === 'RELAY_DRAINING'));
      await h.topo.drainRelay('o');
      await a.waitFor((e) => e.filter((x) => x.kind === 'RELAY_DRAINING').length === 2);
      expect(b.events).toEqual([]);
      const extra = await factory();
      await extra.topo.close();
      await extra.topo.close();
      if (extra.peer !== extra.topo) await extra.peer.close();
    });

    it('registerRelay with `carrying` reconciles what a relay already carries', async () => {
      const o = await h.topo.registerRelay(reg('o', { carrying: [{ stream: 's', parentId: null, viewers: ['v1', 'v2'] }] }));
      expect(o.accepted).toEqual(['s']);
      const early = await h.topo.registerRelay(reg('b', { carrying: [{ stream: 's', parentId: 'a', viewers: ['v5'] }] }));
      expect(early.rejected).toHaveLength(1); // a has not re-registered yet
      const a = await h.topo.registerRelay(reg('a', { carrying: [{ stream: 's', parentId: 'o', viewers: ['v3', 'v4'] }] }));
      expect(a.accepted).toEqual(['s']);
      const late = await h.topo.registerRelay(reg('b', { carrying: [{ stream: 's', parentId: 'a', viewers: ['v5'] }] }));
      expect(late.accepted).toEqual(['s']);
      const tree = await checkInvariants(h.topo, 's');
      expect(tree.nodes.map((n) => `${n.relayId}<${n.parentId}:${n.viewers}`)).toEqual(['o<null:2', 'a<o:2', 'b<a:1']);
      expect(await h.topo.releaseViewer('s', 'v5')).toBe(true);
      // Claiming to carry nothing any more drops b from the tree.
      await h.topo.registerRelay(reg('b', { carrying: [] }));
      expect((await h.topo.getTree('s'))!.nodes.map((n) => n.relayId)).toEqual(['o', 'a']);
    });
  });
}

contract('MemoryTopology', async () => {
  const clock = new FakeClock(T0);
  const topo = new MemoryTopology({ clock, idleGraceMs: 10_000, leaseMs: 1000 });
  return { topo, clock, peer: topo };
});

describe('RedisTopology', () => {
  let redis: TestRedis;
  const prefixes: string[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const p of prefixes) await redis.cleanup(p); // matters with REDIS_URL (a shared server)
    await redis.stop();
  });
  contract('RedisTopology', async () => {
    const clock = new FakeClock(T0);
    const prefix = uniquePrefix('contract');
    prefixes.push(prefix);
    const opts = { url: redis.url, prefix, clock, idleGraceMs: 10_000, leaseMs: 1000 };
    const topo = new RedisTopology(opts);
    const peer = new RedisTopology(opts);
    await Promise.all([topo.ready(), peer.ready()]);
    return { topo, clock, peer };
  });
});
