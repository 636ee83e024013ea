/**
 * The per-viewer ICE upkeep of a connected werift connection, without werift's per-message
 * objects: answers to the peer's keepalive Binding requests, and our own RFC 7675 consent
 * checks. On a bench relay with 50 viewers werift spent ~1 ms of CPU per consent check (a
 * Message, a Transaction, an AbortController whose abort builds a DOMException with a stack,
 * promise chains, all in rarely-optimized code) and ~200 us per keepalive answer (it serializes
 * the request and the pair to JSON for a debug line that is off): about a tenth of the relay's
 * CPU at 180 packets/s per viewer.
 *
 * Keepalives: a request on the nominated, succeeded pair, from that pair's remote address, for
 * the current local ufrag, with a valid MESSAGE-INTEGRITY (which werift does not check on
 * requests; RFC 8445 §7.3 says to) and no role conflict or nomination to process, is answered
 * here: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT (RFC 8489 §14.2, §14.5, §14.7), the
 * response werift sends. Everything else (USE-CANDIDATE, a conflicting role attribute, another
 * pair, an unknown comprehension-required attribute, a bad integrity or fingerprint, other
 * methods) goes to werift unchanged. Skipped: recording the transaction id in the pair's
 * ever-growing `requestTransactionIds` set (only used to count retransmitted requests).
 *
 * Consent (RFC 7675): werift's loop is stopped and this one runs from the relay's tick: a
 * Binding request on the selected pair every 5 s +-20 % (§5.1: randomized, a new transaction
 * each time, no retransmissions), answered responses (integrity checked with the remote
 * password) refresh consent, and 30 s without one expires it: `consentFresh` false and the
 * connection failed, exactly as werift does, so the egress stops sending (§5.1). When werift
 * restarts consent (after an ICE restart) it restarts this loop instead.
 */
import { createHmac, randomFillSync } from 'node:crypto';
import { isIP } from 'node:net';
import { crc32 } from 'node:zlib';
import type { RTCDtlsTransport } from 'werift';
import { nativeSrtp } from '../srtp/native.ts';

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
/** RFC 8445 §5.1.2.1 priority of a peer-reflexive UDP candidate (type 110, local 65535, component 1). */
const PRFLX_PRIORITY = (1 << 24) * 110 + (1 << 8) * 65535 + 255;

/** RFC 7675 §5.1: checks every 5 s (randomized +-20 %); consent expires 30 s after the last response. */
export const CONSENT_INTERVAL_MS = 5000;
export const CONSENT_TIMEOUT_MS = 30_000;

type Addr = [string, number];
interface PairLike {
  protocol: unknown;
  state: number;
  remoteCandidate: { host: string; port: number };
  requestsReceived: number;
  responsesSent: number;
  requestsSent?: number;
  consentRequestsSent?: number;
  responsesReceived?: number;
  rtt?: number;
  totalRoundTripTime?: number;
  roundTripTimeMeasurements?: number;
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
  remoteUsername: string;
  remotePassword: string;
  iceControlling: boolean;
  tieBreaker: bigint;
  state: string;
  consentFresh: boolean;
  queryConsent?: () => void;
  stopConsentLifecycle?: () => void;
  setState?: (state: string) => void;
}

export interface FastIceOptions {
  /** The relay's clock (ms); consent timing uses it. */
  now: () => number;
  /** Seeded in tests; Math.random otherwise. */
  random?: () => number;
  onAnswered?: () => void;
  /**
   * Sends a STUN message to the selected pair's remote address (the downstream's egress, with
   * the addon's sendto); false when it could not, and the message goes out on werift's socket.
   */
  send?: (message: Buffer) => boolean;
  /** Consent checks sent / responses accepted (metrics). */
  onConsentCheck?: () => void;
  onConsentResponse?: () => void;
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

/** A consent check in flight: its transaction id and the password its response must carry. */
interface Pending {
  txid: Buffer;
  key: Buffer;
  sentAt: number;
}

/** Keepalive answers and consent checks for one connected werift connection (see the header). */
export class FastIce {
  readonly #conn: ConnectionLike;
  readonly #opts: FastIceOptions;
  readonly #random: () => number;
  readonly #undo: (() => void)[] = [];
  readonly #origQuery: (() => void) | undefined;
  #pending: Pending[] = [];
  readonly #localKey = new PasswordKey();
  readonly #remoteKey = new PasswordKey();
  #lastFresh = -1;
  #nextCheck = -1;
  #closed = false;
  #expired = false;

  /** Undefined when this werift has no connection of the expected shape (werift keeps it all). */
  static install(dtls: RTCDtlsTransport, opts: FastIceOptions): FastIce | undefined {
    const conn = (dtls.iceTransport as unknown as { connection?: ConnectionLike }).connection;
    if (!conn || !Array.isArray(conn.protocols) || conn.protocols.length === 0) return undefined;
    if (typeof conn.stopConsentLifecycle !== 'function' || typeof conn.setState !== 'function' || typeof conn.queryConsent !== 'function') return undefined;
    return new FastIce(conn, opts);
  }

  private constructor(conn: ConnectionLike, opts: FastIceOptions) {
    this.#conn = conn;
    this.#opts = opts;
    this.#random = opts.random ?? Math.random;
    for (const protocol of conn.protocols) {
      if (typeof protocol.datagramReceived !== 'function') continue;
      const own = Object.prototype.hasOwnProperty.call(protocol, 'datagramReceived');
      const orig = protocol.datagramReceived;
      const mine = (data: Buffer, addr: Addr): void => {
        if (this.#take(protocol, data, addr)) return;
        orig.call(protocol, data, addr);
      };
      protocol.datagramReceived = mine;
      this.#undo.push(() => {
        if (protocol.datagramReceived !== mine) return; // someone wrapped it after us: leave theirs
        if (own) protocol.datagramReceived = orig;
        else delete (protocol as Partial<ProtocolLike>).datagramReceived;
      });
    }
    // Consent: werift's loop stops; werift's later calls (ICE restart) restart ours instead.
    const own = Object.prototype.hasOwnProperty.call(conn, 'queryConsent');
    this.#origQuery = conn.queryConsent;
    conn.stopConsentLifecycle!();
    conn.consentFresh = true;
    conn.queryConsent = () => this.#restartConsent();
    this.#undo.push(() => {
      if (own) conn.queryConsent = this.#origQuery;
      else delete conn.queryConsent;
    });
  }

  /** Consent checks sent and responses accepted so far. */
  checks = 0;
  responses = 0;

  /** Clock time at which tick() has something to do: the next check or the expiry (0: now). */
  get due(): number {
    if (this.#closed || this.#expired) return Infinity;
    if (this.#lastFresh < 0 || this.#nextCheck < 0) return 0;
    return Math.min(this.#nextCheck, this.#lastFresh + CONSENT_TIMEOUT_MS);
  }

  /** Drive consent (call every few tens of ms with the relay clock's now). */
  tick(now: number): void {
    const conn = this.#conn;
    if (this.#closed || this.#expired || conn.state === 'closed' || conn.state === 'failed') return;
    if (!conn.nominated) return;
    if (this.#lastFresh < 0) this.#lastFresh = now;
    if (now - this.#lastFresh >= CONSENT_TIMEOUT_MS) {
      // RFC 7675 §5.1: consent expired; werift's own reaction (no application data, failed).
      this.#expired = true;
      conn.consentFresh = false;
      conn.setState!('failed');
      return;
    }
    if (this.#nextCheck < 0) this.#nextCheck = now + this.#interval();
    if (now >= this.#nextCheck) {
      this.#nextCheck = now + this.#interval();
      this.#sendCheck(now);
    }
  }

  #interval(): number {
    return CONSENT_INTERVAL_MS * (0.8 + 0.4 * this.#random());
  }

  #restartConsent(): void {
    if (this.#closed) return;
    this.#conn.consentFresh = true;
    this.#expired = false;
    this.#lastFresh = -1;
    this.#nextCheck = -1;
    this.#pending = [];
  }

  #sendCheck(now: number): void {
    const conn = this.#conn;
    const pair = conn.nominated!;
    const protocol = pair.protocol as ProtocolLike;
    const socket = protocol.transport?.type === 'udp' ? protocol.transport.socket : undefined;
    if (!socket) return;
    const key = this.#remoteKey.of(conn.remotePassword);
    const txid = transactionId();
    const req = bindingRequest(txid, `${conn.remoteUsername}:${conn.localUsername}`, conn.iceControlling, conn.tieBreaker, key);
    // Responses to the last few checks count (a slow one still proves consent).
    this.#pending.push({ txid, key, sentAt: now });
    if (this.#pending.length > 4) this.#pending.shift();
    pair.requestsSent = (pair.requestsSent ?? 0) + 1;
    pair.consentRequestsSent = (pair.consentRequestsSent ?? 0) + 1;
    this.checks++;
    this.#opts.onConsentCheck?.();
    if (this.#opts.send?.(req)) return;
    try {
      socket.send(req, pair.remoteCandidate.port, pair.remoteCandidate.host);
    } catch {
      // A closed socket: the connection is going away.
    }
  }

  #take(protocol: ProtocolLike, data: Buffer, addr: Addr): boolean {
    if (this.#closed || data.length < 20 || data[0]! > 0x03) return false;
    if (data[0] === 0x01 && data[1] === 0x01) return this.#response(data);
    if (answer(this.#conn, protocol, data, addr, this.#localKey, this.#opts.send)) {
      this.#opts.onAnswered?.();
      return true;
    }
    return false;
  }

  /** A Binding success response to one of our consent checks. */
  #response(data: Buffer): boolean {
    if (data.readUInt32BE(4) !== MAGIC || data.readUInt16BE(2) + 20 !== data.length) return false;
    const i = this.#pending.findIndex((p) => data.compare(p.txid, 0, 12, 8, 20) === 0);
    if (i < 0) return false; // werift's own transaction (an ICE check), or a stray: werift decides
    const p = this.#pending[i]!;
    const parsed = parse(data, true);
    if (!parsed || parsed.integrity < 0 || !integrityOk(data, parsed.integrity, p.key)) return true; // forged or stale: dropped
    if (parsed.fingerprint >= 0 && !fingerprintOk(data, parsed.fingerprint)) return true;
    this.#pending.splice(i, 1);
    const now = this.#opts.now();
    const conn = this.#conn;
    if (this.#expired || conn.state === 'closed' || conn.state === 'failed') return true;
    this.#lastFresh = now;
    conn.consentFresh = true;
    this.responses++;
    this.#opts.onConsentResponse?.();
    const pair = conn.nominated;
    if (pair) {
      const rtt = Math.max(0, now - p.sentAt) / 1000;
      pair.rtt = rtt;
      pair.totalRoundTripTime = (pair.totalRoundTripTime ?? 0) + rtt;
      pair.roundTripTimeMeasurements = (pair.roundTripTimeMeasurements ?? 0) + 1;
      pair.responsesReceived = (pair.responsesReceived ?? 0) + 1;
    }
    if (conn.state === 'disconnected') conn.setState!('connected');
    return true;
  }

  /** Give everything back to werift; `restartConsent` restarts werift's own consent loop. */
  close(restartConsent = false): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const u of this.#undo) u();
    this.#undo.length = 0;
    const conn = this.#conn;
    if (restartConsent && conn.state !== 'closed' && conn.state !== 'failed' && conn.nominated) conn.queryConsent?.();
  }
}

/** True when the datagram was a keepalive request answered here. */
function answer(
  conn: ConnectionLike,
  protocol: ProtocolLike,
  data: Buffer,
  addr: Addr,
  localKey: PasswordKey,
  send: ((m: Buffer) => boolean) | undefined,
): boolean {
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
  const key = localKey.of(conn.localPassword);
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
  if (send?.(res)) return true; // to the pair's remote, which is addr (checked above)
  try {
    socket.send(res, addr[1], addr[0]);
  } catch {
    // A closed socket: the connection is going away; the request is answered by nobody, as before.
  }
  return true;
}

/** The attributes this responder looks at; null for a malformed or unhandled message. */
function parse(data: Buffer, response = false): Parsed | null {
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
      case ATTR_XOR_MAPPED_ADDRESS:
        if (!response) return null;
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
  // The length field counts up to the end of MI while hashing; put it back afterwards.
  const length = data.readUInt16BE(2);
  data.writeUInt16BE(mi + 24 - 20, 2);
  hmacSha1(key, data, mi, macScratch, 0);
  data.writeUInt16BE(length, 2);
  let diff = 0;
  for (let i = 0; i < 20; i++) diff |= macScratch[i]! ^ data[mi + 4 + i]!;
  return diff === 0;
}

const macScratch = Buffer.alloc(20);

/** HMAC-SHA1 of data[0, len) into out[at, at+20): the addon's when loaded, else Node's Hmac object. */
function hmacSha1(key: Buffer, data: Buffer, len: number, out: Buffer, at: number): void {
  const addon = nativeSrtp();
  if (addon !== null && addon.hmacSha1(key, data, 0, len, out, at) === 20) return;
  createHmac('sha1', key).update(data.subarray(0, len)).digest().copy(out, at);
}

/** The UTF-8 bytes of an ICE password (the STUN short-term credential key, RFC 8489 §9.1.1), kept until it changes (ICE restart). */
class PasswordKey {
  #password = '';
  #key = Buffer.alloc(0);
  of(password: string): Buffer {
    if (password !== this.#password || this.#key.length === 0) {
      this.#password = password;
      this.#key = Buffer.from(password, 'utf8');
    }
    return this.#key;
  }
}

/** A fresh random 96-bit transaction id (RFC 8489 §6), cut from a pool filled 64 ids at a time. */
const txPool = Buffer.alloc(12 * 64);
let txNext = txPool.length;
function transactionId(): Buffer {
  if (txNext === txPool.length) {
    randomFillSync(txPool);
    txNext = 0;
  }
  const id = Buffer.from(txPool.subarray(txNext, txNext + 12));
  txNext += 12;
  return id;
}

function fingerprintOk(data: Buffer, fp: number): boolean {
  return ((crc32(data.subarray(0, fp)) ^ FINGERPRINT_XOR) >>> 0) === data.readUInt32BE(fp + 4);
}

/** A consent check (RFC 7675 §5.1 uses ICE's Binding request, RFC 8445 §7.2.2), with MI and FINGERPRINT. */
export function bindingRequest(txid: Buffer, username: string, controlling: boolean, tieBreaker: bigint, key: Buffer): Buffer {
  const user = Buffer.from(username, 'utf8');
  const ulen = user.length;
  const upad = (4 - (ulen & 3)) & 3;
  const total = 20 + (4 + ulen + upad) + 8 + 12 + 24 + 8;
  const b = Buffer.alloc(total);
  b.writeUInt16BE(BINDING_REQUEST, 0);
  b.writeUInt32BE(MAGIC, 4);
  txid.copy(b, 8, 0, 12);
  let o = 20;
  b.writeUInt16BE(ATTR_USERNAME, o);
  b.writeUInt16BE(ulen, o + 2);
  user.copy(b, o + 4);
  o += 4 + ulen + upad;
  b.writeUInt16BE(ATTR_PRIORITY, o);
  b.writeUInt16BE(4, o + 2);
  b.writeUInt32BE(PRFLX_PRIORITY >>> 0, o + 4);
  o += 8;
  b.writeUInt16BE(controlling ? ATTR_ICE_CONTROLLING : ATTR_ICE_CONTROLLED, o);
  b.writeUInt16BE(8, o + 2);
  b.writeBigUInt64BE(BigInt.asUintN(64, tieBreaker), o + 4);
  o += 12;
  return seal(b, o, key);
}

/** MESSAGE-INTEGRITY at o, then FINGERPRINT (RFC 8489 §14.5, §14.7); b has room for both. */
function seal(b: Buffer, o: number, key: Buffer): Buffer {
  // MESSAGE-INTEGRITY: the length counts up to the end of MI while hashing.
  b.writeUInt16BE(o + 24 - 20, 2);
  hmacSha1(key, b, o, b, o + 4);
  b.writeUInt16BE(ATTR_MESSAGE_INTEGRITY, o);
  b.writeUInt16BE(20, o + 2);
  o += 24;
  // FINGERPRINT: the length counts it too.
  b.writeUInt16BE(o + 8 - 20, 2);
  b.writeUInt16BE(ATTR_FINGERPRINT, o);
  b.writeUInt16BE(4, o + 2);
  b.writeUInt32BE((crc32(b.subarray(0, o)) ^ FINGERPRINT_XOR) >>> 0, o + 4);
  return b;
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
  return seal(b, o, key);
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
