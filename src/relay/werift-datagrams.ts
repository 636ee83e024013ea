/**
 * Two things the relay's fast paths share on a werift connection:
 *
 * - `interceptDatagrams`: a look at every datagram werift's ICE connection hands on after its
 *   own STUN handling (werift's `connection.onData` event: DTLS, SRTP and SRTCP), before werift
 *   demultiplexes it. A taker returns true when it consumed the datagram; otherwise werift gets
 *   it unchanged. Several takers may share one connection (they are asked in the order they were
 *   added); removing one never disturbs the others.
 * - `RemoteSrtp`: the fast path's crypto context for what the remote side sends, following werift
 *   when a new DTLS handshake replaces the SRTP session.
 */
import type { RTCDtlsTransport } from 'werift';
import { SrtpCryptoContext, srtpKeysOf } from '../srtp/index.ts';

export type DatagramTaker = (data: Buffer) => boolean;

interface DataEvent {
  execute: (data: Buffer) => void;
}

const TAKERS = Symbol('canopy.datagramTakers');
type Hooked = DataEvent & { [TAKERS]?: { takers: DatagramTaker[]; orig: (data: Buffer) => void } };

/**
 * Offer every datagram of `dtls`'s ICE connection to `take` first. Returns the function that
 * removes it, or undefined when this werift has no such event (the caller keeps werift's path).
 */
export function interceptDatagrams(dtls: RTCDtlsTransport, take: DatagramTaker): (() => void) | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: { onData?: DataEvent } }).connection;
  const ev = conn?.onData as Hooked | undefined;
  if (!ev || typeof ev.execute !== 'function') return undefined;
  let hook = ev[TAKERS];
  if (!hook) {
    const orig = ev.execute;
    const takers: DatagramTaker[] = [];
    hook = { takers, orig };
    ev[TAKERS] = hook;
    ev.execute = (data: Buffer) => {
      for (let i = 0; i < takers.length; i++) if (takers[i]!(data)) return;
      orig.call(ev, data);
    };
  }
  const h = hook;
  h.takers.push(take);
  return () => {
    const i = h.takers.indexOf(take);
    if (i >= 0) h.takers.splice(i, 1);
    if (h.takers.length === 0 && ev[TAKERS] === h) {
      ev.execute = h.orig;
      delete ev[TAKERS];
    }
  };
}

/** The SRTP context of the remote side of `dtls`'s current DTLS session (undefined before one). */
export class RemoteSrtp {
  readonly #dtls: RTCDtlsTransport;
  #ctx: SrtpCryptoContext | undefined;
  #session: unknown;

  constructor(dtls: RTCDtlsTransport) {
    this.#dtls = dtls;
  }

  /** Throws when the keys of a connected session cannot be read (the caller falls back to werift). */
  get(): SrtpCryptoContext | undefined {
    // werift replaces its SRTP session on a new DTLS handshake; follow it.
    const session = (this.#dtls as unknown as { srtp?: unknown }).srtp;
    if (!session) return undefined;
    if (session !== this.#session || !this.#ctx) {
      const k = srtpKeysOf(this.#dtls);
      this.#ctx = new SrtpCryptoContext({ profile: k.profile, masterKey: k.remoteMasterKey, masterSalt: k.remoteMasterSalt });
      this.#session = session;
    }
    return this.#ctx;
  }
}
