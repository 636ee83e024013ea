/**
 * The embedded mesh (startMesh: MemoryTopology, signaling and four in-process relays) with real
 * werift peers: a publisher over WHIP through signaling's 307, WebSocket viewers that fill the
 * origin so the tree grows onto the edges, a plain WHEP viewer through the redirect; then a relay
 * is killed (its lease runs out) and every viewer that was on it gets MIGRATE and media again,
 * and a drained relay's viewers move without losing their session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type Mesh } from '../src/mesh.ts';
import { WsViewer } from '../signaling/ws-viewer.ts';
import { TestPublisher, TestViewer, waitUntil } from './helpers/peers.ts';

describe('embedded mesh', () => {
  let mesh: Mesh;
  let pub: TestPublisher | undefined;
  const viewers: WsViewer[] = [];
  let whep: TestViewer | undefined;

  beforeAll(async () => {
    // capacity 3, fan-out 1: each relay takes 2 viewers of one stream; the third grows the tree.
    mesh = await startMesh({ port: 0, relays: 4, capacity: 3, fanout: 1, leaseMs: 1200 });
  });

  afterAll(async () => {
    await Promise.all(viewers.map((v) => v.close()));
    await whep?.close();
    await pub?.close();
    await mesh?.close();
  });

  it('publishes through the 307 and registers the stream at the origin (relay-0)', async () => {
    pub = await TestPublisher.start({ url: `${mesh.signalingUrl}/whip/demo`, token: mesh.mint('demo', 'publish'), keyframeIntervalMs: 1000 });
    await waitUntil(() => mesh.relays[0]!.streams().includes('demo'), 5000, 'origin carries demo');
    const until = Date.now() + 5000;
    while (!(await mesh.topology.getTree('demo')) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect((await mesh.topology.getTree('demo'))?.originId).toBe('relay-0');
  });

  it('WebSocket viewers fill the origin, then the tree grows; every viewer gets media', async () => {
    for (let i = 0; i < 4; i++) {
      viewers.push(await WsViewer.start(`ws://127.0.0.1:${mesh.signaling.port}/ws`, 'demo', mesh.mint('demo', 'watch')));
    }
    expect(viewers.map((v) => v.relayId)).toEqual(['relay-0', 'relay-0', 'relay-1', 'relay-1']);
    await waitUntil(() => viewers.every((v) => v.packets > 20), 10_000, 'media at every viewer');
    const tree = (await mesh.topology.getTree('demo'))!;
    expect(tree.nodes.map((n) => [n.relayId, n.parentId, n.viewers])).toEqual([
      ['relay-0', null, 2],
      ['relay-1', 'relay-0', 2],
    ]);
  });

  it('a plain WHEP client plays through the 307 and its slot is released when it leaves', async () => {
    whep = await TestViewer.start({ url: `${mesh.signalingUrl}/whep/demo`, token: mesh.mint('demo', 'watch') });
    await waitUntil(() => whep!.count > 10, 10_000, 'WHEP media');
    expect((await mesh.topology.getTree('demo'))!.viewers).toBe(5);
    await whep.close();
    whep = undefined;
    const until = Date.now() + 5000;
    while ((await mesh.topology.getTree('demo'))!.viewers !== 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect((await mesh.topology.getTree('demo'))!.viewers).toBe(4);
  });

  it('killing a relay moves its viewers (MIGRATE) and they receive media again', async () => {
    const onVictim = viewers.filter((v) => v.relayId === 'relay-1');
    expect(onVictim.length).toBe(2);
    const killedAt = Date.now();
    await mesh.killRelay('relay-1');
    await waitUntil(() => onVictim.every((v) => v.migrations.some((m) => m.mediaAt !== undefined)), 15_000, 'media again after migrate');
    const figures = onVictim.map((v) => v.migrations[0]!.mediaAt! - killedAt);
    console.log(`embedded mesh: kill -> media per viewer (ms, lease 1200): ${figures.join(', ')}`);
    for (const v of onVictim) {
      expect(v.migrations[0]).toMatchObject({ reason: 'relay_down', to: 'relay-2' });
      expect(v.client.closed).toBe(false);
    }
    expect(Math.max(...figures)).toBeLessThan(10_000);
    // Viewers on the origin were never moved.
    expect(viewers.filter((v) => v.relayId === 'relay-0').every((v) => v.migrations.length === 0)).toBe(true);
  });

  it('draining a relay moves its viewers on the same session and they receive media again', async () => {
    const onDrained = viewers.filter((v) => v.relayId === 'relay-2');
    expect(onDrained.length).toBe(2);
    const sessions = onDrained.map((v) => v.session);
    const admin = mesh.mint('*', 'admin');
    const drainedAt = Date.now();
    const res = await fetch(`${mesh.signalingUrl}/admin/relays/relay-2/drain`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    expect((await mesh.topology.getRelay('relay-2'))!.draining).toBe(true);
    await waitUntil(() => onDrained.every((v) => v.migrations.length === 2 && v.migrations[1]!.mediaAt !== undefined), 15_000, 'media after drain');
    console.log(`embedded mesh: drain -> media per viewer (ms): ${onDrained.map((v) => v.migrations[1]!.mediaAt! - drainedAt).join(', ')}`);
    for (const v of onDrained) {
      expect(v.migrations[1]).toMatchObject({ reason: 'drain', to: 'relay-3' });
      expect(v.client.closed).toBe(false);
    }
    expect(onDrained.map((v) => v.session)).toEqual(sessions);
    // The drained relay's viewer sessions were closed once the viewers had moved.
    await waitUntil(() => mesh.relays[2]!.viewerCount('demo') === 0, 5000, 'drained relay empty');
  });
});
