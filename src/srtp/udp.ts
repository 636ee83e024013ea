/**
 * Direct UDP send: hand a datagram to the dgram socket's libuv handle, skipping dgram's JS
 * send wrapper.
 *
 * Why: `socket.send(buf, off, len, port, ip, cb)` costs ~2 µs of JS per datagram in Node 20
 * even for a numeric address: it slices the buffer, resolves the address through dns.lookup
 * (which answers an IP literal on the next tick), allocates a SendWrap there, and reports
 * success on another tick. lib/dgram.js doSend then calls
 * `state.handle.send(req, list, list.length, port, ip, hasCallback)`, which tries a
 * synchronous `uv_udp_try_send` first and returns msg_length + 1 when the kernel took the
 * datagram, 0 when libuv queued it (the SendWrap's `oncomplete(status)` runs later) and a
 * negative errno on failure. This module makes that same call for an IP literal of the
 * socket's family, and reuses the SendWrap while sends complete synchronously (a SendWrap is
 * only bound to a libuv request when the send is queued).
 *
 * Node internals are reached by feature test only (the socket's 'state symbol',
 * process.binding('udp_wrap').SendWrap); when anything is not as expected `directUdp` returns
 * null and callers use socket.send.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { RegionViews } from './views.ts';

/** dgram's lib/internal/dgram.js state: the bits used here. */
interface DgramState {
  handle: UdpHandle | null;
  bindState: number;
  connectState: number;
}

interface UdpHandle {
  send(req: SendReq, list: Uint8Array[], count: number, port: number, ip: string, hasCallback: boolean): number;
}

interface SendReq {
  list?: Uint8Array[] | undefined;
  oncomplete?: ((status: number) => void) | undefined;
}

/** lib/internal/dgram.js: BIND_STATE_BOUND = 2, CONNECT_STATE_DISCONNECTED = 0. */
const BIND_STATE_BOUND = 2;
const CONNECT_STATE_DISCONNECTED = 0;

type SendWrapCtor = new () => SendReq;

let sendWrap: SendWrapCtor | null | undefined;

function sendWrapCtor(): SendWrapCtor | null {
  if (sendWrap !== undefined) return sendWrap;
  sendWrap = null;
  try {
    const binding = (process as unknown as { binding?: (name: string) => { SendWrap?: unknown } }).binding;
    const ctor = typeof binding === 'function' ? binding.call(process, 'udp_wrap').SendWrap : undefined;
    if (typeof ctor === 'function') sendWrap = ctor as SendWrapCtor;
  } catch {
    /* no process.binding (policy, a future Node): dgram's send is used */
  }
  return sendWrap;
}

/** The error dgram would report for a failed send (code, errno, syscall, address, port). */
export function udpSendError(status: number, ip: string, port: number): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  const err = new Error(`send ${code} ${ip}:${port}`) as Error & { code: string; errno: number; syscall: string; address: string; port: number };
  err.code = code;
  err.errno = status;
  err.syscall = 'send';
  err.address = ip;
  err.port = port;
  return err;
}

/** Result of DirectUdp.send when the datagram was queued by libuv: `done` runs later. */
export const UDP_QUEUED = 0;
/** Result of DirectUdp.send when the kernel took the datagram at once. */
export const UDP_SENT = 1;

/** Direct sends on one dgram socket (see the header comment). */
export class DirectUdp {
  readonly #state: DgramState;
  readonly #type: string;
  readonly #SendWrap: SendWrapCtor;
  #req: SendReq | null = null;
  /** The one-element buffer list, reused while sends complete synchronously. */
  #list: Uint8Array[] | null = null;
  #lastIp = '';
  #lastIpOk = false;

  constructor(state: DgramState, type: string, ctor: SendWrapCtor) {
    this.#state = state;
    this.#type = type;
    this.#SendWrap = ctor;
  }

  /**
   * Send buf[off, off+len) to ip:port. Returns UDP_SENT (done, `done` is not called),
   * UDP_QUEUED (`done(status)` is called when libuv has sent it; buf is kept alive until then),
   * a negative errno (not sent, `done` not called), or null when this socket or address cannot
   * take the direct path right now (use socket.send).
   */
  send(buf: Uint8Array, off: number, len: number, port: number, ip: string, done: (status: number) => void): number | null {
    const st = this.#state;
    const handle = st.handle;
    if (handle === null || st.bindState !== BIND_STATE_BOUND || st.connectState !== CONNECT_STATE_DISCONNECTED) return null;
    if (ip !== this.#lastIp) {
      this.#lastIp = ip;
      this.#lastIpOk = this.#type === 'udp4' ? isIPv4(ip) : this.#type === 'udp6' && isIPv6(ip) && !ip.includes('%');
    }
    if (!this.#lastIpOk || !(port > 0 && port < 65536)) return null;
    const req = this.#req ?? new this.#SendWrap();
    const list = this.#list ?? [buf];
    list[0] = views.of(buf, off, len);
    req.list = list;
    req.oncomplete = done;
    const r = handle.send(req, list, 1, port, ip, true);
    if (r >= 1) {
      // Not bound to a libuv request: reusable; drop the reference to the bytes.
      req.list = undefined;
      req.oncomplete = undefined;
      this.#req = req;
      this.#list = list;
      return UDP_SENT;
    }
    this.#req = null;
    this.#list = null;
    if (r === 0) return UDP_QUEUED;
    return r < 0 ? r : null;
  }
}

const views = new RegionViews();

let stateSymbol: symbol | null | undefined;
const direct = new WeakMap<object, DirectUdp | null>();

/** The direct sender for a dgram socket, or null when Node's internals are not as expected. */
export function directUdp(socket: object): DirectUdp | null {
  let d = direct.get(socket);
  if (d !== undefined) return d;
  d = null;
  const ctor = sendWrapCtor();
  if (stateSymbol === undefined) {
    stateSymbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol') ?? null;
  }
  const state = stateSymbol !== null ? (socket as Record<symbol, unknown>)[stateSymbol] as DgramState | undefined : undefined;
  const type = (socket as { type?: unknown }).type;
  if (
    ctor !== null && state !== undefined && typeof state === 'object' && state !== null &&
    typeof state.bindState === 'number' && typeof state.connectState === 'number' &&
    typeof state.handle?.send === 'function' && (type === 'udp4' || type === 'udp6')
  ) {
    d = new DirectUdp(state, type, ctor);
  }
  direct.set(socket, d);
  return d;
}

/**
 * Where the native addon (native.ts) may sendto directly: the file descriptor of a bound,
 * unconnected dgram socket (its libuv handle's `fd`, Linux and macOS) and an IP literal of the
 * socket's family. `current()` is true while dgram still holds the same handle: dgram drops
 * the handle from its state when the socket closes, before the fd number can be reused.
 */
export interface UdpDestination {
  readonly socket: object;
  readonly fd: number;
  readonly ip: string;
  readonly port: number;
  current(): boolean;
}

export function udpDestinationOf(socket: object, ip: string, port: number): UdpDestination | null {
  if (directUdp(socket) === null) return null; // feature test of dgram's state (sets stateSymbol)
  const state = (socket as Record<symbol, unknown>)[stateSymbol!] as DgramState;
  const handle = state.handle as (UdpHandle & { fd?: unknown }) | null;
  if (handle === null || state.bindState !== BIND_STATE_BOUND || state.connectState !== CONNECT_STATE_DISCONNECTED) return null;
  const fd = handle.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) return null;
  const type = (socket as { type?: unknown }).type;
  const ipOk = type === 'udp4' ? isIPv4(ip) : type === 'udp6' && isIPv6(ip) && !ip.includes('%');
  if (!ipOk || !(Number.isInteger(port) && port > 0 && port < 65536)) return null;
  return {
    socket, fd, ip, port,
    current: () => state.handle === handle && state.connectState === CONNECT_STATE_DISCONNECTED,
  };
}

/**
 * The receive side of a bound dgram socket's libuv handle, for a reader that takes the socket
 * over (native recvStart): its fd, and stopping and restarting dgram's own reading. null when
 * dgram's internals are not as expected. `current()` is true while dgram holds the same handle.
 */
export interface DgramReceiver {
  readonly fd: number;
  stop(): boolean;
  restart(): boolean;
  current(): boolean;
}

export function dgramReceiverOf(socket: object): DgramReceiver | null {
  if (directUdp(socket) === null) return null; // feature test of dgram's state (sets stateSymbol)
  const state = (socket as Record<symbol, unknown>)[stateSymbol!] as DgramState;
  const handle = state.handle as (UdpHandle & { fd?: unknown; recvStart?: () => number; recvStop?: () => number }) | null;
  if (handle === null || state.bindState !== BIND_STATE_BOUND) return null;
  const fd = handle.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) return null;
  if (typeof handle.recvStart !== 'function' || typeof handle.recvStop !== 'function') return null;
  const current = (): boolean => state.handle === handle;
  return {
    fd,
    current,
    stop: () => current() && handle.recvStop!() === 0,
    restart: () => current() && handle.recvStart!() === 0,
  };
}
