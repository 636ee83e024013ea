/**
 * Bigger UDP receive buffers for every socket this process creates (werift's ICE sockets
 * included). With the default ~208 KiB a short event-loop stall overflows the buffer: in a relay,
 * the upstream socket fills while the thread is busy with a burst of joins or migrations (a
 * relay process that took 44 migrations lost 7 % of its viewers' packets this way, unrepaired);
 * in a load-test process hosting many viewers the drops look like loss, the NACKs that follow add
 * load, and a retransmission storm starts. Relays (relayPeerConfig) and the load tester's
 * processes call this. The kernel caps the value at net.core.rmem_max (Linux default 208 KiB;
 * raise it with `sysctl net.core.rmem_max=4194304` where it is lower than RCVBUF_BYTES).
 */
import dgram from 'node:dgram';
import { syncBuiltinESMExports } from 'node:module';

export const RCVBUF_BYTES = 4 * 1024 * 1024;
let patched = false;
let effective: number | undefined;

/** Patch dgram.createSocket so new sockets ask for `bytes` of receive buffer. Idempotent. */
export function setsockoptRcvbuf(bytes = RCVBUF_BYTES): void {
  if (patched) return;
  patched = true;
  const orig = dgram.createSocket;
  const patchedCreate = ((type: string | dgram.SocketOptions, cb?: (msg: Buffer, rinfo: dgram.RemoteInfo) => void) => {
    const o: dgram.SocketOptions = typeof type === 'string' ? { type: type as dgram.SocketType } : { ...type };
    o.recvBufferSize = Math.max(o.recvBufferSize ?? 0, bytes);
    const s = cb ? orig(o, cb) : orig(o);
    if (effective === undefined) {
      s.once('listening', () => {
        try {
          effective = s.getRecvBufferSize();
        } catch {
          /* closed already */
        }
      });
    }
    return s;
  }) as typeof dgram.createSocket;
  dgram.createSocket = patchedCreate;
  // ESM importers (werift's bundle imports { createSocket } from "dgram") see the patch too.
  syncBuiltinESMExports();
}

/** The receive buffer the kernel granted the first patched socket (Linux reports double). */
export function effectiveRcvbuf(): number | undefined {
  return effective;
}
