/**
 * Fast join and PLI merging: 50 viewers join at once; each starts on the cached keyframe, and the
 * publisher sees a bounded number of keyframe requests however many viewers ask.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Relay, PliMerger } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { FakeClock } from '../src/util/clock.ts';
import { TestPublisher, TestViewer, waitUntil } from './helpers/peers.ts';

const secret = 'relay-fastjoin-secret';
const tok = (stream: string, role: 'publish' | 'watch' | 'relay') => mintToken(secret, stream, role, 600, Date.now());

describe('PliMerger', () => {
  it('sends at most one request per interval and flushes a merged one when the interval ends', () => {
    const clock = new FakeClock(1000);
    const m = new PliMerger(500);
    expect(m.request(clock.now())).toBe(true);
    for (let i = 0; i < 49; i++) expect(m.request(clock.advance(5))).toBe(false);
    expect(m.pending).toBe(true);
    clock.set(1499);
    expect(m.poll(clock.now())).toBe(false);
    expect(m.poll(clock.advance(1))).toBe(true); // 500 ms after the first
    expect(m.poll(clock.advance(1000))).toBe(false); // nothing pending any more
    expect(m.sent).toBe(2);
    expect(m.merged).toBe(49);
  });
  it('a keyframe that arrives satisfies pending requests', () => {
    const m = new PliMerger(500);
    m.request(0);
    m.request(100);
    m.keyframeArrived();
    expect(m.poll(600)).toBe(false);
  });
  it('rejects a non-positive interval', () => {
    expect(() => new PliMerger(0)).toThrow(RangeError);
    expect(() => new PliMerger(Number.NaN)).toThrow(/positive/);
  });
});

describe('fast join', () => {
  const peers: { close(): Promise<void> }[] = [];
  let relay: Relay | undefined;
  afterAll(async () => {
    await Promise.all(peers.map((p) => p.close().catch(() => {})));
    await relay?.close();
  });

  it('50 viewers joining at once each start on the cached keyframe; the publisher sees merged PLIs', async () => {
    const PLI_MS = 500;
    relay = new Relay({ id: 'fj', secret, pliIntervalMs: PLI_MS });
    await relay.listen();
    // No periodic keyframes during the test: the first one is the only one unless a PLI forces another.
    const pub = await TestPublisher.start({ url: `${relay.url}/whip/fj`, token: tok('fj', 'publish'), fps: 15, audio: 0, keyframeIntervalMs: 60_000 });
    peers.push(pub);
    await new Promise((r) => setTimeout(r, 300)); // the keyframe is in the ring
    const t0 = Date.now();
    const viewers = await Promise.all(
      Array.from({ length: 50 }, () => TestViewer.start({ url: `${relay!.url}/whep/fj`, token: tok('fj', 'watch'), audio: 0, record: false })),
    );
    peers.push(...viewers);
    // Every viewer asks for a keyframe as soon as it sees media, as a decoder would.
    await waitUntil(() => viewers.every((v) => v.count > 0), 15_000, 'media at every viewer');
    await Promise.all(viewers.map((v) => v.requestKeyframe(0)));
    await waitUntil(() => viewers.every((v) => v.firstKeyframeAt !== undefined), 5000, 'a keyframe at every viewer');
    const elapsed = Date.now() - t0;
    await new Promise((r) => setTimeout(r, PLI_MS + 100)); // a merged request may still be flushed
    const window = Date.now() - t0;

    // The very first packet every viewer got is the first packet of a keyframe the publisher sent
    // before anyone joined: it came from the relay's cache, not from a new keyframe.
    const cached = pub.sent.filter((s) => s.keyframe && s.at < t0).map((s) => s.index);
    expect(cached.length).toBeGreaterThan(0);
    for (const v of viewers) {
      expect(v.packets[0]!.keyframe).toBe(true);
      expect(cached).toContain(v.packets[0]!.tagIndex);
    }
    const m = relay.metrics();
    const plisReceived = Number(/canopy_relay_plis_received_total\{relay="fj"\} (\d+)/.exec(m)![1]);
    expect(plisReceived).toBeGreaterThanOrEqual(50);
    // At most one upstream request per interval, plus the one at the start of the window.
    const allowed = Math.ceil(window / PLI_MS) + 1;
    expect(pub.pliCount).toBeLessThanOrEqual(allowed);
    expect(pub.pliCount).toBeLessThan(10);
    expect(Number(/canopy_relay_fast_joins_total\{relay="fj"\} (\d+)/.exec(m)![1])).toBeGreaterThanOrEqual(50);
    expect(elapsed).toBeLessThan(15_000);
  }, 60_000);
});
