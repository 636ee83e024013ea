/**
 * The native X25519 that werift's DTLS handshakes use (src/relay/werift-x25519.ts) must give
 * exactly what tweetnacl gives, and must hand anything OpenSSL refuses back to tweetnacl.
 */
import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { nativeKeyPair, nativeScalarMult, useNativeX25519 } from '../src/relay/werift-x25519.ts';
import { mulberry32 } from '../src/util/random.ts';

// Deterministic scalars: a seeded generator, not randomness.
function seeded(seed: number): (n: number) => Uint8Array {
  const r = mulberry32(seed);
  return (n) => Uint8Array.from({ length: n }, () => (r() * 256) | 0);
}

describe('native X25519 for werift', () => {
  const jsScalarMult = nacl.scalarMult; // before useNativeX25519 replaces it (tests run in order)
  const jsBase = nacl.scalarMult.base;

  it('RFC 7748 section 6.1 test vector', () => {
    const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bPub = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const got = nativeScalarMult(a, bPub)!;
    expect(Buffer.from(got).toString('hex')).toBe(Buffer.from(jsScalarMult(a, bPub)).toString('hex'));
    expect(Buffer.from(got).toString('hex')).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  it('equals tweetnacl for 200 seeded scalars and points, both ways round', () => {
    const rnd = seeded(7);
    for (let i = 0; i < 200; i++) {
      const a = rnd(32);
      const b = rnd(32);
      const bPub = jsBase(b);
      const aPub = jsBase(a);
      const ab = nativeScalarMult(a, bPub)!;
      expect(Buffer.from(ab).equals(Buffer.from(jsScalarMult(a, bPub)))).toBe(true);
      expect(Buffer.from(ab).equals(Buffer.from(nativeScalarMult(b, aPub)!))).toBe(true);
    }
  });

  it('a native key pair\'s secret, wrapped the way werift wraps it, gives the same shared secret as tweetnacl; altered bytes are not mistaken for it', () => {
    const peer = nativeKeyPair();
    for (let i = 0; i < 10; i++) {
      const kp = nativeKeyPair();
      const wrapped = Buffer.from(kp.secretKey.buffer); // werift dtls flight5/6: Buffer.from(keys.secretKey.buffer)
      const want = Buffer.from(jsScalarMult(kp.secretKey, peer.publicKey));
      expect(Buffer.from(nativeScalarMult(wrapped, peer.publicKey)!).equals(want)).toBe(true);
      const altered = new Uint8Array(kp.secretKey.buffer);
      altered[5] ^= 1; // same ArrayBuffer, different scalar: must not use the cached key
      expect(Buffer.from(nativeScalarMult(wrapped, peer.publicKey)!).equals(Buffer.from(jsScalarMult(altered, peer.publicKey)))).toBe(true);
    }
  });

  it('a native key pair is a valid tweetnacl key pair (public = base * secret)', () => {
    for (let i = 0; i < 20; i++) {
      const kp = nativeKeyPair();
      expect(kp.secretKey).toHaveLength(32);
      expect(Buffer.from(kp.publicKey).equals(Buffer.from(jsBase(kp.secretKey)))).toBe(true);
    }
  });

  it('hands what OpenSSL refuses back to tweetnacl: wrong lengths throw as before, low-order points give zeros', () => {
    expect(useNativeX25519()).toBe(true);
    expect(nacl.scalarMult).not.toBe(jsScalarMult);
    expect(nacl.scalarMult.base).toBe(jsBase);
    expect(() => nacl.scalarMult(new Uint8Array(31), new Uint8Array(32))).toThrow(/bad n size/);
    const zeroPoint = new Uint8Array(32); // order-1 point: all-zero shared secret
    const n = seeded(3)(32);
    expect(nativeScalarMult(n, zeroPoint)).toBeUndefined();
    expect(Buffer.from(nacl.scalarMult(n, zeroPoint)).equals(Buffer.from(jsScalarMult(n, zeroPoint)))).toBe(true);
    const kp = nacl.box.keyPair();
    expect(Buffer.from(kp.publicKey).equals(Buffer.from(jsBase(kp.secretKey)))).toBe(true);
    expect(typeof nacl.box.keyPair.fromSecretKey).toBe('function');
  });
});
