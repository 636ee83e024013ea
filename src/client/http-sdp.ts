/**
 * WHIP (RFC 9725) and WHEP HTTP exchanges from a browser: POST an SDP offer, follow the 307 to
 * the chosen relay, read the answer and the session resource (Location), DELETE it to stop.
 *
 * fetch follows a 307 and re-sends the POST body (Fetch §4.4 "HTTP-redirect fetch": 307/308
 * keep method and body). When the redirect crosses origins, fetch drops the Authorization header
 * (Fetch §4.4 step "If request's current URL's origin is not same origin with locationURL's
 * origin, then for each headerName of CORS non-wildcard request-header name, delete
 * headerName"), which is why signaling's redirect carries a relay-scoped `?token=`.
 */

export class SdpExchangeError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'SdpExchangeError';
    this.status = status;
  }
}

export interface SdpExchange {
  /** The answer SDP. */
  answer: string;
  /** The session resource to PATCH/DELETE (absolute), if the server named one. */
  resource?: string;
  /** The URL that finally answered (after redirects): which relay serves us. */
  answeredBy: string;
}

/**
 * POST `offer` to a WHIP or WHEP endpoint. `timeoutMs` bounds the whole exchange, redirects
 * included.
 */
export async function postSdp(endpoint: string, offer: string, token: string, timeoutMs = 10_000): Promise<SdpExchange> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: offer,
      redirect: 'follow',
      signal: ctl.signal,
    });
  } catch (e) {
    throw new SdpExchangeError(0, ctl.signal.aborted ? `no answer from ${endpoint} within ${timeoutMs} ms` : `cannot reach ${endpoint}: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  const text = await res.text().catch(() => '');
  if (res.status !== 201 && res.status !== 200) {
    throw new SdpExchangeError(res.status, `${endpoint} answered ${res.status}: ${text.slice(0, 200) || res.statusText}`);
  }
  if (!text.startsWith('v=')) throw new SdpExchangeError(res.status, `${endpoint} answered without an SDP body`);
  const answeredBy = res.url || endpoint;
  const location = res.headers.get('Location');
  return { answer: text, resource: location ? resourceUrl(location, answeredBy) : undefined, answeredBy };
}

/**
 * The absolute session URL. Location may be relative to the relay that answered (RFC 9725 §4.2),
 * and the relay authenticates the DELETE like the POST; when the Location lacks the relay-scoped
 * token that the redirect carried, copy it over so the DELETE is authorized after the
 * cross-origin hop too.
 */
export function resourceUrl(location: string, answeredBy: string): string {
  const url = new URL(location, answeredBy);
  const from = new URL(answeredBy);
  const token = from.searchParams.get('token');
  if (token && !url.searchParams.has('token')) url.searchParams.set('token', token);
  return url.toString();
}

/** DELETE a session resource; best effort, bounded; never throws. */
export async function deleteSession(resource: string | undefined, token: string, timeoutMs = 3000): Promise<void> {
  if (!resource) return;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    await fetch(resource, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, signal: ctl.signal, keepalive: true });
  } catch {
    // The relay may already be gone; the session then ends by ICE timeout on its side.
  } finally {
    clearTimeout(timer);
  }
}

/** Resolve once ICE gathering is complete or `timeoutMs` passed (offers go without trickle). */
export function iceGathered(pc: RTCPeerConnection, timeoutMs = 3000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = (): void => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export const ABS_CAPTURE_TIME_URI = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';

/**
 * Offer the abs-capture-time header extension where the browser lets a page choose extensions
 * (RTCRtpTransceiver.setHeaderExtensionsToNegotiate, WebRTC Extensions §8). Chrome implements
 * it but leaves the extension stopped by default.
 */
export function enableAbsCaptureTime(t: RTCRtpTransceiver): boolean {
  const tx = t as RTCRtpTransceiver & {
    getHeaderExtensionsToNegotiate?: () => { uri: string; direction: string }[];
    setHeaderExtensionsToNegotiate?: (exts: { uri: string; direction: string }[]) => void;
  };
  if (!tx.getHeaderExtensionsToNegotiate || !tx.setHeaderExtensionsToNegotiate) return false;
  try {
    const exts = tx.getHeaderExtensionsToNegotiate();
    const abs = exts.find((e) => e.uri === ABS_CAPTURE_TIME_URI);
    if (!abs) return false;
    abs.direction = 'sendrecv';
    tx.setHeaderExtensionsToNegotiate(exts);
    return true;
  } catch {
    return false;
  }
}
