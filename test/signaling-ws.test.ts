/**
 * The /ws protocol against a MemoryTopology (fake clock for leases) and scripted relays: JOIN,
 * brokered OFFER/ANSWER, PING, LEAVE, and MIGRATE when the viewer's relay dies (lease expiry,
 * repair, VIEWER_MOVE) or is drained, with the re-offer brokered to the new relay on the same
 * socket and the old relay session deleted.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mintToken } from '../src/auth/token.ts';
import { ErrorCode, MsgType } from '../src/proto/index.ts';
import { MemoryTopology } from '../src/topology/index.ts';
import { FakeClock } from '../src/util/clock.ts';
import { SignalingServer } from '../signaling/server.ts';
import { FakeRelay, ANSWER } from '../signaling/fake-relay.ts';
import { ProtocolError, SignalingClient, type Envelope } from '../signaling/ws-client.ts';

const SECRET = 'test-secret-0123456789abcdef';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
const watch = (stream = 'cam') => mintToken(SECRET, stream, 'watch', 600, Date.now());

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('signaling WebSocket protocol', () => {
  const relays = ['relay-0', 'relay-1', 'relay-2'].map((id) => new FakeRelay(id));
  let clock: FakeClock;
  let topo: MemoryTopology;
  let sig: SignalingServer;
  const clients: SignalingClient[] = [];
  const open = async (): Promise<SignalingClient> => {
    const c = await SignalingClient.connect(`ws://127.0.0.1:${sig.port}/ws`);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    for (const r of relays) await r.listen();
  });

  beforeEach(async () => {
    for (const r of relays) r.seen.length = 0;
    clock = new FakeClock(1_000_000);
    topo = new MemoryTopology({ clock, leaseMs: 1000 });
    // relay-0: room for 1 viewer (capacity 2, fan-out reserve 1); relay-1 and relay-2: 4 each.
    await topo.registerRelay({ id: 'relay-0', url: relays[0]!.url, capacity: 2, fanout: 1 });
    await topo.registerRelay({ id: 'relay-1', url: relays[1]!.url, capacity: 5, fanout: 1 });
    await topo.registerRelay({ id: 'relay-2', url: relays[2]!.url, capacity: 5, fanout: 1 });
    await topo.registerStream('cam', 'relay-0');
    sig = new SignalingServer({ secret: SECRET, topology: topo, port: 0, moveGraceMs: 5000 });
    await sig.listen();
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await sig.close();
    await topo.close();
  });

  afterAll(async () => {
    await Promise.all(relays.map((r) => r.close()));
  });

  it('JOIN -> JOINED with the placement, OFFER -> ANSWER brokered to that relay with the viewer id', async () => {
    const c = await open();
    const joined = await c.join('cam', watch());
    expect(joined.session).toMatch(/[0-9a-f-]{36}/);
    expect(joined.placement).toMatchObject({ relayId: 'relay-0', relayUrl: relays[0]!.url });
    const ans = await c.offer(OFFER);
    expect(ans.sdp).toBe(ANSWER);
    expect(ans.session).toMatch(/^sess-/);
    const seen = relays[0]!.seen.find((s) => s.method === 'POST' && s.url.startsWith('/whep/cam'))!;
    expect(seen.body.toString()).toBe(OFFER);
    expect(new URL(seen.url, 'http://x').searchParams.get('viewer')).toMatch(/^ws-/);
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
  });

  it('PING gets PONG with the same id and t; LEAVE ends the session and the socket may JOIN again', async () => {
    const c = await open();
    const pong = await c.request({ type: MsgType.PING, ping: { t: 12345 } });
    expect(pong).toMatchObject({ type: MsgType.PONG, pong: { t: 12345 } });
    await c.join('cam', watch());
    await c.offer(OFFER);
    c.send({ type: MsgType.LEAVE, id: 99, leave: { reason: 'bye' } });
    await until(() => relays[0]!.seen.some((s) => s.method === 'DELETE'), 2000, 'relay session deleted');
    await new Promise((r) => setTimeout(r, 20));
    expect((await topo.getTree('cam'))!.viewers).toBe(0);
    await expect(c.offer(OFFER)).rejects.toMatchObject({ code: ErrorCode.ERR_BAD_STATE });
    expect(c.closed).toBe(false);
    await c.join('cam', watch());
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
    await c.close();
    await until(() => sig.sessionCount === 0, 2000, 'session gone');
    await new Promise((r) => setTimeout(r, 20));
    expect((await topo.getTree('cam'))!.viewers).toBe(0);
  });

  it('closing the socket without LEAVE frees the slot too', async () => {
    const c = await open();
    await c.join('cam', watch());
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
    c.ws.terminate();
    await until(() => sig.sessionCount === 0, 2000, 'session gone');
    await new Promise((r) => setTimeout(r, 20));
    expect((await topo.getTree('cam'))!.viewers).toBe(0);
  });

  it('typed errors: unknown stream, bad token, offer before join, second join, no capacity', async () => {
    const c = await open();
    await expect(c.offer(OFFER)).rejects.toMatchObject({ code: ErrorCode.ERR_BAD_STATE });
    await expect(c.join('nope', watch('nope'))).rejects.toMatchObject({ code: ErrorCode.ERR_NO_STREAM });
    await expect(c.join('cam', 'garbage')).rejects.toMatchObject({ code: ErrorCode.ERR_UNAUTHORIZED });
    await expect(c.join('cam', watch('other'))).rejects.toMatchObject({ code: ErrorCode.ERR_FORBIDDEN });
    await expect(c.join('cam', mintToken(SECRET, 'cam', 'watch', -5, Date.now()))).rejects.toMatchObject({ code: ErrorCode.ERR_UNAUTHORIZED });
    await c.join('cam', watch());
    await expect(c.join('cam', watch())).rejects.toMatchObject({ code: ErrorCode.ERR_BAD_STATE });
    // 1 + 4 + 4 viewer slots in all (relay-1 and -2 keep one slot for a child each).
    const more: SignalingClient[] = [];
    for (let i = 0; i < 8; i++) {
      const m = await open();
      await m.join('cam', watch());
      more.push(m);
    }
    const full = await open();
    const err = await full.join('cam', watch()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(ErrorCode.ERR_NO_CAPACITY);
    expect(sig.metrics()).toMatch(/canopy_signaling_errors_total\{code="ERR_NO_CAPACITY",transport="ws"\} 1/);
  });

  it('a failed pull for a new edge does not fail the JOIN (the relay agent retries the pull)', async () => {
    const a = await open();
    await a.join('cam', watch()); // fills relay-0
    relays[1]!.failControl = true;
    try {
      const b = await open();
      const j = await b.join('cam', watch());
      expect(j.placement.relayId).toBe('relay-1');
      expect((await topo.getTree('cam'))!.viewers).toBe(2);
    } finally {
      relays[1]!.failControl = false;
    }
  });

  it('a relay that refuses the offer gives ERR_RELAY_FAILED and the session stays usable', async () => {
    const c = await open();
    await c.join('cam', watch());
    relays[0]!.failOffer = 500;
    await expect(c.offer(OFFER)).rejects.toMatchObject({ code: ErrorCode.ERR_RELAY_FAILED });
    relays[0]!.failOffer = 0;
    expect((await c.offer(OFFER)).sdp).toBe(ANSWER);
  });

  it('relay dies (lease expiry): its viewers get MIGRATE to a new relay and re-offer on the same socket', async () => {
    const a = await open();
    const b = await open();
    const pushes: Envelope[] = [];
    b.onPush = (e) => pushes.push(e);
    expect((await a.join('cam', watch())).placement.relayId).toBe('relay-0');
    const jb = await b.join('cam', watch());
    expect(jb.placement.relayId).toBe('relay-1');
    expect(relays[1]!.seen.some((s) => s.url === '/control')).toBe(true); // told to pull
    await b.offer(OFFER);
    // relay-1 stops heartbeating; the others keep their leases.
    clock.advance(1500);
    await topo.heartbeat('relay-0', 0);
    await topo.heartbeat('relay-2', 0);
    const reaped = await topo.reapExpired();
    expect(reaped.down).toEqual(['relay-1']);
    await until(() => pushes.length > 0, 2000, 'MIGRATE');
    expect(pushes[0]).toMatchObject({ type: MsgType.MIGRATE, id: 0, migrate: { reason: 'relay_down', placement: { relayId: 'relay-2' } } });
    const ans = await b.offer(OFFER);
    expect(ans.sdp).toBe(ANSWER);
    expect(relays[2]!.seen.some((s) => s.method === 'POST' && s.url.startsWith('/whep/cam'))).toBe(true);
    await until(() => relays[1]!.seen.some((s) => s.method === 'DELETE'), 2000, 'old relay session deleted');
    expect(sig.metrics()).toMatch(/canopy_signaling_migrations_total\{reason="relay_down"\} 1/);
    // The viewer on the surviving relay was not disturbed.
    expect((await a.request({ type: MsgType.PING, ping: { t: 1 } })).type).toBe(MsgType.PONG);
  });

  it('drain: viewers get MIGRATE (reason drain) and keep their session; the old relay session is deleted after the re-offer', async () => {
    const a = await open();
    await a.join('cam', watch());
    const b = await open();
    const pushes: Envelope[] = [];
    b.onPush = (e) => pushes.push(e);
    const jb = await b.join('cam', watch());
    expect(jb.placement.relayId).toBe('relay-1');
    await b.offer(OFFER);
    const admin = mintToken(SECRET, '*', 'admin', 60, Date.now());
    const res = await fetch(`${sig.url}/admin/relays/relay-1/drain`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    await until(() => pushes.length > 0, 2000, 'MIGRATE');
    expect(pushes[0]).toMatchObject({ type: MsgType.MIGRATE, migrate: { reason: 'drain', placement: { relayId: 'relay-2' } } });
    expect(relays[1]!.seen.some((s) => s.method === 'DELETE')).toBe(false); // still playing there
    await b.offer(OFFER);
    await until(() => relays[1]!.seen.some((s) => s.method === 'DELETE'), 2000, 'old relay session deleted');
    expect(b.closed).toBe(false);
    const tree = (await topo.getTree('cam'))!;
    expect(tree.viewers).toBe(2);
    expect(tree.nodes.find((n) => n.relayId === 'relay-1')?.viewers ?? 0).toBe(0);
  });

  it('stream ended: viewers get ERROR ERR_NO_STREAM (id 0) and may JOIN again on the same socket', async () => {
    const c = await open();
    const pushes: Envelope[] = [];
    c.onPush = (e) => pushes.push(e);
    await c.join('cam', watch());
    await c.offer(OFFER);
    await topo.endStream('cam');
    await until(() => pushes.length > 0, 2000, 'ERROR push');
    expect(pushes[0]).toMatchObject({ type: MsgType.ERROR, id: 0, error: { code: ErrorCode.ERR_NO_STREAM } });
    await until(() => relays[0]!.seen.some((s) => s.method === 'DELETE'), 2000, 'relay session deleted');
    await topo.registerStream('cam', 'relay-0');
    const again = await c.join('cam', watch());
    expect(again.placement.relayId).toBe('relay-0');
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
  });
});
