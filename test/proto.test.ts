import { describe, it, expect } from 'vitest';
import { encodeEnvelope, decodeEnvelope, MsgType, WireError, MAX_FRAME_BYTES } from '../src/proto/index.ts';

describe('Envelope codec', () => {
  it('round-trips a join with its request id', () => {
    const bytes = encodeEnvelope({ type: MsgType.JOIN, id: 42, join: { stream: 'cam', role: 'watch', token: 't', region: 'eu' } });
    expect(decodeEnvelope(bytes)).toMatchObject({ type: MsgType.JOIN, id: 42, join: { stream: 'cam', region: 'eu' }, body: 'join' });
  });

  it('rejects malformed and oversized frames with WireError', () => {
    expect(() => decodeEnvelope(new Uint8Array([0x0a, 0xff, 0xff, 0xff]))).toThrow(WireError);
    const big = new Uint8Array(MAX_FRAME_BYTES + 1);
    try {
      decodeEnvelope(big);
      expect.unreachable();
    } catch (e) {
      expect((e as WireError).code).toBe('too_large');
    }
  });

  it('refuses to encode a message that does not match the schema', () => {
    expect(() => encodeEnvelope({ type: MsgType.JOIN, id: 'x' })).toThrow(TypeError);
  });
});
