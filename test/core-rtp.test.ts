import { describe, it, expect } from 'vitest';
import { Core, Status, Codec } from '../src/wasm/index.ts';
import { rtp, prng } from './fixtures/core/rtp.ts';

const core = new Core({ maxStreams: 2, maxDownstreams: 2, outSlots: 2 });

function parse(b: Uint8Array, ext = {}) {
  return core.parseBytes(b, ext);
}

describe('parse (RTP header, RFC 3550 §5.1)', () => {
  it('reads the fixed header fields', () => {
    const b = rtp({ seq: 0xfffe, ts: 0xfffffff0, ssrc: 0xdeadbeef, pt: 111, marker: true });
    expect(parse(b)).toBe(Status.OK);
    expect(core.pktSeq).toBe(0xfffe);
    expect(core.pktTs).toBe(0xfffffff0);
    expect(core.pktSsrc).toBe(0xdeadbeef);
    expect(core.pktPayloadType).toBe(111);
    expect(core.pktMarker).toBe(true);
    expect(core.pktHeaderLength).toBe(12);
    expect(core.pktPayloadLength).toBe(4);
    expect(core.pktOffset).toBe(core.scratchOffset);
    expect(core.pktLength).toBe(b.length);
  });

  it('skips the CSRC list', () => {
    expect(parse(rtp({ csrcs: [1, 2, 3] }))).toBe(Status.OK);
    expect(core.pktCsrcCount).toBe(3);
    expect(core.pktHeaderLength).toBe(24);
  });

  it('strips padding from the payload length', () => {
    expect(parse(rtp({ payload: new Uint8Array(10), padding: 6 }))).toBe(Status.OK);
    expect(core.pktPayloadLength).toBe(10);
    expect(core.pktPaddingLength).toBe(6);
  });

  it('accepts a header-only packet (empty payload)', () => {
    expect(parse(rtp({ payload: new Uint8Array(0) }))).toBe(Status.OK);
    expect(core.pktPayloadLength).toBe(0);
  });

  const malformed: [string, Uint8Array, number][] = [
    ['empty', new Uint8Array(0), Status.ERR_SHORT],
    ['11 bytes', rtp().subarray(0, 11), Status.ERR_SHORT],
    ['version 1', rtp({ version: 1 }), Status.ERR_VERSION],
    ['version 0', rtp({ version: 0 }), Status.ERR_VERSION],
    ['version 3', rtp({ version: 3 }), Status.ERR_VERSION],
    ['CSRC count past the end', (() => { const b = rtp({ payload: new Uint8Array(0) }); b[0] |= 2; return b; })(), Status.ERR_CSRC],
    ['extension bit without extension header', (() => { const b = rtp({ payload: new Uint8Array(2) }); b[0] |= 0x10; return b; })(), Status.ERR_EXT_HEADER],
    ['extension length past the end', (() => {
      const b = rtp({ ext: { profile: 0xbede, elements: [{ id: 1, data: new Uint8Array([1]) }] }, payload: new Uint8Array(0) });
      b[15] = 9; return b;
    })(), Status.ERR_EXT_LENGTH],
    ['one-byte element past its block', rtp({ ext: { profile: 0xbede, elements: [], raw: new Uint8Array([0x13, 1, 2, 3]) } }), Status.ERR_EXT_ELEMENT],
    ['two-byte element length past its block', rtp({ ext: { profile: 0x1000, elements: [], raw: new Uint8Array([5, 9, 1, 2]) } }), Status.ERR_EXT_ELEMENT],
    ['two-byte element header cut', rtp({ ext: { profile: 0x1000, elements: [], raw: new Uint8Array([0, 0, 0, 7]) } }), Status.ERR_EXT_ELEMENT],
    ['padding count 0', (() => { const b = rtp({ padding: 1 }); b[b.length - 1] = 0; return b; })(), Status.ERR_PADDING],
    ['padding larger than the payload', (() => { const b = rtp({ padding: 1 }); b[b.length - 1] = 200; return b; })(), Status.ERR_PADDING],
    ['padding eats into the header', (() => { const b = rtp({ payload: new Uint8Array(0), padding: 1 }); b[b.length - 1] = 2; return b; })(), Status.ERR_PADDING],
  ];
  for (const [name, bytes, code] of malformed) {
    it(`rejects ${name} with ${code}`, () => {
      expect(parse(bytes)).toBe(code);
    });
  }

  it('rejects offsets outside linear memory instead of trapping', () => {
    expect(core.parse(core.bytes.length - 4, 100)).toBe(Status.ERR_ARG);
    expect(core.parse(0, 12)).toBe(Status.ERR_ARG);
    expect(core.parse(-5, 12)).toBe(Status.ERR_ARG);
  });

  it('fuzz: random and mutated bytes never trap and never report ranges past the packet', () => {
    const rnd = prng(7);
    const base = rtp({ ext: { profile: 0xbede, elements: [{ id: 3, data: new Uint8Array(8) }] }, csrcs: [9], padding: 3 });
    for (let i = 0; i < 20000; i++) {
      let b: Uint8Array;
      if (i % 2) {
        b = base.slice(0, Math.floor(rnd() * (base.length + 1)));
        for (let k = 0; k < 3; k++) if (b.length) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      } else {
        b = new Uint8Array(Math.floor(rnd() * 64));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
        if (b.length) b[0] = 0x80 | (b[0]! & 0x3f);
      }
      const code = parse(b, { absCaptureTime: 3, transportCc: 5, playoutDelay: 6 });
      expect(code <= 0).toBe(true);
      if (code === Status.OK) {
        expect(core.pktHeaderLength + core.pktPayloadLength + core.pktPaddingLength).toBe(b.length);
        if (core.pktAbsCaptureOffset >= 0) {
          expect(core.pktAbsCaptureOffset + core.pktAbsCaptureLength).toBeLessThanOrEqual(core.scratchOffset + b.length);
        }
      }
    }
  });
});

describe('header extensions (RFC 8285)', () => {
  const abs = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  it('one-byte: abs-capture-time, transport-wide seq, playout-delay, with padding bytes between', () => {
    const b = rtp({
      ext: {
        profile: 0xbede, elements: [],
        raw: new Uint8Array([0x31, 0x12, 0x34, 0, 0, 0x27, ...abs, 0x62, 0x01, 0x00, 0x64]),
      },
    });
    expect(parse(b, { absCaptureTime: 2, transportCc: 3, playoutDelay: 6 })).toBe(Status.OK);
    expect(core.pktExtProfile).toBe(0xbede);
    expect(core.pktTransportSeq).toBe(0x1234);
    expect(core.pktAbsCaptureLength).toBe(8);
    expect([...core.view(core.pktAbsCaptureOffset, 8)]).toEqual([...abs]);
    expect(core.pktPlayoutMin).toBe(0x010); // 12 bits of 0x010064
    expect(core.pktPlayoutMax).toBe(0x064);
  });

  it('one-byte: id 15 stops parsing', () => {
    const b = rtp({ ext: { profile: 0xbede, elements: [], raw: new Uint8Array([0xf0, 0x31, 0x12, 0x34]) } });
    expect(parse(b, { transportCc: 3 })).toBe(Status.OK);
    expect(core.pktTransportSeq).toBe(-1);
  });

  it('two-byte: 16-byte abs-capture-time and a zero-length element', () => {
    const v = new Uint8Array(16).map((_, i) => i + 1);
    const b = rtp({ ext: { profile: 0x1000, elements: [{ id: 20, data: new Uint8Array(0) }, { id: 200, data: v }] } });
    expect(parse(b, { absCaptureTime: 200 })).toBe(Status.OK);
    expect(core.pktExtProfile).toBe(0x1000);
    expect(core.pktAbsCaptureLength).toBe(16);
    expect([...core.view(core.pktAbsCaptureOffset, 16)]).toEqual([...v]);
    expect(core.findExtension(20)).toBeGreaterThan(0);
    expect(core.extLength).toBe(0);
  });

  it('absent extensions report -1', () => {
    expect(parse(rtp(), { absCaptureTime: 2, transportCc: 3, playoutDelay: 6 })).toBe(Status.OK);
    expect(core.pktAbsCaptureOffset).toBe(-1);
    expect(core.pktTransportSeq).toBe(-1);
    expect(core.pktPlayoutMin).toBe(-1);
    expect(core.findExtension(2)).toBe(Status.NOT_FOUND);
  });

  it('findExtension looks up any id in the last parsed packet', () => {
    const b = rtp({ ext: { profile: 0xbede, elements: [{ id: 1, data: new Uint8Array([9]) }, { id: 4, data: new Uint8Array([7, 8, 9]) }] } });
    expect(parse(b)).toBe(Status.OK);
    const off = core.findExtension(4);
    expect(off).toBeGreaterThan(0);
    expect(core.extLength).toBe(3);
    expect([...core.view(off, 3)]).toEqual([7, 8, 9]);
    expect(core.findExtension(5)).toBe(Status.NOT_FOUND);
  });
});

describe('isKeyframe', () => {
  const cases: [string, number, number[], boolean][] = [
    ['VP8 key (S=1 PID=0 P=0)', Codec.VP8, [0x10, 0x00, 0x9d], true],
    ['VP8 delta (P=1)', Codec.VP8, [0x10, 0x01], false],
    ['VP8 not start of partition 0', Codec.VP8, [0x00, 0x00], false],
    ['VP8 PID 1', Codec.VP8, [0x11, 0x00], false],
    ['VP8 key with X, I (15-bit picture id), L, T', Codec.VP8, [0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x00], true],
    ['VP8 delta with X, I (7-bit)', Codec.VP8, [0x90, 0x80, 0x05, 0x01], false],
    ['VP8 truncated descriptor', Codec.VP8, [0x90, 0x80], false],
    ['VP9 key (P=0 B=1)', Codec.VP9, [0x08], true],
    ['VP9 inter (P=1)', Codec.VP9, [0x48], false],
    ['VP9 not begin of frame', Codec.VP9, [0x00], false],
    ['VP9 key with L, SID 0', Codec.VP9, [0xa8, 0x85, 0x12, 0x00], true],
    ['VP9 upper spatial layer (SID 1)', Codec.VP9, [0x28, 0x02], false],
    ['VP9 L truncated', Codec.VP9, [0x28], false],
    ['H264 IDR single NAL', Codec.H264, [0x65, 0x88], true],
    ['H264 SPS single NAL', Codec.H264, [0x67, 0x42], true],
    ['H264 non-IDR slice', Codec.H264, [0x41, 0x9a], false],
    ['H264 STAP-A with SPS+PPS', Codec.H264, [0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce], true],
    ['H264 STAP-A with IDR second', Codec.H264, [0x18, 0, 1, 0x06, 0, 2, 0x65, 0x88], true],
    ['H264 STAP-A without key NAL', Codec.H264, [0x18, 0, 1, 0x06, 0, 1, 0x41], false],
    ['H264 STAP-A size past the end', Codec.H264, [0x18, 0, 9, 0x67], false],
    ['H264 FU-A start of IDR', Codec.H264, [0x7c, 0x85, 0x88], true],
    ['H264 FU-A middle of IDR', Codec.H264, [0x7c, 0x05, 0x88], false],
    ['H264 FU-A start of non-IDR', Codec.H264, [0x7c, 0x81], false],
    ['H264 FU-A truncated', Codec.H264, [0x7c], false],
    ['AV1 N=1', Codec.AV1, [0x18, 0x0a], true],
    ['AV1 N=0', Codec.AV1, [0x10], false],
    ['AV1 N=1 but continuation (Z=1)', Codec.AV1, [0x88], false],
    ['no codec (audio)', Codec.NONE, [0x10, 0x00], false],
  ];
  for (const [name, codec, bytes, want] of cases) {
    it(name, () => {
      const off = core.writeScratch(new Uint8Array(bytes));
      expect(core.isKeyframe(codec as never, off, bytes.length)).toBe(want);
    });
  }
  it('empty payload is never a keyframe', () => {
    expect(core.isKeyframe(Codec.H264, core.scratchOffset, 0)).toBe(false);
  });
});

describe('bounds: inputs flush against the end of linear memory (an over-read would trap)', () => {
  it('parse, keyframe, RTCP walk and NACK parse never read past the input', () => {
    // A fresh Core: its tables sit far below the last page, which is unused heap space.
    const c = new Core({ maxStreams: 1, maxDownstreams: 1, outSlots: 1 });
    const rnd = prng(99);
    const place = (b: Uint8Array) => {
      const end = c.bytes.length;
      c.bytes.set(b, end - b.length);
      return end - b.length;
    };
    const seeds = [
      rtp({ ext: { profile: 0xbede, elements: [{ id: 2, data: new Uint8Array(8) }] }, padding: 2 }),
      rtp({ ext: { profile: 0x1000, elements: [{ id: 2, data: new Uint8Array(16) }] }, csrcs: [1, 2] }),
      new Uint8Array([0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0xff, 0xff]),
      new Uint8Array([0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]),
      new Uint8Array([0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x00]),
    ];
    for (let i = 0; i < 30000; i++) {
      const s = seeds[i % seeds.length]!;
      const b = s.slice(0, Math.floor(rnd() * (s.length + 1)));
      for (let k = 0; k < 2; k++) if (b.length) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const off = place(b);
      c.parse(off, b.length, { absCaptureTime: 2, transportCc: 3, playoutDelay: 4 });
      if (c.pktCode === 0) c.findExtension(2);
      for (const codec of [Codec.VP8, Codec.VP9, Codec.H264, Codec.AV1]) c.isKeyframe(codec, off, b.length);
      c.walkRtcp(off, b.length);
      c.parseNack(off, b.length);
    }
    // Reaching here without a RuntimeError (out of bounds) is the assertion; check one result too.
    const off = place(rtp({ seq: 4242 }));
    expect(c.parse(off, 16)).toBe(Status.OK);
    expect(c.pktSeq).toBe(4242);
  });
});
