/**
 * Hostile input on /ws and HTTP: malformed protobuf, unknown types, oversized frames, join floods,
 * frame floods, too many sessions from one IP, forged and expired tokens, unknown streams, a
 * client that disconnects mid-request. Each gets a typed error or status, is counted in
 * /metrics, and the process keeps serving a well-behaved viewer on another socket throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { mintToken, signToken } from '../src/auth/token.ts';
import { decodeEnvelope, encodeEnvelope, ErrorCode, MsgType } from '../src/proto/index.ts';
import { MemoryTopology } from '../src/topology/index.ts';
import { FakeClock } from '../src/util/clock.ts';
import { SignalingServer } from '../signaling/server.ts';
import { FakeRelay } from '../signaling/fake-relay.ts';
import { SignalingClient, type Envelope } from '../signaling/ws-client.ts';
import { seeded } from './helpers/peers.ts';

const SECRET = 'test-secret-0123456789abcdef';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
const FRAME_LIMIT = 2048;

/** A raw socket that collects every decoded Envelope and its close code. */
class Raw {
  readonly got: Envelope[] = [];
  closeCode = 0;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => this.got.push(decodeEnvelope<Envelope>(d)));
    ws.on('close', (code) => (this.closeCode = code || 1));
    ws.on('error', () => {});
  }
  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      ws.once('open', () => resolve(new Raw(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_q, r) => reject(Object.assign(new Error(`upgrade ${r.statusCode}`), { status: r.statusCode })));
    });
  }
  async waitFor(n: number, ms = 2000): Promise<Envelope[]> {
    const end = Date.now() + ms;
    while (this.got.length < n && !this.closeCode) {
      if (Date.now() > end) throw new Error(`got ${this.got.length} of ${n} frames`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.got;
  }
  async waitClosed(ms = 2000): Promise<number> {
    const end = Date.now() + ms;
    while (!this.closeCode) {
      if (Date.now() > end) throw new Error('socket not closed');
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.closeCode;
  }
  close(): void {
    this.ws.terminate();
  }
}

describe('signaling under hostile input', () => {
  const relay = new FakeRelay('relay-0');
  const clock = new FakeClock(Date.now());
  let topo: MemoryTopology;
  let sig: SignalingServer;
  let good: SignalingClient;
  const token = () => mintToken(SECRET, 'cam', 'watch', 600, Date.now());

  beforeAll(async () => {
    await relay.listen();
    topo = new MemoryTopology({ leaseMs: 60_000 });
    await topo.registerRelay({ id: 'relay-0', url: relay.url, capacity: 100, fanout: 1 });
    await topo.registerStream('cam', 'relay-0');
    sig = new SignalingServer({
      secret: SECRET,
      topology: topo,
      port: 0,
      clock,
      limits: { maxFrameBytes: FRAME_LIMIT, joinsPerSecond: 2, joinBurst: 3, framesPerSecond: 20, sessionsPerIp: 8, maxBadFrames: 5 },
    });
    await sig.listen();
    // The well-behaved viewer whose session must survive everything below.
    good = await SignalingClient.connect(`ws://127.0.0.1:${sig.port}/ws`);
    await good.join('cam', token());
    await good.offer(OFFER);
  });

  afterAll(async () => {
    await good?.close();
    await sig?.close();
    await topo?.close();
    await relay.close();
  });

  const stillServing = async (): Promise<void> => {
    const pong = await good.request({ type: MsgType.PING, ping: { t: 7 } }, 2000);
    expect(pong.type).toBe(MsgType.PONG);
    expect((await fetch(`${sig.url}/healthz`)).status).toBe(200);
  };

  it('malformed protobuf -> ERR_MALFORMED; after maxBadFrames the socket is closed (1008)', async () => {
    const r = await Raw.open(sig.port);
    r.ws.send(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff]));
    const [e] = await r.waitFor(1);
    expect(e).toMatchObject({ type: MsgType.ERROR, error: { code: ErrorCode.ERR_MALFORMED } });
    for (let i = 0; i < 4; i++) r.ws.send(Buffer.from([0x08, 0x80]));
    expect(await r.waitClosed()).toBe(1008);
    await stillServing();
  });

  it('seeded random garbage never crashes the process', async () => {
    const rand = seeded(42);
    for (let round = 0; round < 10; round++) {
      const r = await Raw.open(sig.port);
      for (let i = 0; i < 5; i++) {
        const n = 1 + Math.floor(rand() * 300);
        const b = Buffer.alloc(n);
        for (let k = 0; k < n; k++) b[k] = Math.floor(rand() * 256);
        r.ws.send(b);
      }
      // Text frames too.
      r.ws.send('{"type":"JOIN"}');
      await new Promise((res) => setTimeout(res, 10));
      r.close();
    }
    await stillServing();
    expect(sig.metrics()).toMatch(/canopy_signaling_errors_total\{code="ERR_MALFORMED",transport="ws"\} \d+/);
  });

  it('unknown message type -> ERR_UNKNOWN_TYPE with the request id', async () => {
    const r = await Raw.open(sig.port);
    // type 77 is not in MsgType: encode by hand (field 1 varint 77, field 2 varint 5).
    r.ws.send(Buffer.from([0x08, 77, 0x10, 5]));
    const [e] = await r.waitFor(1);
    expect(e).toMatchObject({ type: MsgType.ERROR, id: 5, error: { code: ErrorCode.ERR_UNKNOWN_TYPE } });
    r.ws.send(encodeEnvelope({ type: MsgType.ANSWER, id: 6, answer: { sdp: 'x' } }));
    const got = await r.waitFor(2);
    expect(got[1]).toMatchObject({ id: 6, error: { code: ErrorCode.ERR_UNKNOWN_TYPE } });
    r.close();
    await stillServing();
  });

  it('oversized frame -> ERR_TOO_LARGE; a frame beyond 4x the limit drops the connection', async () => {
    const r = await Raw.open(sig.port);
    r.ws.send(encodeEnvelope({ type: MsgType.OFFER, id: 1, offer: { sdp: 'v=0' + 'x'.repeat(FRAME_LIMIT) } }));
    const [e] = await r.waitFor(1);
    expect(e).toMatchObject({ type: MsgType.ERROR, error: { code: ErrorCode.ERR_TOO_LARGE } });
    r.ws.send(Buffer.alloc(FRAME_LIMIT * 4 + 10));
    // uWS drops the connection without a close frame (1006 at the client) rather than buffer it.
    expect([1006, 1009]).toContain(await r.waitClosed());
    await stillServing();
    expect(sig.metrics()).toMatch(/code="ERR_TOO_LARGE",transport="ws"/);
  });

  it('join flood on one socket -> ERR_RATE_LIMITED beyond the burst, refilled by time', async () => {
    const r = await Raw.open(sig.port);
    // Forged tokens so no join succeeds: each consumes a join token, then fails auth.
    for (let i = 1; i <= 6; i++) r.ws.send(encodeEnvelope({ type: MsgType.JOIN, id: i, join: { stream: 'cam', role: 'watch', token: 'x.y.z' } }));
    const got = await r.waitFor(6);
    const codes = got.map((g) => g.error?.code);
    expect(codes.slice(0, 3)).toEqual([ErrorCode.ERR_UNAUTHORIZED, ErrorCode.ERR_UNAUTHORIZED, ErrorCode.ERR_UNAUTHORIZED]);
    expect(codes.slice(3)).toEqual([ErrorCode.ERR_RATE_LIMITED, ErrorCode.ERR_RATE_LIMITED, ErrorCode.ERR_RATE_LIMITED]);
    clock.advance(1000); // 2 joins per second
    r.ws.send(encodeEnvelope({ type: MsgType.JOIN, id: 7, join: { stream: 'cam', role: 'watch', token: token() } }));
    const after = await r.waitFor(7);
    expect(after[6]).toMatchObject({ type: MsgType.JOINED, id: 7 });
    r.close();
    await stillServing();
  });

  it('frame flood -> ERR_RATE_LIMITED, then closed', async () => {
    const r = await Raw.open(sig.port);
    for (let i = 0; i < 40; i++) r.ws.send(encodeEnvelope({ type: MsgType.PING, id: i + 1, ping: { t: i } }));
    expect(await r.waitClosed()).toBe(1008);
    const codes = r.got.filter((g) => g.type === MsgType.ERROR).map((g) => g.error?.code);
    expect(codes.every((c) => c === ErrorCode.ERR_RATE_LIMITED)).toBe(true);
    expect(r.got.filter((g) => g.type === MsgType.PONG)).toHaveLength(20);
    clock.advance(2000);
    await stillServing();
  });

  it('forged, expired and wrong-role tokens, unknown stream and bad stream names are typed errors', async () => {
    const c = await SignalingClient.connect(`ws://127.0.0.1:${sig.port}/ws`);
    clock.advance(5000);
    const forged = mintToken('not-the-mesh-secret-000', 'cam', 'watch', 60, Date.now());
    await expect(c.join('cam', forged)).rejects.toMatchObject({ code: ErrorCode.ERR_UNAUTHORIZED });
    const expired = signToken({ stream: 'cam', role: 'watch', exp: Math.floor(clock.now() / 1000) - 1 }, SECRET);
    await expect(c.join('cam', expired)).rejects.toMatchObject({ code: ErrorCode.ERR_UNAUTHORIZED });
    clock.advance(5000);
    await expect(c.join('cam', mintToken(SECRET, 'cam', 'publish', 60, Date.now()))).rejects.toMatchObject({ code: ErrorCode.ERR_FORBIDDEN });
    clock.advance(5000);
    await expect(c.join('ghost', mintToken(SECRET, 'ghost', 'watch', 60, Date.now()))).rejects.toMatchObject({ code: ErrorCode.ERR_NO_STREAM });
    const r = await c.request({ type: MsgType.JOIN, join: { stream: '../../x', role: 'watch', token: token() } });
    expect(r.error?.code).toBe(ErrorCode.ERR_MALFORMED);
    await c.close();
    await stillServing();
  });

  it('sessions per IP: the upgrade beyond the limit is refused with 429 and counted', async () => {
    const extra: Raw[] = [];
    let refused: { status?: number } | undefined;
    for (let i = 0; i < 10 && !refused; i++) {
      try {
        extra.push(await Raw.open(sig.port));
      } catch (e) {
        refused = e as { status?: number };
      }
    }
    expect(refused?.status).toBe(429);
    expect(sig.sessionCount).toBe(8);
    for (const r of extra) r.close();
    await new Promise((res) => setTimeout(res, 50));
    await stillServing();
    expect(sig.metrics()).toMatch(/code="ERR_RATE_LIMITED",transport="ws"/);
  });

  it('clients that disconnect mid-request (WHEP and WS) do not crash the process', async () => {
    // A WHEP POST whose client hangs up before the (slow) relay answers.
    const r = await Raw.open(sig.port);
    r.ws.send(encodeEnvelope({ type: MsgType.JOIN, id: 1, join: { stream: 'cam', role: 'watch', token: token() } }));
    r.ws.send(encodeEnvelope({ type: MsgType.OFFER, id: 2, offer: { sdp: OFFER } }));
    r.close();
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const s = connect(sig.port, '127.0.0.1', () => {
          s.write(`POST /whep/cam?broker=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nAuthorization: Bearer ${token()}\r\nContent-Length: ${OFFER.length}\r\n\r\n${OFFER}`);
          s.destroy();
          resolve();
        });
      });
    }
    // Half a body, then gone.
    await new Promise<void>((resolve) => {
      const s = connect(sig.port, '127.0.0.1', () => {
        s.write(`POST /whip/cam HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0`);
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 20);
      });
    });
    await new Promise((res) => setTimeout(res, 100));
    await stillServing();
  });
});
