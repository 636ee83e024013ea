/**
 * The HTTP plumbing around uWebSockets.js: a request snapshot that stays valid across awaits,
 * body reading with a size limit, CORS, and one `reply` that is safe after the client has gone.
 *
 * uWS rules this file exists to honour: the `HttpRequest` object is only valid synchronously
 * inside the handler, `onData`/`onAborted` must be attached before returning, and writing to an
 * aborted response crashes the process. Every async handler therefore goes through `serve`.
 */
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** Everything a handler may read, copied out of the uWS request before the first await. */
export interface Req {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Map<string, string>;
  ip: string;
  body: Buffer;
  /** Aborted when the client disconnects before the reply. */
  signal: AbortSignal;
}

export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string> | undefined;
  constructor(status: number, message: string, headers?: Record<string, string>) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently', 307: 'Temporary Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Entity',
  429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export const statusLine = (s: number): string => `${s} ${REASONS[s] ?? 'Status'}`;

/**
 * CORS for browser pages and third-party players on other origins. Credentials are bearer
 * tokens, never cookies, so a wildcard origin is safe. WHIP/WHEP clients must read `Location`
 * (the session resource, RFC 9725 §4.2) and may read ETag/Link, hence the expose list.
 */
export const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-Match',
  'Access-Control-Expose-Headers': 'Location, ETag, Link',
  'Access-Control-Max-Age': '600',
};

export interface ServeOptions {
  /** Largest accepted request body; larger ones get 413 before they are buffered. */
  maxBodyBytes: number;
  /** Called for every reply (status known) — metrics. */
  onReply?: (status: number) => void;
  /** Called when a handler throws something that is not an HttpError. */
  onInternalError?: (e: unknown) => void;
}

function writeReply(res: HttpResponse, r: Reply, closeConnection = false): void {
  res.cork(() => {
    res.writeStatus(statusLine(r.status));
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.writeHeader(k, v);
    if (r.headers) for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
    res.end(r.body ?? '', closeConnection);
  });
}

const remoteIp = (res: HttpResponse): string => Buffer.from(res.getRemoteAddressAsText()).toString();

/**
 * Run `handler` for this request: snapshot the request, read the body (bounded), and write the
 * reply unless the client went away. Errors become replies; nothing escapes to uWS.
 */
export function serve(res: HttpResponse, req: HttpRequest, opts: ServeOptions, handler: (r: Req) => Promise<Reply> | Reply): void {
  const ac = new AbortController();
  let done = false;
  res.onAborted(() => {
    done = true;
    ac.abort();
  });
  const headers = new Map<string, string>();
  req.forEach((k, v) => headers.set(k, v));
  const method = req.getMethod().toUpperCase();
  const snap = {
    method,
    path: req.getUrl(),
    query: new URLSearchParams(req.getQuery() ?? ''),
    headers,
    ip: remoteIp(res),
    signal: ac.signal,
  };
  const finish = (r: Reply, close = false): void => {
    if (done) return;
    done = true;
    opts.onReply?.(r.status);
    writeReply(res, r, close);
  };
  const run = (body: Buffer): void => {
    let p: Promise<Reply>;
    try {
      p = Promise.resolve(handler({ ...snap, body }));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(finish, (e: unknown) => finish(errorReply(e, opts)));
  };
  const declared = Number(headers.get('content-length') ?? '0');
  if (declared > opts.maxBodyBytes) {
    finish({ status: 413, body: `request body over the ${opts.maxBodyBytes}-byte limit\n` }, true);
    return;
  }
  if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'DELETE' && !declared) {
    run(Buffer.alloc(0));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  res.onData((chunk, isLast) => {
    if (done) return;
    size += chunk.byteLength;
    if (size > opts.maxBodyBytes) {
      // Chunked bodies have no Content-Length; stop buffering the moment the limit is passed.
      finish({ status: 413, body: `request body over the ${opts.maxBodyBytes}-byte limit\n` }, true);
      return;
    }
    // The ArrayBuffer is neutered after this callback returns, so copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) run(Buffer.concat(chunks, size));
  });
}

export function errorReply(e: unknown, opts?: Pick<ServeOptions, 'onInternalError'>): Reply {
  if (e instanceof HttpError) {
    return { status: e.status, headers: { 'Content-Type': 'text/plain; charset=utf-8', ...e.headers }, body: e.message + '\n' };
  }
  opts?.onInternalError?.(e);
  return { status: 500, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'internal error\n' };
}

export const text = (status: number, body: string, headers?: Record<string, string>): Reply => ({
  status,
  headers: { 'Content-Type': 'text/plain; charset=utf-8', ...headers },
  body: body.endsWith('\n') ? body : body + '\n',
});

export const json = (status: number, value: unknown): Reply => ({
  status,
  headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
  body: JSON.stringify(value),
});

/** The bearer token from `Authorization`, else from `?token=` (browsers drop headers on redirects). */
export function requestToken(r: Req): string | undefined {
  const h = r.headers.get('authorization');
  if (h) {
    const m = /^Bearer\s+(\S+)$/i.exec(h.trim());
    if (m) return m[1];
  }
  return r.query.get('token') ?? undefined;
}
