/**
 * The load tester's measurements as pure functions and small sans-IO trackers. Nothing here
 * reads a clock or owns a socket: every arrival time is an argument, so the tests drive them
 * with table cases and the viewers feed them from their packet handlers.
 */

// ---------------------------------------------------------------------------------------------
// abs-capture-time (http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time)

export const ABS_CAPTURE_TIME_URI = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';

/** Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01), RFC 5905 section 6. */
export const NTP_UNIX_OFFSET_S = 2_208_988_800;
const Q32 = 4294967296; // 2^32

export interface AbsCaptureTime {
  /** Absolute capture timestamp, 64-bit unsigned NTP in Q32.32. */
  captureNtp: bigint;
  /** Estimated capture clock offset, signed Q32.32, when the 16-byte form was sent. */
  clockOffset?: bigint;
}

export class MeasurementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeasurementError';
  }
}

/**
 * Parse the extension payload: 8 bytes (timestamp) or 16 bytes (timestamp + offset). Any
 * other length is malformed (the extension spec defines exactly these two), returned as
 * undefined so a bad packet from the network never throws.
 */
export function parseAbsCaptureTime(p: Uint8Array): AbsCaptureTime | undefined {
  if (p.byteLength !== 8 && p.byteLength !== 16) return undefined;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const captureNtp = dv.getBigUint64(0);
  return p.byteLength === 16 ? { captureNtp, clockOffset: dv.getBigInt64(8) } : { captureNtp };
}

/** Serialize: 8 bytes, or 16 with the offset. */
export function serializeAbsCaptureTime(v: AbsCaptureTime): Buffer {
  const b = Buffer.alloc(v.clockOffset === undefined ? 8 : 16);
  b.writeBigUInt64BE(BigInt.asUintN(64, v.captureNtp), 0);
  if (v.clockOffset !== undefined) b.writeBigInt64BE(BigInt.asIntN(64, v.clockOffset), 8);
  return b;
}

/** Unix milliseconds (may be fractional) to NTP Q32.32. */
export function unixMsToNtpQ32(ms: number): bigint {
  const totalS = ms / 1000 + NTP_UNIX_OFFSET_S;
  const secs = Math.floor(totalS);
  const frac = Math.round((totalS - secs) * Q32);
  // Rounding can carry the fraction into the next second.
  return frac >= Q32 ? BigInt(secs + 1) << 32n : (BigInt(secs) << 32n) | BigInt(frac);
}

/** NTP Q32.32 to Unix milliseconds (fractional). */
export function ntpQ32ToUnixMs(ntp: bigint): number {
  const secs = Number(ntp >> 32n);
  const frac = Number(ntp & 0xffffffffn);
  return (secs - NTP_UNIX_OFFSET_S) * 1000 + (frac / Q32) * 1000;
}

/** Signed Q32.32 duration to milliseconds. */
export function q32ToMs(q: bigint): number {
  const s = BigInt.asIntN(64, q);
  const whole = Number(s >> 32n); // arithmetic shift: floor for negatives
  const frac = Number(s & 0xffffffffn);
  return (whole + frac / Q32) * 1000;
}

/**
 * Glass-to-glass latency in ms: the receiver's wall clock minus the capture time expressed in
 * the receiver's clock. The estimated capture clock offset, when present, is the offset between
 * the capture system's clock and the sender's, so the capture time in the sender's clock is
 * timestamp + offset (libwebrtc CaptureClockOffsetUpdater adds it the same way). On one machine
 * the receiver and sender share a clock.
 */
export function glassToGlassMs(ext: AbsCaptureTime, nowUnixMs: number): number {
  const capture = ntpQ32ToUnixMs(ext.captureNtp) + (ext.clockOffset === undefined ? 0 : q32ToMs(ext.clockOffset));
  return nowUnixMs - capture;
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers

/** Wrap-aware 16-bit difference a - b in [-32768, 32767] (RFC 3550 section A.1 idea). */
export function seqDiff16(a: number, b: number): number {
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
}

/** Turns 16-bit sequence numbers into extended ones, relative to the highest seen so far. */
export class SeqUnwrapper {
  #highest: number | undefined;
  /** Extended value of a 16-bit seq; the first one maps to itself (plus 2^16 headroom). */
  unwrap(seq: number): number {
    if (this.#highest === undefined) {
      // Start one cycle up so a slightly older first retransmission stays positive.
      this.#highest = seq + 0x10000;
      return this.#highest;
    }
    const ext = this.#highest + seqDiff16(seq, this.#highest & 0xffff);
    if (ext > this.#highest) this.#highest = ext;
    return ext;
  }
  get highest(): number | undefined {
    return this.#highest;
  }
}

export interface SeqVerdict {
  ext: number;
  /** Arrived after a higher seq: it filled a gap (a retransmission or reordering). */
  late: boolean;
  duplicate: boolean;
  /** Held back: the first packet after a very large jump, not counted until the next confirms a restart. */
  probe?: boolean;
  /** This packet confirmed a sequence restart: state keyed by extended seqs must start over. */
  restarted?: boolean;
}

/**
 * Loss from extended sequence numbers (RFC 3550 section A.3): expected = highest - base + 1,
 * lost = expected - received. Unlike the RFC's counter, duplicates are recognised over a
 * window of 4096 seqs, so a retransmitted duplicate does not hide a real loss.
 *
 * A jump of MAX_DROPOUT or more is not loss but a restart of the sequence (RFC 3550 A.1): the
 * first packet after the jump is held back; if the next one follows it, the tracker re-syncs
 * there (the counts so far are kept) and counts a restart.
 */
export class LossTracker {
  static readonly WINDOW = 4096;
  static readonly MAX_DROPOUT = 3000;
  #unwrap = new SeqUnwrapper();
  #base: number | undefined;
  #highest = 0;
  #received = 0;
  #late = 0;
  #dups = 0;
  #restarts = 0;
  #badSeq: number | undefined;
  #retired = { expected: 0, received: 0 };
  #seen = new Uint8Array(LossTracker.WINDOW);

  onPacket(seq: number): SeqVerdict {
    if (this.#base !== undefined) {
      const d = seqDiff16(seq, this.#highest & 0xffff);
      // Late retransmissions stay well within MAX_DROPOUT, so only jumps that far either way
      // (RFC 3550 A.1 also treats backward jumps beyond MAX_MISORDER so) are restarts.
      if (d >= LossTracker.MAX_DROPOUT || d <= -LossTracker.MAX_DROPOUT) {
        if (this.#badSeq !== seq) {
          this.#badSeq = (seq + 1) & 0xffff;
          return { ext: this.#highest + d, late: false, duplicate: false, probe: true };
        }
        // Two in a row after the jump: the sender restarted; keep what was counted, re-sync.
        this.#retired.expected += this.expectedSinceSync;
        this.#retired.received += this.#received;
        this.#restarts++;
        this.#unwrap = new SeqUnwrapper();
        this.#base = undefined;
        this.#seen.fill(0);
        const prev = this.#unwrap.unwrap((seq - 1) & 0xffff);
        this.#base = prev;
        this.#highest = prev;
        this.#received = 1;
        this.#seen[prev % LossTracker.WINDOW] = 1;
        this.#badSeq = undefined;
        const ext = this.#unwrap.unwrap(seq);
        this.#highest = ext;
        this.#seen[ext % LossTracker.WINDOW] = 1;
        this.#received++;
        return { ext, late: false, duplicate: false, restarted: true };
      }
    }
    this.#badSeq = undefined;
    const ext = this.#unwrap.unwrap(seq);
    if (this.#base === undefined) {
      this.#base = ext;
      this.#highest = ext;
      this.#received = 1;
      this.#seen[ext % LossTracker.WINDOW] = 1;
      return { ext, late: false, duplicate: false };
    }
    if (ext > this.#highest) {
      // Clear the window slots the new highest skips over (bounded by the window size).
      const from = Math.max(this.#highest + 1, ext - LossTracker.WINDOW + 1);
      for (let s = from; s <= ext; s++) this.#seen[s % LossTracker.WINDOW] = 0;
      this.#highest = ext;
      this.#seen[ext % LossTracker.WINDOW] = 1;
      this.#received++;
      return { ext, late: false, duplicate: false };
    }
    if (ext < this.#base) {
      // Older than the first packet: a retransmission of a packet from before we joined is not a loss of ours.
      return { ext, late: true, duplicate: false };
    }
    if (this.#highest - ext >= LossTracker.WINDOW) return { ext, late: true, duplicate: true };
    const slot = ext % LossTracker.WINDOW;
    if (this.#seen[slot]) {
      this.#dups++;
      return { ext, late: true, duplicate: true };
    }
    this.#seen[slot] = 1;
    this.#received++;
    this.#late++;
    return { ext, late: true, duplicate: false };
  }
  private get expectedSinceSync(): number {
    return this.#base === undefined ? 0 : this.#highest - this.#base + 1;
  }
  get expected(): number {
    return this.#retired.expected + this.expectedSinceSync;
  }
  get received(): number {
    return this.#retired.received + this.#received;
  }
  get lost(): number {
    return Math.max(0, this.expected - this.received);
  }
  get late(): number {
    return this.#late;
  }
  get duplicates(): number {
    return this.#dups;
  }
  /** Sequence restarts (jumps of MAX_DROPOUT or more confirmed by a following packet). */
  get restarts(): number {
    return this.#restarts;
  }
}

/** Loss percentage of expected packets, 0 when nothing was expected. */
export function lossPct(lost: number, expected: number): number {
  return expected > 0 ? (100 * lost) / expected : 0;
}

// ---------------------------------------------------------------------------------------------
// RFC 3550 interarrival jitter

/**
 * RFC 3550 section 6.4.1 / A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units and
 * J += (|D| - J) / 16. Arrival times are ms; the clock rate converts them to RTP units.
 */
export class JitterEstimator {
  readonly clockRate: number;
  #prevTransit: number | undefined;
  #j = 0;
  constructor(clockRate: number) {
    if (!(clockRate > 0)) throw new MeasurementError(`JitterEstimator: clockRate must be > 0 (e.g. 90000 for video), got ${clockRate}`);
    this.clockRate = clockRate;
  }
  /** Feed one in-order, non-retransmitted packet. rtpTs is the 32-bit RTP timestamp. */
  onPacket(arrivalMs: number, rtpTs: number): void {
    const arrival = (arrivalMs * this.clockRate) / 1000;
    const transit = arrival - rtpTs;
    if (this.#prevTransit !== undefined) {
      let d = transit - this.#prevTransit;
      // The RTP timestamp wraps at 2^32; fold the difference back into range.
      if (d > 2 ** 31) d -= 2 ** 32;
      else if (d < -(2 ** 31)) d += 2 ** 32;
      this.#j += (Math.abs(d) - this.#j) / 16;
    }
    this.#prevTransit = transit;
  }
  /** Jitter in RTP timestamp units. */
  get units(): number {
    return this.#j;
  }
  get ms(): number {
    return (this.#j * 1000) / this.clockRate;
  }
}

// ---------------------------------------------------------------------------------------------
// Frames: completeness from RTP headers, freezes, time to first frame

export interface FramePacket {
  /** Extended sequence number. */
  ext: number;
  /** 32-bit RTP timestamp: all packets of one video frame share it. */
  ts: number;
  marker: boolean;
  /** When the payload was readable: true if this packet starts a frame (VP8 S bit, partition 0). */
  start?: boolean;
  /** When the payload was readable: the frame is a keyframe (VP8 payload header P bit = 0). */
  keyframe?: boolean;
}

export interface CompleteFrame {
  ts: number;
  firstExt: number;
  lastExt: number;
  keyframe: boolean | undefined;
  atMs: number;
}

interface PendingFrame {
  ts: number;
  minExt: number;
  markerExt: number | undefined;
  count: number;
  startExt: number | undefined;
  keyframe: boolean | undefined;
}

/**
 * Tells when a video frame is complete using only what is in the clear under SRTP: the
 * marker bit ends a frame (RFC 7741 section 4.1 / RFC 3550 section 5.1), so a frame runs from
 * the packet after the previous frame's marker to its own marker. A frame is complete when
 * every seq in that range has arrived. When the payload was readable the VP8 S bit marks the
 * start directly (needed for the first frame after joining, whose predecessor we never saw).
 * Memory is bounded: at most MAX_PENDING incomplete frames are kept.
 */
export class FrameTracker {
  static readonly MAX_PENDING = 128;
  #pending = new Map<number, PendingFrame>();
  #markers = new Set<number>();
  #markerOrder: number[] = [];
  #completed = new Set<number>();
  #completedOrder: number[] = [];
  #lastKeyframe: boolean | undefined;

  /** Feed a newly arrived (non-duplicate) packet; returns the frames it completed. */
  onPacket(p: FramePacket, atMs: number): CompleteFrame[] {
    if (this.#completed.has(p.ts)) return [];
    let f = this.#pending.get(p.ts);
    if (!f) {
      f = { ts: p.ts, minExt: p.ext, markerExt: undefined, count: 0, startExt: undefined, keyframe: undefined };
      this.#pending.set(p.ts, f);
      if (this.#pending.size > FrameTracker.MAX_PENDING) {
        const oldest = this.#pending.keys().next().value as number;
        this.#pending.delete(oldest);
      }
    }
    f.count++;
    if (p.ext < f.minExt) f.minExt = p.ext;
    if (p.start) f.startExt = p.ext;
    if (p.keyframe !== undefined && (p.start || f.keyframe === undefined)) f.keyframe = p.keyframe;
    const done: CompleteFrame[] = [];
    if (p.marker) {
      f.markerExt = p.ext;
      this.#markers.add(p.ext);
      this.#markerOrder.push(p.ext);
      if (this.#markerOrder.length > 4 * FrameTracker.MAX_PENDING) this.#markers.delete(this.#markerOrder.shift()!);
      // This marker may start the frame that follows it.
      for (const other of this.#pending.values()) {
        if (other !== f && other.minExt === p.ext + 1) this.#check(other, atMs, done);
      }
    }
    this.#check(f, atMs, done);
    return done;
  }

  #check(f: PendingFrame, atMs: number, out: CompleteFrame[]): void {
    if (f.markerExt === undefined) return;
    const startKnown = f.startExt === f.minExt || this.#markers.has(f.minExt - 1);
    if (!startKnown) return;
    if (f.count !== f.markerExt - f.minExt + 1) return;
    this.#pending.delete(f.ts);
    this.#completed.add(f.ts);
    this.#completedOrder.push(f.ts);
    if (this.#completedOrder.length > 4 * FrameTracker.MAX_PENDING) this.#completed.delete(this.#completedOrder.shift()!);
    this.#lastKeyframe = f.keyframe;
    out.push({ ts: f.ts, firstExt: f.minExt, lastExt: f.markerExt, keyframe: f.keyframe, atMs });
  }

  get pending(): number {
    return this.#pending.size;
  }
  get lastKeyframe(): boolean | undefined {
    return this.#lastKeyframe;
  }
}

/** A freeze is a gap of more than thresholdMs between complete frames (default 500 ms). */
export class FreezeDetector {
  readonly thresholdMs: number;
  #last: number | undefined;
  #count = 0;
  #totalMs = 0;
  #longestMs = 0;
  constructor(thresholdMs = 500) {
    if (!(thresholdMs > 0)) throw new MeasurementError(`FreezeDetector: thresholdMs must be > 0, got ${thresholdMs}`);
    this.thresholdMs = thresholdMs;
  }
  onFrame(atMs: number): void {
    if (this.#last !== undefined) this.#gap(atMs - this.#last);
    this.#last = atMs;
  }
  #gap(g: number): void {
    if (g > this.thresholdMs) {
      this.#count++;
      this.#totalMs += g;
      if (g > this.#longestMs) this.#longestMs = g;
    }
  }
  /** Close the measurement: a stall still running at the end counts as a freeze. */
  finish(atMs: number): void {
    if (this.#last !== undefined) this.#gap(atMs - this.#last);
    this.#last = undefined;
  }
  /** Forget the previous frame (e.g. after a deliberate leave) without counting a freeze. */
  reset(): void {
    this.#last = undefined;
  }
  /** True if no frame has arrived for more than the threshold as of atMs. */
  frozen(atMs: number): boolean {
    return this.#last !== undefined && atMs - this.#last > this.thresholdMs;
  }
  get count(): number {
    return this.#count;
  }
  get totalMs(): number {
    return this.#totalMs;
  }
  get longestMs(): number {
    return this.#longestMs;
  }
}

// ---------------------------------------------------------------------------------------------
// VP8 payload descriptor (RFC 7741 section 4.2) and payload header (section 4.3)

export interface Vp8Info {
  /** S bit with partition index 0: the packet starts a frame. */
  start: boolean;
  /** Only meaningful when start: P bit of the VP8 payload header is 0 for a keyframe. */
  keyframe: boolean;
  /** Offset of the VP8 payload after the descriptor. */
  headerLen: number;
}

/** Parse the VP8 payload descriptor; undefined if truncated. */
export function parseVp8Descriptor(p: Uint8Array): Vp8Info | undefined {
  if (p.byteLength < 1) return undefined;
  const b0 = p[0]!;
  const x = (b0 & 0x80) !== 0;
  const s = (b0 & 0x10) !== 0;
  const pid = b0 & 0x07;
  let i = 1;
  if (x) {
    if (p.byteLength < 2) return undefined;
    const b1 = p[1]!;
    i = 2;
    if (b1 & 0x80) {
      // I: PictureID, 7 or 15 bits (M bit).
      if (p.byteLength < i + 1) return undefined;
      i += p[i]! & 0x80 ? 2 : 1;
    }
    if (b1 & 0x40) i += 1; // L: TL0PICIDX
    if (b1 & 0x30) i += 1; // T or K: TID/Y/KEYIDX
  }
  if (p.byteLength < i) return undefined;
  const start = s && pid === 0;
  const keyframe = start && p.byteLength > i && (p[i]! & 0x01) === 0;
  return { start, keyframe, headerLen: i };
}

// ---------------------------------------------------------------------------------------------
// Percentiles and summaries

/**
 * Percentile with linear interpolation between closest ranks (the "R-7"/numpy default).
 * NaN for an empty input; non-finite values are ignored.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new MeasurementError(`percentile: p must be within [0, 100], got ${p}`);
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const rank = (p / 100) * (xs.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return xs[lo]! + (xs[hi]! - xs[lo]!) * (rank - lo);
}

/** A bounded sample of a stream of values (reservoir of size n, seeded) for percentiles. */
export class Reservoir {
  readonly size: number;
  #xs: number[] = [];
  #seen = 0;
  #state: number;
  constructor(size = 2048, seed = 1) {
    if (!(size >= 1)) throw new MeasurementError(`Reservoir: size must be >= 1, got ${size}`);
    this.size = size;
    this.#state = seed >>> 0 || 1;
  }
  #rand(): number {
    // xorshift32: deterministic per seed.
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state / 4294967296;
  }
  add(v: number): void {
    if (!Number.isFinite(v)) return;
    this.#seen++;
    if (this.#xs.length < this.size) this.#xs.push(v);
    else {
      const j = Math.floor(this.#rand() * this.#seen);
      if (j < this.size) this.#xs[j] = v;
    }
  }
  get values(): readonly number[] {
    return this.#xs;
  }
  get count(): number {
    return this.#seen;
  }
}

/** Round for reports: finite numbers to `digits` decimals, everything else to null. */
export function round(v: number, digits = 1): number | null {
  if (!Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Histogram with fixed-width bins from 0; the last bin collects everything above. */
export function histogram(values: readonly number[], binWidth: number, bins: number): number[] {
  if (!(binWidth > 0) || !(bins >= 1)) throw new MeasurementError('histogram: binWidth must be > 0 and bins >= 1');
  const h = new Array<number>(bins).fill(0);
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    const i = Math.min(bins - 1, Math.max(0, Math.floor(v / binWidth)));
    h[i]!++;
  }
  return h;
}
