/**
 * The native egress inside a relay: publisher -> relay -> viewer on 127.0.0.1 with the addon
 * loaded, so most packets leave on leased routes (src/relay/forward.ts) whose SR sender info
 * is kept in C. The viewer checks what it receives and the relay's sender reports.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RtcpSrPacket } from 'werift';
import { Relay } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { nativeSrtp } from '../src/srtp/native.ts';
import { TestPublisher, TestViewer, waitUntil } from './helpers/peers.ts';

const secret = 'srtp-native-relay-secret';
const tok = (stream: string, role: 'publish' | 'watch') => mintToken(secret, stream, role, 600, Date.now());

describe.skipIf(nativeSrtp() === null && process.env.CI !== 'true')('native egress in a relay', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  it('viewers get every packet, and the SR packet counts include the packets sent on routes', async () => {
    const relay = new Relay({ id: 'native', secret });
    await relay.listen();
    cleanup.push(() => relay.close());
    const pub = await TestPublisher.start({ url: `${relay.url}/whip/n1`, token: tok('n1', 'publish'), fps: 30, keyframeIntervalMs: 1000 });
    cleanup.push(() => pub.close());
    const viewers: TestViewer[] = [];
    const srs: { ssrc: number; packets: number; octets: number; rtpTs: number; receivedBefore: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const v = await TestViewer.start({ url: `${relay.url}/whep/n1`, token: tok('n1', 'watch') });
      cleanup.push(() => v.close());
      viewers.push(v);
    }
    const v0 = viewers[0]!;
    v0.pc.dtlsTransports[0]!.onRtcp.subscribe((p) => {
      if (!(p instanceof RtcpSrPacket)) return;
      const received = v0.packets.filter((x) => x.ssrc === p.ssrc).length;
      const info = p.senderInfo as unknown as { packetCount: number; octetCount: number; rtpTimestamp: number };
      srs.push({ ssrc: p.ssrc, packets: info.packetCount, octets: info.octetCount, rtpTs: info.rtpTimestamp, receivedBefore: received });
    });
    await waitUntil(() => srs.filter((s) => s.packets > 100).length >= 2, 10_000, 'sender reports after 100 packets');
    const video = v0.on(0);
    const vssrc = video[0]!.ssrc;
    const sr = srs.filter((s) => s.ssrc === vssrc && s.packets > 100).at(-1);
    expect(sr, 'an SR for the video SSRC').toBeDefined();
    // Same socket, in order: the packets counted by the SR arrived before it (a few may be in
    // flight on loopback, none may be missing from the count).
    expect(sr!.packets).toBeGreaterThanOrEqual(sr!.receivedBefore);
    expect(sr!.packets - sr!.receivedBefore).toBeLessThanOrEqual(3);
    expect(sr!.octets).toBeGreaterThan(sr!.packets * 100);
    pub.pause();
    await new Promise((r) => setTimeout(r, 200));
    for (const v of viewers) {
      const pkts = v.on(0);
      expect(pkts.length).toBeGreaterThan(100);
      for (const p of pkts) {
        const s = pub.sent.find((x) => x.track === p.tagTrack && x.index === p.tagIndex);
        expect(s).toBeDefined();
        expect(Buffer.compare(p.payload, s!.payload)).toBe(0);
      }
    }
    // The relay's metrics count the routed packets too (one update per fan-out).
    const out = Number(/canopy_relay_packets_out_total\{relay="native"\} (\d+)/.exec(relay.metrics())?.[1] ?? 0);
    const received = viewers.reduce((a, v) => a + v.packets.length, 0);
    expect(out).toBeGreaterThanOrEqual(received);
  });
});
