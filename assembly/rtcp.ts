// RTCP: compound walker (RFC 3550 §6, RFC 4585 §6, RFC 5104 §4.3.1, REMB draft, transport-cc
// draft), Generic NACK build/parse (RFC 4585 §6.2.1), Receiver Report build (RFC 3550 §6.4.2).
import {
  OK, ERR_ARG, ERR_STREAM, ERR_RTCP_SHORT, ERR_RTCP_VERSION, ERR_RTCP_LENGTH, ERR_RTCP_PADDING,
  ITEM_MAX, ITEM_SIZE, IT_TYPE, IT_OFF, IT_LEN, IT_FMT, IT_SSRC, IT_MEDIA, IT_EXTRA, LIST_MAX,
  RTCP_OUT_SIZE, RT_SR, RT_RR, RT_SDES, RT_BYE, RT_APP, RT_NACK, RT_TWCC, RT_RTPFB, RT_PLI,
  RT_FIR, RT_REMB, RT_PSFB, RT_OTHER,
} from "./layout";
import { be16, be32, st16, st32 } from "./rtp";
import { itemsPtr, listPtr, rtcpOutPtr } from "./state";
import {
  openStream, ST_HIGHEST, ST_BASE, ST_RECEIVED, ST_EXP_PRIOR, ST_RECV_PRIOR, ST_JITTER, ST_SSRC,
  ST_LSR, ST_HAS_SR, ST_SR_AT, ST_STARTED,
} from "./stream";

/**
 * Walk the compound RTCP packet at [p, p+len) and fill the item table. Returns the item count or
 * a negative error. Items past ITEM_MAX are not recorded (the count is capped).
 */
export function walkRtcp(p: usize, len: i32): i32 {
  let i: i32 = 0;
  let n: i32 = 0;
  if (len < 4) return ERR_RTCP_SHORT;
  while (i < len) {
    if (i + 4 > len) return ERR_RTCP_SHORT;
    let q = p + <usize>i;
    let b0 = <i32>load<u8>(q);
    if ((b0 >> 6) != 2) return ERR_RTCP_VERSION;
    let pt = <i32>load<u8>(q + 1);
    let size = (<i32>be16(q + 2) + 1) << 2;
    if (i + size > len) return ERR_RTCP_LENGTH;
    if (b0 & 0x20) {
      // RFC 3550 §6.4.1: only the last packet of a compound may be padded.
      let pad = <i32>load<u8>(q + <usize>(size - 1));
      if (i + size != len || pad == 0 || pad > size - 4) return ERR_RTCP_PADDING;
    }
    let fmt = b0 & 31;
    let type = RT_OTHER;
    let ssrc: u32 = 0;
    let media: u32 = 0;
    let extra: f64 = 0;
    if (size >= 8) ssrc = be32(q + 4);
    if (pt == 200) {
      if (size < 28 + fmt * 24) return ERR_RTCP_SHORT;
      type = RT_SR;
      extra = <f64>((be32(q + 8) << 16) | (be32(q + 12) >> 16)); // NTP middle 32 bits (LSR)
    } else if (pt == 201) {
      if (size < 8 + fmt * 24) return ERR_RTCP_SHORT;
      type = RT_RR;
    } else if (pt == 202) {
      type = RT_SDES;
    } else if (pt == 203) {
      if (size < 4 + fmt * 4) return ERR_RTCP_SHORT;
      type = RT_BYE;
    } else if (pt == 204) {
      if (size < 12) return ERR_RTCP_SHORT;
      type = RT_APP;
    } else if (pt == 205 || pt == 206) {
      // RFC 4585 §6.1: common feedback header with sender and media source SSRCs.
      if (size < 12) return ERR_RTCP_SHORT;
      media = be32(q + 8);
      if (pt == 205) {
        type = fmt == 1 ? RT_NACK : fmt == 15 ? RT_TWCC : RT_RTPFB;
        if (type == RT_NACK && size < 16) return ERR_RTCP_SHORT;
        if (type == RT_TWCC && size < 20) return ERR_RTCP_SHORT;
      } else {
        if (fmt == 1) type = RT_PLI;
        else if (fmt == 4) {
          if (size < 20) return ERR_RTCP_SHORT;
          type = RT_FIR;
        } else if (fmt == 15 && size >= 20 && be32(q + 12) == 0x52454D42) { // 'REMB'
          type = RT_REMB;
          // exp (6 bits), mantissa (18 bits) after the SSRC count byte.
          let x = be32(q + 16);
          extra = <f64>(x & 0x3FFFF) * Math.pow(2, <f64>((x >> 18) & 63));
        } else type = RT_PSFB;
      }
    }
    if (n < ITEM_MAX) {
      let it = itemsPtr + <usize>(n * ITEM_SIZE);
      store<i32>(it + IT_TYPE, type);
      store<i32>(it + IT_OFF, <i32>q);
      store<i32>(it + IT_LEN, size);
      store<i32>(it + IT_FMT, fmt);
      store<u32>(it + IT_SSRC, ssrc);
      store<u32>(it + IT_MEDIA, media);
      store<f64>(it + IT_EXTRA, extra);
      n++;
    }
    i += size;
  }
  return n;
}

/**
 * Decode the Generic NACK FCIs of the RTPFB item at [q, q+size) into 16-bit seqs in the list
 * region; returns the count (capped at LIST_MAX) or an error.
 */
export function parseNack(q: usize, size: i32): i32 {
  if (size < 16 || (size & 3) != 0) return ERR_RTCP_SHORT;
  if ((<i32>load<u8>(q) >> 6) != 2 || load<u8>(q + 1) != 205 || (load<u8>(q) & 31) != 1) return ERR_ARG;
  let declared = (<i32>be16(q + 2) + 1) << 2;
  if (declared > size) return ERR_RTCP_LENGTH;
  let n: i32 = 0;
  let list = listPtr;
  for (let i: i32 = 12; i + 4 <= declared; i += 4) {
    let pid = be16(q + <usize>i);
    let blp = be16(q + <usize>(i + 2));
    if (n < LIST_MAX) { store<u32>(list + <usize>(n << 2), pid); n++; }
    for (let b: u32 = 0; b < 16; b++) {
      if ((blp >> b) & 1) {
        if (n < LIST_MAX) { store<u32>(list + <usize>(n << 2), (pid + b + 1) & 0xFFFF); n++; }
      }
    }
  }
  return n;
}

/**
 * Build a Generic NACK (RTPFB fmt 1) for `count` 16-bit seqs from the list region into the RTCP
 * output region; seqs should be ascending in wrap-aware order (pollNacks writes them so).
 * Returns the byte length.
 */
export function buildNack(senderSsrc: u32, mediaSsrc: u32, count: i32): i32 {
  if (count <= 0 || count > LIST_MAX) return ERR_ARG;
  let q = rtcpOutPtr;
  let list = listPtr;
  let w: i32 = 12;
  let i: i32 = 0;
  let maxFci = (RTCP_OUT_SIZE - 12) >> 2;
  let fcis: i32 = 0;
  while (i < count && fcis < maxFci) {
    let pid = load<u32>(list + <usize>(i << 2)) & 0xFFFF;
    let blp: u32 = 0;
    i++;
    while (i < count) {
      let d = (load<u32>(list + <usize>(i << 2)) - pid) & 0xFFFF;
      if (d == 0) { i++; continue; } // repeated seq
      if (d > 16) break;
      blp |= <u32>1 << (d - 1);
      i++;
    }
    st16(q + <usize>w, pid);
    st16(q + <usize>(w + 2), blp);
    w += 4;
    fcis++;
  }
  store<u8>(q, 0x80 | 1);
  store<u8>(q + 1, 205);
  st16(q + 2, <u32>((w >> 2) - 1));
  st32(q + 4, senderSsrc);
  st32(q + 8, mediaSsrc);
  return w;
}

/** Record an SR's NTP middle 32 bits for stream `s` (RR LSR/DLSR, RFC 3550 §6.4.1). */
export function recordSr(s: i32, lsr: u32, now: f64): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  store<u32>(r + ST_LSR, lsr);
  store<i32>(r + ST_HAS_SR, 1);
  store<f64>(r + ST_SR_AT, now);
  return OK;
}

/**
 * Build a Receiver Report from `count` stream indices in the list region (one report block each,
 * at most 31, RFC 3550 §6.4.2) into the RTCP output region. Updates the "prior" counters used for
 * the fraction lost (RFC 3550 A.3). Returns the byte length.
 */
export function buildRr(senderSsrc: u32, count: i32, now: f64): i32 {
  if (count < 0 || count > 31) return ERR_ARG;
  let q = rtcpOutPtr;
  let list = listPtr;
  let w: i32 = 8;
  let rc: i32 = 0;
  for (let k = 0; k < count; k++) {
    let s = <i32>load<u32>(list + <usize>(k << 2));
    let r = openStream(s);
    if (!r || !load<i32>(r + ST_STARTED)) continue;
    let highest = load<i64>(r + ST_HIGHEST);
    let expected = highest - load<i64>(r + ST_BASE) + 1;
    let received = load<i64>(r + ST_RECEIVED);
    let lost = expected - received;
    // Cumulative lost is a signed 24-bit field; clamp rather than wrap.
    if (lost > 0x7FFFFF) lost = 0x7FFFFF;
    if (lost < -0x800000) lost = -0x800000;
    let expInt = expected - load<i64>(r + ST_EXP_PRIOR);
    let recvInt = received - load<i64>(r + ST_RECV_PRIOR);
    store<i64>(r + ST_EXP_PRIOR, expected);
    store<i64>(r + ST_RECV_PRIOR, received);
    let lostInt = expInt - recvInt;
    let fraction: u32 = (expInt == 0 || lostInt <= 0) ? 0 : <u32>((lostInt << 8) / expInt);
    if (fraction > 255) fraction = 255;
    let b = q + <usize>w;
    st32(b, load<u32>(r + ST_SSRC));
    st32(b + 4, (fraction << 24) | (<u32>lost & 0xFFFFFF));
    st32(b + 8, <u32>(highest - 0x10000)); // cycles << 16 | highest seq
    st32(b + 12, <u32>load<f64>(r + ST_JITTER));
    let lsr: u32 = 0;
    let dlsr: u32 = 0;
    if (load<i32>(r + ST_HAS_SR)) {
      lsr = load<u32>(r + ST_LSR);
      let delay = now - load<f64>(r + ST_SR_AT);
      dlsr = delay > 0 ? <u32>(delay * 65.536) : 0; // units of 1/65536 s
    }
    st32(b + 16, lsr);
    st32(b + 20, dlsr);
    w += 24;
    rc++;
  }
  store<u8>(q, <u8>(0x80 | rc));
  store<u8>(q + 1, 201);
  st16(q + 2, <u32>((w >> 2) - 1));
  st32(q + 4, senderSsrc);
  return w;
}
