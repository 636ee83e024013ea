import { describe, it, expect } from 'vitest';
import { RtpPacket } from 'werift';
import { Core, Codec, Decision, Status, CoreCallError } from '../src/wasm/index.ts';
import { rtp, prng, VP8_KEY, VP8_DELTA } from './fixtures/core/rtp.ts';

describe('seeded operation fuzz', () => {
  it('random ingest / fanout / retransmit / switch / reset / export / close sequences never trap', () => {
    for (const seed of [5, 6, 7]) {
      const rnd = prng(seed);
      const pick = (n: number) => Math.floor(rnd() * n);
      const c = new Core({ maxStreams: 3, maxDownstreams: 6, outSlots: 4 });
      const open = [false, false, false];
      const dsOpen = [false, false, false, false, false, false];
      const seq = [0, 0, 0];
      const ts = [0, 0, 0];
      let outputs = 0;
      let refused = 0;
      const checkOut = (off: number, len: number) => {
        const p = RtpPacket.deSerialize(Buffer.from(c.view(off, len)));
        expect(p.header.version).toBe(2);
        outputs++;
      };
      for (let step = 0; step < 20000; step++) {
        const s = pick(3);
        const d = pick(6);
        const now = step * 2;
        const op = pick(100);
        try {
          if (op < 3) {
            if (open[s]) { c.closeStream(s); open[s] = false; } else {
              c.openStream(s, { clockRate: 90000, ringSize: 16 << pick(3), codecs: { 96: Codec.VP8 }, maxAgeMs: 200 });
              open[s] = true;
              seq[s] = pick(65536); ts[s] = pick(2 ** 32);
            }
          } else if (op < 6) {
            if (dsOpen[d]) { c.closeDownstream(d); dsOpen[d] = false; } else {
              c.openDownstream(d, { ssrc: d + 1, payloadType: 100, initialSeq: pick(65536), initialTs: pick(2 ** 32), requireKeyframe: rnd() < 0.5, ...(rnd() < 0.5 ? { rtxSsrc: 99, rtxPayloadType: 101 } : {}) });
              dsOpen[d] = true;
            }
          } else if (op < 10) {
            if (dsOpen[d]) c.setSource(d, open[s] ? s : -1);
          } else if (op < 11) {
            if (open[s]) c.resetStream(s);
          } else if (op < 12) {
            if (dsOpen[d]) { const st = c.exportState(d); const d2 = (d + 1) % 6; if (dsOpen[d2]) c.importState(d2, st); }
          } else if (op < 13) {
            if (dsOpen[d]) c.switchSource(d);
          } else if (op < 20) {
            const dec = c.retransmit(d, pick(65536), now);
            if (dec === Decision.RETRANSMIT) checkOut(c.outOffset, c.outLength);
          } else {
            // Mostly in order, sometimes reordered, duplicated, jumping or malformed.
            const r = rnd();
            let q = seq[s]!;
            if (r < 0.05) q = (q - 1 - pick(40)) & 0xffff;
            else if (r < 0.07) q = (q + pick(65536)) & 0xffff;
            else if (r < 0.12) q = (q + 1 + pick(20)) & 0xffff;
            else q = (q + 1) & 0xffff;
            if (r >= 0.05) seq[s] = q;
            ts[s] = (ts[s]! + (rnd() < 0.3 ? 3000 : 0)) >>> 0;
            let b = rtp({ seq: q, ts: ts[s], payload: rnd() < 0.05 ? VP8_KEY : VP8_DELTA, padding: rnd() < 0.1 ? 1 + pick(8) : 0 });
            if (rnd() < 0.03) { b = b.slice(); b[pick(b.length)] = pick(256); }
            const code = c.ingestPacket(s, b, now);
            if (!open[s]) expect(code).toBe(Status.ERR_STREAM);
            if (code === Status.OK && rnd() < 0.9) {
              let cursor = -1;
              do {
                const n = c.fanout(s, c.pktSlot, now, cursor);
                expect(n).toBeGreaterThanOrEqual(0);
                for (let i = 0; i < n; i++) {
                  expect(dsOpen[c.fanoutDownstream(i)]).toBe(true);
                  if (c.fanoutOffset(i) !== 0) {
                    expect(c.fanoutLength(i)).toBe(b.length);
                    checkOut(c.fanoutOffset(i), c.fanoutLength(i));
                  }
                }
                cursor = c.fanoutCursor;
              } while (cursor !== -1);
            }
          }
        } catch (err) {
          // Control calls may be refused (e.g. importing into a closed slot); nothing else may throw.
          if (!(err instanceof CoreCallError)) throw err;
          refused++;
        }
      }
      expect(outputs).toBeGreaterThan(1000);
      // Every control call above is made only when valid, so none may be refused.
      expect(refused).toBe(0);
    }
  });
});
