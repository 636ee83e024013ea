/**
 * Relay sockets ask for large UDP receive buffers (src/util/rcvbuf.ts): once a relay peer
 * configuration has been made, every new dgram socket of the process (werift's ICE sockets
 * included) gets RCVBUF_BYTES, as far as the kernel allows.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { relayPeerConfig } from '../src/relay/media.ts';
import { RCVBUF_BYTES, effectiveRcvbuf } from '../src/util/rcvbuf.ts';

function rmemMax(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim());
  } catch {
    return 0;
  }
}

describe.skipIf(process.platform !== 'linux' && process.env.CI !== 'true')('UDP receive buffers for relay sockets', () => {
  it('a socket created after relayPeerConfig has the larger buffer (Linux reports double the granted size)', async () => {
    relayPeerConfig('127.0.0.1');
    const s = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
      const granted = Math.min(RCVBUF_BYTES, rmemMax());
      expect(s.getRecvBufferSize()).toBeGreaterThanOrEqual(2 * granted);
      expect(effectiveRcvbuf()).toBeGreaterThanOrEqual(2 * granted);
    } finally {
      s.close();
    }
  });
});
