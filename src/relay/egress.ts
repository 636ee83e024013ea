/**
 * Egress: protect a rewritten RTP packet with SRTP and send it on the downstream's ICE socket.
 * The fast path (src/srtp FastRtpSender) protects without per-packet allocation, reading the
 * packet straight from WASM memory, and writes to the nominated candidate pair's UDP socket.
 *
 * Backpressure: before each send the socket's send queue (datagrams libuv has not written yet)
 * is checked against the bound; past it the packet is dropped for this downstream only. On the
 * native path (the addon's sendto, no libuv queue) a full kernel socket buffer drops instead.
 */
import type { RTCDtlsTransport } from 'werift';
import { FastRtpSender } from '../srtp/index.ts';
import type { NativeSsrcStats } from '../srtp/native.ts';

export interface Egress {
  readonly kind: string;
  /** Protect and send buf[off, off+len); false when dropped (queue full or transport gone). */
  sendRtp(buf: Uint8Array, off: number, len: number): boolean;
  sendRtcp(compound: Uint8Array): void;
  /**
   * Optional, for one native call per fan-out (forward.ts): the native context id that will
   * protect and send buf[off, off+len), or -1 to use sendRtp. With an id, the caller reports
   * the record's result to batchResult (true = sent).
   */
  batchId?(buf: Uint8Array, off: number, len: number): number;
  batchResult?(n: number): boolean;
  /** Sender info of packets the addon sent for routed records (forward.ts), or null. */
  nativeSsrcStats?(ssrc: number): NativeSsrcStats | null;
  /** Optional: send a non-media datagram (STUN) to the downstream natively; false when not sent. */
  sendDatagram?(buf: Uint8Array): boolean;
  close(): void;
}

interface SocketLike {
  getSendQueueCount?: () => number;
}

function socketOf(dtls: RTCDtlsTransport): SocketLike | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: { nominated?: { protocol?: { transport?: { socket?: SocketLike } } } } }).connection;
  return conn?.nominated?.protocol?.transport?.socket;
}

export class FastEgress implements Egress {
  readonly kind = 'fast';
  readonly #sender: FastRtpSender;
  readonly #dtls: RTCDtlsTransport;
  readonly #maxQueue: number;
  constructor(dtls: RTCDtlsTransport, maxQueue: number) {
    this.#dtls = dtls;
    this.#maxQueue = maxQueue;
    this.#sender = new FastRtpSender(dtls);
  }
  get stats() {
    return this.#sender.refreshStats();
  }
  sendRtp(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.#sender.sendsNatively) {
      const sock = socketOf(this.#dtls);
      if (sock?.getSendQueueCount && sock.getSendQueueCount() >= this.#maxQueue) return false;
    }
    return this.#sender.send(buf, off, len) >= 0;
  }
  batchId(buf: Uint8Array, off: number, len: number): number {
    return this.#sender.batchId(buf, off, len);
  }
  batchResult(n: number): boolean {
    return this.#sender.batchResult(n) >= 0;
  }
  nativeSsrcStats(ssrc: number): NativeSsrcStats | null {
    return this.#sender.nativeSsrcStats(ssrc);
  }
  sendRtcp(compound: Uint8Array): void {
    this.#sender.sendRtcp(compound, 0, compound.byteLength);
  }
  sendDatagram(buf: Uint8Array): boolean {
    return this.#sender.sendDatagram(buf, 0, buf.byteLength);
  }
  close(): void {
    this.#sender.close();
  }
}

export function createFastEgress(dtls: RTCDtlsTransport, maxQueue: number): Egress | undefined {
  const e = new FastEgress(dtls, maxQueue);
  return e;
}
