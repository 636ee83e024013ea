/**
 * The AssemblyScript HMAC-SHA1 of assembly/srtp.ts (compiled here on its own, so this does not
 * depend on the core build) against Node's createHmac, and SRTP contexts on the WASM engine
 * against the Node engine and werift.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import asc from 'assemblyscript/asc';
import { beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket, SrtpSession } from 'werift';
import {
  HmacSha1x80,
  SRTP_AES128_CM_HMAC_SHA1_80,
  SrtpCryptoContext,
  SrtpOptionsError,
  TagBatch,
  WasmHmacEngine,
  coreHmacEngine,
} from '../src/srtp/index.ts';
import { mulberry32 as rng } from '../src/util/random.ts';

let engine: WasmHmacEngine;

beforeAll(async () => {
  const source = readFileSync(new URL('../assembly/srtp.ts', import.meta.url), 'utf8');
  const res = await asc.compileString({ 'srtp.ts': source }, { optimizeLevel: 3, runtime: 'stub', enable: ['simd', 'bulk-memory'] });
  if (res.error || !res.binary) throw new Error(`assembly/srtp.ts does not compile: ${res.error?.message} ${res.stderr.toString()}`);
  engine = new WasmHmacEngine(new WebAssembly.Module(new Uint8Array(res.binary)));
}, 60_000);


describe('WasmHmacEngine (assembly/srtp.ts)', () => {
  it('matches createHmac for every length 0..300 and around the padding and size limits', () => {
    const r = rng(3);
    const key = Buffer.from(Array.from({ length: 20 }, () => (r() * 256) | 0));
    const h = new HmacSha1x80(key, engine);
    expect(h.engine).toBe('wasm');
    const lengths = [...Array(301).keys(), 1100, 1104, 4091, 4092, 4095, 4096, 5000];
    const data = Buffer.from(Array.from({ length: 5100 }, () => (r() * 256) | 0));
    const out = Buffer.alloc(16);
    for (const len of lengths) {
      const off = len % 7;
      for (const tail of [-1, 0x01020304]) {
        h.tag(data, off, len, tail, out, 3);
        const ref = createHmac('sha1', key).update(data.subarray(off, off + len));
        if (tail >= 0) ref.update(Buffer.from([1, 2, 3, 4]));
        expect(out.subarray(3, 13).toString('hex'), `len ${len} tail ${tail}`).toBe(ref.digest().subarray(0, 10).toString('hex'));
      }
    }
  });

  it('keeps per-key states apart when several keys share the engine', () => {
    const k1 = randomBytes(20);
    const k2 = randomBytes(20);
    const h1 = new HmacSha1x80(k1, engine);
    const h2 = new HmacSha1x80(k2, engine);
    const msg = randomBytes(500);
    const o1 = Buffer.alloc(10);
    const o2 = Buffer.alloc(10);
    h1.tag(msg, 0, 500, 7, o1, 0);
    h2.tag(msg, 0, 500, 7, o2, 0);
    const w = Buffer.from([0, 0, 0, 7]);
    expect(o1.equals(createHmac('sha1', k1).update(msg).update(w).digest().subarray(0, 10))).toBe(true);
    expect(o2.equals(createHmac('sha1', k2).update(msg).update(w).digest().subarray(0, 10))).toBe(true);
  });

  it('the core build, when it has the srtp exports, gives the same tags', () => {
    const core = coreHmacEngine();
    const key = randomBytes(20);
    const msg = randomBytes(1104);
    const a = Buffer.alloc(10);
    const b = Buffer.alloc(10);
    new HmacSha1x80(key, core ?? 'node').tag(msg, 0, 1104, 9, a, 0);
    new HmacSha1x80(key, engine).tag(msg, 0, 1104, 9, b, 0);
    expect(a.equals(b)).toBe(true);
  });
});

describe('TagBatch (four messages per SIMD pass)', () => {
  it('writes the same tags as createHmac for full groups, partial groups, mixed lengths, tails and keys', () => {
    expect(engine.hasX4).toBe(true);
    const r = rng(21);
    const keys = Array.from({ length: 6 }, () => Buffer.from(Array.from({ length: 20 }, () => (r() * 256) | 0)));
    const hs = keys.map((k) => new HmacSha1x80(k, engine));
    const node = new HmacSha1x80(keys[0]!, 'node');
    const batch = new TagBatch();
    const items: { key: Buffer; buf: Buffer; off: number; len: number; tail: number }[] = [];
    const lengths = [1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 64, 64, 64, 64, 0, 55, 56, 119, 120, 1100, 4093, 4100];
    for (let i = 0; i < lengths.length; i++) {
      const len = lengths[i]!;
      const tail = i % 7 === 6 ? -1 : (r() * 2 ** 32) >>> 0;
      const off = (i * 13) % 5;
      const buf = Buffer.alloc(off + len + 10);
      for (let j = 0; j < off + len; j++) buf[j] = (r() * 256) | 0;
      const k = i % keys.length;
      items.push({ key: keys[k]!, buf, off, len, tail });
      batch.add(i === 3 ? node : hs[k]!, buf, off, len, tail);
    }
    expect(batch.size).toBeGreaterThan(8);
    batch.flush();
    expect(batch.size).toBe(0);
    for (const [i, it] of items.entries()) {
      const ref = createHmac('sha1', i === 3 ? keys[0]! : it.key).update(it.buf.subarray(it.off, it.off + it.len));
      if (it.tail >= 0) ref.update(Buffer.from([it.tail >>> 24, (it.tail >>> 16) & 255, (it.tail >>> 8) & 255, it.tail & 255]));
      expect(it.buf.subarray(it.off + it.len, it.off + it.len + 10).toString('hex'), `item ${i} len ${it.len}`).toBe(ref.digest().subarray(0, 10).toString('hex'));
    }
  });

  it('with a core build older than the four-lane HMAC, add() computes each tag at once', async () => {
    const source = readFileSync(new URL('../assembly/srtp.ts', import.meta.url), 'utf8');
    const cut = source.indexOf('// ---- four messages at once');
    expect(cut).toBeGreaterThan(0);
    const res = await asc.compileString({ 'srtp.ts': source.slice(0, cut) }, { optimizeLevel: 1, runtime: 'stub', enable: ['simd', 'bulk-memory'] });
    expect(res.error).toBeNull();
    const old = new WasmHmacEngine(new WebAssembly.Module(new Uint8Array(res.binary!)));
    expect(old.hasX4).toBe(false);
    const key = randomBytes(20);
    const h = new HmacSha1x80(key, old);
    const batch = new TagBatch();
    const bufs = Array.from({ length: 5 }, () => randomBytes(310));
    for (const b of bufs) batch.add(h, b, 0, 300, 77);
    expect(batch.size).toBe(0); // nothing deferred: tags already written
    for (const b of bufs) {
      const ref = createHmac('sha1', key).update(b.subarray(0, 300)).update(Buffer.from([0, 0, 0, 77])).digest();
      expect(b.subarray(300, 310).equals(ref.subarray(0, 10))).toBe(true);
    }
  }, 60_000);

  it('protectRtp with a batch gives the same packets as without, once flushed', () => {
    const r = rng(31);
    const ctxs = Array.from({ length: 7 }, () =>
      new SrtpCryptoContext({
        profile: SRTP_AES128_CM_HMAC_SHA1_80,
        masterKey: Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0)),
        masterSalt: Buffer.from(Array.from({ length: 14 }, () => (r() * 256) | 0)),
        hmac: engine,
      }),
    );
    // The same keys again (same seed), protected without a batch on the Node engine.
    const r2 = rng(31);
    const plain = Array.from({ length: 7 }, () =>
      new SrtpCryptoContext({
        profile: SRTP_AES128_CM_HMAC_SHA1_80,
        masterKey: Buffer.from(Array.from({ length: 16 }, () => (r2() * 256) | 0)),
        masterSalt: Buffer.from(Array.from({ length: 14 }, () => (r2() * 256) | 0)),
        hmac: 'node',
      }),
    );
    const batch = new TagBatch();
    const pkt = Buffer.alloc(1112);
    pkt[0] = 0x80;
    pkt[1] = 96;
    pkt.writeUInt32BE(0x1234, 8);
    for (let j = 12; j < pkt.length; j++) pkt[j] = (r() * 256) | 0;
    const outs = ctxs.map(() => Buffer.alloc(1200));
    const refs = ctxs.map(() => Buffer.alloc(1200));
    for (let seq = 0; seq < 20; seq++) {
      pkt.writeUInt16BE((65530 + seq) & 0xffff, 2);
      const ns = ctxs.map((c, i) => c.protectRtp(pkt, 0, pkt.length, outs[i]!, 0, batch));
      plain.forEach((c, i) => c.protectRtp(pkt, 0, pkt.length, refs[i]!, 0));
      batch.flush();
      for (let i = 0; i < ctxs.length; i++) expect(outs[i]!.subarray(0, ns[i]).equals(refs[i]!.subarray(0, ns[i])), `ctx ${i} seq ${seq}`).toBe(true);
    }
  });
});

describe('SrtpCryptoContext on the WASM HMAC engine', () => {
  it('protects byte-identically to the Node engine and werift, and unprotects werift\'s packets', () => {
    const r = rng(11);
    const key = Buffer.from(Array.from({ length: 16 }, () => (r() * 256) | 0));
    const salt = Buffer.from(Array.from({ length: 14 }, () => (r() * 256) | 0));
    const profile = SRTP_AES128_CM_HMAC_SHA1_80;
    const wasm = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt, hmac: engine });
    const node = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt, hmac: 'node' });
    const rx = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt, hmac: engine });
    expect(wasm.hmacEngine).toBe('wasm');
    expect(node.hmacEngine).toBe('node');
    const werift = new SrtpSession({ profile, keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: key, remoteMasterSalt: salt } });
    const a = Buffer.alloc(2000);
    const b = Buffer.alloc(2000);
    for (let i = 0; i < 100; i++) {
      const pkt = Buffer.alloc(12 + ((r() * 1200) | 0));
      for (let j = 12; j < pkt.length; j++) pkt[j] = (r() * 256) | 0;
      pkt[0] = 0x80;
      pkt[1] = 96;
      pkt.writeUInt16BE((65500 + i) & 0xffff, 2);
      pkt.writeUInt32BE(i * 3000, 4);
      pkt.writeUInt32BE(0xabcdef01, 8);
      const n = wasm.protectRtp(pkt, 0, pkt.length, a, 0);
      expect(node.protectRtp(pkt, 0, pkt.length, b, 0)).toBe(n);
      expect(a.subarray(0, n).equals(b.subarray(0, n))).toBe(true);
      const parsed = RtpPacket.deSerialize(pkt);
      const enc = werift.encrypt(parsed.payload, parsed.header);
      expect(enc.equals(a.subarray(0, n))).toBe(true);
      expect(rx.unprotectRtp(enc, 0, enc.length, b, 0)).toBe(pkt.length);
      expect(b.subarray(0, pkt.length).equals(pkt)).toBe(true);
    }
    // SRTCP too.
    const rtcp = Buffer.from('81c90007000000010000000200000000000000000000000000000000', 'hex');
    const n = wasm.protectRtcp(rtcp, 0, rtcp.length, a, 0);
    expect(node.unprotectRtcp(a, 0, n, b, 0)).toBe(rtcp.length);
    expect(b.subarray(0, rtcp.length).equals(rtcp)).toBe(true);
  });

  it('rejects an hmac option that is not an engine', () => {
    expect(
      () => new SrtpCryptoContext({ profile: SRTP_AES128_CM_HMAC_SHA1_80, masterKey: Buffer.alloc(16), masterSalt: Buffer.alloc(14), hmac: 'fast' as 'node' }),
    ).toThrow(SrtpOptionsError);
  });
});
