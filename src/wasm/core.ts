/**
 * Typed wrapper around the AssemblyScript forwarding core (assembly/). One Core = one WASM
 * instance with its own linear memory. The fast path (ingest, rewrite, fanout, retransmit) passes
 * offsets and lengths and reads results from fixed slots through typed views; it allocates
 * nothing per packet. Results are valid until the next call that writes the same slots.
 */
import { coreModule } from './load.ts';
import {
  Status, Decision, RES, ITEM, SLOT_STRIDE, MAX_PACKET, LIST_MAX, ITEM_SIZE, SCRATCH_SIZE,
  FANOUT_ENTRY, LAYOUT_VERSION, type CodecId, type DecisionCode, type RtcpTypeCode,
} from './layout.ts';

/** A Core option or argument is invalid. */
export class CoreConfigError extends Error {
  override name = 'CoreConfigError';
}
/** The core rejected a control call (open/close/attach); `code` is the Status value. */
export class CoreCallError extends Error {
  override name = 'CoreCallError';
  constructor(message: string, readonly code: number) {
    super(message);
  }
}
/** The WASM module aborted (out of memory when allocating tables). */
export class CoreAbortError extends Error {
  override name = 'CoreAbortError';
}

export interface CoreOptions {
  /** Stream slots (one per incoming RTP stream: an SSRC). Default 64. */
  maxStreams?: number;
  /** Downstream slots (one per outgoing RTP stream). Default 4096. */
  maxDownstreams?: number;
  /** Output slots (1536 bytes each) for fanout/retransmit/copy rewrites. Default 64. */
  outSlots?: number;
}

export interface StreamOptions {
  /** RTP clock rate (90000 video, 48000 Opus). */
  clockRate: number;
  /** Ring slots, a power of two 16..32768. Default 1024 (about 1.5 MB). */
  ringSize?: number;
  /** NACK lookups for packets older than this miss (eviction by age). Default 3000 ms. */
  maxAgeMs?: number;
  /** Payload type -> codec for keyframe detection. Audio needs none. */
  codecs?: Record<number, CodecId>;
  /** Negotiated RFC 8285 extension ids (0 or absent = not negotiated). */
  extensions?: { absCaptureTime?: number; transportCc?: number; playoutDelay?: number };
  /** NACK generator timing: first request after firstDelayMs, then every retryMs, maxRetries times. */
  nack?: { firstDelayMs?: number; retryMs?: number; maxRetries?: number };
}

export interface DownstreamOptions {
  /** Output SSRC. */
  ssrc: number;
  /** Output payload type; absent keeps the input's. */
  payloadType?: number;
  /** RTX (RFC 4588) SSRC and payload type; absent = retransmit in the media stream. */
  rtxSsrc?: number;
  rtxPayloadType?: number;
  /** First output seq / ts (choose randomly, RFC 3550 §5.1). Default 0. */
  initialSeq?: number;
  initialTs?: number;
  /** Start (and resume after a switch) only on a keyframe. Set for video. Default false. */
  requireKeyframe?: boolean;
}

export interface StreamStats {
  /** Packets stored (duplicates excluded). */
  received: number;
  /** Expected minus received since the stream (re)started (RFC 3550 A.3). */
  cumulativeLost: number;
  /** Highest extended seq (first cycle starts at 65536), -1 before the first packet. */
  highestExtSeq: number;
  /** Interarrival jitter in RTP timestamp units (RFC 3550 §6.4.1). */
  jitter: number;
  /** Missing seqs abandoned after the NACK retry limit. */
  nacksAbandoned: number;
}

interface Exports {
  memory: WebAssembly.Memory;
  version(): number;
  init(streams: number, ds: number, outs: number): number;
  resultPtr(): number;
  listPtr(): number;
  itemsPtr(): number;
  rtcpOutPtr(): number;
  scratchPtr(): number;
  outPtr(): number;
  fanoutPtr(): number;
  exportPtr(): number;
  streamOpen(s: number, clockRate: number, log2: number, maxAgeMs: number): number;
  streamClose(s: number): number;
  streamReset(s: number): number;
  streamSetCodec(s: number, pt: number, codec: number): number;
  streamSetExtIds(s: number, abs: number, twcc: number, playout: number): number;
  streamSetNack(s: number, first: number, retry: number, max: number): number;
  streamStats(s: number): number;
  ingestRegion(s: number): number;
  ingest(s: number, len: number, now: number): number;
  lookup(s: number, ext: number, now: number): number;
  lookupAny(s: number, ext: number): number;
  slotInfo(s: number, slot: number): number;
  latestKeyframe(s: number): number;
  pollNacks(s: number, now: number): number;
  nextNackDue(s: number): number;
  parse(off: number, len: number, abs: number, twcc: number, playout: number): number;
  findExt(id: number): number;
  keyframe(codec: number, off: number, len: number): number;
  dsOpen(d: number, ssrc: number, pt: number, rtxSsrc: number, rtxPt: number, seq: number, ts: number, kf: number): number;
  dsClose(d: number): number;
  dsSetSource(d: number, s: number): number;
  dsSwitch(d: number): number;
  rewrite(d: number, s: number, slot: number, now: number, out: number): number;
  fanout(s: number, slot: number, now: number, cursor: number): number;
  retransmit(d: number, seq: number, now: number, out: number): number;
  dsExport(d: number): number;
  dsImport(d: number): number;
  rtcpWalk(off: number, len: number): number;
  nackParse(off: number, len: number): number;
  nackBuild(sender: number, media: number, count: number): number;
  recordSr(s: number, lsr: number, now: number): number;
  rrBuild(sender: number, count: number, now: number): number;
}

function positiveInt(name: string, v: number | undefined, dflt: number, max: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < 1 || x > max) {
    throw new CoreConfigError(`${name} must be an integer 1..${max}, got ${v}`);
  }
  return x;
}

function check(what: string, code: number): void {
  if (code < 0) throw new CoreCallError(`${what} failed with core status ${code}`, code);
}

/** The forwarding core. See docs/architecture.md for the memory layout and the decisions. */
export class Core {
  readonly #x: Exports;
  readonly #mem: WebAssembly.Memory;
  /** Current views over linear memory; replaced when memory grows. */
  #u8!: Uint8Array;
  #i32!: Int32Array;
  #u32!: Uint32Array;
  #f64!: Float64Array;
  readonly #res: number;
  readonly #resI: number; // result block index in 32-bit units
  readonly #resF: number; // result block index in 64-bit units
  readonly #list: number;
  readonly #items: number;
  readonly #rtcpOut: number;
  readonly #scratch: number;
  readonly #out: number;
  readonly #fan: number;
  readonly #export: number;
  /** Output slot count (see outSlot()). */
  readonly outSlots: number;
  readonly maxStreams: number;
  readonly maxDownstreams: number;

  constructor(opts: CoreOptions = {}) {
    this.maxStreams = positiveInt('maxStreams', opts.maxStreams, 64, 4096);
    this.maxDownstreams = positiveInt('maxDownstreams', opts.maxDownstreams, 4096, 1 << 20);
    this.outSlots = positiveInt('outSlots', opts.outSlots, 64, 4096);
    const instance = new WebAssembly.Instance(coreModule(), {
      env: {
        abort: (_msg: number, _file: number, line: number, col: number) => {
          throw new CoreAbortError(`WASM core aborted at ${line}:${col} (out of memory?)`);
        },
      },
    });
    this.#x = instance.exports as unknown as Exports;
    this.#mem = this.#x.memory;
    if (this.#x.version() !== LAYOUT_VERSION) {
      throw new CoreConfigError(
        `build/core.wasm has layout ${this.#x.version()}, this wrapper expects ${LAYOUT_VERSION}: run npm run build:wasm`,
      );
    }
    try {
      check('init', this.#x.init(this.maxStreams, this.maxDownstreams, this.outSlots));
    } catch (err) {
      if (err instanceof CoreCallError) throw err;
      throw new CoreCallError(`Core init: cannot allocate tables (${(err as Error).message}); lower maxStreams/maxDownstreams/outSlots`, -50);
    }
    this.#res = this.#x.resultPtr();
    this.#resI = this.#res >> 2;
    this.#resF = this.#res >> 3;
    this.#list = this.#x.listPtr();
    this.#items = this.#x.itemsPtr();
    this.#rtcpOut = this.#x.rtcpOutPtr();
    this.#scratch = this.#x.scratchPtr();
    this.#out = this.#x.outPtr();
    this.#fan = this.#x.fanoutPtr();
    this.#export = this.#x.exportPtr();
    this.#refresh();
  }

  #refresh(): void {
    const b = this.#mem.buffer;
    this.#u8 = new Uint8Array(b);
    this.#i32 = new Int32Array(b);
    this.#u32 = new Uint32Array(b);
    this.#f64 = new Float64Array(b);
  }

  /** Linear memory bytes. Refreshed after growth; do not keep it across control calls. */
  get bytes(): Uint8Array {
    if (this.#u8.byteLength === 0) this.#refresh();
    return this.#u8;
  }

  /** A view of `len` bytes at `off` (allocates a view object; use for handing packets to IO). */
  view(off: number, len: number): Uint8Array {
    return this.bytes.subarray(off, off + len);
  }

  // ---- streams ---------------------------------------------------------------------------------

  /** Open stream slot `s` (0..maxStreams-1). Throws CoreConfigError/CoreCallError. */
  openStream(s: number, o: StreamOptions): void {
    const ring = o.ringSize ?? 1024;
    const log2 = Math.log2(ring);
    if (!Number.isInteger(log2) || log2 < 4 || log2 > 15) {
      throw new CoreConfigError(`ringSize must be a power of two 16..32768, got ${ring}`);
    }
    if (!(o.clockRate > 0) || !Number.isInteger(o.clockRate)) {
      throw new CoreConfigError(`clockRate must be a positive integer (Hz), got ${o.clockRate}`);
    }
    const maxAge = o.maxAgeMs ?? 3000;
    if (!(maxAge > 0)) throw new CoreConfigError(`maxAgeMs must be > 0, got ${maxAge}`);
    let code: number;
    try {
      code = this.#x.streamOpen(s, o.clockRate, log2, maxAge);
    } catch (err) {
      // The stub runtime traps when memory cannot grow; nothing was changed before the trap.
      throw new CoreCallError(`openStream(${s}): cannot grow WASM memory for a ${ring}-slot ring (${(err as Error).message}); use fewer streams or smaller rings`, -50);
    }
    check(`openStream(${s})`, code);
    this.#refresh();
    try {
      for (const [key, codec] of Object.entries(o.codecs ?? {})) {
        const pt = Number(key);
        if (!Number.isInteger(pt) || pt < 0 || pt > 127 || !Number.isInteger(codec)) {
          throw new CoreConfigError(`codecs: payload type must be 0..127 and codec a Codec value, got ${key} -> ${codec}`);
        }
        check(`codec for payload type ${pt}`, this.#x.streamSetCodec(s, pt, codec));
      }
      const e = o.extensions ?? {};
      check('extension ids', this.#x.streamSetExtIds(s, e.absCaptureTime ?? 0, e.transportCc ?? 0, e.playoutDelay ?? 0));
      const n = o.nack ?? {};
      const first = n.firstDelayMs ?? 10;
      const retry = n.retryMs ?? 100;
      const max = n.maxRetries ?? 5;
      if (!(first >= 0) || !(retry > 0) || !Number.isInteger(max) || max < 1 || max > 255) {
        throw new CoreConfigError(`nack options invalid: firstDelayMs >= 0, retryMs > 0, maxRetries 1..255`);
      }
      check('nack options', this.#x.streamSetNack(s, first, retry, max));
    } catch (err) {
      this.#x.streamClose(s);
      throw err;
    }
  }

  /** Close stream `s`; its ring is reused by the next stream opened with the same ring size.
   *  Attached downstreams are detached (they keep their munger state; setSource re-attaches and
   *  their output continues). */
  closeStream(s: number): void {
    check(`closeStream(${s})`, this.#x.streamClose(s));
  }

  /**
   * Stream `s` now carries a different upstream (re-parent, failover to another parent): forget
   * its packets, sequence/timestamp state, statistics, keyframe index and pending NACKs, keep its
   * configuration and downstreams. Each downstream's next packet starts a new epoch that
   * continues its output seq/ts.
   */
  resetStream(s: number): void {
    check(`resetStream(${s})`, this.#x.streamReset(s));
  }

  /** Offset at which to write the next packet of stream `s` (at most MAX_PACKET bytes), then call ingest. */
  ingestRegion(s: number): number {
    return this.#x.ingestRegion(s);
  }

  /**
   * Ingest the packet already written at ingestRegion(s): parse, validate, store in the ring and
   * keyframe index, update statistics and the NACK table. Returns a Status; the parsed fields are
   * readable through the `pkt*` getters until the next ingest/parse/lookup.
   */
  ingest(s: number, len: number, nowMs: number): number {
    return this.#x.ingest(s, len, nowMs);
  }

  /** Copy `packet` into the ring of stream `s` and ingest it (one copy, no allocation). */
  ingestPacket(s: number, packet: Uint8Array, nowMs: number): number {
    const off = this.#x.ingestRegion(s);
    if (off < 0) return off;
    if (packet.length > MAX_PACKET) return Status.ERR_TOO_LONG;
    let u8 = this.#u8;
    if (u8.byteLength === 0) u8 = this.bytes;
    u8.set(packet, off);
    return this.#x.ingest(s, packet.length, nowMs);
  }

  /**
   * Look up extended seq `extSeq` of stream `s` for a retransmission (misses if older than
   * maxAgeMs). Returns the ring slot (>= 0, packet described by the pkt* getters) or NOT_FOUND.
   */
  lookup(s: number, extSeq: number, nowMs: number): number {
    return this.#x.lookup(s, extSeq, nowMs);
  }

  /** lookup without the age check (keyframe cache iteration). */
  lookupAny(s: number, extSeq: number): number {
    return this.#x.lookupAny(s, extSeq);
  }

  /** Describe ring slot `slot` (pkt* getters) if it holds a packet. */
  slotInfo(s: number, slot: number): number {
    return this.#x.slotInfo(s, slot);
  }

  /**
   * The latest keyframe still fully in the ring: extended seqs [first, last] to replay to a late
   * joiner (iterate with lookupAny; lost packets miss). Null if none is cached.
   */
  latestKeyframe(s: number): { first: number; last: number } | null {
    const n = this.#x.latestKeyframe(s);
    if (n < 0) return null;
    return { first: this.#f64[(this.#res + RES.C) >> 3]!, last: this.#f64[(this.#res + RES.D) >> 3]! };
  }

  /** Receive statistics of stream `s` (allocates; not for the per-packet path). */
  stats(s: number): StreamStats {
    const lost = this.#x.streamStats(s);
    if (lost === Status.ERR_STREAM) throw new CoreCallError(`stats(${s}): stream not open`, lost);
    return {
      received: this.#i32[(this.#res + RES.A) >> 2]!,
      cumulativeLost: lost,
      highestExtSeq: this.#f64[(this.#res + RES.C) >> 3]!,
      jitter: this.#f64[(this.#res + RES.D) >> 3]!,
      nacksAbandoned: this.#i32[(this.#res + RES.B) >> 2]!,
    };
  }

  // ---- parsed packet (result block) -------------------------------------------------------------
  get pktCode(): number { return this.#i32[this.#resI]!; }
  get pktSsrc(): number { return this.#u32[this.#resI + (RES.SSRC >> 2)]!; }
  get pktPayloadType(): number { return this.#i32[this.#resI + (RES.PT >> 2)]!; }
  get pktMarker(): boolean { return this.#i32[this.#resI + (RES.MARKER >> 2)] === 1; }
  get pktSeq(): number { return this.#i32[this.#resI + (RES.SEQ >> 2)]!; }
  get pktTs(): number { return this.#u32[this.#resI + (RES.TS >> 2)]!; }
  /** Extended seq (first cycle starts at 65536). */
  get pktExtSeq(): number { return this.#f64[this.#resF + (RES.EXT_SEQ >> 3)]!; }
  /** Extended timestamp (first cycle starts at 2^32). */
  get pktExtTs(): number { return this.#f64[this.#resF + (RES.EXT_TS >> 3)]!; }
  get pktOffset(): number { return this.#i32[this.#resI + (RES.PKT_OFF >> 2)]!; }
  get pktLength(): number { return this.#i32[this.#resI + (RES.PKT_LEN >> 2)]!; }
  /** Header length = payload offset from the packet start. */
  get pktHeaderLength(): number { return this.#i32[this.#resI + (RES.HDR_LEN >> 2)]!; }
  get pktPayloadLength(): number { return this.#i32[this.#resI + (RES.PAY_LEN >> 2)]!; }
  get pktPaddingLength(): number { return this.#i32[this.#resI + (RES.PAD_LEN >> 2)]!; }
  get pktCsrcCount(): number { return this.#i32[this.#resI + (RES.CSRC_COUNT >> 2)]!; }
  get pktKeyframe(): boolean { return this.#i32[this.#resI + (RES.KEYFRAME >> 2)] === 1; }
  /** Ring slot of the stored packet, -1 if not stored. */
  get pktSlot(): number { return this.#i32[this.#resI + (RES.SLOT >> 2)]!; }
  /** Seqs newly found missing before this packet. */
  get pktLost(): number { return this.#i32[this.#resI + (RES.LOST >> 2)]!; }
  /** The gap is wider than NACK can repair: ask upstream for a keyframe. */
  get pktNeedKeyframe(): boolean { return this.#i32[this.#resI + (RES.NEED_KEYFRAME >> 2)] === 1; }
  /** RFC 8285 profile (0xBEDE one-byte, 0x100x two-byte) or 0 without extensions. */
  get pktExtProfile(): number { return this.#i32[this.#resI + (RES.EXT_PROFILE >> 2)]!; }
  /** abs-capture-time value offset (8 or 16 bytes), -1 absent. */
  get pktAbsCaptureOffset(): number { return this.#i32[this.#resI + (RES.ABS_OFF >> 2)]!; }
  get pktAbsCaptureLength(): number { return this.#i32[this.#resI + (RES.ABS_LEN >> 2)]!; }
  /** Transport-wide sequence number, -1 absent. */
  get pktTransportSeq(): number { return this.#i32[this.#resI + (RES.TWCC >> 2)]!; }
  /** playout-delay min/max in 10 ms units, -1 absent. */
  get pktPlayoutMin(): number { return this.#i32[this.#resI + (RES.PLAYOUT_MIN >> 2)]!; }
  get pktPlayoutMax(): number { return this.#i32[this.#resI + (RES.PLAYOUT_MAX >> 2)]!; }

  /** Parse (without storing) an RTP packet already in memory, e.g. at scratchOffset. */
  parse(off: number, len: number, ext: { absCaptureTime?: number; transportCc?: number; playoutDelay?: number } = {}): number {
    return this.#x.parse(off, len, ext.absCaptureTime ?? 0, ext.transportCc ?? 0, ext.playoutDelay ?? 0);
  }

  /** Copy `bytes` to the scratch region and parse them. */
  parseBytes(bytes: Uint8Array, ext: { absCaptureTime?: number; transportCc?: number; playoutDelay?: number } = {}): number {
    const off = this.writeScratch(bytes);
    if (off < 0) return Status.ERR_TOO_LONG;
    return this.parse(off, bytes.length, ext);
  }

  /** Find extension `id` in the packet last parsed/ingested: the value's offset, length in
   *  extLength; or NOT_FOUND. */
  findExtension(id: number): number {
    const r = this.#x.findExt(id);
    return r === 0 ? this.#i32[this.#resI + (RES.A >> 2)]! : r;
  }
  get extLength(): number { return this.#i32[this.#resI + (RES.B >> 2)]!; }

  /** Keyframe check of an RTP payload in memory. */
  isKeyframe(codec: CodecId, off: number, len: number): boolean {
    return this.#x.keyframe(codec, off, len) === 1;
  }

  /** Scratch region offset (SCRATCH_SIZE bytes) for packets that are not ingested. */
  get scratchOffset(): number { return this.#scratch; }

  /** Copy bytes into the scratch region; returns its offset, or -1 if they do not fit. */
  writeScratch(bytes: Uint8Array): number {
    if (bytes.length > SCRATCH_SIZE) return -1;
    this.bytes.set(bytes, this.#scratch);
    return this.#scratch;
  }

  // ---- downstreams (munger) ---------------------------------------------------------------------

  /** Open downstream slot `d` (0..maxDownstreams-1). */
  openDownstream(d: number, o: DownstreamOptions): void {
    const u32 = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CoreConfigError(`${name} must be a 32-bit unsigned integer, got ${v}`);
      return v;
    };
    const pt = (name: string, v: number | undefined) => {
      if (v === undefined) return -1;
      if (!Number.isInteger(v) || v < 0 || v > 127) throw new CoreConfigError(`${name} must be 0..127, got ${v}`);
      return v;
    };
    const seq = o.initialSeq ?? 0;
    if (!Number.isInteger(seq) || seq < 0 || seq > 0xffff) throw new CoreConfigError(`initialSeq must be 0..65535, got ${seq}`);
    const rtxPt = pt('rtxPayloadType', o.rtxPayloadType);
    if (rtxPt >= 0 && o.rtxSsrc === undefined) throw new CoreConfigError('rtxPayloadType needs rtxSsrc');
    check(
      `openDownstream(${d})`,
      this.#x.dsOpen(d, u32('ssrc', o.ssrc), pt('payloadType', o.payloadType), u32('rtxSsrc', o.rtxSsrc ?? 0), rtxPt,
        seq, u32('initialTs', o.initialTs ?? 0), o.requireKeyframe ? 1 : 0),
    );
  }

  closeDownstream(d: number): void {
    check(`closeDownstream(${d})`, this.#x.dsClose(d));
  }

  /**
   * Make stream `s` the source of downstream `d` (-1 detaches). After a downstream has sent
   * anything, the next packet from the new source continues its seq/ts (failover, re-parent).
   */
  setSource(d: number, s: number): void {
    check(`setSource(${d}, ${s})`, this.#x.dsSetSource(d, s));
  }

  /** Start a new source epoch on the next packet without changing the stream slot (the slot now
   *  carries a different upstream, e.g. after re-parenting onto the same stream index). */
  switchSource(d: number): void {
    check(`switchSource(${d})`, this.#x.dsSwitch(d));
  }

  /** Offset of output slot `i` (0..outSlots-1), each SLOT_STRIDE bytes. */
  outSlot(i: number): number {
    return this.#out + i * SLOT_STRIDE;
  }

  /**
   * Munge the packet in ring slot `slot` of stream `s` for downstream `d`. outOffset 0 patches
   * the header in place in the ring (valid until the next rewrite of that slot); otherwise the
   * packet is copied to outOffset (an outSlot) first. Returns a Decision (or a negative Status);
   * read outOffset/outLength/outSeq/outTs/gap/dropReason.
   */
  rewrite(d: number, s: number, slot: number, nowMs: number, outOffset = 0): number {
    return this.#x.rewrite(d, s, slot, nowMs, outOffset);
  }

  get outOffset(): number { return this.#i32[this.#resI + (RES.M_OUT_OFF >> 2)]!; }
  get outLength(): number { return this.#i32[this.#resI + (RES.M_OUT_LEN >> 2)]!; }
  get outSeq(): number { return this.#i32[this.#resI + (RES.M_SEQ >> 2)]!; }
  get outTs(): number { return this.#u32[this.#resI + (RES.M_TS >> 2)]!; }
  get outExtSeq(): number { return this.#f64[this.#resF + (RES.M_EXT_SEQ >> 3)]!; }
  /** Packets missing before this one (Decision.GAP). */
  get gap(): number { return this.#i32[this.#resI + (RES.M_GAP >> 2)]!; }
  /** DropReason for Decision.DROP. */
  get dropReason(): number { return this.#i32[this.#resI + (RES.M_REASON >> 2)]!; }
  /** This packet started a new source epoch. */
  get switched(): boolean { return this.#i32[this.#resI + (RES.M_SWITCHED >> 2)] === 1; }

  /**
   * Rewrite ring slot `slot` of stream `s` for every downstream attached to it, into output slots
   * 0.. in order (at most outSlots per call). Returns the entry count; read fanout* per entry;
   * if fanoutCursor !== -1 call again with it for the rest.
   */
  fanout(s: number, slot: number, nowMs: number, cursor = -1): number {
    return this.#x.fanout(s, slot, nowMs, cursor);
  }
  get fanoutCursor(): number { return this.#i32[this.#resI + (RES.A >> 2)]!; }
  /** Downstreams in the last fanout call that dropped the packet waiting for a keyframe: ask
   *  upstream for one (PLI/FIR, rate-limited by the caller) when > 0. */
  get fanoutWaitingKeyframe(): number { return this.#i32[this.#resI + (RES.B >> 2)]!; }
  fanoutDownstream(i: number): number { return this.#i32[(this.#fan + i * FANOUT_ENTRY) >> 2]!; }
  fanoutDecision(i: number): number { return this.#i32[((this.#fan + i * FANOUT_ENTRY) >> 2) + 1]! & 0xff; }
  /** DropReason of entry `i` (NONE when it is to be sent). */
  fanoutDropReason(i: number): number { return this.#i32[((this.#fan + i * FANOUT_ENTRY) >> 2) + 1]! >> 8; }
  /** Output offset, 0 when the decision was not to send. */
  fanoutOffset(i: number): number { return this.#i32[((this.#fan + i * FANOUT_ENTRY) >> 2) + 2]!; }
  fanoutLength(i: number): number { return this.#i32[((this.#fan + i * FANOUT_ENTRY) >> 2) + 3]!; }

  /**
   * Answer downstream `d`'s NACK for its output seq `seq` (16-bit): writes the retransmission
   * (RTX-wrapped if the downstream has RTX) at outOffset (default output slot 0). Returns
   * Decision.RETRANSMIT (read outOffset/outLength) or Status.NOT_FOUND.
   */
  retransmit(d: number, seq: number, nowMs: number, outOffset = this.#out): number {
    return this.#x.retransmit(d, seq, nowMs, outOffset);
  }

  /** Munger state of `d` as bytes (for moving a downstream between Cores or processes). */
  exportState(d: number): Uint8Array {
    const n = this.#x.dsExport(d);
    check(`exportState(${d})`, n);
    return this.bytes.slice(this.#export, this.#export + n);
  }

  /** Load state from exportState into `d` (opened); the next packet continues its output. */
  importState(d: number, state: Uint8Array): void {
    if (state.length !== 128) throw new CoreConfigError(`munger state must be 128 bytes, got ${state.length}`);
    this.bytes.set(state, this.#export);
    check(`importState(${d})`, this.#x.dsImport(d));
  }

  // ---- NACK -------------------------------------------------------------------------------------

  /** Seqs of stream `s` due for a NACK at `nowMs` (count; read nackSeq(i) or build with buildNack). */
  pollNacks(s: number, nowMs: number): number {
    return this.#x.pollNacks(s, nowMs);
  }
  /** Entry `i` of the seq list (filled by pollNacks / parseNack). */
  nackSeq(i: number): number { return this.#u32[(this.#list >> 2) + i]!; }
  /** Earliest time a missing seq of `s` is due, or -1 (for scheduling the next poll). */
  nextNackDue(s: number): number { return this.#x.nextNackDue(s); }

  /** Put `seqs` into the seq list (for buildNack); allocation-free apart from the argument. */
  setSeqList(seqs: ArrayLike<number>): number {
    const n = Math.min(seqs.length, LIST_MAX);
    const base = this.#list >> 2;
    for (let i = 0; i < n; i++) this.#u32[base + i] = seqs[i]! & 0xffff;
    return n;
  }

  /**
   * Build a Generic NACK (RFC 4585 §6.2.1) for the first `count` seqs of the seq list (as left by
   * pollNacks). Returns the byte length; the bytes are at rtcpOffset.
   */
  buildNack(senderSsrc: number, mediaSsrc: number, count: number): number {
    return this.#x.nackBuild(senderSsrc, mediaSsrc, count);
  }

  /** Decode a NACK item (offset/length from walkRtcp) into the seq list; returns the count. */
  parseNack(off: number, len: number): number {
    return this.#x.nackParse(off, len);
  }

  get rtcpOffset(): number { return this.#rtcpOut; }

  // ---- RTCP -------------------------------------------------------------------------------------

  /** Record an SR received for stream `s`: its NTP time's middle 32 bits (RTCP item extra). */
  recordSenderReport(s: number, ntpMiddle32: number, nowMs: number): number {
    return this.#x.recordSr(s, ntpMiddle32 >>> 0, nowMs);
  }

  /** Build an RR (RFC 3550 §6.4.2) with one block per stream in `streams` (max 31) at rtcpOffset.
   *  Returns the byte length. */
  buildReceiverReport(senderSsrc: number, streams: ArrayLike<number>, nowMs: number): number {
    if (streams.length > 31) throw new CoreConfigError('at most 31 report blocks per RR');
    const base = this.#list >> 2;
    for (let i = 0; i < streams.length; i++) this.#u32[base + i] = streams[i]!;
    return this.#x.rrBuild(senderSsrc, streams.length, nowMs);
  }

  /** Walk a compound RTCP packet in memory; returns the item count (or an error status). */
  walkRtcp(off: number, len: number): number {
    return this.#x.rtcpWalk(off, len);
  }
  /** Copy `bytes` to scratch and walk them. */
  walkRtcpBytes(bytes: Uint8Array): number {
    const off = this.writeScratch(bytes);
    if (off < 0) return Status.ERR_TOO_LONG;
    return this.#x.rtcpWalk(off, bytes.length);
  }
  itemType(i: number): RtcpTypeCode { return this.#i32[(this.#items + i * ITEM_SIZE + ITEM.TYPE) >> 2] as RtcpTypeCode; }
  itemOffset(i: number): number { return this.#i32[(this.#items + i * ITEM_SIZE + ITEM.OFF) >> 2]!; }
  itemLength(i: number): number { return this.#i32[(this.#items + i * ITEM_SIZE + ITEM.LEN) >> 2]!; }
  /** The 5-bit count / FMT field. */
  itemFmt(i: number): number { return this.#i32[(this.#items + i * ITEM_SIZE + ITEM.FMT) >> 2]!; }
  itemSsrc(i: number): number { return this.#u32[(this.#items + i * ITEM_SIZE + ITEM.SSRC) >> 2]!; }
  /** Media source SSRC of a feedback item. */
  itemMediaSsrc(i: number): number { return this.#u32[(this.#items + i * ITEM_SIZE + ITEM.MEDIA) >> 2]!; }
  /** SR: NTP middle 32 bits (for recordSenderReport). REMB: bitrate in bps. */
  itemExtra(i: number): number { return this.#f64[(this.#items + i * ITEM_SIZE + ITEM.EXTRA) >> 3]!; }
}

export { Status, Decision };
export type { DecisionCode };
