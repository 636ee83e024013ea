/**
 * Two things the relay's fast paths share on a werift connection:
 *
 * - `interceptDatagrams`: a look at every SRTP/SRTCP/DTLS datagram of a werift ICE connection
 *   before werift demultiplexes it. A taker returns true when it consumed the datagram;
 *   otherwise werift gets it unchanged. Several takers may share one connection (asked in the
 *   order they were added); removing one never disturbs the others. Datagrams in the RTP/RTCP
 *   range (RFC 7983 §7: first byte 128..191) on any of the connection's sockets are offered as
 *   they leave the socket, before werift's STUN parse and its two event dispatches (~30 us per
 *   datagram in werift's rarely-optimized code); the selected pair's receive counters are kept
 *   as werift keeps them. Everything else is offered where werift hands application data on
 *   (`connection.onData`), after its own STUN handling, so nothing is offered twice.
 * - `readConnectionSockets`: with the native addon, every UDP socket of the connection (one per
 *   local candidate) is read in batches by the addon (recvmmsg, one JavaScript call per batch)
 *   instead of one Node callback per datagram: SRTP/SRTCP is offered to a taker in place, and
 *   every other datagram reaches werift's socket handler as Node would have delivered it (its
 *   own copy, the sender's address). Used on a relay's upstream leg, where every packet comes in.
 *
 * Both hooks accept SRTP/SRTCP from any sender on any of the connection's sockets, not only on
 * the selected pair's: werift does the same, SRTP authentication is what protects the stream,
 * and peers do use other sockets than the pair werift calls selected. Two werift peers on one
 * host: the publisher's media came from 192.0.2.2:56371 while the relay's selected pair named
 * 127.0.0.1:47076. Chromium publishing to a relay on the same host: werift's nominated pair was
 * the relay's 127.0.0.1 candidate, and Chromium sent all media to the relay's 192.0.2.2
 * candidate, another socket; reading only the nominated pair's socket had the batched reader
 * see 10 of 1581 packets.
 * - `RemoteSrtp`: the fast path's crypto context for what the remote side sends, following werift
 *   when a new DTLS handshake replaces the SRTP session.
 */
import type { RTCDtlsTransport } from 'werift';
import { SrtpCryptoContext, srtpKeysOf } from '../srtp/index.ts';
import { dgramReceiverOf } from '../srtp/udp.ts';
import { deliverTo, readDatagrams } from '../srtp/reader.ts';

export type DatagramTaker = (data: Buffer) => boolean;

interface DataEvent {
  execute: (data: Buffer) => void;
}
interface PairLike {
  protocol: unknown;
  packetsReceived: number;
  bytesReceived: number;
}
interface ProtocolLike {
  datagramReceived(data: Buffer, addr: [string, number]): void;
  transport?: TransportLike;
}
/** werift's UdpTransport: its dgram socket and the handler its 'message' listener calls. */
interface TransportLike {
  type?: string;
  socket?: object;
  rinfo?: unknown;
  onData?: (data: Buffer, addr: [string, number]) => void;
}
interface ConnectionLike {
  onData?: DataEvent;
  protocols?: ProtocolLike[];
  nominated?: PairLike;
}

const HOOK = Symbol('canopy.datagramTakers');
interface Hook {
  takers: DatagramTaker[];
  undo: (() => void)[];
  /** the datagram the early hook offered and passed on (the late hook must not offer it again) */
  passed: Buffer | undefined;
}
type Hooked = ConnectionLike & { [HOOK]?: Hook };

/**
 * Offer the datagrams of `dtls`'s ICE connection to `take` first. Returns the function that
 * removes it, or undefined when this werift has no such connection (the caller keeps werift's path).
 */
export function interceptDatagrams(dtls: RTCDtlsTransport, take: DatagramTaker): (() => void) | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: Hooked }).connection;
  const ev = conn?.onData;
  if (!conn || !ev || typeof ev.execute !== 'function') return undefined;
  let hook = conn[HOOK];
  if (!hook) hook = conn[HOOK] = install(conn, ev);
  const h = hook;
  h.takers.push(take);
  return () => {
    const i = h.takers.indexOf(take);
    if (i >= 0) h.takers.splice(i, 1);
    if (h.takers.length === 0 && conn[HOOK] === h) {
      for (const u of h.undo) u();
      delete conn[HOOK];
    }
  };
}

function install(conn: Hooked, ev: DataEvent): Hook {
  const h: Hook = { takers: [], undo: [], passed: undefined };
  const takers = h.takers;
  const offer = (data: Buffer): boolean => {
    for (let i = 0; i < takers.length; i++) if (takers[i]!(data)) return true;
    return false;
  };
  // Late: where werift hands on application data.
  const origExecute = ev.execute;
  ev.execute = (data: Buffer) => {
    if (h.passed === data) h.passed = undefined;
    else if (offer(data)) return;
    origExecute.call(ev, data);
  };
  h.undo.push(() => {
    ev.execute = origExecute;
  });
  // Early: SRTP/SRTCP on any of the connection's sockets, before werift's STUN parse.
  for (const protocol of conn.protocols ?? []) {
    if (typeof protocol.datagramReceived !== 'function') continue;
    const own = Object.prototype.hasOwnProperty.call(protocol, 'datagramReceived');
    const orig = protocol.datagramReceived;
    const mine = (data: Buffer, addr: [string, number]): void => {
      const b0 = data[0]!;
      if (b0 >= 128 && b0 <= 191) {
        if (offer(data)) {
          countOn(conn.nominated, protocol, data.length);
          return;
        }
        h.passed = data;
      }
      orig.call(protocol, data, addr);
      if (h.passed === data) h.passed = undefined;
    };
    protocol.datagramReceived = mine;
    h.undo.push(() => {
      if (protocol.datagramReceived !== mine) return; // wrapped again after us: leave that in place
      if (own) protocol.datagramReceived = orig;
      else delete (protocol as Partial<ProtocolLike>).datagramReceived;
    });
  }
  return h;
}

/** werift's receive counters of the selected pair, for a datagram taken from its socket. */
function countOn(pair: PairLike | undefined, protocol: ProtocolLike, bytes: number): void {
  if (pair === undefined || pair.protocol !== protocol) return; // another socket: werift counts no pair either
  pair.packetsReceived++;
  pair.bytesReceived += bytes;
}

/**
 * Read every UDP socket of `dtls`'s connection in native batches (see the header comment).
 * Returns the function that gives the sockets back to Node, or undefined when none could be
 * taken over (no addon, no IPv4 UDP socket in the expected state): Node keeps reading those.
 * Sockets werift opens later (an ICE restart) stay with Node; the hooks of interceptDatagrams
 * still offer their SRTP to the taker.
 */
export function readConnectionSockets(dtls: RTCDtlsTransport, take: DatagramTaker): (() => void) | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: ConnectionLike }).connection;
  if (!conn) return undefined;
  const stops: (() => void)[] = [];
  for (const protocol of conn.protocols ?? []) {
    const stop = readProtocolSocket(conn, protocol, take);
    if (stop !== undefined) stops.push(stop);
  }
  if (stops.length === 0) return undefined;
  return () => {
    for (const stop of stops.splice(0)) stop();
  };
}

/** One protocol's socket in native batches, or undefined when it cannot be taken over. */
function readProtocolSocket(conn: ConnectionLike, protocol: ProtocolLike, take: DatagramTaker): (() => void) | undefined {
  const transport = protocol.transport;
  if (transport?.type !== 'udp' || !transport.socket || typeof transport.onData !== 'function') return undefined;
  // IPv4 sockets only (a udp4 socket receives IPv4 datagrams only, so every address is a word).
  if ((transport.socket as { type?: string }).type !== 'udp4') return undefined;
  const receiver = dgramReceiverOf(transport.socket);
  if (receiver === null) return undefined;
  const toWerift = deliverTo(transport);
  const stop = readDatagrams(receiver.fd, (data, from, port) => {
    const b0 = data[0]!;
    if (b0 >= 128 && b0 <= 191 && take(data)) {
      countOn(conn.nominated, protocol, data.length);
      return;
    }
    toWerift(data, from, port);
  });
  if (stop === undefined) return undefined;
  if (!receiver.stop()) {
    stop();
    return undefined;
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    stop();
    receiver.restart(); // false once werift closed the socket: nothing to give back
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
