/**
 * The player library and watch page in real Chromium against a scripted signaling server (no
 * mesh): Node plays signaling over the real /ws protocol, and a second Chromium page with the
 * fake camera plays the relay, answering each offer. This pins the client's side of the
 * protocol (JOIN → JOINED → OFFER → ANSWER, MIGRATE re-offer on the same socket, rejoin with
 * backoff after the socket drops, WHEP through a cross-origin 307) independently of the relay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Page } from 'playwright-core';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeEnvelope, encodeEnvelope, MsgType } from '../src/proto/index.ts';
import { buildWebRoot, framesDecoded, launchBrowser, serveDir, skipBrowserTests, waitFor, type BrowserHarness } from './helpers/browser.ts';

interface Env {
  type: number;
  id: number;
  join?: { stream: string; token: string };
  offer?: { sdp: string };
}

const ANSWERER = `
  window.__pcs = [];
  window.__media = navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  window.answer = async (offer) => {
    const media = await window.__media;
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.__pcs.push(pc);
    await pc.setRemoteDescription({ type: 'offer', sdp: offer });
    for (const t of pc.getTransceivers()) {
      const track = media.getTracks().find((x) => x.kind === t.receiver.track.kind);
      if (track) { await t.sender.replaceTrack(track); t.direction = 'sendonly'; }
      // Send abs-capture-time, as the broadcast page does, so the viewer can measure latency.
      const exts = t.getHeaderExtensionsToNegotiate();
      for (const e of exts) if (e.uri.endsWith('abs-capture-time')) e.direction = 'sendrecv';
      t.setHeaderExtensionsToNegotiate(exts);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((r) => { const to = setTimeout(r, 3000); pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') { clearTimeout(to); r(); } }); });
    }
    return pc.localDescription.sdp;
  };
  window.dropAll = () => { for (const pc of window.__pcs) pc.close(); window.__pcs = []; };
`;

describe.skipIf(skipBrowserTests)('player library in Chromium against scripted signaling', () => {
  let browser: BrowserHarness | undefined;
  let web: Awaited<ReturnType<typeof buildWebRoot>> | undefined;
  let site: Awaited<ReturnType<typeof serveDir>> | undefined;
  let relaySite: Awaited<ReturnType<typeof serveDir>> | undefined;
  let wss: WebSocketServer | undefined;
  let relayPage: Page;
  const sockets = new Set<WebSocket>();
  const joins: string[] = [];
  const whepPosts: Array<{ auth?: string; url: string }> = [];
  let relayNo = 1;
  const adminAuth: string[] = [];
  const relayInfo = (id: string, viewers: number, children: number) => ({ id, region: '', url: `http://127.0.0.1:1/${id}`, capacity: 4, fanout: 2, load: 0, viewers, children, streams: 1, draining: false, up: true, leaseExpiresAt: 0 });
  const node = (relayId: string, parentId: string | null, depth: number, viewers: number, children: number) => ({ relayId, parentId, depth, viewers, children, idleSinceMs: null });
  const admin = {
    relays: [relayInfo('relay-0', 0, 2), relayInfo('relay-1', 3, 1), relayInfo('relay-2', 1, 0), relayInfo('relay-3', 4, 0)],
    tree: { stream: 'cam', originId: 'relay-0', viewers: 8, nodes: [node('relay-0', null, 0, 0, 2), node('relay-1', 'relay-0', 1, 3, 1), node('relay-2', 'relay-0', 1, 1, 0), node('relay-3', 'relay-1', 2, 4, 0)] },
  };

  const answer = (sdp: string): Promise<string> => relayPage.evaluate((o) => (window as unknown as { answer(s: string): Promise<string> }).answer(o), sdp);
  const placement = (n: number) => ({ relayId: `relay-${n}`, relayUrl: `http://127.0.0.1:1/${n}`, depth: n, region: '' });

  beforeAll(async () => {
    web = await buildWebRoot();
    // The "relay" for WHEP: another origin, reached through signaling's 307.
    relaySite = await serveDir(web.dir, (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Methods': 'POST, DELETE, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '60' }).end();
        return true;
      }
      if (req.method !== 'POST' || !req.url?.startsWith('/whep/')) return false;
      whepPosts.push({ auth: req.headers.authorization, url: req.url });
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        answer(body).then(
          (sdp) => res.writeHead(201, { 'Content-Type': 'application/sdp', Location: '/whep/cam/session-1', 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Location' }).end(sdp),
          (e: Error) => res.writeHead(500).end(e.message),
        );
      });
      return true;
    });
    site = await serveDir(web.dir, (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'POST' && req.url?.startsWith('/whep/')) {
        // RFC 9725-style redirect carrying a relay-scoped token in the query.
        res.writeHead(307, { Location: `${relaySite!.url}/whep/cam?token=relay-scoped`, 'Access-Control-Allow-Origin': '*' }).end();
        return true;
      }
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Methods': 'POST, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type' }).end();
        return true;
      }
      if (req.method === 'POST' && req.url === '/admin/relays/relay-2/drain') {
        adminAuth.push(`drain ${req.headers.authorization ?? ''}`);
        admin.relays = admin.relays.map((r) => (r.id === 'relay-2' ? { ...r, draining: true } : r));
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ relay: 'relay-2', draining: true }));
        return true;
      }
      if (req.url?.startsWith('/admin/')) {
        adminAuth.push(req.headers.authorization ?? '');
        const body = req.url === '/admin/streams' ? ['cam'] : req.url === '/admin/relays' ? admin.relays : req.url === '/admin/streams/cam' ? admin.tree : undefined;
        res.writeHead(body ? 200 : 404, { 'Content-Type': 'application/json' }).end(JSON.stringify(body ?? { error: 'not found' }));
        return true;
      }
      return false;
    });
    wss = new WebSocketServer({ server: site.server, path: '/ws' });
    wss.on('connection', (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('message', (data: Buffer) => {
        const m = decodeEnvelope<Env>(new Uint8Array(data));
        if (m.type === MsgType.JOIN) {
          joins.push(m.join!.token);
          ws.send(encodeEnvelope({ type: MsgType.JOINED, id: m.id, joined: { session: `s${joins.length}`, placement: placement(relayNo) } }));
        } else if (m.type === MsgType.OFFER) {
          answer(m.offer!.sdp).then(
            (sdp) => ws.send(encodeEnvelope({ type: MsgType.ANSWER, id: m.id, answer: { sdp, session: 'r' } })),
            (e: Error) => ws.send(encodeEnvelope({ type: MsgType.ERROR, id: m.id, error: { code: 12, message: e.message } })),
          );
        }
      });
    });
    browser = await launchBrowser();
    relayPage = await browser.newPage();
    await relayPage.goto(`${site.url}/index.html`);
    await relayPage.evaluate(ANSWERER);
  });

  afterAll(async () => {
    for (const ws of sockets) ws.terminate();
    await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
    await browser?.close();
    await site?.close();
    await relaySite?.close();
    await web?.remove();
  });

  it('joins, plays, reports a time to first frame, and follows MIGRATE without a reload', async () => {
    const page = await browser!.newPage();
    await page.goto(`${site!.url}/watch.html?stream=cam&token=watch-token`);
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await waitFor('the watch page to play', () => page.evaluate(() => document.body.dataset.state === 'playing'), 15_000);
    expect(joins).toEqual(['watch-token']);
    const ttff = await page.evaluate(() => window.canopyPlayer!.stats.ttffMs);
    expect(ttff).toBeGreaterThan(0);
    expect(ttff).toBeLessThan(15_000);
    const f1 = await framesDecoded(page);
    await waitFor('frames to keep decoding', async () => (await framesDecoded(page)) > f1 + 5, 5000);
    expect(await page.locator('#relay').textContent()).toBe('relay-1');
    // Both ends negotiate abs-capture-time, so latency is glass-to-glass from the capture stamp.
    const lat = await waitFor('a latency figure', () => page.evaluate(() => { const s = window.canopyPlayer!.stats; return s.latencyMs !== undefined && s; }), 5000);
    expect(lat.latencySource).toBe('abs-capture-time');
    expect(lat.latencyMs).toBeGreaterThanOrEqual(0);
    expect(lat.latencyMs).toBeLessThan(1000);
    expect(await page.locator('#latency').textContent()).toMatch(/^\d+ ms \(abs-capture-time\)$/);
    expect(await page.locator('#ttff').textContent()).toMatch(/\d+ ms/);

    // The relay dies: its peer connections go away, signaling moves the viewer.
    await relayPage.evaluate(() => (window as unknown as { dropAll(): void }).dropAll());
    relayNo = 2;
    for (const ws of sockets) ws.send(encodeEnvelope({ type: MsgType.MIGRATE, id: 0, migrate: { reason: 'relay_down', placement: placement(2) } }));
    await waitFor('the page to show the migration', () => page.evaluate(() => window.canopyPlayer!.stats.migrations === 1), 5000);
    await waitFor('playing again after the migration', () => page.evaluate(() => document.body.dataset.state === 'playing' && window.canopyPlayer!.stats.lastRecoveryMs !== undefined), 10_000);
    const f2 = await framesDecoded(page);
    await waitFor('frames from the new relay', async () => (await framesDecoded(page)) > f2 + 5, 5000);
    expect(await page.locator('#log').textContent()).toMatch(/migrate \(relay_down\): relay-1 → relay-2/);
    expect(await page.locator('#relay').textContent()).toBe('relay-2');
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(42); // no reload
    expect(joins).toHaveLength(1); // same socket, no rejoin
    await page.close();
  });

  it('rejoins by itself with backoff when the signaling socket drops', async () => {
    joins.length = 0;
    const page = await browser!.newPage();
    await page.goto(`${site!.url}/watch.html?stream=cam&token=tok-2`);
    await waitFor('the watch page to play', () => page.evaluate(() => document.body.dataset.state === 'playing'), 15_000);
    for (const ws of sockets) ws.terminate();
    await waitFor('a second JOIN', () => joins.length >= 2, 10_000);
    await waitFor('playing again after the rejoin', () => page.evaluate(() => document.body.dataset.state === 'playing' && window.canopyPlayer!.stats.reconnects >= 1), 15_000);
    const f = await framesDecoded(page);
    await waitFor('frames after the rejoin', async () => (await framesDecoded(page)) > f + 5, 5000);
    await page.close();
  });

  it('plays through plain WHEP across a cross-origin 307 (?whep=1), with the token from the redirect', async () => {
    const page = await browser!.newPage();
    await page.goto(`${site!.url}/watch.html?stream=cam&token=tok-3&whep=1`);
    await waitFor('the WHEP watch page to play', () => page.evaluate(() => document.body.dataset.state === 'playing'), 15_000);
    const f = await framesDecoded(page);
    await waitFor('frames over WHEP', async () => (await framesDecoded(page)) > f + 5, 5000);
    expect(whepPosts.at(-1)!.url).toBe('/whep/cam?token=relay-scoped');
    // The browser drops Authorization on the cross-origin hop: the query token is what arrives.
    expect(whepPosts.at(-1)!.auth).toBeUndefined();
    expect(await page.locator('#relay').textContent()).toBe(new URL(relaySite!.url).host);
    await page.close();
  });

  it('topology page draws the admin API tree and follows changes', async () => {
    const page = await browser!.newPage();
    await page.goto(`${site!.url}/topology.html?token=admin-token&interval=200&confirm=0`);
    const drawn = () => page.locator('section[data-stream="cam"] g.tree-node').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-relay')}:${e.getAttribute('data-depth')}:${e.getAttribute('data-viewers')}`).sort());
    await waitFor('four relays drawn', async () => (await drawn()).length === 4, 5000);
    expect(await drawn()).toEqual(['relay-0:0:0', 'relay-1:1:3', 'relay-2:1:1', 'relay-3:2:4']);
    expect(adminAuth.at(-1)).toBe('Bearer admin-token');
    expect(await page.locator('section[data-stream="cam"] h2').textContent()).toMatch(/cam · 4 relays · 8 viewers · depth 2/);
    // relay-1: 3 viewers + 1 child of 4 slots.
    expect(await page.locator('section[data-stream="cam"] tr[data-relay="relay-1"]').textContent()).toContain('100 %');
    // relay-3 dies and its viewers move to relay-2: the picture follows without a reload.
    admin.tree = { ...admin.tree, nodes: [node('relay-0', null, 0, 0, 2), node('relay-1', 'relay-0', 1, 3, 0), node('relay-2', 'relay-0', 1, 5, 0)] };
    admin.relays = [relayInfo('relay-0', 0, 2), relayInfo('relay-1', 3, 0), relayInfo('relay-2', 5, 0), { ...relayInfo('relay-3', 0, 0), up: false }];
    await waitFor('the tree to follow', async () => JSON.stringify(await drawn()) === JSON.stringify(['relay-0:0:0', 'relay-1:1:3', 'relay-2:1:5']), 5000);
    expect(await page.locator('#relays tr[data-relay="relay-3"]').textContent()).toContain('down');
    // An operator drains a relay from the page.
    await page.getByRole('button', { name: 'Drain relay-2' }).click();
    await waitFor('the drain to reach the admin API', () => adminAuth.includes('drain Bearer admin-token'), 5000);
    await waitFor('relay-2 shown as draining', async () => (await page.locator('#relays tr[data-relay="relay-2"]').textContent())?.includes('draining'), 5000);
    expect(await page.getByRole('button', { name: 'Drain relay-2' }).count()).toBe(0);
    await page.close();
  });
});
