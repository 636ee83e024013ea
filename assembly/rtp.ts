// RTP header parsing and validation (RFC 3550 §5.1) with RFC 8285 header extensions.
// Every read is preceded by a bounds check against `len`, so malformed input returns an error
// code and never reads outside [p, p+len).
import {
  OK, ERR_SHORT, ERR_VERSION, ERR_CSRC, ERR_EXT_HEADER, ERR_EXT_LENGTH, ERR_EXT_ELEMENT,
  ERR_PADDING, RES_SSRC, RES_PT, RES_MARKER, RES_SEQ, RES_TS, RES_HDR_LEN, RES_PAY_LEN,
  RES_PAD_LEN, RES_EXT_PROFILE, RES_EXT_OFF, RES_EXT_LEN, RES_ABS_OFF, RES_ABS_LEN, RES_TWCC,
  RES_PLAYOUT_MIN, RES_PLAYOUT_MAX, RES_CSRC_COUNT, RES_PKT_OFF, RES_PKT_LEN, RES_A, RES_B,
} from "./layout";

@inline export function be16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}
@inline export function be32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}
@inline export function st16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}
@inline export function st32(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}

/**
 * Walk an RFC 8285 extension block [e, e+n) with profile `profile`. Calls back through the
 * result block: records abs-capture-time (id absId), transport-wide seq (twccId) and
 * playout-delay (playoutId). Returns OK or ERR_EXT_ELEMENT.
 */
function walkExtensions(e: usize, n: i32, profile: u32, res: usize, absId: i32, twccId: i32, playoutId: i32): i32 {
  let i: i32 = 0;
  if (profile == 0xBEDE) {
    // One-byte header (RFC 8285 §4.2): ID 0 is padding, ID 15 stops parsing.
    while (i < n) {
      let b = <i32>load<u8>(e + <usize>i);
      let id = b >> 4;
      if (id == 0) { i++; continue; }
      if (id == 15) break;
      let l = (b & 15) + 1;
      if (<u32>(i + 1 + l) > <u32>n) return ERR_EXT_ELEMENT;
      noteExtension(e + <usize>(i + 1), l, id, res, absId, twccId, playoutId);
      i += 1 + l;
    }
  } else if ((profile & 0xFFF0) == 0x1000) {
    // Two-byte header (RFC 8285 §4.3): ID 0 is a padding byte, length may be 0.
    while (i < n) {
      let id = <i32>load<u8>(e + <usize>i);
      if (id == 0) { i++; continue; }
      if (<u32>(i + 2) > <u32>n) return ERR_EXT_ELEMENT;
      let l = <i32>load<u8>(e + <usize>(i + 1));
      if (<u32>(i + 2 + l) > <u32>n) return ERR_EXT_ELEMENT;
      noteExtension(e + <usize>(i + 2), l, id, res, absId, twccId, playoutId);
      i += 2 + l;
    }
  }
  return OK;
}

@inline function noteExtension(v: usize, l: i32, id: i32, res: usize, absId: i32, twccId: i32, playoutId: i32): void {
  if (id == absId) {
    // abs-capture-time: 8 bytes (NTP timestamp), optionally +8 (estimated clock offset).
    if (l == 8 || l == 16) {
      store<i32>(res + RES_ABS_OFF, <i32>v);
      store<i32>(res + RES_ABS_LEN, l);
    }
  } else if (id == twccId) {
    if (l >= 2) store<i32>(res + RES_TWCC, <i32>be16(v));
  } else if (id == playoutId) {
    // playout-delay: 12-bit min, 12-bit max in 10 ms units.
    if (l >= 3) {
      let x = (<u32>load<u8>(v) << 16) | (<u32>load<u8>(v + 1) << 8) | <u32>load<u8>(v + 2);
      store<i32>(res + RES_PLAYOUT_MIN, <i32>(x >> 12));
      store<i32>(res + RES_PLAYOUT_MAX, <i32>(x & 0xFFF));
    }
  }
}

/**
 * Parse and validate the RTP packet at [p, p+len) into the result block. Extension ids of 0
 * are not looked up. Returns OK or a negative ERR_* code.
 */
export function parseRtp(p: usize, len: i32, res: usize, absId: i32, twccId: i32, playoutId: i32): i32 {
  store<i32>(res + RES_ABS_OFF, -1);
  store<i32>(res + RES_ABS_LEN, 0);
  store<i32>(res + RES_TWCC, -1);
  store<i32>(res + RES_PLAYOUT_MIN, -1);
  store<i32>(res + RES_PLAYOUT_MAX, -1);
  store<i32>(res + RES_EXT_PROFILE, 0);
  store<i32>(res + RES_EXT_OFF, 0);
  store<i32>(res + RES_EXT_LEN, 0);
  store<i32>(res + RES_PKT_OFF, <i32>p);
  store<i32>(res + RES_PKT_LEN, len);
  if (len < 12) return ERR_SHORT;
  let b0 = <i32>load<u8>(p);
  if ((b0 >> 6) != 2) return ERR_VERSION;
  let b1 = <i32>load<u8>(p + 1);
  let cc = b0 & 15;
  let h: i32 = 12 + (cc << 2);
  if (h > len) return ERR_CSRC;
  store<i32>(res + RES_CSRC_COUNT, cc);
  if (b0 & 0x10) {
    if (h + 4 > len) return ERR_EXT_HEADER;
    let profile = be16(p + <usize>h);
    let n = <i32>be16(p + <usize>(h + 2)) << 2;
    let e = h + 4;
    if (e + n > len) return ERR_EXT_LENGTH;
    store<i32>(res + RES_EXT_PROFILE, <i32>profile);
    store<i32>(res + RES_EXT_OFF, <i32>(p + <usize>e));
    store<i32>(res + RES_EXT_LEN, n);
    if (absId | twccId | playoutId) {
      let r = walkExtensions(p + <usize>e, n, profile, res, absId, twccId, playoutId);
      if (r != OK) return r;
    } else {
      // Still validate the element structure so a malformed block is caught at ingest.
      let r = walkExtensions(p + <usize>e, n, profile, res, 0, 0, 0);
      if (r != OK) return r;
    }
    h = e + n;
  }
  let pad: i32 = 0;
  if (b0 & 0x20) {
    // RFC 3550 §5.1: the last octet counts the padding octets including itself.
    pad = <i32>load<u8>(p + <usize>(len - 1));
    if (pad == 0 || h + pad > len) return ERR_PADDING;
  }
  store<u32>(res + RES_SSRC, be32(p + 8));
  store<i32>(res + RES_PT, b1 & 0x7F);
  store<i32>(res + RES_MARKER, b1 >> 7);
  store<i32>(res + RES_SEQ, <i32>be16(p + 2));
  store<u32>(res + RES_TS, be32(p + 4));
  store<i32>(res + RES_HDR_LEN, h);
  store<i32>(res + RES_PAY_LEN, len - h - pad);
  store<i32>(res + RES_PAD_LEN, pad);
  return OK;
}

/**
 * Find extension `id` in the block recorded by the last parse (profile, [e, e+n)). Writes the
 * value offset to RES_A and its length to RES_B; returns OK or NOT_FOUND (-40).
 */
export function findExtension(profile: u32, e: usize, n: i32, id: i32, res: usize): i32 {
  let i: i32 = 0;
  if (profile == 0xBEDE) {
    while (i < n) {
      let b = <i32>load<u8>(e + <usize>i);
      let eid = b >> 4;
      if (eid == 0) { i++; continue; }
      if (eid == 15) break;
      let l = (b & 15) + 1;
      if (<u32>(i + 1 + l) > <u32>n) return -6;
      if (eid == id) {
        store<i32>(res + RES_A, <i32>(e + <usize>(i + 1)));
        store<i32>(res + RES_B, l);
        return OK;
      }
      i += 1 + l;
    }
  } else if ((profile & 0xFFF0) == 0x1000) {
    while (i < n) {
      let eid = <i32>load<u8>(e + <usize>i);
      if (eid == 0) { i++; continue; }
      if (<u32>(i + 2) > <u32>n) return -6;
      let l = <i32>load<u8>(e + <usize>(i + 1));
      if (<u32>(i + 2 + l) > <u32>n) return -6;
      if (eid == id) {
        store<i32>(res + RES_A, <i32>(e + <usize>(i + 2)));
        store<i32>(res + RES_B, l);
        return OK;
      }
      i += 2 + l;
    }
  }
  return -40;
}
