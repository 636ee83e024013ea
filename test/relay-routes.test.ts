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

const OPUS = { clockRate: 48000, codec: 'opus', payloadType: 111, kind: 'audio', extIds: new Map() } as const;

/** What a fake downstream saw: full checks, checked results, routed and coalesced counts. */
interface Seen {
  checks: number;
  done: number[];
  routed: number;
  coalesced: [number, number];
}

/**
 * A native context sending to a fresh receiver, a fake downstream whose egress is that context,
 * and a forwarding core with the downstream joined. `got` collects what the receiver gets.
 */
async function routeSetup(sockets: dgram.Socket[]) {
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
  const seen: Seen = { checks: 0, done: [], routed: 0, coalesced: [0, 0] };
  const ds = {
    bindings: [{ track: 0, ssrc: 0xabcdef, payloadType: 111, clockRate: 48000, extIds: new Map() }],
    coreOuts: [] as number[],
    batchPrepare: () => (seen.checks++, nat.id),
    extMapOf: () => null,
    batchDone: (_t: number, res: number) => (seen.done.push(res), true),
    countRouted: (n: number) => void (seen.routed += n),
    countCoalesced: (sends: number, packets: number) => void (seen.coalesced = [seen.coalesced[0] + sends, seen.coalesced[1] + packets]),
    sendTranslated: () => false,
  } as unknown as Downstream;
  const join = (host: CoreHost): ForwardCore => {
    const fwd = new ForwardCore(host, [{ ...OPUS, extIds: new Map() }]);
    fwd.addDownstream(ds);
    fwd.joinFromCache(ds, 0, 0, () => false);
    return fwd;
  };
  /** Ingest packet `seq` at `now` and fan it out; every output must take the batched path. */
  const step = (fwd: ForwardCore, seq: number, now: number): void => {
    expect(fwd.ingest(0, rtp(seq), now)).toBeGreaterThanOrEqual(0);
    fwd.fanout(0, () => {
      throw new Error('every output should be batched');
    });
  };
  return { nat, ds, got, seen, join, step };
}

describe.skipIf(addon === null && process.env.CI !== 'true')('forwarding routes', () => {
  const sockets: dgram.Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  it('checks a downstream once per lease, again right after dropRoutes, and every packet is sent', async () => {
    const { nat, ds, got, seen, join, step } = await routeSetup(sockets);
    const fwd = join(new CoreHost(2, 4));
    let seq = 100;

    // 20 ms packets over 3 leases: one full check per lease.
    for (let now = 0; now < 3 * ROUTE_LEASE_MS; now += 20) step(fwd, seq++, now);
    expect(seen.checks).toBe(3);
    // A state change: the very next output is checked again.
    fwd.dropRoutes(ds);
    step(fwd, seq++, 3 * ROUTE_LEASE_MS);
    expect(seen.checks).toBe(4);
    step(fwd, seq++, 3 * ROUTE_LEASE_MS + 20);
    expect(seen.checks).toBe(4);

    const total = seq - 100;
    expect(seen.done.length + seen.routed).toBe(total);
    expect(seen.done.length).toBe(4);
    expect(seen.done.every((r) => r > 0)).toBe(true);
    for (let i = 0; i < 100 && got.length < total; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.length).toBe(total);
    fwd.removeDownstream(ds);
    nat.destroy();
  });

  it('in an input batch, outputs wait for its end and leave together; every one is accounted once', async () => {
    const { nat, ds, got, seen, join, step } = await routeSetup(sockets);
    const fwd = join(new CoreHost(2, 4));

    beginInputBatch();
    try {
      for (let i = 0; i < 6; i++) step(fwd, 100 + i, i);
      // Staged: nothing sent or accounted yet.
      expect(addon!.stats(nat.id)![0]).toBe(0);
      expect(seen.done.length + seen.routed).toBe(0);
    } finally {
      endInputBatch();
    }
    // The first output was checked (its result reaches batchDone), the other five went on the route.
    expect(seen.done).toEqual([112 + 16]);
    expect(seen.routed).toBe(5);
    expect(seen.coalesced).toEqual([1, 6]); // six equal packets, one send
    expect(nat.gso()).toEqual([1, 6]);
    for (let i = 0; i < 200 && got.length < 6; i++) await new Promise((r) => setTimeout(r, 5));
    expect(got.map((m) => m.length)).toEqual(new Array(6).fill(112 + 16));
    const seqs = got.map((m) => m.readUInt16BE(2));
    for (let i = 1; i < 6; i++) expect((seqs[i]! - seqs[0]!) & 0xffff).toBe(i); // in order

    // Outside a batch, every output leaves at once again.
    step(fwd, 106, 6);
    expect(addon!.stats(nat.id)![0]).toBe(7);
    expect(seen.routed).toBe(6);
    fwd.removeDownstream(ds);
    nat.destroy();
  });

  it('with CANOPY_GSO=0 a relay core never defers, even inside an input batch', async () => {
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
    const { nat, ds, seen, join, step } = await routeSetup(sockets);
    const fwd = join(plain);
    beginInputBatch();
    try {
      step(fwd, 100, 0);
      step(fwd, 101, 1);
      expect(addon!.stats(nat.id)![0]).toBe(2); // sent at once
    } finally {
      endInputBatch();
    }
    expect(seen.done.length + seen.routed).toBe(2);
    expect(nat.gso()).toEqual([0, 0]);
    fwd.removeDownstream(ds);
    nat.destroy();
  });
});
