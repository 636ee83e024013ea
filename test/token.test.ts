import { createHmac } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { signToken, verifyToken, authorize, bearer, mintToken, TokenError } from '../src/auth/token.ts';

const secret = 'test-secret';
const now = 1_700_000_000_000;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof TokenError) return e.code;
    throw e;
  }
  return 'ok';
}

describe('verifyToken', () => {
  const good = mintToken(secret, 'cam1', 'watch', 60, now);

  it('accepts a valid token and returns its claims', () => {
    expect(verifyToken(good, secret, now)).toMatchObject({ stream: 'cam1', role: 'watch', exp: now / 1000 + 60 });
  });

  it.each([
    ['missing', undefined],
    ['malformed', 'abc'],
    ['malformed', 'a.b.c'],
    ['malformed', 'x'.repeat(5000)],
    ['bad_signature', good.slice(0, -2) + (good.endsWith('AA') ? 'BB' : 'AA')],
    ['bad_signature', mintToken('other', 'cam1', 'watch', 60, now)],
    ['malformed', signToken({ stream: 'cam1', role: 'watch', exp: 1 }, secret).replace(/^[^.]+/, Buffer.from('{"alg":"none"}').toString('base64url'))],
  ])('rejects %s: %s', (code, tok) => {
    expect(codeOf(() => verifyToken(tok as string | undefined, secret, now))).toBe(code);
  });

  it('rejects an expired token at exactly exp', () => {
    expect(codeOf(() => verifyToken(good, secret, now + 60_000))).toBe('expired');
    expect(codeOf(() => verifyToken(good, secret, now + 59_999))).toBe('ok');
  });

  it('rejects claims of the wrong shape even when signed', () => {
    const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const p = Buffer.from(JSON.stringify({ stream: 'cam1', role: 'root', exp: now / 1000 + 60 })).toString('base64url');
    const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
    expect(codeOf(() => verifyToken(`${h}.${p}.${s}`, secret, now))).toBe('malformed');
    expect(() => signToken({ stream: 'cam1', role: 'root' as never, exp: 1 }, secret)).toThrow(TypeError);
  });
});

describe('authorize', () => {
  it('maps role and stream mismatches to 403', () => {
    const t = mintToken(secret, 'cam1', 'watch', 60, now);
    const e1 = (() => { try { authorize(t, secret, now, 'publish', 'cam1'); } catch (e) { return e as TokenError; } })();
    expect(e1?.code).toBe('wrong_role');
    expect(e1?.status).toBe(403);
    const e2 = (() => { try { authorize(t, secret, now, 'watch', 'cam2'); } catch (e) { return e as TokenError; } })();
    expect(e2?.code).toBe('wrong_stream');
  });

  it('lets admin do anything and relay watch any stream', () => {
    expect(authorize(mintToken(secret, '*', 'admin', 60, now), secret, now, 'publish', 'x').role).toBe('admin');
    expect(authorize(mintToken(secret, '*', 'relay', 60, now), secret, now, 'watch', 'y').role).toBe('relay');
  });
});

describe('bearer', () => {
  it('extracts the token from an Authorization header', () => {
    expect(bearer('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearer('bearer   xyz')).toBe('xyz');
    expect(bearer('Basic xyz')).toBeUndefined();
    expect(bearer(undefined)).toBeUndefined();
  });
});
