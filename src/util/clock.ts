/**
 * Time as a parameter. Decision code takes a Clock and never reads the wall clock itself, so
 * tests advance a FakeClock instead of sleeping.
 */
export interface Clock {
  /** Milliseconds, monotonic within one process. */
  now(): number;
}

export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
};

export class FakeClock implements Clock {
  #t: number;
  constructor(start = 0) {
    this.#t = start;
  }
  now(): number {
    return this.#t;
  }
  advance(ms: number): number {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ms must be >= 0, got ${ms}`);
    this.#t += ms;
    return this.#t;
  }
  set(ms: number): void {
    this.#t = ms;
  }
}
