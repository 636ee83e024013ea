/**
 * Cross-checks against werift's own SrtpSession/SrtcpSession, both directions and both
 * profiles: werift protects -> SrtpCryptoContext unprotects, SrtpCryptoContext protects ->
 * werift unprotects, and the protected bytes are identical (both ciphers are deterministic).
 */
import { describe, expect, it } from 'vitest';
import {
  PictureLossIndication,
  RtcpPacketConverter,
  RtcpPayloadSpecificFeedback,
  RtcpSenderInfo,
  RtcpSrPacket,
  RtpPacket,
  SrtcpSession,
  SrtpSession,
} from 'werift';
import {
  SRTP_AEAD_AES_128_GCM,
  SRTP_AES128_CM_HMAC_SHA1_80,
  SrtpCryptoContext,
  SrtpStatus,
  masterSaltLength,
  type SrtpProfile,
} from '../src/srtp/index.ts';
import { mulberry32 as rng } from '../src/util/random.ts';


function bytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** An RTP packet with random CSRCs, an optional RFC 8285 one-byte extension block and payload. */
function rtp(r: () => number, ssrc: number, seq: number, payloadLen: number): Buffer {
  const cc = (r() * 3) | 0;
  const ext = r() < 0.5;
  const extWords = ext ? 1 + ((r() * 3) | 0) : 0;
  const h = Buffer.alloc(12 + cc * 4 + (ext ? 4 + extWords * 4 : 0));
  h[0] = 0x80 | (ext ? 0x10 : 0) | cc;
  h[1] = (r() < 0.3 ? 0x80 : 0) | 96;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE((r() * 2 ** 32) >>> 0, 4);
  h.writeUInt32BE(ssrc >>> 0, 8);
  for (let i = 0; i < cc; i++) h.writeUInt32BE((r() * 2 ** 32) >>> 0, 12 + i * 4);
  if (ext) {
    const o = 12 + cc * 4;
    h.writeUInt16BE(0xbede, o);
    h.writeUInt16BE(extWords, o + 2);
    // One-byte elements: id 1..14, len-1 = 2, then padding zeros.
    for (let w = 0; w < extWords; w++) {
      h[o + 4 + w * 4] = (((1 + w) & 0x0f) << 4) | 2;
      h[o + 5 + w * 4] = (r() * 256) | 0;
      h[o + 6 + w * 4] = (r() * 256) | 0;
      h[o + 7 + w * 4] = (r() * 256) | 0;
    }
  }
  return Buffer.concat([h, bytes(r, payloadLen)]);
}

interface Pair {
  ours: SrtpCryptoContext;
  oursRx: SrtpCryptoContext;
  werift: SrtpSession;
  weriftRtcp: SrtcpSession;
}

/** Our context sends with key A (werift receives A); werift sends with key B (ours receives B). */
function pair(profile: SrtpProfile, seed: number): Pair {
  const r = rng(seed);
  const saltLen = masterSaltLength(profile);
  const a = { key: bytes(r, 16), salt: bytes(r, saltLen) };
  const b = { key: bytes(r, 16), salt: bytes(r, saltLen) };
  const config = {
    profile,
    keys: { localMasterKey: b.key, localMasterSalt: b.salt, remoteMasterKey: a.key, remoteMasterSalt: a.salt },
  };
  return {
    ours: new SrtpCryptoContext({ profile, masterKey: a.key, masterSalt: a.salt }),
    oursRx: new SrtpCryptoContext({ profile, masterKey: b.key, masterSalt: b.salt }),
    werift: new SrtpSession(config),
    weriftRtcp: new SrtcpSession(config),
  };
}

/** werift's sender-side twin of `ours` (same key), to compare protected bytes exactly. */
function weriftTwinOf(profile: SrtpProfile, seed: number): SrtpSession {
  const r = rng(seed);
  const saltLen = masterSaltLength(profile);
  const a = { key: bytes(r, 16), salt: bytes(r, saltLen) };
  return new SrtpSession({
    profile,
    keys: { localMasterKey: a.key, localMasterSalt: a.salt, remoteMasterKey: a.key, remoteMasterSalt: a.salt },
  });
}

const profiles: [string, SrtpProfile][] = [
  ['AES_CM_128_HMAC_SHA1_80', SRTP_AES128_CM_HMAC_SHA1_80],
  ['AEAD_AES_128_GCM', SRTP_AEAD_AES_128_GCM],
];

describe.each(profiles)('SrtpCryptoContext vs werift, %s', (_name, profile) => {
  it('protectRtp output is byte-identical to werift SrtpSession.encrypt and werift decrypts it', () => {
    const p = pair(profile, 1);
    const twin = weriftTwinOf(profile, 1);
    const r = rng(99);
    const out = Buffer.alloc(2000);
    for (let i = 0; i < 300; i++) {
      const pkt = rtp(r, 0x11223344, 1000 + i, (r() * 1200) | 0);
      const n = p.ours.protectRtp(pkt, 0, pkt.length, out, 0);
      expect(n).toBe(pkt.length + p.ours.rtpOverhead);
      const parsed = RtpPacket.deSerialize(pkt);
      const ref = twin.encrypt(parsed.payload, parsed.header);
      expect(out.subarray(0, n).equals(ref)).toBe(true);
      const dec = p.werift.decrypt(Buffer.from(out.subarray(0, n)));
      expect(dec.equals(pkt)).toBe(true);
    }
  });

  it('unprotectRtp decrypts what werift encrypts, in place and into another buffer', () => {
    const p = pair(profile, 2);
    const r = rng(7);
    for (let i = 0; i < 300; i++) {
      const pkt = rtp(r, 0xdeadbeef, 40000 + i * 3, (r() * 1200) | 0);
      const parsed = RtpPacket.deSerialize(pkt);
      const enc = p.werift.encrypt(parsed.payload, parsed.header);
      if (i % 2 === 0) {
        const copy = Buffer.from(enc);
        const n = p.oursRx.unprotectRtp(copy, 0, copy.length, copy, 0);
        expect(n).toBe(pkt.length);
        expect(copy.subarray(0, n).equals(pkt)).toBe(true);
      } else {
        // Unaligned offsets on both sides exercise the byte-wise XOR path.
        const src = Buffer.alloc(enc.length + 3);
        enc.copy(src, 3);
        const dst = Buffer.alloc(enc.length + 5);
        const n = p.oursRx.unprotectRtp(src, 3, enc.length, dst, 5);
        expect(n).toBe(pkt.length);
        expect(dst.subarray(5, 5 + n).equals(pkt)).toBe(true);
      }
    }
  });

  it('ROC rolls over at 65535 -> 0 in both directions, and a late packet from before the wrap uses the old ROC', () => {
    const p = pair(profile, 3);
    const twin = weriftTwinOf(profile, 3);
    const r = rng(5);
    const out = Buffer.alloc(1500);
    // ours -> werift across the wrap, byte-identical to werift's own sender.
    for (const seq of [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2]) {
      const pkt = rtp(r, 0x01020304, seq, 200);
      const n = p.ours.protectRtp(pkt, 0, pkt.length, out, 0);
      const parsed = RtpPacket.deSerialize(pkt);
      expect(out.subarray(0, n).equals(twin.encrypt(parsed.payload, parsed.header))).toBe(true);
      expect(p.werift.decrypt(Buffer.from(out.subarray(0, n))).equals(pkt)).toBe(true);
    }
    expect(p.ours.rocOf(0x01020304)).toBe(1);

    // werift -> ours across the wrap; 65535 arrives after 0, 1, 2 and must verify with ROC 0.
    let late: [Buffer, Buffer] | null = null;
    for (const seq of [65533, 65534, 65535, 0, 1, 2]) {
      const pkt = rtp(r, 0x0a0b0c0d, seq, 300);
      const parsed = RtpPacket.deSerialize(pkt);
      const enc = p.werift.encrypt(parsed.payload, parsed.header);
      if (seq === 65535) {
        late = [enc, pkt];
        continue;
      }
      const buf = Buffer.from(enc);
      expect(p.oursRx.unprotectRtp(buf, 0, buf.length, buf, 0)).toBe(pkt.length);
      expect(buf.subarray(0, pkt.length).equals(pkt)).toBe(true);
    }
    const [lateEnc, latePlain] = late!;
    const buf = Buffer.from(lateEnc);
    expect(p.oursRx.unprotectRtp(buf, 0, buf.length, buf, 0)).toBe(latePlain.length);
    expect(buf.subarray(0, latePlain.length).equals(latePlain)).toBe(true);
    // The same packet again is a replay (RFC 3711 §3.3.2).
    const again = Buffer.from(lateEnc);
    expect(p.oursRx.unprotectRtp(again, 0, again.length, again, 0)).toBe(SrtpStatus.Replay);
  });

  it('a retransmission of an old sequence number is protected with the ROC it was first sent with', () => {
    const p = pair(profile, 6);
    const r = rng(8);
    const out = Buffer.alloc(1500);
    const first = rtp(r, 0x55, 65535, 100);
    const firstN = p.ours.protectRtp(first, 0, first.length, out, 0);
    const firstEnc = Buffer.from(out.subarray(0, firstN));
    for (let s = 0; s < 50; s++) {
      const pkt = rtp(r, 0x55, s, 100);
      p.ours.protectRtp(pkt, 0, pkt.length, out, 0);
    }
    expect(p.ours.rocOf(0x55)).toBe(1);
    const n = p.ours.protectRtp(first, 0, first.length, out, 0);
    expect(out.subarray(0, n).equals(firstEnc)).toBe(true);
  });

  it('SRTCP: werift decrypts ours and we decrypt werift\'s (SR + PLI compound), with E-flag and index', () => {
    const p = pair(profile, 9);
    const sr = new RtcpSrPacket({
      ssrc: 0x11111111,
      senderInfo: new RtcpSenderInfo({ ntpTimestamp: 0x0123456789abcdefn, rtpTimestamp: 1234, packetCount: 5, octetCount: 500 }),
    });
    const pli = new RtcpPayloadSpecificFeedback({ feedback: new PictureLossIndication({ senderSsrc: 0x11111111, mediaSsrc: 0x22222222 }) });
    const raw = Buffer.concat([sr.serialize(), pli.serialize()]);
    const out = Buffer.alloc(500);
    for (let i = 1; i <= 3; i++) {
      const n = p.ours.protectRtcp(raw, 0, raw.length, out, 0);
      expect(n).toBe(raw.length + p.ours.rtcpOverhead);
      const idxOff = profile === SRTP_AEAD_AES_128_GCM ? n - 4 : raw.length;
      expect(out.readUInt32BE(idxOff)).toBe((0x80000000 | i) >>> 0);
      // The payload after the first 8 bytes is really encrypted.
      expect(out.subarray(8, raw.length).equals(raw.subarray(8))).toBe(false);
      const dec = p.weriftRtcp.decrypt(Buffer.from(out.subarray(0, n)));
      expect(dec.equals(raw)).toBe(true);
      const parsed = RtcpPacketConverter.deSerialize(dec);
      expect(parsed.length).toBe(2);
    }
    for (let i = 0; i < 3; i++) {
      const enc = p.weriftRtcp.encrypt(raw);
      const dst = Buffer.alloc(enc.length);
      const n = p.oursRx.unprotectRtcp(enc, 0, enc.length, dst, 0);
      expect(n).toBe(raw.length);
      expect(dst.subarray(0, n).equals(raw)).toBe(true);
      expect(p.oursRx.unprotectRtcp(enc, 0, enc.length, dst, 0)).toBe(SrtpStatus.Replay);
    }
  });

  it('a custom srtcpIndex source sets the SRTCP index', () => {
    const r = rng(10);
    const key = bytes(r, 16);
    const salt = bytes(r, masterSaltLength(profile));
    let next = 41;
    const ctx = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt, srtcpIndex: () => ++next });
    const raw = new RtcpPayloadSpecificFeedback({ feedback: new PictureLossIndication({ senderSsrc: 1, mediaSsrc: 2 }) }).serialize();
    const out = Buffer.alloc(100);
    const n = ctx.protectRtcp(raw, 0, raw.length, out, 0);
    const idxOff = profile === SRTP_AEAD_AES_128_GCM ? n - 4 : raw.length;
    expect(out.readUInt32BE(idxOff) & 0x7fffffff).toBe(42);
    const rx = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt });
    expect(rx.unprotectRtcp(out, 0, n, out, 0)).toBe(raw.length);
    expect(out.subarray(0, raw.length).equals(raw)).toBe(true);
  });
});

describe('AES-CM keystream runs', () => {
  it('give byte-identical output to one cipher call per packet, for in-order, late, repeated and growing packets', () => {
    const r = rng(77);
    const key = bytes(r, 16);
    const salt = bytes(r, 14);
    const mk = (run: number) =>
      new SrtpCryptoContext({ profile: SRTP_AES128_CM_HMAC_SHA1_80, masterKey: key, masterSalt: salt, keystreamRun: run, hmac: 'node' });
    const ctxs = [mk(1), mk(8), mk(64), mk(3)];
    // In order across a wrap, with late packets, repeats, jumps and payloads that grow past the stride.
    const seqs: number[] = [];
    for (let i = 0; i < 200; i++) seqs.push((65450 + i) & 0xffff);
    seqs.splice(30, 0, 65455, 65455); // late and repeated
    seqs.splice(120, 0, 40, 10); // ahead of the run, then late
    const outs = ctxs.map(() => Buffer.alloc(3000));
    for (let i = 0; i < seqs.length; i++) {
      const len = i % 17 === 0 ? 1400 + i * 5 : 50 + ((r() * 1100) | 0); // some above the 2048-byte run cap
      const pkt = rtp(r, i % 3 === 0 ? 0x1111 : 0x2222, seqs[i]!, len);
      const ns = ctxs.map((c, j) => c.protectRtp(pkt, 0, pkt.length, outs[j]!, 0));
      for (let j = 1; j < ctxs.length; j++) {
        expect(ns[j]).toBe(ns[0]);
        expect(outs[j]!.subarray(0, ns[j]).equals(outs[0]!.subarray(0, ns[0])), `packet ${i} run ${j}`).toBe(true);
      }
    }
  });

  it('rejects a keystreamRun outside 1..64', () => {
    for (const keystreamRun of [0, 65, 1.5]) {
      expect(() => new SrtpCryptoContext({ profile: SRTP_AES128_CM_HMAC_SHA1_80, masterKey: Buffer.alloc(16), masterSalt: Buffer.alloc(14), keystreamRun })).toThrow(
        /keystreamRun/,
      );
    }
  });
});
