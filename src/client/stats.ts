/**
 * Turning WebRTC statistics into what the watch page shows: latency, loss, bitrate. Pure
 * functions over plain objects, so they are tested in Node without a browser.
 */

/** NTP (RFC 5905) counts from 1900-01-01, Unix time from 1970-01-01: 70 years incl. 17 leap days. */
export const NTP_UNIX_OFFSET_MS = 2_208_988_800_000;

/** The fields of RTCRtpSynchronizationSource that carry abs-capture-time (WebRTC Extensions §9). */
export interface SyncSourceLike {
  /** When the last frame from this source was delivered for playout: Unix ms (timeOrigin-based). */
  timestamp: number;
  /** abs-capture-time of that frame: the capture system's NTP clock, ms. */
  captureTimestamp?: number;
  /** The sender's estimate of (sender NTP clock - capture system NTP clock), ms. */
  senderCaptureTimeOffset?: number;
}

/** Anything above this is a clock problem, not latency; shown as unknown rather than as a lie. */
export const MAX_PLAUSIBLE_LATENCY_MS = 60_000;

/**
 * Glass-to-glass latency from abs-capture-time
 * (http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time): the capture instant stamped
 * by the broadcaster travels through every relay untouched, and the browser reports it with the
 * playout instant of the same frame. The difference is true glass-to-glass delay when the
 * broadcaster's and viewer's clocks agree (same machine, or both NTP-synced). Relays do not
 * rewrite the extension, so no relay adds a clock offset (senderCaptureTimeOffset is then 0 or
 * absent). Returns undefined when the browser does not expose it or the result is implausible.
 */
export function captureLatencyMs(src: SyncSourceLike | undefined): number | undefined {
  if (!src || typeof src.captureTimestamp !== 'number' || !(src.captureTimestamp > 0)) return undefined;
  let capture = src.captureTimestamp + (src.senderCaptureTimeOffset ?? 0);
  // The value is specified on the NTP epoch; accept a Unix-epoch value too (it is then far below
  // the NTP offset), so a browser that already converted does not read as 70 years late.
  if (capture > NTP_UNIX_OFFSET_MS) capture -= NTP_UNIX_OFFSET_MS;
  const latency = src.timestamp - capture;
  if (!(latency >= 0) || latency > MAX_PLAUSIBLE_LATENCY_MS) return undefined;
  return latency;
}

/** The inbound-rtp and candidate-pair fields the player reads (W3C webrtc-stats). */
export interface InboundSample {
  /** Sample time, ms (the stats report's timestamp). */
  at: number;
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  framesDecoded: number;
  /** RFC 3550 interarrival jitter, seconds. */
  jitter?: number;
  jitterBufferDelay?: number;
  jitterBufferEmittedCount?: number;
  totalDecodeTime?: number;
  /** Current round-trip time on the selected candidate pair, seconds. */
  roundTripTime?: number;
  frameWidth?: number;
  frameHeight?: number;
  framesPerSecond?: number;
}

/**
 * Latency estimate from stats alone, for browsers without abs-capture-time: one-way network
 * delay (RTT/2) plus the time a frame waits in the jitter buffer plus its decode time. It leaves
 * out capture, encode and relay queueing, so it is a lower bound of glass-to-glass, labelled
 * as an estimate on the page.
 */
export function statsLatencyMs(s: InboundSample): number | undefined {
  if (s.jitterBufferDelay === undefined || !s.jitterBufferEmittedCount) return undefined;
  const buffer = (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000;
  const decode = s.totalDecodeTime !== undefined && s.framesDecoded > 0 ? (s.totalDecodeTime / s.framesDecoded) * 1000 : 0;
  const net = s.roundTripTime !== undefined ? (s.roundTripTime * 1000) / 2 : 0;
  return buffer + decode + net;
}

export interface IntervalStats {
  /** Received bitrate over the interval, kbit/s. */
  kbps: number;
  /** Fraction of packets expected in the interval that were lost, 0..1. */
  lossFraction: number;
  /** Frames decoded in the interval. */
  framesDecoded: number;
}

/**
 * Rates between two samples of the same inbound stream. packetsLost is cumulative and may go
 * down when late packets arrive (RFC 3550 §6.4.1 allows negative loss), so the interval's loss
 * is clamped at zero.
 */
export function intervalStats(prev: InboundSample | undefined, cur: InboundSample): IntervalStats {
  if (!prev || cur.at <= prev.at || cur.packetsReceived < prev.packetsReceived) {
    return { kbps: 0, lossFraction: 0, framesDecoded: 0 };
  }
  const dt = (cur.at - prev.at) / 1000;
  const received = cur.packetsReceived - prev.packetsReceived;
  const lost = Math.max(0, cur.packetsLost - prev.packetsLost);
  const expected = received + lost;
  return {
    kbps: ((cur.bytesReceived - prev.bytesReceived) * 8) / 1000 / dt,
    lossFraction: expected > 0 ? lost / expected : 0,
    framesDecoded: Math.max(0, cur.framesDecoded - prev.framesDecoded),
  };
}

/** Pick the fields above out of an RTCStatsReport-like iterable (video inbound only). */
export function readInbound(report: Iterable<[string, Record<string, unknown>]> | { forEach(cb: (v: Record<string, unknown>) => void): void }): InboundSample | undefined {
  let inbound: Record<string, unknown> | undefined;
  let pair: Record<string, unknown> | undefined;
  let selectedPairId: string | undefined;
  const all: Record<string, unknown>[] = [];
  const visit = (v: Record<string, unknown>): void => {
    all.push(v);
    if (v.type === 'inbound-rtp' && (v.kind === 'video' || v.mediaType === 'video')) inbound = v;
    if (v.type === 'transport' && typeof v.selectedCandidatePairId === 'string') selectedPairId = v.selectedCandidatePairId;
  };
  if ('forEach' in report && typeof report.forEach === 'function') report.forEach(visit);
  else for (const [, v] of report as Iterable<[string, Record<string, unknown>]>) visit(v);
  if (!inbound) return undefined;
  for (const v of all) {
    if (v.type !== 'candidate-pair') continue;
    if (selectedPairId ? v.id === selectedPairId : v.nominated === true && v.state === 'succeeded') pair = v;
  }
  const n = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  return {
    at: n(inbound.timestamp) ?? 0,
    packetsReceived: n(inbound.packetsReceived) ?? 0,
    packetsLost: n(inbound.packetsLost) ?? 0,
    bytesReceived: n(inbound.bytesReceived) ?? 0,
    framesDecoded: n(inbound.framesDecoded) ?? 0,
    jitter: n(inbound.jitter),
    jitterBufferDelay: n(inbound.jitterBufferDelay),
    jitterBufferEmittedCount: n(inbound.jitterBufferEmittedCount),
    totalDecodeTime: n(inbound.totalDecodeTime),
    roundTripTime: pair ? n(pair.currentRoundTripTime) : undefined,
    frameWidth: n(inbound.frameWidth),
    frameHeight: n(inbound.frameHeight),
    framesPerSecond: n(inbound.framesPerSecond),
  };
}
