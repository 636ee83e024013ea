/**
 * A scripted relay for signaling tests: a plain node:http server that answers WHIP/WHEP offers,
 * DELETE and /control like a relay does, without media, and records every request. Setting
 * `failControl` / `failOffer` makes it refuse.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { decodeControl, encodeControlResponse } from '../src/proto/index.ts';

export const ANSWER = 'v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=answer\r\nt=0 0\r\n';

export interface Seen {
  method: string;
  url: string;
  auth: string;
  body: Buffer;
}

/** A scripted relay: records requests; `failControl` / `failOffer` make it refuse. */
export class FakeRelay {
  readonly seen: Seen[] = [];
  failControl = false;
  failOffer = 0;
  server: Server;
  url = '';
  constructor(readonly id: string) {
    this.server = createServer((req, res) => void this.#handle(req, res));
  }
  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const a = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${a.port}`;
  }
  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    this.seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization ?? '', body });
    const path = new URL(req.url!, 'http://x').pathname;
    if (req.method === 'POST' && path === '/control') {
      const ok = !this.failControl;
      res.writeHead(ok ? 200 : 502, { 'content-type': 'application/x-protobuf' });
      let id = 0;
      try {
        id = decodeControl<{ id?: number }>(body).id ?? 0;
      } catch {
        res.writeHead(400);
        res.end('bad control body');
        return;
      }
      res.end(Buffer.from(encodeControlResponse({ id, ok, error: ok ? '' : 'parent refused' })));
      return;
    }
    const m = /^\/(whip|whep)\/([^/]+)$/.exec(path);
    if (req.method === 'POST' && m) {
      if (this.failOffer) {
        res.writeHead(this.failOffer, { 'content-type': 'text/plain' });
        res.end('refused');
        return;
      }
      res.writeHead(201, { 'content-type': 'application/sdp', location: `/${m[1]}/${m[2]}/sess-${this.seen.length}`, etag: '"e1"' });
      res.end(ANSWER);
      return;
    }
    if (req.method === 'DELETE') {
      res.writeHead(204);
      res.end();
      return;
    }
    res.writeHead(404);
    res.end();
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

