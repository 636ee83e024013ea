// Per-downstream munger: rewrites SSRC, payload type, sequence number and timestamp so each
// downstream sees one continuous RTP stream across source switches (failover, re-parent), and
// classifies every packet. Output values are extended (64-bit) and derived as
// out = in + offset; offsets change only when a new source epoch starts.
import {
  OK, ERR_DOWNSTREAM, ERR_ARG, ERR_STREAM, ERR_STATE, NOT_FOUND,
  SLOT_STRIDE, SLOT_HDR, MAX_PACKET, SL_EXT_SEQ, SL_EXT_TS, SL_ARRIVAL, SL_LEN, SL_HDR_LEN, SL_PAY_LEN,
  SL_FLAGS, SLF_VALID, SLF_KEYFRAME, SLF_KEY_START,
  D_IN_ORDER, D_OUT_OF_ORDER, D_GAP, D_DUPLICATE, D_DROP, D_RETRANSMIT,
  DROP_NONE, DROP_WAIT_KEYFRAME, DROP_BEFORE_SWITCH, DROP_TOO_OLD, DROP_NO_SOURCE,
  RES_M_DECISION, RES_M_OUT_OFF, RES_M_OUT_LEN, RES_M_SEQ, RES_M_TS, RES_M_GAP, RES_M_REASON,
  RES_M_SWITCHED, RES_M_EXT_SEQ, RES_M_IN_EXT, RES_A, RES_B, FANOUT_ENTRY,
} from "./layout";
import { st16, st32 } from "./rtp";
import { resPtr, dsPtr, maxDs, outPtr, outSlots, fanPtr, exportPtr, DS_SIZE, EXPORT_SIZE } from "./state";
import { openStream, streamRec, slotPtr, findSlot, ST_FIRST_DS, ST_CLOCK, ST_RING_SLOTS, ST_MAX_AGE, ST_RING } from "./stream";

export const DS_OPEN: i32 = 0;
export const DS_SOURCE: i32 = 4; // i32 stream index, -1
export const DS_SSRC: i32 = 8; // u32
export const DS_PT: i32 = 12; // i32 out payload type, -1 keeps the input's
export const DS_RTX_SSRC: i32 = 16; // u32
export const DS_RTX_PT: i32 = 20; // i32, -1 = no RTX (retransmit in the media stream)
export const DS_SEQ_OFF: i32 = 24; // i64 out ext seq - in ext seq
export const DS_TS_OFF: i32 = 32; // i64 out ext ts - in ext ts
export const DS_HIGH_IN: i32 = 40; // i64 highest in ext seq forwarded
export const DS_HIGH_OUT: i32 = 48; // i64 highest out ext seq
export const DS_LAST_TS: i32 = 56; // i64 highest out ext ts
export const DS_LAST_MS: i32 = 64; // f64 arrival time of the packet that set DS_LAST_TS
export const DS_EPOCH_IN: i32 = 72; // i64 first in ext seq of this source epoch
export const DS_EPOCH_OUT: i32 = 80; // i64 first out ext seq of this source epoch
export const DS_WINDOW: i32 = 88; // u64 bit i: DS_HIGH_IN - i was forwarded
export const DS_FLAGS: i32 = 96; // i32
export const DS_RTX_SEQ: i32 = 100; // i32 next RTX seq (own seq space, RFC 4588 §4)
export const DS_NEXT: i32 = 104; // i32 next downstream of the same source, -1
export const DS_INIT_SEQ: i32 = 108; // i32 first out seq (random, chosen by the caller)
export const DS_INIT_TS: i32 = 112; // u32 first out ts
export const DS_CLOCK: i32 = 116; // i32 clock rate of the current source

export const F_STARTED: i32 = 1;
export const F_PENDING: i32 = 2; // next packet starts a new source epoch
export const F_REQUIRE_KF: i32 = 4; // configured: a new epoch must start on a keyframe

const STATE_MAGIC: u32 = 0x434E4D31; // "CNM1"
const WINDOW_BITS: i64 = 64;

@inline function dsRec(d: i32): usize {
  return dsPtr + <usize>(d * DS_SIZE);
}

@inline function openDs(d: i32): usize {
  if (<u32>d >= <u32>maxDs) return 0;
  let r = dsRec(d);
  return load<i32>(r + DS_OPEN) ? r : 0;
}

export function dsOpen(d: i32, ssrc: u32, pt: i32, rtxSsrc: u32, rtxPt: i32, initSeq: i32, initTs: u32, requireKeyframe: i32): i32 {
  if (<u32>d >= <u32>maxDs || pt > 127 || rtxPt > 127) return ERR_ARG;
  let r = dsRec(d);
  if (load<i32>(r + DS_OPEN)) return ERR_DOWNSTREAM;
  memory.fill(r, 0, <usize>DS_SIZE);
  store<i32>(r + DS_OPEN, 1);
  store<i32>(r + DS_SOURCE, -1);
  store<u32>(r + DS_SSRC, ssrc);
  store<i32>(r + DS_PT, pt < 0 ? -1 : pt);
  store<u32>(r + DS_RTX_SSRC, rtxSsrc);
  store<i32>(r + DS_RTX_PT, rtxPt < 0 ? -1 : rtxPt);
  store<i32>(r + DS_RTX_SEQ, initSeq ^ 0x5A5A);
  store<i32>(r + DS_NEXT, -1);
  store<i32>(r + DS_INIT_SEQ, initSeq & 0xFFFF);
  store<u32>(r + DS_INIT_TS, initTs);
  store<i32>(r + DS_FLAGS, requireKeyframe ? F_REQUIRE_KF : 0);
  return OK;
}

function unlink(r: usize, d: i32): void {
  let s = load<i32>(r + DS_SOURCE);
  if (s < 0) return;
  let sr = streamRec(s);
  let cur = load<i32>(sr + ST_FIRST_DS);
  if (cur == d) {
    store<i32>(sr + ST_FIRST_DS, load<i32>(r + DS_NEXT));
  } else {
    while (cur >= 0) {
      let cr = dsRec(cur);
      let nx = load<i32>(cr + DS_NEXT);
      if (nx == d) { store<i32>(cr + DS_NEXT, load<i32>(r + DS_NEXT)); break; }
      cur = nx;
    }
  }
  store<i32>(r + DS_NEXT, -1);
  store<i32>(r + DS_SOURCE, -1);
}

export function dsClose(d: i32): i32 {
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  unlink(r, d);
  store<i32>(r + DS_OPEN, 0);
  return OK;
}

/**
 * Attach downstream `d` to stream `s` (-1 detaches). If it has already forwarded packets, the
 * next packet from `s` starts a new epoch whose output continues the old one.
 */
export function dsSetSource(d: i32, s: i32): i32 {
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  if (s >= 0 && !openStream(s)) return ERR_STREAM;
  if (load<i32>(r + DS_SOURCE) == s) return OK;
  unlink(r, d);
  if (s >= 0) {
    let sr = streamRec(s);
    store<i32>(r + DS_NEXT, load<i32>(sr + ST_FIRST_DS));
    store<i32>(sr + ST_FIRST_DS, d);
    store<i32>(r + DS_SOURCE, s);
  }
  let f = load<i32>(r + DS_FLAGS);
  if (f & F_STARTED) store<i32>(r + DS_FLAGS, f | F_PENDING);
  return OK;
}

/** Force the next packet to start a new epoch (e.g. the same stream index now has a new upstream). */
export function dsSwitch(d: i32): i32 {
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  let f = load<i32>(r + DS_FLAGS);
  if (f & F_STARTED) store<i32>(r + DS_FLAGS, f | F_PENDING);
  return OK;
}

@inline function outOk(o: i32): bool {
  // One unsigned compare: o lies in the output region with room for the largest packet + RTX OSN.
  return <u32>(o - <i32>outPtr) <= <u32>(outSlots * SLOT_STRIDE - (MAX_PACKET + 2));
}

@inline function patch(q: usize, seq: i64, ts: i64, ssrc: u32, pt: i32): void {
  let b1 = <i32>load<u8>(q + 1);
  if (pt >= 0) store<u8>(q + 1, <u8>((b1 & 0x80) | pt));
  st16(q + 2, <u32>seq);
  st32(q + 4, <u32>ts);
  st32(q + 8, ssrc);
}

@inline function setOut(res: usize, dec: i32, off: i32, len: i32, seq: i64, ts: i64, gap: i32, reason: i32): i32 {
  store<i32>(res + RES_M_DECISION, dec);
  store<i32>(res + RES_M_OUT_OFF, off);
  store<i32>(res + RES_M_OUT_LEN, len);
  store<i32>(res + RES_M_SEQ, <i32>(seq & 0xFFFF));
  store<u32>(res + RES_M_TS, <u32>ts);
  store<i32>(res + RES_M_GAP, gap);
  store<i32>(res + RES_M_REASON, reason);
  store<f64>(res + RES_M_EXT_SEQ, <f64>seq);
  return dec;
}

// Details of the last munge() (module globals = WASM globals: no memory traffic).
let mSeq: i64 = 0;
let mTs: i64 = 0;
let mGap: i32 = 0;
let mReason: i32 = 0;
let mSwitched: i32 = 0;
let mLen: i32 = 0;
let mOut: usize = 0;

/**
 * The munger proper, on validated pointers: downstream record r, stream record sr (the
 * downstream's source), valid ring slot o. q = 0 patches in place, else copies to q first.
 */
function munge(r: usize, sr: usize, o: usize, now: f64, q: usize): i32 {
  let sf = load<u8>(o + SL_FLAGS);
  let inExt = load<i64>(o + SL_EXT_SEQ);
  let inTs = load<i64>(o + SL_EXT_TS);
  let f = load<i32>(r + DS_FLAGS);
  let dec = D_IN_ORDER;
  mGap = 0;
  mSwitched = 0;
  mReason = DROP_NONE;
  if ((f & (F_STARTED | F_PENDING)) != F_STARTED) {
    if ((f & F_REQUIRE_KF) != 0 && (sf & (SLF_KEYFRAME | SLF_KEY_START)) == 0) {
      mReason = DROP_WAIT_KEYFRAME;
      return D_DROP;
    }
    let clock = load<i32>(sr + ST_CLOCK);
    let outExt: i64;
    let outTs: i64;
    if ((f & F_STARTED) == 0) {
      outExt = 0x10000 + <i64>load<i32>(r + DS_INIT_SEQ);
      outTs = 0x100000000 + <i64>load<u32>(r + DS_INIT_TS);
    } else {
      // New epoch: continue right after the last output seq; advance the timestamp by the wall
      // time since the last output packet (at least one tick) so players see time moving on.
      outExt = load<i64>(r + DS_HIGH_OUT) + 1;
      let ticks = <i64>Math.round((now - load<f64>(r + DS_LAST_MS)) * <f64>clock / 1000.0);
      if (ticks < 1) ticks = 1;
      outTs = load<i64>(r + DS_LAST_TS) + ticks;
      mSwitched = 1;
    }
    store<i64>(r + DS_SEQ_OFF, outExt - inExt);
    store<i64>(r + DS_TS_OFF, outTs - inTs);
    store<i64>(r + DS_HIGH_IN, inExt);
    store<i64>(r + DS_HIGH_OUT, outExt);
    store<i64>(r + DS_LAST_TS, outTs);
    store<f64>(r + DS_LAST_MS, now);
    store<i64>(r + DS_EPOCH_IN, inExt);
    store<i64>(r + DS_EPOCH_OUT, outExt);
    store<u64>(r + DS_WINDOW, 1);
    store<i32>(r + DS_CLOCK, clock);
    store<i32>(r + DS_FLAGS, (f | F_STARTED) & ~F_PENDING);
  } else {
    let hi = load<i64>(r + DS_HIGH_IN);
    let diff = inExt - hi;
    if (diff > 0) {
      let w = load<u64>(r + DS_WINDOW);
      store<u64>(r + DS_WINDOW, diff >= WINDOW_BITS ? 1 : ((w << <u64>diff) | 1));
      store<i64>(r + DS_HIGH_IN, inExt);
      store<i64>(r + DS_HIGH_OUT, inExt + load<i64>(r + DS_SEQ_OFF));
      if (diff > 1) { dec = D_GAP; mGap = <i32>(diff - 1); }
      let outTs = inTs + load<i64>(r + DS_TS_OFF);
      if (outTs > load<i64>(r + DS_LAST_TS)) {
        store<i64>(r + DS_LAST_TS, outTs);
        store<f64>(r + DS_LAST_MS, now);
      }
    } else {
      if (inExt < load<i64>(r + DS_EPOCH_IN)) { mReason = DROP_BEFORE_SWITCH; return D_DROP; }
      let back = -diff;
      if (back >= WINDOW_BITS) { mReason = DROP_TOO_OLD; return D_DROP; }
      let w = load<u64>(r + DS_WINDOW);
      let bit = <u64>1 << <u64>back;
      if (w & bit) { mSeq = inExt + load<i64>(r + DS_SEQ_OFF); return D_DUPLICATE; }
      store<u64>(r + DS_WINDOW, w | bit);
      dec = D_OUT_OF_ORDER;
    }
  }
  let outSeq = inExt + load<i64>(r + DS_SEQ_OFF);
  let outTs = inTs + load<i64>(r + DS_TS_OFF);
  let p = o + SLOT_HDR;
  let len = <i32>load<u16>(o + SL_LEN);
  if (q != 0) memory.copy(q, p, <usize>len);
  else q = p;
  patch(q, outSeq, outTs, load<u32>(r + DS_SSRC), load<i32>(r + DS_PT));
  mSeq = outSeq;
  mTs = outTs;
  mLen = len;
  mOut = q;
  return dec;
}

/**
 * Rewrite the packet in ring slot `slot` of stream `s` for downstream `d`. With outOff == 0 the
 * header is patched in place in the ring (valid until the next rewrite of that slot); otherwise
 * the packet is copied to outOff in the output region and patched there. Returns a decision.
 */
export function rewrite(d: i32, s: i32, slot: i32, now: f64, outOff: i32): i32 {
  let res = resPtr;
  store<i32>(res + RES_M_SWITCHED, 0);
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  let sr = openStream(s);
  if (!sr) return ERR_STREAM;
  if (<u32>slot >= <u32>load<i32>(sr + ST_RING_SLOTS)) return ERR_ARG;
  if (outOff != 0 && !outOk(outOff)) return ERR_ARG;
  let o = slotPtr(sr, slot);
  if ((load<u8>(o + SL_FLAGS) & SLF_VALID) == 0) return NOT_FOUND;
  if (load<i32>(r + DS_SOURCE) != s) return setOut(res, D_DROP, 0, 0, 0, 0, 0, DROP_NO_SOURCE);
  let dec = munge(r, sr, o, now, <usize>outOff);
  store<i32>(res + RES_M_SWITCHED, mSwitched);
  if (dec == D_DROP) return setOut(res, dec, 0, 0, 0, 0, 0, mReason);
  if (dec == D_DUPLICATE) return setOut(res, dec, 0, 0, mSeq, 0, 0, DROP_NONE);
  return setOut(res, dec, <i32>mOut, mLen, mSeq, mTs, mGap, DROP_NONE);
}

/**
 * Rewrite one packet for every downstream attached to stream `s`, starting at downstream
 * `cursor` (-1: the first), into consecutive output slots; at most outSlots per call. Each
 * entry of the fan-out table is {downstream, decision | dropReason << 8, outOff, outLen} (offset
 * and length 0 when not to be sent). Returns the number of entries; RES_A holds the cursor for
 * the next call (-1 when all were done), RES_B how many downstreams wait for a keyframe. Validates the stream and slot once; attached downstreams are open by
 * construction (dsClose unlinks).
 */
export function fanout(s: i32, slot: i32, now: f64, cursor: i32): i32 {
  let sr = openStream(s);
  if (!sr) return ERR_STREAM;
  if (<u32>slot >= <u32>load<i32>(sr + ST_RING_SLOTS)) return ERR_ARG;
  let o = slotPtr(sr, slot);
  if ((load<u8>(o + SL_FLAGS) & SLF_VALID) == 0) return NOT_FOUND;
  let d = load<i32>(sr + ST_FIRST_DS);
  if (cursor >= 0) {
    let cr = openDs(cursor);
    if (!cr || load<i32>(cr + DS_SOURCE) != s) return ERR_ARG;
    d = cursor;
  }
  let n: i32 = 0;
  let q = outPtr;
  let e = fanPtr;
  let limit = outSlots;
  let waiting: i32 = 0;
  while (d >= 0 && n < limit) {
    let r = dsRec(d);
    let dec = munge(r, sr, o, now, q);
    store<i32>(e, d);
    if (dec <= D_GAP) {
      store<i32>(e + 4, dec);
      store<i32>(e + 8, <i32>q);
      store<i32>(e + 12, mLen);
    } else {
      // Not sent: the drop reason rides in bits 8.. of the decision word.
      store<i32>(e + 4, dec | (mReason << 8));
      store<i64>(e + 8, 0);
      if (mReason == DROP_WAIT_KEYFRAME) waiting++;
    }
    n++;
    q += SLOT_STRIDE;
    e += FANOUT_ENTRY;
    d = load<i32>(r + DS_NEXT);
  }
  store<i32>(resPtr + RES_A, d);
  store<i32>(resPtr + RES_B, waiting);
  return n;
}

/**
 * Answer a NACK from downstream `d` for its (output) seq `outSeq16`: map it back to the source's
 * extended seq, find it in the ring (age-checked) and write the retransmission at outOff: an
 * RTX packet (RFC 4588 §4: own SSRC/PT/seq, OSN first in the payload, no padding) if the
 * downstream negotiated RTX, else the rewritten original. Returns D_RETRANSMIT or NOT_FOUND.
 */
export function retransmit(d: i32, outSeq16: i32, now: f64, outOff: i32): i32 {
  let res = resPtr;
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  if (!outOk(outOff)) return ERR_ARG;
  let s = load<i32>(r + DS_SOURCE);
  let sr = openStream(s);
  if (!sr || (load<i32>(r + DS_FLAGS) & F_STARTED) == 0) return NOT_FOUND;
  let hOut = load<i64>(r + DS_HIGH_OUT);
  let outExt = hOut + <i64><i32><i16><u16>(<u32>outSeq16 - <u32>hOut);
  if (outExt < load<i64>(r + DS_EPOCH_OUT) || outExt > hOut) return NOT_FOUND;
  let inExt = outExt - load<i64>(r + DS_SEQ_OFF);
  store<f64>(res + RES_M_IN_EXT, <f64>inExt);
  let o = findSlot(sr, inExt);
  if (!o || now - load<f64>(o + SL_ARRIVAL) > load<f64>(sr + ST_MAX_AGE)) return NOT_FOUND;
  let outTs = load<i64>(o + SL_EXT_TS) + load<i64>(r + DS_TS_OFF);
  let p = o + SLOT_HDR;
  let q = <usize>outOff;
  let rtxPt = load<i32>(r + DS_RTX_PT);
  let len: i32;
  if (rtxPt >= 0) {
    let hdr = <i32>load<u16>(o + SL_HDR_LEN);
    let pay = <i32>load<u16>(o + SL_PAY_LEN);
    memory.copy(q, p, <usize>hdr);
    store<u8>(q, load<u8>(q) & 0xDF); // padding is not carried over
    st16(q + <usize>hdr, <u32>outExt);
    memory.copy(q + <usize>(hdr + 2), p + <usize>hdr, <usize>pay);
    let rs = load<i32>(r + DS_RTX_SEQ);
    store<i32>(r + DS_RTX_SEQ, (rs + 1) & 0xFFFF);
    patch(q, <i64>rs, outTs, load<u32>(r + DS_RTX_SSRC), rtxPt);
    len = hdr + 2 + pay;
  } else {
    len = <i32>load<u16>(o + SL_LEN);
    memory.copy(q, p, <usize>len);
    patch(q, outExt, outTs, load<u32>(r + DS_SSRC), load<i32>(r + DS_PT));
  }
  return setOut(res, D_RETRANSMIT, outOff, len, outExt, outTs, 0, DROP_NONE);
}

/** Copy the munger state of `d` to the export region; returns its size in bytes. */
export function dsExport(d: i32): i32 {
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  let x = exportPtr;
  store<u32>(x, STATE_MAGIC);
  store<i32>(x + 4, DS_SIZE);
  memory.copy(x + 8, r + 8, <usize>(DS_SIZE - 8 - 8)); // fields DS_SSRC..DS_CLOCK (+pad)
  return EXPORT_SIZE;
}

/**
 * Load munger state for `d` from the export region (written by dsExport, possibly in another
 * Core or process). The source is kept; the next packet starts a new epoch continuing the output.
 */
export function dsImport(d: i32): i32 {
  let r = openDs(d);
  if (!r) return ERR_DOWNSTREAM;
  let x = exportPtr;
  if (load<u32>(x) != STATE_MAGIC || load<i32>(x + 4) != DS_SIZE) return ERR_STATE;
  let src = load<i32>(r + DS_SOURCE);
  let next = load<i32>(r + DS_NEXT);
  memory.copy(r + 8, x + 8, <usize>(DS_SIZE - 8 - 8));
  store<i32>(r + DS_SOURCE, src);
  store<i32>(r + DS_NEXT, next);
  let f = load<i32>(r + DS_FLAGS);
  if (f & F_STARTED) store<i32>(r + DS_FLAGS, f | F_PENDING);
  return OK;
}

/**
 * For every downstream attached to stream `s`: start a new epoch on its next packet; with
 * `detach` also detach it (the stream is closing). Returns how many were attached.
 */
export function streamDownstreams(s: i32, detach: bool): i32 {
  let sr = openStream(s);
  if (!sr) return ERR_STREAM;
  let d = load<i32>(sr + ST_FIRST_DS);
  let n: i32 = 0;
  while (d >= 0) {
    let r = dsRec(d);
    let next = load<i32>(r + DS_NEXT);
    let f = load<i32>(r + DS_FLAGS);
    if (f & F_STARTED) store<i32>(r + DS_FLAGS, f | F_PENDING);
    if (detach) {
      store<i32>(r + DS_SOURCE, -1);
      store<i32>(r + DS_NEXT, -1);
    }
    n++;
    d = next;
  }
  if (detach) store<i32>(sr + ST_FIRST_DS, -1);
  return n;
}
