/**
 * Signaling's HTTP entry against a MemoryTopology and scripted relays (plain node:http servers
 * that answer WHIP/WHEP/control like a relay, without media): redirect and broker modes, every
 * error status, CORS preflight, admin API, metrics, static files and path traversal.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { mintToken, signToken, verifyToken } from '../src/auth/token.ts';
import { decodeControl } from '../src/proto/index.ts';
import { MemoryTopology } from '../src/topology/index.ts';
import { SignalingServer } from '../signaling/server.ts';
import { FakeRelay, ANSWER } from '../signaling/fake-relay.ts';

const SECRET = 'test-secret-0123456789abcdef';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';

const tok = (stream: string, role: 'publish' | 'watch' | 'relay' | 'admin', ttl = 60): string => mintToken(SECRET, stream, role, ttl, Date.now());

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/sdp', ...headers }, redirect: 'manual' });
}

describe('signaling HTTP entry', () => {
  let topo: MemoryTopology;
  let sig: SignalingServer;
  let r0: FakeRelay;
  let r1: FakeRelay;
  let web: string;

  beforeAll(async () => {
    r0 = new FakeRelay('relay-0');
    r1 = new FakeRelay('relay-1');
    await r0.listen();
    await r1.listen();
    web = mkdtempSync(join(tmpdir(), 'canopy-web-'));
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>canopy</title>');
    writeFileSync(join(web, 'watch.js'), 'console.log(1)');
    mkdirSync(join(web, 'css'));
    writeFileSync(join(web, 'css', 'a.css'), 'body{}');
  });

  beforeEach(async () => {
    await sig?.close();
    await topo?.close();
    r0.seen.length = 0;
    r1.seen.length = 0;
    r0.failControl = r1.failControl = false;
    r0.failOffer = r1.failOffer = 0;
    topo = new MemoryTopology({ leaseMs: 60_000 });
    // relay-0: one viewer slot beyond its fan-out reserve, so the second viewer grows the tree.
    await topo.registerRelay({ id: 'relay-0', url: r0.url, capacity: 2, fanout: 1 });
    await topo.registerRelay({ id: 'relay-1', url: r1.url, capacity: 10, fanout: 1 });
    sig = new SignalingServer({ secret: SECRET, topology: topo, port: 0, webRoot: web, limits: { maxBodyBytes: 4096 } });
    await sig.listen();
  });

  afterAll(async () => {
    await sig?.close();
    await topo?.close();
    await r0.close();
    await r1.close();
    rmSync(web, { recursive: true, force: true });
  });

  it('OPTIONS answers the CORS preflight and exposes Location', async () => {
    const res = await fetch(`${sig.url}/whip/cam`, {
      method: 'OPTIONS',
      headers: { origin: 'https://player.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(res.headers.get('access-control-expose-headers')).toContain('Location');
  });

  it('POST /whip redirects (307) to the least loaded relay with a relay-scoped publish token', async () => {
    const res = await post(`${sig.url}/whip/cam`, OFFER, { authorization: `Bearer ${tok('cam', 'publish')}` });
    expect(res.status).toBe(307);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const loc = new URL(res.headers.get('location')!);
    expect(`${loc.protocol}//${loc.host}`).toBe(r0.url);
    expect(loc.pathname).toBe('/whip/cam');
    const claims = verifyToken(loc.searchParams.get('token'), SECRET, Date.now());
    expect(claims).toMatchObject({ stream: 'cam', role: 'publish', sub: 'relay-0' });
    expect(claims.exp * 1000 - Date.now()).toBeLessThanOrEqual(61_000);
  });

  it('POST /whip takes the token from ?token= too, and keeps a live stream on its origin', async () => {
    await topo.registerStream('cam', 'relay-1');
    const res = await post(`${sig.url}/whip/cam?token=${tok('cam', 'publish')}`, OFFER);
    expect(res.status).toBe(307);
    expect(res.headers.get('location')!.startsWith(`${r1.url}/whip/cam?`)).toBe(true);
  });

  it('POST /whip?broker=1 forwards the offer and returns the relay answer with an absolute Location', async () => {
    const res = await post(`${sig.url}/whip/cam?broker=1`, OFFER, { authorization: `Bearer ${tok('cam', 'publish')}` });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/sdp');
    expect(await res.text()).toBe(ANSWER);
    expect(res.headers.get('location')).toMatch(new RegExp(`^${r0.url}/whip/cam/sess-`));
    expect(res.headers.get('etag')).toBe('"e1"');
    const seen = r0.seen.find((s) => s.url.startsWith('/whip/cam'))!;
    expect(seen.body.toString()).toBe(OFFER);
    expect(verifyToken(seen.auth.slice(7), SECRET, Date.now())).toMatchObject({ role: 'publish', sub: 'relay-0' });
  });

  it('WHIP errors: 401 missing/forged/expired, 403 wrong role/stream, 415, 400, 413, 503 no relay', async () => {
    const u = `${sig.url}/whip/cam`;
    expect((await post(u, OFFER)).status).toBe(401);
    const forged = mintToken('another-secret-0123456789', 'cam', 'publish', 60, Date.now());
    expect((await post(u, OFFER, { authorization: `Bearer ${forged}` })).status).toBe(401);
    const expired = signToken({ stream: 'cam', role: 'publish', exp: Math.floor(Date.now() / 1000) - 10 }, SECRET);
    expect((await post(u, OFFER, { authorization: `Bearer ${expired}` })).status).toBe(401);
    expect((await post(u, OFFER, { authorization: `Bearer ${tok('cam', 'watch')}` })).status).toBe(403);
    expect((await post(u, OFFER, { authorization: `Bearer ${tok('other', 'publish')}` })).status).toBe(403);
    expect((await post(u, OFFER, { authorization: `Bearer ${tok('cam', 'publish')}`, 'content-type': 'text/plain' })).status).toBe(415);
    expect((await post(u, 'hello', { authorization: `Bearer ${tok('cam', 'publish')}` })).status).toBe(400);
    expect((await post(`${sig.url}/whip/bad%20name`, OFFER, { authorization: `Bearer ${tok('bad name', 'publish')}` })).status).toBe(400);
    const big = 'v=0\r\n' + 'a=x\r\n'.repeat(2000);
    expect((await post(u, big, { authorization: `Bearer ${tok('cam', 'publish')}` })).status).toBe(413);
    await topo.drainRelay('relay-0');
    await topo.drainRelay('relay-1');
    expect((await post(u, OFFER, { authorization: `Bearer ${tok('cam', 'publish')}` })).status).toBe(503);
    const m = sig.metrics();
    expect(m).toMatch(/canopy_signaling_errors_total\{code="ERR_UNAUTHORIZED",transport="http"\} 3/);
    expect(m).toMatch(/canopy_signaling_http_responses_total\{status="413"\} 1/);
  });

  it('a chunked body over the limit is refused with 413 and the server keeps serving', async () => {
    const res = await new Promise<string>((resolve, reject) => {
      const s = connect(sig.port, '127.0.0.1', () => {
        s.write(`POST /whip/cam HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer ${tok('cam', 'publish')}\r\n\r\n`);
        const chunk = 'v=0\r\n' + 'x'.repeat(3000);
        for (let i = 0; i < 3; i++) s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      });
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('\r\n\r\n')) {
          s.destroy();
          resolve(got.split('\r\n')[0]!);
        }
      });
      s.on('error', reject);
      setTimeout(() => reject(new Error('no reply')), 5000);
    });
    expect(res).toContain('413');
    expect((await fetch(`${sig.url}/healthz`)).status).toBe(200);
  });

  it('POST /whep: 404 before the stream is published, 307 to a relay carrying it with token and viewer', async () => {
    const w = tok('cam', 'watch');
    const r404 = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    expect(r404.status).toBe(404);
    await topo.registerStream('cam', 'relay-0');
    const res = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    expect(res.status).toBe(307);
    const loc = new URL(res.headers.get('location')!);
    expect(`${loc.protocol}//${loc.host}${loc.pathname}`).toBe(`${r0.url}/whep/cam`);
    const viewer = loc.searchParams.get('viewer')!;
    expect(viewer).toMatch(/^whep-/);
    expect(verifyToken(loc.searchParams.get('token'), SECRET, Date.now())).toMatchObject({ stream: 'cam', role: 'watch', sub: 'relay-0' });
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
  });

  it('POST /whep grows the tree: the new relay is told to pull from its parent before the redirect', async () => {
    await topo.registerStream('cam', 'relay-0');
    const w = tok('cam', 'watch');
    expect((await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` })).status).toBe(307);
    const res = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    expect(res.status).toBe(307);
    expect(res.headers.get('location')!.startsWith(`${r1.url}/whep/cam?`)).toBe(true);
    const ctl = r1.seen.find((s) => s.url === '/control')!;
    expect(ctl).toBeDefined();
    const req = decodeControl<{ pull?: { stream: string; parentUrl: string; token: string } }>(ctl.body);
    expect(req.pull).toMatchObject({ stream: 'cam', parentUrl: r0.url });
    expect(verifyToken(req.pull!.token, SECRET, Date.now())).toMatchObject({ stream: 'cam', role: 'relay', sub: 'relay-1' });
    expect(verifyToken(ctl.auth.slice(7), SECRET, Date.now())).toMatchObject({ stream: '*', role: 'relay' });
  });

  it('POST /whep answers 502 and frees the slot when the new relay cannot pull', async () => {
    await topo.registerStream('cam', 'relay-0');
    const w = tok('cam', 'watch');
    await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    r1.failControl = true;
    const res = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    expect(res.status).toBe(502);
    expect(await res.text()).toContain('parent refused');
    await new Promise((r) => setTimeout(r, 20));
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
  });

  it('POST /whep?broker=1 returns the relay answer; a refusing relay gives 502 and frees the slot', async () => {
    await topo.registerStream('cam', 'relay-0');
    const w = tok('cam', 'watch');
    const res = await post(`${sig.url}/whep/cam?broker=1`, OFFER, { authorization: `Bearer ${w}` });
    expect(res.status).toBe(201);
    expect(await res.text()).toBe(ANSWER);
    expect(res.headers.get('location')).toMatch(new RegExp(`^${r0.url}/whep/cam/sess-`));
    expect(r0.seen.some((s) => /^\/whep\/cam\?viewer=whep-/.test(s.url))).toBe(true);
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
    // The next viewer lands on relay-1 (the tree grows), which refuses the offer.
    r1.failOffer = 503;
    const bad = await post(`${sig.url}/whep/cam?broker=1`, OFFER, { authorization: `Bearer ${w}` });
    expect(bad.status).toBe(502);
    await new Promise((r) => setTimeout(r, 20));
    expect((await topo.getTree('cam'))!.viewers).toBe(1);
  });

  it('POST /whep: 403 for a publish token, 503 when no relay has room', async () => {
    await topo.registerStream('cam', 'relay-0');
    expect((await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${tok('cam', 'publish')}` })).status).toBe(403);
    const w = tok('cam', 'watch');
    // relay-0 takes 1 viewer (2 - fanout 1); relay-1 takes 9 (10 - fanout 1): 10 in all.
    for (let i = 0; i < 10; i++) expect((await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` })).status).toBe(307);
    const full = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${w}` });
    expect(full.status).toBe(503);
    expect(sig.metrics()).toMatch(/canopy_signaling_errors_total\{code="ERR_NO_CAPACITY",transport="http"\} 1/);
  });

  it('the config switch brokers every request', async () => {
    await sig.close();
    sig = new SignalingServer({ secret: SECRET, topology: topo, port: 0, webRoot: web, broker: true });
    await sig.listen();
    await topo.registerStream('cam', 'relay-0');
    const res = await post(`${sig.url}/whep/cam`, OFFER, { authorization: `Bearer ${tok('cam', 'watch')}` });
    expect(res.status).toBe(201);
  });

  it('admin API: relays, streams, a tree, drain; admin token required', async () => {
    await topo.registerStream('cam', 'relay-0');
    const admin = { authorization: `Bearer ${tok('*', 'admin')}` };
    expect((await fetch(`${sig.url}/admin/relays`)).status).toBe(401);
    expect((await fetch(`${sig.url}/admin/relays`, { headers: { authorization: `Bearer ${tok('cam', 'watch')}` } })).status).toBe(403);
    const relays = (await (await fetch(`${sig.url}/admin/relays`, { headers: admin })).json()) as { id: string }[];
    expect(relays.map((r) => r.id)).toEqual(['relay-0', 'relay-1']);
    const streams = (await (await fetch(`${sig.url}/admin/streams?token=${tok('*', 'admin')}`)).json()) as { stream: string; originId: string }[];
    expect(streams).toEqual([expect.objectContaining({ stream: 'cam', originId: 'relay-0' })]);
    const tree = (await (await fetch(`${sig.url}/admin/streams/cam`, { headers: admin })).json()) as { nodes: unknown[] };
    expect(tree.nodes).toHaveLength(1);
    expect((await fetch(`${sig.url}/admin/streams/nope`, { headers: admin })).status).toBe(404);
    const d = await fetch(`${sig.url}/admin/relays/relay-1/drain`, { method: 'POST', headers: admin });
    expect(d.status).toBe(200);
    expect((await topo.getRelay('relay-1'))!.draining).toBe(true);
    expect(decodeControl<{ drain?: object }>(r1.seen.find((s) => s.url === '/control')!.body).drain).toBeDefined();
    expect((await fetch(`${sig.url}/admin/relays/nope/drain`, { method: 'POST', headers: admin })).status).toBe(404);
  });

  it('/healthz, /metrics and 405 for unknown methods', async () => {
    expect(await (await fetch(`${sig.url}/healthz`)).text()).toBe('ok\n');
    const m = await fetch(`${sig.url}/metrics`);
    expect(m.headers.get('content-type')).toContain('text/plain');
    const body = await m.text();
    for (const name of ['canopy_signaling_sessions', 'canopy_signaling_joins_total', 'canopy_signaling_errors_total', 'canopy_signaling_assignment_seconds_bucket', 'canopy_signaling_store_errors_total']) {
      expect(body).toContain(name);
    }
    expect((await fetch(`${sig.url}/whip/cam`, { method: 'PUT' })).status).toBe(405);
  });

  it('serves the pages with content types and refuses path traversal', async () => {
    const idx = await fetch(`${sig.url}/`);
    expect(idx.status).toBe(200);
    expect(idx.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const js = await fetch(`${sig.url}/watch.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${sig.url}/css/a.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await fetch(`${sig.url}/missing.html`)).status).toBe(404);
    // fetch normalises "..", so speak raw HTTP for the traversal attempts.
    for (const p of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/css/..%2f..%2f..%2fetc%2fpasswd', '/%00', '/..\\..\\etc\\passwd']) {
      const line = await rawGet(sig.port, p);
      expect(line, p).toMatch(/ 404 /);
    }
  });
});

function rawGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => resolve(got.split('\r\n')[0]!));
    s.on('close', () => resolve(got.split('\r\n')[0]!));
    s.on('error', reject);
    setTimeout(() => reject(new Error('no reply')), 5000);
  });
}
