/**
 * Native X25519 for werift's DTLS handshakes.
 *
 * werift 0.25 does the handshake's ECDHE in pure JavaScript: X25519 (the group it and every
 * browser offer first) through tweetnacl, about 0.75 ms for the key pair and 0.75 ms for the
 * shared secret, per handshake and per side. A join storm or a relay failure that moves hundreds
 * of viewers at once pays that hundreds of times on the relay's one thread. Node's crypto (OpenSSL)
 * does the same two operations in about 0.05 ms each.
 *
 * werift's bundle calls `nacl.box.keyPair()` and `nacl.scalarMult(n, p)` on tweetnacl's exported
 * object, which is the one module instance this process shares, so replacing those two properties
 * moves werift onto OpenSSL without touching werift. The replacements return exactly what
 * tweetnacl returns (RFC 7748 X25519; both clamp the scalar), which test/werift-x25519.test.ts
 * checks against tweetnacl itself; any input OpenSSL refuses (wrong length, a low-order point that
 * gives an all-zero secret) goes to tweetnacl's own code, so the behaviour on hostile input is
 * unchanged. (werift's P-256 path uses @noble/curves, whose exports are frozen; it is only chosen
 * by peers that do not offer X25519.)
 *
 * Set CANOPY_WERIFT_NATIVE_X25519=0 to keep tweetnacl (to compare, or to rule this out).
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

let installed = false;

/**
 * The OpenSSL key behind each secret key nativeKeyPair handed out, by its ArrayBuffer: werift
 * wraps the secret as `Buffer.from(secretKey.buffer)` and later passes that wrapper to
 * scalarMult, so the handshake's shared secret needs no second key import (createPrivateKey
 * was ~2.5 % of a relay's thread in a join storm). The bytes are compared before use.
 */
const keyOfSecret = new WeakMap<ArrayBufferLike, { bytes: Uint8Array; key: KeyObject }>();

/** Raw 32-byte X25519 private scalar and public key from OpenSSL. */
export function nativeKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_X25519.length);
  const priv = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_X25519.length);
  const secretKey = new Uint8Array(priv);
  keyOfSecret.set(secretKey.buffer, { bytes: new Uint8Array(priv), key: privateKey });
  return { publicKey: new Uint8Array(pub), secretKey };
}

/** The KeyObject nativeKeyPair made for these exact secret bytes, if any. */
function knownKey(n: Uint8Array): KeyObject | undefined {
  const k = keyOfSecret.get(n.buffer);
  if (!k || n.byteOffset !== 0 || n.byteLength !== 32) return undefined;
  for (let i = 0; i < 32; i++) if (n[i] !== k.bytes[i]) return undefined;
  return k.key;
}

/** X25519(n, p) through OpenSSL; undefined where OpenSSL refuses (the caller falls back). */
export function nativeScalarMult(n: Uint8Array, p: Uint8Array): Uint8Array | undefined {
  if (n.length !== 32 || p.length !== 32) return undefined;
  try {
    const privateKey = knownKey(n) ?? createPrivateKey({ key: Buffer.concat([PKCS8_X25519, n]), format: 'der', type: 'pkcs8' });
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519, p]), format: 'der', type: 'spki' });
    return new Uint8Array(diffieHellman({ privateKey, publicKey }));
  } catch {
    return undefined;
  }
}

/**
 * Point werift's X25519 at OpenSSL (idempotent). Returns whether the native path is in use.
 * Called before any werift peer connection is made (relayPeerConfig / hostOnlyIce).
 */
export function useNativeX25519(): boolean {
  if (installed) return true;
  if (process.env['CANOPY_WERIFT_NATIVE_X25519'] === '0') return false;
  const jsKeyPair = nacl.box.keyPair;
  const jsScalarMult = nacl.scalarMult;
  // tweetnacl's scalarMult also carries scalarMult.base and the length constants.
  const scalarMult = Object.assign((n: Uint8Array, p: Uint8Array): Uint8Array => nativeScalarMult(n, p) ?? jsScalarMult(n, p), jsScalarMult);
  const keyPair = Object.assign((): nacl.BoxKeyPair => {
    try {
      return nativeKeyPair();
    } catch {
      return jsKeyPair();
    }
  }, jsKeyPair);
  nacl.scalarMult = scalarMult;
  nacl.box.keyPair = keyPair;
  installed = true;
  return true;
}
