/**
 * Routes of the forwarding adapter (src/relay/forward.ts): once a downstream passed the full
 * checks, its outputs go out on a leased route; the next output after the lease, or after
 * dropRoutes (an ICE state change), goes through the full checks again.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { CoreHost, ForwardCore, ROUTE_LEASE_MS } from '../src/relay/forward.ts';
import type { Downstream } from '../src/relay/downstream.ts';
import { nativeSrtp, NativeSrtpContext } from '../src/srtp/native.ts';
import { SRTP_AEAD_AES_128_GCM } from '../src/srtp/profile.ts';
import { udpDestinationOf } from '../src/srtp/udp.ts';
import { beginInputBatch, endInputBatch } from '../src/srtp/input-batch.ts';

const addon = nativeSrtp();

/** An Opus-like RTP packet (no keyframe needed) of `seq`. */
function rtp(seq: number): Buffer {
  const b = Buffer.alloc(12 + 100, 7);
  b[0] = 0x80;
  b[1] = 111;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(seq * 960, 4);
  b.writeUInt32BE(0x1234, 8);
  return b;
}

describe.skipIf(addon === null && process.env.CI !== 'true')('forwarding routes', () => {
  const sockets: dgram.Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  it('checks a downstream once per lease, again right after dropRoutes, and every packet is sent', async () => {
    const rx = dgram.createSocket('udp4');
    const tx = dgram.createSocket('udp4');
    sockets.push(rx, tx);
    let received = 0;
    rx.on('message', () => received++);
    await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => tx.bind(0, '127.0.0.1', r));
    const nat = new NativeSrtpContext(addon!, Buffer.alloc(16, 1), Buffer.alloc(12, 2), SRTP_AEAD_AES_128_GCM);
    const dest = udpDestinationOf(tx, '127.0.0.1', rx.address().port)!;
    expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);

    let checks = 0;
    let routed = 0;
    let done = 0;
    const ds = {
      bindings: [{ track: 0, ssrc: 0xabcdef, payloadType: 111, clockRate: 48000, extIds: new Map() }],
      coreOuts: [] as number[],
      batchPrepare: () => (checks++, nat.id),
      extMapOf: () => null,
      batchDone: (_t: number, res: number) => (expect(res).toBeGreaterThan(0), done++, true),
      countRouted: (n: number) => void (routed += n),
      sendTranslated: () => false,
    } as unknown as Downstream;
    const host = new CoreHost(2, 4);
    const fwd = new ForwardCore(host, [{ clockRate: 48000, codec: 'opus', payloadType: 111, kind: 'audio', extIds: new Map() }]);
    fwd.addDownstream(ds);
    fwd.joinFromCache(ds, 0, 0, () => false);
    const notBatched = () => {
      throw new Error('every output should be batched');
    };
    let seq = 100;
    const step = (now: number) => {
      expect(fwd.ingest(0, rtp(seq++), now)).toBeGreaterThanOrEqual(0);
      fwd.fanout(0, notBatched);
    };

    // 20 ms packets over 3 leases: one full check per lease.
    for (let now = 0; now < 3 * ROUTE_LEASE_MS; now += 20) step(now);
    expect(checks).toBe(3);
    // A state change: the very next output is checked again.
    fwd.dropRoutes(ds);
    step(3 * ROUTE_LEASE_MS);
    expect(checks).toBe(4);
    step(3 * ROUTE_LEASE_MS + 20);
    expect(checks).toBe(4);

    const total = seq - 100;
    expect(done + routed).toBe(total);
    expect(done).toBe(4);
    for (let i = 0; i < 100 && received < total; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received).toBe(total);
    fwd.removeDownstream(ds);
    nat.destroy();
  });

  it('in an input batch, outputs wait for its end and leave together; every one is accounted once', async () => {
    const rx = dgram.createSocket('udp4');
    const tx = dgram.createSocket('udp4');
    sockets.push(rx, tx);
    const got: Buffer[] = [];
    rx.on('message', (m) => got.push(m));
    await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => tx.bind(0, '127.0.0.1', r));
    const nat = new NativeSrtpContext(addon!, Buffer.alloc(16, 1), Buffer.alloc(12, 2), SRTP_AEAD_AES_128_GCM);
    const dest = udpDestinationOf(tx, '127.0.0.1', rx.address().port)!;
    expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
    let routed = 0;
    const done: number[] = [];
    let coalesced = [0, 0];
    const ds = {
      bindings: [{ track: 0, ssrc: 0xabcdef, payloadType: 111, clockRate: 48000, extIds: new Map() }],
      coreOuts: [] as number[],
      batchPrepare: () => nat.id,
      extMapOf: () => null,
      batchDone: (_t: number, res: number) => (done.push(res), true),
      countRouted: (n: number) => void (routed += n),
      countCoalesced: (sends: number, packets: number) => void (coalesced = [coalesced[0]! + sends, coalesced[1]! + packets]),
      sendTranslated: () => false,
    } as unknown as Downstream;
    const host = new CoreHost(2, 4);
    const fwd = new ForwardCore(host, [{ clockRate: 48000, codec: 'opus', payloadType: 111, kind: 'audio', extIds: new Map() }]);
    fwd.addDownstream(ds);
    fwd.joinFromCache(ds, 0, 0, () => false);
    const notBatched = () => {
      throw new Error('every output should be batched');
    };
    const send = (seq: number, now: number): void => {
      expect(fwd.ingest(0, rtp(seq), now)).toBeGreaterThanOrEqual(0);
      fwd.fanout(0, notBatched);
    };

    beginInputBatch();
    try {
      for (let i = 0; i < 6; i++) send(100 + i, i);
      // Staged: nothing sent or accounted yet.
      expect(addon!.stats(nat.id)![0]).toBe(0);
      expect(done.length + routed).toBe(0);
    } finally {
      endInputBatch();
    }
    // The first output was checked (its result reaches batchDone), the other five went on the route.
    expect(done).toEqual([112 + 16]);
    expect(routed).toBe(5);
    expect(coalesced).toEqual([1, 6]); // six equal packets, one send
    expect(nat.gso()).toEqual([1, 6]);
    for (let i = 0; i < 200 && got.length < 6; i++) await new Promise((r) => setTimeout(r, 5));
    expect(got.map((m) => m.length)).toEqual(new Array(6).fill(112 + 16));
    const seqs = got.map((m) => m.readUInt16BE(2));
    for (let i = 1; i < 6; i++) expect((seqs[i]! - seqs[0]!) & 0xffff).toBe(i); // in order

    // Outside a batch, every output leaves at once again.
    send(106, 6);
    expect(addon!.stats(nat.id)![0]).toBe(7);
    expect(routed).toBe(6);
    fwd.removeDownstream(ds);

    // CANOPY_GSO=0: a relay's core never defers, even inside an input batch.
    const saved = process.env.CANOPY_GSO;
    process.env.CANOPY_GSO = '0';
    let plain: CoreHost;
    try {
      plain = new CoreHost(2, 4);
    } finally {
      if (saved === undefined) delete process.env.CANOPY_GSO;
      else process.env.CANOPY_GSO = saved;
    }
    expect(plain.staged).toBeNull();
    const fwd2 = new ForwardCore(plain, [{ clockRate: 48000, codec: 'opus', payloadType: 111, kind: 'audio', extIds: new Map() }]);
    fwd2.addDownstream(ds);
    fwd2.joinFromCache(ds, 0, 0, () => false);
    beginInputBatch();
    try {
      expect(fwd2.ingest(0, rtp(107), 7)).toBeGreaterThanOrEqual(0);
      fwd2.fanout(0, notBatched);
      expect(addon!.stats(nat.id)![0]).toBe(8); // sent at once
    } finally {
      endInputBatch();
    }
    fwd2.removeDownstream(ds);
    nat.destroy();
  });
});
