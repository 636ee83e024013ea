// Memory layout of the forwarding core. Mirrored by src/wasm/layout.ts; docs/architecture.md
// describes every table. All tables are allocated once by init() (and rings lazily by streamOpen)
// from the runtime heap, so nothing is allocated per packet.

// ---- status codes (i32 return values) ----------------------------------------------------------
export const OK: i32 = 0;
export const DUPLICATE: i32 = 1; // ingest: this extended seq is already in the ring
export const TOO_OLD: i32 = 2; // ingest: older than the ring window, not stored
export const SEQ_JUMP: i32 = 3; // ingest: jump > MAX_DROPOUT, held until confirmed (RFC 3550 A.1)

export const ERR_SHORT: i32 = -1; // shorter than the 12-byte fixed header
export const ERR_VERSION: i32 = -2; // version != 2
export const ERR_CSRC: i32 = -3; // CSRC list runs past the end
export const ERR_EXT_HEADER: i32 = -4; // extension header (4 bytes) runs past the end
export const ERR_EXT_LENGTH: i32 = -5; // extension length runs past the end
export const ERR_EXT_ELEMENT: i32 = -6; // an RFC 8285 element runs past its block
export const ERR_PADDING: i32 = -7; // padding count 0 or larger than the payload
export const ERR_TOO_LONG: i32 = -8; // longer than a ring slot holds
export const ERR_STREAM: i32 = -9; // stream index out of range or not open
export const ERR_ARG: i32 = -11; // bad argument (index, offset, length)
export const ERR_DOWNSTREAM: i32 = -12; // downstream index out of range or not open
export const ERR_RTCP_SHORT: i32 = -20; // RTCP item shorter than its header/minimum
export const ERR_RTCP_VERSION: i32 = -21;
export const ERR_RTCP_LENGTH: i32 = -22; // length field runs past the compound
export const ERR_RTCP_PADDING: i32 = -23; // padding on a non-final item or bad count
export const ERR_STATE: i32 = -30; // munger state bytes invalid (magic/version/size)
export const NOT_FOUND: i32 = -40; // ring lookup miss (never stored, overwritten or too old)
export const ERR_MEMORY: i32 = -50; // memory could not grow

// ---- munger decisions ---------------------------------------------------------------------------
export const D_IN_ORDER: i32 = 0; // next packet, forwarded
export const D_OUT_OF_ORDER: i32 = 1; // late but not yet forwarded, forwarded with its own seq
export const D_GAP: i32 = 2; // forwarded; packets before it are missing (RES_M_GAP of them)
export const D_DUPLICATE: i32 = 3; // already forwarded: do not send
export const D_DROP: i32 = 4; // not forwarded (see RES_M_REASON)
export const D_RETRANSMIT: i32 = 5; // retransmission written (plain or RTX)

export const DROP_NONE: i32 = 0;
export const DROP_WAIT_KEYFRAME: i32 = 1; // downstream needs a keyframe first
export const DROP_BEFORE_SWITCH: i32 = 2; // belongs to the previous source epoch
export const DROP_TOO_OLD: i32 = 3; // older than the 64-packet reorder window
export const DROP_NO_SOURCE: i32 = 4; // packet's stream is not this downstream's source

// ---- codecs -------------------------------------------------------------------------------------
export const CODEC_NONE: i32 = 0; // audio or unknown: never a keyframe
export const CODEC_VP8: i32 = 1;
export const CODEC_VP9: i32 = 2;
export const CODEC_H264: i32 = 3;
export const CODEC_AV1: i32 = 4;

// ---- ring slot ----------------------------------------------------------------------------------
export const SLOT_STRIDE: i32 = 1536;
export const SLOT_HDR: i32 = 32; // slot header precedes the packet bytes
export const MAX_PACKET: i32 = SLOT_STRIDE - SLOT_HDR; // 1504
// slot header fields
export const SL_EXT_SEQ: i32 = 0; // i64
export const SL_EXT_TS: i32 = 8; // i64
export const SL_ARRIVAL: i32 = 16; // f64 ms
export const SL_LEN: i32 = 24; // u16 packet length
export const SL_HDR_LEN: i32 = 26; // u16 header length (payload offset)
export const SL_PAY_LEN: i32 = 28; // u16 payload length (without padding)
export const SL_FLAGS: i32 = 30; // u8
export const SLF_VALID: u8 = 1;
export const SLF_KEYFRAME: u8 = 2;
export const SLF_MARKER: u8 = 4;
export const SLF_KEY_START: u8 = 8; // first packet of a keyframe's frame

// ---- result block (one per Core instance, read by TS through typed views) ------------------------
export const RES_SIZE: i32 = 256;
export const RES_CODE: i32 = 0; // i32
export const RES_SSRC: i32 = 4; // u32
export const RES_PT: i32 = 8; // i32
export const RES_MARKER: i32 = 12; // i32
export const RES_SEQ: i32 = 16; // i32 16-bit seq
export const RES_TS: i32 = 20; // u32 32-bit ts
export const RES_EXT_SEQ: i32 = 24; // f64
export const RES_EXT_TS: i32 = 32; // f64
export const RES_HDR_LEN: i32 = 40; // i32 payload offset from packet start
export const RES_PAY_LEN: i32 = 44; // i32
export const RES_PAD_LEN: i32 = 48; // i32
export const RES_KEYFRAME: i32 = 52; // i32 (1 keyframe, 0 not)
export const RES_PKT_OFF: i32 = 56; // i32 absolute offset of packet
export const RES_PKT_LEN: i32 = 60; // i32
export const RES_EXT_PROFILE: i32 = 64; // i32 0xBEDE, 0x100x or 0 none
export const RES_EXT_OFF: i32 = 68; // i32 absolute offset of extension data (after 4-byte header)
export const RES_EXT_LEN: i32 = 72; // i32 bytes
export const RES_ABS_OFF: i32 = 76; // i32 abs-capture-time value offset, -1 absent
export const RES_ABS_LEN: i32 = 80; // i32
export const RES_TWCC: i32 = 84; // i32 transport-wide seq, -1 absent
export const RES_PLAYOUT_MIN: i32 = 88; // i32, -1 absent (10 ms units)
export const RES_PLAYOUT_MAX: i32 = 92; // i32
export const RES_LOST: i32 = 96; // i32 new gap before this packet (ingest)
export const RES_SLOT: i32 = 100; // i32 ring slot index of the stored packet, -1
export const RES_CSRC_COUNT: i32 = 104; // i32
export const RES_NEED_KEYFRAME: i32 = 108; // i32 gap too large for NACK: ask for a keyframe
// munger results
export const RES_M_DECISION: i32 = 128; // i32
export const RES_M_OUT_OFF: i32 = 132; // i32
export const RES_M_OUT_LEN: i32 = 136; // i32
export const RES_M_SEQ: i32 = 140; // i32 16-bit out seq
export const RES_M_TS: i32 = 144; // u32 out ts
export const RES_M_GAP: i32 = 148; // i32 packets missing before this one
export const RES_M_REASON: i32 = 152; // i32 drop reason
export const RES_M_SWITCHED: i32 = 156; // i32 1 if this packet started a new source epoch
export const RES_M_EXT_SEQ: i32 = 160; // f64 out extended seq
export const RES_M_IN_EXT: i32 = 168; // f64 in extended seq (retransmit lookups)
// generic
export const RES_A: i32 = 192; // i32
export const RES_B: i32 = 196; // i32
export const RES_C: i32 = 200; // f64
export const RES_D: i32 = 208; // f64

// ---- other fixed regions --------------------------------------------------------------------------
export const LIST_MAX: i32 = 1024; // u32 entries in the seq list
export const ITEM_MAX: i32 = 64; // RTCP items per walk
export const ITEM_SIZE: i32 = 32;
// item fields
export const IT_TYPE: i32 = 0; // i32
export const IT_OFF: i32 = 4; // i32 absolute
export const IT_LEN: i32 = 8; // i32 bytes incl. header
export const IT_FMT: i32 = 12; // i32 count / fmt field
export const IT_SSRC: i32 = 16; // u32 sender ssrc (0 for SDES/BYE: first chunk/source)
export const IT_MEDIA: i32 = 20; // u32 media source ssrc (feedback) or 0
export const IT_EXTRA: i32 = 24; // f64: SR ntp-middle-32 for LSR, REMB bitrate bps
export const RTCP_OUT_SIZE: i32 = 1536;
export const SCRATCH_SIZE: i32 = 1536;
export const FANOUT_ENTRY: i32 = 16; // ds i32, decision i32, outOff i32, outLen i32

// RTCP item types
export const RT_SR: i32 = 1;
export const RT_RR: i32 = 2;
export const RT_SDES: i32 = 3;
export const RT_BYE: i32 = 4;
export const RT_APP: i32 = 5;
export const RT_NACK: i32 = 6;
export const RT_TWCC: i32 = 7;
export const RT_RTPFB: i32 = 8; // other transport-layer feedback
export const RT_PLI: i32 = 9;
export const RT_FIR: i32 = 10;
export const RT_REMB: i32 = 11;
export const RT_PSFB: i32 = 12; // other payload-specific feedback
export const RT_OTHER: i32 = 13; // XR and anything else with a valid header
