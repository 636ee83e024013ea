/**
 * Fast answers to the STUN Binding requests a connected peer keeps sending on the selected pair
 * (ICE keepalives and RFC 7675 consent checks: one every few seconds per viewer).
 *
 * werift parses each request into a Message object, builds the response through another one,
 * and on its way serializes the request and the pair to JSON for a debug log line that is off
 * (`log("Triggered Checks", message.toJSON(), pair.toJSON(), ...)`): ~200 us per request on a
 * relay, more than a viewer's whole RTCP. Here a request on the nominated, succeeded pair, from
 * that pair's remote address, for the current local ufrag, with a valid MESSAGE-INTEGRITY (which
 * werift does not check on requests; RFC 8445 §7.3 says to) and no role conflict or nomination
 * to process, is answered directly: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT (RFC 8489
 * §14.2, §14.5, §14.7), the same response werift sends. Everything else (USE-CANDIDATE, a role
 * attribute that conflicts, another pair, an unknown comprehension-required attribute, a bad
 * integrity or fingerprint, non-Binding methods, responses) goes to werift unchanged.
 *
 * What werift's path also did and this one skips: recording the transaction id in the pair's
 * ever-growing `requestTransactionIds` set (only used to count retransmitted requests).
 */
import { createHmac } from 'node:crypto';
import { isIP } from 'node:net';
import { crc32 } from 'node:zlib';
import type { RTCDtlsTransport } from 'werift';

const MAGIC = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const ATTR_USERNAME = 0x0006;
const ATTR_MESSAGE_INTEGRITY = 0x0008;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
const ATTR_PRIORITY = 0x0024;
const ATTR_USE_CANDIDATE = 0x0025;
const ATTR_FINGERPRINT = 0x8028;
const ATTR_ICE_CONTROLLED = 0x8029;
const ATTR_ICE_CONTROLLING = 0x802a;
const FINGERPRINT_XOR = 0x5354554e;
const SUCCEEDED = 3; // werift CandidatePairState.SUCCEEDED

type Addr = [string, number];
interface PairLike {
  protocol: unknown;
  state: number;
  remoteCandidate: { host: string; port: number };
  requestsReceived: number;
  responsesSent: number;
}
interface ProtocolLike {
  datagramReceived(data: Buffer, addr: Addr): void;
  transport?: { type?: string; socket?: { send(b: Buffer, port: number, host: string): void } };
}
interface ConnectionLike {
  protocols: ProtocolLike[];
  nominated?: PairLike;
  localUsername: string;
  localPassword: string;
  iceControlling: boolean;
  state: string;
}

/** What a request parse found (offsets into the datagram; -1 absent). */
interface Parsed {
  username: string;
  integrity: number;
  fingerprint: number;
  useCandidate: boolean;
  controlling: boolean;
  controlled: boolean;
}

/**
 * Answer keepalive Binding requests of `dtls`'s ICE connection here (see the header comment).
 * Returns the function that puts werift's handling back, or undefined when this werift has no
 * such connection.
 */
export function answerKeepalives(dtls: RTCDtlsTransport, onAnswered?: () => void): (() => void) | undefined {
  const conn = (dtls.iceTransport as unknown as { connection?: ConnectionLike }).connection;
  if (!conn || !Array.isArray(conn.protocols)) return undefined;
  const undo: (() => void)[] = [];
  for (const protocol of conn.protocols) {
    if (typeof protocol.datagramReceived !== 'function') continue;
    const own = Object.prototype.hasOwnProperty.call(protocol, 'datagramReceived');
    const orig = protocol.datagramReceived;
    const mine = (data: Buffer, addr: Addr): void => {
      if (answer(conn, protocol, data, addr)) {
        onAnswered?.();
        return;
      }
      orig.call(protocol, data, addr);
    };
    protocol.datagramReceived = mine;
    undo.push(() => {
      if (protocol.datagramReceived !== mine) return; // someone wrapped it after us: leave theirs
      if (own) protocol.datagramReceived = orig;
      else delete (protocol as Partial<ProtocolLike>).datagramReceived;
    });
  }
  if (undo.length === 0) return undefined;
  return () => {
    for (const u of undo) u();
    undo.length = 0;
  };
}

/** True when the datagram was a keepalive request answered here. */
function answer(conn: ConnectionLike, protocol: ProtocolLike, data: Buffer, addr: Addr): boolean {
  const len = data.length;
  // RFC 8489 §5: first two bits zero, Binding request, magic cookie, length fits, 4-byte aligned.
  if (len < 20 || len > 1500 || data[0]! > 0x03) return false;
  if (data.readUInt16BE(0) !== BINDING_REQUEST || data.readUInt32BE(4) !== MAGIC) return false;
  if (data.readUInt16BE(2) + 20 !== len || (len & 3) !== 0) return false;
  const pair = conn.nominated;
  if (!pair || pair.protocol !== protocol || pair.state !== SUCCEEDED) return false;
  if (conn.state === 'closed' || conn.state === 'failed') return false;
  if (pair.remoteCandidate.host !== addr[0] || pair.remoteCandidate.port !== addr[1]) return false;
  const socket = protocol.transport?.type === 'udp' ? protocol.transport.socket : undefined;
  if (!socket) return false;
  const p = parse(data);
  if (!p || p.integrity < 0 || p.useCandidate) return false;
  // A role attribute equal to ours is a conflict werift resolves (RFC 8445 §7.3.1.1).
  if (conn.iceControlling ? p.controlling : p.controlled) return false;
  // USERNAME is "<our ufrag>:<their ufrag>" (RFC 8445 §7.2.2).
  const colon = p.username.indexOf(':');
  if (colon < 0 || p.username.slice(0, colon) !== conn.localUsername) return false;
  const key = Buffer.from(conn.localPassword, 'utf8');
  if (!integrityOk(data, p.integrity, key)) return false;
  if (p.fingerprint >= 0 && !fingerprintOk(data, p.fingerprint)) return false;
  let res: Buffer;
  try {
    res = bindingSuccess(data, addr, key);
  } catch {
    return false; // an address werift would answer some other way
  }
  pair.requestsReceived++;
  pair.responsesSent++;
  try {
    socket.send(res, addr[1], addr[0]);
  } catch {
    // A closed socket: the connection is going away; the request is answered by nobody, as before.
  }
  return true;
}

/** The attributes this responder looks at; null for a malformed or unhandled message. */
function parse(data: Buffer): Parsed | null {
  const p: Parsed = { username: '', integrity: -1, fingerprint: -1, useCandidate: false, controlling: false, controlled: false };
  let off = 20;
  while (off + 4 <= data.length) {
    const type = data.readUInt16BE(off);
    const alen = data.readUInt16BE(off + 2);
    const end = off + 4 + alen;
    if (end > data.length) return null;
    if (p.fingerprint >= 0) return null; // FINGERPRINT must be last (RFC 8489 §14.7)
    if (p.integrity >= 0 && type !== ATTR_FINGERPRINT) return null; // only FINGERPRINT may follow MI (§14.5)
    switch (type) {
      case ATTR_USERNAME:
        p.username = data.toString('utf8', off + 4, end);
        break;
      case ATTR_MESSAGE_INTEGRITY:
        if (alen !== 20) return null;
        p.integrity = off;
        break;
      case ATTR_FINGERPRINT:
        if (alen !== 4) return null;
        p.fingerprint = off;
        break;
      case ATTR_USE_CANDIDATE:
        p.useCandidate = true;
        break;
      case ATTR_ICE_CONTROLLING:
        p.controlling = true;
        break;
      case ATTR_ICE_CONTROLLED:
        p.controlled = true;
        break;
      case ATTR_PRIORITY:
        break;
      default:
        // 0x0000-0x7FFF are comprehension-required (RFC 8489 §14): werift decides.
        if (type < 0x8000) return null;
    }
    off = end + ((4 - (alen & 3)) & 3);
  }
  return off === data.length ? p : null;
}

/** HMAC-SHA1 over the message up to MI, with the header length ending at MI (RFC 8489 §14.5). */
function integrityOk(data: Buffer, mi: number, key: Buffer): boolean {
  const h = createHmac('sha1', key);
  const head = Buffer.from(data.subarray(0, 4));
  head.writeUInt16BE(mi + 24 - 20, 2);
  h.update(head);
  h.update(data.subarray(4, mi));
  const mac = h.digest();
  let diff = 0;
  for (let i = 0; i < 20; i++) diff |= mac[i]! ^ data[mi + 4 + i]!;
  return diff === 0;
}

function fingerprintOk(data: Buffer, fp: number): boolean {
  return ((crc32(data.subarray(0, fp)) ^ FINGERPRINT_XOR) >>> 0) === data.readUInt32BE(fp + 4);
}

/** Binding success response to `req` from `addr`: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT. */
export function bindingSuccess(req: Buffer, addr: Addr, key: Buffer): Buffer {
  const v6 = addr[0].includes(':');
  const xlen = v6 ? 20 : 8;
  const total = 20 + 4 + xlen + 24 + 8;
  const b = Buffer.alloc(total);
  b.writeUInt16BE(BINDING_SUCCESS, 0);
  b.writeUInt32BE(MAGIC, 4);
  req.copy(b, 8, 8, 20); // transaction id
  let o = 20;
  b.writeUInt16BE(ATTR_XOR_MAPPED_ADDRESS, o);
  b.writeUInt16BE(xlen, o + 2);
  b[o + 5] = v6 ? 0x02 : 0x01;
  b.writeUInt16BE(addr[1] ^ (MAGIC >>> 16), o + 6);
  const ip = v6 ? ipv6Bytes(addr[0]) : ipv4Bytes(addr[0]);
  for (let i = 0; i < ip.length; i++) ip[i]! ^= b[4 + i]!; // cookie, then transaction id (RFC 8489 §14.2)
  ip.copy(b, o + 8);
  o += 4 + xlen;
  // MESSAGE-INTEGRITY: the length counts up to the end of MI while hashing.
  b.writeUInt16BE(o + 24 - 20, 2);
  const mac = createHmac('sha1', key).update(b.subarray(0, o)).digest();
  b.writeUInt16BE(ATTR_MESSAGE_INTEGRITY, o);
  b.writeUInt16BE(20, o + 2);
  mac.copy(b, o + 4);
  o += 24;
  // FINGERPRINT: the length counts it too.
  b.writeUInt16BE(total - 20, 2);
  b.writeUInt16BE(ATTR_FINGERPRINT, o);
  b.writeUInt16BE(4, o + 2);
  b.writeUInt32BE((crc32(b.subarray(0, o)) ^ FINGERPRINT_XOR) >>> 0, o + 4);
  return b;
}

function ipv4Bytes(ip: string): Buffer {
  if (isIP(ip) !== 4) throw new Error(`not an IPv4 address: ${ip}`);
  return Buffer.from(ip.split('.').map(Number));
}

function ipv6Bytes(ip: string): Buffer {
  if (isIP(ip) !== 6) throw new Error(`not an IPv6 address: ${ip}`);
  let s = ip;
  const dot = s.lastIndexOf(':');
  if (s.includes('.', dot)) {
    // An embedded IPv4 tail (::ffff:a.b.c.d) is two 16-bit groups.
    const v4 = ipv4Bytes(s.slice(dot + 1));
    s = `${s.slice(0, dot + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const words = (x: string | undefined): number[] => (x ? x.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array<number>(tail === undefined ? 0 : 8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  all.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return b;
}
