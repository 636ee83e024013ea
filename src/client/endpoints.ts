/**
 * Where a player talks to: one stream URL names both the standard WHEP endpoint on signaling
 * and the WebSocket endpoint beside it. Pure, tested in Node.
 */
export class PlayerOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlayerOptionsError';
  }
}

export interface StreamEndpoints {
  /** Signaling's base URL (scheme, host, port, and any path prefix before /whep/). */
  base: string;
  stream: string;
  /** `{base}/whep/{stream}`: any WHEP player can use it. */
  whep: string;
  /** `ws(s)://…{prefix}/ws`: the Canopy WebSocket protocol. */
  ws: string;
}

/** Parse `https://live.example.com/whep/cam1` (the stream's WHEP URL on signaling). */
export function streamEndpoints(url: string): StreamEndpoints {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PlayerOptionsError(`"${url}" is not an absolute URL; pass the stream's WHEP URL on signaling, e.g. https://live.example.com/whep/cam1`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PlayerOptionsError(`"${url}" must be http(s): pass the stream's WHEP URL on signaling, e.g. https://live.example.com/whep/cam1`);
  }
  const m = /^(.*)\/whep\/([^/]+)\/?$/.exec(u.pathname);
  if (!m) throw new PlayerOptionsError(`"${url}" does not end in /whep/{stream}; pass e.g. https://live.example.com/whep/cam1`);
  const prefix = m[1]!;
  const stream = decodeURIComponent(m[2]!);
  const base = `${u.origin}${prefix}`;
  const wsScheme = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return { base, stream, whep: `${base}/whep/${encodeURIComponent(stream)}`, ws: `${wsScheme}//${u.host}${prefix}/ws` };
}
