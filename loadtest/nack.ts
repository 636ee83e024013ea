/**
 * NACK scheduling for light viewers, which read headers without handing packets to werift and
 * so must ask for retransmissions themselves (RFC 4585 section 6.2.1 Generic NACK). Sans-IO:
 * gaps go in with the time, due requests come out; the caller sends them.
 */
import { seqDiff16 } from './metrics.ts';

export interface NackOptions {
  /** Wait this long after seeing a gap before the first request (reordering tolerance). */
  firstDelayMs?: number;
  /** Between repeated requests for the same packet. */
  retryMs?: number;
  /** Requests per packet before giving up. */
  maxTries?: number;
  /** Missing packets tracked at once; older ones are dropped first. */
  maxMissing?: number;
}

interface Missing {
  nextAt: number;
  tries: number;
}

export class NackScheduler {
  readonly firstDelayMs: number;
  readonly retryMs: number;
  readonly maxTries: number;
  readonly maxMissing: number;
  #missing = new Map<number, Missing>();
  #highest: number | undefined;

  constructor(o: NackOptions = {}) {
    this.firstDelayMs = o.firstDelayMs ?? 5;
    this.retryMs = o.retryMs ?? 40;
    this.maxTries = o.maxTries ?? 4;
    this.maxMissing = o.maxMissing ?? 512;
    if (!(this.retryMs > 0 && this.maxTries >= 1 && this.maxMissing >= 1 && this.firstDelayMs >= 0)) {
      throw new RangeError('NackScheduler: retryMs must be > 0, maxTries and maxMissing >= 1, firstDelayMs >= 0');
    }
  }

  /** Record an arrived 16-bit seq. */
  onPacket(seq: number, now: number): void {
    if (this.#highest === undefined) {
      this.#highest = seq;
      return;
    }
    const d = seqDiff16(seq, this.#highest);
    if (d > 0) {
      // Everything between the old highest and this one is missing (bounded by maxMissing).
      const gap = Math.min(d - 1, this.maxMissing);
      for (let i = d - gap; i < d; i++) this.#add((this.#highest + i) & 0xffff, now);
      this.#highest = seq;
    } else {
      this.#missing.delete(seq);
    }
  }

  #add(seq: number, now: number): void {
    this.#missing.set(seq, { nextAt: now + this.firstDelayMs, tries: 0 });
    while (this.#missing.size > this.maxMissing) this.#missing.delete(this.#missing.keys().next().value as number);
  }

  /** Seqs to request now. */
  poll(now: number): number[] {
    const out: number[] = [];
    for (const [seq, m] of this.#missing) {
      if (m.nextAt > now) continue;
      out.push(seq);
      m.tries++;
      if (m.tries >= this.maxTries) this.#missing.delete(seq);
      else m.nextAt = now + this.retryMs;
    }
    return out;
  }

  get missing(): number {
    return this.#missing.size;
  }
}
