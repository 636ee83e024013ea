/**
 * Admission limits, sans-IO: every decision takes `now` in milliseconds.
 */

/** Token bucket: `rate` tokens per second, at most `burst` saved up. */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;
  constructor(rate: number, burst: number, now: number) {
    if (!(rate > 0)) throw new RangeError(`TokenBucket: rate must be > 0 per second, got ${rate}`);
    if (!(burst >= 1)) throw new RangeError(`TokenBucket: burst must be >= 1, got ${burst}`);
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }
  /** Take one token if available. */
  take(now: number): boolean {
    // A clock that goes backwards (it should not) refills nothing rather than going negative.
    const dt = Math.max(0, now - this.#last);
    this.#last = Math.max(this.#last, now);
    this.#tokens = Math.min(this.#burst, this.#tokens + (dt * this.#rate) / 1000);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** Counts open things (WebSocket sessions) per key (client IP) against a ceiling. */
export class PerKeyLimit {
  readonly #max: number;
  readonly #open = new Map<string, number>();
  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new RangeError(`PerKeyLimit: max must be an integer >= 1, got ${max}`);
    this.#max = max;
  }
  tryAcquire(key: string): boolean {
    const n = this.#open.get(key) ?? 0;
    if (n >= this.#max) return false;
    this.#open.set(key, n + 1);
    return true;
  }
  release(key: string): void {
    const n = this.#open.get(key) ?? 0;
    if (n <= 1) this.#open.delete(key);
    else this.#open.set(key, n - 1);
  }
  count(key: string): number {
    return this.#open.get(key) ?? 0;
  }
}
