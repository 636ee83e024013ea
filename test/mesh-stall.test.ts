/**
 * Fast failure detection: a WebSocket viewer that stops receiving media sends STALLED; signaling
 * probes its relay and, when the relay does not answer, declares it down at once, so its viewers
 * move long before the relay's lease (60 s here) could run out. A STALLED report about a relay
 * that answers changes nothing, and STALLED out of place is a typed error that leaves the socket
 * working.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type Mesh } from '../src/mesh.ts';
import { MsgType, ErrorCode } from '../src/proto/index.ts';
import { SignalingClient } from '../signaling/ws-client.ts';
import { probeRelay } from '../signaling/relay-client.ts';
import net from 'node:net';
import http from 'node:http';
import { WsViewer } from '../signaling/ws-viewer.ts';
import { TestPublisher, waitUntil } from './helpers/peers.ts';

const LEASE_MS = 60_000;

describe('probeRelay: only a refused connection is proof of death', () => {
  const holeSockets: net.Socket[] = [];
  it('answers alive for any HTTP answer, refused for a closed port, silent for a peer that never answers', async () => {
    const web = http.createServer((_req, res) => res.writeHead(503).end('busy'));
    const hole = net.createServer((sock) => void holeSockets.push(sock)); // accepts, never answers
    await Promise.all([new Promise<void>((r) => web.listen(0, '127.0.0.1', r)), new Promise<void>((r) => hole.listen(0, '127.0.0.1', r))]);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    try {
      expect(await probeRelay(`http://127.0.0.1:${(web.address() as net.AddressInfo).port}`, 1000)).toBe('alive');
      expect(await probeRelay(`http://127.0.0.1:${closedPort}`, 1000)).toBe('refused');
      expect(await probeRelay(`http://127.0.0.1:${(hole.address() as net.AddressInfo).port}`, 200)).toBe('silent');
    } finally {
      web.closeAllConnections();
      await new Promise<void>((r) => web.close(() => r()));
      await new Promise<void>((r) => { hole.close(() => r()); for (const s of holeSockets) s.destroy(); });
    }
  });
});

function metric(text: string, name: string, labels = ''): number {
  const esc = (name + labels).replace(/[{}"=]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${esc} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('STALLED: viewers detect a dead relay before its lease runs out', () => {
  let mesh: Mesh;
  let pub: TestPublisher | undefined;
  const viewers: WsViewer[] = [];

  beforeAll(async () => {
    // capacity 3, fan-out 1: two viewers per relay, the third grows the tree.
    mesh = await startMesh({ port: 0, relays: 3, capacity: 3, fanout: 1, leaseMs: LEASE_MS });
    pub = await TestPublisher.start({ url: `${mesh.signalingUrl}/whip/st`, token: mesh.mint('st', 'publish'), keyframeIntervalMs: 1000 });
    await waitUntil(() => mesh.relays[0]!.streams().includes('st'), 5000, 'origin carries st');
    const until = Date.now() + 5000;
    while (!(await mesh.topology.getTree('st')) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 4; i++) viewers.push(await WsViewer.start(`ws://127.0.0.1:${mesh.signaling.port}/ws`, 'st', mesh.mint('st', 'watch')));
    expect(viewers.map((v) => v.relayId)).toEqual(['relay-0', 'relay-0', 'relay-1', 'relay-1']);
    await waitUntil(() => viewers.every((v) => v.packets > 20), 10_000, 'media at every viewer');
  });

  afterAll(async () => {
    await Promise.all(viewers.map((v) => v.close()));
    await pub?.close();
    await mesh?.close();
  });

  it('STALLED before JOIN is ERR_BAD_STATE and the socket keeps working', async () => {
    const c = await SignalingClient.connect(`ws://127.0.0.1:${mesh.signaling.port}/ws`);
    try {
      const r = await c.request({ type: MsgType.STALLED, stalled: { relayId: 'relay-0', silentMs: 1000 } }, 5000);
      expect(r.type).toBe(MsgType.ERROR);
      expect(r.error?.code).toBe(ErrorCode.ERR_BAD_STATE);
      const pong = await c.request({ type: MsgType.PING, ping: { t: 7 } }, 5000);
      expect(pong.type).toBe(MsgType.PONG);
    } finally {
      await c.close();
    }
  });

  it('a report about a relay that answers its probe moves nobody, and repeats are coalesced', async () => {
    const v = viewers[0]!;
    for (let i = 0; i < 3; i++) v.client.send({ type: MsgType.STALLED, id: 0, stalled: { relayId: v.relayId, silentMs: 900 } });
    await waitUntil(() => metric(mesh.signaling.metrics(), 'canopy_signaling_stall_reports_total', '{result="relay_alive"}') === 1, 5000, 'probe result');
    expect(metric(mesh.signaling.metrics(), 'canopy_signaling_stall_reports_total', '{result="coalesced"}')).toBe(2);
    expect(metric(mesh.signaling.metrics(), 'canopy_signaling_relays_declared_down_total')).toBe(0);
    expect((await mesh.topology.getRelay('relay-0'))!.up).toBe(true);
    expect(viewers.every((x) => x.migrations.length === 0)).toBe(true);
  });

  it('killing a relay: its viewers report the stall, it is declared down at once, they move and play again', async () => {
    for (const v of viewers) v.reportStalls(300);
    const onVictim = viewers.filter((v) => v.relayId === 'relay-1');
    const killedAt = Date.now();
    await mesh.killRelay('relay-1');
    // The lease is 60 s: only the STALLED path can move them within this bound.
    await waitUntil(() => onVictim.every((v) => v.migrations.some((m) => m.mediaAt !== undefined)), 15_000, 'media again after migrate');
    const toMigrate = onVictim.map((v) => v.migrations[0]!.at - killedAt);
    const toMedia = onVictim.map((v) => v.migrations[0]!.mediaAt! - killedAt);
    console.log(`stall detection: kill -> MIGRATE ${toMigrate.join(', ')} ms; kill -> media ${toMedia.join(', ')} ms (lease ${LEASE_MS} ms)`);
    for (const v of onVictim) {
      expect(v.migrations[0]).toMatchObject({ reason: 'relay_down' });
      expect(v.stallReports).toBeGreaterThanOrEqual(1);
      expect(v.client.closed).toBe(false);
    }
    expect((await mesh.topology.getRelay('relay-1'))!.up).toBe(false);
    expect(metric(mesh.signaling.metrics(), 'canopy_signaling_relays_declared_down_total')).toBe(1);
    // The origin's viewers kept playing and were never moved.
    expect(viewers.filter((v) => v.relayId === 'relay-0').every((v) => v.migrations.length === 0)).toBe(true);
  });
});
