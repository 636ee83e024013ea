// Keyframe detection from the RTP payload [p, p+n). Returns 1 when this packet starts (or, for
// H264 STAP-A/SPS, carries) a keyframe; 0 otherwise, including for truncated payloads.
import { CODEC_VP8, CODEC_VP9, CODEC_H264, CODEC_AV1 } from "./layout";

export function isKeyframe(codec: i32, p: usize, n: i32): i32 {
  if (n <= 0) return 0;
  switch (codec) {
    case CODEC_VP8: return vp8(p, n);
    case CODEC_VP9: return vp9(p, n);
    case CODEC_H264: return h264(p, n);
    case CODEC_AV1: return av1(p, n);
  }
  return 0;
}

// RFC 7741 §4.2/§4.3: payload descriptor, then on the first packet of partition 0 (S=1, PID=0)
// the VP8 payload header whose P bit (bit 0 of byte 0) is 0 for a key frame.
function vp8(p: usize, n: i32): i32 {
  let b = <i32>load<u8>(p);
  if ((b & 0x10) == 0 || (b & 0x07) != 0) return 0; // not S=1, PID=0
  let i: i32 = 1;
  if (b & 0x80) {
    if (i >= n) return 0;
    let x = <i32>load<u8>(p + <usize>i);
    i++;
    if (x & 0x80) { // I: picture id, 7 or 15 bits (M bit)
      if (i >= n) return 0;
      i += (load<u8>(p + <usize>i) & 0x80) ? 2 : 1;
    }
    if (x & 0x40) i++; // L: TL0PICIDX
    if (x & 0x30) i++; // T or K: TID/Y/KEYIDX byte
  }
  if (i >= n) return 0;
  return (load<u8>(p + <usize>i) & 1) == 0 ? 1 : 0;
}

// RFC 9628 §4.2: I P L F B E V Z. A key frame is not inter-picture predicted (P=0) and this is the
// start of the frame (B=1) in the base spatial layer (SID 0 when L is present).
function vp9(p: usize, n: i32): i32 {
  let b = <i32>load<u8>(p);
  if ((b & 0x40) != 0 || (b & 0x08) == 0) return 0;
  if (b & 0x20) {
    let i: i32 = 1;
    if (b & 0x80) {
      if (i >= n) return 0;
      i += (load<u8>(p + <usize>i) & 0x80) ? 2 : 1;
    }
    if (i >= n) return 0;
    let sid = (<i32>load<u8>(p + <usize>i) >> 1) & 7;
    if (sid != 0) return 0;
  }
  return 1;
}

@inline function h264KeyNal(t: i32): bool {
  return t == 5 || t == 7; // IDR slice or SPS (an SPS precedes every IDR in WebRTC streams)
}

// RFC 6184 §5.6-5.8: single NAL unit (1-23), STAP-A (24), FU-A (28, start bit).
function h264(p: usize, n: i32): i32 {
  let t = <i32>load<u8>(p) & 0x1F;
  if (t >= 1 && t <= 23) return h264KeyNal(t) ? 1 : 0;
  if (t == 24) {
    let i: i32 = 1;
    while (i + 2 < n) {
      let size = (<i32>load<u8>(p + <usize>i) << 8) | <i32>load<u8>(p + <usize>(i + 1));
      if (size == 0 || i + 2 + size > n) return 0;
      if (h264KeyNal(<i32>load<u8>(p + <usize>(i + 2)) & 0x1F)) return 1;
      i += 2 + size;
    }
    return 0;
  }
  if (t == 28) {
    if (n < 2) return 0;
    let fu = <i32>load<u8>(p + 1);
    return ((fu & 0x80) != 0 && h264KeyNal(fu & 0x1F)) ? 1 : 0;
  }
  return 0;
}

// AV1 RTP spec §4.4: aggregation header Z Y W W N - - -. N=1 marks the first packet of a coded
// video sequence, which starts with a key frame.
function av1(p: usize, n: i32): i32 {
  let b = <i32>load<u8>(p);
  return ((b & 0x08) != 0 && (b & 0x80) == 0) ? 1 : 0;
}
