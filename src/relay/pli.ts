/**
 * Keyframe-request merging (DESIGN "Fast join"; RFC 4585 §6.3.1 PLI, RFC 5104 §4.3.1 FIR).
 * However many downstreams ask, at most one upstream request per track per interval. A request
 * that arrives inside the interval is remembered and sent when the interval ends, so the last
 * asker is not starved. Sans-IO: time is passed in; the caller sends what `poll` returns.
 */
export class PliMerger {
  readonly intervalMs: number;
  #lastSent = Number.NEGATIVE_INFINITY;
  #pending = false;
  #sent = 0;
  #merged = 0;

  constructor(intervalMs: number) {
    if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
      throw new RangeError(`PliMerger: intervalMs must be a positive number of milliseconds, got ${intervalMs}`);
    }
    this.intervalMs = intervalMs;
  }

  /** A downstream asked for a keyframe at `now`. Returns true when the caller must send upstream now. */
  request(now: number): boolean {
    if (now - this.#lastSent >= this.intervalMs) {
      this.#lastSent = now;
      this.#pending = false;
      this.#sent++;
      return true;
    }
    this.#pending = true;
    this.#merged++;
    return false;
  }

  /** Called from a timer: true when a merged request is due now. */
  poll(now: number): boolean {
    if (this.#pending && now - this.#lastSent >= this.intervalMs) {
      this.#pending = false;
      this.#lastSent = now;
      this.#sent++;
      return true;
    }
    return false;
  }

  /** A keyframe arrived: pending requests are satisfied. */
  keyframeArrived(): void {
    this.#pending = false;
  }

  /** Forget the last send (new upstream: its first request goes out at once). */
  reset(): void {
    this.#lastSent = Number.NEGATIVE_INFINITY;
    this.#pending = false;
  }

  get pending(): boolean {
    return this.#pending;
  }
  get sent(): number {
    return this.#sent;
  }
  get merged(): number {
    return this.#merged;
  }
}
