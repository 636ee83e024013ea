/**
 * The fast RTCP intake of downstream legs (src/relay/feedback.ts): the compound parser against
 * hand-built and hostile packets, and a relay whose werift viewer sends PLI and NACK through it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GenericNack, RtcpTransportLayerFeedback } from 'werift';
import { Relay } from '../src/relay/index.ts';
import { dispatchFeedback, wellFormed, type FeedbackSink } from '../src/relay/feedback.ts';
import { mintToken } from '../src/auth/token.ts';
import { mulberry32 } from '../src/util/random.ts';
import { TestPublisher, TestViewer, waitUntil } from './helpers/peers.ts';

const secret = 'feedback-secret';
const tok = (stream: string, role: 'publish' | 'watch') => mintToken(secret, stream, role, 600, Date.now());

/** One RTCP packet: header (V=2, FMT/count, PT, length) + body words. */
function rtcp(fmt: number, pt: number, body: number[]): Buffer {
  const b = Buffer.alloc(4 + body.length * 4);
  b[0] = 0x80 | fmt;
  b[1] = pt;
  b.writeUInt16BE(body.length, 2);
  body.forEach((w, i) => b.writeUInt32BE(w >>> 0, 4 + i * 4));
  return b;
}

function recorder(): FeedbackSink & { nacks: [number, number[]][]; keyframes: number[] } {
  const r = {
    nacks: [] as [number, number[]][],
    keyframes: [] as number[],
    nack: (ssrc: number, lost: number[]) => void r.nacks.push([ssrc, lost]),
    keyframe: (ssrc: number) => void r.keyframes.push(ssrc),
  };
  return r;
}

describe('downstream RTCP parsing', () => {
  it('reads generic NACKs (PID + BLP), PLIs and FIRs out of a compound with an RR and SDES', () => {
    const rr = rtcp(1, 201, [0x11, 0x22, 0, 0, 0, 0, 0]);
    const sdes = rtcp(1, 202, [0x11, 0x01036162, 0x63000000]);
    // PID 65534, BLP bits 0 and 2: 65534, 65535, 1 (wraps).
    const nack = rtcp(1, 205, [0x11, 0xaaaa, (65534 << 16) | 0b101, (100 << 16) | 0]);
    const pli = rtcp(1, 206, [0x11, 0xbbbb]);
    const fir = rtcp(4, 206, [0x11, 0, 0xcccc, 0x01000000, 0xdddd, 0x02000000]);
    const remb = rtcp(15, 206, [0x11, 0, 0x52454d42, 0x01000000, 0xaaaa]); // used by nobody here
    const twcc = rtcp(15, 205, [0x11, 0xaaaa, 0, 0]);
    const all = Buffer.concat([rr, sdes, nack, pli, fir, remb, twcc]);
    expect(wellFormed(all, all.length)).toBe(true);
    const r = recorder();
    dispatchFeedback(all, all.length, r);
    expect(r.nacks).toEqual([[0xaaaa, [65534, 65535, 1, 100]]]);
    expect(r.keyframes).toEqual([0xbbbb, 0xcccc, 0xdddd]);
  });

  it('refuses compounds it cannot account for: BYE, APP, XR, wrong version, lengths that do not add up', () => {
    const rr = rtcp(0, 201, [0x11]);
    expect(wellFormed(rr, rr.length)).toBe(true);
    for (const pt of [203, 204, 207, 192, 223]) {
      const p = Buffer.concat([rr, rtcp(0, pt, [0x11])]);
      expect(wellFormed(p, p.length), `PT ${pt}`).toBe(false);
    }
    const v1 = Buffer.from(rr);
    v1[0] = 0x40;
    expect(wellFormed(v1, v1.length)).toBe(false);
    expect(wellFormed(rr, rr.length - 1)).toBe(false); // truncated
    const long = Buffer.from(rr);
    long.writeUInt16BE(9, 2); // claims more than there is
    expect(wellFormed(long, long.length)).toBe(false);
    expect(wellFormed(Buffer.concat([rr, Buffer.alloc(3)]), rr.length + 3)).toBe(false); // trailing bytes
    expect(wellFormed(Buffer.alloc(0), 0)).toBe(false);
  });

  it('never throws or reads past the compound on 20k seeded random inputs', () => {
    const r = mulberry32(4585);
    const sink = recorder();
    for (let i = 0; i < 20_000; i++) {
      const n = (r() * 80) | 0;
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = (r() * 256) | 0;
      // Steer a share toward plausible headers so the parser's inner paths run.
      for (let o = 0; o + 4 <= n && r() < 0.7; ) {
        b[o] = 0x80 | ((r() * 32) | 0);
        b[o + 1] = [200, 201, 202, 205, 206][(r() * 5) | 0]!;
        const words = (r() * 6) | 0;
        b.writeUInt16BE(words, o + 2);
        o += 4 + words * 4;
      }
      if (wellFormed(b, n)) dispatchFeedback(b, n, sink);
    }
    for (const [, lost] of sink.nacks) for (const s of lost) expect(s).toBeLessThan(65536);
  });
});

describe('fast RTCP intake on a relay', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  const metric = (r: Relay, name: string): number => Number(new RegExp(`canopy_relay_${name}\\{relay="${r.id}"\\} (\\d+)`).exec(r.metrics())?.[1] ?? NaN);

  for (const fastPath of [true, false]) {
    it(`a viewer's PLI and NACK reach the relay ${fastPath ? 'through the fast intake' : 'through werift (fastPath off)'}`, async () => {
      const relay = new Relay({ id: `fb${fastPath ? 1 : 0}`, secret, fastPath });
      await relay.listen();
      cleanup.push(() => relay.close());
      const pub = await TestPublisher.start({ url: `${relay.url}/whip/fb`, token: tok('fb', 'publish'), fps: 25, keyframeIntervalMs: 5000 });
      cleanup.push(() => pub.close());
      const viewer = await TestViewer.start({ url: `${relay.url}/whep/fb`, token: tok('fb', 'watch') });
      cleanup.push(() => viewer.close());
      await waitUntil(() => viewer.on(0).length >= 20, 10_000, 'viewer media');

      const plis = metric(relay, 'plis_received_total');
      await viewer.requestKeyframe(0);
      await waitUntil(() => metric(relay, 'plis_received_total') > plis, 3000, 'PLI at the relay');

      // A NACK for a packet the viewer already has: the relay answers it from its ring.
      const got = viewer.on(0);
      const ssrc = got[0]!.ssrc;
      const seq = got[got.length - 5]!.seq;
      const nacks = metric(relay, 'nacks_received_total');
      const rtx = metric(relay, 'retransmits_total');
      const before = viewer.on(0).filter((p) => p.seq === seq).length;
      const recv = viewer.pc.getTransceivers()[0]!.receiver;
      const fb = new RtcpTransportLayerFeedback({ feedback: new GenericNack({ senderSsrc: 1, mediaSourceSsrc: ssrc, lost: [seq] }) });
      await recv.dtlsTransport.sendRtcp([fb]);
      await waitUntil(() => metric(relay, 'retransmits_total') > rtx, 3000, 'retransmission');
      await waitUntil(() => viewer.on(0).filter((p) => p.seq === seq).length > before, 3000, 'the packet again at the viewer');
      expect(metric(relay, 'nacks_received_total')).toBe(nacks + 1);

      if (fastPath) expect(metric(relay, 'rtcp_in_fast_total')).toBeGreaterThanOrEqual(2);
      else expect(metric(relay, 'rtcp_in_fast_total')).toBe(0);
    });
  }
});
