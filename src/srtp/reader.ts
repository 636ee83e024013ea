/**
 * Batched reads of a UDP socket through the native addon (native/recv.c): up to 32 datagrams
 * per recvmmsg and one JavaScript call per batch, instead of Node's callback, Buffer and
 * rinfo object per datagram. Used where a relay reads a socket itself: the upstream leg's
 * socket (relay/werift-datagrams.ts) and a downstream's connected twin (sender.ts). Each batch
 * is one input batch (input-batch.ts): sends it causes may leave together at its end.
 */
import { nativeSrtp } from './native.ts';
import { beginInputBatch, endInputBatch } from './input-batch.ts';
import { logger } from '../util/log.ts';

const log = logger('srtp:reader');

/** Datagrams per native batch (the addon reads at most 32 per recvmmsg). */
const READ_SLOTS = 32;

/**
 * One datagram of a batch: `data` views the reader's memory and is valid during the call only
 * (copy it to keep it); `from` is the sender's IPv4 address as a 32-bit word.
 */
export type OnDatagram = (data: Buffer, from: number, port: number) => void;

/**
 * Start reading `fd` (an IPv4 UDP socket; the addon watches its own dup() of it) and call
 * `onDatagram` for each datagram. Returns the function that stops reading (idempotent), or
 * undefined without the addon or when the reader cannot start. A datagram longer than the
 * read slot (2048 bytes, above any relay leg's MTU) is dropped and logged once.
 */
export function readDatagrams(fd: number, onDatagram: OnDatagram): (() => void) | undefined {
  const addon = nativeSrtp();
  if (addon === null || typeof addon.recvStart !== 'function') return undefined;
  const SLOT = addon.RECV_SLOT;
  const META = addon.RECV_META;
  const ab = new ArrayBuffer(READ_SLOTS * SLOT);
  const bytes = new Uint8Array(ab);
  const meta = new Int32Array(READ_SLOTS * META);
  let truncated = 0;
  const onBatch = (count: number): void => {
    beginInputBatch();
    try {
      deliver(count);
    } finally {
      endInputBatch();
    }
  };
  const deliver = (count: number): void => {
    for (let i = 0; i < count; i++) {
      const m = i * META;
      if (meta[m + 3] !== 0) {
        if (truncated++ === 0) log.warn('dropped a datagram longer than the read slot', { bytes: SLOT });
        continue;
      }
      try {
        onDatagram(Buffer.from(ab, i * SLOT, meta[m]!), meta[m + 4]!, meta[m + 1]!);
      } catch (err) {
        log.debug('datagram handling failed', { err: err as Error });
      }
    }
  };
  let handle: object;
  try {
    handle = addon.recvStart(fd, bytes, meta, onBatch);
  } catch (err) {
    log.warn('native socket reader unavailable', { err: err as Error });
    return undefined;
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    addon.recvStop(handle);
  };
}

/** An IPv4 address word (as readDatagrams reports it), dotted. */
export function dottedIpv4(w: number): string {
  const u = w >>> 0;
  return `${u >>> 24}.${(u >>> 16) & 255}.${(u >>> 8) & 255}.${u & 255}`;
}

/** werift's UDP transport as far as delivering a datagram to it goes. */
export interface DatagramHandlerLike {
  rinfo?: unknown;
  onData?: (data: Buffer, addr: [string, number]) => void;
}

/**
 * What Node's 'message' event does for werift's UDP transport: its handler with the datagram's
 * own copy (readDatagrams' view is rewritten by the next batch) and the sender's address.
 */
export function deliverTo(transport: DatagramHandlerLike): OnDatagram {
  return (data, from, port) => {
    const address = dottedIpv4(from);
    transport.rinfo = { address, port, family: 'IPv4', size: data.length };
    transport.onData!(Buffer.from(data), [address, port]);
  };
}
