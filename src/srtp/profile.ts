/**
 * DTLS-SRTP protection profiles (RFC 5764 §4.1.2, RFC 7714 §14.2). werift 0.25 offers
 * AEAD_AES_128_GCM first and AES128_CM_HMAC_SHA1_80 second, so werift-to-werift and
 * Chromium-to-werift links normally run GCM; both are implemented here.
 */
export const SRTP_AES128_CM_HMAC_SHA1_80 = 0x0001;
export const SRTP_AEAD_AES_128_GCM = 0x0007;
export type SrtpProfile = typeof SRTP_AES128_CM_HMAC_SHA1_80 | typeof SRTP_AEAD_AES_128_GCM;

export function isSrtpProfile(p: unknown): p is SrtpProfile {
  return p === SRTP_AES128_CM_HMAC_SHA1_80 || p === SRTP_AEAD_AES_128_GCM;
}

export function srtpProfileName(p: SrtpProfile): string {
  return p === SRTP_AEAD_AES_128_GCM ? 'AEAD_AES_128_GCM' : 'AES_CM_128_HMAC_SHA1_80';
}

/** Master key length in bytes (both profiles use AES-128). */
export const MASTER_KEY_LENGTH = 16;

/** Master salt length: 112 bits for AES-CM (RFC 3711 §8.2), 96 bits for GCM (RFC 7714 §12). */
export function masterSaltLength(p: SrtpProfile): number {
  return p === SRTP_AEAD_AES_128_GCM ? 12 : 14;
}

/** Bytes SRTP adds to an RTP packet: the 80-bit HMAC tag, or the 128-bit GCM tag. */
export function srtpOverhead(p: SrtpProfile): number {
  return p === SRTP_AEAD_AES_128_GCM ? 16 : 10;
}

/** Bytes SRTCP adds to an RTCP packet: the E-flag/index word plus the tag (RFC 3711 §3.4). */
export function srtcpOverhead(p: SrtpProfile): number {
  return 4 + srtpOverhead(p);
}
