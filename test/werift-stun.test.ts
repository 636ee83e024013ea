/**
 * ICE upkeep without werift's objects (src/relay/werift-stun.ts): keepalive answers that
 * werift's own STUN client accepts (integrity and fingerprint checked with the right password),
 * every request the fast path must not take still reaching werift, and RFC 7675 consent checks
 * driven by an injected clock: sent on schedule, refreshed only by authentic responses, expired
 * after 30 s of silence exactly as werift would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Message, parseMessage, type RTCPeerConnection } from 'werift';
import { hostOnlyIce } from '../src/relay/media.ts';
import { CONSENT_INTERVAL_MS, CONSENT_TIMEOUT_MS, FastIce, bindingSuccess } from '../src/relay/werift-stun.ts';
import { mulberry32 } from '../src/util/random.ts';
import { FakeClock } from '../src/util/clock.ts';
import { Relay } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { connectDataChannelPair, TestPublisher, TestViewer, waitUntil } from './helpers/peers.ts';

const BINDING = 1;
const REQUEST = 0;

interface Conn {
  protocols: {
    request(m: Message, addr: [string, number], key?: Buffer, retries?: number): Promise<[Message, [string, number]]>;
    datagramReceived(data: Buffer, addr: [string, number]): void;
  }[];
  nominated?: { remoteCandidate: { host: string; port: number }; protocol: unknown; requestsReceived: number };
  localUsername: string;
  remoteUsername: string;
  localPassword: string;
  remotePassword: string;
  iceControlling: boolean;
  tieBreaker: bigint;
  state: string;
  consentFresh: boolean;
  queryConsentHandle?: unknown;
  queryConsent(): void;
  canSendApplicationData(): boolean;
}
const connOf = (pc: RTCPeerConnection): Conn => (pc.dtlsTransports[0]!.iceTransport as unknown as { connection: Conn }).connection;

/** A Binding request from `from` to `to`'s nominated address, as werift's consent check builds it. */
function request(from: Conn, to: Conn, opts: { useCandidate?: boolean; role?: 'ours' | 'theirs'; username?: string } = {}): Message {
  const m = new Message(BINDING, REQUEST);
  m.setAttribute('USERNAME', opts.username ?? `${to.localUsername}:${from.localUsername}`);
  m.setAttribute('PRIORITY', 1853824767);
  const controlling = opts.role === 'theirs' ? to.iceControlling : from.iceControlling;
  m.setAttribute(controlling ? 'ICE-CONTROLLING' : 'ICE-CONTROLLED', from.tieBreaker);
  if (opts.useCandidate) m.setAttribute('USE-CANDIDATE', null);
  return m;
}

describe('fast keepalive answers', () => {
  const pcs: RTCPeerConnection[] = [];
  afterEach(async () => {
    await Promise.all(pcs.splice(0).map((p) => p.close().catch(() => undefined)));
  });

  it('builds a response werift parses with integrity and fingerprint verified (IPv4 and IPv6)', () => {
    const key = Buffer.from('a-password-of-22-chars', 'utf8');
    const req = request({ localUsername: 'them', iceControlling: true, tieBreaker: 7n } as Conn, { localUsername: 'us', iceControlling: false } as Conn).addMessageIntegrity(key).addFingerprint();
    const cases: [[string, number], string][] = [
      [['127.0.0.1', 50_000], '127.0.0.1'],
      [['2001:db8::1:2', 443], '2001:db8::1:2'],
      [['::1', 1], '::1'],
      [['::ffff:10.1.2.3', 9], '::ffff:a01:203'], // the same 16 bytes, as werift prints them
    ];
    for (const [addr, printed] of cases) {
      const res = bindingSuccess(req.bytes, addr, key);
      const parsed = parseMessage(res, key); // undefined unless MESSAGE-INTEGRITY and FINGERPRINT verify
      expect(parsed, addr[0]).toBeTruthy();
      expect(parsed!.messageClass).toBe(256);
      expect(parsed!.transactionId.equals(req.transactionId)).toBe(true);
      expect(parsed!.getAttributeValue('XOR-MAPPED-ADDRESS')).toEqual([printed, addr[1]]);
      expect(parseMessage(res, Buffer.from('wrong'))).toBeFalsy();
    }
    expect(() => bindingSuccess(req.bytes, ['1.2.3', 1], key)).toThrow(/IPv4/);
    expect(() => bindingSuccess(req.bytes, ['1::2::3', 1], key)).toThrow(/IPv6/);
  });

  it("answers the peer's keepalives on the selected pair; werift's client accepts them; everything else goes to werift", async () => {
    const { a, b } = await connectDataChannelPair(hostOnlyIce('127.0.0.1'));
    pcs.push(a, b);
    const ca = connOf(a);
    const cb = connOf(b);
    let answered = 0;
    const ice = FastIce.install(a.dtlsTransports[0]!, { now: () => 0, onAnswered: () => answered++ });
    expect(ice).toBeDefined();
    const to = cb.nominated!.remoteCandidate;
    const addr: [string, number] = [to.host, to.port];
    const proto = cb.nominated!.protocol as Conn['protocols'][number];
    const send = (m: Message) => proto.request(m, addr, Buffer.from(ca.localPassword, 'utf8'), 1);

    // A keepalive: answered here, and werift's client verified the response with A's password.
    const before = ca.nominated!.requestsReceived;
    const [res] = await send(request(cb, ca));
    const seen = ca.nominated!.remoteCandidate; // B's address as A sees it
    expect(res.getAttributeValue('XOR-MAPPED-ADDRESS')).toEqual([seen.host, seen.port]);
    expect(answered).toBe(1);
    expect(ca.nominated!.requestsReceived).toBe(before + 1);

    // USE-CANDIDATE (a nomination) and an unknown local ufrag go to werift, which still answers the first.
    await send(request(cb, ca, { useCandidate: true }));
    expect(answered).toBe(1);
    await send(request(cb, ca, { username: `someone-else:${cb.localUsername}` })).catch(() => undefined);
    expect(answered).toBe(1);

    // A wrong MESSAGE-INTEGRITY is never answered here (werift decides about it).
    await proto.request(request(cb, ca), addr, Buffer.from('not-the-password', 'utf8'), 1).catch(() => undefined);
    expect(answered).toBe(1);

    // After close, werift answers keepalives itself again.
    ice!.close();
    await send(request(cb, ca));
    expect(answered).toBe(1);
  });

  it('sends answers and consent checks through the send option, and on the socket when send declines', async () => {
    const { a, b } = await connectDataChannelPair(hostOnlyIce('127.0.0.1'));
    pcs.push(a, b);
    const ca = connOf(a);
    const cb = connOf(b);
    const ap = ca.nominated!.protocol as Conn['protocols'][number] & { transport: { socket: { send(m: Buffer, port: number, host: string): void } } };
    const peer = ca.nominated!.remoteCandidate;
    const handed: Buffer[] = [];
    let accept = true;
    let now = 5_000_000;
    const ice = FastIce.install(a.dtlsTransports[0]!, {
      now: () => now,
      random: mulberry32(1),
      send: (m) => {
        handed.push(Buffer.from(m));
        if (!accept) return false;
        ap.transport.socket.send(m, peer.port, peer.host); // what the egress's native sendto does
        return true;
      },
    })!;
    const to = cb.nominated!.remoteCandidate;
    const proto = cb.nominated!.protocol as Conn['protocols'][number];
    const ask = () => proto.request(request(cb, ca), [to.host, to.port], Buffer.from(ca.localPassword, 'utf8'), 1);

    const [res] = await ask(); // werift's client verified the answer that went through send
    expect(handed.length).toBe(1);
    expect(handed[0]!.readUInt16BE(0)).toBe(0x0101);
    expect(handed[0]!.subarray(8, 20).equals(res.transactionId)).toBe(true);
    accept = false;
    const [res2] = await ask(); // declined: the same answer on werift's socket
    expect(handed.length).toBe(2);
    expect(handed[1]!.subarray(8, 20).equals(res2.transactionId)).toBe(true);

    // A consent check goes through send too, and B's answer refreshes consent.
    accept = true;
    ice.tick(now);
    ice.tick((now += CONSENT_INTERVAL_MS * 1.2 + 1));
    expect(ice.checks).toBe(1);
    expect(handed.length).toBe(3);
    expect(handed[2]!.readUInt16BE(0)).toBe(0x0001);
    for (let i = 0; i < 100 && ice.responses < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ice.responses).toBe(1);
    ice.close();
  });

  it('runs RFC 7675 consent from the tick: checks on schedule, only authentic responses refresh, 30 s of silence fails the connection', async () => {
    const { a, b } = await connectDataChannelPair(hostOnlyIce('127.0.0.1'));
    pcs.push(a, b);
    const ca = connOf(a);
    const cb = connOf(b);
    let now = 1_000_000;
    const ice = FastIce.install(a.dtlsTransports[0]!, { now: () => now, random: mulberry32(7675) })!;
    // werift's own loop is stopped, and werift restarting consent (ICE restart) restarts ours.
    expect(ca.queryConsentHandle).toBeUndefined();
    ca.queryConsent();
    expect(ca.queryConsentHandle).toBeUndefined();
    expect(ca.consentFresh).toBe(true);

    // Capture our checks as B receives them (B's werift still answers them).
    const seen: Buffer[] = [];
    const bp = cb.nominated!.protocol as Conn['protocols'][number];
    const orig = bp.datagramReceived.bind(bp);
    bp.datagramReceived = (data, addr) => {
      if (data.length >= 20 && data.readUInt16BE(0) === 0x0001) seen.push(Buffer.from(data));
      orig(data, addr);
    };

    // No check before the randomized interval (4-6 s), one right after it.
    ice.tick(now);
    ice.tick((now += CONSENT_INTERVAL_MS * 0.8 - 1));
    expect(ice.checks).toBe(0);
    ice.tick((now += CONSENT_INTERVAL_MS * 0.4 + 2));
    expect(ice.checks).toBe(1);
    for (let i = 0; i < 100 && ice.responses < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ice.responses).toBe(1); // B's werift answered; the integrity check passed
    expect(seen.length).toBe(1);
    const req = parseMessage(seen[0]!, Buffer.from(ca.remotePassword, 'utf8')); // werift verifies our request
    expect(req).toBeTruthy();
    expect(req!.getAttributeValue('USERNAME')).toBe(`${ca.remoteUsername}:${ca.localUsername}`);

    // A forged response to the next check (wrong password) refreshes nothing; the right one does.
    const addr = [cb.nominated!.remoteCandidate.host, cb.nominated!.remoteCandidate.port] as [string, number];
    bp.datagramReceived = (data, from) => void (data.readUInt16BE(0) === 0x0001 ? seen.push(Buffer.from(data)) : orig(data, from)); // B stops answering
    ice.tick((now += CONSENT_INTERVAL_MS * 1.2 + 1));
    expect(ice.checks).toBe(2);
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const ap = ca.nominated!.protocol as Conn['protocols'][number];
    const aAddr = [ca.nominated!.remoteCandidate.host, ca.nominated!.remoteCandidate.port] as [string, number];
    ap.datagramReceived(bindingSuccess(seen[1]!, addr, Buffer.from('forged-password')), aAddr);
    expect(ice.responses).toBe(1);
    ap.datagramReceived(bindingSuccess(seen[1]!, addr, Buffer.from(ca.remotePassword, 'utf8')), aAddr);
    expect(ice.responses).toBe(2);
    const freshAt = now;

    // Silence: still fresh just before 30 s after the last response, failed at 30 s.
    while (now < freshAt + CONSENT_TIMEOUT_MS - 20) ice.tick((now += 20));
    expect(ca.consentFresh).toBe(true);
    expect(ca.state).not.toBe('failed');
    ice.tick((now = freshAt + CONSENT_TIMEOUT_MS));
    expect(ca.consentFresh).toBe(false);
    expect(ca.state).toBe('failed');
    expect(ca.canSendApplicationData()).toBe(false);
    ice.close();
  });
});

describe('ICE upkeep on a relay', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  it("answers a viewer's keepalive and runs consent checks the viewer answers, through the egress", async () => {
    const secret = 'upkeep-secret';
    const clock = new FakeClock(Date.now());
    const relay = new Relay({ id: 'upkeep', secret, clock });
    await relay.listen();
    cleanup.push(() => relay.close());
    const tok = (role: 'publish' | 'watch') => mintToken(secret, 'up', role, 600, clock.now());
    const pub = await TestPublisher.start({ url: `${relay.url}/whip/up`, token: tok('publish'), fps: 25 });
    cleanup.push(() => pub.close());
    const viewer = await TestViewer.start({ url: `${relay.url}/whep/up`, token: tok('watch') });
    cleanup.push(() => viewer.close());
    await waitUntil(() => viewer.on(0).length >= 10, 10_000, 'viewer media');
    const metric = (name: string): number => Number(new RegExp(`canopy_relay_${name}\\{relay="upkeep"\\} (\\d+)`).exec(relay.metrics())?.[1] ?? NaN);

    // A keepalive from the viewer, as werift's consent check builds it: answered by the relay's
    // fast path, and werift's client accepts the answer (integrity checked with the relay's password).
    const cv = connOf(viewer.pc);
    const m = new Message(BINDING, REQUEST);
    m.setAttribute('USERNAME', `${cv.remoteUsername}:${cv.localUsername}`);
    m.setAttribute('PRIORITY', 1853824767);
    m.setAttribute(cv.iceControlling ? 'ICE-CONTROLLING' : 'ICE-CONTROLLED', cv.tieBreaker);
    const to = cv.nominated!.remoteCandidate;
    const answered = metric('stun_keepalives_fast_total');
    const [res] = await cv.protocols[0]!.request(m, [to.host, to.port], Buffer.from(cv.remotePassword, 'utf8'), 1);
    expect(res.getAttributeValue('XOR-MAPPED-ADDRESS')).toBeTruthy();
    expect(metric('stun_keepalives_fast_total')).toBe(answered + 1);

    // Consent: the relay's clock moves past the randomized interval (4-6 s); one check goes out
    // and the viewer's werift answers it.
    const checks = metric('consent_checks_total');
    clock.advance(100);
    await new Promise((r) => setTimeout(r, 60)); // a relay tick sees the clock (its first sets the schedule)
    clock.advance(6100);
    await waitUntil(() => metric('consent_checks_total') > checks, 3000, 'a consent check');
    await waitUntil(() => metric('consent_responses_total') >= 1, 3000, 'the viewer answering it');
    expect(cv.state).toBe('connected');
  });
});
