import { describe, expect, it } from 'vitest';
import { AesCmKeystream, deriveSessionKeys, estimateRoc, ReplayWindow, SRTP_AES128_CM_HMAC_SHA1_80 } from '../src/srtp/index.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('RFC 3711 Appendix B.2: AES-CM keystream', () => {
  it('AesCmKeystream.generate matches the test vectors at blocks 0, 1, 2, 0xFEFF, 0xFF00, 0xFF01', () => {
    // Session salt F0..FD, SSRC 0, ROC 0, SEQ 0: the counter blocks are exactly B.2's.
    const ks = new AesCmKeystream(hex('2B7E151628AED2A6ABF7158809CF4F3C'), hex('F0F1F2F3F4F5F6F7F8F9FAFBFCFD'));
    const out = ks.generate(0, 0, 0, 0xff02 * 16);
    const block = (i: number): string => out.subarray(i * 16, i * 16 + 16).toString('hex').toUpperCase();
    expect(block(0)).toBe('E03EAD0935C95E80E166B16DD92B4EB4');
    expect(block(1)).toBe('D23513162B02D0F72A43A2FE4A5F97AB');
    expect(block(2)).toBe('41E95B3BB0A2E8DD477901E4FCA894C0');
    expect(block(0xfeff)).toBe('EC8CDF7398607CB0F2D21675EA9EA1E4');
    expect(block(0xff00)).toBe('362B7C3C6773516318A077D7FC5073AE');
    expect(block(0xff01)).toBe('6A2CC3787889374FBEB4C81B17BA6C44');
  });

  it('a shorter second call reuses the counter buffer without stale blocks', () => {
    const ks = new AesCmKeystream(hex('2B7E151628AED2A6ABF7158809CF4F3C'), hex('F0F1F2F3F4F5F6F7F8F9FAFBFCFD'));
    ks.generate(0x12345678, 7, 9, 3000);
    const out = ks.generate(0, 0, 0, 20);
    expect(out.subarray(0, 16).toString('hex').toUpperCase()).toBe('E03EAD0935C95E80E166B16DD92B4EB4');
    expect(out.length).toBe(32);
  });
});

describe('RFC 3711 Appendix B.3: key derivation', () => {
  it('deriveSessionKeys gives the cipher key, cipher salt and first 160 bits of the auth key', () => {
    const k = deriveSessionKeys(SRTP_AES128_CM_HMAC_SHA1_80, hex('E1F97A0D3E018BE0D64FA32C06DE4139'), hex('0EC675AD498AFEEBB6960B3AABE6'));
    expect(k.rtpKey.toString('hex').toUpperCase()).toBe('C61E7A93744F39EE10734AFE3FF7A087');
    expect(k.rtpSalt.toString('hex').toUpperCase()).toBe('30CBBC08863D8C85D49DB34A9AE1');
    expect(k.rtpAuthKey.toString('hex').toUpperCase()).toBe('CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4');
  });
});

describe('estimateRoc (RFC 3711 Appendix A)', () => {
  it('is wrap-aware for every s_l in 0..65535', () => {
    for (let sl = 0; sl < 65536; sl++) {
      // The next packet and one 100 behind must map to the ROC of their true index.
      const next = (sl + 1) & 0xffff;
      expect(estimateRoc(next, sl, 5)).toBe(sl === 65535 ? 6 : 5);
      const late = (sl - 100) & 0xffff;
      expect(estimateRoc(late, sl, 5)).toBe(sl < 100 ? 4 : 5);
    }
  });
});

describe('ReplayWindow', () => {
  it('accepts new indexes once, rejects duplicates and indexes older than the window', () => {
    const w = new ReplayWindow();
    expect(w.check(1000)).toBe(true);
    w.accept(1000);
    expect(w.check(1000)).toBe(false);
    expect(w.check(999)).toBe(true);
    w.accept(999);
    expect(w.check(999)).toBe(false);
    expect(w.check(1000 - 127)).toBe(true);
    expect(w.check(1000 - 128)).toBe(false);
    w.accept(1200); // jump past the window: everything older is forgotten
    expect(w.check(1199)).toBe(true);
    expect(w.check(1000)).toBe(false);
    w.accept(1201);
    expect(w.check(1200)).toBe(false);
    expect(w.check(1199)).toBe(true);
  });
});
