// Per-stream state: sequence/timestamp unwrapping, the retransmission ring with its seq index,
// the keyframe index, RFC 3550 receive statistics and the NACK generator.
import {
  OK, DUPLICATE, TOO_OLD, SEQ_JUMP, ERR_TOO_LONG, ERR_STREAM, ERR_ARG, NOT_FOUND,
  SLOT_STRIDE, SLOT_HDR, MAX_PACKET, SL_EXT_SEQ, SL_EXT_TS, SL_ARRIVAL, SL_LEN, SL_HDR_LEN,
  SL_PAY_LEN, SL_FLAGS, SLF_VALID, SLF_KEYFRAME, SLF_MARKER, SLF_KEY_START,
  RES_CODE, RES_PT, RES_MARKER, RES_TS, RES_EXT_SEQ, RES_EXT_TS, RES_HDR_LEN, RES_PAY_LEN,
  RES_KEYFRAME, RES_LOST, RES_SLOT, RES_NEED_KEYFRAME, RES_SEQ, RES_PKT_OFF, RES_PKT_LEN, RES_A, RES_B, RES_C, RES_D,
  LIST_MAX,
} from "./layout";
import { parseRtp } from "./rtp";
import { isKeyframe } from "./keyframe";
import { resPtr, streamsPtr, maxStreams, freeRings, allocZeroed, STREAM_SIZE, listPtr } from "./state";

// ---- stream record fields ------------------------------------------------------------------------
export const ST_OPEN: i32 = 0; // i32
export const ST_CLOCK: i32 = 4; // i32 clock rate Hz
export const ST_RING_SLOTS: i32 = 8; // i32 power of two
export const ST_MASK: i32 = 12; // i32
export const ST_RING: i32 = 16; // u32 slots base
export const ST_INDEX: i32 = 20; // u32 seq index base (u32 per slot: slot+1, 0 empty)
export const ST_HEAD: i32 = 24; // i32 next write slot
export const ST_STARTED: i32 = 28; // i32
export const ST_HIGHEST: i32 = 32; // i64 highest extended seq
export const ST_BASE: i32 = 40; // i64 first extended seq of the current stats run
export const ST_LAST_TS: i32 = 48; // i64 unwrap reference for timestamps (highest ext ts)
export const ST_BAD_SEQ: i32 = 56; // i32 RFC 3550 A.1 bad_seq (-1 none)
export const ST_RECEIVED: i32 = 64; // i64
export const ST_EXP_PRIOR: i32 = 72; // i64
export const ST_RECV_PRIOR: i32 = 80; // i64
export const ST_JITTER: i32 = 88; // f64 RTP units
export const ST_TRANSIT: i32 = 96; // f64
export const ST_HAS_TRANSIT: i32 = 104; // i32
export const ST_SSRC: i32 = 108; // u32 last media ssrc
export const ST_LSR: i32 = 112; // u32 middle 32 bits of the last SR NTP time
export const ST_HAS_SR: i32 = 116; // i32
export const ST_SR_AT: i32 = 120; // f64 ms when the last SR arrived
export const ST_KEY_START: i32 = 128; // i64 ext seq of the latest keyframe's first packet, -1
export const ST_FRAME_START: i32 = 136; // i64 first ext seq seen with ST_FRAME_TS
export const ST_FRAME_TS: i32 = 144; // i64
export const ST_ABS_ID: i32 = 152; // i32 extension ids (0 = not negotiated)
export const ST_TWCC_ID: i32 = 156;
export const ST_PLAYOUT_ID: i32 = 160;
export const ST_FIRST_DS: i32 = 164; // i32 first attached downstream, -1
export const ST_MAX_AGE: i32 = 168; // f64 ms: NACK lookups older than this miss
export const ST_NACK: i32 = 176; // u32 NACK table base
export const ST_NACK_DELAY: i32 = 184; // f64 ms before the first request
export const ST_NACK_RETRY: i32 = 192; // f64 ms between requests for one seq
export const ST_NACK_MAX: i32 = 200; // i32 requests per seq
export const ST_FIRST_AT: i32 = 208; // f64 arrival of the first packet (jitter time base)
export const ST_LOG2: i32 = 216; // i32 log2(ring slots)
export const ST_NACK_GIVEUP: i32 = 220; // i32 seqs abandoned after the retry limit
export const ST_CODECS: i32 = 256; // u8[128] payload type -> codec

export const NACK_ENTRIES: i32 = 512;
export const NACK_MASK: i32 = NACK_ENTRIES - 1;
export const NACK_ENTRY: i32 = 24; // i64 ext (-1 free), f64 due ms, i32 tries
export const MAX_DROPOUT: i32 = 3000; // RFC 3550 A.1

@inline export function streamRec(s: i32): usize {
  return streamsPtr + <usize>(s * STREAM_SIZE);
}

/** Stream record pointer, or 0 if `s` is out of range or not open (one unsigned compare). */
@inline export function openStream(s: i32): usize {
  if (<u32>s >= <u32>maxStreams) return 0;
  let r = streamRec(s);
  return load<i32>(r + ST_OPEN) ? r : 0;
}

@inline export function slotPtr(r: usize, i: i32): usize {
  return <usize>load<u32>(r + ST_RING) + <usize>(i * SLOT_STRIDE);
}

function ringBytes(slots: i32): i32 {
  return slots * SLOT_STRIDE + slots * 4 + NACK_ENTRIES * NACK_ENTRY;
}

/**
 * Open stream `s` with a ring of 2^log2 slots. A ring left by a closed stream with the same size
 * is reused from a free list, so streams that come and go do not grow memory.
 */
export function streamOpen(s: i32, clockRate: i32, log2: i32, maxAgeMs: f64): i32 {
  if (<u32>s >= <u32>maxStreams || log2 < 4 || log2 > 15 || clockRate <= 0) return ERR_ARG;
  let r = streamRec(s);
  if (load<i32>(r + ST_OPEN)) return ERR_STREAM;
  let slots = 1 << log2;
  let fl = freeRings + <usize>(log2 << 2);
  let ring = <usize>load<u32>(fl);
  if (ring != 0) {
    store<u32>(fl, load<u32>(ring)); // pop
  } else {
    ring = allocZeroed(ringBytes(slots));
  }
  memory.fill(r, 0, <usize>STREAM_SIZE);
  let index = ring + <usize>(slots * SLOT_STRIDE);
  let nack = index + <usize>(slots * 4);
  store<i32>(r + ST_OPEN, 1);
  store<i32>(r + ST_CLOCK, clockRate);
  store<i32>(r + ST_RING_SLOTS, slots);
  store<i32>(r + ST_MASK, slots - 1);
  store<i32>(r + ST_LOG2, log2);
  store<u32>(r + ST_RING, <u32>ring);
  store<u32>(r + ST_INDEX, <u32>index);
  store<u32>(r + ST_NACK, <u32>nack);
  store<i32>(r + ST_FIRST_DS, -1);
  resetSequenceState(r);
  store<f64>(r + ST_MAX_AGE, maxAgeMs);
  store<f64>(r + ST_NACK_DELAY, 10);
  store<f64>(r + ST_NACK_RETRY, 100);
  store<i32>(r + ST_NACK_MAX, 5);
  return OK;
}

/**
 * Forget everything learnt from the upstream (ring contents, seq/ts unwrapping, statistics,
 * keyframe index, NACK table) but keep the configuration and the attached downstreams: the
 * stream slot now carries a different upstream (re-parent, failover).
 */
export function resetSequenceState(r: usize): void {
  let slots = load<i32>(r + ST_RING_SLOTS);
  let ring = <usize>load<u32>(r + ST_RING);
  // Clear slot headers, index and NACK table; packet bytes need no clearing.
  for (let i = 0; i < slots; i++) store<u8>(ring + <usize>(i * SLOT_STRIDE + SL_FLAGS), 0);
  memory.fill(<usize>load<u32>(r + ST_INDEX), 0, <usize>(slots * 4));
  clearNacks(<usize>load<u32>(r + ST_NACK));
  memory.fill(r + ST_HEAD, 0, <usize>(ST_ABS_ID - ST_HEAD)); // ST_HEAD .. ST_FRAME_TS
  store<i32>(r + ST_NACK_GIVEUP, 0);
  store<i32>(r + ST_BAD_SEQ, -1);
  store<i64>(r + ST_KEY_START, -1);
  store<i64>(r + ST_FRAME_START, -1);
  store<i64>(r + ST_FRAME_TS, -1);
}

function clearNacks(nack: usize): void {
  for (let i = 0; i < NACK_ENTRIES; i++) store<i64>(nack + <usize>(i * NACK_ENTRY), -1);
}

/** Close stream `s`; its ring goes to the free list. Downstreams must be detached by the caller. */
export function streamClose(s: i32): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  let ring = <usize>load<u32>(r + ST_RING);
  let fl = freeRings + <usize>(load<i32>(r + ST_LOG2) << 2);
  store<u32>(ring, load<u32>(fl));
  store<u32>(fl, <u32>ring);
  store<i32>(r + ST_OPEN, 0);
  return OK;
}

/** Offset where the caller writes the next packet of stream `s` before calling ingest. */
export function ingestRegion(s: i32): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  return <i32>(slotPtr(r, load<i32>(r + ST_HEAD)) + SLOT_HDR);
}

/**
 * Ingest the packet of `len` bytes the caller wrote at ingestRegion(s): parse, unwrap, store in
 * the ring and the seq index, detect keyframes, update statistics and the NACK table.
 */
export function ingest(s: i32, len: i32, now: f64): i32 {
  let res = resPtr;
  let r = openStream(s);
  if (!r) { store<i32>(res + RES_CODE, ERR_STREAM); return ERR_STREAM; }
  let head = load<i32>(r + ST_HEAD);
  let slot = slotPtr(r, head);
  // The caller has overwritten this (oldest) slot: it no longer holds its old packet.
  store<u8>(slot + SL_FLAGS, 0);
  store<i32>(res + RES_SLOT, -1);
  store<i32>(res + RES_LOST, 0);
  store<i32>(res + RES_NEED_KEYFRAME, 0);
  store<i32>(res + RES_KEYFRAME, 0);
  if (<u32>len > <u32>MAX_PACKET) { store<i32>(res + RES_CODE, ERR_TOO_LONG); return ERR_TOO_LONG; }
  let p = slot + SLOT_HDR;
  let code = parseRtp(p, len, res, load<i32>(r + ST_ABS_ID), load<i32>(r + ST_TWCC_ID), load<i32>(r + ST_PLAYOUT_ID));
  if (code != OK) { store<i32>(res + RES_CODE, code); return code; }
  let seq = <u32>load<i32>(res + RES_SEQ);
  let ts = load<u32>(res + RES_TS);
  store<u32>(r + ST_SSRC, load<u32>(res + 4));
  let ext: i64;
  let advance = false;
  let resynced = false;
  if (!load<i32>(r + ST_STARTED)) {
    // Extended values start one cycle up so a packet reordered before the first one unwraps
    // to a positive value; RR reports subtract the cycle back out.
    ext = 0x10000 + <i64>seq;
    store<i32>(r + ST_STARTED, 1);
    store<i64>(r + ST_BASE, ext);
    store<i64>(r + ST_HIGHEST, ext - 1);
    store<i64>(r + ST_LAST_TS, 0x100000000 + <i64>ts);
    store<f64>(r + ST_FIRST_AT, now);
    advance = true;
  } else {
    let highest = load<i64>(r + ST_HIGHEST);
    // Wrap-aware: the 16-bit difference as a signed value (RFC 3550 A.1 arithmetic).
    let diff = <i32><i16><u16>(seq - <u32>highest);
    let slots = load<i32>(r + ST_RING_SLOTS);
    if (diff > MAX_DROPOUT || diff < -slots) {
      // RFC 3550 A.1: a large jump is accepted only when the next packet confirms it.
      if (<i32>seq != load<i32>(r + ST_BAD_SEQ)) {
        store<i32>(r + ST_BAD_SEQ, <i32>((seq + 1) & 0xFFFF));
        let c = diff > 0 ? SEQ_JUMP : TOO_OLD;
        store<i32>(res + RES_CODE, c);
        return c;
      }
      // Confirmed restart: keep extended values monotonic and congruent to seq mod 2^16.
      let fwd = <i64>((seq - <u32>highest) & 0xFFFF);
      ext = highest + (fwd == 0 ? 0x10000 : fwd);
      store<i64>(r + ST_BASE, ext);
      store<i64>(r + ST_RECEIVED, 0);
      store<i64>(r + ST_EXP_PRIOR, 0);
      store<i64>(r + ST_RECV_PRIOR, 0);
      store<i64>(r + ST_HIGHEST, ext - 1);
      store<i64>(r + ST_LAST_TS, (load<i64>(r + ST_LAST_TS) & ~<i64>0xFFFFFFFF) + 0x100000000 + <i64>ts);
      store<i32>(r + ST_HAS_TRANSIT, 0);
      clearNacks(<usize>load<u32>(r + ST_NACK));
      resynced = true;
      advance = true;
    } else {
      ext = highest + <i64>diff;
      advance = diff > 0;
    }
    store<i32>(r + ST_BAD_SEQ, -1);
  }
  let mask = load<i32>(r + ST_MASK);
  let index = <usize>load<u32>(r + ST_INDEX);
  let ip = index + <usize>((<i32>ext & mask) << 2);
  let highest = load<i64>(r + ST_HIGHEST);
  if (!advance) {
    if (highest - ext >= <i64>(mask + 1)) {
      store<i32>(res + RES_CODE, TOO_OLD);
      store<f64>(res + RES_EXT_SEQ, <f64>ext);
      return TOO_OLD;
    }
    let e = load<u32>(ip);
    if (e != 0) {
      let o = slotPtr(r, <i32>e - 1);
      if ((load<u8>(o + SL_FLAGS) & SLF_VALID) && load<i64>(o + SL_EXT_SEQ) == ext) {
        store<i32>(res + RES_CODE, DUPLICATE);
        store<f64>(res + RES_EXT_SEQ, <f64>ext);
        return DUPLICATE;
      }
    }
  }
  // Timestamp unwrap against the highest timestamp seen (signed 32-bit difference).
  let lastTs = load<i64>(r + ST_LAST_TS);
  let tsd = <i64><i32>(ts - <u32>lastTs);
  let extTs = lastTs + tsd;
  if (tsd > 0) store<i64>(r + ST_LAST_TS, extTs);

  let hdr = load<i32>(res + RES_HDR_LEN);
  let pay = load<i32>(res + RES_PAY_LEN);
  let pt = load<i32>(res + RES_PT);
  let codec = <i32>load<u8>(r + ST_CODECS + <usize>pt);
  let kf = codec ? isKeyframe(codec, p + <usize>hdr, pay) : 0;
  let flags: u8 = SLF_VALID;
  if (load<i32>(res + RES_MARKER)) flags |= SLF_MARKER;
  if (kf) flags |= SLF_KEYFRAME;
  store<i64>(slot + SL_EXT_SEQ, ext);
  store<i64>(slot + SL_EXT_TS, extTs);
  store<f64>(slot + SL_ARRIVAL, now);
  store<u16>(slot + SL_LEN, <u16>len);
  store<u16>(slot + SL_HDR_LEN, <u16>hdr);
  store<u16>(slot + SL_PAY_LEN, <u16>pay);
  store<u8>(slot + SL_FLAGS, flags);
  store<u32>(ip, <u32>(head + 1));
  store<i32>(r + ST_HEAD, (head + 1) & mask);

  // Frame tracking for the keyframe index: the keyframe starts at the first packet carrying its
  // timestamp (an H264 SPS or a VP8 descriptor may be flagged on a later packet of the frame).
  let frameTs = load<i64>(r + ST_FRAME_TS);
  if (extTs != frameTs) {
    if (advance) {
      store<i64>(r + ST_FRAME_TS, extTs);
      store<i64>(r + ST_FRAME_START, ext);
    }
  } else if (ext < load<i64>(r + ST_FRAME_START)) {
    store<i64>(r + ST_FRAME_START, ext);
  }
  if (kf) {
    let start = extTs == load<i64>(r + ST_FRAME_TS) ? load<i64>(r + ST_FRAME_START) : ext;
    let prev = load<i64>(r + ST_KEY_START);
    if (start > prev) {
      store<i64>(r + ST_KEY_START, start);
      let sp = findSlot(r, start);
      if (sp) store<u8>(sp + SL_FLAGS, load<u8>(sp + SL_FLAGS) | SLF_KEY_START);
    }
  }

  // RFC 3550 A.3 / A.8 statistics.
  store<i64>(r + ST_RECEIVED, load<i64>(r + ST_RECEIVED) + 1);
  let nack = <usize>load<u32>(r + ST_NACK);
  if (advance) {
    let gap = ext - highest - 1;
    if (gap > 0 && !resynced) {
      store<i32>(res + RES_LOST, <i32>gap);
      // Remember the missing seqs for the NACK generator (RFC 4585 §6.2.1); a gap wider than
      // the table cannot be repaired by NACK, so the caller is told to ask for a keyframe.
      let from = highest + 1;
      if (gap > <i64>NACK_ENTRIES) {
        from = ext - <i64>NACK_ENTRIES;
        store<i32>(res + RES_NEED_KEYFRAME, 1);
      }
      let due = now + load<f64>(r + ST_NACK_DELAY);
      for (let m = from; m < ext; m++) {
        let ne = nack + <usize>((<i32>m & NACK_MASK) * NACK_ENTRY);
        store<i64>(ne, m);
        store<f64>(ne + 8, due);
        store<i32>(ne + 16, 0);
      }
    }
    store<i64>(r + ST_HIGHEST, ext);
    // Interarrival jitter (RFC 3550 §6.4.1, A.8) for packets that advance the sequence; late
    // packets and upstream retransmissions would otherwise inflate it.
    let arrival = (now - load<f64>(r + ST_FIRST_AT)) * <f64>load<i32>(r + ST_CLOCK) / 1000.0;
    let transit = arrival - <f64>extTs;
    if (load<i32>(r + ST_HAS_TRANSIT)) {
      let d = Math.abs(transit - load<f64>(r + ST_TRANSIT));
      let j = load<f64>(r + ST_JITTER);
      store<f64>(r + ST_JITTER, j + (d - j) / 16.0);
    }
    store<f64>(r + ST_TRANSIT, transit);
    store<i32>(r + ST_HAS_TRANSIT, 1);
  }
  // A packet that was missing has arrived: stop requesting it.
  let ne = nack + <usize>((<i32>ext & NACK_MASK) * NACK_ENTRY);
  if (load<i64>(ne) == ext) store<i64>(ne, -1);

  store<f64>(res + RES_EXT_SEQ, <f64>ext);
  store<f64>(res + RES_EXT_TS, <f64>extTs);
  store<i32>(res + RES_KEYFRAME, kf);
  store<i32>(res + RES_SLOT, head);
  store<i32>(res + RES_CODE, OK);
  return OK;
}

/** Slot pointer holding extended seq `ext` in stream record `r`, or 0. */
export function findSlot(r: usize, ext: i64): usize {
  let mask = load<i32>(r + ST_MASK);
  let e = load<u32>(<usize>load<u32>(r + ST_INDEX) + <usize>((<i32>ext & mask) << 2));
  if (e == 0) return 0;
  let o = slotPtr(r, <i32>e - 1);
  if ((load<u8>(o + SL_FLAGS) & SLF_VALID) == 0 || load<i64>(o + SL_EXT_SEQ) != ext) return 0;
  return o;
}

/** Describe the packet in slot `o` in the result block (offset, length, fields). */
export function describeSlot(o: usize, slotIndex: i32): void {
  let res = resPtr;
  let p = o + SLOT_HDR;
  store<i32>(res + RES_PKT_OFF, <i32>p);
  store<i32>(res + RES_PKT_LEN, <i32>load<u16>(o + SL_LEN));
  store<i32>(res + RES_HDR_LEN, <i32>load<u16>(o + SL_HDR_LEN));
  store<i32>(res + RES_PAY_LEN, <i32>load<u16>(o + SL_PAY_LEN));
  store<f64>(res + RES_EXT_SEQ, <f64>load<i64>(o + SL_EXT_SEQ));
  store<f64>(res + RES_EXT_TS, <f64>load<i64>(o + SL_EXT_TS));
  let f = load<u8>(o + SL_FLAGS);
  store<i32>(res + RES_KEYFRAME, (f & (SLF_KEYFRAME | SLF_KEY_START)) ? 1 : 0);
  store<i32>(res + RES_MARKER, (f & SLF_MARKER) ? 1 : 0);
  store<i32>(res + RES_SEQ, <i32>(load<i64>(o + SL_EXT_SEQ) & 0xFFFF));
  store<i32>(res + RES_PT, <i32>load<u8>(p + 1) & 0x7F);
  store<i32>(res + RES_SLOT, slotIndex);
  store<i32>(res + RES_CODE, OK);
}

/**
 * Look up extended seq `ext` for a retransmission. Misses (NOT_FOUND) when it was never stored,
 * was overwritten, or arrived more than the stream's max age before `now` (eviction by age).
 */
export function lookup(s: i32, ext: i64, now: f64): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  let o = findSlot(r, ext);
  if (!o || now - load<f64>(o + SL_ARRIVAL) > load<f64>(r + ST_MAX_AGE)) {
    store<i32>(resPtr + RES_CODE, NOT_FOUND);
    return NOT_FOUND;
  }
  let idx = <i32>((o - <usize>load<u32>(r + ST_RING)) / <usize>SLOT_STRIDE);
  describeSlot(o, idx);
  return idx;
}

/** Describe ring slot `i` of stream `s` if it holds a packet (no age check). */
export function slotInfo(s: i32, i: i32): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  if (<u32>i >= <u32>load<i32>(r + ST_RING_SLOTS)) return ERR_ARG;
  let o = slotPtr(r, i);
  if ((load<u8>(o + SL_FLAGS) & SLF_VALID) == 0) return NOT_FOUND;
  describeSlot(o, i);
  return i;
}

/**
 * The latest keyframe still fully in the ring: RES_C = first ext seq, RES_D = highest ext seq
 * (iterate with lookupAny). Returns the packet count in that range or NOT_FOUND.
 */
export function latestKeyframe(s: i32): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  let k = load<i64>(r + ST_KEY_START);
  if (k < 0 || !findSlot(r, k)) return NOT_FOUND;
  let h = load<i64>(r + ST_HIGHEST);
  store<f64>(resPtr + RES_C, <f64>k);
  store<f64>(resPtr + RES_D, <f64>h);
  return <i32>(h - k + 1);
}

/** Like lookup without the age check (keyframe cache iteration). */
export function lookupAny(s: i32, ext: i64): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  let o = findSlot(r, ext);
  if (!o) return NOT_FOUND;
  let idx = <i32>((o - <usize>load<u32>(r + ST_RING)) / <usize>SLOT_STRIDE);
  describeSlot(o, idx);
  return idx;
}

/**
 * NACK generator poll (RFC 4585 §6.2.1 semantics, RFC 4588 repair): write the 16-bit seqs due at
 * `now` into the list region in ascending extended order and return how many. A seq is first
 * due ST_NACK_DELAY after its gap was seen (reordering tolerance), then every ST_NACK_RETRY, at
 * most ST_NACK_MAX times; then it is abandoned.
 */
export function pollNacks(s: i32, now: f64): i32 {
  let r = openStream(s);
  if (!r) return ERR_STREAM;
  let nack = <usize>load<u32>(r + ST_NACK);
  let h = load<i64>(r + ST_HIGHEST);
  let retry = load<f64>(r + ST_NACK_RETRY);
  let max = load<i32>(r + ST_NACK_MAX);
  let n: i32 = 0;
  let list = listPtr;
  if (!load<i32>(r + ST_STARTED)) return 0;
  // Extended seqs are >= 1 once started, so the free marker (-1) never matches.
  let from = h - <i64>NACK_MASK;
  if (from < 0) from = 0;
  for (let e = from; e < h; e++) {
    let ne = nack + <usize>((<i32>e & NACK_MASK) * NACK_ENTRY);
    if (load<i64>(ne) != e) continue;
    if (load<f64>(ne + 8) > now) continue;
    let tries = load<i32>(ne + 16);
    if (tries >= max) {
      store<i64>(ne, -1);
      store<i32>(r + ST_NACK_GIVEUP, load<i32>(r + ST_NACK_GIVEUP) + 1);
      continue;
    }
    if (n >= LIST_MAX) break;
    store<i32>(ne + 16, tries + 1);
    store<f64>(ne + 8, now + retry);
    store<u32>(list + <usize>(n << 2), <u32>(e & 0xFFFF));
    n++;
  }
  return n;
}

/** Earliest time a missing seq becomes due (ms), or -1 when nothing is pending. */
export function nextNackDue(s: i32): f64 {
  let r = openStream(s);
  if (!r) return -1;
  let nack = <usize>load<u32>(r + ST_NACK);
  let h = load<i64>(r + ST_HIGHEST);
  let best: f64 = -1;
  if (!load<i32>(r + ST_STARTED)) return best;
  let from = h - <i64>NACK_MASK;
  if (from < 0) from = 0;
  for (let e = from; e < h; e++) {
    let ne = nack + <usize>((<i32>e & NACK_MASK) * NACK_ENTRY);
    if (load<i64>(ne) != e) continue;
    let d = load<f64>(ne + 8);
    if (best < 0 || d < best) best = d;
  }
  return best;
}
