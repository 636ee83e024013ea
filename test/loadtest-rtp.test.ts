import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket } from 'werift';
import { parseRtp, isRtcp } from '../loadtest/rtp.ts';
import { NackScheduler } from '../loadtest/nack.ts';

const pkt = (h: Partial<ConstructorParameters<typeof RtpHeader>[0]>, payload = Buffer.from([1, 2, 3])) =>
  new RtpPacket(new RtpHeader({ payloadType: 96, sequenceNumber: 65535, timestamp: 4294967295, ssrc: 0xdeadbeef, marker: true, ...h }), payload).serialize();

describe('parseRtp', () => {
  it('reads the fixed header', () => {
    const v = parseRtp(pkt({}))!;
    expect(v).toMatchObject({ marker: true, payloadType: 96, seq: 65535, timestamp: 4294967295, ssrc: 0xdeadbeef, payloadOffset: 12 });
    expect(v.extensions.size).toBe(0);
  });
  it('reads one-byte extensions (RFC 8285 4.2)', () => {
    const abs = Buffer.from('0102030405060708', 'hex');
    const b = pkt({ extension: true, extensions: [{ id: 1, payload: Buffer.from('0') }, { id: 3, payload: abs }] });
    const v = parseRtp(b)!;
    const [o, l] = v.extensions.get(3)!;
    expect(Buffer.from(b.subarray(o, o + l)).equals(abs)).toBe(true);
    expect(v.extensions.get(1)![1]).toBe(1);
    expect(Buffer.from(b.subarray(v.payloadOffset)).equals(Buffer.from([1, 2, 3]))).toBe(true);
  });
  it('reads two-byte extensions (RFC 8285 4.3)', () => {
    const b = Buffer.from([0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0x00, 0, 2, 5, 3, 9, 9, 9, 0, 0, 0, 0xaa]);
    const v = parseRtp(b)!;
    expect(v.extensions.get(5)).toEqual([18, 3]);
    expect(v.payloadOffset).toBe(24);
  });
  it.each([
    ['too short', Buffer.alloc(11)],
    ['version 1', Buffer.from([0x40, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['csrc past the end', Buffer.from([0x8f, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['extension length past the end', Buffer.from([0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9])],
    ['one-byte element past the end', Buffer.from([0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 1, 0x37, 0, 0, 0])],
  ])('rejects %s without throwing', (_n, b) => {
    expect(parseRtp(b)).toBeUndefined();
  });
  it('survives random bytes', () => {
    let s = 12345;
    for (let i = 0; i < 5000; i++) {
      const n = (s = (s * 1103515245 + 12345) >>> 0) % 64;
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
      expect(() => parseRtp(b)).not.toThrow();
    }
  });
  it('tells RTCP from RTP', () => {
    expect(isRtcp(Buffer.from([0x80, 200]))).toBe(true);
    expect(isRtcp(pkt({}))).toBe(false);
  });
});

describe('NackScheduler', () => {
  it('requests a gap after the first delay, retries, then gives up', () => {
    const n = new NackScheduler({ firstDelayMs: 5, retryMs: 40, maxTries: 2 });
    n.onPacket(10, 0);
    n.onPacket(13, 0);
    expect(n.poll(4)).toEqual([]);
    expect(n.poll(5)).toEqual([11, 12]);
    expect(n.poll(20)).toEqual([]);
    n.onPacket(11, 30); // arrived
    expect(n.poll(45)).toEqual([12]);
    expect(n.poll(1000)).toEqual([]);
    expect(n.missing).toBe(0);
  });
  it('is wrap-aware', () => {
    const n = new NackScheduler({ firstDelayMs: 0 });
    n.onPacket(65534, 0);
    n.onPacket(1, 0);
    expect(n.poll(0)).toEqual([65535, 0]);
  });
  it('bounds what it tracks', () => {
    const n = new NackScheduler({ maxMissing: 8, firstDelayMs: 0 });
    n.onPacket(0, 0);
    n.onPacket(30000, 0);
    expect(n.poll(0)).toEqual([29992, 29993, 29994, 29995, 29996, 29997, 29998, 29999]);
  });
});
