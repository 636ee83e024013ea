import { describe, it, expect } from 'vitest';
import {
  RtcpSrPacket, RtcpSenderInfo, RtcpRrPacket, RtcpReceiverInfo, RtcpSourceDescriptionPacket,
  SourceDescriptionChunk, SourceDescriptionItem, RtcpTransportLayerFeedback, GenericNack,
  RtcpPayloadSpecificFeedback, PictureLossIndication, ReceiverEstimatedMaxBitrate,
} from 'werift';
import { Core, Status, RtcpType } from '../src/wasm/index.ts';
import { prng } from './fixtures/core/rtp.ts';

const core = new Core({ maxStreams: 2, maxDownstreams: 1 });

function header(fmt: number, pt: number, words: number): number[] {
  return [0x80 | fmt, pt, words >> 8, words & 0xff];
}
const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

const sr = new RtcpSrPacket({
  ssrc: 0x01010101,
  senderInfo: new RtcpSenderInfo({ ntpTimestamp: 0x1122334455667788n, rtpTimestamp: 90000, packetCount: 10, octetCount: 1000 }),
  reports: [new RtcpReceiverInfo({ ssrc: 7, fractionLost: 1, packetsLost: 2, highestSequence: 3, jitter: 4, lsr: 5, dlsr: 6 })],
}).serialize();
const rr = new RtcpRrPacket({ ssrc: 0x02020202, reports: [] }).serialize();
const sdes = new RtcpSourceDescriptionPacket({
  chunks: [new SourceDescriptionChunk({ source: 0x03030303, items: [new SourceDescriptionItem({ type: 1, text: 'cname' })] })],
}).serialize();
const bye = Buffer.from([...header(1, 203, 1), ...u32(0x04040404)]);
const app = Buffer.from([...header(0, 204, 2), ...u32(0x05050505), 0x41, 0x42, 0x43, 0x44]);
const nack = new RtcpTransportLayerFeedback({ feedback: new GenericNack({ senderSsrc: 0x06060606, mediaSourceSsrc: 0x60606060, lost: [5, 6] }) }).serialize();
const twcc = Buffer.from([...header(15, 205, 5), ...u32(0x07070707), ...u32(0x70707070), 0, 1, 0, 1, 0, 0, 1, 0, 0x20, 0x01, 0, 0]);
const pli = new RtcpPayloadSpecificFeedback({ feedback: new PictureLossIndication({ senderSsrc: 0x08080808, mediaSsrc: 0x80808080 }) }).serialize();
const fir = Buffer.from([...header(4, 206, 4), ...u32(0x09090909), ...u32(0), ...u32(0x90909090), 3, 0, 0, 0]);
const remb = new RtcpPayloadSpecificFeedback({
  feedback: new ReceiverEstimatedMaxBitrate({ senderSsrc: 0x0a0a0a0a, mediaSsrc: 0, brExp: 3, brMantissa: 150000, ssrcFeedbacks: [0x12345678] }),
}).serialize();
const xr = Buffer.from([...header(0, 207, 1), ...u32(0x0b0b0b0b)]);
const afb = Buffer.from([...header(15, 206, 3), ...u32(1), ...u32(2), 0x41, 0x42, 0x43, 0x44]); // AFB, not REMB

describe('walkRtcp', () => {
  it('identifies every item of a compound packet without allocating', () => {
    const parts = [sr, rr, sdes, bye, app, nack, twcc, pli, fir, remb, xr, afb];
    const compound = Buffer.concat(parts);
    expect(core.walkRtcpBytes(compound)).toBe(parts.length);
    const want: [number, number, number][] = [
      [RtcpType.SR, 0x01010101, 0], [RtcpType.RR, 0x02020202, 0], [RtcpType.SDES, 0x03030303, 0],
      [RtcpType.BYE, 0x04040404, 0], [RtcpType.APP, 0x05050505, 0], [RtcpType.NACK, 0x06060606, 0x60606060],
      [RtcpType.TWCC, 0x07070707, 0x70707070], [RtcpType.PLI, 0x08080808, 0x80808080],
      [RtcpType.FIR, 0x09090909, 0], [RtcpType.REMB, 0x0a0a0a0a, 0], [RtcpType.OTHER, 0x0b0b0b0b, 0],
      [RtcpType.PSFB, 1, 2],
    ];
    let off = core.scratchOffset;
    for (let i = 0; i < parts.length; i++) {
      expect([core.itemType(i), core.itemSsrc(i), core.itemMediaSsrc(i)]).toEqual(want[i]);
      expect(core.itemOffset(i)).toBe(off);
      expect(core.itemLength(i)).toBe(parts[i]!.length);
      off += parts[i]!.length;
    }
    expect(core.itemFmt(0)).toBe(1); // SR report count
    expect(core.itemExtra(0)).toBe(0x33445566); // NTP middle 32 bits for LSR
    expect(core.itemExtra(9)).toBe(150000 * 8); // REMB bitrate
    expect(core.itemFmt(6)).toBe(15);
  });

  const bad: [string, Buffer, number][] = [
    ['empty', Buffer.alloc(0), Status.ERR_RTCP_SHORT],
    ['3 bytes', Buffer.from([0x80, 200, 0]), Status.ERR_RTCP_SHORT],
    ['version 1', Buffer.from([0x40, 201, 0, 1, 0, 0, 0, 1]), Status.ERR_RTCP_VERSION],
    ['length past the end', Buffer.from([0x80, 201, 0, 5, 0, 0, 0, 1]), Status.ERR_RTCP_LENGTH],
    ['trailing partial header', Buffer.concat([rr, Buffer.from([0x80, 201])]), Status.ERR_RTCP_SHORT],
    ['SR shorter than its sender info', Buffer.from([...header(0, 200, 1), ...u32(1)]), Status.ERR_RTCP_SHORT],
    ['RR with more blocks than bytes', Buffer.from([...header(2, 201, 1), ...u32(1)]), Status.ERR_RTCP_SHORT],
    ['feedback without media ssrc', Buffer.from([...header(1, 206, 1), ...u32(1)]), Status.ERR_RTCP_SHORT],
    ['NACK without FCI', Buffer.from([...header(1, 205, 2), ...u32(1), ...u32(2)]), Status.ERR_RTCP_SHORT],
    ['FIR without FCI', Buffer.from([...header(4, 206, 2), ...u32(1), ...u32(2)]), Status.ERR_RTCP_SHORT],
    ['padding on a non-final item', Buffer.concat([Buffer.from([0xa0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4]), rr]), Status.ERR_RTCP_PADDING],
    ['padding count 0', Buffer.from([0xa0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]), Status.ERR_RTCP_PADDING],
    ['padding count past the body', Buffer.from([0xa0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 12]), Status.ERR_RTCP_PADDING],
  ];
  for (const [name, bytes, code] of bad) {
    it(`rejects ${name}`, () => {
      expect(core.walkRtcpBytes(bytes)).toBe(code);
    });
  }

  it('accepts padding on the final item', () => {
    expect(core.walkRtcpBytes(Buffer.concat([rr, Buffer.from([0xa0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4])]))).toBe(2);
  });

  it('caps the item table at 64 items', () => {
    const many = Buffer.concat(new Array(70).fill(rr));
    expect(core.walkRtcpBytes(many)).toBe(64);
  });

  it('rejects ranges outside linear memory', () => {
    expect(core.walkRtcp(core.bytes.length - 4, 8)).toBe(Status.ERR_ARG);
  });

  it('fuzz: mutated compounds never trap and items stay inside the input', () => {
    const rnd = prng(11);
    const base = Buffer.concat([sr, nack, pli, remb]);
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.from(base.subarray(0, Math.floor(rnd() * (base.length + 1))));
      for (let k = 0; k < 2; k++) if (b.length) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const n = core.walkRtcpBytes(b);
      if (n > 0) {
        for (let j = 0; j < n; j++) {
          expect(core.itemOffset(j) + core.itemLength(j)).toBeLessThanOrEqual(core.scratchOffset + b.length);
          if (core.itemType(j) === RtcpType.NACK) {
            expect(core.parseNack(core.itemOffset(j), core.itemLength(j))).toBeGreaterThanOrEqual(0);
          }
        }
      } else {
        expect(n).toBeLessThan(0);
      }
    }
  });
});
