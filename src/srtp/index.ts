/**
 * The SRTP fast path: SRTP/SRTCP protect and unprotect without per-packet werift objects, keys
 * taken from a connected werift peer connection, and a sender that writes protected packets
 * straight to the selected ICE candidate pair. See docs/architecture.md (SRTP fast path).
 */
export {
  SRTP_AES128_CM_HMAC_SHA1_80,
  SRTP_AEAD_AES_128_GCM,
  type SrtpProfile,
  isSrtpProfile,
  srtpProfileName,
  masterSaltLength,
  srtpOverhead,
  srtcpOverhead,
} from './profile.ts';
export { SrtpStatus, type SrtpStatusCode, srtpStatusText, SrtpOptionsError, SrtpKeysUnavailableError } from './errors.ts';
export { deriveSessionKeys, srtpKdf, type SessionKeys } from './kdf.ts';
export { estimateRoc, ReplayWindow, REPLAY_WINDOW } from './roc.ts';
export { SrtpCryptoContext, type SrtpCryptoContextOptions, type SrtcpIndexSource, AesCmKeystream, rtpHeaderLength } from './context.ts';
export { WasmHmacEngine, coreHmacEngine, HmacSha1x80, TagBatch, type HmacChoice } from './hmac.ts';
export { srtpKeysOf, dtlsTransportOf, preferSrtpProfiles, type SrtpKeys, type SrtpKeySource } from './keys.ts';
export { FastRtpSender, type FastRtpSenderOptions, type FastRtpSenderStats } from './sender.ts';
