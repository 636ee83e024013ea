/**
 * Host-only ICE gathering for werift without a STUN round.
 *
 * werift 0.25 always has a STUN server: an empty `iceServers` becomes stun.l.google.com:19302
 * (ice.ts DEFAULT_STUN_SERVER), and gathering waits for that server's answer or for
 * `iceStunGatherTimeout`. hostOnlyIce (media.ts) therefore points STUN at the loopback discard
 * port with a 50 ms cap, which still costs every gathering those 50 ms: measured on a chaos run,
 * 50 ms on the viewer before its offer and 50 ms on the relay before its answer, for every join
 * and every migration.
 *
 * werift's ICE `Connection` derives its STUN server in one method,
 * `applyStunTurnServersFromOptions`, and gathers server-reflexive candidates only when
 * `this.stunServer` is set (ice.ts getCandidatePromises). Wrapping that method so a connection
 * configured with exactly the NO_STUN sentinel ends with no STUN server makes gathering finish as
 * soon as the host sockets are bound. Any other configuration is untouched, and if werift's
 * shape ever changes the wrapper is not installed and the sentinel still works the old way
 * (a 50 ms unanswered STUN request).
 *
 * Set CANOPY_WERIFT_SKIP_STUN=0 to keep werift's gathering (to compare, or to rule this out).
 */
import { Connection } from 'werift';

/** The STUN URL hostOnlyIce gives werift when no STUN is wanted: the loopback discard port. */
export const NO_STUN_URL = 'stun:127.0.0.1:9';
const NO_STUN_HOST = '127.0.0.1';
const NO_STUN_PORT = 9;

let installed: boolean | undefined;

interface ConnectionLike {
  options?: { stunServer?: [string, number] | undefined };
  stunServer?: [string, number] | undefined;
}

/** Whether a connection's configured STUN server is the NO_STUN sentinel. */
function isSentinel(addr: [string, number] | undefined): boolean {
  return Array.isArray(addr) && addr[0] === NO_STUN_HOST && Number(addr[1]) === NO_STUN_PORT;
}

/**
 * Make werift skip the STUN round for connections configured with NO_STUN_URL (idempotent).
 * Returns whether the skip is in effect.
 */
export function skipSentinelStun(): boolean {
  if (installed !== undefined) return installed;
  installed = false;
  if (process.env['CANOPY_WERIFT_SKIP_STUN'] === '0') return false;
  const proto = (Connection as unknown as { prototype?: Record<string, unknown> }).prototype;
  const orig = proto?.['applyStunTurnServersFromOptions'];
  if (typeof orig !== 'function') return false;
  proto!['applyStunTurnServersFromOptions'] = function (this: ConnectionLike, ...args: unknown[]) {
    const r = (orig as (...a: unknown[]) => unknown).apply(this, args);
    if (isSentinel(this.options?.stunServer)) this.stunServer = undefined;
    return r;
  };
  installed = true;
  return true;
}
