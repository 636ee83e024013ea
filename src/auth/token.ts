/**
 * Mesh tokens: HS256 JWTs (RFC 7519) with claims `stream`, `role` and `exp`, signed with the mesh
 * secret (CANOPY_SECRET). Verification is constant-time and takes the time as an argument.
 */
import { createHmac, timingSafeEqual, randomBytes } from 'node:crypto';

export type Role = 'publish' | 'watch' | 'relay' | 'admin';
export const ROLES: readonly Role[] = ['publish', 'watch', 'relay', 'admin'];

export interface Claims {
  /** Stream name, or '*' for any stream (admin and relay tokens). */
  stream: string;
  role: Role;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Optional subject: the relay id a relay-scoped token was issued for. */
  sub?: string;
}

export type TokenErrorCode = 'missing' | 'malformed' | 'bad_signature' | 'expired' | 'wrong_role' | 'wrong_stream';

export class TokenError extends Error {
  readonly code: TokenErrorCode;
  /** HTTP status this error maps to: 401 when no valid credential, 403 when it does not allow the action. */
  readonly status: 401 | 403;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = 'TokenError';
    this.code = code;
    this.status = code === 'wrong_role' || code === 'wrong_stream' ? 403 : 401;
  }
}

const MAX_TOKEN_LENGTH = 4096;
const b64url = (b: Buffer): string => b.toString('base64url');
const HEADER = b64url(Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })));

export function signToken(claims: Claims, secret: string): string {
  if (!secret) throw new TypeError('signToken: the mesh secret is empty; set CANOPY_SECRET');
  if (!ROLES.includes(claims.role)) throw new TypeError(`signToken: unknown role ${claims.role}`);
  const payload = b64url(Buffer.from(JSON.stringify(claims)));
  const sig = b64url(createHmac('sha256', secret).update(`${HEADER}.${payload}`).digest());
  return `${HEADER}.${payload}.${sig}`;
}

/** Mint a token that expires `ttlSeconds` after `nowMs`. */
export function mintToken(
  secret: string,
  stream: string,
  role: Role,
  ttlSeconds: number,
  nowMs: number,
  sub?: string,
): string {
  const claims: Claims = { stream, role, exp: Math.floor(nowMs / 1000) + ttlSeconds };
  if (sub !== undefined) claims.sub = sub;
  return signToken(claims, secret);
}

/** Verify signature, shape and expiry. Throws TokenError; never anything else. */
export function verifyToken(token: string | undefined | null, secret: string, nowMs: number): Claims {
  if (!token) throw new TokenError('missing', 'no token: send Authorization: Bearer <token>');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError('malformed', 'token too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenError('malformed', 'token is not a JWT (expected three dot-separated parts)');
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    throw new TokenError('malformed', 'token header or payload is not base64url JSON');
  }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== 'HS256') {
    throw new TokenError('malformed', 'token alg must be HS256');
  }
  const expected = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new TokenError('bad_signature', 'token signature does not match the mesh secret');
  }
  const c = claims as Partial<Claims>;
  if (typeof c !== 'object' || c === null || typeof c.stream !== 'string' || typeof c.exp !== 'number' || !ROLES.includes(c.role as Role)) {
    throw new TokenError('malformed', 'token claims must include stream (string), role (publish|watch|relay|admin) and exp (number)');
  }
  if (c.exp * 1000 <= nowMs) throw new TokenError('expired', 'token expired');
  return c as Claims;
}

/**
 * Verify and check the token allows `role` on `stream`. Admin tokens allow everything; relay
 * tokens allow watching (a child relay pulls over WHEP) and relaying.
 */
export function authorize(token: string | undefined | null, secret: string, nowMs: number, role: Role, stream: string): Claims {
  const c = verifyToken(token, secret, nowMs);
  const roleOk = c.role === 'admin' || c.role === role || (c.role === 'relay' && role === 'watch');
  if (!roleOk) throw new TokenError('wrong_role', `token role ${c.role} may not ${role}`);
  if (c.stream !== '*' && c.stream !== stream) throw new TokenError('wrong_stream', `token is for stream ${c.stream}, not ${stream}`);
  return c;
}

/** Extract the bearer token from an Authorization header value (or a raw token). */
export function bearer(header: string | undefined | null): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
  return m ? m[1] : undefined;
}

export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}
