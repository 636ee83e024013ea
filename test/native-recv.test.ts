/**
 * The addon's batched UDP reader (native/recv.c) and the socket takeover around it
 * (dgramReceiverOf): datagrams arrive in batches with their lengths and senders, oversized ones
 * are flagged, stopping is idempotent, and Node reads the socket again afterwards.
 * Under CI=true the addon must load (test/srtp-native.test.ts checks that too).
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeSrtp } from '../src/srtp/native.ts';
import { dgramReceiverOf } from '../src/srtp/udp.ts';
import { waitUntil } from './helpers/peers.ts';

const addon = nativeSrtp();

describe.skipIf(addon === null && process.env.CI !== 'true')('native batched UDP reader', () => {
  const sockets: dgram.Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });
  const socket = async (): Promise<dgram.Socket> => {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return s;
  };

  it('reads datagrams in batches with length and sender, flags oversized ones, and gives the socket back to Node', async () => {
    const a = addon!;
    const rx = await socket();
    const tx = await socket();
    const nodeGot: Buffer[] = [];
    rx.on('message', (m) => nodeGot.push(m));
    const recv = dgramReceiverOf(rx)!;
    expect(recv).not.toBeNull();
    const SLOT = a.RECV_SLOT;
    const META = a.RECV_META;
    const buf = new Uint8Array(32 * SLOT);
    const meta = new Int32Array(32 * META);
    const got: { len: number; port: number; family: number; truncated: number; addr: number; first: number }[] = [];
    let batches = 0;
    const h = a.recvStart(recv.fd, buf, meta, (count) => {
      batches++;
      for (let i = 0; i < count; i++) {
        const m = i * META;
        got.push({ len: meta[m]!, port: meta[m + 1]!, family: meta[m + 2]!, truncated: meta[m + 3]!, addr: meta[m + 4]! >>> 0, first: buf[i * SLOT]! });
      }
    });
    expect(recv.stop()).toBe(true);
    // 40 datagrams sent in one turn: at least two batches (32 per recvmmsg), none to Node.
    for (let i = 0; i < 40; i++) tx.send(Buffer.alloc(100 + i, i), rx.address().port, '127.0.0.1');
    tx.send(Buffer.alloc(SLOT + 100, 0xab), rx.address().port, '127.0.0.1'); // larger than a slot
    await waitUntil(() => got.length === 41, 3000, 'all datagrams through the native reader');
    expect(batches).toBeGreaterThanOrEqual(2);
    expect(nodeGot.length).toBe(0);
    for (let i = 0; i < 40; i++) {
      expect(got[i]).toEqual({ len: 100 + i, port: tx.address().port, family: 4, truncated: 0, addr: 0x7f000001, first: i });
    }
    expect(got[40]!.truncated).toBe(1);
    expect(got[40]!.len).toBe(SLOT);

    // Stopped: the reader is done for good, and Node reads the socket again.
    expect(a.recvStop(h)).toBe(true);
    expect(a.recvStop(h)).toBe(false);
    expect(recv.restart()).toBe(true);
    tx.send(Buffer.from('after'), rx.address().port, '127.0.0.1');
    await waitUntil(() => nodeGot.length === 1, 3000, 'Node reading again');
    expect(nodeGot[0]!.toString()).toBe('after');
    expect(got.length).toBe(41);
  });

  it('refuses bad arguments with a TypeError', async () => {
    const a = addon!;
    const rx = await socket();
    const fd = dgramReceiverOf(rx)!.fd;
    const buf = new Uint8Array(a.RECV_SLOT);
    const meta = new Int32Array(a.RECV_META);
    const cb = () => undefined;
    expect(() => a.recvStart(-1, buf, meta, cb)).toThrow(TypeError);
    expect(() => a.recvStart(fd, new Uint8Array(10), meta, cb)).toThrow(/at least one slot/);
    expect(() => a.recvStart(fd, buf, new Uint32Array(8) as unknown as Int32Array, cb)).toThrow(TypeError);
    expect(() => a.recvStart(fd, buf, meta, 'x' as unknown as () => void)).toThrow(TypeError);
    expect(() => a.recvStart(0x7ffff, buf, meta, cb)).toThrow(/not open/);
    expect(() => a.recvStop({})).toThrow(TypeError);
    const h = a.recvStart(fd, buf, meta, cb);
    expect(a.recvStop(h)).toBe(true);
  });
});
