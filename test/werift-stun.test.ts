/**
 * Keepalive Binding requests answered without werift (src/relay/werift-stun.ts): responses that
 * werift's own STUN client accepts (integrity and fingerprint checked with the right password),
 * and every request the fast path must not take still reaches werift.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Message, parseMessage, type RTCPeerConnection } from 'werift';
import { hostOnlyIce } from '../src/relay/media.ts';
import { answerKeepalives, bindingSuccess } from '../src/relay/werift-stun.ts';
import { connectDataChannelPair } from './helpers/peers.ts';

const BINDING = 1;
const REQUEST = 0;

interface Conn {
  protocols: { request(m: Message, addr: [string, number], key?: Buffer, retries?: number): Promise<[Message, [string, number]]> }[];
  nominated?: { remoteCandidate: { host: string; port: number }; protocol: unknown; requestsReceived: number };
  localUsername: string;
  remoteUsername: string;
  localPassword: string;
  remotePassword: string;
  iceControlling: boolean;
  tieBreaker: bigint;
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
    const undo = answerKeepalives(a.dtlsTransports[0]!, () => answered++);
    expect(undo).toBeTypeOf('function');
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

    // After undo, werift answers keepalives itself again.
    undo!();
    await send(request(cb, ca));
    expect(answered).toBe(1);
  });
});
