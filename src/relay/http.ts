/**
 * The relay's HTTP plumbing on uWebSockets.js: body reading with a size limit, abort handling
 * (a client that disconnects mid-request must never make us touch a dead HttpResponse, which
 * uWS punishes by terminating the process), CORS, and typed error replies with short text bodies.
 */
import uWS from 'uWebSockets.js';
import { HttpError } from './errors.ts';
import { logger } from '../util/log.ts';

const log = logger('relay:http');

/** Everything a handler needs from the request, copied out synchronously (uWS frees `req` on return). */
export interface Request {
  method: string;
  url: string;
  query: string;
  params: string[];
  headers: Record<string, string>;
  body: Buffer;
  /** `?name=` value from the query string */
  q(name: string): string | undefined;
}

export interface Response {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Called when the client went away before this reply could be written (undo what it created). */
  onUnsent?: () => void;
}

export type Handler = (req: Request) => Promise<Response> | Response;

export const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, PATCH, DELETE, OPTIONS, GET',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-Match',
  'Access-Control-Expose-Headers': 'Location, ETag, Link, Accept-Patch',
  'Access-Control-Max-Age': '86400',
};

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  307: 'Temporary Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function statusLine(s: number): string {
  return `${s} ${STATUS_TEXT[s] ?? 'Status'}`;
}

/** Largest body accepted on any route; SDP offers are a few KiB, 64 KiB leaves room. */
export const MAX_BODY_BYTES = 64 * 1024;

export class HttpServer {
  readonly #app: uWS.TemplatedApp;
  #listen: uWS.us_listen_socket | undefined;
  #port = 0;
  #open = new Set<{ aborted: boolean; res: uWS.HttpResponse }>();
  #inflight = 0;

  constructor(readonly maxBody = MAX_BODY_BYTES) {
    this.#app = uWS.App();
  }

  get port(): number {
    return this.#port;
  }

  route(method: 'get' | 'post' | 'patch' | 'del' | 'options' | 'any', pattern: string, handler: Handler, params = 0): this {
    this.#app[method](pattern, (res, req) => this.#handle(res, req, handler, params));
    return this;
  }

  #handle(res: uWS.HttpResponse, req: uWS.HttpRequest, handler: Handler, nparams: number): void {
    const state = { aborted: false, res };
    this.#open.add(state);
    res.onAborted(() => {
      state.aborted = true;
      this.#open.delete(state);
    });
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    const query = req.getQuery() ?? '';
    const params: string[] = [];
    for (let i = 0; i < nparams; i++) params.push(safeDecode(req.getParameter(i) ?? ''));
    const method = req.getMethod().toUpperCase();
    const url = req.getUrl();
    const declared = Number(headers['content-length'] ?? '0');
    if (declared > this.maxBody) {
      this.#send(state, { status: 413, body: `body larger than ${this.maxBody} bytes` });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    const run = (): void => {
      const body = Buffer.concat(chunks);
      const searchParams = new URLSearchParams(query);
      const request: Request = { method, url, query, params, headers, body, q: (n) => searchParams.get(n) ?? undefined };
      this.#inflight++;
      Promise.resolve()
        .then(() => handler(request))
        .then(
          (r) => this.#send(state, r),
          (e: unknown) => {
            if (e instanceof HttpError) {
              this.#send(state, { status: e.status, body: e.message, headers: e.headers });
            } else {
              log.error('handler failed', { url, err: e as Error });
              this.#send(state, { status: 500, body: 'internal error' });
            }
          },
        )
        .finally(() => this.#inflight--);
    };
    if (method === 'GET' || method === 'OPTIONS' || method === 'DELETE' || method === 'HEAD') {
      // uWS never delivers a body for these; reading one would wait forever.
      run();
      return;
    }
    res.onData((ab, isLast) => {
      if (tooLarge || state.aborted) return;
      size += ab.byteLength;
      if (size > this.maxBody) {
        tooLarge = true;
        this.#send(state, { status: 413, body: `body larger than ${this.maxBody} bytes` });
        return;
      }
      // uWS reuses the ArrayBuffer after the callback returns: copy.
      chunks.push(Buffer.from(new Uint8Array(ab).slice()));
      if (isLast) run();
    });
  }

  #send(state: { aborted: boolean; res: uWS.HttpResponse }, r: Response): void {
    if (state.aborted) {
      r.onUnsent?.();
      return;
    }
    this.#open.delete(state);
    state.aborted = true; // one reply per request
    const res = state.res;
    try {
      res.cork(() => {
        res.writeStatus(statusLine(r.status));
        for (const [k, v] of Object.entries(CORS_HEADERS)) res.writeHeader(k, v);
        let hasType = false;
        for (const [k, v] of Object.entries(r.headers ?? {})) {
          if (k.toLowerCase() === 'content-type') hasType = true;
          res.writeHeader(k, v);
        }
        if (r.body !== undefined && !hasType) res.writeHeader('Content-Type', 'text/plain; charset=utf-8');
        res.end(r.body ?? '');
      });
    } catch (e) {
      // The socket went away between the check and the write.
      log.debug('reply failed', { err: e as Error });
      r.onUnsent?.();
    }
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#app.listen(host, port, (s) => {
        if (!s) {
          reject(new Error(`relay: cannot listen on ${host}:${port} (port in use or address not local)`));
          return;
        }
        this.#listen = s;
        this.#port = uWS.us_socket_local_port(s as unknown as uWS.us_socket);
        resolve(this.#port);
      });
    });
  }

  close(): void {
    if (this.#listen) {
      uWS.us_listen_socket_close(this.#listen);
      this.#listen = undefined;
    }
    for (const s of this.#open) {
      if (!s.aborted) {
        s.aborted = true;
        try {
          s.res.close();
        } catch {
          /* already gone */
        }
      }
    }
    this.#open.clear();
    // Idle keep-alive connections would hold the loop open; uWS closes them with the app.
    try {
      (this.#app as unknown as { close?: () => void }).close?.();
    } catch {
      /* older builds have no App.close */
    }
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
