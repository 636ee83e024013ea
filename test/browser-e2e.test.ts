/**
 * The whole mesh in real Chromium: the broadcast page publishes Chromium's fake camera over WHIP
 * (through signaling's 307), a third-party WHEP page (no Canopy code) plays through the 307,
 * two watch pages land on different relays at depth >= 2 and decode frames, the topology page
 * draws the tree the store holds, and killing one viewer's relay makes that page migrate and
 * decode again without a reload. Screenshots of the pages go to test-results/screenshots/
 * (ignored by git); `CANOPY_UPDATE_SCREENSHOTS=1 npm test` writes them to docs/screenshots/
 * instead, which is how the README's pictures are made.
 *
 * Placement is forced deep with a small capacity (2 slots, fan-out 1: each relay carries one
 * viewer and feeds one child), so the tree grows a level per viewer:
 *   origin (WHEP page) → edge (one reserved slot) → sub-edge (watch A) → sub-sub-edge (watch B)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { nativeSrtp } from '../src/srtp/native.ts';
import { buildWebRoot, framesDecoded, launchBrowser, serveDir, skipBrowserTests, waitFor, waitOnPage, type BrowserHarness } from './helpers/browser.ts';

const STREAM = 'e2e-cam';
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOTS = process.env['CANOPY_UPDATE_SCREENSHOTS'] === '1'
  ? join(ROOT, 'docs', 'screenshots')
  : join(ROOT, 'test-results', 'screenshots');

interface MeshLike {
  signalingUrl: string;
  relays: Array<{ id: string; url: string; streams(): string[]; metrics(): string }>;
  topology: {
    getTree(stream: string): Promise<{ originId: string; nodes: Array<{ relayId: string; parentId: string | null; depth: number; viewers: number }> } | undefined>;
    placeViewer(stream: string, opts?: { viewerId?: string }): Promise<{ relay: { id: string }; depth: number }>;
  };
  killRelay(id: string): Promise<void>;
  mint(stream: string, role: 'publish' | 'watch' | 'relay' | 'admin', ttlSec?: number): string;
  close(): Promise<void>;
}

/** The third-party WHEP player: plain RTCPeerConnection + fetch, nothing from Canopy. */
const WHEP_PAGE = `<!doctype html><meta charset="utf-8"><title>plain WHEP</title>
<link rel="icon" href="data:,">
<video id="v" muted autoplay playsinline></video>
<script>
window.play = async (endpoint, token) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.ontrack = (e) => { document.getElementById('v').srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') return r(); const t = setTimeout(r, 3000);
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') { clearTimeout(t); r(); } }; });
  const res = await fetch(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token }, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error('WHEP POST answered ' + res.status + ': ' + await res.text());
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  return { redirected: res.redirected, url: res.url, location: res.headers.get('Location') };
};
window.frames = async () => { let n = 0; (await window.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; }); return n; };
</script>`;

describe.skipIf(skipBrowserTests)('Canopy in Chromium: broadcast, watch, migrate, topology, plain WHEP', () => {
  let mesh: MeshLike | undefined;
  let browser: BrowserHarness | undefined;
  let web: Awaited<ReturnType<typeof buildWebRoot>> | undefined;
  let broadcast: Page;
  let whep: Page;
  const watchers: Page[] = [];
  let topo: Page;
  let thirdParty: Awaited<ReturnType<typeof serveDir>> | undefined;

  beforeAll(async () => {
    web = await buildWebRoot();
    const { startMesh } = (await import('../src/mesh.ts')) as unknown as { startMesh(o: Record<string, unknown>): Promise<MeshLike> };
    mesh = await startMesh({ port: 0, relays: 8, capacity: 2, fanout: 1, leaseMs: 1500, webRoot: web.dir });
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    for (const p of [...watchers, broadcast, whep, topo]) await p?.close().catch(() => undefined);
    await browser?.close();
    await mesh?.close();
    await thirdParty?.close();
    await web?.remove();
    if (browser && process.env.CANOPY_BROWSER_LOG) console.log(browser.consoleLines.join('\n'));
  }, 60_000);

  const url = (path: string): string => `${mesh!.signalingUrl}${path}`;
  const tree = async () => (await mesh!.topology.getTree(STREAM))!;

  it('publishes the fake camera from the broadcast page through the WHIP 307', async () => {
    broadcast = await browser!.newPage();
    await broadcast.goto(url(`/broadcast.html?stream=${STREAM}&token=${mesh!.mint(STREAM, 'publish')}&autostart=1`));
    await waitOnPage(broadcast, 'the broadcast page to connect', () => broadcast.evaluate(() => window.canopyBroadcast?.state === 'connected'), 20_000);
    await waitFor('the stream in the topology', async () => (await mesh!.topology.getTree(STREAM)) !== undefined, 10_000);
    await waitOnPage(broadcast, 'outgoing bitrate on the page', () => broadcast.evaluate(() => (window.canopyBroadcast?.kbps ?? 0) > 0), 10_000);
    await mkdir(SCREENSHOTS, { recursive: true });
    await broadcast.screenshot({ path: join(SCREENSHOTS, 'broadcast.png'), fullPage: true });
    const relay = await broadcast.evaluate(() => window.canopyBroadcast!.relay);
    // The page reports the relay that answered after the redirect, not signaling.
    expect(relay).not.toBe(new URL(mesh!.signalingUrl).host);
    // With the addon, the origin reads Chromium's media in native batches, whichever of its
    // sockets Chromium sends to (when relays offered 127.0.0.1 and 192.0.2.2, Chromium sent to
    // the candidate werift had not nominated, and a reader on the nominated pair's socket alone
    // saw 10 of 1581 packets).
    const originId = (await tree()).originId;
    const origin = mesh!.relays.find((r) => r.id === originId)!;
    const count = (name: string): number => Number(new RegExp(`canopy_relay_${name}\\{[^}]*\\} (\\d+)`).exec(origin.metrics())?.[1] ?? 0);
    await waitFor('media at the origin', () => count('packets_in_total') >= 200, 10_000);
    if (nativeSrtp() !== null) expect(count('packets_in_batched_total')).toBeGreaterThan(count('packets_in_total') * 0.9);
  }, 45_000);

  it('plays through a plain WHEP page (no Canopy code) following the 307', async () => {
    // A third-party site: its own origin (another loopback port), so both hops are cross-origin.
    thirdParty = await serveDir(web!.dir, (req, res) => {
      if (req.url !== '/player.html') return false;
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(WHEP_PAGE);
      return true;
    });
    whep = await browser!.newPage();
    await whep.goto(`${thirdParty.url}/player.html`);
    const r = await whep.evaluate(([e, t]) => (window as unknown as { play(e: string, t: string): Promise<{ redirected: boolean; url: string }> }).play(e!, t!), [url(`/whep/${STREAM}`), mesh!.mint(STREAM, 'watch')]);
    expect(r.redirected).toBe(true);
    expect(new URL(r.url).host).not.toBe(new URL(mesh!.signalingUrl).host);
    const frames = (): Promise<number> => whep.evaluate(() => (window as unknown as { frames(): Promise<number> }).frames());
    await waitFor('frames on the plain WHEP page', async () => (await frames()) > 10, 15_000);
  }, 30_000);

  it('puts two watch pages on different relays at depth >= 2; both decode and report a time to first frame', async () => {
    // Fill the edge's one viewer slot so the watch pages land below it. The tree grows for the
    // reservation; wait until the new edge really carries the stream, as it would for a viewer.
    const filler = await mesh!.topology.placeViewer(STREAM, { viewerId: 'e2e-filler' });
    const edge = mesh!.relays.find((r) => r.id === filler.relay.id)!;
    await waitFor(`${edge.id} to carry the stream`, () => edge.streams().includes(STREAM), 10_000);
    for (let i = 0; i < 2; i++) {
      const page = await browser!.newPage();
      watchers.push(page);
      await page.goto(url(`/watch.html?stream=${STREAM}&token=${mesh!.mint(STREAM, 'watch')}`));
      await waitOnPage(page, `watch page ${i} to play`, () => page.evaluate(() => document.body.dataset.state === 'playing'), 25_000);
    }
    const placements = await Promise.all(watchers.map((p) => p.evaluate(() => window.canopyPlayer!.placement!)));
    expect(placements[0]!.relayId).not.toBe(placements[1]!.relayId);
    for (const p of placements) expect(p.depth).toBeGreaterThanOrEqual(2);
    for (const page of watchers) {
      const ttff = await page.evaluate(() => window.canopyPlayer!.stats.ttffMs);
      expect(ttff).toBeGreaterThan(0);
      expect(await page.locator('#ttff').textContent()).toMatch(/^\d+ ms$/);
      const f = await framesDecoded(page);
      await waitOnPage(page, 'framesDecoded to keep growing', async () => (await framesDecoded(page)) > f + 10, 10_000);
    }
    // The store agrees with what the pages show.
    const t = await tree();
    for (const p of placements) expect(t.nodes.find((n) => n.relayId === p.relayId)?.depth).toBe(p.depth);
  }, 70_000);

  it('draws the tree on the topology page with the right relays and viewer counts', async () => {
    topo = await browser!.newPage();
    await topo.goto(url(`/topology.html?token=${mesh!.mint('*', 'admin')}&confirm=0`));
    const t = await tree();
    await waitFor('the topology page to draw every relay of the tree', async () => (await topo.locator(`section[data-stream="${STREAM}"] g.tree-node`).count()) === t.nodes.length, 10_000);
    await expectTopologyMatchesStore();
    const watching = await Promise.all(watchers.map((p) => p.evaluate(() => window.canopyPlayer!.placement!.relayId)));
    for (const id of watching) expect(Number(await topo.locator(`g.tree-node[data-relay="${id}"]`).getAttribute('data-viewers'))).toBeGreaterThanOrEqual(1);
    await mkdir(SCREENSHOTS, { recursive: true });
    await topo.screenshot({ path: join(SCREENSHOTS, 'topology.png'), fullPage: true });
    await watchers[0]!.screenshot({ path: join(SCREENSHOTS, 'watch.png'), fullPage: true });
  }, 30_000);

  it('migrates a watch page when its relay dies and decodes again, without a reload', async () => {
    // Kill the relay of the watcher that sits on a leaf, so only that page is affected.
    const t = await tree();
    const leafOf = async (p: Page): Promise<boolean> => {
      const id = await p.evaluate(() => window.canopyPlayer!.placement!.relayId);
      return !t.nodes.some((n) => n.parentId === id);
    };
    const victim = (await leafOf(watchers[1]!)) ? watchers[1]! : watchers[0]!;
    const other = victim === watchers[1] ? watchers[0]! : watchers[1]!;
    const dead = await victim.evaluate(() => window.canopyPlayer!.placement!.relayId);
    await victim.evaluate(() => ((window as unknown as { marker: string }).marker = 'same-document'));
    const t0 = Date.now();
    await mesh!.killRelay(dead);
    await waitOnPage(victim, 'the page to show the migration', () => victim.evaluate(() => window.canopyPlayer!.stats.migrations >= 1), 15_000);
    await waitOnPage(victim, 'playing again on another relay', () => victim.evaluate((d) => document.body.dataset.state === 'playing' && window.canopyPlayer!.placement?.relayId !== d, dead), 20_000);
    const f = await framesDecoded(victim);
    await waitOnPage(victim, 'frames from the new relay', async () => (await framesDecoded(victim)) > f + 10, 10_000);
    const recoveredMs = Date.now() - t0;
    expect(recoveredMs).toBeLessThan(30_000);
    expect(await victim.locator('#log').textContent()).toMatch(/migrate \(/);
    expect(await victim.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same-document');
    // The other viewer kept playing.
    const g = await framesDecoded(other);
    await waitOnPage(other, 'the other viewer to keep decoding', async () => (await framesDecoded(other)) > g + 10, 10_000);
    const after = await victim.evaluate(async () => {
      let lost = 0;
      let received = 0;
      (await window.canopyPlayer!.pc!.getStats()).forEach((v: { type: string; kind?: string; packetsLost?: number; packetsReceived?: number }) => {
        if (v.type === 'inbound-rtp' && v.kind === 'video') ({ packetsLost: lost = 0, packetsReceived: received = 0 } = v);
      });
      return { lost, received, recoveryMs: window.canopyPlayer!.stats.lastRecoveryMs, latency: window.canopyPlayer!.stats.latencyMs, source: window.canopyPlayer!.stats.latencySource, log: document.getElementById('log')!.innerText };
    });
    console.log(JSON.stringify({ test: 'browser-e2e', killed: dead, kill_to_frames_ms: recoveredMs, page_recovery_ms: after.recoveryMs, new_relay_video_packets_lost: after.lost, new_relay_video_packets_received: after.received, latency_ms: after.latency, latency_source: after.source, ...(recoveredMs > 5000 ? { page_log: after.log.split('\n').slice(0, 8) } : {}) }));
    // The topology page follows: the dead relay leaves the tree.
    await waitFor('the topology page to drop the dead relay', async () => (await topo.locator(`g.tree-node[data-relay="${dead}"]`).count()) === 0, 10_000);
    await expectTopologyMatchesStore();
    await topo.screenshot({ path: join(SCREENSHOTS, 'topology-after-kill.png'), fullPage: true });
    await victim.screenshot({ path: join(SCREENSHOTS, 'watch-after-migrate.png'), fullPage: true });
  }, 70_000);

  it('plays on the watch page over plain WHEP (?whep=1) and releases the slot on close', async () => {
    const page = await browser!.newPage();
    watchers.push(page);
    await page.goto(url(`/watch.html?stream=${STREAM}&token=${mesh!.mint(STREAM, 'watch')}&whep=1`));
    await waitOnPage(page, 'the WHEP watch page to play', () => page.evaluate(() => document.body.dataset.state === 'playing'), 25_000);
    const f = await framesDecoded(page);
    await waitOnPage(page, 'frames over WHEP', async () => (await framesDecoded(page)) > f + 10, 10_000);
    // The relay that answered after the 307 is where the store put this viewer.
    const host = await page.evaluate(() => window.canopyPlayer!.placement!.relayId);
    const relayUrls = new Map(mesh!.relays.map((r) => [new URL(r.url).host, r.id]));
    const relayId = relayUrls.get(host)!;
    expect(relayId).toBeDefined();
    const viewersOn = async (): Promise<number> => (await tree()).nodes.find((n) => n.relayId === relayId)?.viewers ?? 0;
    expect(await viewersOn()).toBe(1);
    // close() DELETEs the WHEP session; the relay ends it and the slot is released.
    await page.evaluate(() => window.canopyPlayer!.close());
    await waitFor('the WHEP slot to be released', async () => (await viewersOn()) === 0, 10_000);
  }, 45_000);

  it('drains a relay from the topology page: its watch page migrates (drain) and keeps playing', async () => {
    const page = watchers[0]!;
    const before = await page.evaluate(() => ({ relay: window.canopyPlayer!.placement!.relayId, migrations: window.canopyPlayer!.stats.migrations }));
    await topo.getByRole('button', { name: `Drain ${before.relay}` }).click();
    await waitOnPage(page, 'a drain migration', () => page.evaluate((n) => window.canopyPlayer!.stats.migrations > n, before.migrations), 10_000);
    await waitOnPage(page, 'playing on another relay', () => page.evaluate((d) => document.body.dataset.state === 'playing' && window.canopyPlayer!.placement?.relayId !== d, before.relay), 20_000);
    const f = await framesDecoded(page);
    await waitOnPage(page, 'frames after the drain', async () => (await framesDecoded(page)) > f + 10, 10_000);
    expect(await page.locator('#log').textContent()).toMatch(/migrate \(drain\)/);
    await waitFor('the topology page to show the relay draining', async () => (await topo.locator(`#relays tr[data-relay="${before.relay}"]`).textContent())?.includes('draining'), 5000);
  }, 45_000);

  it('stops the broadcast with DELETE: the stream ends and the topology page empties', async () => {
    const deletes: string[] = [];
    broadcast.on('request', (r) => {
      if (r.method() === 'DELETE') deletes.push(r.url());
    });
    await broadcast.getByRole('button', { name: 'Stop' }).click();
    await waitOnPage(broadcast, 'the broadcast page to stop', () => broadcast.evaluate(() => window.canopyBroadcast?.state === 'closed'), 10_000);
    expect(deletes).toHaveLength(1);
    expect(new URL(deletes[0]!).pathname).toMatch(new RegExp(`^/whip/${STREAM}/.+`));
    await waitFor('the stream to end in the store', async () => (await mesh!.topology.getTree(STREAM)) === undefined, 10_000);
    await waitFor('the topology page to drop the stream', async () => (await topo.locator(`section[data-stream="${STREAM}"]`).count()) === 0, 10_000);
  }, 30_000);

  /** Every relay of the store's tree is drawn, with the store's viewer count and depth. */
  async function expectTopologyMatchesStore(): Promise<void> {
    await waitFor('the topology page to match the store', async () => {
      const t = await tree();
      const drawn = await topo.locator(`section[data-stream="${STREAM}"] g.tree-node`).evaluateAll((els) =>
        els.map((e) => ({ relayId: e.getAttribute('data-relay'), viewers: Number(e.getAttribute('data-viewers')), depth: Number(e.getAttribute('data-depth')) })),
      );
      const want = t.nodes.map((n) => ({ relayId: n.relayId, viewers: n.viewers, depth: n.depth }));
      const key = (a: { relayId: string | null }, b: { relayId: string | null }): number => String(a.relayId).localeCompare(String(b.relayId));
      return JSON.stringify(drawn.sort(key)) === JSON.stringify(want.sort(key));
    }, 6000);
  }
});
