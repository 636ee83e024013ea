/**
 * Packet index bookkeeping: RFC 3711 §3.3.1 (ROC estimate) and §3.3.2 (replay list). Pure
 * functions and small state objects, no clock, no IO.
 */

/**
 * RFC 3711 Appendix A: the ROC to use for `seq` given the highest sequence number seen so far
 * (`sl`) and the current ROC. Returns roc - 1, roc or roc + 1; -1 means "before the start".
 * Comparisons are on 16-bit distance, so they are wrap-aware.
 */
export function estimateRoc(seq: number, sl: number, roc: number): number {
  if (sl < 32768) {
    return seq - sl > 32768 ? roc - 1 : roc;
  }
  return sl - 32768 > seq ? roc + 1 : roc;
}

/** Per-SSRC index state of one direction of an SRTP crypto context. */
export class IndexState {
  /** Highest sequence number seen (s_l). */
  sl = 0;
  roc = 0;
  /** Extended index of s_l: roc * 65536 + sl. */
  get highest(): number {
    return this.roc * 65536 + this.sl;
  }
  constructor(seq: number, roc: number) {
    this.sl = seq;
    this.roc = roc;
  }
  /** RFC 3711 §3.3.1: only a packet newer than s_l advances s_l and the ROC. */
  advance(seq: number, v: number): void {
    if (v > this.roc || (v === this.roc && seq > this.sl)) {
      this.roc = v;
      this.sl = seq;
    }
  }
}

/** Replay window of RFC 3711 §3.3.2 over extended indexes (48-bit SRTP or 31-bit SRTCP). */
export const REPLAY_WINDOW = 128;

export class ReplayWindow {
  #max = -1;
  readonly #seen = new Uint8Array(REPLAY_WINDOW);

  /** True when `index` is new and inside the window (not yet accepted). */
  check(index: number): boolean {
    if (index > this.#max) return true;
    if (this.#max - index >= REPLAY_WINDOW) return false;
    return this.#seen[index % REPLAY_WINDOW] === 0;
  }

  /** Record `index` as received; call only after the packet authenticated. */
  accept(index: number): void {
    const seen = this.#seen;
    if (index > this.#max) {
      const d = this.#max < 0 ? REPLAY_WINDOW : index - this.#max;
      if (d >= REPLAY_WINDOW) seen.fill(0);
      else for (let i = this.#max + 1; i < index; i++) seen[i % REPLAY_WINDOW] = 0;
      this.#max = index;
    }
    seen[index % REPLAY_WINDOW] = 1;
  }
}
