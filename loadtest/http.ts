/**
 * WHIP/WHEP over HTTP (RFC 9725; WHEP draft): POST the SDP offer with a bearer token, follow
 * 307/308 redirects by hand (fetch would drop Authorization on a cross-origin redirect and
 * signaling's relay-scoped ?token= only helps when it is there), and remember the session
 * resource for DELETE.
 */

export class SignalingHttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'SignalingHttpError';
    this.status = status;
  }
}

export interface SdpExchange {
  answer: string;
  /** Absolute URL of the session resource (Location of the 201), for DELETE/PATCH. */
  resource: string | undefined;
  /** URL that finally answered (the relay, after redirects). */
  answeredBy: string;
  /** The relay-assigned viewer id (`viewer` query parameter of the redirect), if any. */
  viewer: string | undefined;
}

const MAX_REDIRECTS = 5;

export async function postSdp(url: string, offer: string, token: string, timeoutMs = 10_000): Promise<SdpExchange> {
  let target = url;
  let viewer: string | undefined;
  const deadline = AbortSignal.timeout(timeoutMs);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
      body: offer,
      redirect: 'manual',
      signal: deadline,
    });
    if (res.status === 307 || res.status === 308) {
      const loc = res.headers.get('location');
      await res.arrayBuffer().catch(() => undefined);
      if (!loc) throw new SignalingHttpError(res.status, `${target} redirected without a Location header`);
      target = new URL(loc, target).toString();
      viewer = new URL(target).searchParams.get('viewer') ?? viewer;
      continue;
    }
    const body = await res.text();
    if (res.status !== 201 && res.status !== 200) {
      throw new SignalingHttpError(res.status, `POST ${target} answered ${res.status}: ${body.slice(0, 200)}`);
    }
    const loc = res.headers.get('location');
    return { answer: body, resource: loc ? new URL(loc, target).toString() : undefined, answeredBy: target, viewer };
  }
  throw new SignalingHttpError(310, `more than ${MAX_REDIRECTS} redirects from ${url}`);
}

/** DELETE a session resource; failures are ignored (the relay may already be gone). */
export async function deleteResource(resource: string | undefined, token: string, timeoutMs = 2000): Promise<void> {
  if (!resource) return;
  try {
    const res = await fetch(resource, { method: 'DELETE', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
  } catch {
    /* the session dies with its relay anyway */
  }
}

/** The extension id the SDP maps to `uri`, per m-section kind ('video'/'audio'). */
export function extmapIds(sdp: string, uri: string): Map<string, number> {
  const out = new Map<string, number>();
  let kind = '';
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^m=(\w+)/.exec(line);
    if (m) kind = m[1]!;
    const e = /^a=extmap:(\d+)(?:\/\w+)? (\S+)/.exec(line);
    if (e && e[2] === uri && kind && !out.has(kind)) out.set(kind, Number(e[1]));
  }
  return out;
}
