/**
 * SRTP session key derivation, RFC 3711 §4.3 with the key derivation rate 0 (the only rate
 * DTLS-SRTP uses, RFC 5764 §4.1.2), so r = index DIV kdr = 0 and keys are derived once.
 */
import { createCipheriv } from 'node:crypto';
import { MASTER_KEY_LENGTH, SRTP_AEAD_AES_128_GCM, masterSaltLength, type SrtpProfile } from './profile.ts';
import { SrtpOptionsError } from './errors.ts';

/** Labels of RFC 3711 §4.3.2 (SRTP) and §4.3.2/§3.4 (SRTCP). */
export const LABEL = {
  rtpEncryption: 0x00,
  rtpAuth: 0x01,
  rtpSalt: 0x02,
  rtcpEncryption: 0x03,
  rtcpAuth: 0x04,
  rtcpSalt: 0x05,
} as const;

export interface SessionKeys {
  rtpKey: Buffer;
  /** 14 bytes (AES-CM) or 12 bytes (GCM, RFC 7714 §11). */
  rtpSalt: Buffer;
  /** 20-byte HMAC-SHA1 key (AES-CM only; empty for GCM). */
  rtpAuthKey: Buffer;
  rtcpKey: Buffer;
  rtcpSalt: Buffer;
  rtcpAuthKey: Buffer;
}

/**
 * PRF of RFC 3711 §4.3.3: AES-CM keystream under the master key with IV
 * ((label << 48) XOR master_salt) * 2^16. A 96-bit GCM master salt is zero-padded on the
 * right to 112 bits, as libsrtp does (and werift, which browsers interoperate with).
 */
export function srtpKdf(masterKey: Uint8Array, masterSalt: Uint8Array, label: number, length: number): Buffer {
  const x = Buffer.alloc(16);
  x.set(masterSalt.subarray(0, 14), 0);
  // key_id = label || r (r = 0, 48 bits) occupies the low 56 bits of the 112-bit value: byte 7.
  x[7]! ^= label;
  const blocks = Math.ceil(length / 16);
  const input = Buffer.alloc(blocks * 16);
  for (let i = 0; i < blocks; i++) {
    x.copy(input, i * 16);
    input[i * 16 + 14] = (i >> 8) & 0xff;
    input[i * 16 + 15] = i & 0xff;
  }
  const ecb = createCipheriv('aes-128-ecb', masterKey, null);
  ecb.setAutoPadding(false);
  return Buffer.concat([ecb.update(input), ecb.final()]).subarray(0, length);
}

export function checkMasterKeys(profile: SrtpProfile, masterKey: Uint8Array, masterSalt: Uint8Array, who: string): void {
  if (!(masterKey instanceof Uint8Array) || masterKey.length !== MASTER_KEY_LENGTH) {
    throw new SrtpOptionsError(`${who}: master key must be ${MASTER_KEY_LENGTH} bytes, got ${masterKey?.length}`);
  }
  const saltLen = masterSaltLength(profile);
  if (!(masterSalt instanceof Uint8Array) || masterSalt.length !== saltLen) {
    throw new SrtpOptionsError(`${who}: master salt for this profile must be ${saltLen} bytes, got ${masterSalt?.length}`);
  }
}

export function deriveSessionKeys(profile: SrtpProfile, masterKey: Uint8Array, masterSalt: Uint8Array): SessionKeys {
  checkMasterKeys(profile, masterKey, masterSalt, 'deriveSessionKeys');
  const gcm = profile === SRTP_AEAD_AES_128_GCM;
  const saltLen = gcm ? 12 : 14;
  const authLen = gcm ? 0 : 20;
  return {
    rtpKey: srtpKdf(masterKey, masterSalt, LABEL.rtpEncryption, 16),
    rtpSalt: srtpKdf(masterKey, masterSalt, LABEL.rtpSalt, saltLen),
    rtpAuthKey: srtpKdf(masterKey, masterSalt, LABEL.rtpAuth, authLen),
    rtcpKey: srtpKdf(masterKey, masterSalt, LABEL.rtcpEncryption, 16),
    rtcpSalt: srtpKdf(masterKey, masterSalt, LABEL.rtcpSalt, saltLen),
    rtcpAuthKey: srtpKdf(masterKey, masterSalt, LABEL.rtcpAuth, authLen),
  };
}
