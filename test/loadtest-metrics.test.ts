import { describe, expect, it } from 'vitest';
import {
  FrameTracker,
  FreezeDetector,
  JitterEstimator,
  LossTracker,
  MeasurementError,
  Reservoir,
  SeqUnwrapper,
  glassToGlassMs,
  histogram,
  lossPct,
  ntpQ32ToUnixMs,
  parseAbsCaptureTime,
  parseVp8Descriptor,
  percentile,
  q32ToMs,
  seqDiff16,
  serializeAbsCaptureTime,
  unixMsToNtpQ32,
} from '../loadtest/metrics.ts';

describe('abs-capture-time', () => {
  it.each([
    // [unix ms, NTP Q32.32]
    [0, 2208988800n << 32n],
    [1000, 2208988801n << 32n],
    [500, (2208988800n << 32n) | 0x80000000n],
    [1_700_000_000_250, ((2208988800n + 1_700_000_000n) << 32n) | 0x40000000n],
  ])('unixMsToNtpQ32(%d) and back', (ms, ntp) => {
    expect(unixMsToNtpQ32(ms)).toBe(ntp);
    expect(ntpQ32ToUnixMs(ntp)).toBeCloseTo(ms, 6);
  });

  it('parses the 8-byte form', () => {
    const b = Buffer.from('83aa7e80' + '80000000', 'hex'); // 2208988800.5 s = 1970-01-01T00:00:00.5
    expect(parseAbsCaptureTime(b)).toEqual({ captureNtp: 0x83aa7e8080000000n });
    expect(glassToGlassMs(parseAbsCaptureTime(b)!, 540)).toBeCloseTo(40, 6);
  });

  it('parses the 16-byte form and applies the signed clock offset', () => {
    const ext = { captureNtp: unixMsToNtpQ32(10_000), clockOffset: -(1n << 31n) }; // -0.5 s
    const b = serializeAbsCaptureTime(ext);
    expect(b.length).toBe(16);
    const parsed = parseAbsCaptureTime(b)!;
    expect(parsed.clockOffset).toBe(-(1n << 31n));
    // capture in our clock = 10_000 - 500 = 9_500 ms
    expect(glassToGlassMs(parsed, 9_530)).toBeCloseTo(30, 6);
  });

  it.each([[0], [7], [9], [15], [17]])('rejects a %d-byte payload without throwing', (n) => {
    expect(parseAbsCaptureTime(new Uint8Array(n))).toBeUndefined();
  });

  it.each([
    [0n, 0],
    [1n << 32n, 1000],
    [-(1n << 32n), -1000],
    [-(1n << 30n), -250],
    [(3n << 32n) | (1n << 31n), 3500],
  ])('q32ToMs(%s) = %d', (q, ms) => {
    expect(q32ToMs(q)).toBeCloseTo(ms, 6);
  });
});

describe('sequence numbers', () => {
  it.each([
    [1, 0, 1],
    [0, 1, -1],
    [0, 65535, 1],
    [65535, 0, -1],
    [32767, 0, 32767],
    [32768, 0, -32768],
  ])('seqDiff16(%d, %d) = %d', (a, b, d) => {
    expect(seqDiff16(a, b)).toBe(d);
  });

  it('unwraps across the 16-bit boundary from every start value', () => {
    for (let start = 0; start < 65536; start += 257) {
      const u = new SeqUnwrapper();
      const first = u.unwrap(start);
      let prev = first;
      for (let i = 1; i < 70000; i += 997) {
        const ext = u.unwrap((start + i) & 0xffff);
        expect(ext - first).toBe(i);
        expect(ext).toBeGreaterThan(prev);
        prev = ext;
      }
    }
  });
});

describe('LossTracker', () => {
  const run = (seqs: number[]) => {
    const t = new LossTracker();
    const v = seqs.map((s) => t.onPacket(s));
    return { t, v };
  };
  it.each([
    { name: 'no loss', seqs: [10, 11, 12, 13], expected: 4, lost: 0, late: 0, dups: 0 },
    { name: 'one gap', seqs: [10, 11, 13, 14], expected: 5, lost: 1, late: 0, dups: 0 },
    { name: 'gap filled by retransmission', seqs: [10, 11, 13, 14, 12], expected: 5, lost: 0, late: 1, dups: 0 },
    { name: 'duplicate does not hide a loss', seqs: [10, 11, 11, 13], expected: 4, lost: 1, late: 0, dups: 1 },
    { name: 'across wrap', seqs: [65534, 65535, 0, 2], expected: 5, lost: 1, late: 0, dups: 0 },
    { name: 'reordered across wrap', seqs: [65535, 1, 0], expected: 3, lost: 0, late: 1, dups: 0 },
  ])('$name', ({ seqs, expected, lost, late, dups }) => {
    const { t } = run(seqs);
    expect(t.expected).toBe(expected);
    expect(t.lost).toBe(lost);
    expect(t.late).toBe(late);
    expect(t.duplicates).toBe(dups);
  });
  it('treats a confirmed very large jump as a sequence restart, not loss (RFC 3550 A.1)', () => {
    const { t, v } = run([100, 101, 102, 40000, 40001, 40002]);
    expect(v[3]!.probe).toBe(true);
    expect(v[4]!.restarted).toBe(true);
    expect(t.restarts).toBe(1);
    expect(t.lost).toBe(0);
    expect(t.expected).toBe(6);
    expect(t.received).toBe(6);
  });
  it('ignores a single stray far-off seq', () => {
    const { t } = run([100, 101, 30000, 102, 103]);
    expect(t.restarts).toBe(0);
    expect(t.lost).toBe(0);
    expect(t.expected).toBe(4);
  });
  it('a gap below MAX_DROPOUT is loss', () => {
    const { t } = run([100, 101, 2000]);
    expect(t.lost).toBe(1898);
    expect(t.restarts).toBe(0);
  });
  it('flags late arrivals', () => {
    const { v } = run([1, 3, 2]);
    expect(v.map((x) => x.late)).toEqual([false, false, true]);
  });
  it('lossPct', () => {
    expect(lossPct(1, 200)).toBe(0.5);
    expect(lossPct(0, 0)).toBe(0);
  });
});

describe('JitterEstimator (RFC 3550 A.8)', () => {
  it('is zero when packets arrive exactly on their timestamps', () => {
    const j = new JitterEstimator(90000);
    for (let i = 0; i < 100; i++) j.onPacket(1000 + i * 33.3333333, Math.round(i * 3000));
    expect(j.ms).toBeLessThan(0.01);
  });
  it('follows J += (|D| - J)/16', () => {
    const j = new JitterEstimator(1000); // 1 unit per ms
    j.onPacket(0, 0);
    j.onPacket(30, 20); // D = 10
    expect(j.units).toBeCloseTo(10 / 16, 9);
    j.onPacket(40, 40); // transit 0 vs 10: D = -10
    expect(j.units).toBeCloseTo(10 / 16 + (10 - 10 / 16) / 16, 9);
  });
  it('converges to the mean absolute transit difference for alternating delays', () => {
    const j = new JitterEstimator(90000);
    for (let i = 0; i < 2000; i++) j.onPacket(i * 20 + (i % 2 ? 5 : 0), i * 1800);
    expect(j.ms).toBeCloseTo(5, 1);
  });
  it('handles RTP timestamp wrap', () => {
    const j = new JitterEstimator(90000);
    j.onPacket(0, 2 ** 32 - 1800);
    j.onPacket(20, 0);
    expect(j.ms).toBeLessThan(0.01);
  });
  it('validates the clock rate', () => {
    expect(() => new JitterEstimator(0)).toThrow(MeasurementError);
  });
});

describe('FrameTracker', () => {
  const pkt = (ext: number, ts: number, marker = false, extra: { start?: boolean; keyframe?: boolean } = {}) => ({ ext, ts, marker, ...extra });
  it('completes a frame that starts with the S bit', () => {
    const f = new FrameTracker();
    expect(f.onPacket(pkt(100, 9000, false, { start: true, keyframe: true }), 1)).toEqual([]);
    expect(f.onPacket(pkt(101, 9000), 2)).toEqual([]);
    const done = f.onPacket(pkt(102, 9000, true), 3);
    expect(done).toEqual([{ ts: 9000, firstExt: 100, lastExt: 102, keyframe: true, atMs: 3 }]);
  });
  it('needs the start of the first frame: a mid-frame join completes only the next frame', () => {
    const f = new FrameTracker();
    expect(f.onPacket(pkt(101, 9000), 1)).toEqual([]);
    expect(f.onPacket(pkt(102, 9000, true), 2)).toEqual([]);
    const done = f.onPacket(pkt(103, 12000, true), 3);
    expect(done.map((d) => d.ts)).toEqual([12000]);
  });
  it('uses the previous marker as the start when the payload is not readable', () => {
    const f = new FrameTracker();
    f.onPacket(pkt(10, 0, true, { start: true, keyframe: true }), 0);
    expect(f.onPacket(pkt(11, 3000), 1)).toEqual([]);
    expect(f.onPacket(pkt(12, 3000, true), 2).map((d) => d.ts)).toEqual([3000]);
  });
  it('waits for a lost packet and completes when the retransmission arrives', () => {
    const f = new FrameTracker();
    f.onPacket(pkt(10, 0, true, { start: true }), 0);
    f.onPacket(pkt(11, 3000), 1);
    expect(f.onPacket(pkt(13, 3000, true), 2)).toEqual([]);
    expect(f.onPacket(pkt(12, 3000), 50).map((d) => [d.ts, d.atMs])).toEqual([[3000, 50]]);
  });
  it('completes a frame when the previous frame\'s marker arrives late', () => {
    const f = new FrameTracker();
    f.onPacket(pkt(9, 0, false, { start: true }), 0);
    f.onPacket(pkt(11, 3000), 1);
    f.onPacket(pkt(12, 3000, true), 2); // start unknown: 10 missing
    const done = f.onPacket(pkt(10, 0, true), 3);
    expect(done.map((d) => d.ts).sort()).toEqual([0, 3000]);
  });
  it('a lost first packet of a frame keeps it incomplete', () => {
    const f = new FrameTracker();
    f.onPacket(pkt(10, 0, true, { start: true }), 0);
    f.onPacket(pkt(12, 3000), 1);
    expect(f.onPacket(pkt(13, 3000, true), 2)).toEqual([]);
    expect(f.pending).toBe(1);
  });
  it('keeps at most MAX_PENDING incomplete frames', () => {
    const f = new FrameTracker();
    for (let i = 0; i < 1000; i++) f.onPacket(pkt(2 * i + 1, i * 3000), i);
    expect(f.pending).toBeLessThanOrEqual(FrameTracker.MAX_PENDING);
  });
});

describe('FreezeDetector', () => {
  it.each([
    { name: 'steady 30 fps', frames: [0, 33, 66, 100, 133], end: 150, count: 0, total: 0 },
    { name: 'one 600 ms gap', frames: [0, 33, 633, 666], end: 700, count: 1, total: 600 },
    { name: 'exactly 500 ms is not a freeze', frames: [0, 500], end: 510, count: 0, total: 0 },
    { name: 'stall running at the end', frames: [0, 33], end: 1033, count: 1, total: 1000 },
    { name: 'two gaps', frames: [0, 700, 1400], end: 1400, count: 2, total: 1400 },
  ])('$name', ({ frames, end, count, total }) => {
    const d = new FreezeDetector(500);
    for (const t of frames) d.onFrame(t);
    d.finish(end);
    expect(d.count).toBe(count);
    expect(d.totalMs).toBe(total);
  });
  it('frozen() reports a live stall', () => {
    const d = new FreezeDetector();
    d.onFrame(0);
    expect(d.frozen(400)).toBe(false);
    expect(d.frozen(501)).toBe(true);
  });
});

describe('VP8 payload descriptor (RFC 7741 4.2)', () => {
  it.each([
    { name: 'minimal, start, keyframe', hex: '10' + '00', start: true, keyframe: true, len: 1 },
    { name: 'minimal, start, interframe', hex: '10' + '01', start: true, keyframe: false, len: 1 },
    { name: 'continuation', hex: '00' + '00', start: false, keyframe: false, len: 1 },
    { name: 'X I M 15-bit picture id', hex: '90' + '80' + '8123' + '00', start: true, keyframe: true, len: 4 },
    { name: 'X I 7-bit picture id, L, T', hex: '90' + 'e0' + '05' + '01' + '20' + '01', start: true, keyframe: false, len: 5 },
    { name: 'S with partition 1 is not a frame start', hex: '11' + '00', start: false, keyframe: false, len: 1 },
  ])('$name', ({ hex, start, keyframe, len }) => {
    const v = parseVp8Descriptor(Buffer.from(hex, 'hex'))!;
    expect(v).toEqual({ start, keyframe, headerLen: len });
  });
  it.each([[''], ['80'], ['9080'], ['908081']])('truncated %s is undefined', (hex) => {
    expect(parseVp8Descriptor(Buffer.from(hex, 'hex'))).toBeUndefined();
  });
});

describe('percentile', () => {
  it.each([
    [[1, 2, 3, 4, 5], 50, 3],
    [[1, 2, 3, 4], 50, 2.5],
    [[5, 1, 4, 2, 3], 0, 1],
    [[5, 1, 4, 2, 3], 100, 5],
    [[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 95, 95.5],
    [[7], 95, 7],
    [[1, NaN, 3, Infinity], 50, 2],
  ])('percentile(%j, %d) = %d', (xs, p, v) => {
    expect(percentile(xs, p)).toBeCloseTo(v, 9);
  });
  it('is NaN for no data and rejects bad p', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(MeasurementError);
  });
  it('reservoir keeps a bounded, deterministic sample', () => {
    const a = new Reservoir(100, 7);
    const b = new Reservoir(100, 7);
    for (let i = 0; i < 10_000; i++) {
      a.add(i);
      b.add(i);
    }
    expect(a.values.length).toBe(100);
    expect(a.count).toBe(10_000);
    expect(a.values).toEqual(b.values);
    expect(percentile(a.values, 50)).toBeGreaterThan(2500);
    expect(percentile(a.values, 50)).toBeLessThan(7500);
  });
  it('histogram', () => {
    expect(histogram([0, 99, 100, 250, 10_000], 100, 3)).toEqual([2, 1, 2]);
  });
});
