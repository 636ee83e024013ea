/**
 * RelayAgent against a MemoryTopology (fake clock) and a scripted relay (an EventEmitter that
 * records pull/unpull): registration and heartbeats, publish/unpublish, slot release by viewer
 * id prefix, pulls on RELAY_REPARENTED / RELAY_ATTACHED (with the grace for signaling's own
 * pull), merged pulls from the same parent, retry of a failed pull, unpull on detach.
 * Timers are vitest fake timers: nothing sleeps.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import { RelayAgent, type RelayLike } from '../src/mesh.ts';
import { MemoryTopology } from '../src/topology/index.ts';
import { FakeClock } from '../src/util/clock.ts';
import { verifyToken } from '../src/auth/token.ts';

const SECRET = 'agent-test-secret-0123456789';

class ScriptedRelay extends EventEmitter implements RelayLike {
  readonly pulls: Array<{ stream: string; parentUrl: string; token: string }> = [];
  readonly unpulls: string[] = [];
  carrying = new Set<string>();
  failPulls = 0;
  pending: Array<() => void> = [];
  holdPulls = false;
  viewers = 0;
  constructor(readonly id: string, readonly url: string) {
    super();
  }
  async pull(stream: string, parentUrl: string, token: string): Promise<void> {
    this.pulls.push({ stream, parentUrl, token });
    if (this.failPulls > 0) {
      this.failPulls--;
      throw new Error('parent refused');
    }
    if (this.holdPulls) await new Promise<void>((r) => this.pending.push(r));
    this.carrying.add(stream);
  }
  async unpull(stream: string): Promise<void> {
    this.unpulls.push(stream);
    this.carrying.delete(stream);
  }
  drain(): void {}
  async close(): Promise<void> {}
  streams(): string[] {
    return [...this.carrying];
  }
  viewerCount(): number {
    return this.viewers;
  }
  readonly dropped: string[] = [];
  async dropRelay(relayId: string): Promise<number> {
    this.dropped.push(relayId);
    return 1;
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

describe('RelayAgent', () => {
  let clock: FakeClock;
  let topo: MemoryTopology;
  let origin: ScriptedRelay;
  let edge: ScriptedRelay;
  let agents: RelayAgent[];

  beforeEach(async () => {
    vi.useFakeTimers();
    clock = new FakeClock(1_000_000);
    topo = new MemoryTopology({ clock, leaseMs: 3000 });
    origin = new ScriptedRelay('relay-0', 'http://127.0.0.1:1000');
    edge = new ScriptedRelay('relay-1', 'http://127.0.0.1:1001');
    agents = [origin, edge].map((relay) => new RelayAgent({ relay, topology: topo, secret: SECRET, capacity: 2, fanout: 1, leaseMs: 3000, clock }));
    for (const a of agents) await a.start();
  });

  afterEach(async () => {
    for (const a of agents) await a.stop(false);
    await topo.close();
    vi.useRealTimers();
  });

  it('registers the relay and heartbeats its load every third of the lease', async () => {
    expect((await topo.listRelays()).map((r) => [r.id, r.url, r.capacity, r.fanout])).toEqual([
      ['relay-0', 'http://127.0.0.1:1000', 2, 1],
      ['relay-1', 'http://127.0.0.1:1001', 2, 1],
    ]);
    origin.viewers = 2;
    clock.advance(1000);
    await vi.advanceTimersByTimeAsync(1000);
    const r = (await topo.getRelay('relay-0'))!;
    expect(r.load).toBe(2);
    expect(r.leaseExpiresAt).toBe(clock.now() + 3000);
  });

  it('publish registers the stream at this origin; unpublish ends it', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    expect((await topo.getTree('cam'))?.originId).toBe('relay-0');
    origin.emit('unpublish', 'cam');
    await flush();
    expect(await topo.getTree('cam')).toBeUndefined();
  });

  it('releases WHEP viewer slots on session-close, never WebSocket ones', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'whep-a' });
    await topo.placeViewer('cam', { viewerId: 'ws-b' });
    origin.emit('session-close', { stream: 'cam', sessionId: 'x', kind: 'viewer', viewer: 'ws-b' });
    origin.emit('session-close', { stream: 'cam', sessionId: 'y', kind: 'viewer', viewer: 'whep-a' });
    await flush();
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
    expect(await topo.releaseViewer('cam', 'whep-a')).toBe(false);
  });

  it('RELAY_ATTACHED: pulls at once (default grace 0) when nobody else did, with a relay token naming the child', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    expect(edge.pulls).toHaveLength(0);
    const p = await topo.placeViewer('cam', { viewerId: 'ws-2' }); // origin full: the tree grows
    expect(p.attach).toEqual({ relayId: 'relay-1', parentId: 'relay-0' });
    await vi.advanceTimersByTimeAsync(1);
    expect(edge.pulls).toHaveLength(1);
    expect(edge.pulls[0]).toMatchObject({ stream: 'cam', parentUrl: origin.url });
    expect(verifyToken(edge.pulls[0]!.token, SECRET, clock.now())).toMatchObject({ stream: 'cam', role: 'relay', sub: 'relay-1' });
  });

  it("RELAY_ATTACHED: no second pull when signaling's pull started within the grace, and same-parent pulls merge", async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    await topo.placeViewer('cam', { viewerId: 'ws-2' });
    edge.holdPulls = true;
    // Signaling's control call reaches the relay (as /control does: it calls relay.pull).
    const first = edge.pull('cam', origin.url, 't');
    const second = edge.pull('cam', origin.url, 't'); // merged while in flight
    await vi.advanceTimersByTimeAsync(1000);
    expect(edge.pulls).toHaveLength(1);
    edge.pending.forEach((r) => r());
    await Promise.all([first, second]);
    await edge.pull('cam', origin.url, 't'); // already carrying from that parent: no-op
    expect(edge.pulls).toHaveLength(1);
    edge.holdPulls = false;
    await edge.pull('cam', 'http://127.0.0.1:2000', 't'); // another parent: re-parents
    expect(edge.pulls).toHaveLength(2);
  });

  it("RELAY_DOWN of another relay drops that relay's child sessions here; its own RELAY_DOWN re-registers", async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.expireLease('relay-1');
    await flush();
    expect(origin.dropped).toEqual(['relay-1']);
    expect(edge.dropped).toEqual([]);
    await flush();
    expect((await topo.getRelay('relay-1'))!.up).toBe(true); // the live agent registered again
  });

  it('a failed pull is retried while the tree still wants the edge', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    edge.failPulls = 2;
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    await topo.placeViewer('cam', { viewerId: 'ws-2' });
    await vi.advanceTimersByTimeAsync(300);
    expect(edge.pulls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    expect(edge.pulls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(edge.pulls).toHaveLength(3);
    expect(edge.carrying.has('cam')).toBe(true);
    await vi.advanceTimersByTimeAsync(5000);
    expect(edge.pulls).toHaveLength(3);
  });

  it("signaling's pull (through /control) failing is retried by the agent from the tree's parent", async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    await topo.placeViewer('cam', { viewerId: 'ws-2' });
    edge.failPulls = 1;
    await expect(edge.pull('cam', origin.url, 't')).rejects.toThrow('parent refused'); // the control call
    await vi.advanceTimersByTimeAsync(300); // grace: a pull started, the agent does not pull
    expect(edge.pulls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(300); // first retry at 500 ms after the failure
    expect(edge.pulls).toHaveLength(2);
    expect(edge.pulls[1]!.parentUrl).toBe(origin.url);
    expect(edge.carrying.has('cam')).toBe(true);
  });

  it('RELAY_DETACHED (idle past the grace) unpulls', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    await topo.placeViewer('cam', { viewerId: 'ws-2' });
    await vi.advanceTimersByTimeAsync(300);
    expect(edge.carrying.has('cam')).toBe(true);
    await topo.releaseViewer('cam', 'ws-2');
    for (let i = 0; i < 31; i++) {
      clock.advance(1000);
      await vi.advanceTimersByTimeAsync(1000); // heartbeats keep both leases alive
    }
    const r = await topo.reapExpired();
    expect(r.detached).toEqual(['cam/relay-1']);
    await flush();
    expect(edge.unpulls).toEqual(['cam']);
  });

  it('STREAM_ENDED unpulls; an origin never unpulls its own stream', async () => {
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' });
    await topo.placeViewer('cam', { viewerId: 'ws-2' });
    await vi.advanceTimersByTimeAsync(300);
    expect(edge.carrying.has('cam')).toBe(true);
    await topo.endStream('cam');
    await flush();
    expect(edge.unpulls).toEqual(['cam']);
    expect(origin.unpulls).toEqual([]);
  });

  it('RELAY_REPARENTED after a relay dies: the orphan pulls from its new parent at once', async () => {
    const sub = new ScriptedRelay('relay-2', 'http://127.0.0.1:1002');
    const subAgent = new RelayAgent({ relay: sub, topology: topo, secret: SECRET, capacity: 2, fanout: 1, leaseMs: 3000, clock });
    await subAgent.start();
    agents.push(subAgent);
    origin.emit('publish', 'cam', 's1');
    await flush();
    await topo.placeViewer('cam', { viewerId: 'ws-1' }); // origin
    await topo.placeViewer('cam', { viewerId: 'ws-2' }); // relay-1 under relay-0
    await topo.placeViewer('cam', { viewerId: 'ws-3' }); // relay-2 under relay-1
    await vi.advanceTimersByTimeAsync(300);
    expect(sub.pulls.map((p) => p.parentUrl)).toEqual([edge.url]);
    // relay-1 crashes: its agent stops heartbeating; the others keep their leases.
    await agents[1]!.stop(false);
    for (let i = 0; i < 4; i++) {
      clock.advance(1000);
      await vi.advanceTimersByTimeAsync(1000);
    }
    const r = await topo.reapExpired();
    expect(r.down).toEqual(['relay-1']);
    await flush();
    expect(sub.pulls.map((p) => p.parentUrl)).toEqual([edge.url, origin.url]); // no grace for a re-parent
  });
});
