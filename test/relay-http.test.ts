/**
 * WHIP/WHEP HTTP surface of a relay (RFC 9725): every error case returns its status with a short
 * text body, and the relay keeps serving afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Relay, RelayOptionsError } from '../src/relay/index.ts';
import { mintToken } from '../src/auth/token.ts';
import { encodeControl, decodeControlResponse } from '../src/proto/index.ts';
import { TestPublisher, TestViewer, postSdp, waitUntil } from './helpers/peers.ts';
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import { hostOnlyIce } from '../src/relay/media.ts';
import net from 'node:net';

const secret = 'relay-http-test-secret';
const tok = (stream: string, role: 'publish' | 'watch' | 'relay' | 'admin', ttl = 60) => mintToken(secret, stream, role, ttl, Date.now());

async function offerSdp(kind: 'send' | 'recv', codecs?: ConstructorParameters<typeof RTCPeerConnection>[0]): Promise<string> {
  const pc = new RTCPeerConnection({ ...hostOnlyIce('127.0.0.1'), ...codecs });
  pc.addTransceiver('video', { direction: kind === 'send' ? 'sendonly' : 'recvonly' });
  pc.addTransceiver('audio', { direction: kind === 'send' ? 'sendonly' : 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

describe('Relay HTTP', () => {
  let relay: Relay;
  let pub: TestPublisher | undefined;
  const viewers: TestViewer[] = [];

  beforeAll(async () => {
    relay = new Relay({ id: 'r-http', secret, connectTimeoutMs: 3000 });
    await relay.listen();
  });
  afterAll(async () => {
    for (const v of viewers) await v.close();
    await pub?.close();
    await relay.close();
    await relay.close(); // idempotent
  });

  it('constructor validates options', () => {
    expect(() => new Relay({ id: '', secret })).toThrow(RelayOptionsError);
    expect(() => new Relay({ id: 'x', secret: '' })).toThrow(/CANOPY_SECRET/);
    expect(() => new Relay({ id: 'x', secret, pliIntervalMs: 0 })).toThrow(RelayOptionsError);
    expect(() => new Relay({ id: 'x', secret, mediaPortRange: [5000, 4000] })).toThrow(/mediaPortRange/);
  });

  it('POST /whip publishes: 201 with Location, ETag and an SDP answer', async () => {
    pub = await TestPublisher.start({ url: `${relay.url}/whip/cam1`, token: tok('cam1', 'publish') });
    expect(pub.sessionUrl).toMatch(new RegExp(`^${relay.url}/whip/cam1/`));
    expect(pub.etag).toMatch(/^".+"$/);
    expect(relay.streams()).toEqual(['cam1']);
  });

  it('WHIP error statuses', async () => {
    const offer = await offerSdp('send');
    const url = `${relay.url}/whip/cam2`;
    // 401: no token, forged token, expired token
    expect((await postSdp(url, offer)).status).toBe(401);
    expect((await postSdp(url, offer, tok('cam2', 'publish').slice(0, -4) + 'AAAA')).status).toBe(401);
    expect((await postSdp(url, offer, mintToken(secret, 'cam2', 'publish', -10, Date.now()))).status).toBe(401);
    // 403: wrong role, wrong stream
    const r403 = await postSdp(url, offer, tok('cam2', 'watch'));
    expect(r403.status).toBe(403);
    expect(r403.body).toMatch(/may not publish/);
    expect((await postSdp(url, offer, tok('other', 'publish'))).status).toBe(403);
    // token in the query works
    // 415: wrong content type
    const r415 = await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: `Bearer ${tok('cam2', 'publish')}` }, body: offer });
    expect(r415.status).toBe(415);
    expect(await r415.text()).toMatch(/application\/sdp/);
    // 400: not SDP
    const r400 = await postSdp(url, 'hello', tok('cam2', 'publish'));
    expect(r400.status).toBe(400);
    expect(r400.body.length).toBeGreaterThan(0);
    // 422: no supported codec
    const pcmu = offer.replace(/a=rtpmap:(\d+) (VP8|opus)\/\d+(\/2)?/gi, (_m, pt) => `a=rtpmap:${pt} FOO/90000`);
    const r422 = await postSdp(url, pcmu, tok('cam2', 'publish'));
    expect(r422.status).toBe(422);
    expect(r422.body).toMatch(/codec/);
    // 409: already published
    const r409 = await postSdp(`${relay.url}/whip/cam1`, offer, tok('cam1', 'publish'));
    expect(r409.status).toBe(409);
    // 413: body too large
    const big = await postSdp(url, offer + 'a=x:' + 'y'.repeat(70_000) + '\r\n', tok('cam2', 'publish'));
    expect(big.status).toBe(413);
    // 400: bad stream name
    expect((await postSdp(`${relay.url}/whip/${'x'.repeat(200)}`, offer, tok('*', 'admin'))).status).toBe(400);
  });

  it('WHEP error statuses', async () => {
    const offer = await offerSdp('recv');
    expect((await postSdp(`${relay.url}/whep/nope`, offer, tok('nope', 'watch'))).status).toBe(404);
    expect((await postSdp(`${relay.url}/whep/cam1`, offer)).status).toBe(401);
    expect((await postSdp(`${relay.url}/whep/cam1`, offer, tok('cam1', 'publish'))).status).toBe(403);
    expect((await postSdp(`${relay.url}/whep/cam1`, 'v=1', tok('cam1', 'watch'))).status).toBe(400);
    // The stream is VP8 + Opus; a viewer that only takes H264 and PCMU cannot receive any of it.
    const h264only = await offerSdp('recv', {
      codecs: {
        video: [new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, parameters: 'packetization-mode=1;profile-level-id=42e01f' })],
        audio: [new RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, payloadType: 0 })],
      },
    });
    const r = await postSdp(`${relay.url}/whep/cam1`, h264only, tok('cam1', 'watch'));
    expect(r.status).toBe(422);
    expect(r.body).toMatch(/VP8/);
    expect(relay.viewerCount()).toBe(0);
  });

  it('pull errors are PullErrors with the parent status; the relay keeps serving', async () => {
    const edge = new Relay({ id: 'r-edge', secret });
    await edge.listen();
    try {
      await expect(edge.pull('nope', relay.url, tok('nope', 'relay'))).rejects.toMatchObject({ name: 'PullError', status: 404 });
      await expect(edge.pull('cam1', relay.url, tok('cam1', 'watch').slice(0, -3) + 'abc')).rejects.toMatchObject({ name: 'PullError', status: 401 });
      await expect(edge.pull('cam1', 'http://127.0.0.1:1', tok('cam1', 'relay'))).rejects.toThrow(/did not answer/);
      await expect(edge.pull('bad name!', relay.url, tok('cam1', 'relay'))).rejects.toThrow(/invalid stream name/);
      expect(edge.streams()).toEqual([]);
      expect((await fetch(`${edge.url}/healthz`)).status).toBe(200);
    } finally {
      await edge.close();
    }
  });

  it('WHEP viewer with ?token= and ?viewer= gets 201 and session events', async () => {
    const opened: unknown[] = [];
    relay.on('session-open', (e) => opened.push(e));
    const v = await TestViewer.start({ url: `${relay.url}/whep/cam1?token=${tok('cam1', 'watch')}&viewer=v-42` });
    viewers.push(v);
    expect(v.status).toBe(201);
    expect(opened).toContainEqual(expect.objectContaining({ stream: 'cam1', kind: 'viewer', viewer: 'v-42' }));
    expect(relay.viewerCount('cam1')).toBe(1);
  });

  it('a WHEP client that leaves before the answer leaves no session behind (at once, or at the connect deadline)', async () => {
    const before = relay.viewerCount('cam1');
    const offer = await offerSdp('recv');
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      const p = fetch(`${relay.url}/whep/cam1`, {
        method: 'POST',
        headers: { 'content-type': 'application/sdp', authorization: `Bearer ${tok('cam1', 'watch')}` },
        body: offer,
        signal: ac.signal,
      }).catch(() => undefined);
      setTimeout(() => ac.abort(), 1);
      await p;
    }
    // A client that aborts while the answer is already on the wire cannot be told apart from one
    // that got it; such a session is closed when it has not connected by connectTimeoutMs.
    await waitUntil(() => relay.viewerCount('cam1') === before, 6000, 'aborted sessions closed');
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });

  it('PATCH and DELETE on sessions', async () => {
    const v = viewers[0]!;
    const t = tok('cam1', 'watch');
    const patch = (headers: Record<string, string>, body: string) =>
      fetch(v.sessionUrl, { method: 'PATCH', headers: { authorization: `Bearer ${t}`, ...headers }, body });
    const frag = 'a=ice-ufrag:zzzz\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n';
    expect((await patch({ 'content-type': 'application/sdp' }, frag)).status).toBe(415);
    expect((await patch({ 'content-type': 'application/trickle-ice-sdpfrag' }, frag)).status).toBe(428);
    expect((await patch({ 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '"nope"' }, 'a=mid:0\r\n')).status).toBe(412);
    expect((await patch({ 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '*' }, frag)).status).toBe(422);
    const ufrag = /a=ice-ufrag:(\S+)/.exec(v.pc.localDescription!.sdp)![1];
    const ok = await patch({ 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': v.etag }, `a=ice-ufrag:${ufrag}\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n`);
    expect(ok.status).toBe(204);
    const unknown = await fetch(`${relay.url}/whep/cam1/doesnotexist`, { method: 'DELETE', headers: { authorization: `Bearer ${t}` } });
    expect(unknown.status).toBe(404);
    const noauth = await fetch(v.sessionUrl, { method: 'DELETE' });
    expect(noauth.status).toBe(401);
  });

  it('media candidates come from mediaPortRange', async () => {
    const r = new Relay({ id: 'r-ports', secret, mediaPortRange: [47100, 47199] });
    await r.listen();
    const p = await TestPublisher.start({ url: `${r.url}/whip/pr`, token: tok('pr', 'publish') });
    try {
      const ports = [...p.pc.remoteDescription!.sdp.matchAll(/a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ/gi)].map((m) => Number(m[1]));
      expect(ports.length).toBeGreaterThan(0);
      for (const port of ports) expect(port >= 47100 && port <= 47199).toBe(true);
    } finally {
      await p.close();
      await r.close();
    }
  });

  it('OPTIONS answers CORS preflight with the exposed headers', async () => {
    const r = await fetch(`${relay.url}/whip/cam9`, { method: 'OPTIONS', headers: { origin: 'http://example.test', 'access-control-request-method': 'POST' } });
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-expose-headers')).toMatch(/Location/);
    expect(r.headers.get('access-control-expose-headers')).toMatch(/ETag/);
    expect(r.headers.get('access-control-expose-headers')).toMatch(/Link/);
    expect(r.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    expect((await fetch(`${relay.url}/whip/cam9`, { method: 'GET' })).status).toBe(405);
    expect((await fetch(`${relay.url}/nothing`)).status).toBe(404);
  });

  it('a client that disconnects mid-request does not crash the relay', async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(Number(new URL(relay.url).port), '127.0.0.1', () => {
          s.write(`POST /whip/cam3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 5000\r\n\r\nv=0\r\n`);
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 20);
        });
        s.on('error', () => resolve());
      });
    }
    const h = await fetch(`${relay.url}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ ok: true, id: 'r-http' });
  });

  it('/control: refuses without a relay token, drains with one', async () => {
    const body = Buffer.from(encodeControl({ id: 7, drain: {} }));
    const no = await fetch(`${relay.url}/control`, { method: 'POST', body });
    expect(no.status).toBe(401);
    const watch = await fetch(`${relay.url}/control`, { method: 'POST', body, headers: { authorization: `Bearer ${tok('cam1', 'watch')}` } });
    expect(watch.status).toBe(403);
    const garbage = await fetch(`${relay.url}/control`, { method: 'POST', body: new Blob([new Uint8Array([0xff, 0xff, 0xff])]), headers: { authorization: `Bearer ${tok('*', 'relay')}` } });
    expect(garbage.status).toBe(400);
    const ok = await fetch(`${relay.url}/control`, { method: 'POST', body, headers: { authorization: `Bearer ${tok('*', 'relay')}` } });
    expect(ok.status).toBe(200);
    expect(decodeControlResponse(new Uint8Array(await ok.arrayBuffer()))).toMatchObject({ id: 7, ok: true });
    expect(relay.draining).toBe(true);
    const offer = await offerSdp('recv');
    expect((await postSdp(`${relay.url}/whep/cam1`, offer, tok('cam1', 'watch'))).status).toBe(503);
  });

  it('/metrics and DELETE still work after all of the above', async () => {
    const m = await (await fetch(`${relay.url}/metrics`)).text();
    expect(m).toMatch(/canopy_relay_viewers\{relay="r-http"\} 1/);
    expect(m).toMatch(/canopy_relay_http_errors_total\{relay="r-http",status="401"\}/);
    const closed: unknown[] = [];
    relay.on('session-close', (e) => closed.push(e));
    const v = viewers.pop()!;
    const r = await fetch(v.sessionUrl, { method: 'DELETE', headers: { authorization: `Bearer ${tok('cam1', 'watch')}` } });
    expect(r.status).toBe(200);
    await v.close();
    expect(closed).toContainEqual(expect.objectContaining({ stream: 'cam1', viewer: 'v-42' }));
    expect(relay.viewerCount()).toBe(0);
    const unpub: string[] = [];
    relay.on('unpublish', (s: string) => unpub.push(s));
    await pub!.close();
    pub = undefined;
    expect(unpub).toEqual(['cam1']);
    expect(relay.streams()).toEqual([]);
  });
});
