/**
 * Host-only gathering (src/relay/werift-ice.ts): a peer configured by hostOnlyIce gathers no STUN
 * candidate and asks no STUN server, a peer given real ICE servers keeps werift's gathering, and
 * two host-only peers still connect and carry data.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import { hostOnlyIce } from '../src/relay/media.ts';
import { NO_STUN_URL, skipSentinelStun } from '../src/relay/werift-ice.ts';
import { connectDataChannelPair, waitUntil } from './helpers/peers.ts';

interface IceConnectionLike {
  stunServer?: [string, number];
  localCandidates: { type: string; host: string }[];
  protocols: { transport?: { socket?: { address(): { address: string; family: string } } } }[];
}

function iceConnectionOf(pc: RTCPeerConnection): IceConnectionLike {
  const t = pc.iceTransports[0] as unknown as { connection: IceConnectionLike } | undefined;
  if (!t) throw new Error('no ICE transport yet');
  return t.connection;
}

async function gathered(pc: RTCPeerConnection): Promise<void> {
  await waitUntil(() => pc.iceGatheringState === 'complete', 5000, 'ICE gathering to complete');
}

describe('host-only ICE gathering', () => {
  const pcs: RTCPeerConnection[] = [];
  afterEach(async () => {
    await Promise.all(pcs.splice(0).map((pc) => pc.close().catch(() => undefined)));
  });

  it('skipSentinelStun is installed (CANOPY_WERIFT_SKIP_STUN unset)', () => {
    expect(skipSentinelStun()).toBe(true);
  });

  it('hostOnlyIce(127.0.0.1): no STUN server, one host candidate, 127.0.0.1, on a socket bound to 127.0.0.1', async () => {
    const pc = new RTCPeerConnection(hostOnlyIce('127.0.0.1'));
    pcs.push(pc);
    pc.createDataChannel('x');
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const conn = iceConnectionOf(pc);
    expect(conn.stunServer).toBeUndefined();
    expect(conn.localCandidates.map((c) => [c.type, c.host])).toEqual([['host', '127.0.0.1']]);
    expect(pc.localDescription!.sdp).not.toMatch(/typ srflx/);
    // Not werift's default 0.0.0.0: a peer given an address listens on that address only.
    const sockets = conn.protocols.map((p) => p.transport?.socket?.address());
    expect(sockets).toEqual([expect.objectContaining({ address: '127.0.0.1', family: 'IPv4' })]);
  });

  it('a peer given its own STUN server keeps it', () => {
    // A STUN server on loopback that nobody answers; only the configuration is checked here.
    const pc = new RTCPeerConnection(hostOnlyIce('127.0.0.1', [{ urls: 'stun:127.0.0.1:3478' }]));
    pcs.push(pc);
    pc.createDataChannel('x');
    // werift builds the ICE connection with the transceiver/channel; read its derived server.
    return pc.createOffer().then(() => {
      const conn = iceConnectionOf(pc);
      expect(conn.stunServer).toEqual(['127.0.0.1', 3478]);
    });
  });

  it('the sentinel is only recognised exactly (another loopback port keeps STUN)', () => {
    expect(NO_STUN_URL).toBe('stun:127.0.0.1:9');
    const pc = new RTCPeerConnection({ iceServers: [{ urls: 'stun:127.0.0.1:19' }] });
    pcs.push(pc);
    pc.createDataChannel('x');
    return pc.createOffer().then(() => {
      expect(iceConnectionOf(pc).stunServer).toEqual(['127.0.0.1', 19]);
    });
  });

  it('two host-only peers connect and exchange a message', async () => {
    const { a, b, send, received } = await connectDataChannelPair(hostOnlyIce('127.0.0.1'));
    pcs.push(a, b);
    send('hello');
    await waitUntil(() => received.length > 0, 5000, 'the message');
    expect(received).toEqual(['hello']);
  });
});
