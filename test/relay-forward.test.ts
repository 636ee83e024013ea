/**
 * Media through relays with real werift peers on 127.0.0.1: publisher -> origin -> edge -> viewer.
 */
import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Relay } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { nativeSrtp } from '../src/srtp/native.ts';
import { TestPublisher, TestViewer, seeded, waitUntil, type ReceivedPacket, type SentPacket } from './helpers/peers.ts';

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
    // After werift routed each SSRC's first packet, the fast ingress decrypted the rest.
    const pin = Number(/canopy_relay_packets_in_total\{relay="edge"\} (\d+)/.exec(m)![1]);
    const fast = Number(/canopy_relay_packets_in_fast_total\{relay="edge"\} (\d+)/.exec(m)![1]);
    expect(fast).toBeGreaterThan(pin * 0.9);
    // With the addon, they were read from the upstream socket in native batches, whichever of the
    // parent's sockets they came from (a check of the sender's address had once sent all of them
    // through Node's per-datagram path).
    const batched = Number(/canopy_relay_packets_in_batched_total\{relay="edge"\} (\d+)/.exec(m)![1]);
    if (nativeSrtp() !== null) expect(batched).toBeGreaterThan(pin * 0.9);
    else expect(batched).toBe(0);
    // A frame's packets arrive in one batch, so the edge sent the viewer's share of them together
    // (UDP GSO), and the checks above saw every one of them arrive intact and in order.
    const gso = Number(/canopy_relay_packets_out_gso_total\{relay="edge"\} (\d+)/.exec(m)![1]);
    if (nativeSrtp() !== null) expect(gso).toBeGreaterThan(0);
    else expect(gso).toBe(0);
    // Per-hop latency from abs-capture-time: present, and small on loopback.
    expect(Number(/canopy_relay_capture_latency_ms_count\{relay="edge"\} (\d+)/.exec(m)![1])).toBeGreaterThan(0);
    const last = Number(/canopy_relay_capture_latency_last_ms\{relay="edge"\} (\S+)/.exec(m)![1]);
    expect(last).toBeGreaterThanOrEqual(0);
    expect(last).toBeLessThan(1000);
  });
});

describe('child relay sessions', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  it("a child relay's session is replaced by its next pull and closed by dropRelay, freeing the slot", async () => {
    // capacity 1: the parent has exactly one downstream slot.
    const origin = new Relay({ id: 'cs-origin', secret, capacity: 1 });
    await origin.listen();
    cleanup.push(() => origin.close());
    const child = new Relay({ id: 'cs-child', secret });
    await child.listen();
    cleanup.push(() => child.close());
    const pub = await TestPublisher.start({ url: `${origin.url}/whip/cs`, token: tok('cs', 'publish'), fps: 25, keyframeIntervalMs: 1000 });
    cleanup.push(() => pub.close());
    const childTok = () => mintToken(secret, 'cs', 'relay', 600, Date.now(), 'cs-child');
    await child.pull('cs', origin.url, childTok());
    expect(origin.viewerCount('cs')).toBe(1);
    // The same child pulls again (as after a restart): its old session gives way, no 503.
    const again = new Relay({ id: 'cs-child-again', secret });
    await again.listen();
    cleanup.push(() => again.close());
    await again.pull('cs', origin.url, childTok());
    await waitUntil(() => origin.viewerCount('cs') === 1, 5000, 'one session for the child');
    // Another relay finds the slot taken...
    const other = new Relay({ id: 'cs-other', secret });
    await other.listen();
    cleanup.push(() => other.close());
    await expect(other.pull('cs', origin.url, mintToken(secret, 'cs', 'relay', 600, Date.now(), 'cs-other'))).rejects.toThrow(/503/);
    // ...until the mesh says the child is down.
    expect(await origin.dropRelay('cs-child')).toBe(1);
    expect(origin.viewerCount('cs')).toBe(0);
    await other.pull('cs', origin.url, mintToken(secret, 'cs', 'relay', 600, Date.now(), 'cs-other'));
    expect(origin.viewerCount('cs')).toBe(1);
  });
});

describe('relay repair and re-parenting', () => {
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

  it('a seeded 5% drop on the relay link is repaired by NACK before the viewer deadline', async () => {
    const DEADLINE_MS = 600;
    const rand = seeded(20261122);
    let dropped = 0;
    let dropping = true;
    const origin = await relay('origin');
    const edge = await relay('edge', {
      ingressDrop: () => {
        const d = dropping && rand() < 0.05;
        if (d) dropped++;
        return d;
      },
    });
    const pub = await TestPublisher.start({ url: `${origin.url}/whip/s2`, token: tok('s2', 'publish'), fps: 25, keyframeIntervalMs: 1000 });
    cleanup.push(() => pub.close());
    await edge.pull('s2', origin.url, tok('s2', 'relay'));
    const viewer = await TestViewer.start({ url: `${edge.url}/whep/s2`, token: tok('s2', 'watch') });
    cleanup.push(() => viewer.close());
    await waitUntil(() => viewer.on(0).length >= 200, 15_000, 'viewer media');
    // A loss of the very last packets cannot be detected (a NACK needs a later packet to show the
    // gap, RFC 4585 §6.2.1), so the drop stops first and media runs on briefly before the pause.
    dropping = false;
    await new Promise((r) => setTimeout(r, 300));
    pub.pause();
    await new Promise((r) => setTimeout(r, DEADLINE_MS + 200));

    expect(dropped).toBeGreaterThan(5);
    for (const track of [0, 1]) {
      const got = viewer.on(track);
      const firstIndex = Math.min(...got.map((p) => p.tagIndex));
      const byIndex = new Map(got.map((p) => [p.tagIndex, p]));
      const late: number[] = [];
      const missing: number[] = [];
      for (const s of pub.sentOn(track)) {
        if (s.index < firstIndex) continue;
        const r = byIndex.get(s.index);
        if (!r) missing.push(s.index);
        // Packets sent before the viewer joined came from the keyframe cache: no deadline for them.
        else if (s.at >= viewer.startedAt && r.at - s.at > DEADLINE_MS) late.push(s.index);
        else expect(Buffer.compare(r.payload, s.payload)).toBe(0);
      }
      expect(missing, `track ${track}: packets never repaired`).toEqual([]);
      expect(late, `track ${track}: packets repaired after the ${DEADLINE_MS} ms deadline`).toEqual([]);
      assertContinuous(got);
    }
    const om = origin.metrics();
    const em = edge.metrics();
    expect(Number(/canopy_relay_retransmits_total\{relay="origin"\} (\d+)/.exec(om)![1])).toBeGreaterThan(0);
    expect(Number(/canopy_relay_nacks_sent_total\{relay="edge"\} (\d+)/.exec(em)![1])).toBeGreaterThan(0);
  });

  it('re-parenting an edge mid-stream: no sequence gap at the viewer and a keyframe within one second', async () => {
    const origin = await relay('origin');
    const p1 = await relay('p1');
    const p2 = await relay('p2');
    const edge = await relay('edge');
    // Long keyframe interval: the keyframe after the switch must come from the new parent's cache or a PLI.
    const pub = await TestPublisher.start({ url: `${origin.url}/whip/s3`, token: tok('s3', 'publish'), fps: 25, keyframeIntervalMs: 20_000 });
    cleanup.push(() => pub.close());
    await p1.pull('s3', origin.url, tok('s3', 'relay'));
    await p2.pull('s3', origin.url, tok('s3', 'relay'));
    await edge.pull('s3', p1.url, tok('s3', 'relay'));
    const viewer = await TestViewer.start({ url: `${edge.url}/whep/s3`, token: tok('s3', 'watch') });
    cleanup.push(() => viewer.close());
    await waitUntil(() => viewer.on(0).length >= 40, 10_000, 'media before the switch');
    const before = viewer.on(0).length;
    const switchAt = Date.now();
    await edge.pull('s3', p2.url, tok('s3', 'relay'));
    await p1.close(); // the old parent goes away
    await waitUntil(() => viewer.on(0).slice(before).some((p) => p.keyframe), 3000, 'keyframe after the switch');
    const kf = viewer.on(0).slice(before).find((p) => p.keyframe)!;
    expect(kf.at - switchAt).toBeLessThan(1000);
    await waitUntil(() => viewer.on(0).length >= before + 50 && viewer.on(1).length > 0, 10_000, 'media after the switch');
    pub.pause();
    await new Promise((r) => setTimeout(r, 300));
    for (const track of [0, 1]) {
      const got = viewer.on(track);
      assertContinuous(got);
      expect(new Set(got.map((p) => p.ssrc)).size).toBe(1);
      // Timestamps never go backwards across the switch (wrap-aware).
      for (let i = 1; i < got.length; i++) {
        const d = (got[i]!.timestamp - got[i - 1]!.timestamp) | 0;
        expect(d).toBeGreaterThanOrEqual(-90000); // reordered retransmissions may be slightly older
      }
      // Every packet after the switch is one the publisher sent, byte for byte.
      for (const p of got) expect(Buffer.compare(p.payload, matchSent(pub, p)!.payload)).toBe(0);
    }
    expect(edge.metrics()).toMatch(/canopy_relay_reparents_total\{relay="edge"\} 1/);
  });
});

describe('relay codecs and tracks', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  it('H264 with two video tracks and one audio track: each viewer m-line carries its own publisher track', async () => {
    const r = new Relay({ id: 'multi', secret });
    await r.listen();
    cleanup.push(() => r.close());
    const pub = await TestPublisher.start({ url: `${r.url}/whip/m`, token: tok('m', 'publish'), codec: 'h264', video: 2, audio: 1, fps: 20 });
    cleanup.push(() => pub.close());
    const viewer = await TestViewer.start({ url: `${r.url}/whep/m`, token: tok('m', 'watch'), codec: 'h264', video: 2, audio: 1 });
    cleanup.push(() => viewer.close());
    await waitUntil(() => [0, 1, 2].every((t) => viewer.on(t).length >= 20), 10_000, 'media on all three tracks');
    pub.pause();
    await new Promise((res) => setTimeout(res, 200));
    for (const t of [0, 1, 2]) {
      const got = viewer.on(t);
      expect(new Set(got.map((p) => p.tagTrack))).toEqual(new Set([t])); // publisher track t -> viewer m-line t
      assertContinuous(got);
      for (const p of got) expect(Buffer.compare(p.payload, matchSent(pub, p)!.payload)).toBe(0);
    }
    expect(viewer.on(0)[0]!.keyframe).toBe(true); // H264 IDR detected by the core for fast join
    expect(viewer.on(1)[0]!.keyframe).toBe(true);
  });
});

describe('relay backpressure', () => {
  it('a viewer that vanishes without DELETE does not disturb another viewer', async () => {
    const r = new Relay({ id: 'bp', secret, maxSendQueue: 8 });
    await r.listen();
    const pub = await TestPublisher.start({ url: `${r.url}/whip/bp`, token: tok('bp', 'publish'), fps: 25 });
    const gone = await TestViewer.start({ url: `${r.url}/whep/bp`, token: tok('bp', 'watch') });
    const stays = await TestViewer.start({ url: `${r.url}/whep/bp`, token: tok('bp', 'watch') });
    try {
      await waitUntil(() => stays.on(0).length >= 20 && gone.on(0).length >= 20, 10_000, 'media at both viewers');
      await gone.pc.close(); // socket closed, no DELETE: the relay keeps sending into the void
      const before = stays.on(0).length;
      await new Promise((res) => setTimeout(res, 1500));
      const after = stays.on(0);
      expect(after.length - before).toBeGreaterThan(40); // ~50 packets/s of video kept flowing
      assertContinuous(after);
      expect((await fetch(`${r.url}/healthz`)).status).toBe(200);
    } finally {
      await stays.close();
      await gone.close();
      await pub.close();
      await r.close();
    }
  });
});

describe('viewer sockets', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  /** Open descriptors of this process (Linux); -1 elsewhere. */
  const fds = (): number => {
    try {
      return readdirSync('/proc/self/fd').length;
    } catch {
      return -1;
    }
  };

  it.runIf(process.platform === 'linux')('every descriptor a viewer session opened (ICE socket, connected twin, readers) is closed when it ends', async () => {
    const relay = new Relay({ id: 'fds', secret });
    await relay.listen();
    cleanup.push(() => relay.close());
    const pub = await TestPublisher.start({ url: `${relay.url}/whip/fds`, token: tok('fds', 'publish'), fps: 25 });
    cleanup.push(() => pub.close());
    const viewers: TestViewer[] = [];
    const settle = async (pred: () => boolean, what: string) => waitUntil(pred, 5000, what);
    // One viewer first, so lazily created process-wide state is not counted as the sessions'.
    const first = await TestViewer.start({ url: `${relay.url}/whep/fds`, token: tok('fds', 'watch') });
    await settle(() => first.on(0).length >= 5, 'first viewer media');
    await first.close();
    await settle(() => relay.viewerCount('fds') === 0, 'first session gone');
    const before = fds();
    for (let i = 0; i < 3; i++) viewers.push(await TestViewer.start({ url: `${relay.url}/whep/fds`, token: tok('fds', 'watch') }));
    cleanup.push(async () => void (await Promise.all(viewers.map((v) => v.close()))));
    await settle(() => viewers.every((v) => v.on(0).length >= 5), 'media at the viewers');
    const during = fds();
    // Each session: the viewer's socket, the relay's ICE socket and, with the addon, its connected
    // twin and the reader's own descriptor of it.
    expect(during - before).toBeGreaterThanOrEqual(nativeSrtp() !== null ? 3 * 4 : 3 * 2);
    await Promise.all(viewers.map((v) => v.close()));
    await settle(() => relay.viewerCount('fds') === 0, 'sessions gone');
    await settle(() => fds() <= before, `descriptors back to ${before} (now ${fds()})`);
  });
});

describe('pull sockets', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup.length = 0;
  });

  it.runIf(process.platform === 'linux')("re-pulling a video+audio stream (the relay's WHEP client offers) leaves no descriptor behind", async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const origin = new Relay({ id: 'pf-origin', secret });
    await origin.listen();
    cleanup.push(() => origin.close());
    const edge = new Relay({ id: 'pf-edge', secret });
    await edge.listen();
    cleanup.push(() => edge.close());
    const pub = await TestPublisher.start({ url: `${origin.url}/whip/pf`, token: tok('pf', 'publish'), fps: 25, audio: 1 });
    cleanup.push(() => pub.close());
    const inAt = (): number => Number(/canopy_relay_packets_in_total\{relay="pf-edge"\} (\d+)/.exec(edge.metrics())?.[1] ?? 0);
    await edge.pull('pf', origin.url, tok('pf', 'relay'));
    await waitUntil(() => inAt() > 20, 5000, 'media at the edge');
    const settle = async (): Promise<void> => {
      await waitUntil(() => origin.viewerCount('pf') === 1, 5000, 'one child session at the origin');
      await new Promise((r) => setTimeout(r, 300)); // the replaced session's sockets close asynchronously
    };
    await settle();
    const after1 = fds();
    for (let i = 0; i < 3; i++) {
      const n = inAt();
      await edge.pull('pf', origin.url, tok('pf', 'relay')); // re-parent to the same parent: a new WHEP session
      await waitUntil(() => inAt() > n + 20, 5000, 'media again after the re-pull');
    }
    await settle();
    await waitUntil(() => fds() <= after1, 5000, `descriptors back to ${after1} (now ${fds()})`);
  });
});
