/**
 * The browser client's pure parts, in Node: latency from abs-capture-time and from stats,
 * interval loss and bitrate, reconnect backoff, stream URL parsing, the tree layout, and the
 * browser copy of the wire schema (same bytes as the servers' codec).
 */
import { describe, expect, it } from 'vitest';
import { backoffDelay, BackoffOptionsError, DEFAULT_BACKOFF, validateBackoff } from '../src/client/backoff.ts';
import { PlayerOptionsError, streamEndpoints } from '../src/client/endpoints.ts';
import { resourceUrl } from '../src/client/http-sdp.ts';
import { firstFrameOverdue, isFatal, isStalled, onMediaLost, unsolicitedError } from '../src/client/recovery.ts';
import { captureLatencyMs, intervalStats, NTP_UNIX_OFFSET_MS, readInbound, statsLatencyMs, type InboundSample } from '../src/client/stats.ts';
import { layoutTree, streamNames } from '../src/client/tree-layout.ts';
import { readFileSync } from 'node:fs';
import { createWire, MAX_FRAME_BYTES, WireError } from '../src/client/wire-codec.ts';
import { encodeEnvelope as serverEncode, MsgType } from '../src/proto/index.ts';

describe('captureLatencyMs', () => {
  const playoutUnix = 1_800_000_000_000;
  it('subtracts the NTP-epoch capture time from the playout time', () => {
    expect(captureLatencyMs({ timestamp: playoutUnix, captureTimestamp: playoutUnix - 85 + NTP_UNIX_OFFSET_MS })).toBe(85);
  });
  it('applies senderCaptureTimeOffset (capture clock → sender clock)', () => {
    expect(captureLatencyMs({ timestamp: playoutUnix, captureTimestamp: playoutUnix - 100 + NTP_UNIX_OFFSET_MS, senderCaptureTimeOffset: 30 })).toBe(70);
  });
  it('accepts a capture time already on the Unix epoch', () => {
    expect(captureLatencyMs({ timestamp: playoutUnix, captureTimestamp: playoutUnix - 42 })).toBe(42);
  });
  it('is undefined when absent, negative or implausible', () => {
    expect(captureLatencyMs(undefined)).toBeUndefined();
    expect(captureLatencyMs({ timestamp: playoutUnix })).toBeUndefined();
    expect(captureLatencyMs({ timestamp: playoutUnix, captureTimestamp: playoutUnix + 500 + NTP_UNIX_OFFSET_MS })).toBeUndefined();
    expect(captureLatencyMs({ timestamp: playoutUnix, captureTimestamp: playoutUnix - 120_000 + NTP_UNIX_OFFSET_MS })).toBeUndefined();
  });
});

const sample = (o: Partial<InboundSample>): InboundSample => ({ at: 0, packetsReceived: 0, packetsLost: 0, bytesReceived: 0, framesDecoded: 0, ...o });

describe('intervalStats', () => {
  it('computes bitrate, loss fraction and frames over the interval', () => {
    const a = sample({ at: 1000, packetsReceived: 100, packetsLost: 2, bytesReceived: 100_000, framesDecoded: 30 });
    const b = sample({ at: 2000, packetsReceived: 190, packetsLost: 12, bytesReceived: 225_000, framesDecoded: 60 });
    expect(intervalStats(a, b)).toEqual({ kbps: 1000, lossFraction: 0.1, framesDecoded: 30 });
  });
  it('clamps negative loss (late packets, RFC 3550 §6.4.1) to zero', () => {
    const a = sample({ at: 1000, packetsReceived: 100, packetsLost: 5 });
    const b = sample({ at: 2000, packetsReceived: 150, packetsLost: 3 });
    expect(intervalStats(a, b).lossFraction).toBe(0);
  });
  it('reports nothing for a first sample or a reset counter', () => {
    expect(intervalStats(undefined, sample({ at: 5 }))).toEqual({ kbps: 0, lossFraction: 0, framesDecoded: 0 });
    expect(intervalStats(sample({ at: 1, packetsReceived: 50 }), sample({ at: 2, packetsReceived: 3 })).kbps).toBe(0);
  });
});

describe('statsLatencyMs', () => {
  it('adds half the RTT, the mean jitter-buffer delay and the mean decode time', () => {
    const s = sample({ framesDecoded: 100, jitterBufferDelay: 4, jitterBufferEmittedCount: 100, totalDecodeTime: 0.5, roundTripTime: 0.01 });
    expect(statsLatencyMs(s)).toBeCloseTo(40 + 5 + 5, 6);
  });
  it('is undefined before the jitter buffer emitted anything', () => {
    expect(statsLatencyMs(sample({ jitterBufferDelay: 0, jitterBufferEmittedCount: 0 }))).toBeUndefined();
  });
});

describe('readInbound', () => {
  it('reads the video inbound-rtp and the selected candidate pair', () => {
    const report = new Map<string, Record<string, unknown>>([
      ['a', { id: 'a', type: 'inbound-rtp', kind: 'audio', packetsReceived: 9 }],
      ['v', { id: 'v', type: 'inbound-rtp', kind: 'video', timestamp: 10, packetsReceived: 50, packetsLost: 1, bytesReceived: 999, framesDecoded: 7, jitter: 0.002 }],
      ['t', { id: 't', type: 'transport', selectedCandidatePairId: 'p2' }],
      ['p1', { id: 'p1', type: 'candidate-pair', currentRoundTripTime: 0.5 }],
      ['p2', { id: 'p2', type: 'candidate-pair', currentRoundTripTime: 0.004 }],
    ]);
    const s = readInbound(report);
    expect(s).toMatchObject({ at: 10, packetsReceived: 50, packetsLost: 1, bytesReceived: 999, framesDecoded: 7, jitter: 0.002, roundTripTime: 0.004 });
  });
  it('is undefined without video', () => {
    expect(readInbound(new Map([['a', { type: 'inbound-rtp', kind: 'audio' }]]))).toBeUndefined();
  });
});

describe('backoffDelay', () => {
  it('doubles the ceiling per attempt up to maxMs, scaled by the draw', () => {
    const o = { initialMs: 100, maxMs: 1000, minMs: 0 };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, 0.999999))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, o, 0.5)).toBe(400);
  });
  it('never goes below minMs, even with a zero draw or a huge attempt count', () => {
    expect(backoffDelay(0, DEFAULT_BACKOFF, 0)).toBe(DEFAULT_BACKOFF.minMs);
    expect(backoffDelay(1e9, DEFAULT_BACKOFF, 1)).toBe(DEFAULT_BACKOFF.maxMs);
  });
  it('rejects inconsistent options with a message that says what to change', () => {
    expect(() => validateBackoff({ initialMs: 0, maxMs: 10, minMs: 0 })).toThrow(BackoffOptionsError);
    expect(() => validateBackoff({ initialMs: 100, maxMs: 10, minMs: 0 })).toThrow(/initialMs <= maxMs/);
  });
});

describe('streamEndpoints', () => {
  it('derives the WebSocket endpoint from the WHEP URL', () => {
    expect(streamEndpoints('https://live.example.com/whep/cam1')).toEqual({
      base: 'https://live.example.com', stream: 'cam1', whep: 'https://live.example.com/whep/cam1', ws: 'wss://live.example.com/ws',
    });
    expect(streamEndpoints('http://127.0.0.1:8080/canopy/whep/a%20b?x=1').ws).toBe('ws://127.0.0.1:8080/canopy/ws');
    expect(streamEndpoints('http://127.0.0.1:8080/canopy/whep/a%20b').stream).toBe('a b');
  });
  it('refuses URLs that do not name a stream', () => {
    expect(() => streamEndpoints('cam1')).toThrow(PlayerOptionsError);
    expect(() => streamEndpoints('ftp://x/whep/a')).toThrow(/http/);
    expect(() => streamEndpoints('https://x/watch/a')).toThrow(/\/whep\/\{stream\}/);
  });
});

describe('resourceUrl', () => {
  it('resolves a relative Location against the relay that answered and keeps its token', () => {
    expect(resourceUrl('/whep/cam1/s1', 'http://127.0.0.1:9001/whep/cam1?token=T&viewer=v')).toBe('http://127.0.0.1:9001/whep/cam1/s1?token=T');
    expect(resourceUrl('http://r/whep/cam1/s1?token=X', 'http://127.0.0.1:9001/whep/cam1?token=T')).toBe('http://r/whep/cam1/s1?token=X');
    expect(resourceUrl('/whip/c/s', 'http://h/whip/c')).toBe('http://h/whip/c/s');
  });
});

describe('layoutTree', () => {
  const nodes = [
    { relayId: 'origin', parentId: null, depth: 0, viewers: 0 },
    { relayId: 'edge-1', parentId: 'origin', depth: 1, viewers: 2 },
    { relayId: 'edge-2', parentId: 'origin', depth: 1, viewers: 1 },
    { relayId: 'sub-1', parentId: 'edge-1', depth: 2, viewers: 3 },
  ];
  it('puts parents over the middle of their children, one row per depth', () => {
    const l = layoutTree(nodes, [{ id: 'edge-1', capacity: 4, viewers: 2, children: 1 }]);
    const at = Object.fromEntries(l.nodes.map((n) => [n.relayId, n]));
    expect(l.rows).toBe(3);
    expect(l.columns).toBe(2);
    expect(at['sub-1']!.col).toBe(0);
    expect(at['edge-1']!.col).toBe(0);
    expect(at['edge-2']!.col).toBe(1);
    expect(at.origin!.col).toBe(0.5);
    expect(at['sub-1']!.depth).toBe(2);
    expect(at['edge-1']!.load).toBe(0.75);
    expect(l.links).toEqual([
      { from: 'origin', to: 'edge-1' },
      { from: 'edge-1', to: 'sub-1' },
      { from: 'origin', to: 'edge-2' },
    ]);
  });
  it('keeps orphans and survives a malformed cycle', () => {
    const l = layoutTree([
      { relayId: 'a', parentId: 'b', viewers: 0 },
      { relayId: 'b', parentId: 'a', viewers: 0 },
      { relayId: 'o', parentId: 'gone', viewers: 1 },
    ]);
    expect(l.nodes.map((n) => n.relayId).sort()).toEqual(['a', 'b', 'o']);
  });
});

describe('streamNames', () => {
  it('accepts a list of names or of objects', () => {
    expect(streamNames(['b', 'a'])).toEqual(['a', 'b']);
    expect(streamNames({ streams: [{ stream: 'x' }, { name: 'y' }] })).toEqual(['x', 'y']);
    expect(streamNames(null)).toEqual([]);
  });
});

describe('browser wire codec (createWire)', () => {
  const wire = createWire(readFileSync(new URL('../src/proto/canopy.proto', import.meta.url), 'utf8'));
  it('encodes the same bytes as the servers and decodes theirs', () => {
    const msg = { type: MsgType.JOIN, id: 1, join: { stream: 's', role: 'watch', token: 't', region: 'eu' } };
    expect(Buffer.from(wire.encodeEnvelope(msg))).toEqual(Buffer.from(serverEncode(msg)));
    const migrate = { type: MsgType.MIGRATE, id: 0, migrate: { reason: 'relay_down', placement: { relayId: 'r2', relayUrl: 'http://x', depth: 2 } } };
    expect(wire.decodeEnvelope(serverEncode(migrate))).toMatchObject(migrate);
  });
  it('throws WireError, and only WireError, on bad frames', () => {
    expect(() => wire.decodeEnvelope(new Uint8Array([0x0a, 0xff, 0xff]))).toThrow(WireError);
    expect(() => wire.decodeEnvelope(new Uint8Array(MAX_FRAME_BYTES + 1))).toThrow(/exceeds/);
  });
  it('names error codes for people', () => {
    expect(wire.errorName(wire.ErrorCode.ERR_NO_STREAM)).toBe('no_stream');
    expect(wire.errorName(999)).toBe('unknown');
  });
});

describe('recovery decisions', () => {
  it('gives up only on errors a retry cannot fix', () => {
    for (const c of ['unauthorized', 'forbidden', 'malformed', 'unknown_type']) expect(isFatal(c)).toBe(true);
    for (const c of ['no_stream', 'no_capacity', 'relay_failed', 'store_unavailable', 'rate_limited', 'internal', 'connect_failed']) expect(isFatal(c)).toBe(false);
  });
  it('waits for a MIGRATE over the socket, re-POSTs at once over WHEP', () => {
    expect(onMediaLost('ws', 6000)).toEqual({ kind: 'await-migrate', ms: 6000 });
    expect(onMediaLost('whep', 6000)).toEqual({ kind: 'reconnect' });
  });
  it('handles an ERROR that answers no pending request', () => {
    expect(unsolicitedError('unauthorized', 0)).toBe('fail');
    expect(unsolicitedError('no_capacity', 0)).toBe('rejoin');
    expect(unsolicitedError('no_stream', 0)).toBe('rejoin');
    expect(unsolicitedError('rate_limited', 0)).toBe('ignore');
    expect(unsolicitedError('relay_failed', 7)).toBe('ignore'); // late reply to a request we gave up on
  });
  it('gives up on a connection that never shows a first frame', () => {
    expect(firstFrameOverdue(false, 13_001, 1000, 12_000)).toBe(true);
    expect(firstFrameOverdue(false, 13_000, 1000, 12_000)).toBe(false);
    expect(firstFrameOverdue(true, 99_000, 1000, 12_000)).toBe(false);
  });
  it('calls a stream stalled only while playing and only past the bound', () => {
    expect(isStalled(true, 10_000, 5_999, 4000)).toBe(true);
    expect(isStalled(true, 10_000, 6_000, 4000)).toBe(false);
    expect(isStalled(false, 10_000, 0, 4000)).toBe(false);
  });
});
