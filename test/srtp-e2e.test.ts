/**
 * End to end with two real werift peer connections on 127.0.0.1: A (sendonly video) sends RTP
 * through FastRtpSender, B's werift track receives it. Runs once per SRTP profile: werift's
 * default negotiation (AEAD_AES_128_GCM) and AES_CM_128_HMAC_SHA1_80 forced on both sides.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtcpPayloadSpecificFeedback,
  RtcpSenderInfo,
  RtcpSrPacket,
  RtpHeader,
  RtpPacket,
  type MediaStreamTrack,
  type RTCDtlsTransport,
  type RtcpPacket,
} from 'werift';
import {
  FastRtpSender,
  SRTP_AEAD_AES_128_GCM,
  SRTP_AES128_CM_HMAC_SHA1_80,
  SrtpKeysUnavailableError,
  SrtpStatus,
  preferSrtpProfiles,
  srtpKeysOf,
  type SrtpProfile,
} from '../src/srtp/index.ts';
import { hostOnlyIce } from '../src/relay/media.ts';
import { mulberry32 as rng } from '../src/util/random.ts';
import { nativeSrtp } from '../src/srtp/native.ts';

const VP8_PT = 96;


function peer(): RTCPeerConnection {
  return new RTCPeerConnection({
    codecs: {
      video: [
        new RTCRtpCodecParameters({
          mimeType: 'video/VP8',
          clockRate: 90000,
          payloadType: VP8_PT,
          rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }],
        }),
      ],
      audio: [],
    },
    ...hostOnlyIce('127.0.0.1'),
  });
}

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function gathered(pc: RTCPeerConnection): Promise<void> {
  await waitFor(() => pc.iceGatheringState === 'complete', 5000, 'ICE gathering');
}

const open: RTCPeerConnection[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((pc) => pc.close().catch(() => undefined)));
});

async function connect(profile: SrtpProfile | 'default') {
  const a = peer();
  const b = peer();
  open.push(a, b);
  const ta = a.addTransceiver('video', { direction: 'sendonly' });
  const tracks: MediaStreamTrack[] = [];
  b.onTrack.subscribe((t) => tracks.push(t));
  await a.setLocalDescription(await a.createOffer());
  if (profile !== 'default') expect(preferSrtpProfiles(a, [profile])).toBe(1);
  await gathered(a);
  await b.setRemoteDescription(a.localDescription!);
  if (profile !== 'default') expect(preferSrtpProfiles(b, [profile])).toBe(1);
  await b.setLocalDescription(await b.createAnswer());
  await gathered(b);
  // Before DTLS: no keys, and the sender says so instead of throwing.
  expect(() => srtpKeysOf(a)).toThrow(SrtpKeysUnavailableError);
  const sender = new FastRtpSender(a);
  expect(sender.send(Buffer.alloc(20, 0x80), 0, 20)).toBe(SrtpStatus.NotConnected);
  await a.setRemoteDescription(b.localDescription!);
  await waitFor(() => a.connectionState === 'connected' && b.connectionState === 'connected', 10_000, 'connected');
  await waitFor(() => tracks.length > 0, 5000, 'B ontrack');
  return { a, b, ta, track: tracks[0]!, sender };
}

describe.each([
  ['werift default (AEAD_AES_128_GCM)', 'default', SRTP_AEAD_AES_128_GCM],
  ['AES_CM_128_HMAC_SHA1_80 forced', SRTP_AES128_CM_HMAC_SHA1_80, SRTP_AES128_CM_HMAC_SHA1_80],
] as [string, SrtpProfile | 'default', SrtpProfile][])('FastRtpSender end to end, %s', (_name, force, expected) => {
  it('B receives every packet with byte-identical payload and the headers as sent, across a ROC wrap', async () => {
    const { a, b, ta, track, sender } = await connect(force);

    // Keys: A's local key is B's remote key, and both match the RFC 5764 §4.2 exporter layout.
    const ka = srtpKeysOf(a);
    const kb = srtpKeysOf(b);
    expect(ka.profile).toBe(expected);
    expect(sender.profile).toBe(expected);
    expect(ka.localMasterKey.equals(kb.remoteMasterKey)).toBe(true);
    expect(ka.localMasterSalt.equals(kb.remoteMasterSalt)).toBe(true);
    expect(kb.localMasterKey.equals(ka.remoteMasterKey)).toBe(true);
    const dtlsA = a.dtlsTransports[0] as RTCDtlsTransport & { dtls: { exportKeyingMaterial(l: string, n: number): Buffer } };
    const saltLen = expected === SRTP_AEAD_AES_128_GCM ? 12 : 14;
    const km = dtlsA.dtls.exportKeyingMaterial('EXTRACTOR-dtls_srtp', 2 * (16 + saltLen));
    const client = dtlsA.role === 'client' ? ka : kb;
    const server = dtlsA.role === 'client' ? kb : ka;
    expect(km.subarray(0, 16).equals(client.localMasterKey)).toBe(true);
    expect(km.subarray(16, 32).equals(server.localMasterKey)).toBe(true);
    expect(km.subarray(32, 32 + saltLen).equals(client.localMasterSalt)).toBe(true);
    expect(km.subarray(32 + saltLen).equals(server.localMasterSalt)).toBe(true);

    const received: RtpPacket[] = [];
    track.onReceiveRtp.subscribe((p) => received.push(p));
    const ssrc = ta.sender.ssrc;
    const r = rng(1234);
    const sent: { seq: number; ts: number; marker: boolean; payload: Buffer }[] = [];
    // Packets live in one big buffer at odd offsets, like packets in WASM linear memory.
    const arena = new Uint8Array(64 * 1024);
    const COUNT = 240;
    for (let i = 0; i < COUNT; i++) {
      const seq = (65500 + i) & 0xffff; // wraps after 36 packets
      const ts = (3_000_000_000 + i * 3000) >>> 0;
      const marker = i % 5 === 4;
      // Mostly one size, as a relay's video packets are: equal lengths share SIMD HMAC passes.
      const payload = Buffer.alloc(i % 5 === 0 ? 100 + ((r() * 1000) | 0) : 1000);
      for (let j = 0; j < payload.length; j++) payload[j] = (r() * 256) | 0;
      const pkt = new RtpPacket(new RtpHeader({ payloadType: VP8_PT, sequenceNumber: seq, timestamp: ts, ssrc, marker }), payload).serialize();
      const off = 1 + ((i * 1237) % 40000);
      arena.set(pkt, off);
      const n = sender.send(arena, off, pkt.length);
      expect(n).toBe(pkt.length + (expected === SRTP_AEAD_AES_128_GCM ? 16 : 10));
      arena.fill(0, off, off + pkt.length); // the sender must not depend on the source afterwards
      sent.push({ seq, ts, marker, payload });
      if (i % 8 === 7) await new Promise((res) => setTimeout(res, 2)); // stay under the socket buffers
    }
    await waitFor(() => received.length >= COUNT, 5000, `${COUNT} packets at B (got ${received.length})`);
    expect(received.length).toBe(COUNT);
    for (let i = 0; i < COUNT; i++) {
      const got = received[i]!;
      const want = sent[i]!;
      expect(got.header.sequenceNumber).toBe(want.seq);
      expect(got.header.timestamp).toBe(want.ts);
      expect(got.header.marker).toBe(want.marker);
      expect(got.header.payloadType).toBe(VP8_PT);
      expect(got.header.ssrc).toBe(ssrc);
      expect(got.payload.equals(want.payload)).toBe(true);
    }
    expect(sender.rocOf(ssrc)).toBe(1);
    expect(sender.stats.rtpPackets).toBe(COUNT);
    // With the addon loaded (either profile): every packet was protected and sent in C, and
    // werift's own SRTP accepted it (native.ts).
    expect(sender.stats.nativePackets).toBe(nativeSrtp() !== null ? COUNT : 0);
    // ... on a twin of the pair's socket connected to B (IPv4 host candidates here): what B sends
    // now arrives on the twin, and werift still gets it (the PLI below).
    expect(sender.sendsConnected).toBe(nativeSrtp() !== null);

    // Bad input from the caller is refused with a status, never thrown.
    expect(sender.send(undefined as unknown as Uint8Array, 0, 100)).toBe(SrtpStatus.TooShort);
    expect(sender.send(Buffer.alloc(5, 0x80), 0, 5)).toBe(SrtpStatus.TooShort);
    expect(sender.send(Buffer.alloc(40), 0, 40)).toBe(SrtpStatus.BadVersion);
    expect(sender.send(Buffer.alloc(40, 0x80), 30, 40)).toBe(SrtpStatus.TooShort);
    expect(sender.sendRtcp(Buffer.alloc(4, 0x80), 0, 4)).toBe(SrtpStatus.TooShort);
    expect(sender.sendProtected(Buffer.alloc(4), 2, 4)).toBe(SrtpStatus.TooShort);
    expect(sender.stats.rtpPackets).toBe(COUNT);

    // RTCP on the fast path: B's werift decrypts our SR; werift's own SRTCP index for the SSRC moved.
    const rtcpAtB: RtcpPacket[] = [];
    b.dtlsTransports[0]!.onRtcp.subscribe((p) => rtcpAtB.push(p));
    const sr = new RtcpSrPacket({
      ssrc,
      senderInfo: new RtcpSenderInfo({ ntpTimestamp: 0x0102030405060708n, rtpTimestamp: 42, packetCount: COUNT, octetCount: 1 }),
    }).serialize();
    expect(sender.sendRtcp(sr, 0, sr.length)).toBe(sr.length + (expected === SRTP_AEAD_AES_128_GCM ? 20 : 14));
    await waitFor(() => rtcpAtB.some((p) => p instanceof RtcpSrPacket && p.ssrc === ssrc), 3000, 'SR at B');
    const gotSr = rtcpAtB.find((p): p is RtcpSrPacket => p instanceof RtcpSrPacket && p.ssrc === ssrc)!;
    expect(gotSr.senderInfo.packetCount).toBe(COUNT);
    const weriftIndex = (a.dtlsTransports[0] as unknown as { srtcp: { localContext: { srtcpSSRCStates: Record<number, { srtcpIndex: number }> } } })
      .srtcp.localContext.srtcpSSRCStates[ssrc]!.srtcpIndex;
    expect(weriftIndex).toBe(1);

    // werift still handles incoming SRTCP at A: a PLI from B's werift receiver arrives.
    const rtcpAtA: RtcpPacket[] = [];
    a.dtlsTransports[0]!.onRtcp.subscribe((p) => rtcpAtA.push(p));
    const recvB = b.getTransceivers()[0]!.receiver;
    await recvB.sendRtcpPLI(ssrc);
    await waitFor(() => rtcpAtA.some((p) => p instanceof RtcpPayloadSpecificFeedback), 3000, 'PLI at A');

    // If werift itself sends RTP with an SSRC, the fast path refuses to share it.
    const other = 0x3456789a;
    await (a.dtlsTransports[0] as unknown as { sendRtp(p: Buffer, h: RtpHeader): Promise<number> }).sendRtp(
      Buffer.alloc(10),
      new RtpHeader({ payloadType: VP8_PT, sequenceNumber: 1, timestamp: 1, ssrc: other }),
    );
    const clash = new RtpPacket(new RtpHeader({ payloadType: VP8_PT, sequenceNumber: 2, timestamp: 2, ssrc: other }), Buffer.alloc(10)).serialize();
    expect(sender.send(clash, 0, clash.length)).toBe(SrtpStatus.SsrcInUse);

    // Once DTLS has chosen, preferSrtpProfiles leaves the transport alone.
    expect(preferSrtpProfiles(a, [SRTP_AES128_CM_HMAC_SHA1_80])).toBe(0);
    expect(() => preferSrtpProfiles(a, [])).toThrow(/non-empty/);

    // A second sender on the connection may not take over an SSRC the first one owns.
    const second = new FastRtpSender(a, { maxInFlight: 4 });
    const owned = new RtpPacket(new RtpHeader({ payloadType: VP8_PT, sequenceNumber: 9, timestamp: 9, ssrc }), Buffer.alloc(10)).serialize();
    expect(second.send(owned, 0, owned.length)).toBe(SrtpStatus.SsrcInUse);
    // Bounded in-flight datagrams: a burst in one tick stops at maxInFlight, then drains.
    const burst = (seq: number) =>
      new RtpPacket(new RtpHeader({ payloadType: VP8_PT, sequenceNumber: seq, timestamp: 0, ssrc: 0x7777 }), Buffer.alloc(500)).serialize();
    const results = Array.from({ length: 10 }, (_, i) => second.send(burst(i), 0, 512));
    if (second.sendsNatively) {
      // Native sendto: the kernel takes each datagram during the call (a full socket buffer
      // would drop it as QueueFull), so nothing is ever in flight.
      expect(results.every((x) => x === 512 + (expected === SRTP_AEAD_AES_128_GCM ? 16 : 10))).toBe(true);
      expect(second.inFlight).toBe(0);
      expect(second.stats.nativePackets).toBe(10);
    } else {
      expect(results.filter((x) => x > 0).length).toBe(4);
      expect(results.slice(4).every((x) => x === SrtpStatus.QueueFull)).toBe(true);
      expect(second.stats.queueFull).toBe(6);
    }
    await waitFor(() => second.inFlight === 0, 2000, 'in-flight sends to complete');
    expect(second.send(burst(10), 0, 512)).toBeGreaterThan(0);
    second.close();

    sender.close();
    sender.close();
    expect(sender.send(clash, 0, clash.length)).toBe(SrtpStatus.Closed);
  });
});
