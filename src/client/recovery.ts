/**
 * What the player does when something goes wrong: pure decisions, time passed in, so the rules
 * are tested in Node and the player only carries them out.
 */

/** Signaling error codes (ErrorCode names without ERR_, lower case) that retrying cannot fix. */
const FATAL = new Set(['unauthorized', 'forbidden', 'malformed', 'unknown_type']);

/** A token problem or a protocol mismatch will fail the same way again; everything else may pass. */
export function isFatal(code: string): boolean {
  return FATAL.has(code);
}

export type MediaLostAction = { kind: 'reconnect' } | { kind: 'await-migrate'; ms: number };

/**
 * ICE failed/disconnected or frames stopped. Over plain WHEP nobody else will act: re-POST now.
 * Over the socket, signaling learns of a dead relay when its lease runs out and sends MIGRATE
 * with a placement it has already reserved, which beats a blind rejoin; wait that long first.
 */
export function onMediaLost(mode: 'ws' | 'whep', migrateGraceMs: number): MediaLostAction {
  return mode === 'whep' ? { kind: 'reconnect' } : { kind: 'await-migrate', ms: migrateGraceMs };
}

/** True when a playing stream has shown no new frame for longer than `stallMs`. */
export function isStalled(playing: boolean, nowMs: number, lastFrameAtMs: number, stallMs: number): boolean {
  return playing && nowMs - lastFrameAtMs > stallMs;
}

/**
 * True when a new peer connection has not decoded its first frame within `timeoutMs`: the relay
 * took the offer but no media comes (e.g. its pull from the parent failed). Rejoin rather than
 * wait forever in `negotiating`.
 */
export function firstFrameOverdue(hasFirstFrame: boolean, nowMs: number, pcStartedAtMs: number, timeoutMs: number): boolean {
  return !hasFirstFrame && nowMs - pcStartedAtMs > timeoutMs;
}

/**
 * An ERROR that answers no request of ours (id 0: the session's state changed, e.g. the stream
 * ended or no relay had room for a move). A stale reply to a request we gave up on is ignored,
 * as is a rate limit on a fire-and-forget message (STATS, PING); a fatal code stops the player;
 * anything else means the session is gone, so rejoin.
 */
export function unsolicitedError(code: string, id: number): 'fail' | 'ignore' | 'rejoin' {
  if (isFatal(code)) return 'fail';
  if (id !== 0 || code === 'rate_limited') return 'ignore';
  return 'rejoin';
}
