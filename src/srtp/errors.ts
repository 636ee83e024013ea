/**
 * Errors of the SRTP fast path. Construction problems throw named errors; per-packet calls
 * never throw and return a negative status instead, because their input comes from the network
 * or from the relay's hot loop and must not unwind it.
 */

/** A constructor option or key is invalid. The message says which and what is expected. */
export class SrtpOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SrtpOptionsError';
  }
}

/** Keys were asked for before DTLS finished, or the object has no DTLS-SRTP transport. */
export class SrtpKeysUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SrtpKeysUnavailableError';
  }
}

/**
 * Per-packet results. Non-negative numbers are byte counts; these are the failures. They are
 * plain numbers so the hot path returns them without allocating.
 */
export const SrtpStatus = {
  /** Shorter than the smallest valid packet (RTP header + tag, RTCP header + index + tag). */
  TooShort: -1,
  /** RTP/RTCP version field is not 2. */
  BadVersion: -2,
  /** CSRC count or header extension length runs past the end of the packet. */
  BadHeader: -3,
  /** The authentication tag did not verify. */
  AuthFailed: -4,
  /** Already received, or older than the replay window (RFC 3711 §3.3.2). */
  Replay: -5,
  /** The output region is too small for the protected/unprotected packet. */
  OutputTooSmall: -6,
  /** The packet index would be negative (a sequence number from before the first one seen). */
  IndexOutOfRange: -7,
  /** The sender has no keys or no selected candidate pair yet (DTLS/ICE not connected). */
  NotConnected: -8,
  /** werift already sent RTP with this SSRC on the connection; sharing it would reuse keystream. */
  SsrcInUse: -9,
  /** The sender was closed. */
  Closed: -10,
  /** FastRtpSender's maxInFlight datagrams are still pending on the socket; dropped. */
  QueueFull: -11,
  /** The native send failed with an errno other than EAGAIN/ENOBUFS (reported to onSendError). */
  SendFailed: -12,
} as const;
export type SrtpStatusCode = (typeof SrtpStatus)[keyof typeof SrtpStatus];

const names = new Map<number, string>(Object.entries(SrtpStatus).map(([k, v]) => [v, k]));

/** Name of a negative status, for logs and metrics labels. */
export function srtpStatusText(code: number): string {
  return names.get(code) ?? (code >= 0 ? 'ok' : `unknown(${code})`);
}
