// Canopy forwarding core: the WASM exports. One instance is one Core; the TypeScript wrapper in
// src/wasm/core.ts is the only intended caller. Offsets are absolute linear-memory addresses;
// extended (64-bit) seqs and timestamps cross the boundary as f64 (exact below 2^53).
import {
  OK, ERR_ARG, ERR_STREAM, RES_PKT_OFF, RES_EXT_PROFILE, RES_EXT_OFF, RES_EXT_LEN,
  RES_A, RES_B, RES_C, RES_D,
} from "./layout";
import * as st from "./state";
import * as sm from "./stream";
import * as mg from "./munger";
import * as rtcp from "./rtcp";
import { parseRtp, findExtension } from "./rtp";
import { isKeyframe } from "./keyframe";

// The SRTP helper's HMAC-SHA1 (exports prefixed srtp_, static data only): same module, used
// through its own instance by src/srtp/hmac.ts.
export * from "./srtp";

/** Layout version; bump when the result block or a table layout changes. */
export function version(): i32 { return 2; }

/** Allocate all fixed tables. Must be called once, first. Returns OK or ERR_ARG. */
export function init(maxStreams: i32, maxDownstreams: i32, outSlots: i32): i32 {
  if (st.initialized) return ERR_ARG;
  if (maxStreams < 1 || maxStreams > 4096 || maxDownstreams < 1 || maxDownstreams > 1 << 20) return ERR_ARG;
  if (outSlots < 1 || outSlots > 4096) return ERR_ARG;
  st.initTables(maxStreams, maxDownstreams, outSlots);
  return OK;
}

export function resultPtr(): i32 { return <i32>st.resPtr; }
export function listPtr(): i32 { return <i32>st.listPtr; }
export function itemsPtr(): i32 { return <i32>st.itemsPtr; }
export function rtcpOutPtr(): i32 { return <i32>st.rtcpOutPtr; }
export function scratchPtr(): i32 { return <i32>st.scratchPtr; }
export function outPtr(): i32 { return <i32>st.outPtr; }
export function fanoutPtr(): i32 { return <i32>st.fanPtr; }
export function exportPtr(): i32 { return <i32>st.exportPtr; }
// ---- streams -------------------------------------------------------------------------------------
export function streamOpen(s: i32, clockRate: i32, ringLog2: i32, maxAgeMs: f64): i32 {
  return sm.streamOpen(s, clockRate, ringLog2, maxAgeMs);
}
/** Close stream `s`: its downstreams are detached (they keep their munger state). */
export function streamClose(s: i32): i32 {
  if (!sm.openStream(s)) return ERR_STREAM;
  mg.streamDownstreams(s, true);
  return sm.streamClose(s);
}
/** Stream `s` now carries a different upstream: forget its packets and sequence state, keep its
 *  configuration and downstreams; each downstream continues its output on the next packet. */
export function streamReset(s: i32): i32 {
  let r = sm.openStream(s);
  if (!r) return ERR_STREAM;
  mg.streamDownstreams(s, false);
  sm.resetSequenceState(r);
  return OK;
}
export function streamSetCodec(s: i32, pt: i32, codec: i32): i32 {
  let r = sm.openStream(s);
  if (!r) return ERR_STREAM;
  if (<u32>pt > 127 || <u32>codec > 4) return ERR_ARG;
  store<u8>(r + sm.ST_CODECS + <usize>pt, <u8>codec);
  return OK;
}
export function streamSetExtIds(s: i32, absCapture: i32, twcc: i32, playoutDelay: i32): i32 {
  let r = sm.openStream(s);
  if (!r) return ERR_STREAM;
  if (<u32>absCapture > 255 || <u32>twcc > 255 || <u32>playoutDelay > 255) return ERR_ARG;
  store<i32>(r + sm.ST_ABS_ID, absCapture);
  store<i32>(r + sm.ST_TWCC_ID, twcc);
  store<i32>(r + sm.ST_PLAYOUT_ID, playoutDelay);
  return OK;
}
export function streamSetNack(s: i32, firstDelayMs: f64, retryMs: f64, maxRetries: i32): i32 {
  let r = sm.openStream(s);
  if (!r) return ERR_STREAM;
  if (!(firstDelayMs >= 0) || !(retryMs > 0) || maxRetries < 1 || maxRetries > 255) return ERR_ARG;
  store<f64>(r + sm.ST_NACK_DELAY, firstDelayMs);
  store<f64>(r + sm.ST_NACK_RETRY, retryMs);
  store<i32>(r + sm.ST_NACK_MAX, maxRetries);
  return OK;
}
/** Receive statistics into the generic result slots: RES_A received, RES_B nacks abandoned,
 *  RES_C highest extended seq (first cycle = 65536), RES_D jitter (RTP units). Returns
 *  expected - received (cumulative lost, may be negative with duplicates counted upstream). */
export function streamStats(s: i32): i32 {
  let r = sm.openStream(s);
  if (!r) return ERR_STREAM;
  let res = st.resPtr;
  let received = load<i64>(r + sm.ST_RECEIVED);
  store<i32>(res + RES_A, <i32>received);
  store<i32>(res + RES_B, load<i32>(r + sm.ST_NACK_GIVEUP));
  if (!load<i32>(r + sm.ST_STARTED)) {
    store<f64>(res + RES_C, -1);
    store<f64>(res + RES_D, 0);
    return 0;
  }
  let highest = load<i64>(r + sm.ST_HIGHEST);
  store<f64>(res + RES_C, <f64>highest);
  store<f64>(res + RES_D, load<f64>(r + sm.ST_JITTER));
  return <i32>(highest - load<i64>(r + sm.ST_BASE) + 1 - received);
}

export function ingestRegion(s: i32): i32 { return sm.ingestRegion(s); }
export function ingest(s: i32, len: i32, now: f64): i32 { return sm.ingest(s, len, now); }
export function lookup(s: i32, extSeq: f64, now: f64): i32 { return sm.lookup(s, <i64>extSeq, now); }
export function lookupAny(s: i32, extSeq: f64): i32 { return sm.lookupAny(s, <i64>extSeq); }
export function slotInfo(s: i32, slot: i32): i32 { return sm.slotInfo(s, slot); }
export function latestKeyframe(s: i32): i32 { return sm.latestKeyframe(s); }
export function pollNacks(s: i32, now: f64): i32 { return sm.pollNacks(s, now); }
export function nextNackDue(s: i32): f64 { return sm.nextNackDue(s); }

// ---- stateless parsing on any region of memory -----------------------------------------------------
@inline function inMemory(off: i32, len: i32): bool {
  return off > 0 && len >= 0 && <u64><u32>off + <u64><u32>len <= (<u64>memory.size() << 16);
}
/** Parse an RTP packet anywhere in memory (e.g. the scratch region) without storing it. */
export function parse(off: i32, len: i32, absId: i32, twccId: i32, playoutId: i32): i32 {
  if (!inMemory(off, len)) return ERR_ARG;
  return parseRtp(<usize>off, len, st.resPtr, absId, twccId, playoutId);
}
/** Find extension `id` in the packet last parsed or ingested: RES_A offset, RES_B length. */
export function findExt(id: i32): i32 {
  let r = st.resPtr;
  let profile = load<i32>(r + RES_EXT_PROFILE);
  if (profile == 0 || load<i32>(r + RES_PKT_OFF) == 0) return -40;
  return findExtension(<u32>profile, <usize>load<i32>(r + RES_EXT_OFF), load<i32>(r + RES_EXT_LEN), id, r);
}
export function keyframe(codec: i32, off: i32, len: i32): i32 {
  if (!inMemory(off, len)) return ERR_ARG;
  return isKeyframe(codec, <usize>off, len);
}

// ---- downstreams ---------------------------------------------------------------------------------
export function dsOpen(d: i32, ssrc: u32, pt: i32, rtxSsrc: u32, rtxPt: i32, initSeq: i32, initTs: u32, requireKeyframe: i32): i32 {
  return mg.dsOpen(d, ssrc, pt, rtxSsrc, rtxPt, initSeq, initTs, requireKeyframe);
}
export function dsClose(d: i32): i32 { return mg.dsClose(d); }
export function dsSetSource(d: i32, s: i32): i32 { return mg.dsSetSource(d, s); }
export function dsSwitch(d: i32): i32 { return mg.dsSwitch(d); }
export function rewrite(d: i32, s: i32, slot: i32, now: f64, outOff: i32): i32 { return mg.rewrite(d, s, slot, now, outOff); }
export function fanout(s: i32, slot: i32, now: f64, cursor: i32): i32 { return mg.fanout(s, slot, now, cursor); }
export function retransmit(d: i32, outSeq: i32, now: f64, outOff: i32): i32 { return mg.retransmit(d, outSeq, now, outOff); }
export function dsExport(d: i32): i32 { return mg.dsExport(d); }
export function dsImport(d: i32): i32 { return mg.dsImport(d); }

// ---- RTCP ----------------------------------------------------------------------------------------
export function rtcpWalk(off: i32, len: i32): i32 {
  if (!inMemory(off, len)) return ERR_ARG;
  return rtcp.walkRtcp(<usize>off, len);
}
export function nackParse(off: i32, len: i32): i32 {
  if (!inMemory(off, len)) return ERR_ARG;
  return rtcp.parseNack(<usize>off, len);
}
export function nackBuild(senderSsrc: u32, mediaSsrc: u32, count: i32): i32 { return rtcp.buildNack(senderSsrc, mediaSsrc, count); }
export function recordSr(s: i32, lsr: u32, now: f64): i32 { return rtcp.recordSr(s, lsr, now); }
export function rrBuild(senderSsrc: u32, count: i32, now: f64): i32 { return rtcp.buildRr(senderSsrc, count, now); }
