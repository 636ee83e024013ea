import { describe, it, expect } from 'vitest';
import { GenericNack, RtcpPacketConverter, RtcpTransportLayerFeedback } from 'werift';
import { Core, Status, RtcpType } from '../src/wasm/index.ts';
import { FakeClock } from '../src/util/clock.ts';
import { rtp, prng } from './fixtures/core/rtp.ts';

function nackCore(nack = { firstDelayMs: 10, retryMs: 100, maxRetries: 3 }) {
  const c = new Core({ maxStreams: 2, maxDownstreams: 1 });
  c.openStream(0, { clockRate: 90000, ringSize: 1024, nack, maxAgeMs: 2000 });
  return c;
}

function due(c: Core, now: number): number[] {
  const n = c.pollNacks(0, now);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(c.nackSeq(i));
  return out;
}

describe('NACK generator', () => {
  it('first request after the reorder delay, then every retryMs, at most maxRetries times', () => {
    const c = nackCore();
    c.ingestPacket(0, rtp({ seq: 65533 }), 0);
    c.ingestPacket(0, rtp({ seq: 1 }), 0); // 65534, 65535, 0 missing across the wrap
    expect(c.pktLost).toBe(3);
    expect(c.nextNackDue(0)).toBe(10);
    expect(due(c, 9)).toEqual([]);
    expect(due(c, 10)).toEqual([65534, 65535, 0]);
    expect(due(c, 50)).toEqual([]);
    c.ingestPacket(0, rtp({ seq: 65535 }), 60); // repaired
    expect(due(c, 110)).toEqual([65534, 0]);
    expect(due(c, 209)).toEqual([]);
    expect(due(c, 210)).toEqual([65534, 0]);
    expect(due(c, 310)).toEqual([]); // limit reached: abandoned
    expect(due(c, 10_000)).toEqual([]);
    expect(c.stats(0).nacksAbandoned).toBe(2);
    expect(c.nextNackDue(0)).toBe(-1);
  });

  it('a gap wider than the NACK table asks for a keyframe and tracks only the newest 512', () => {
    const c = nackCore();
    c.ingestPacket(0, rtp({ seq: 0 }), 0);
    c.ingestPacket(0, rtp({ seq: 2000 }), 0);
    expect(c.pktNeedKeyframe).toBe(true);
    const seqs = due(c, 10);
    expect(seqs.length).toBe(511); // entry for seq 2000-512 shares its slot with the arrived 2000
    expect(seqs[seqs.length - 1]).toBe(1999);
  });

  it('a reset stream forgets pending NACKs', () => {
    const c = nackCore();
    c.ingestPacket(0, rtp({ seq: 0 }), 0);
    c.ingestPacket(0, rtp({ seq: 5 }), 0);
    c.resetStream(0);
    expect(due(c, 100)).toEqual([]);
  });

  it('seeded loss + reorder: every lost packet requested, never twice within the spacing, never past the limit', () => {
    for (const seed of [1, 2, 3]) {
      const rnd = prng(seed);
      const opts = { firstDelayMs: 15, retryMs: 60, maxRetries: 4 };
      const c = nackCore(opts);
      const clock = new FakeClock(1000);
      const N = 3000;
      const start = 64000; // crosses the 16-bit wrap
      type Ev = { at: number; seq: number; kind: 'arrive' };
      const events: Ev[] = [];
      const lost = new Set<number>();
      const reorderedShort = new Set<number>();
      for (let i = 0; i < N; i++) {
        const sent = 1000 + i * 5;
        const r = rnd();
        if (r < 0.05 && i > 0 && i < N - 1) { lost.add(i); continue; }
        let at = sent;
        if (r < 0.1) { at += 1 + Math.floor(rnd() * 8); reorderedShort.add(i); }
        events.push({ at, seq: i, kind: 'arrive' });
      }
      const requests = new Map<number, number[]>();
      const arrivedAt = new Map<number, number>();
      const push = (e: Ev) => {
        let lo = 0, hi = events.length;
        while (lo < hi) { const m = (lo + hi) >> 1; if (events[m]!.at <= e.at) lo = m + 1; else hi = m; }
        events.splice(lo, 0, e);
      };
      events.sort((a, b) => a.at - b.at);
      const end = 1000 + N * 5 + 1000;
      let highest = -1;
      while (clock.now() < end) {
        // Deliver everything due by now, in time order.
        while (events.length && events[0]!.at <= clock.now()) {
          const e = events.shift()!;
          if (arrivedAt.has(e.seq)) continue;
          const code = c.ingestPacket(0, rtp({ seq: start + e.seq }), e.at);
          expect(code).toBe(Status.OK);
          arrivedAt.set(e.seq, e.at);
          highest = Math.max(highest, e.seq);
        }
        const n = c.pollNacks(0, clock.now());
        for (let k = 0; k < n; k++) {
          const s16 = c.nackSeq(k);
          // Map the 16-bit seq back to the packet index, wrap-aware, near the highest seen.
          const hi16 = (start + highest) & 0xffff;
          const delta = (((s16 - hi16) & 0xffff) << 16) >> 16;
          const idx = highest + delta;
          const list = requests.get(idx) ?? [];
          list.push(clock.now());
          requests.set(idx, list);
          // Half of the requests are answered: the retransmission arrives 20..80 ms later.
          if (rnd() < 0.5) push({ at: clock.now() + 20 + Math.floor(rnd() * 60), seq: idx, kind: 'arrive' });
        }
        clock.advance(5);
      }
      for (const i of lost) {
        const times = requests.get(i);
        expect(times, `seed ${seed}: lost packet ${i} never requested`).toBeDefined();
        const repairedAt = arrivedAt.get(i);
        if (repairedAt === undefined) expect(times!.length).toBe(opts.maxRetries);
        else expect(times!.length).toBeGreaterThanOrEqual(1);
      }
      for (const [i, times] of requests) {
        expect(lost.has(i) || !reorderedShort.has(i) || times.length === 0, `reordered ${i} requested`).toBe(true);
        expect(times.length).toBeLessThanOrEqual(opts.maxRetries);
        for (let k = 1; k < times.length; k++) expect(times[k]! - times[k - 1]!).toBeGreaterThanOrEqual(opts.retryMs);
        const arrived = arrivedAt.get(i);
        if (arrived !== undefined) for (const t of times) expect(t).toBeLessThanOrEqual(arrived);
        expect(times[0]).toBeGreaterThanOrEqual(1000 + i * 5 + opts.firstDelayMs);
      }
      // Abandoned: requested maxRetries times and still missing one retry spacing after the last.
      const abandoned = [...lost].filter((i) => {
        const t = requests.get(i)!;
        const a = arrivedAt.get(i);
        return t.length === opts.maxRetries && (a === undefined || a > t[t.length - 1]! + opts.retryMs);
      }).length;
      expect(c.stats(0).nacksAbandoned).toBe(abandoned);
      expect(lost.size).toBeGreaterThan(100);
    }
  });
});

describe('Generic NACK bytes (RFC 4585 §6.2.1)', () => {
  it('buildNack output parses with werift to the same seqs (PID+BLP packing across the wrap)', () => {
    const c = nackCore();
    const seqs = [65534, 65535, 0, 1, 17, 18, 40, 1000, 1016, 1017];
    const n = c.setSeqList(seqs);
    const len = c.buildNack(0x11111111, 0x22222222, n);
    const bytes = Buffer.from(c.view(c.rtcpOffset, len));
    const [pkt] = RtcpPacketConverter.deSerialize(bytes);
    expect(pkt).toBeInstanceOf(RtcpTransportLayerFeedback);
    const fb = (pkt as RtcpTransportLayerFeedback).feedback as GenericNack;
    expect(fb).toBeInstanceOf(GenericNack);
    expect(fb.senderSsrc).toBe(0x11111111);
    expect(fb.mediaSourceSsrc).toBe(0x22222222);
    // werift adds BLP offsets to the PID without wrapping at 2^16; compare modulo 2^16.
    expect(fb.lost.map((x) => x & 0xffff)).toEqual(seqs);
    // 65534..17 fit one FCI (offsets up to 16 from PID), 18 and 40 do not: 5 FCIs.
    expect(len).toBe(12 + 4 * 5);
    expect(c.buildNack(1, 2, 0)).toBe(Status.ERR_ARG);
  });

  it('parseNack decodes werift-built NACKs, found through the walker', () => {
    const c = nackCore();
    const lost = [100, 101, 116, 117, 65535, 3];
    const nack = new GenericNack({ senderSsrc: 5, mediaSourceSsrc: 6, lost });
    const bytes = nack.serialize();
    expect(c.walkRtcpBytes(bytes)).toBe(1);
    expect(c.itemType(0)).toBe(RtcpType.NACK);
    const n = c.parseNack(c.itemOffset(0), c.itemLength(0));
    const got: number[] = [];
    for (let i = 0; i < n; i++) got.push(c.nackSeq(i));
    expect(got.sort((a, b) => a - b)).toEqual([...lost].sort((a, b) => a - b));
  });

  it('parseNack rejects malformed items', () => {
    const c = nackCore();
    const ok = new GenericNack({ senderSsrc: 5, mediaSourceSsrc: 6, lost: [1] }).serialize();
    const off = c.writeScratch(ok);
    expect(c.parseNack(off, 12)).toBe(Status.ERR_RTCP_SHORT);
    expect(c.parseNack(off, 15)).toBe(Status.ERR_RTCP_SHORT);
    const pli = Buffer.from(ok);
    pli[1] = 206;
    expect(c.parseNack(c.writeScratch(pli), pli.length)).toBe(Status.ERR_ARG);
    const long = Buffer.from(ok);
    long[3] = 9; // declares more words than given
    expect(c.parseNack(c.writeScratch(long), long.length)).toBe(Status.ERR_RTCP_LENGTH);
    expect(c.parseNack(c.bytes.length - 8, 16)).toBe(Status.ERR_ARG);
  });
});
