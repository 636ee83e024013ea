/**
 * Egress: protect a rewritten RTP packet with SRTP and send it on the downstream's ICE socket.
 * The fast path (src/srtp) protects without per-packet allocation and writes straight to the
 * socket of the nominated candidate pair.
 */
import type { RTCDtlsTransport } from 'werift';

export interface Egress {
  readonly kind: string;
  /** Protect and send; false when the packet was dropped (queue full or transport gone). */
  sendRtp(pkt: Uint8Array): boolean;
  sendRtcp(compound: Uint8Array): void;
  close(): void;
}

export function createFastEgress(_dtls: RTCDtlsTransport, _maxQueue: number): Egress | undefined {
  return undefined;
}
