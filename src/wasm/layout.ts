/**
 * Mirror of assembly/layout.ts: status codes, decisions and the byte offsets of the result block,
 * RTCP item table and fan-out table. Keep the two files in step (docs/architecture.md lists both).
 */

/** Ingest / lookup / parse status codes. Non-negative = accepted, negative = error. */
export const Status = {
  OK: 0,
  /** ingest: this extended seq is already in the ring (not stored again). */
  DUPLICATE: 1,
  /** ingest: older than the ring window (not stored). */
  TOO_OLD: 2,
  /** ingest: jump > 3000 seqs; held until the next packet confirms it (RFC 3550 A.1). */
  SEQ_JUMP: 3,
  ERR_SHORT: -1,
  ERR_VERSION: -2,
  ERR_CSRC: -3,
  ERR_EXT_HEADER: -4,
  ERR_EXT_LENGTH: -5,
  ERR_EXT_ELEMENT: -6,
  ERR_PADDING: -7,
  ERR_TOO_LONG: -8,
  ERR_STREAM: -9,
  ERR_ARG: -11,
  ERR_DOWNSTREAM: -12,
  ERR_RTCP_SHORT: -20,
  ERR_RTCP_VERSION: -21,
  ERR_RTCP_LENGTH: -22,
  ERR_RTCP_PADDING: -23,
  ERR_STATE: -30,
  NOT_FOUND: -40,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

/** What the munger decided for one packet and one downstream. */
export const Decision = {
  /** Next packet in order: send it. */
  IN_ORDER: 0,
  /** Late but not yet sent: send it (its seq is below the highest sent). */
  OUT_OF_ORDER: 1,
  /** Send it; `gap` packets before it are missing. */
  GAP: 2,
  /** Already sent to this downstream: do not send. */
  DUPLICATE: 3,
  /** Do not send; see `reason` (DropReason). */
  DROP: 4,
  /** A retransmission was written (plain or RTX). */
  RETRANSMIT: 5,
} as const;
export type DecisionCode = (typeof Decision)[keyof typeof Decision];

export const DropReason = {
  NONE: 0,
  /** The downstream needs a keyframe before it can start (or resume after a switch). */
  WAIT_KEYFRAME: 1,
  /** The packet belongs to the previous source epoch. */
  BEFORE_SWITCH: 2,
  /** Older than the 64-packet reorder window of this downstream. */
  TOO_OLD: 3,
  /** The packet's stream is not this downstream's source. */
  NO_SOURCE: 4,
} as const;

export const Codec = { NONE: 0, VP8: 1, VP9: 2, H264: 3, AV1: 4 } as const;
export type CodecId = (typeof Codec)[keyof typeof Codec];

export const RtcpType = {
  SR: 1,
  RR: 2,
  SDES: 3,
  BYE: 4,
  APP: 5,
  NACK: 6,
  TWCC: 7,
  RTPFB: 8,
  PLI: 9,
  FIR: 10,
  REMB: 11,
  PSFB: 12,
  OTHER: 13,
} as const;
export type RtcpTypeCode = (typeof RtcpType)[keyof typeof RtcpType];

export const SLOT_STRIDE = 1536;
export const MAX_PACKET = 1504;
export const LIST_MAX = 1024;
export const ITEM_MAX = 64;
export const ITEM_SIZE = 32;
export const RTCP_OUT_SIZE = 1536;
export const SCRATCH_SIZE = 1536;
export const FANOUT_ENTRY = 16;
export const LAYOUT_VERSION = 2;

// Result block byte offsets.
export const RES = {
  CODE: 0,
  SSRC: 4,
  PT: 8,
  MARKER: 12,
  SEQ: 16,
  TS: 20,
  EXT_SEQ: 24,
  EXT_TS: 32,
  HDR_LEN: 40,
  PAY_LEN: 44,
  PAD_LEN: 48,
  KEYFRAME: 52,
  PKT_OFF: 56,
  PKT_LEN: 60,
  EXT_PROFILE: 64,
  EXT_OFF: 68,
  EXT_LEN: 72,
  ABS_OFF: 76,
  ABS_LEN: 80,
  TWCC: 84,
  PLAYOUT_MIN: 88,
  PLAYOUT_MAX: 92,
  LOST: 96,
  SLOT: 100,
  CSRC_COUNT: 104,
  NEED_KEYFRAME: 108,
  M_DECISION: 128,
  M_OUT_OFF: 132,
  M_OUT_LEN: 136,
  M_SEQ: 140,
  M_TS: 144,
  M_GAP: 148,
  M_REASON: 152,
  M_SWITCHED: 156,
  M_EXT_SEQ: 160,
  M_IN_EXT: 168,
  A: 192,
  B: 196,
  C: 200,
  D: 208,
} as const;

export const ITEM = { TYPE: 0, OFF: 4, LEN: 8, FMT: 12, SSRC: 16, MEDIA: 20, EXTRA: 24 } as const;
