/**
 * The native SRTP egress addon (native/srtp.c via src/srtp/native.ts) against RFC 3711 test
 * vectors, Node's own HMAC and byte for byte against SrtpCryptoContext, plus hostile input.
 * Under CI=true the addon must load: CI never passes on the JavaScript fallback silently.
 */
import { createCipheriv, createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeSrtp, nativeSrtpReason, NativeSrtpContext, BATCH_RECORD, BATCH_ROUTED } from '../src/srtp/native.ts';
import { SrtpCryptoContext } from '../src/srtp/context.ts';
import { deriveSessionKeys } from '../src/srtp/kdf.ts';
import { SRTP_AES128_CM_HMAC_SHA1_80, SRTP_AEAD_AES_128_GCM } from '../src/srtp/profile.ts';
import { SrtpStatus } from '../src/srtp/errors.ts';
import { udpDestinationOf } from '../src/srtp/udp.ts';
import { readDatagrams } from '../src/srtp/reader.ts';
import { mulberry32 } from '../src/util/random.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const addon = nativeSrtp();
const CM = SRTP_AES128_CM_HMAC_SHA1_80;
const GCM = SRTP_AEAD_AES_128_GCM;

/** createContext arguments for AES-CM with these RTP session keys (the SRTCP keys are filler). */
function cmArgs(key: Uint8Array, salt: Uint8Array, auth: Uint8Array): Parameters<NonNullable<typeof addon>['createContext']> {
  return [CM, key, salt, auth, Buffer.alloc(16, 9), Buffer.alloc(14, 9), Buffer.alloc(20, 9)];
}

describe('native SRTP addon availability', () => {
  it.runIf(process.env.CI === 'true')('is built and loads under CI (no silent fallback)', () => {
    expect(nativeSrtpReason()).toBe('');
    expect(addon).not.toBeNull();
    expect(addon!.openssl()).toMatch(/^OpenSSL \d/);
  });
});

/** An RTP packet: CSRCs, an RFC 8285 one-byte extension block, padding, random payload. */
function randomPacket(r: () => number, seq: number, ssrc: number): Buffer {
  const cc = r() < 0.3 ? (r() * 16) | 0 : 0;
  const ext = r() < 0.5 ? 1 + ((r() * 6) | 0) : 0; // extension words
  const pad = r() < 0.2 ? 1 + ((r() * 32) | 0) : 0;
  const sizes = [0, 1, 15, 16, 17, 160, 1100, 1200, 1400];
  const plen = r() < 0.6 ? sizes[(r() * sizes.length) | 0]! : (r() * 1400) | 0;
  const hlen = 12 + cc * 4 + (ext ? 4 + ext * 4 : 0);
  const b = Buffer.alloc(hlen + plen + pad);
  b[0] = 0x80 | (pad ? 0x20 : 0) | (ext ? 0x10 : 0) | cc;
  b[1] = (r() < 0.1 ? 0x80 : 0) | 96;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((r() * 2 ** 32) >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  let o = 12;
  for (let i = 0; i < cc; i++, o += 4) b.writeUInt32BE((r() * 2 ** 32) >>> 0, o);
  if (ext) {
    b.writeUInt16BE(0xbede, o);
    b.writeUInt16BE(ext, o + 2);
    o += 4;
    for (let i = 0; i < ext * 4; i++) b[o++] = (r() * 256) | 0;
  }
  for (; o < hlen + plen; o++) b[o] = (r() * 256) | 0;
  if (pad) b[b.length - 1] = pad;
  return b;
}

describe.skipIf(addon === null && process.env.CI !== 'true')('native AES_CM_128_HMAC_SHA1_80 protect', () => {
  it('RFC 3711 B.2: the encrypted zero payload is the AES-CM keystream (blocks 0, 1, 2)', () => {
    // Session key and salt of B.2; SSRC 0, ROC 0, SEQ 0: the counter blocks are exactly B.2's.
    const id = addon!.createContext(...cmArgs(hex('2B7E151628AED2A6ABF7158809CF4F3C'), hex('F0F1F2F3F4F5F6F7F8F9FAFBFCFD'), Buffer.alloc(20, 1)));
    try {
      const pkt = Buffer.alloc(12 + 48);
      pkt[0] = 0x80;
      const out = Buffer.alloc(pkt.length + 10);
      expect(addon!.protect(id, pkt, 0, pkt.length, out, 0)).toBe(pkt.length + 10);
      const block = (i: number): string => out.subarray(12 + i * 16, 12 + i * 16 + 16).toString('hex').toUpperCase();
      expect(block(0)).toBe('E03EAD0935C95E80E166B16DD92B4EB4');
      expect(block(1)).toBe('D23513162B02D0F72A43A2FE4A5F97AB');
      expect(block(2)).toBe('41E95B3BB0A2E8DD477901E4FCA894C0');
      // RFC 3711 §4.2: tag = first 80 bits of HMAC-SHA1(auth key, header || payload || ROC).
      const mac = createHmac('sha1', Buffer.alloc(20, 1)).update(out.subarray(0, pkt.length)).update(Buffer.alloc(4)).digest();
      expect(out.subarray(pkt.length).equals(mac.subarray(0, 10))).toBe(true);
    } finally {
      expect(addon!.destroyContext(id)).toBe(true);
    }
  });

  it('RFC 3711 B.3 keys: a context from the master key matches SrtpCryptoContext', () => {
    const mk = hex('E1F97A0D3E018BE0D64FA32C06DE4139');
    const ms = hex('0EC675AD498AFEEBB6960B3AABE6');
    const k = deriveSessionKeys(CM, mk, ms);
    expect(k.rtpKey.toString('hex').toUpperCase()).toBe('C61E7A93744F39EE10734AFE3FF7A087');
    const nat = new NativeSrtpContext(addon!, mk, ms);
    const js = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms });
    const pkt = randomPacket(mulberry32(3711), 1, 0xcafebabe);
    const a = Buffer.alloc(pkt.length + 10);
    const b = Buffer.alloc(pkt.length + 10);
    expect(nat.protectRtp(pkt, 0, pkt.length, a, 0)).toBe(js.protectRtp(pkt, 0, pkt.length, b, 0));
    expect(a.equals(b)).toBe(true);
    nat.destroy();
    nat.destroy();
  });

  it('equals SrtpCryptoContext byte for byte on 4000 seeded packets: CSRCs, extensions, padding, ROC rollover, retransmissions', () => {
    const r = mulberry32(20261206);
    const mk = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
    const ms = Buffer.from(Array.from({ length: 14 }, () => (r() * 256) | 0));
    const nat = new NativeSrtpContext(addon!, mk, ms);
    const js = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms });
    const ssrcs = [0x11111111, 0xdeadbeef, 0];
    const seqs = [65000, 65500, 100];
    const arena = new Uint8Array(8192);
    const outA = new Uint8Array(8192);
    const outB = new Uint8Array(8192);
    for (let i = 0; i < 4000; i++) {
      const s = (r() * ssrcs.length) | 0;
      let seq = seqs[s]!;
      if (r() < 0.08) seq = (seq - 1 - ((r() * 200) | 0)) & 0xffff; // a retransmission of an older packet
      else seqs[s] = seq = (seq + 1 + (r() < 0.05 ? (r() * 300) | 0 : 0)) & 0xffff;
      const pkt = randomPacket(r, seq, ssrcs[s]!);
      const off = (r() * 3000) | 0; // odd offsets as in WASM memory
      arena.set(pkt, off);
      const dOff = (r() * 3000) | 0;
      const na = nat.protectRtp(arena, off, pkt.length, outA, dOff);
      const nb = js.protectRtp(arena, off, pkt.length, outB, dOff);
      expect(na).toBe(nb);
      if (na > 0) expect(Buffer.from(outA.subarray(dOff, dOff + na)).equals(Buffer.from(outB.subarray(dOff, dOff + nb)))).toBe(true);
    }
    for (const ssrc of ssrcs) expect(nat.rocOf(ssrc)).toBe(js.rocOf(ssrc));
    expect(nat.rocOf(0x11111111)).toBeGreaterThanOrEqual(1); // the rollover was crossed
    expect(nat.rocOf(0x12345678)).toBeUndefined();
    nat.destroy();
  });

  it('protects in place like SrtpCryptoContext does', () => {
    const mk = Buffer.alloc(16, 3);
    const ms = Buffer.alloc(14, 4);
    const nat = new NativeSrtpContext(addon!, mk, ms);
    const js = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms });
    const r = mulberry32(77);
    for (let i = 0; i < 200; i++) {
      const pkt = randomPacket(r, i, 0x5555);
      const a = Buffer.alloc(pkt.length + 10);
      const b = Buffer.alloc(pkt.length + 10);
      pkt.copy(a);
      expect(nat.protectRtp(a, 0, pkt.length, a, 0)).toBe(js.protectRtp(pkt, 0, pkt.length, b, 0));
      expect(a.equals(b)).toBe(true);
    }
    nat.destroy();
  });

  it('returns the same status as SrtpCryptoContext for short, malformed and oversized packets, and writes nothing out of bounds', () => {
    const mk = Buffer.alloc(16, 9);
    const ms = Buffer.alloc(14, 8);
    const nat = new NativeSrtpContext(addon!, mk, ms);
    const js = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms });
    const cases: [string, Buffer, number][] = [
      ['empty', Buffer.alloc(0), 0],
      ['11 bytes', Buffer.alloc(11, 0x80), 11],
      ['version 0', Buffer.alloc(40), 40],
      ['version 3', Buffer.alloc(40, 0xc0), 40],
      ['CSRC count past the end', Buffer.from([0x8f, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]), 14],
      ['extension header past the end', Buffer.from([0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe]), 13],
      ['extension length past the end', Buffer.from([0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff, 1, 2]), 18],
    ];
    for (const [name, pkt, len] of cases) {
      const a = Buffer.alloc(100, 0xee);
      const b = Buffer.alloc(100, 0xee);
      const want = js.protectRtp(pkt, 0, len, b, 0);
      expect(want, name).toBeLessThan(0);
      expect(nat.protectRtp(pkt, 0, len, a, 0), name).toBe(want);
    }
    // Regions: offsets and lengths outside the buffers, output one byte too small.
    const pkt = randomPacket(mulberry32(5), 10, 0x77);
    const guard = Buffer.alloc(pkt.length + 10 + 16, 0xee);
    const dst = guard.subarray(8, 8 + pkt.length + 9);
    expect(nat.protectRtp(pkt, 0, pkt.length, dst, 0)).toBe(SrtpStatus.OutputTooSmall);
    expect(js.protectRtp(pkt, 0, pkt.length, dst, 0)).toBe(SrtpStatus.OutputTooSmall);
    expect(guard.subarray(0, 8).every((x) => x === 0xee) && guard.subarray(8 + pkt.length + 9).every((x) => x === 0xee)).toBe(true);
    expect(nat.protectRtp(pkt, 1, pkt.length, Buffer.alloc(2000), 0)).toBe(SrtpStatus.TooShort);
    expect(nat.protectRtp(pkt, -1, 20, Buffer.alloc(2000), 0)).toBe(SrtpStatus.TooShort);
    expect(nat.protectRtp(pkt, 0.5, 20, Buffer.alloc(2000), 0)).toBe(SrtpStatus.TooShort);
    expect(nat.protectRtp(pkt, 0, NaN, Buffer.alloc(2000), 0)).toBe(SrtpStatus.TooShort);
    expect(nat.protectRtp(pkt, 0, pkt.length, Buffer.alloc(2000), -5)).toBe(SrtpStatus.OutputTooSmall);
    expect(nat.protectRtp(pkt, 0, pkt.length, Buffer.alloc(2000), 1e12)).toBe(SrtpStatus.OutputTooSmall);
    // Partially overlapping regions are refused (in place or disjoint only).
    const ov = Buffer.alloc(pkt.length + 40);
    pkt.copy(ov, 0);
    expect(nat.protectRtp(ov, 0, pkt.length, ov, 4)).toBe(SrtpStatus.OutputTooSmall);
    // Larger than any datagram.
    const huge = Buffer.alloc(70_000);
    huge[0] = 0x80;
    expect(nat.protectRtp(huge, 0, huge.length, Buffer.alloc(70_100), 0)).toBe(SrtpStatus.OutputTooSmall);
    // A sequence number before the first one sent has no index (RFC 3711 Appendix A).
    const first = randomPacket(mulberry32(1), 10, 0x999);
    expect(nat.protectRtp(first, 0, first.length, Buffer.alloc(2000), 0)).toBeGreaterThan(0);
    const before = Buffer.from(first);
    before.writeUInt16BE(40000, 2);
    expect(nat.protectRtp(before, 0, before.length, Buffer.alloc(2000), 0)).toBe(SrtpStatus.IndexOutOfRange);
    nat.destroy();
    // A destroyed context refuses everything.
    expect(nat.protectRtp(pkt, 0, pkt.length, Buffer.alloc(2000), 0)).toBe(SrtpStatus.Closed);
    expect(nat.protectSend(pkt, 0, pkt.length)).toBe(SrtpStatus.Closed);
  });

  it('unprotectRtp in C agrees with JavaScript on seeded packets, tampering, wrong ROC and malformed input; failures leave dst untouched', () => {
    const r = mulberry32(4242);
    const mk = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
    const ms = Buffer.from(Array.from({ length: 14 }, () => (r() * 256) | 0));
    const tx = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms, native: false });
    const rxJs = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms, native: false });
    const rxNat = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms });
    const nat = new NativeSrtpContext(addon!, mk, ms);
    let seq = 65400;
    for (let i = 0; i < 2000; i++) {
      seq = (seq + 1) & 0xffff;
      const pkt = randomPacket(r, seq, 0x4444);
      const prot = Buffer.alloc(pkt.length + 10);
      expect(tx.protectRtp(pkt, 0, pkt.length, prot, 0)).toBe(pkt.length + 10);
      const k = r();
      if (k < 0.1) prot[(r() * prot.length) | 0]! ^= 1 << ((r() * 8) | 0); // a flipped bit anywhere
      else if (k < 0.15) prot.writeUInt16BE((seq + 30000) & 0xffff, 2); // header changed
      const a = Buffer.alloc(2000, 0xee);
      const b = Buffer.alloc(2000, 0xee);
      const na = rxNat.unprotectRtp(prot, 0, prot.length, a, 3);
      const nb = rxJs.unprotectRtp(prot, 0, prot.length, b, 3);
      expect(na).toBe(nb);
      if (na >= 0) expect(a.subarray(3, 3 + na).equals(pkt)).toBe(true);
      else expect(a.every((x) => x === 0xee)).toBe(true);
      // The raw entry point: the right ROC verifies only unmodified packets, a wrong ROC never.
      const roc = tx.rocOf(0x4444)!;
      if (k >= 0.15) {
        const c = Buffer.alloc(2000);
        expect(nat.unprotectRtp(prot, 0, prot.length, c, 0, (roc + 1) >>> 0)).toBe(SrtpStatus.AuthFailed);
      }
    }
    expect(rxNat.rocOf(0x4444)).toBe(rxJs.rocOf(0x4444));
    const c = Buffer.alloc(100);
    expect(nat.unprotectRtp(Buffer.alloc(21, 0x80), 0, 21, c, 0, 0)).toBe(SrtpStatus.TooShort);
    expect(nat.unprotectRtp(Buffer.alloc(40), 0, 40, c, 0, 0)).toBe(SrtpStatus.BadVersion);
    expect(nat.unprotectRtp(Buffer.alloc(40, 0x8f), 0, 40, c, 0, 0)).toBe(SrtpStatus.BadHeader);
    expect(nat.unprotectRtp(Buffer.alloc(40, 0x80), 0, 40, c, 90, 0)).toBe(SrtpStatus.OutputTooSmall);
    expect(nat.unprotectRtp(Buffer.alloc(40, 0x80), 0, 40, c, 0, -1)).toBe(SrtpStatus.IndexOutOfRange);
    expect(nat.unprotectRtp(Buffer.alloc(40, 0x80), 5, 40, c, 0, 0)).toBe(SrtpStatus.TooShort);
    nat.destroy();
  });

  it('refuses bad argument types with a TypeError and stale or forged context ids with Closed', () => {
    const a = addon!;
    expect(() => a.createContext(...cmArgs(Buffer.alloc(15), Buffer.alloc(14), Buffer.alloc(20)))).toThrow(TypeError);
    expect(() => a.createContext(...cmArgs('k' as unknown as Uint8Array, Buffer.alloc(14), Buffer.alloc(20)))).toThrow(TypeError);
    expect(() => (a.createContext as unknown as () => number)()).toThrow(TypeError);
    // Key shapes must match the profile: GCM has 12-byte salts and no auth keys; 2 is no profile.
    const k16 = Buffer.alloc(16);
    expect(() => a.createContext(GCM, k16, Buffer.alloc(14), Buffer.alloc(20), k16, Buffer.alloc(14), Buffer.alloc(20))).toThrow(TypeError);
    expect(() => a.createContext(CM, k16, Buffer.alloc(12), Buffer.alloc(0), k16, Buffer.alloc(12), Buffer.alloc(0))).toThrow(TypeError);
    expect(() => a.createContext(2 as typeof CM, k16, Buffer.alloc(14), Buffer.alloc(20), k16, Buffer.alloc(14), Buffer.alloc(20))).toThrow(TypeError);
    const id = a.createContext(...cmArgs(Buffer.alloc(16), Buffer.alloc(14), Buffer.alloc(20)));
    expect(() => a.protect(id, {} as Uint8Array, 0, 1, Buffer.alloc(1), 0)).toThrow(TypeError);
    expect(() => a.protect(id, new Uint16Array(8) as unknown as Uint8Array, 0, 1, Buffer.alloc(1), 0)).toThrow(TypeError);
    expect(() => a.protectSend(id, null as unknown as Uint8Array, 0, 1)).toThrow(TypeError);
    expect(() => a.sendBatch(Buffer.alloc(10), new Uint32Array(4) as unknown as Int32Array, 1)).toThrow(TypeError);
    expect(() => a.sendBatch(Buffer.alloc(10), new Int32Array(4), 2)).toThrow(TypeError);
    expect(() => a.setDestination(id, 3, 7 as unknown as string, 1)).toThrow(TypeError);
    for (const bad of [-1, 0, 1.5, NaN, 2 ** 31, id + 1, id ^ 0x10000, '1' as unknown as number]) {
      expect(a.protect(bad, Buffer.alloc(40, 0x80), 0, 40, Buffer.alloc(60), 0)).toBe(SrtpStatus.Closed);
    }
    expect(a.rocOf(id, -1)).toBe(-1);
    expect(a.stats(12345)).toBeNull();
    expect(a.destroyContext(id)).toBe(true);
    expect(a.destroyContext(id)).toBe(false);
    // The slot is reused with a new generation: the old id stays dead.
    const id2 = a.createContext(...cmArgs(Buffer.alloc(16), Buffer.alloc(14), Buffer.alloc(20)));
    expect(id2).not.toBe(id);
    expect(a.protect(id, Buffer.alloc(40, 0x80), 0, 40, Buffer.alloc(60), 0)).toBe(SrtpStatus.Closed);
    expect(a.protect(id2, Buffer.alloc(40, 0x80), 0, 40, Buffer.alloc(60), 0)).toBe(50);
    a.destroyContext(id2);
  });

  it('survives a bounded fuzz loop of random arguments and packets', () => {
    const a = addon!;
    const r = mulberry32(0xf00d);
    const live = a.liveContexts();
    const id = a.createContext(...cmArgs(Buffer.alloc(16, 1), Buffer.alloc(14, 2), Buffer.alloc(20, 3)));
    const gid = a.createContext(GCM, Buffer.alloc(16, 4), Buffer.alloc(12, 5), Buffer.alloc(0), Buffer.alloc(16, 6), Buffer.alloc(12, 7), Buffer.alloc(0));
    expect(a.setDestination(id, -1, '', 0)).toBe(0);
    const mem = new Uint8Array(4096);
    const out = new Uint8Array(4096);
    const desc = new Int32Array(16 * BATCH_RECORD);
    const num = (): number => {
      const k = r();
      if (k < 0.6) return (r() * 5000) | 0;
      if (k < 0.7) return -((r() * 5000) | 0);
      if (k < 0.8) return r() * 100;
      if (k < 0.9) return 2 ** 31 + r() * 2 ** 33;
      return [NaN, Infinity, -0, 4096, 4095][(r() * 5) | 0]!;
    };
    for (let i = 0; i < 20_000; i++) {
      for (let j = 0; j < 64; j++) mem[(r() * 4096) | 0] = (r() * 256) | 0;
      if (r() < 0.5) mem[(r() * 4096) | 0] = 0x80 | ((r() * 0x40) | 0);
      const k = (r() * 7) | 0;
      const ctx = (): number => (r() < 0.45 ? id : r() < 0.9 ? gid : num());
      let v: number;
      if (k === 5) v = a.protectRtcp(ctx(), mem, num(), num(), out, num(), num());
      else if (k === 6) v = a.unprotectRtcp(ctx(), mem, num(), num(), out, num());
      else if (k === 4) v = a.unprotect(ctx(), mem, num(), num(), out, num(), num());
      else if (k === 0) v = a.protect(ctx(), mem, num(), num(), out, num());
      else if (k === 1) v = a.protectSend(r() < 0.9 ? id : num(), mem, num(), num());
      else if (k === 2) v = a.sendRaw(r() < 0.9 ? id : num(), mem, num(), num());
      else {
        const n = (r() * 16) | 0;
        for (let j = 0; j < desc.length; j++) desc[j] = r() < 0.3 ? id : num();
        v = a.sendBatch(mem, desc, n, 0, 0, r() < 0.5);
        expect(v).toBe(0); // no destination: nothing can be sent (or staged)
        for (let j = 0; j < n; j++) expect(desc[j * BATCH_RECORD + 3]).toBeLessThan(0);
      }
      expect(Number.isInteger(v)).toBe(true);
      if (k === 1 || k === 2) expect(v).toBeLessThan(0);
    }
    expect(a.destroyContext(id)).toBe(true);
    expect(a.destroyContext(gid)).toBe(true);
    expect(a.liveContexts()).toBe(live);
  });

  it('connectTwin: sends leave from the same port on a connected twin, which receives the peer until the next setDestination', async () => {
    const wait = async (f: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 200 && !f(); i++) await new Promise((res) => setTimeout(res, 5));
      expect(f(), what).toBe(true);
    };
    const orig = dgram.createSocket('udp4'); // the relay's ICE socket (werift's)
    const peer = dgram.createSocket('udp4'); // the viewer
    const atOrig: Buffer[] = [];
    const atPeer: { m: Buffer; port: number }[] = [];
    orig.on('message', (m) => atOrig.push(m));
    peer.on('message', (m, ri) => atPeer.push({ m, port: ri.port }));
    await new Promise<void>((res) => orig.bind(0, '127.0.0.1', res));
    await new Promise<void>((res) => peer.bind(0, '127.0.0.1', res));
    const nat = new NativeSrtpContext(addon!, Buffer.alloc(16, 1), Buffer.alloc(12, 2), GCM);
    const atTwin: { m: Buffer; from: number; port: number }[] = [];
    let stop: (() => void) | undefined;
    try {
      expect(nat.connectTwin()).toBe(SrtpStatus.NotConnected); // no destination yet
      const dest = udpDestinationOf(orig, '127.0.0.1', peer.address().port)!;
      expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
      const fd = nat.connectTwin();
      expect(fd).toBeGreaterThanOrEqual(0);
      expect(nat.connectTwin()).toBe(SrtpStatus.NotConnected); // already connected
      stop = readDatagrams(fd, (m, from, port) => void atTwin.push({ m: Buffer.from(m), from, port }));
      expect(stop).toBeDefined();

      // Sent on the twin: the peer sees the original socket's port.
      expect(nat.sendRaw(Buffer.from('to-peer'), 0, 7)).toBe(7);
      await wait(() => atPeer.length === 1, 'datagram at the peer');
      expect(atPeer[0]!.m.toString()).toBe('to-peer');
      expect(atPeer[0]!.port).toBe(orig.address().port);

      // The peer's datagrams now reach the twin, not the original socket.
      peer.send('from-peer-1', orig.address().port, '127.0.0.1');
      await wait(() => atTwin.length === 1, 'datagram at the twin');
      expect(atTwin[0]!.m.toString()).toBe('from-peer-1');
      expect(atTwin[0]).toMatchObject({ from: 0x7f000001, port: peer.address().port });
      // Anyone else still reaches the original socket.
      const other = dgram.createSocket('udp4');
      await new Promise<void>((res) => other.bind(0, '127.0.0.1', res));
      other.send('from-other', orig.address().port, '127.0.0.1');
      await wait(() => atOrig.length === 1, 'datagram from a third socket at the original');
      other.close();

      // Reader stopped, destination set again: the twin is closed and the original receives the peer.
      stop!();
      stop = undefined;
      expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
      // (The reader's own descriptor closes in libuv's close phase: a datagram sent before that
      // lands on the closing twin and is lost, as any datagram may be; so keep sending.)
      const again = setInterval(() => peer.send('from-peer-2', orig.address().port, '127.0.0.1'), 5);
      await wait(() => atOrig.some((m) => m.toString() === 'from-peer-2'), 'the peer at the original socket again').finally(() => clearInterval(again));
      expect(atTwin.length).toBe(1);
      expect(nat.sendRaw(Buffer.from('again'), 0, 5)).toBe(5); // sendto on the original's dup
      await wait(() => atPeer.length === 2, 'second datagram at the peer');
      expect(atPeer[1]!.port).toBe(orig.address().port);

      nat.destroy();
      expect(nat.connectTwin()).toBe(SrtpStatus.Closed);
    } finally {
      stop?.();
      nat.destroy();
      orig.close();
      peer.close();
    }
  });

  it('protectSend, sendRaw and sendBatch put datagrams on a real UDP socket that SrtpCryptoContext unprotects', async () => {
    const mk = Buffer.alloc(16, 0x42);
    const ms = Buffer.alloc(14, 0x24);
    const rx = dgram.createSocket('udp4');
    const tx = dgram.createSocket('udp4');
    const got: Buffer[] = [];
    rx.on('message', (m) => got.push(m));
    await new Promise<void>((res) => rx.bind(0, '127.0.0.1', res));
    await new Promise<void>((res) => tx.bind(0, '127.0.0.1', res));
    const nat = new NativeSrtpContext(addon!, mk, ms);
    const nat2 = new NativeSrtpContext(addon!, mk, ms);
    try {
      expect(nat.protectSend(Buffer.alloc(40, 0x80), 0, 40)).toBe(SrtpStatus.NotConnected);
      const dest = udpDestinationOf(tx, '127.0.0.1', rx.address().port);
      expect(dest).not.toBeNull();
      expect(dest!.current()).toBe(true);
      expect(udpDestinationOf(tx, '::1', rx.address().port)).toBeNull(); // wrong family
      expect(nat.setDestination(dest!.fd, '999.1.1.1', dest!.port)).toBe(false);
      expect(nat.setDestination(dest!.fd, dest!.ip, dest!.port)).toBe(true);
      expect(nat2.setDestination(dest!.fd, dest!.ip, dest!.port)).toBe(true);
      const r = mulberry32(99);
      const sent: Buffer[] = [];
      for (let i = 0; i < 20; i++) {
        const p = randomPacket(r, 65530 + i, 0xabc);
        sent.push(p);
        expect(nat.protectSend(p, 0, p.length)).toBe(p.length + 10);
      }
      // One batch over an arena: two records for nat2 (another SSRC), one forged id.
      const arena = new Uint8Array(4000);
      const p1 = randomPacket(r, 7, 0xdef);
      const p2 = randomPacket(r, 8, 0xdef);
      arena.set(p1, 3);
      arena.set(p2, 2001);
      // The first record is routed (BATCH_ROUTED): its sender info is kept in C.
      const desc = Int32Array.from([nat2.id, 3, p1.length, BATCH_ROUTED, 77, 0, 12, 0, nat2.id, 2001, p2.length, 0]);
      expect(nat2.ssrcStats(0xdef)).toBeNull();
      expect(addon!.sendBatch(arena, desc, 3, 1000, 12345.5)).toBe(2);
      expect(desc[3]).toBe(p1.length + 10);
      expect(desc[7]).toBe(SrtpStatus.Closed);
      expect(desc[11]).toBe(p2.length + 10);
      expect(nat2.ssrcStats(0xdef)).toEqual({ packets: 1, octets: 1000, lastTs: p1.readUInt32BE(4), lastAt: 12345.5 });
      expect(nat2.routed()).toEqual([1, p1.length]);
      expect(() => addon!.sendBatch(arena, desc, 1, -1, 0)).toThrow(TypeError);
      const raw = Buffer.from('already protected');
      expect(nat.sendRaw(raw, 0, raw.length)).toBe(raw.length);
      const want = 20 + 2 + 1;
      for (let t = 0; t < 200 && got.length < want; t++) await new Promise((res) => setTimeout(res, 5));
      expect(got.length).toBe(want);
      const rxCtx = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms, native: false });
      const plain = Buffer.alloc(2000);
      const all = [...sent, p1, p2];
      for (let i = 0; i < all.length; i++) {
        const n = rxCtx.unprotectRtp(got[i]!, 0, got[i]!.length, plain, 0);
        expect(n).toBe(all[i]!.length);
        expect(plain.subarray(0, n).equals(all[i]!)).toBe(true);
      }
      expect(got[want - 1]!.toString()).toBe('already protected');
      expect(addon!.stats(nat.id)!.slice(0, 1)).toEqual([21]);
      expect(nat.rocOf(0xabc)).toBe(1);
      // A closed socket: dgram drops the handle, so the destination is no longer current. The
      // addon sends on its own dup() of the fd, so a stale route still reaches the old socket
      // (and its peer), never a descriptor number reused by something else.
      tx.close();
      expect(dest!.current()).toBe(false);
      const late = randomPacket(r, 9, 0xdef);
      expect(nat2.protectSend(late, 0, late.length)).toBe(late.length + 10);
      for (let t = 0; t < 200 && got.length < want + 1; t++) await new Promise((res) => setTimeout(res, 5));
      expect(got.length).toBe(want + 1);
      expect(nat2.setDestination(-1, '', 0)).toBe(true);
      expect(nat2.protectSend(late, 0, late.length)).toBe(SrtpStatus.NotConnected);
    } finally {
      nat.destroy();
      nat2.destroy();
      rx.close();
    }
  });
});

/** A compound RTCP packet: an SR (sender info) followed by a seeded number of extra bytes. */
function randomRtcp(r: () => number, ssrc: number): Buffer {
  const words = 6 + ((r() * 40) | 0);
  const b = Buffer.alloc(4 + words * 4);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(words, 2);
  b.writeUInt32BE(ssrc >>> 0, 4);
  for (let i = 8; i < b.length; i++) b[i] = (r() * 256) | 0;
  return b;
}

describe.skipIf(addon === null && process.env.CI !== 'true')('native AEAD_AES_128_GCM and SRTCP', () => {
  it('GCM RTP: the ciphertext and tag are AES-128-GCM with the RFC 7714 §8.1 IV and the header as AAD', () => {
    const r = mulberry32(7714);
    const mk = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
    const ms = Buffer.from(Array.from({ length: 12 }, () => (r() * 256) | 0));
    const k = deriveSessionKeys(GCM, mk, ms);
    const nat = new NativeSrtpContext(addon!, mk, ms, GCM);
    expect(nat.rtpOverhead).toBe(16);
    try {
      const pkt = randomPacket(mulberry32(1), 0x1234, 0xcafebabe);
      const out = Buffer.alloc(pkt.length + 16);
      expect(nat.protectRtp(pkt, 0, pkt.length, out, 0)).toBe(pkt.length + 16);
      // Oracle: Node's own GCM with IV = (0x0000 || SSRC || ROC || SEQ) XOR salt.
      const h = 12 + (pkt[0]! & 0x0f) * 4 + (pkt[0]! & 0x10 ? 4 + pkt.readUInt16BE(12 + (pkt[0]! & 0x0f) * 4 + 2) * 4 : 0);
      const iv = Buffer.alloc(12);
      iv.writeUInt32BE(0xcafebabe, 2);
      iv.writeUInt32BE(0, 6);
      iv.writeUInt16BE(0x1234, 10);
      for (let i = 0; i < 12; i++) iv[i]! ^= k.rtpSalt[i]!;
      const c = createCipheriv('aes-128-gcm', k.rtpKey, iv);
      c.setAAD(pkt.subarray(0, h));
      const body = Buffer.concat([c.update(pkt.subarray(h)), c.final(), c.getAuthTag()]);
      expect(out.subarray(0, h).equals(pkt.subarray(0, h))).toBe(true);
      expect(out.subarray(h).toString('hex')).toBe(body.toString('hex'));
    } finally {
      nat.destroy();
    }
  });

  it('GCM RTP equals the JavaScript context byte for byte (protect) and opens what it sealed; tampering fails and leaves dst untouched', () => {
    const r = mulberry32(20261206);
    const mk = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
    const ms = Buffer.from(Array.from({ length: 12 }, () => (r() * 256) | 0));
    const nat = new NativeSrtpContext(addon!, mk, ms, GCM);
    const js = new SrtpCryptoContext({ profile: GCM, masterKey: mk, masterSalt: ms, native: false });
    const rxJs = new SrtpCryptoContext({ profile: GCM, masterKey: mk, masterSalt: ms, native: false });
    const rxNat = new SrtpCryptoContext({ profile: GCM, masterKey: mk, masterSalt: ms });
    const outA = new Uint8Array(4096);
    const outB = new Uint8Array(4096);
    let seq = 65400;
    for (let i = 0; i < 1500; i++) {
      seq = (seq + 1) & 0xffff; // crosses the rollover: the ROC is part of the IV
      const pkt = randomPacket(r, seq, 0x7777);
      const na = nat.protectRtp(pkt, 0, pkt.length, outA, 3);
      const nb = js.protectRtp(pkt, 0, pkt.length, outB, 3);
      expect(na).toBe(nb);
      expect(Buffer.from(outA.subarray(3, 3 + na)).equals(Buffer.from(outB.subarray(3, 3 + nb)))).toBe(true);
      const prot = Buffer.from(outA.subarray(3, 3 + na));
      if (r() < 0.1) prot[(r() * prot.length) | 0]! ^= 1 << ((r() * 8) | 0);
      const dA = Buffer.alloc(prot.length, 0xee);
      const dB = Buffer.alloc(prot.length, 0xee);
      const ra = rxNat.unprotectRtp(prot, 0, prot.length, dA, 0);
      const rb = rxJs.unprotectRtp(prot, 0, prot.length, dB, 0);
      expect(ra).toBe(rb);
      expect(dA.equals(dB)).toBe(true);
      if (ra > 0) expect(dA.subarray(0, ra).equals(pkt)).toBe(true);
      else expect(dA.every((x) => x === 0xee)).toBe(true);
    }
    expect(nat.rocOf(0x7777)).toBe(1);
    nat.destroy();
  });

  for (const [name, profile, saltLen] of [['AES-CM', CM, 14], ['GCM', GCM, 12]] as const) {
    it(`${name} SRTCP: native protectRtcp equals JavaScript byte for byte, and both sides open each other's packets`, () => {
      const r = mulberry32(profile * 1000 + 3);
      const mk = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
      const ms = Buffer.from(Array.from({ length: saltLen }, () => (r() * 256) | 0));
      const nat = new NativeSrtpContext(addon!, mk, ms, profile);
      expect(nat.rtcpOverhead).toBe(profile === GCM ? 20 : 14);
      const js = new SrtpCryptoContext({ profile, masterKey: mk, masterSalt: ms, native: false, srtcpIndex: () => index });
      const viaNative = new SrtpCryptoContext({ profile, masterKey: mk, masterSalt: ms, srtcpIndex: () => index });
      const rxJs = new SrtpCryptoContext({ profile, masterKey: mk, masterSalt: ms, native: false });
      const rxNat = new SrtpCryptoContext({ profile, masterKey: mk, masterSalt: ms });
      let index = 0;
      try {
        for (let i = 0; i < 600; i++) {
          index = i === 599 ? 0x7fffffff : i + 1;
          const pkt = randomRtcp(r, 0x100 + (i % 3));
          const a = Buffer.alloc(pkt.length + nat.rtcpOverhead);
          const b = Buffer.alloc(pkt.length + nat.rtcpOverhead);
          const c = Buffer.alloc(pkt.length + nat.rtcpOverhead);
          expect(nat.protectRtcp(pkt, 0, pkt.length, a, 0, index)).toBe(a.length);
          expect(js.protectRtcp(pkt, 0, pkt.length, b, 0)).toBe(b.length);
          expect(viaNative.protectRtcp(pkt, 0, pkt.length, c, 0)).toBe(c.length);
          expect(a.toString('hex')).toBe(b.toString('hex'));
          expect(c.equals(b)).toBe(true);
          const rx = i % 2 === 0 ? rxNat : rxJs;
          const d = Buffer.alloc(pkt.length, 0xee);
          if (i % 7 === 3) {
            a[(r() * a.length) | 0]! ^= 0x10; // tampered anywhere (header, body, index or tag)
            expect(rx.unprotectRtcp(a, 0, a.length, d, 0)).toBe(SrtpStatus.AuthFailed);
            expect(d.every((x) => x === 0xee)).toBe(true);
          } else {
            expect(rx.unprotectRtcp(a, 0, a.length, d, 0)).toBe(pkt.length);
            expect(d.equals(pkt)).toBe(true);
            // The same packet again is a replay (the window is the JavaScript context's).
            expect(rx.unprotectRtcp(a, 0, a.length, d, 0)).toBe(SrtpStatus.Replay);
          }
        }
        // Malformed SRTCP: short, wrong version, output too small.
        const d = Buffer.alloc(64);
        expect(nat.unprotectRtcp(Buffer.alloc(10, 0x80), 0, 10, d, 0)).toBe(SrtpStatus.TooShort);
        expect(nat.unprotectRtcp(Buffer.alloc(40, 0x40), 0, 40, d, 0)).toBe(SrtpStatus.BadVersion);
        expect(nat.unprotectRtcp(Buffer.alloc(40, 0x80), 0, 40, d, 60)).toBe(SrtpStatus.OutputTooSmall);
        expect(nat.protectRtcp(Buffer.alloc(4, 0x80), 0, 4, d, 0, 1)).toBe(SrtpStatus.TooShort);
        expect(nat.protectRtcp(Buffer.alloc(60, 0x80), 0, 60, d, 0, 1)).toBe(SrtpStatus.OutputTooSmall);
        expect(nat.protectRtcp(Buffer.alloc(20, 0x80), 0, 20, d, 0, -1)).toBe(SrtpStatus.IndexOutOfRange);
      } finally {
        nat.destroy();
      }
    });
  }
});

describe.skipIf(addon === null && process.env.CI !== 'true')('native HMAC-SHA1 (STUN MESSAGE-INTEGRITY)', () => {
  it("equals Node's HMAC-SHA1 for keys up to and past the block size, any region; bad regions and types are refused", () => {
    const a = addon!;
    const r = mulberry32(2104);
    const rnd = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => (r() * 256) | 0));
    // RFC 2202 §3 test case 2: key "Jefe", "what do ya want for nothing?".
    const out = Buffer.alloc(24, 0xee);
    expect(a.hmacSha1(Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?'), 0, 28, out, 2)).toBe(20);
    expect(out.subarray(2, 22).toString('hex')).toBe('effcdf6ae5eb2fa2d27416d5f184df9c259a7c79');
    expect(out[0]).toBe(0xee);
    expect(out[22]).toBe(0xee);
    for (const klen of [0, 1, 20, 22, 63, 64, 65, 80, 200]) {
      for (let i = 0; i < 20; i++) {
        const key = rnd(klen);
        const data = rnd(1 + ((r() * 600) | 0));
        const off = (r() * data.length) | 0;
        const len = (r() * (data.length - off + 1)) | 0;
        const mac = Buffer.alloc(20);
        expect(a.hmacSha1(key, data, off, len, mac, 0)).toBe(20);
        expect(mac.equals(createHmac('sha1', key).update(data.subarray(off, off + len)).digest())).toBe(true);
      }
    }
    const d = Buffer.alloc(32);
    expect(a.hmacSha1(d, d, 10, 30, Buffer.alloc(20), 0)).toBe(SrtpStatus.TooShort);
    expect(a.hmacSha1(d, d, -1, 3, Buffer.alloc(20), 0)).toBe(SrtpStatus.TooShort);
    expect(a.hmacSha1(d, d, 0, 3, Buffer.alloc(20), 1)).toBe(SrtpStatus.TooShort);
    expect(a.hmacSha1(d, d, 0, 3, Buffer.alloc(19), 0)).toBe(SrtpStatus.TooShort);
    expect(() => a.hmacSha1('key' as unknown as Uint8Array, d, 0, 3, Buffer.alloc(20), 0)).toThrow(TypeError);
    expect(() => (a.hmacSha1 as unknown as (...x: unknown[]) => number)(d, d, 0)).toThrow(TypeError);
  });
});

/** An RTP packet with `payload` bytes of payload (value derived from seq) and no extensions. */
function sized(seq: number, ssrc: number, payload: number): Buffer {
  const b = Buffer.alloc(12 + payload, seq & 0xff);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(seq * 3000, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

describe.skipIf(addon === null && process.env.CI !== 'true')('native deferred sends (UDP GSO)', () => {
  const mk = Buffer.alloc(16, 0x42);
  const ms = Buffer.alloc(14, 0x24);
  const sockets: dgram.Socket[] = [];
  const contexts: NativeSrtpContext[] = [];
  const results = new Int32Array(addon?.STAGE_RECORDS ?? 1);
  afterEach(() => {
    addon?.flushSends(results); // nothing stays staged into the next test
    for (const c of contexts.splice(0)) c.destroy();
    for (const s of sockets.splice(0)) s.close();
  });

  async function socket(): Promise<{ s: dgram.Socket; got: Buffer[] }> {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    const got: Buffer[] = [];
    s.on('message', (m) => got.push(m));
    await new Promise<void>((res) => s.bind(0, '127.0.0.1', res));
    return { s, got };
  }
  /** A native context sending from tx to rx. */
  function context(tx: dgram.Socket, rx: dgram.Socket): NativeSrtpContext {
    const nat = new NativeSrtpContext(addon!, mk, ms);
    contexts.push(nat);
    const dest = udpDestinationOf(tx, '127.0.0.1', rx.address().port)!;
    expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
    return nat;
  }
  async function receive(got: Buffer[], n: number): Promise<void> {
    for (let t = 0; t < 200 && got.length < n; t++) await new Promise((res) => setTimeout(res, 5));
    expect(got.length).toBe(n);
  }
  /** Each datagram decrypts to the packet sent in the same position. */
  function expectPackets(got: Buffer[], sent: Buffer[]): void {
    const rx = new SrtpCryptoContext({ profile: CM, masterKey: mk, masterSalt: ms, native: false });
    const plain = Buffer.alloc(2000);
    expect(got.length).toBe(sent.length);
    for (let i = 0; i < sent.length; i++) {
      const n = rx.unprotectRtp(got[i]!, 0, got[i]!.length, plain, 0);
      expect(n, `datagram ${i}`).toBe(sent[i]!.length);
      expect(plain.subarray(0, n).equals(sent[i]!), `datagram ${i}`).toBe(true);
    }
  }

  it("stages fan-out records and sends each context's packets in order at flushSends, equal sizes in one GSO send", async () => {
    const tx = await socket();
    const a = await socket();
    const b = await socket();
    const natA = context(tx.s, a.s);
    const natB = context(tx.s, b.s);
    // Per fan-out one packet for each context, as a relay's fan-out of one upstream packet.
    // A: three of 1100, one of 700 (ends the first run), three of 1100; B: five of 500.
    const sizesA = [1100, 1100, 1100, 700, 1100, 1100, 1100];
    const sentA: Buffer[] = [];
    const sentB: Buffer[] = [];
    const arena = new Uint8Array(4096);
    const desc = new Int32Array(2 * BATCH_RECORD);
    for (let i = 0; i < sizesA.length; i++) {
      const pa = sized(100 + i, 0xa, sizesA[i]!);
      sentA.push(pa);
      arena.set(pa, 0);
      desc.set([natA.id, 0, pa.length, BATCH_ROUTED], 0);
      let k = 1;
      if (i < 5) {
        const pb = sized(200 + i, 0xb, 500);
        sentB.push(pb);
        arena.set(pb, 2048);
        desc.set([natB.id, 2048, pb.length, 0], BATCH_RECORD);
        k = 2;
      }
      expect(addon!.sendBatch(arena, desc, k, 1000, 50 + i, true)).toBe(k);
      expect(desc[3]).toBe(0); // staged
      if (k === 2) expect(desc[7]).toBe(0);
    }
    // Nothing left yet, and a routed record's sender info waits for its send.
    expect(addon!.stats(natA.id)![0]).toBe(0);
    expect(natA.ssrcStats(0xa)).toEqual({ packets: 0, octets: 0, lastTs: 0, lastAt: 0 });

    const gso = new Int32Array(2);
    expect(addon!.flushSends(results, gso)).toBe(12);
    // In staging order: A0 B0 A1 B1 ... A4 B4 A5 A6, each its protected length.
    const order = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6].map((i, j) => (j < 10 ? (j % 2 === 0 ? sentA[i]! : sentB[i]!) : sentA[i]!));
    for (let j = 0; j < 12; j++) expect(results[j], `record ${j}`).toBe(order[j]!.length + 10);
    // A: 1100 x3 + 700 in one send, 1100 x3 in another; B: 500 x5 in one.
    expect([...gso]).toEqual([3, 12]);
    expect(natA.gso()).toEqual([2, 7]);
    expect(natB.gso()).toEqual([1, 5]);
    expect(natA.ssrcStats(0xa)).toEqual({ packets: 7, octets: 7000, lastTs: sentA[6]!.readUInt32BE(4), lastAt: 56 });
    expect(natA.routed()).toEqual([7, sentA.reduce((n, p) => n + p.length, 0)]);
    expect(natB.routed()).toEqual([0, 0]);
    await receive(a.got, 7);
    await receive(b.got, 5);
    expectPackets(a.got, sentA);
    expectPackets(b.got, sentB);
    expect(addon!.flushSends(results, gso)).toBe(0);
    expect([...gso]).toEqual([0, 0]);
  });

  it('a staged packet leaves before a later send on its context, a new destination or destroy', async () => {
    const tx = await socket();
    const a = await socket();
    const b = await socket();
    const nat = context(tx.s, a.s);
    const arena = new Uint8Array(2048);
    const desc = new Int32Array(BATCH_RECORD);
    const stage = (p: Buffer, id = nat.id): number => {
      arena.set(p, 0);
      desc.set([id, 0, p.length, 0]);
      addon!.sendBatch(arena, desc, 1, 0, 0, true);
      return desc[3]!;
    };
    const p = [0, 1, 2, 3, 4, 5].map((i) => sized(10 + i, 0xc, 300));
    expect(stage(p[0]!)).toBe(0);
    expect(stage(p[1]!)).toBe(0);
    expect(nat.protectSend(p[2]!, 0, p[2]!.length)).toBe(p[2]!.length + 10);
    expect(addon!.stats(nat.id)![0]).toBe(3); // the two staged went first
    // A new destination: what was staged goes to the old one.
    expect(stage(p[3]!)).toBe(0);
    const dest = udpDestinationOf(tx.s, '127.0.0.1', b.s.address().port)!;
    expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
    expect(stage(p[4]!)).toBe(0);
    nat.destroy(); // accepted packets still leave
    expect(stage(p[5]!)).toBe(SrtpStatus.Closed); // not staged
    expect(addon!.flushSends(results)).toBe(4);
    expect([...results.subarray(0, 4)]).toEqual([p[0]!, p[1]!, p[3]!, p[4]!].map((x) => x.length + 10));
    await receive(a.got, 4);
    await receive(b.got, 1);
    expectPackets(a.got, p.slice(0, 4));
    expectPackets(b.got, [p[4]!]);
    // No destination: refused at once, nothing staged.
    const lone = new NativeSrtpContext(addon!, mk, ms);
    contexts.push(lone);
    expect(stage(p[0]!, lone.id)).toBe(SrtpStatus.NotConnected);
    expect(addon!.flushSends(results)).toBe(0);
  });

  it('a failed GSO send is retried one packet per call, so each record gets its own result', async () => {
    // A twin connected to a port nobody listens on: each datagram draws an ICMP port unreachable
    // (on loopback before send() returns), which the next send on the twin reports as ECONNREFUSED.
    const orig = await socket();
    const gone = await socket();
    const port = gone.s.address().port;
    gone.s.close();
    sockets.splice(sockets.indexOf(gone.s), 1);
    const nat = new NativeSrtpContext(addon!, mk, ms);
    contexts.push(nat);
    const dest = udpDestinationOf(orig.s, '127.0.0.1', port)!;
    expect(nat.setDestination(dest.fd, dest.ip, dest.port)).toBe(true);
    expect(nat.connectTwin()).toBeGreaterThanOrEqual(0);
    expect(nat.sendRaw(Buffer.from('x'), 0, 1)).toBe(1); // its ICMP error is now pending
    const arena = new Uint8Array(4096);
    const desc = new Int32Array(4 * BATCH_RECORD);
    for (let j = 0; j < 4; j++) {
      const p = sized(j, 0xf, 500);
      arena.set(p, j * 1024);
      desc.set([nat.id, j * 1024, p.length, 0], j * BATCH_RECORD);
    }
    expect(addon!.sendBatch(arena, desc, 4, 0, 0, true)).toBe(4);
    expect(addon!.flushSends(results)).toBe(4);
    const res = [...results.subarray(0, 4)];
    // Each record: sent (its protected length) or SendFailed, one send each; the failed GSO
    // attempt itself is not counted.
    // (On loopback: 522, SendFailed, 522, SendFailed, as each send draws a new ICMP error.)
    for (const r of res) expect([512 + 10, SrtpStatus.SendFailed]).toContain(r);
    expect(res).toContain(SrtpStatus.SendFailed);
    expect(res).toContain(512 + 10); // not all dropped with the failed GSO send
    const [sent, , queueFull, sendErrors, errno] = addon!.stats(nat.id)!;
    expect(sent! + sendErrors!).toBe(1 + 4);
    expect(sendErrors).toBe(res.filter((r) => r === SrtpStatus.SendFailed).length);
    expect(queueFull).toBe(0);
    expect(errno).toBe(111); // ECONNREFUSED
    expect(nat.gso()).toEqual([0, 0]);
  });

  it('bounds what waits: a full stage is sent early, past STAGE_RECORDS records go at once; bad arguments still flush', async () => {
    const tx = await socket();
    const a = await socket();
    const nat = context(tx.s, a.s);
    const cap = addon!.STAGE_RECORDS;
    expect(cap).toBeGreaterThanOrEqual(64);
    // 1000-byte packets: the 1 MiB stage fills several times before the table does.
    const per = 64;
    const arena = new Uint8Array(per * 1024);
    const desc = new Int32Array(per * BATCH_RECORD);
    let seq = 0;
    let staged = 0;
    let immediate = 0;
    for (let round = 0; staged + immediate < cap + 10; round++) {
      const k = Math.min(per, cap + 10 - staged - immediate);
      for (let j = 0; j < k; j++) {
        const p = sized(seq++, 0xd, 988);
        arena.set(p, j * 1024);
        desc.set([nat.id, j * 1024, p.length, 0], j * BATCH_RECORD);
      }
      expect(addon!.sendBatch(arena, desc, k, 0, 0, true)).toBe(k);
      for (let j = 0; j < k; j++) {
        const r = desc[j * BATCH_RECORD + 3]!;
        if (r === 0) staged++;
        else {
          expect(r).toBe(1000 + 10);
          immediate++;
        }
      }
    }
    expect(staged).toBe(cap);
    expect(immediate).toBe(10);
    // Stage-full flushes already sent most of them; the rest leave now.
    expect(addon!.stats(nat.id)![0]).toBeGreaterThan(immediate);
    expect(addon!.flushSends(results)).toBe(cap);
    expect(results.every((r) => r === 1010)).toBe(true);
    expect(addon!.stats(nat.id)![0]).toBe(cap + 10);
    expect(nat.rocOf(0xd)).toBe(0);

    // A bad results argument throws, but nothing stays staged.
    const p = sized(1, 0xe, 100);
    arena.set(p, 0);
    desc.set([nat.id, 0, p.length, 0]);
    addon!.sendBatch(arena, desc, 1, 0, 0, true);
    expect(() => addon!.flushSends(null as unknown as Int32Array)).toThrow(TypeError);
    expect(addon!.stats(nat.id)![0]).toBe(cap + 11);
    expect(addon!.flushSends(results)).toBe(0);
    expect(() => addon!.sendBatch(arena, desc, 1, 0, 0, 'yes' as unknown as boolean)).toThrow(TypeError);
  });
});
