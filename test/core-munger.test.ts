import { describe, it, expect } from 'vitest';
import { RtpPacket } from 'werift';
import { Core, Status, Codec, Decision, DropReason, CoreConfigError } from '../src/wasm/index.ts';
import { rtp, VP8_KEY, VP8_DELTA } from './fixtures/core/rtp.ts';

function setup(opts: { requireKeyframe?: boolean; rtx?: boolean; outSlots?: number } = {}) {
  const c = new Core({ maxStreams: 4, maxDownstreams: 16, outSlots: opts.outSlots ?? 8 });
  c.openStream(0, { clockRate: 90000, ringSize: 256, codecs: { 96: Codec.VP8 } });
  c.openStream(1, { clockRate: 90000, ringSize: 256, codecs: { 96: Codec.VP8 } });
  c.openDownstream(0, {
    ssrc: 0xaabbccdd, payloadType: 100, initialSeq: 1000, initialTs: 50000,
    requireKeyframe: opts.requireKeyframe,
    ...(opts.rtx ? { rtxSsrc: 0x01020304, rtxPayloadType: 101 } : {}),
  });
  c.setSource(0, 0);
  return c;
}

/** Ingest into stream `s` and rewrite for downstream 0; returns [decision, outSeq]. */
function feed(c: Core, s: number, spec: Parameters<typeof rtp>[0], now = 0): [number, number] {
  const code = c.ingestPacket(s, rtp(spec), now);
  if (code !== Status.OK) throw new Error(`ingest ${code}`);
  const d = c.rewrite(0, s, c.pktSlot, now, c.outSlot(0));
  return [d, c.outSeq];
}

describe('rewrite: classification', () => {
  it('in order, gap, out of order, duplicate, too old', () => {
    const c = setup();
    expect(feed(c, 0, { seq: 10 })).toEqual([Decision.IN_ORDER, 1000]);
    expect(feed(c, 0, { seq: 11 })).toEqual([Decision.IN_ORDER, 1001]);
    expect(feed(c, 0, { seq: 14 })).toEqual([Decision.GAP, 1004]);
    expect(c.gap).toBe(2);
    expect(feed(c, 0, { seq: 12 })).toEqual([Decision.OUT_OF_ORDER, 1002]);
    const slot12 = c.lookupAny(0, 65536 + 12);
    expect(c.rewrite(0, 0, slot12, 0, c.outSlot(0))).toBe(Decision.DUPLICATE);
    expect(feed(c, 0, { seq: 13 })).toEqual([Decision.OUT_OF_ORDER, 1003]);
    for (let s = 15; s < 100; s++) feed(c, 0, { seq: s });
    expect(c.rewrite(0, 0, c.lookupAny(0, 65536 + 60), 0, c.outSlot(0))).toBe(Decision.DUPLICATE);
  });

  it('drops packets older than the 64-packet reorder window', () => {
    const c = setup();
    feed(c, 0, { seq: 1 });
    c.ingestPacket(0, rtp({ seq: 100 }), 0);
    c.rewrite(0, 0, c.pktSlot, 0, c.outSlot(0));
    expect(feed(c, 0, { seq: 30 })[0]).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.TOO_OLD);
    expect(feed(c, 0, { seq: 40 })[0]).toBe(Decision.OUT_OF_ORDER);
  });

  it('drops packets of a stream that is not the source', () => {
    const c = setup();
    c.ingestPacket(1, rtp({ seq: 1 }), 0);
    expect(c.rewrite(0, 1, c.pktSlot, 0, c.outSlot(0))).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.NO_SOURCE);
  });

  it('waits for a keyframe when required', () => {
    const c = setup({ requireKeyframe: true });
    expect(feed(c, 0, { seq: 1, ts: 0, payload: VP8_DELTA })[0]).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.WAIT_KEYFRAME);
    expect(feed(c, 0, { seq: 2, ts: 3000, payload: VP8_KEY })).toEqual([Decision.IN_ORDER, 1000]);
    expect(feed(c, 0, { seq: 3, ts: 6000, payload: VP8_DELTA })).toEqual([Decision.IN_ORDER, 1001]);
  });

  it('rejects bad arguments with error codes', () => {
    const c = setup();
    c.ingestPacket(0, rtp({ seq: 1 }), 0);
    expect(c.rewrite(9, 0, 0, 0)).toBe(Status.ERR_DOWNSTREAM);
    expect(c.rewrite(0, 3, 0, 0)).toBe(Status.ERR_STREAM);
    expect(c.rewrite(0, 0, 9999, 0)).toBe(Status.ERR_ARG);
    expect(c.rewrite(0, 0, 5, 0)).toBe(Status.NOT_FOUND); // empty slot
    expect(c.rewrite(0, 0, 0, 0, 12345)).toBe(Status.ERR_ARG); // not in the output region
    expect(c.rewrite(0, 0, 0, 0, c.outSlot(8))).toBe(Status.ERR_ARG); // past the last slot
    expect(() => c.openDownstream(0, { ssrc: 1 })).toThrow(/status -12/);
    expect(() => c.openDownstream(1, { ssrc: 1, payloadType: 128 })).toThrow(CoreConfigError);
  });
});

describe('rewrite: output bytes (cross-checked with werift RtpPacket)', () => {
  it('rewrites SSRC, PT, seq, ts; keeps marker, CSRCs, extensions and payload', () => {
    const c = setup();
    const payload = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);
    const abs = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]);
    const input = rtp({
      seq: 65535, ts: 0xfffffff0, ssrc: 0x55667788, pt: 96, marker: true, csrcs: [42], payload,
      ext: { profile: 0xbede, elements: [{ id: 3, data: abs }] },
    });
    c.ingestPacket(0, input, 0);
    const slot = c.pktSlot;
    expect(c.rewrite(0, 0, slot, 0, c.outSlot(2))).toBe(Decision.IN_ORDER);
    expect(c.outOffset).toBe(c.outSlot(2));
    const out = RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength)));
    expect(out.header.ssrc).toBe(0xaabbccdd);
    expect(out.header.payloadType).toBe(100);
    expect(out.header.sequenceNumber).toBe(1000);
    expect(out.header.timestamp).toBe(50000);
    expect(out.header.marker).toBe(true);
    expect(out.header.csrc).toEqual([42]);
    expect(out.header.extensions).toEqual([{ id: 3, payload: Buffer.from(abs) }]);
    expect(Buffer.compare(out.payload, Buffer.from(payload))).toBe(0);
    // The ring copy is untouched by a copying rewrite.
    c.slotInfo(0, slot);
    expect(RtpPacket.deSerialize(Buffer.from(c.view(c.pktOffset, c.pktLength))).header.ssrc).toBe(0x55667788);

    // Next packet across both wraps: out seq +1, ts advanced by the same delta.
    c.ingestPacket(0, rtp({ seq: 0, ts: 0x00000010, ssrc: 0x55667788, payload }), 0);
    expect(c.rewrite(0, 0, c.pktSlot, 0)).toBe(Decision.IN_ORDER); // in place
    expect(c.outOffset).toBe(c.pktOffset);
    const out2 = RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength)));
    expect(out2.header.sequenceNumber).toBe(1001);
    expect(out2.header.timestamp).toBe(50000 + 0x20);
    expect(out2.header.marker).toBe(false);
    expect(Buffer.compare(out2.payload, Buffer.from(payload))).toBe(0);
  });

  it('keeps the input payload type when none is configured', () => {
    const c = setup();
    c.openDownstream(1, { ssrc: 5 });
    c.setSource(1, 0);
    c.ingestPacket(0, rtp({ seq: 1, pt: 111 }), 0);
    c.rewrite(1, 0, c.pktSlot, 0, c.outSlot(0));
    expect(RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength))).header.payloadType).toBe(111);
  });
});

describe('source switch (failover, re-parent)', () => {
  it('output continues across a switch to another stream', () => {
    const c = setup();
    for (let i = 0; i < 5; i++) feed(c, 0, { seq: 40000 + i, ts: 7777 + i * 3000 }, i * 33);
    expect(c.outSeq).toBe(1004);
    const lastTs = c.outTs;
    c.setSource(0, 1);
    // New upstream: unrelated seq, ts and ssrc; arrives 100 ms after the last packet.
    const [d, seq] = feed(c, 1, { seq: 12, ts: 999999, ssrc: 0x99 }, 4 * 33 + 100);
    expect(d).toBe(Decision.IN_ORDER);
    expect(c.switched).toBe(true);
    expect(seq).toBe(1005);
    expect(c.outTs).toBe(lastTs + 9000);
    expect(feed(c, 1, { seq: 13, ts: 999999 + 3000, ssrc: 0x99 }, 300)).toEqual([Decision.IN_ORDER, 1006]);
    expect(c.outTs).toBe(lastTs + 12000);
    // A late packet of the new source from before the switch point is dropped.
    expect(feed(c, 1, { seq: 11, ts: 999999 - 3000 }, 300)[0]).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.BEFORE_SWITCH);
    // Packets of the old source are no longer forwarded.
    c.ingestPacket(0, rtp({ seq: 40005 }), 300);
    expect(c.rewrite(0, 0, c.pktSlot, 300, c.outSlot(0))).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.NO_SOURCE);
  });

  it('resetStream (new upstream on the same slot) continues the output; closeStream detaches', () => {
    const c = setup();
    for (let i = 0; i < 3; i++) feed(c, 0, { seq: 500 + i, ts: i * 3000 }, i * 33);
    c.resetStream(0);
    expect(c.lookupAny(0, 65536 + 500)).toBe(Status.NOT_FOUND);
    expect(feed(c, 0, { seq: 60000, ts: 123 }, 100)).toEqual([Decision.IN_ORDER, 1003]);
    expect(c.switched).toBe(true);
    c.closeStream(0);
    c.openStream(0, { clockRate: 90000, ringSize: 256 });
    c.ingestPacket(0, rtp({ seq: 1 }), 200);
    expect(c.rewrite(0, 0, c.pktSlot, 200, c.outSlot(0))).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.NO_SOURCE);
    c.setSource(0, 0);
    expect(c.rewrite(0, 0, c.pktSlot, 200, c.outSlot(0))).toBe(Decision.IN_ORDER);
    expect(c.outSeq).toBe(1004);
  });

  it('switchSource starts a new epoch on the same stream; setSource(d, -1) detaches', () => {
    const c = setup();
    feed(c, 0, { seq: 100, ts: 1000 }, 0);
    feed(c, 0, { seq: 101, ts: 4000 }, 33);
    c.switchSource(0);
    // The upstream jumped (e.g. a new parent reusing the slot after a confirmed restart).
    expect(feed(c, 0, { seq: 102, ts: 900000 }, 66)).toEqual([Decision.IN_ORDER, 1002]);
    expect(c.switched).toBe(true);
    expect(c.outTs).toBe(50000 + 3000 + 2970);
    c.setSource(0, -1);
    c.ingestPacket(0, rtp({ seq: 103 }), 99);
    expect(c.rewrite(0, 0, c.pktSlot, 99, c.outSlot(0))).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.NO_SOURCE);
    expect(c.fanout(0, c.pktSlot, 99)).toBe(0);
  });

  it('a switch with requireKeyframe resumes on the new source keyframe', () => {
    const c = setup({ requireKeyframe: true });
    feed(c, 0, { seq: 1, ts: 0, payload: VP8_KEY });
    feed(c, 0, { seq: 2, ts: 3000, payload: VP8_DELTA });
    c.setSource(0, 1);
    expect(feed(c, 1, { seq: 9, ts: 0, payload: VP8_DELTA }, 50)[0]).toBe(Decision.DROP);
    expect(c.dropReason).toBe(DropReason.WAIT_KEYFRAME);
    expect(feed(c, 1, { seq: 10, ts: 3000, payload: VP8_KEY }, 66)).toEqual([Decision.IN_ORDER, 1002]);
  });

  it('exportState/importState moves a downstream to another Core without a discontinuity', () => {
    const a = setup();
    for (let i = 0; i < 4; i++) feed(a, 0, { seq: 10 + i, ts: i * 3000 }, i * 33);
    const state = a.exportState(0);
    expect(state.length).toBe(128);
    const b = setup();
    b.importState(0, state);
    const [d, seq] = feed(b, 0, { seq: 30000, ts: 5 }, 3 * 33 + 33);
    expect(d).toBe(Decision.IN_ORDER);
    expect(seq).toBe(1004);
    expect(b.outTs).toBe(50000 + 9000 + 2970);
    const out = RtpPacket.deSerialize(Buffer.from(b.view(b.outOffset, b.outLength)));
    expect(out.header.ssrc).toBe(0xaabbccdd);
    const bad = new Uint8Array(state);
    bad[0] ^= 0xff;
    expect(() => b.importState(0, bad)).toThrow(/status -30/);
    expect(() => b.importState(0, new Uint8Array(3))).toThrow(CoreConfigError);
  });
});

describe('fanout', () => {
  it('rewrites one packet for every attached downstream, with a cursor past outSlots', () => {
    const c = new Core({ maxStreams: 2, maxDownstreams: 16, outSlots: 3 });
    c.openStream(0, { clockRate: 48000, ringSize: 64 });
    for (let d = 0; d < 8; d++) {
      c.openDownstream(d, { ssrc: 0x1000 + d, payloadType: 111, initialSeq: d * 1000, initialTs: d });
      c.setSource(d, 0);
    }
    const payload = new Uint8Array(160).map((_, i) => i);
    c.ingestPacket(0, rtp({ seq: 77, ts: 960, payload }), 0);
    const seen = new Map<number, RtpPacket>();
    let cursor = -1;
    do {
      const n = c.fanout(0, c.pktSlot, 0, cursor);
      expect(n).toBeLessThanOrEqual(3);
      for (let i = 0; i < n; i++) {
        expect(c.fanoutDecision(i)).toBe(Decision.IN_ORDER);
        seen.set(c.fanoutDownstream(i), RtpPacket.deSerialize(Buffer.from(c.view(c.fanoutOffset(i), c.fanoutLength(i)))));
      }
      cursor = c.fanoutCursor;
    } while (cursor !== -1);
    expect([...seen.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const [d, p] of seen) {
      expect(p.header.ssrc).toBe(0x1000 + d);
      expect(p.header.sequenceNumber).toBe(d * 1000);
      expect(p.header.timestamp).toBe(d);
      expect(Buffer.compare(p.payload, Buffer.from(payload))).toBe(0);
    }
    c.closeDownstream(3);
    c.ingestPacket(0, rtp({ seq: 78 }), 0);
    let total = 0;
    cursor = -1;
    do { total += c.fanout(0, c.pktSlot, 0, cursor); cursor = c.fanoutCursor; } while (cursor !== -1);
    expect(total).toBe(7);
  });

  it('reports drop reasons and how many downstreams wait for a keyframe', () => {
    const c = new Core({ maxStreams: 1, maxDownstreams: 4, outSlots: 4 });
    c.openStream(0, { clockRate: 90000, ringSize: 64, codecs: { 96: Codec.VP8 } });
    for (let d = 0; d < 3; d++) {
      c.openDownstream(d, { ssrc: d + 1, requireKeyframe: d < 2 });
      c.setSource(d, 0);
    }
    c.ingestPacket(0, rtp({ seq: 1, payload: VP8_DELTA }), 0);
    expect(c.fanout(0, c.pktSlot, 0)).toBe(3);
    expect(c.fanoutWaitingKeyframe).toBe(2);
    const byDs = new Map<number, [number, number, number]>();
    for (let i = 0; i < 3; i++) byDs.set(c.fanoutDownstream(i), [c.fanoutDecision(i), c.fanoutDropReason(i), c.fanoutOffset(i)]);
    expect(byDs.get(0)).toEqual([Decision.DROP, DropReason.WAIT_KEYFRAME, 0]);
    expect(byDs.get(1)).toEqual([Decision.DROP, DropReason.WAIT_KEYFRAME, 0]);
    expect(byDs.get(2)![0]).toBe(Decision.IN_ORDER);
    expect(byDs.get(2)![1]).toBe(DropReason.NONE);
    c.ingestPacket(0, rtp({ seq: 2, payload: VP8_KEY }), 0);
    c.fanout(0, c.pktSlot, 0);
    expect(c.fanoutWaitingKeyframe).toBe(0);
    for (let i = 0; i < 3; i++) expect(c.fanoutDecision(i)).toBe(Decision.IN_ORDER);
  });
});

describe('retransmit', () => {
  it('answers a NACK for an output seq with the rewritten original', () => {
    const c = setup();
    const payload = new Uint8Array([1, 2, 3, 4, 5]);
    for (let i = 0; i < 10; i++) feed(c, 0, { seq: 65530 + i, ts: i * 3000, payload }, i * 10);
    expect(c.retransmit(0, 1003, 100)).toBe(Decision.RETRANSMIT);
    const p = RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength)));
    expect(p.header.sequenceNumber).toBe(1003);
    expect(p.header.timestamp).toBe(50000 + 9000);
    expect(p.header.ssrc).toBe(0xaabbccdd);
    expect(Buffer.compare(p.payload, Buffer.from(payload))).toBe(0);
    expect(c.retransmit(0, 1010, 100)).toBe(Status.NOT_FOUND); // not sent yet
    expect(c.retransmit(0, 999, 100)).toBe(Status.NOT_FOUND); // before the first
    expect(c.retransmit(0, 1003, 30 + 3001)).toBe(Status.NOT_FOUND); // older than maxAgeMs
  });

  it('wraps in RTX (RFC 4588): own SSRC/PT/seq, OSN first, padding removed', () => {
    const c = setup({ rtx: true });
    const payload = new Uint8Array([9, 9, 9]);
    feed(c, 0, { seq: 1, ts: 0, payload, padding: 4, ext: { profile: 0xbede, elements: [{ id: 1, data: new Uint8Array([7]) }] } });
    feed(c, 0, { seq: 2, ts: 3000, payload });
    expect(c.retransmit(0, 1000, 10)).toBe(Decision.RETRANSMIT);
    const p1 = RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength)));
    expect(p1.header.ssrc).toBe(0x01020304);
    expect(p1.header.payloadType).toBe(101);
    expect(p1.header.padding).toBe(false);
    expect(p1.header.timestamp).toBe(50000);
    expect(p1.header.extensions).toEqual([{ id: 1, payload: Buffer.from([7]) }]);
    expect([...p1.payload]).toEqual([1000 >> 8, 1000 & 0xff, 9, 9, 9]);
    expect(c.retransmit(0, 1001, 10)).toBe(Decision.RETRANSMIT);
    const p2 = RtpPacket.deSerialize(Buffer.from(c.view(c.outOffset, c.outLength)));
    expect(p2.header.sequenceNumber).toBe((p1.header.sequenceNumber + 1) & 0xffff);
    expect(p2.payload.readUInt16BE(0)).toBe(1001);
  });

  it('does not map NACKs from before a switch onto the new source', () => {
    const c = setup();
    for (let i = 0; i < 3; i++) feed(c, 0, { seq: i }, 0);
    c.setSource(0, 1);
    feed(c, 1, { seq: 500 }, 10);
    expect(c.retransmit(0, 1001, 10)).toBe(Status.NOT_FOUND);
    expect(c.retransmit(0, 1003, 10)).toBe(Decision.RETRANSMIT);
    expect(c.retransmit(0, 1003, 10, 77)).toBe(Status.ERR_ARG);
  });
});
