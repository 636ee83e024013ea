import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket } from 'werift';
import { ViewerMeter } from '../loadtest/meter.ts';
import { fnv1a, packetizeVp8 } from '../loadtest/media.ts';
import { percentile, serializeAbsCaptureTime, unixMsToNtpQ32 } from '../loadtest/metrics.ts';
import { buildReport, html, summaryLine, table } from '../loadtest/report.ts';

const T0 = 1_700_000_000_000;
const ABS = 3;

/** A synthetic VP8 sender: frame n is captured at T0 + 33 n, split into `perFrame` packets. */
function frames(n: number, opts: { perFrame?: number; keyEvery?: number; ssrc?: number; seq0?: number } = {}) {
  const perFrame = opts.perFrame ?? 3;
  const out: Array<{ frame: number; bytes: Buffer; capture: number; body: Buffer }> = [];
  let seq = opts.seq0 ?? 65530;
  for (let f = 0; f < n; f++) {
    const key = f % (opts.keyEvery ?? 30) === 0;
    const body = Buffer.alloc(perFrame * 1096 - 10, f & 0xff);
    body[0] = key ? 0x00 : 0x01; // VP8 frame tag: bit 0 = 0 for a keyframe
    const capture = T0 + f * 33;
    for (const [i, payload] of packetizeVp8(body, f).entries()) {
      const header = new RtpHeader({ payloadType: 96, sequenceNumber: seq & 0xffff, timestamp: (f * 3000) >>> 0, ssrc: opts.ssrc ?? 1111, marker: i === perFrame - 1, extension: true, extensions: [{ id: ABS, payload: serializeAbsCaptureTime({ captureNtp: unixMsToNtpQ32(capture) }) }] });
      out.push({ frame: f, bytes: new RtpPacket(header, payload).serialize(), capture, body });
      seq++;
    }
  }
  return out;
}

const meter = (light = false, hashes?: Set<number>) => new ViewerMeter({ id: 'v', videoPt: 96, audioPt: 111, absIds: [ABS], light, ...(hashes ? { frameHashes: hashes } : {}) });

describe('ViewerMeter', () => {
  it('measures join, time to first frame and latency from abs-capture-time', () => {
    const m = meter();
    m.joinRequested(T0 - 200);
    m.newConnection('relay-0');
    for (const p of frames(30)) m.onPacket(p.capture + 12, p.bytes, true);
    const s = m.summary(T0 + 1000, percentile);
    expect(s.connected).toBe(true);
    expect(s.joinMs).toBe(212);
    expect(s.ttffMs).toBe(212); // frame 0 is a keyframe and completes at capture + 12
    // Frame 0 was captured before the connection's first packet arrived: backlog, not latency.
    expect(s.backlog).toBe(1);
    expect(s.latencyP50Ms).toBeCloseTo(12, 6);
    expect(s.lossPct).toBe(0);
    expect(s.framesComplete).toBe(30);
    expect(s.freezes).toBe(0);
  });

  it('waits for a keyframe before the first frame counts', () => {
    const m = meter();
    m.joinRequested(T0);
    m.newConnection('relay-0');
    for (const p of frames(40, { keyEvery: 35 }).filter((p) => p.frame >= 5)) m.onPacket(p.capture + 5, p.bytes, true);
    expect(m.summary(T0 + 2000, percentile).ttffMs).toBe(35 * 33 + 5);
  });

  it('light mode reads headers only and finds the keyframe from a decrypted frame start', () => {
    const m = meter(true);
    m.joinRequested(T0);
    m.newConnection('relay-0');
    let decrypted = 0;
    for (const p of frames(60)) {
      // The viewer decrypts only what the meter asks for.
      const want = m.wantsPayload({ payloadType: 96, ssrc: 1111, timestamp: p.bytes.readUInt32BE(4) } as never);
      if (want) decrypted++;
      m.onPacket(p.capture + 4, p.bytes, want);
    }
    const s = m.summary(T0 + 3000, percentile);
    expect(s.ttffMs).toBe(4);
    expect(s.framesComplete).toBe(60);
    expect(decrypted).toBe(1); // the first packet was the keyframe's start; nothing after it
  });

  it('counts loss, a retransmission, and a freeze', () => {
    const m = meter();
    m.joinRequested(T0);
    m.newConnection('relay-0');
    const ps = frames(60);
    const dropped = ps[31]!; // frame 10, middle packet
    for (const p of ps) {
      if (p === dropped) continue;
      // Frames 20..39 are lost entirely except their seqs show up as a gap: skip them.
      if (p.frame >= 20 && p.frame < 40) continue;
      m.onPacket(p.capture + 3, p.bytes, true);
    }
    m.onPacket(T0 + 2000, dropped.bytes, true); // late retransmission
    const s = m.summary(T0 + 2000, percentile);
    expect(s.lost).toBe(20 * 3);
    expect(s.retransmissions).toBe(1);
    expect(s.freezes).toBeGreaterThanOrEqual(1);
  });

  it('verifies payloads against the clip when decrypting', () => {
    const ps = frames(5, { perFrame: 2 });
    const good = new Set(ps.map((p) => fnv1a(p.body)));
    const m = meter(false, good);
    m.newConnection('r');
    for (const p of ps) m.onPacket(p.capture + 1, p.bytes, true);
    const s = m.summary(T0 + 1000, percentile);
    expect(s.framesVerified + s.framesCorrupt).toBe(5);
    expect(s.framesVerified).toBe(5);
    const bad = meter(false, new Set([1, 2, 3]));
    bad.newConnection('r');
    for (const p of ps) bad.onPacket(p.capture + 1, p.bytes, true);
    expect(bad.summary(T0 + 1000, percentile).framesCorrupt).toBe(5);
  });

  it('measures recovery after its relay is killed, and only for viewers on that relay', () => {
    const on = meter();
    const off = meter();
    for (const m of [on, off]) {
      m.joinRequested(T0);
      m.newConnection(m === on ? 'relay-1' : 'relay-2');
    }
    const first = frames(30);
    for (const p of first) for (const m of [on, off]) m.onPacket(p.capture + 2, p.bytes, true);
    const killAt = T0 + 1000;
    on.relayKilled('relay-1', killAt);
    off.relayKilled('relay-1', killAt);
    on.newConnection('relay-2');
    for (const p of frames(10, { ssrc: 2222, seq0: 100 })) on.onPacket(killAt + 600 + p.capture - T0, p.bytes, true);
    const s = on.summary(killAt + 2000, percentile);
    expect(s.affected).toBe(true);
    expect(s.recoveryMs).toBe(600);
    expect(s.connections).toBe(2);
    expect(off.summary(killAt + 2000, percentile).affected).toBe(false);
  });
});

describe('report', () => {
  const v = (id: string, extra: object = {}) => ({
    id, light: true, connected: true, relay: 'relay-0', connections: 1, joinMs: 100, ttffMs: 120, latencyP50Ms: 5, latencyP95Ms: 9, latencyMeanMs: 6,
    lossPct: 0, lost: 0, expected: 100, jitterMs: 1, freezes: 0, freezeMs: 0, retransmissions: 0, seqRestarts: 0, backlog: 0, packets: 100, bytes: 1000,
    framesComplete: 10, framesVerified: 0, framesCorrupt: 0, audioVerified: 0, audioCorrupt: 0, affected: false, recoveryMs: null, joinErrors: 0, lastJoinError: undefined, error: undefined, ...extra,
  });
  it('summary line has the issue\'s fields, in order; chaos adds the recovery fields', () => {
    const base = { viewersRequested: 2, latencySamples: [4, 5, 6], timeline: [], meta: {}, broadcaster: {} };
    const steady = buildReport({ ...base, scenario: 'steady', finalSessions: [v('a'), v('b')], allSessions: [v('a'), v('b')], kill: undefined });
    expect(Object.keys(JSON.parse(summaryLine(steady.summary)))).toEqual(['bench', 'scenario', 'viewers', 'connected', 'ttff_p50_ms', 'ttff_p95_ms', 'latency_p50_ms', 'latency_p95_ms', 'loss_pct', 'freezes']);
    const sessions = [v('a', { affected: true, recoveryMs: 800 }), v('b', { affected: true, recoveryMs: null }), v('c')];
    const chaos = buildReport({ ...base, scenario: 'chaos', viewersRequested: 3, finalSessions: sessions, allSessions: sessions, kill: { relay: 'relay-0', atMs: 5000 } });
    const line = JSON.parse(summaryLine(chaos.summary));
    expect(Object.keys(line).slice(-3)).toEqual(['affected', 'recovered', 'recovery_p95_ms']);
    expect(line).toMatchObject({ affected: 2, recovered: 1, recovery_p95_ms: 800, latency_p50_ms: 5 });
    expect(table(chaos)).toContain('1 / 2 recovered');
    const page = html(chaos);
    expect(page).toContain('<svg');
    expect(page).not.toMatch(/<script|<link|src=/);
  });
});
