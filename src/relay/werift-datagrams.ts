/**
 * Two things the relay's fast paths share on a werift connection:
 *
 * - `interceptDatagrams`: a look at every SRTP/SRTCP/DTLS datagram of a werift ICE connection
 *   before werift demultiplexes it. A taker returns true when it consumed the datagram;
 *   otherwise werift gets it unchanged. Several takers may share one connection (asked in the
 *   order they were added); removing one never disturbs the others. Datagrams in the RTP/RTCP
 *   range (RFC 7983 §7: first byte 128..191) on the selected pair's socket are offered as they
 *   leave the socket, before werift's STUN parse and its two event dispatches (~30 us per
 *   datagram in werift's rarely-optimized code); the pair's receive counters are kept as werift
 *   keeps them. Everything else is offered where werift hands application data on
 *   (`connection.onData`), after its own STUN handling, so nothing is offered twice.
 * - `readNominatedSocket`: with the native addon, the selected pair's socket is read in batches
 *   by the addon (recvmmsg, one JavaScript call per batch) instead of one Node callback per
 *   datagram: SRTP/SRTCP is offered to a taker in place, and every other datagram reaches
 *   werift's socket handler as Node would have delivered it (its own copy, the sender's
 *   address). Used on a relay's upstream leg, where every packet comes in.
 *
 * Both hooks accept SRTP/SRTCP from any sender on the selected pair's socket, not only from the
 * pair's remote candidate: werift does the same, SRTP authentication is what protects the
 * stream, and peers do send media from another of their sockets than the one the selected pair
 * names (two werift peers on one host: the publisher's media came from 192.0.2.2:56371 while the
 * relay's selected pair named 127.0.0.1:47076, and a remote-address check sent every packet down
 * the slow path).
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
  // Early: SRTP/SRTCP on the selected pair's socket, before werift's STUN parse.
  for (const protocol of conn.protocols ?? []) {
    if (typeof protocol.datagramReceived !== 'function') continue;
    const own = Object.prototype.hasOwnProperty.call(protocol, 'datagramReceived');
    const orig = protocol.datagramReceived;
    const mine = (data: Buffer, addr: [string, number]): void => {
      const b0 = data[0]!;
      const pair = conn.nominated;
      if (b0 >= 128 && b0 <= 191 && pair !== undefined && pair.protocol === protocol) {
        if (offer(data)) {
          pair.packetsReceived++;
          pair.bytesReceived += data.length;
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

/**
 * Read the nominated pair's socket of `dtls`'s connection in native batches (see the header
 * comment). Returns the function that gives the socket back to Node, or undefined when the
 * addon, the socket or the pair is not as expected (Node keeps reading). While a later ICE
 * selection names another socket, this one's datagrams all go to werift's handler.
 */
export function readNominatedSocket(dtls: RTCDtlsTransport, take: DatagramTaker): (() => void) | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: ConnectionLike }).connection;
  const protocol = conn?.nominated?.protocol as ProtocolLike | undefined;
  const transport = protocol?.transport;
  if (!conn || !protocol || transport?.type !== 'udp' || !transport.socket || typeof transport.onData !== 'function') return undefined;
  // IPv4 legs only (a udp4 socket receives IPv4 datagrams only, so every address is a word).
  if ((transport.socket as { type?: string }).type !== 'udp4') return undefined;
  const receiver = dgramReceiverOf(transport.socket);
  if (receiver === null) return undefined;
  const toWerift = deliverTo(transport);
  const stop = readDatagrams(receiver.fd, (data, from, port) => {
    const b0 = data[0]!;
    const pair = conn.nominated;
    if (b0 >= 128 && b0 <= 191 && pair !== undefined && pair.protocol === protocol && take(data)) {
      pair.packetsReceived++;
      pair.bytesReceived += data.length;
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
