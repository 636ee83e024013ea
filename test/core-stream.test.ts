import { describe, it, expect } from 'vitest';
import { mkdtempSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RtcpPacketConverter, RtcpRrPacket } from 'werift';
import { Core, Status, Codec, CoreConfigError, CoreCallError, CORE_WASM_PATH } from '../src/wasm/index.ts';
import { rtp, VP8_KEY, VP8_DELTA } from './fixtures/core/rtp.ts';

function video(core = new Core({ maxStreams: 4, maxDownstreams: 4 }), ringSize = 64) {
  core.openStream(0, { clockRate: 90000, ringSize, codecs: { 96: Codec.VP8 }, maxAgeMs: 1000 });
  return core;
}

describe('Core construction', () => {
  it('validates options with named errors', () => {
    expect(() => new Core({ maxStreams: 0 })).toThrow(CoreConfigError);
    expect(() => new Core({ outSlots: 1.5 })).toThrow(/outSlots must be an integer/);
    const c = new Core({ maxStreams: 2 });
    expect(() => c.openStream(0, { clockRate: 90000, ringSize: 100 })).toThrow(/power of two/);
    expect(() => c.openStream(0, { clockRate: 0 })).toThrow(/clockRate/);
    expect(() => c.openStream(5, { clockRate: 90000 })).toThrow(CoreCallError);
    c.openStream(1, { clockRate: 48000 });
    expect(() => c.openStream(1, { clockRate: 48000 })).toThrow(CoreCallError);
    expect(() => c.openDownstream(0, { ssrc: -1 })).toThrow(/ssrc/);
    expect(() => c.openDownstream(0, { ssrc: 1, rtxPayloadType: 97 })).toThrow(/rtxSsrc/);
  });

  it('knows where build/core.wasm is and says how to build it', async () => {
    expect(CORE_WASM_PATH.endsWith('build/core.wasm')).toBe(true);
    // A copy of the loader in a tree without build/: it must say what to run.
    const root = mkdtempSync(join(tmpdir(), 'canopy-core-load-'));
    try {
      mkdirSync(join(root, 'src', 'wasm'), { recursive: true });
      const file = join(root, 'src', 'wasm', 'load.ts');
      copyFileSync(new URL('../src/wasm/load.ts', import.meta.url), file);
      const mod = (await import(pathToFileURL(file).href)) as typeof import('../src/wasm/load.ts');
      expect(() => mod.coreModule()).toThrow(/run npm run build:wasm/);
      try { mod.coreModule(); } catch (e) { expect((e as Error).name).toBe('CoreLoadError'); }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('instances are independent (several relays in one process)', () => {
    const a = video();
    const b = video();
    expect(a.ingestPacket(0, rtp({ seq: 10 }), 0)).toBe(Status.OK);
    expect(b.ingestPacket(0, rtp({ seq: 10 }), 0)).toBe(Status.OK);
    expect(a.ingestPacket(0, rtp({ seq: 10 }), 0)).toBe(Status.DUPLICATE);
    expect(b.stats(0).received).toBe(1);
  });
});

describe('ingest', () => {
  it('stores a packet and reports its parsed fields', () => {
    const c = video();
    expect(c.ingestPacket(0, rtp({ seq: 7, ts: 1234, pt: 96, marker: true, payload: VP8_KEY }), 100)).toBe(Status.OK);
    expect(c.pktSeq).toBe(7);
    expect(c.pktExtSeq).toBe(65536 + 7);
    expect(c.pktExtTs).toBe(2 ** 32 + 1234);
    expect(c.pktKeyframe).toBe(true);
    expect(c.pktMarker).toBe(true);
    expect(c.pktSlot).toBe(0);
    expect(c.pktOffset).toBe(c.ingestRegion(0) - 1536); // written at the old head, head moved on
  });

  it('classifies duplicates, late packets and packets older than the ring', () => {
    const c = video(undefined, 16);
    for (let s = 100; s < 120; s++) expect(c.ingestPacket(0, rtp({ seq: s }), 0)).toBe(Status.OK);
    expect(c.ingestPacket(0, rtp({ seq: 119 }), 0)).toBe(Status.DUPLICATE);
    expect(c.ingestPacket(0, rtp({ seq: 110 }), 0)).toBe(Status.DUPLICATE);
    // 103 was overwritten by later packets: older than the 16-slot window.
    expect(c.ingestPacket(0, rtp({ seq: 103 }), 0)).toBe(Status.TOO_OLD);
  });

  it('late packet within the window is stored once and clears its loss', () => {
    const c = video();
    c.ingestPacket(0, rtp({ seq: 1 }), 0);
    c.ingestPacket(0, rtp({ seq: 3 }), 0);
    expect(c.pktLost).toBe(1);
    expect(c.ingestPacket(0, rtp({ seq: 2 }), 0)).toBe(Status.OK);
    expect(c.ingestPacket(0, rtp({ seq: 2 }), 0)).toBe(Status.DUPLICATE);
    expect(c.stats(0).cumulativeLost).toBe(0);
  });

  it('malformed and oversized packets return errors and store nothing', () => {
    const c = video();
    expect(c.ingestPacket(0, new Uint8Array(5), 0)).toBe(Status.ERR_SHORT);
    expect(c.ingestPacket(0, rtp({ version: 1 }), 0)).toBe(Status.ERR_VERSION);
    expect(c.ingestPacket(0, new Uint8Array(2000), 0)).toBe(Status.ERR_TOO_LONG);
    expect(c.ingest(0, 100000, 0)).toBe(Status.ERR_TOO_LONG);
    expect(c.ingest(0, -1, 0)).toBe(Status.ERR_TOO_LONG);
    expect(c.ingestPacket(3, rtp(), 0)).toBe(Status.ERR_STREAM);
    expect(c.ingestPacket(-1, rtp(), 0)).toBe(Status.ERR_STREAM);
    expect(c.stats(0).received).toBe(0);
  });

  it('a large jump is held until the next packet confirms it (RFC 3550 A.1)', () => {
    const c = video();
    c.ingestPacket(0, rtp({ seq: 100 }), 0);
    expect(c.ingestPacket(0, rtp({ seq: 20000 }), 0)).toBe(Status.SEQ_JUMP);
    expect(c.ingestPacket(0, rtp({ seq: 101 }), 0)).toBe(Status.OK); // not confirmed
    expect(c.ingestPacket(0, rtp({ seq: 30000 }), 0)).toBe(Status.SEQ_JUMP);
    expect(c.ingestPacket(0, rtp({ seq: 30001 }), 0)).toBe(Status.OK); // confirmed: restart
    const ext = c.pktExtSeq;
    expect(ext % 65536).toBe(30001);
    expect(ext).toBeGreaterThan(65536 + 101);
    expect(c.ingestPacket(0, rtp({ seq: 30002 }), 0)).toBe(Status.OK);
    expect(c.pktExtSeq).toBe(ext + 1);
    expect(c.pktLost).toBe(0);
  });

  it('unwraps 16-bit seqs across the wrap from every start value 0..65535 (and the munger output with them)', () => {
    const c = new Core({ maxStreams: 1, maxDownstreams: 1, outSlots: 1 });
    const steps = [1, 1, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 2999, 1, 1];
    let bad = 0;
    for (let start = 0; start < 65536; start++) {
      c.openStream(0, { clockRate: 90000, ringSize: 16 });
      const init = (start * 7919) & 0xffff;
      c.openDownstream(0, { ssrc: 1, initialSeq: init });
      c.setSource(0, 0);
      let k = 0;
      const step = (kk: number) => {
        const code = c.ingestPacket(0, rtp({ seq: start + kk, ts: kk * 3000 }), kk);
        if (code !== Status.OK || c.pktExtSeq !== 65536 + start + kk) bad++;
        const d = c.rewrite(0, 0, c.pktSlot, kk);
        if (d < 0 || c.outExtSeq !== 65536 + init + kk || c.outSeq !== ((init + kk) & 0xffff)) bad++;
      };
      step(0);
      // One packet reordered to before the first one unwraps below it.
      if (c.ingestPacket(0, rtp({ seq: start - 1 }), 0) !== Status.OK || c.pktExtSeq !== 65535 + start) bad++;
      for (const s of steps) { k += s; step(k); }
      c.closeDownstream(0);
      c.closeStream(0);
      if (bad) throw new Error(`start ${start}: ${bad} mismatches`);
    }
    expect(bad).toBe(0);
  });

  it('unwraps timestamps across 2^32, including a reordered packet from before the wrap', () => {
    const c = video();
    let ts = 2 ** 32 - 6000;
    let seq = 0;
    const exts: number[] = [];
    for (let i = 0; i < 6; i++) {
      c.ingestPacket(0, rtp({ seq: seq++, ts: ts >>> 0 }), i * 33);
      exts.push(c.pktExtTs);
      ts += 3000;
    }
    expect(exts).toEqual([0, 1, 2, 3, 4, 5].map((i) => 2 ** 32 + 2 ** 32 - 6000 + i * 3000));
    // A late packet from before the wrap.
    c.ingestPacket(0, rtp({ seq: 100 }), 0);
    c.ingestPacket(0, rtp({ seq: 99, ts: (2 ** 32 - 100) >>> 0 }), 0);
    expect(c.pktExtTs).toBe(2 ** 32 + 2 ** 32 - 100);
  });
});

describe('retransmission ring', () => {
  it('looks up by extended seq, misses after eviction by age or overwrite', () => {
    const c = video(undefined, 16);
    for (let s = 0; s < 10; s++) c.ingestPacket(0, rtp({ seq: s, payload: new Uint8Array([s, s]) }), s * 100);
    expect(c.lookup(0, 65536 + 5, 1000)).toBeGreaterThanOrEqual(0);
    expect(c.pktSeq).toBe(5);
    expect([...c.view(c.pktOffset + c.pktHeaderLength, c.pktPayloadLength)]).toEqual([5, 5]);
    // Arrived at 500 ms; max age 1000 ms.
    expect(c.lookup(0, 65536 + 5, 1501)).toBe(Status.NOT_FOUND);
    expect(c.lookupAny(0, 65536 + 5)).toBeGreaterThanOrEqual(0);
    expect(c.lookup(0, 65536 + 50, 0)).toBe(Status.NOT_FOUND);
    for (let s = 10; s < 30; s++) c.ingestPacket(0, rtp({ seq: s }), 1000);
    expect(c.lookupAny(0, 65536 + 5)).toBe(Status.NOT_FOUND); // overwritten
    expect(c.lookupAny(0, 65536 + 29)).toBeGreaterThanOrEqual(0);
  });

  it('a region written but not ingested (malformed) does not resurrect the old packet', () => {
    const c = video(undefined, 16);
    for (let s = 0; s < 16; s++) c.ingestPacket(0, rtp({ seq: s }), 0);
    // The next write goes to the slot of seq 0.
    expect(c.ingestPacket(0, new Uint8Array(4), 0)).toBe(Status.ERR_SHORT);
    expect(c.lookupAny(0, 65536)).toBe(Status.NOT_FOUND);
  });

  it('reuses a closed stream ring and starts clean', () => {
    const c = video();
    c.ingestPacket(0, rtp({ seq: 5 }), 0);
    const region = c.ingestRegion(0);
    c.closeStream(0);
    c.openStream(0, { clockRate: 90000, ringSize: 64 });
    expect(c.ingestRegion(0)).toBe(region - 1536);
    expect(c.lookupAny(0, 65536 + 5)).toBe(Status.NOT_FOUND);
    expect(c.ingestPacket(0, rtp({ seq: 5 }), 0)).toBe(Status.OK);
  });
});

describe('keyframe index', () => {
  it('tracks the first packet of the latest keyframe frame', () => {
    const c = video();
    expect(c.latestKeyframe(0)).toBeNull();
    // Frame ts 1000: 3 packets, first one carries the keyframe header.
    c.ingestPacket(0, rtp({ seq: 10, ts: 1000, payload: VP8_KEY }), 0);
    c.ingestPacket(0, rtp({ seq: 11, ts: 1000, payload: new Uint8Array([0, 1]) }), 0);
    c.ingestPacket(0, rtp({ seq: 12, ts: 1000, marker: true, payload: new Uint8Array([0, 1]) }), 0);
    c.ingestPacket(0, rtp({ seq: 13, ts: 4000, payload: VP8_DELTA }), 0);
    expect(c.latestKeyframe(0)).toEqual({ first: 65536 + 10, last: 65536 + 13 });
    // H264-like: keyframe flag on the second packet of a frame still points at the first.
    c.closeStream(0);
    c.openStream(0, { clockRate: 90000, ringSize: 64, codecs: { 102: Codec.H264 } });
    c.ingestPacket(0, rtp({ pt: 102, seq: 1, ts: 90, payload: new Uint8Array([0x06, 0]) }), 0); // SEI
    c.ingestPacket(0, rtp({ pt: 102, seq: 2, ts: 90, payload: new Uint8Array([0x7c, 0x85, 0]) }), 0); // FU-A IDR start
    expect(c.pktKeyframe).toBe(true);
    expect(c.latestKeyframe(0)?.first).toBe(65536 + 1);
    expect(c.lookupAny(0, 65536 + 1)).toBeGreaterThanOrEqual(0);
    expect(c.pktKeyframe).toBe(true); // flagged as keyframe start in the ring
  });

  it('forgets a keyframe whose first packet left the ring', () => {
    const c = video(undefined, 16);
    c.ingestPacket(0, rtp({ seq: 0, ts: 0, payload: VP8_KEY }), 0);
    for (let s = 1; s < 16; s++) c.ingestPacket(0, rtp({ seq: s, ts: s * 3000, payload: VP8_DELTA }), 0);
    expect(c.latestKeyframe(0)).not.toBeNull();
    c.ingestPacket(0, rtp({ seq: 16, ts: 16 * 3000, payload: VP8_DELTA }), 0);
    expect(c.latestKeyframe(0)).toBeNull();
  });

  it('ignores codecs not configured for the payload type', () => {
    const c = video();
    c.ingestPacket(0, rtp({ pt: 111, seq: 1, payload: VP8_KEY }), 0);
    expect(c.pktKeyframe).toBe(false);
  });
});

describe('RFC 3550 statistics and Receiver Report', () => {
  it('jitter follows RFC 3550 A.8 and the RR parses with werift to the same values', () => {
    const c = new Core({ maxStreams: 2 });
    c.openStream(1, { clockRate: 90000 });
    // Reference implementation of A.8 in floating point.
    let J = 0;
    let prevTransit: number | undefined;
    const arrivals: [number, number, number][] = [];
    let seq = 65530;
    for (let i = 0; i < 40; i++) {
      if (i % 7 === 3) { seq++; continue; } // lost
      const ts = (i * 3000 + 0xfffff000) >>> 0;
      const at = 5000 + i * 33.3 + ((i * 37) % 11);
      arrivals.push([seq & 0xffff, ts, at]);
      seq++;
    }
    const t0 = arrivals[0]![2];
    let tsExt = 0;
    let lastTs = arrivals[0]![1];
    for (const [s, ts, at] of arrivals) {
      expect(c.ingestPacket(1, rtp({ seq: s, ts, ssrc: 0xcafebabe }), at)).toBe(Status.OK);
      tsExt += ((ts - lastTs) | 0);
      lastTs = ts;
      const transit = ((at - t0) * 90000) / 1000 - tsExt;
      if (prevTransit !== undefined) J += (Math.abs(transit - prevTransit) - J) / 16;
      prevTransit = transit;
    }
    const st = c.stats(1);
    expect(st.received).toBe(arrivals.length);
    const expected = 40;
    expect(st.cumulativeLost).toBe(expected - arrivals.length);
    expect(st.jitter).toBeCloseTo(J, 6);

    c.recordSenderReport(1, 0x12345678, 6000);
    const len = c.buildReceiverReport(0xabcdef01, [1], 6500);
    const bytes = Buffer.from(c.view(c.rtcpOffset, len));
    const [rr] = RtcpPacketConverter.deSerialize(bytes);
    expect(rr).toBeInstanceOf(RtcpRrPacket);
    const r = rr as RtcpRrPacket;
    expect(r.ssrc).toBe(0xabcdef01);
    expect(r.reports).toHaveLength(1);
    const b = r.reports[0]!;
    expect(b.ssrc).toBe(0xcafebabe);
    expect(b.packetsLost).toBe(expected - arrivals.length);
    expect(b.fractionLost).toBe(Math.floor(((expected - arrivals.length) * 256) / expected));
    const lastSeq = arrivals[arrivals.length - 1]![0];
    expect(b.highestSequence).toBe(65536 + lastSeq); // crossed one wrap: cycles = 1
    expect(b.jitter).toBe(Math.floor(J));
    expect(b.lsr).toBe(0x12345678);
    expect(b.dlsr).toBe(Math.floor(500 * 65.536));

    // The next interval has no loss: fraction 0, cumulative unchanged.
    for (let i = 1; i <= 10; i++) c.ingestPacket(1, rtp({ seq: lastSeq + i, ts: 0, ssrc: 0xcafebabe }), 7000);
    const len2 = c.buildReceiverReport(0xabcdef01, [1], 7000);
    const b2 = (RtcpPacketConverter.deSerialize(Buffer.from(c.view(c.rtcpOffset, len2)))[0] as RtcpRrPacket).reports[0]!;
    expect(b2.fractionLost).toBe(0);
    expect(b2.packetsLost).toBe(expected - arrivals.length);
  });

  it('skips streams that are closed or have no packets; empty RR is valid', () => {
    const c = new Core({ maxStreams: 3 });
    c.openStream(0, { clockRate: 48000 });
    const len = c.buildReceiverReport(7, [0, 2], 0);
    expect(len).toBe(8);
    const rr = RtcpPacketConverter.deSerialize(Buffer.from(c.view(c.rtcpOffset, len)))[0] as RtcpRrPacket;
    expect(rr.reports).toHaveLength(0);
    expect(() => c.buildReceiverReport(7, new Array(32).fill(0), 0)).toThrow(CoreConfigError);
  });
});

describe('argument errors (every export returns a code or throws a named error, never traps)', () => {
  const c = new Core({ maxStreams: 2, maxDownstreams: 2, outSlots: 2 });
  c.openStream(0, { clockRate: 90000, ringSize: 16 });
  c.openDownstream(0, { ssrc: 1 });
  c.setSource(0, 0);
  c.ingestPacket(0, rtp({ seq: 1 }), 0);

  it('stream configuration', () => {
    expect(() => c.openStream(1, { clockRate: 90000, codecs: { 200: Codec.VP8 } })).toThrow(CoreConfigError);
    expect(() => c.openStream(1, { clockRate: 90000, codecs: { 96: 9 as never } })).toThrow(CoreCallError);
    expect(() => c.openStream(1, { clockRate: 90000, extensions: { absCaptureTime: 300 } })).toThrow(CoreCallError);
    expect(() => c.openStream(1, { clockRate: 90000, nack: { retryMs: 0 } })).toThrow(CoreConfigError);
    expect(() => c.openStream(1, { clockRate: 90000, nack: { maxRetries: 0 } })).toThrow(CoreConfigError);
    expect(() => c.openStream(1, { clockRate: 90000, maxAgeMs: -1 })).toThrow(CoreConfigError);
    // A failed open leaves the slot closed and reusable.
    c.openStream(1, { clockRate: 90000 });
    c.closeStream(1);
    expect(() => c.closeStream(1)).toThrow(CoreCallError);
    expect(() => c.resetStream(1)).toThrow(CoreCallError);
    expect(() => c.stats(1)).toThrow(CoreCallError);
  });

  it('stream calls on a closed or out-of-range stream', () => {
    for (const s of [1, 2, -1, 1 << 30]) {
      expect(c.ingestRegion(s)).toBe(Status.ERR_STREAM);
      expect(c.ingest(s, 20, 0)).toBe(Status.ERR_STREAM);
      expect(c.lookup(s, 65537, 0)).toBe(Status.ERR_STREAM);
      expect(c.lookupAny(s, 65537)).toBe(Status.ERR_STREAM);
      expect(c.slotInfo(s, 0)).toBe(Status.ERR_STREAM);
      expect(c.latestKeyframe(s)).toBeNull();
      expect(c.pollNacks(s, 0)).toBe(Status.ERR_STREAM);
      expect(c.nextNackDue(s)).toBe(-1);
      expect(c.recordSenderReport(s, 1, 0)).toBe(Status.ERR_STREAM);
      expect(c.fanout(s, 0, 0)).toBe(Status.ERR_STREAM);
    }
    expect(c.slotInfo(0, 16)).toBe(Status.ERR_ARG);
    expect(c.slotInfo(0, -1)).toBe(Status.ERR_ARG);
    expect(c.slotInfo(0, 5)).toBe(Status.NOT_FOUND);
    expect(c.fanout(0, 16, 0)).toBe(Status.ERR_ARG);
    expect(c.fanout(0, 5, 0)).toBe(Status.NOT_FOUND);
    expect(c.fanout(0, 0, 0, 1)).toBe(Status.ERR_ARG); // cursor not attached to this stream
  });

  it('downstream calls on a closed or out-of-range downstream', () => {
    for (const d of [1, 2, -1]) {
      expect(c.rewrite(d, 0, 0, 0)).toBe(Status.ERR_DOWNSTREAM);
      expect(c.retransmit(d, 1, 0)).toBe(Status.ERR_DOWNSTREAM);
      expect(() => c.setSource(d, 0)).toThrow(CoreCallError);
      expect(() => c.switchSource(d)).toThrow(CoreCallError);
      expect(() => c.exportState(d)).toThrow(CoreCallError);
      expect(() => c.importState(d, new Uint8Array(128))).toThrow(CoreCallError);
      expect(() => c.closeDownstream(d)).toThrow(CoreCallError);
    }
    expect(() => c.setSource(0, 1)).toThrow(CoreCallError); // stream 1 not open
    expect(() => c.openDownstream(5, { ssrc: 1 })).toThrow(CoreCallError);
    expect(() => c.openDownstream(1, { ssrc: 1, initialSeq: 70000 })).toThrow(CoreConfigError);
  });

  it('NACK/RR builders and parsers', () => {
    expect(c.buildNack(1, 2, 0)).toBe(Status.ERR_ARG);
    expect(c.buildNack(1, 2, 1025)).toBe(Status.ERR_ARG);
    expect(c.parseNack(-1, 16)).toBe(Status.ERR_ARG);
    expect(c.walkRtcp(0, 8)).toBe(Status.ERR_ARG);
    expect(c.walkRtcpBytes(new Uint8Array(5000))).toBe(Status.ERR_TOO_LONG);
    expect(c.parseBytes(new Uint8Array(5000))).toBe(Status.ERR_TOO_LONG);
    expect(c.writeScratch(new Uint8Array(5000))).toBe(-1);
  });

  it('a large backward jump is held like a forward one (RFC 3550 A.1) and confirmed by the next packet', () => {
    const k = new Core({ maxStreams: 1 });
    k.openStream(0, { clockRate: 90000, ringSize: 16 });
    k.ingestPacket(0, rtp({ seq: 40000 }), 0);
    expect(k.ingestPacket(0, rtp({ seq: 39000 }), 0)).toBe(Status.TOO_OLD);
    expect(k.ingestPacket(0, rtp({ seq: 39001 }), 0)).toBe(Status.OK);
    expect(k.pktExtSeq % 65536).toBe(39001);
    expect(k.pktExtSeq).toBeGreaterThan(65536 + 40000);
  });
});
