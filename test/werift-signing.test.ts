/**
 * The DTLS key cache (src/relay/werift-signing.ts): handshakes share one parsed certificate and
 * key, signatures made through the cache verify against the certificate, and werift peers still
 * complete DTLS with it installed.
 */
import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CipherContext, type RTCPeerConnection } from 'werift';
import { cacheDtlsSigningKey } from '../src/relay/werift-signing.ts';
import { hostOnlyIce } from '../src/relay/media.ts';
import { connectDataChannelPair, waitUntil } from './helpers/peers.ts';

// werift's enums (dtls cipher/const.ts): SignatureAlgorithm.ecdsa = 3, HashAlgorithm.sha256 = 4,
// NamedCurveAlgorithm.secp256r1 = 23.
const ECDSA_SHA256 = { signature: 3, hash: 4 };
const SECP256R1 = 23;
const SERVER = 2;
const CLIENT = 1;

interface Ctx {
  localCert: Buffer;
  localPrivateKey: { sign(d: Buffer, h: string): Buffer };
  signatureData(d: Buffer, h: string): Buffer;
}

type CipherContextCtor = {
  new (sessionType: number, certPem: string, keyPem: string, sig: unknown): Ctx;
  createSelfSignedCertificateWithKey(sig: unknown, curve: number): Promise<{ certPem: string; keyPem: string; signatureHash: unknown }>;
};
const Cipher = CipherContext as unknown as CipherContextCtor;

describe('werift DTLS signing key cache', () => {
  const pcs: RTCPeerConnection[] = [];
  afterEach(async () => {
    await Promise.all(pcs.splice(0).map((pc) => pc.close().catch(() => undefined)));
  });

  it('is installed (CANOPY_WERIFT_KEY_CACHE unset)', () => {
    expect(cacheDtlsSigningKey()).toBe(true);
  });

  it('contexts built from the same PEMs share one parsed certificate and key; other PEMs get their own', async () => {
    const a = await Cipher.createSelfSignedCertificateWithKey(ECDSA_SHA256, SECP256R1);
    const b = await Cipher.createSelfSignedCertificateWithKey(ECDSA_SHA256, SECP256R1);
    const c1 = new Cipher(SERVER, a.certPem, a.keyPem, a.signatureHash);
    const c2 = new Cipher(CLIENT, a.certPem, a.keyPem, a.signatureHash);
    const c3 = new Cipher(SERVER, b.certPem, b.keyPem, b.signatureHash);
    expect(c2.localPrivateKey).toBe(c1.localPrivateKey);
    expect(c2.localCert).toBe(c1.localCert);
    expect(c3.localPrivateKey).not.toBe(c1.localPrivateKey);
    expect(Buffer.from(c3.localCert).equals(Buffer.from(c1.localCert))).toBe(false);
  });

  it('both signing paths produce ECDSA signatures that verify with the certificate, and fail on other data', async () => {
    const { certPem, keyPem, signatureHash } = await Cipher.createSelfSignedCertificateWithKey(ECDSA_SHA256, SECP256R1);
    const pub = createPublicKey(new X509Certificate(certPem).publicKey.export({ format: 'pem', type: 'spki' }));
    for (let i = 0; i < 3; i++) {
      const ctx = new Cipher(i % 2 ? CLIENT : SERVER, certPem, keyPem, signatureHash);
      const data = Buffer.from(`handshake transcript ${i}`);
      const viaContext = ctx.signatureData(data, 'sha256'); // CertificateVerify
      const viaKey = ctx.localPrivateKey.sign(data, 'sha256'); // ServerKeyExchange
      expect(verify('sha256', data, pub, viaContext)).toBe(true);
      expect(verify('sha256', data, pub, viaKey)).toBe(true);
      expect(verify('sha256', Buffer.from('something else'), pub, viaKey)).toBe(false);
    }
  });

  it('werift peers complete DTLS and carry data with the cache in place', async () => {
    const { a, b, send, received } = await connectDataChannelPair(hostOnlyIce('127.0.0.1'));
    pcs.push(a, b);
    send('signed');
    await waitUntil(() => received.length > 0, 5000, 'the message');
    expect(received).toEqual(['signed']);
  });
});
