/**
 * Bad input never throws out of the per-packet API: short, truncated, bit-flipped, random and
 * out-of-range input returns a negative SrtpStatus, and valid traffic still flows afterwards.
 */
import { describe, expect, it } from 'vitest';
import {
  SRTP_AEAD_AES_128_GCM,
  SRTP_AES128_CM_HMAC_SHA1_80,
  SrtpCryptoContext,
  SrtpOptionsError,
  SrtpStatus,
  masterSaltLength,
  srtpStatusText,
  type SrtpProfile,
} from '../src/srtp/index.ts';
import { mulberry32 as rng } from '../src/util/random.ts';


function ctxPair(profile: SrtpProfile): [SrtpCryptoContext, SrtpCryptoContext] {
  const key = Buffer.alloc(16, 7);
  const salt = Buffer.alloc(masterSaltLength(profile), 9);
  return [new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt }), new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt })];
}

function rtp(seq: number, payload: number): Buffer {
  const b = Buffer.alloc(12 + payload, 0xab);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(1234, 4);
  b.writeUInt32BE(0xcafe, 8);
  return b;
}

describe.each([
  ['AES_CM_128_HMAC_SHA1_80', SRTP_AES128_CM_HMAC_SHA1_80],
  ['AEAD_AES_128_GCM', SRTP_AEAD_AES_128_GCM],
] as [string, SrtpProfile][])('malformed input, %s', (_n, profile) => {
  it('protectRtp rejects short packets, bad versions, overlong CSRC/extension and small outputs', () => {
    const [tx] = ctxPair(profile);
    const out = Buffer.alloc(2000);
    expect(tx.protectRtp(Buffer.alloc(11), 0, 11, out, 0)).toBe(SrtpStatus.TooShort);
    const v1 = rtp(1, 10);
    v1[0] = 0x40;
    expect(tx.protectRtp(v1, 0, v1.length, out, 0)).toBe(SrtpStatus.BadVersion);
    const cc = rtp(1, 10);
    cc[0] = 0x8f; // 15 CSRCs = 60 bytes > packet
    expect(tx.protectRtp(cc, 0, cc.length, out, 0)).toBe(SrtpStatus.BadHeader);
    const ext = rtp(1, 4);
    ext[0] = 0x90;
    ext.writeUInt16BE(0xbede, 12);
    ext.writeUInt16BE(100, 14);
    expect(tx.protectRtp(ext, 0, ext.length, out, 0)).toBe(SrtpStatus.BadHeader);
    const ok = rtp(1, 100);
    expect(tx.protectRtp(ok, 0, ok.length, Buffer.alloc(ok.length), 0)).toBe(SrtpStatus.OutputTooSmall);
    expect(tx.protectRtp(ok, 0, ok.length, out, out.length - 5)).toBe(SrtpStatus.OutputTooSmall);
    expect(tx.protectRtp(ok, -1, ok.length, out, 0)).toBe(SrtpStatus.TooShort);
    expect(tx.protectRtp(ok, 0, ok.length + 1, out, 0)).toBe(SrtpStatus.TooShort);
    expect(tx.protectRtp(ok, 0.5, 20, out, 0)).toBe(SrtpStatus.TooShort);
    expect(tx.protectRtp(null as unknown as Uint8Array, 0, 20, out, 0)).toBe(SrtpStatus.TooShort);
    expect(tx.protectRtcp(Buffer.alloc(7), 0, 7, out, 0)).toBe(SrtpStatus.TooShort);
    expect(srtpStatusText(SrtpStatus.BadHeader)).toBe('BadHeader');
  });

  it('unprotect of truncated, bit-flipped and random packets returns an error and keeps working', () => {
    const [tx, rx] = ctxPair(profile);
    const r = rng(profile);
    const out = Buffer.alloc(2000);
    const scratch = Buffer.alloc(2000);
    let seq = 100;
    const errors = new Set<number>();
    for (let i = 0; i < 400; i++) {
      const pkt = rtp(seq++, 1 + ((r() * 1100) | 0));
      const n = tx.protectRtp(pkt, 0, pkt.length, out, 0);
      expect(n).toBeGreaterThan(0);
      const mode = i % 4;
      const bad = Buffer.from(out.subarray(0, n));
      if (mode === 0) {
        const cut = (r() * n) | 0;
        errors.add(rx.unprotectRtp(bad, 0, cut, scratch, 0));
      } else if (mode === 1) {
        bad[(r() * n) | 0]! ^= 1 << ((r() * 8) | 0);
        const res = rx.unprotectRtp(bad, 0, n, scratch, 0);
        expect(res).toBeLessThan(0);
        errors.add(res);
      } else if (mode === 2) {
        const junk = Buffer.alloc((r() * 1500) | 0);
        for (let j = 0; j < junk.length; j++) junk[j] = (r() * 256) | 0;
        expect(rx.unprotectRtp(junk, 0, junk.length, scratch, 0)).toBeLessThan(0);
        expect(rx.unprotectRtcp(junk, 0, junk.length, scratch, 0)).toBeLessThan(0);
      }
      // The genuine packet still verifies after all that noise.
      const good = Buffer.from(out.subarray(0, n));
      expect(rx.unprotectRtp(good, 0, n, scratch, 0)).toBe(pkt.length);
      expect(scratch.subarray(0, pkt.length).equals(pkt)).toBe(true);
    }
    expect([...errors].every((e) => e < 0)).toBe(true);
    expect(errors.has(SrtpStatus.AuthFailed)).toBe(true);
  });

  it('a failed GCM/CM unprotect in place leaves the payload bytes untouched', () => {
    const [tx, rx] = ctxPair(profile);
    const pkt = rtp(5, 300);
    const out = Buffer.alloc(400);
    const n = tx.protectRtp(pkt, 0, pkt.length, out, 0);
    out[n - 1]! ^= 0xff;
    const before = Buffer.from(out.subarray(0, n));
    expect(rx.unprotectRtp(out, 0, n, out, 0)).toBe(SrtpStatus.AuthFailed);
    expect(out.subarray(0, n).equals(before)).toBe(true);
  });

  it('SRTCP: tampered index, tag and body are rejected', () => {
    const [tx, rx] = ctxPair(profile);
    const rtcp = Buffer.from('81c90007000000010000000200000000000000000000000000000000', 'hex'); // RR, 1 block
    const out = Buffer.alloc(200);
    const n = tx.protectRtcp(rtcp, 0, rtcp.length, out, 0);
    for (const pos of [3, 9, n - 1, profile === SRTP_AEAD_AES_128_GCM ? n - 2 : rtcp.length + 2]) {
      const bad = Buffer.from(out.subarray(0, n));
      bad[pos]! ^= 0x10;
      expect(rx.unprotectRtcp(bad, 0, n, Buffer.alloc(200), 0)).toBe(SrtpStatus.AuthFailed);
    }
    expect(rx.unprotectRtcp(out, 0, n, out, 0)).toBe(rtcp.length);
  });
});

describe('SrtpCryptoContext options', () => {
  it('throws SrtpOptionsError naming the problem', () => {
    const key = Buffer.alloc(16);
    expect(() => new SrtpCryptoContext({ profile: 2 as SrtpProfile, masterKey: key, masterSalt: Buffer.alloc(14) })).toThrow(SrtpOptionsError);
    expect(() => new SrtpCryptoContext({ profile: SRTP_AES128_CM_HMAC_SHA1_80, masterKey: Buffer.alloc(15), masterSalt: Buffer.alloc(14) })).toThrow(/master key must be 16 bytes/);
    expect(() => new SrtpCryptoContext({ profile: SRTP_AEAD_AES_128_GCM, masterKey: key, masterSalt: Buffer.alloc(14) })).toThrow(/salt.*12 bytes/);
  });
});
