/**
 * Calls signaling makes to relays: brokered WHIP/WHEP offers, session DELETE, and the
 * authenticated control endpoint (protobuf ControlRequest). Every call is bounded by a timeout
 * and fails with RelayCallError, which callers map to ERR_RELAY_FAILED / HTTP 502.
 */
import { encodeControl, decodeControlResponse } from '../src/proto/index.ts';

export class RelayCallError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.name = 'RelayCallError';
    this.status = status;
  }
}

export interface SdpAnswer {
  sdp: string;
  /** Absolute URL of the session resource on the relay (RFC 9725 §4.2 Location). */
  location: string;
  /** Last path segment of the location: the relay-side session id. */
  session: string;
  etag?: string;
}

function signalOf(timeoutMs: number, outer?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  return outer ? AbortSignal.any([t, outer]) : t;
}

/** POST an SDP offer to `{relayUrl}/{kind}/{stream}` and return the answer. */
export async function postOffer(
  relayUrl: string,
  kind: 'whip' | 'whep',
  stream: string,
  sdp: string,
  token: string,
  opts: { viewer?: string; timeoutMs: number; signal?: AbortSignal },
): Promise<SdpAnswer> {
  const url = new URL(`${relayUrl}/${kind}/${encodeURIComponent(stream)}`);
  if (opts.viewer) url.searchParams.set('viewer', opts.viewer);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: sdp,
      signal: signalOf(opts.timeoutMs, opts.signal),
      redirect: 'manual',
    });
  } catch (e) {
    throw new RelayCallError(`relay ${relayUrl} did not answer the ${kind.toUpperCase()} offer: ${(e as Error).message}`);
  }
  const body = await res.text().catch(() => '');
  if (res.status !== 201) throw new RelayCallError(`relay ${relayUrl} answered ${res.status} to the ${kind.toUpperCase()} offer: ${body.slice(0, 200)}`, res.status);
  const loc = res.headers.get('location');
  if (!loc) throw new RelayCallError(`relay ${relayUrl} sent no Location with its answer`, res.status);
  const location = new URL(loc, url).toString();
  const session = new URL(location).pathname.split('/').filter(Boolean).pop() ?? '';
  const etag = res.headers.get('etag') ?? undefined;
  return { sdp: body, location, session, ...(etag ? { etag } : {}) };
}

/** DELETE a relay session resource; failures are reported, not thrown (the relay may be dead). */
export async function deleteSession(location: string, token: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Is the relay alive? GET /healthz within `timeoutMs`. Any HTTP answer counts as alive (a relay
 * that answers 503 is up, just not healthy). 'refused' means nothing listens at its address (a
 * crashed or killed process on a live host): dead for certain. 'silent' (timeout, reset, host
 * unreachable) proves nothing: a relay whose event loop is busy looks the same.
 */
export async function probeRelay(relayUrl: string, timeoutMs: number): Promise<'alive' | 'refused' | 'silent'> {
  try {
    const res = await fetch(`${relayUrl}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    return 'alive';
  } catch (e) {
    const code = ((e as { cause?: { code?: string } }).cause?.code) ?? '';
    return code === 'ECONNREFUSED' ? 'refused' : 'silent';
  }
}

let controlIds = 1;

/** POST a ControlRequest (pull / unpull / drain) to a relay's /control endpoint. */
export async function control(relayUrl: string, op: Record<string, unknown>, token: string, timeoutMs: number): Promise<void> {
  const id = controlIds = (controlIds % 0xffff_fffe) + 1;
  let res: Response;
  try {
    res = await fetch(`${relayUrl}/control`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-protobuf', Authorization: `Bearer ${token}` },
      body: Buffer.from(encodeControl({ id, ...op })),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new RelayCallError(`relay ${relayUrl} control call failed: ${(e as Error).message}`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer().catch(() => new ArrayBuffer(0)));
  const isProto = (res.headers.get('content-type') ?? '').includes('protobuf');
  let r: { ok?: boolean; error?: string } | undefined;
  if (isProto) {
    try {
      r = decodeControlResponse(bytes);
    } catch {
      r = undefined;
    }
  }
  if (res.ok && (!r || r.ok)) return;
  const why = r?.error ?? Buffer.from(bytes).toString('utf8').slice(0, 200);
  throw new RelayCallError(`relay ${relayUrl} refused control (${res.status}): ${why}`, res.status);
}
