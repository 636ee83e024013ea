import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { UDP_SENT, directUdp, udpSendError } from '../src/srtp/udp.ts';
import { RegionViews } from '../src/srtp/views.ts';

const sockets: dgram.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

async function bound(type: 'udp4' | 'udp6' = 'udp4'): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', r));
  return s;
}

describe('directUdp', () => {
  it('send delivers the exact bytes of the region, synchronously', async () => {
    const a = await bound();
    const b = await bound();
    const got: Buffer[] = [];
    b.on('message', (m) => got.push(m));
    const d = directUdp(a);
    expect(d).not.toBeNull();
    const buf = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
    for (let i = 0; i < 10; i++) {
      expect(d!.send(buf, 3 + i, 20, b.address().port, '127.0.0.1', () => {})).toBe(UDP_SENT);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((m) => [...m])).toEqual(Array.from({ length: 10 }, (_, i) => [...buf.subarray(3 + i, 23 + i)]));
  });

  it('returns null (use socket.send) for a host name, an address of the other family or a bad port', async () => {
    const a = await bound();
    const d = directUdp(a)!;
    const done = (): void => {};
    expect(d.send(Buffer.alloc(4), 0, 4, 9, 'localhost', done)).toBeNull();
    expect(d.send(Buffer.alloc(4), 0, 4, 9, '::1', done)).toBeNull();
    expect(d.send(Buffer.alloc(4), 0, 4, 0, '127.0.0.1', done)).toBeNull();
    expect(d.send(Buffer.alloc(4), 0, 4, 70000, '127.0.0.1', done)).toBeNull();
  });

  it('returns null once the socket is closed', async () => {
    const a = await bound();
    const d = directUdp(a)!;
    sockets.splice(sockets.indexOf(a), 1);
    a.close();
    expect(d.send(Buffer.alloc(4), 0, 4, 9, '127.0.0.1', () => {})).toBeNull();
  });

  it('is null for objects that are not dgram sockets', () => {
    expect(directUdp({ send() {} })).toBeNull();
  });

  it('reports a kernel refusal as a negative errno, mapped like dgram', async () => {
    const a = await bound();
    const d = directUdp(a)!;
    // An oversized datagram: EMSGSIZE from sendmsg.
    const r = d.send(Buffer.alloc(70_000), 0, 70_000, 9, '127.0.0.1', () => {});
    expect(r).toBeLessThan(0);
    const err = udpSendError(r!, '127.0.0.1', 9) as Error & { code: string; syscall: string };
    expect(err.code).toBe('EMSGSIZE');
    expect(err.syscall).toBe('send');
  });
});

describe('RegionViews', () => {
  it('returns the cached view while buffer, offset and length match, a fresh one otherwise', () => {
    const v = new RegionViews();
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    const x = v.of(a, 64, 100);
    expect(v.of(a, 64, 100)).toBe(x);
    expect(x.byteOffset).toBe(a.byteOffset + 64);
    expect(x.length).toBe(100);
    const y = v.of(a, 64, 90);
    expect(y).not.toBe(x);
    expect(y.length).toBe(90);
    const z = v.of(b, 64, 90);
    expect(z.buffer).toBe(b.buffer);
    expect(z.byteOffset).toBe(b.byteOffset + 64);
    const odd = v.of(a, 65, 10);
    expect(odd.byteOffset).toBe(a.byteOffset + 65);
  });
});
