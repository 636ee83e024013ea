/**
 * Reconnect backoff: exponential with full jitter (the "full jitter" scheme: a random delay in
 * [0, min(cap, base * 2^attempt)]), so that viewers dropped by the same relay failure do not
 * all come back in the same millisecond. Pure: the random draw is an argument.
 */
export interface BackoffOptions {
  /** First ceiling, ms. */
  initialMs: number;
  /** Largest ceiling, ms. */
  maxMs: number;
  /** Smallest delay, ms, so a tight loop is impossible even with a zero draw. */
  minMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 5000, minMs: 50 };

export class BackoffOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackoffOptionsError';
  }
}

export function validateBackoff(o: BackoffOptions): BackoffOptions {
  if (!(o.minMs >= 0) || !(o.initialMs > 0) || !(o.maxMs >= o.initialMs) || o.minMs > o.maxMs) {
    throw new BackoffOptionsError(
      `backoff needs 0 <= minMs <= maxMs and 0 < initialMs <= maxMs (got min ${o.minMs}, initial ${o.initialMs}, max ${o.maxMs})`,
    );
  }
  return o;
}

/** Delay before reconnect attempt number `attempt` (0 = first retry); `rand` is in [0, 1). */
export function backoffDelay(attempt: number, o: BackoffOptions, rand: number): number {
  const ceiling = Math.min(o.maxMs, o.initialMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.max(o.minMs, Math.floor(ceiling * Math.min(Math.max(rand, 0), 1)));
}
