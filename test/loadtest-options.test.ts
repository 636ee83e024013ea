import { describe, expect, it } from 'vitest';
import { LoadtestOptionsError, validate } from '../loadtest/run.ts';

describe('load tester options', () => {
  const ok = { spawn: true, viewers: 10, durationMs: 10_000 };
  it('fills defaults', () => {
    expect(validate(ok)).toMatchObject({ scenario: 'steady', stream: 'loadtest', protocol: 'ws', fullEvery: 10, bitrate: 'high', keyframeIntervalS: 4 });
  });
  it.each([
    ['neither --spawn nor --signaling', { viewers: 10, durationMs: 10_000 }, /--signaling URL.*--spawn/],
    ['both', { ...ok, signalingUrl: 'http://127.0.0.1:8080' }, /exclusive/],
    ['zero viewers', { ...ok, viewers: 0 }, /--viewers/],
    ['too short', { ...ok, durationMs: 500 }, /--duration/],
    ['unknown scenario', { ...ok, scenario: 'party' as never }, /--scenario/],
    ['chaos without --spawn', { signalingUrl: 'http://127.0.0.1:8080', publishToken: 'p', watchToken: 'w', viewers: 1, durationMs: 5000, scenario: 'chaos' as const }, /--spawn/],
    ['ramp longer than the run', { ...ok, rampMs: 20_000 }, /--ramp/],
    ['kill outside the run', { ...ok, scenario: 'chaos' as const, killRelayAtMs: 10_000 }, /--kill-relay-at/],
    ['external without tokens', { signalingUrl: 'http://127.0.0.1:8080', viewers: 1, durationMs: 5000 }, /token/],
    ['a remote host', { signalingUrl: 'http://example.com', publishToken: 'p', watchToken: 'w', viewers: 1, durationMs: 5000 }, /refusing/],
  ])('rejects %s', (_n, o, msg) => {
    expect(() => validate(o)).toThrow(LoadtestOptionsError);
    expect(() => validate(o)).toThrow(msg);
  });
});
