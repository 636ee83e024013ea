/**
 * Media through relays with real werift peers on 127.0.0.1: publisher -> origin -> edge -> viewer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Relay } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { TestPublisher, TestViewer, waitUntil, type ReceivedPacket, type SentPacket } from './helpers/peers.ts';

const secret = 'relay-forward-secret';
const tok = (stream: string, role: 'publish' | 'watch' | 'relay') => mintToken(secret, stream, role, 600, Date.now());

/** 16-bit sequence numbers of `pkts` (arrival order) form one run without holes, wrap-aware. */
function assertContinuous(pkts: ReceivedPacket[]): void {
  const seen = new Set<number>();
  let ext = -1;
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of pkts) {
    if (ext < 0) ext = p.seq;
    else {
      const d = ((p.seq - (ext & 0xffff) + 0x8000) & 0xffff) - 0x8000; // signed 16-bit delta
      ext += d;
    }
    seen.add(ext);
    lo = Math.min(lo, ext);
    hi = Math.max(hi, ext);
  }
  const missing: number[] = [];
  for (let s = lo; s <= hi; s++) if (!seen.has(s)) missing.push(s & 0xffff);
  expect(missing, `sequence holes at the viewer`).toEqual([]);
}

function matchSent(pub: TestPublisher, p: ReceivedPacket): SentPacket | undefined {
  return pub.sent.find((s) => s.track === p.tagTrack && s.index === p.tagIndex);
}

describe('relay forwarding', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  async function relay(id: string, extra: Partial<ConstructorParameters<typeof Relay>[0]> = {}): Promise<Relay> {
    const r = new Relay({ id, secret, ...extra });
    await r.listen();
    cleanup.push(() => r.close());
    return r;
  }

  it('publisher -> origin -> edge -> viewer: identical payloads, continuous seq, extensions intact', async () => {
    const origin = await relay('origin');
    const edge = await relay('edge');
    const pub = await TestPublisher.start({ url: `${origin.url}/whip/s1`, token: tok('s1', 'publish'), fps: 25, keyframeIntervalMs: 1000 });
    cleanup.push(() => pub.close());
    await edge.pull('s1', origin.url, tok('s1', 'relay'));
    const viewer = await TestViewer.start({ url: `${edge.url}/whep/s1`, token: tok('s1', 'watch') });
    cleanup.push(() => viewer.close());
    await waitUntil(() => viewer.on(0).length >= 80 && viewer.on(1).length >= 40, 10_000, 'viewer media');
    pub.pause();
    await new Promise((r) => setTimeout(r, 200));

    const video = viewer.on(0);
    const audio = viewer.on(1);
    expect(video[0]!.keyframe).toBe(true); // fast join starts on a keyframe
    for (const track of [video, audio]) {
      assertContinuous(track);
      expect(new Set(track.map((p) => p.ssrc)).size).toBe(1);
      for (const p of track) {
        const s = matchSent(pub, p);
        expect(s, `sent packet for track ${p.tagTrack} index ${p.tagIndex}`).toBeDefined();
        expect(Buffer.compare(p.payload, s!.payload)).toBe(0);
        expect(p.marker).toBe(s!.marker);
        const abs = p.extensions.find((e) => e.id === viewer.extId(p.track));
        expect(abs, 'abs-capture-time forwarded').toBeDefined();
        expect(abs!.payload.toString("hex"), `ext ${JSON.stringify(p.extensions.map((e) => [e.id, e.payload.toString("hex")]))}`).toBe(s!.absCaptureTime.toString("hex"));
      }
    }
    // Timestamps keep their spacing (munger offsets are constant within one source).
    const sv = video.map((p) => matchSent(pub, p)!);
    for (let i = 1; i < video.length; i++) {
      expect((video[i]!.timestamp - video[0]!.timestamp) >>> 0).toBe((sv[i]!.timestamp - sv[0]!.timestamp) >>> 0);
    }
    const m = edge.metrics();
    expect(m).toMatch(/canopy_relay_packets_out_total\{relay="edge"\} [1-9]/);
  });
});
