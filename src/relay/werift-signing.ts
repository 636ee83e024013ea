/**
 * Parse werift's DTLS certificate and signing key once per process instead of once per handshake.
 *
 * werift 0.25 uses one self-signed ECDSA P-256 certificate for every peer connection of a
 * process (RTCDtlsTransport.SetupCertificate), yet every DTLS handshake builds a CipherContext
 * that parses that certificate and key from PEM again (`parseX509`, an ASN.1 walk in JS), and
 * every signature (ServerKeyExchange on the server, CertificateVerify on the client) re-encodes
 * the key to PEM and hands the PEM to OpenSSL, which decodes it again. On a relay taking a burst
 * of migrations that is about 1.5 ms of its one thread per handshake, for a key that never changes.
 *
 * This keeps the parsed certificate and key per (certificate, key) PEM pair (a handful at most:
 * one per process, more only if something installs its own), and signs with a KeyObject made
 * once. The signature bytes are the same OpenSSL call on the same key, so nothing on the wire
 * changes; test/werift-signing.test.ts checks that signatures verify against the certificate.
 *
 * Set CANOPY_WERIFT_KEY_CACHE=0 to keep werift's own code (to compare, or to rule this out).
 */
import { createPrivateKey, createSign, type KeyObject } from 'node:crypto';
import { CipherContext } from 'werift';

interface PrivateKeyLike {
  sign(data: Buffer, hashAlgorithm: string): Buffer;
  toPEM(): string | Buffer;
}

interface CipherContextLike {
  localCert?: unknown;
  localPrivateKey?: PrivateKeyLike;
  signatureHashAlgorithm?: unknown;
}

type ParseX509 = (this: CipherContextLike, certPem: unknown, keyPem: unknown, signatureHash: unknown) => void;
type SignatureData = (this: CipherContextLike, data: Buffer, hash: string) => Buffer;

/** Parsed (certificate, key) pairs by PEM text; bounded so odd callers cannot grow it. */
const parsed = new Map<string, { cert: unknown; key: PrivateKeyLike }>();
const MAX_PARSED = 8;
/** The OpenSSL key behind each parsed werift PrivateKey. */
const keyObjects = new WeakMap<PrivateKeyLike, KeyObject>();

let installed: boolean | undefined;

/** A KeyObject for a werift PrivateKey (made once), or undefined if OpenSSL will not read it. */
function keyObjectOf(key: PrivateKeyLike): KeyObject | undefined {
  let k = keyObjects.get(key);
  if (k === undefined) {
    try {
      k = createPrivateKey(String(key.toPEM()));
    } catch {
      return undefined;
    }
    keyObjects.set(key, k);
  }
  return k;
}

/** Install the cache on werift's CipherContext (idempotent). Returns whether it is in use. */
export function cacheDtlsSigningKey(): boolean {
  if (installed !== undefined) return installed;
  installed = false;
  if (process.env['CANOPY_WERIFT_KEY_CACHE'] === '0') return false;
  const proto = (CipherContext as unknown as { prototype?: Record<string, unknown> }).prototype;
  const origParse = proto?.['parseX509'];
  const origSignatureData = proto?.['signatureData'];
  if (typeof origParse !== 'function' || typeof origSignatureData !== 'function') return false;

  proto!['parseX509'] = function (this: CipherContextLike, certPem: unknown, keyPem: unknown, signatureHash: unknown): void {
    const id = `${String(certPem)}\n${String(keyPem)}`;
    const hit = parsed.get(id);
    if (hit) {
      this.localCert = hit.cert;
      this.localPrivateKey = hit.key;
      this.signatureHashAlgorithm = signatureHash;
      return;
    }
    (origParse as ParseX509).call(this, certPem, keyPem, signatureHash);
    const key = this.localPrivateKey;
    if (!key || this.localCert === undefined) return;
    // Keys with a signer of their own in @fidm/x509 (Ed25519) keep it.
    const signers = (key.constructor as { _signers?: Record<string, unknown> })._signers;
    const oid = (key as { oid?: string }).oid;
    if (signers && oid && signers[oid]) return;
    // ServerKeyExchange signs through the key's own sign(); point it at the KeyObject too.
    const origSign = key.sign.bind(key);
    key.sign = (data: Buffer, hashAlgorithm: string): Buffer => {
      const k = keyObjectOf(key);
      return k ? createSign(hashAlgorithm).update(data).sign(k) : origSign(data, hashAlgorithm);
    };
    if (parsed.size >= MAX_PARSED) parsed.delete(parsed.keys().next().value!);
    parsed.set(id, { cert: this.localCert, key });
  };

  // CertificateVerify (client side) signs here, with the key's PEM.
  proto!['signatureData'] = function (this: CipherContextLike, data: Buffer, hash: string): Buffer {
    const k = this.localPrivateKey ? keyObjectOf(this.localPrivateKey) : undefined;
    return k ? createSign(hash).update(data).sign(k) : (origSignatureData as SignatureData).call(this, data, hash);
  };
  installed = true;
  return true;
}
