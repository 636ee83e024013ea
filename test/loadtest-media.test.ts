import { describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import {
  ClipLoop,
  KEYFRAME_INTERVALS_S,
  MediaError,
  VP8_MAX_PAYLOAD,
  clipPath,
  fnv1a,
  loadAudio,
  loadVideo,
  opusPacketDurationMs,
  packetizeVp8,
  parseIvf,
} from '../loadtest/media.ts';
import { parseVp8Descriptor } from '../loadtest/metrics.ts';

describe('shipped clips', () => {
  it.each([
    ['low', 1],
    ['low', 4],
    ['high', 1],
    ['high', 4],
  ] as const)('%s bitrate, %ds GOP: 4 s at 30 fps with keyframes at the GOP', (bitrate, gop) => {
    const c = loadVideo({ bitrate, keyframeIntervalS: gop });
    expect(c.fps).toBe(30);
    expect(c.frames.length).toBe(120);
    const kf = c.keyframe.flatMap((k, i) => (k ? [i] : []));
    expect(kf).toEqual(Array.from({ length: 4 / gop }, (_, i) => i * gop * 30));
    // Every frame is distinct, so a decrypting viewer can identify frames by hash.
    expect(new Set(c.frames.map(fnv1a)).size).toBe(120);
  });
  it('stay small', () => {
    for (const b of ['low', 'high'] as const) for (const k of KEYFRAME_INTERVALS_S) expect(statSync(clipPath({ bitrate: b, keyframeIntervalS: k })).size).toBeLessThan(800_000);
  });
  it('rejects intervals without a clip', () => {
    expect(() => clipPath({ bitrate: 'high', keyframeIntervalS: 3 })).toThrow(MediaError);
  });
  it('audio is 20 ms Opus packets', () => {
    const a = loadAudio();
    expect(a.length).toBeGreaterThan(190);
    for (const p of a) expect(opusPacketDurationMs(p)).toBe(20);
  });
  it('parseIvf refuses other files', () => {
    expect(() => parseIvf(Buffer.from('not an ivf file at all, no no no'))).toThrow(MediaError);
  });
});

describe('packetizeVp8 (RFC 7741)', () => {
  it.each([[0], [1], [1095], [1096], [1097], [5000], [12_000]])('splits a %d-byte frame into <=1100-byte payloads that reassemble', (n) => {
    const frame = Buffer.alloc(n, 0);
    for (let i = 0; i < n; i++) frame[i] = (i * 7) & 0xff;
    const parts = packetizeVp8(frame, 0x1234);
    expect(parts.length).toBe(Math.max(1, Math.ceil(n / (VP8_MAX_PAYLOAD - 4))));
    const body: Buffer[] = [];
    parts.forEach((p, i) => {
      expect(p.length).toBeLessThanOrEqual(VP8_MAX_PAYLOAD);
      const d = parseVp8Descriptor(p)!;
      expect(d.headerLen).toBe(4);
      expect(d.start).toBe(i === 0);
      expect(p.readUInt16BE(2) & 0x7fff).toBe(0x1234);
      body.push(p.subarray(d.headerLen));
    });
    expect(Buffer.concat(body).equals(frame)).toBe(true);
  });
  it('marks keyframes readable from the first packet', () => {
    const c = loadVideo({ bitrate: 'low', keyframeIntervalS: 1 });
    expect(parseVp8Descriptor(packetizeVp8(c.frames[0]!, 1)[0]!)!.keyframe).toBe(true);
    expect(parseVp8Descriptor(packetizeVp8(c.frames[1]!, 2)[0]!)!.keyframe).toBe(false);
  });
});

describe('ClipLoop', () => {
  it('loops the clip with timestamps advancing', () => {
    const l = new ClipLoop(3, 30, 90000);
    const seen = [];
    for (let i = 0; i < 7; i++) {
      seen.push(l.peek());
      l.advance();
    }
    expect(seen.map((f) => f.index)).toEqual([0, 1, 2, 0, 1, 2, 0]);
    expect(seen.map((f) => f.rtpTs)).toEqual([0, 3000, 6000, 9000, 12000, 15000, 18000]);
    expect(seen[6]!.dueMs).toBeCloseTo(200, 9);
  });
  it('jumps to a keyframe without breaking the timeline', () => {
    const l = new ClipLoop(120, 30, 90000);
    l.advance();
    l.advance();
    l.jumpTo(0);
    expect(l.peek()).toMatchObject({ index: 0, n: 2, rtpTs: 6000 });
    expect(() => l.jumpTo(120)).toThrow(MediaError);
  });
});
