/**
 * bench:core — per-packet cost of the relay hot path: ingest (copy into the ring, parse +
 * RFC 8285 walk, unwrap, ring store + seq index, keyframe check, RFC 3550 stats, NACK table) plus
 * a rewrite (copy + SSRC/PT/seq/ts patch) for 8 downstreams, in the WASM core vs a plain
 * TypeScript implementation of the same work on Buffers. Both produce byte-identical output
 * (checked before timing). Prints figures, then one JSON line.
 */
import { Core, Codec, Status } from '../src/wasm/index.ts';

const DOWNSTREAMS = 8;
const PACKET = 1200;
const RING = 1024;
const SLOT = 1536;
const HDR = 32;

// ---------------------------------------------------------------------------------------------
// Plain TypeScript reference: same semantics as assembly/, written for speed the usual way
// (preallocated Buffers and typed arrays, a reused parse result, no per-packet objects).

class Parsed {
  ssrc = 0; pt = 0; marker = 0; seq = 0; ts = 0; hdr = 0; pay = 0; pad = 0;
  absOff = -1; twcc = -1;
}

const ERR = { SHORT: -1, VERSION: -2, CSRC: -3, EXT_HEADER: -4, EXT_LENGTH: -5, EXT_ELEMENT: -6, PADDING: -7 };

function parseRtp(b: Buffer, p: number, len: number, out: Parsed, absId: number, twccId: number): number {
  out.absOff = -1; out.twcc = -1;
  if (len < 12) return ERR.SHORT;
  const b0 = b[p]!;
  if (b0 >> 6 !== 2) return ERR.VERSION;
  const b1 = b[p + 1]!;
  let h = 12 + ((b0 & 15) << 2);
  if (h > len) return ERR.CSRC;
  if (b0 & 0x10) {
    if (h + 4 > len) return ERR.EXT_HEADER;
    const profile = b.readUInt16BE(p + h);
    const n = b.readUInt16BE(p + h + 2) << 2;
    const e = h + 4;
    if (e + n > len) return ERR.EXT_LENGTH;
    let i = 0;
    if (profile === 0xbede) {
      while (i < n) {
        const x = b[p + e + i]!;
        const id = x >> 4;
        if (id === 0) { i++; continue; }
        if (id === 15) break;
        const l = (x & 15) + 1;
        if (i + 1 + l > n) return ERR.EXT_ELEMENT;
        const v = p + e + i + 1;
        if (id === absId) { if (l === 8 || l === 16) out.absOff = v; }
        else if (id === twccId) { if (l >= 2) out.twcc = b.readUInt16BE(v); }
        i += 1 + l;
      }
    } else if ((profile & 0xfff0) === 0x1000) {
      while (i < n) {
        const id = b[p + e + i]!;
        if (id === 0) { i++; continue; }
        if (i + 2 > n) return ERR.EXT_ELEMENT;
        const l = b[p + e + i + 1]!;
        if (i + 2 + l > n) return ERR.EXT_ELEMENT;
        const v = p + e + i + 2;
        if (id === absId) { if (l === 8 || l === 16) out.absOff = v; }
        else if (id === twccId) { if (l >= 2) out.twcc = b.readUInt16BE(v); }
        i += 2 + l;
      }
    }
    h = e + n;
  }
  let pad = 0;
  if (b0 & 0x20) {
    pad = b[p + len - 1]!;
    if (pad === 0 || h + pad > len) return ERR.PADDING;
  }
  out.ssrc = b.readUInt32BE(p + 8);
  out.pt = b1 & 0x7f;
  out.marker = b1 >> 7;
  out.seq = b.readUInt16BE(p + 2);
  out.ts = b.readUInt32BE(p + 4);
  out.hdr = h; out.pay = len - h - pad; out.pad = pad;
  return 0;
}

function vp8Key(b: Buffer, p: number, n: number): boolean {
  if (n <= 0) return false;
  const x0 = b[p]!;
  if ((x0 & 0x10) === 0 || (x0 & 7) !== 0) return false;
  let i = 1;
  if (x0 & 0x80) {
    if (i >= n) return false;
    const x = b[p + i]!; i++;
    if (x & 0x80) { if (i >= n) return false; i += b[p + i]! & 0x80 ? 2 : 1; }
    if (x & 0x40) i++;
    if (x & 0x30) i++;
  }
  if (i >= n) return false;
  return (b[p + i]! & 1) === 0;
}

class RefStream {
  readonly ring = Buffer.alloc(RING * SLOT);
  readonly ext = new Float64Array(RING);
  readonly extTs = new Float64Array(RING);
  readonly arrival = new Float64Array(RING);
  readonly len = new Uint16Array(RING);
  readonly flags = new Uint8Array(RING);
  readonly index = new Int32Array(RING);
  readonly nackExt = new Float64Array(512).fill(-1);
  readonly nackDue = new Float64Array(512);
  readonly nackTries = new Uint8Array(512);
  readonly parsed = new Parsed();
  head = 0; started = false; highest = 0; base = 0; lastTs = 0; badSeq = -1;
  received = 0; jitter = 0; transit = 0; hasTransit = false; firstAt = 0;
  keyStart = -1; frameStart = -1; frameTs = -1;
  slot = -1; extSeq = 0; kf = false;
  constructor(readonly clockRate: number, readonly absId: number, readonly twccId: number) {}

  /** Copy into the ring and ingest; same decisions as assembly/stream.ts ingest(). */
  ingest(pkt: Buffer, now: number): number {
    const head = this.head;
    this.flags[head] = 0;
    this.slot = -1;
    const p = head * SLOT + HDR;
    const len = pkt.length;
    if (len > SLOT - HDR) return -8;
    pkt.copy(this.ring, p);
    const r = this.parsed;
    const code = parseRtp(this.ring, p, len, r, this.absId, this.twccId);
    if (code !== 0) return code;
    let ext: number;
    let advance: boolean;
    if (!this.started) {
      ext = 0x10000 + r.seq;
      this.started = true; this.base = ext; this.highest = ext - 1;
      this.lastTs = 2 ** 32 + r.ts; this.firstAt = now; advance = true;
    } else {
      const diff = ((r.seq - (this.highest % 65536)) << 16) >> 16;
      if (diff > 3000 || diff < -RING) {
        if (r.seq !== this.badSeq) { this.badSeq = (r.seq + 1) & 0xffff; return diff > 0 ? 3 : 2; }
        throw new Error('resync not exercised by this benchmark');
      }
      ext = this.highest + diff;
      advance = diff > 0;
      this.badSeq = -1;
    }
    const ip = ext & (RING - 1);
    if (!advance) {
      if (this.highest - ext >= RING) return 2;
      const e = this.index[ip]!;
      if (e !== 0 && this.flags[e - 1]! & 1 && this.ext[e - 1] === ext) return 1;
    }
    const tsd = (r.ts - (this.lastTs % 2 ** 32)) | 0;
    const extTs = this.lastTs + tsd;
    if (tsd > 0) this.lastTs = extTs;
    const kf = vp8Key(this.ring, p + r.hdr, r.pay);
    this.ext[head] = ext; this.extTs[head] = extTs; this.arrival[head] = now; this.len[head] = len;
    this.flags[head] = 1 | (r.marker ? 4 : 0) | (kf ? 2 : 0);
    this.index[ip] = head + 1;
    this.head = (head + 1) & (RING - 1);
    if (extTs !== this.frameTs) {
      if (advance) { this.frameTs = extTs; this.frameStart = ext; }
    } else if (ext < this.frameStart) this.frameStart = ext;
    if (kf) {
      const start = extTs === this.frameTs ? this.frameStart : ext;
      if (start > this.keyStart) {
        this.keyStart = start;
        const e = this.index[start & (RING - 1)]!;
        if (e !== 0 && this.ext[e - 1] === start) this.flags[e - 1]! |= 8;
      }
    }
    this.received++;
    if (advance) {
      const gap = ext - this.highest - 1;
      if (gap > 0) {
        const from = gap > 512 ? ext - 512 : this.highest + 1;
        for (let m = from; m < ext; m++) {
          const k = m & 511;
          this.nackExt[k] = m; this.nackDue[k] = now + 10; this.nackTries[k] = 0;
        }
      }
      this.highest = ext;
      const arrival = ((now - this.firstAt) * this.clockRate) / 1000;
      const transit = arrival - extTs;
      if (this.hasTransit) this.jitter += (Math.abs(transit - this.transit) - this.jitter) / 16;
      this.transit = transit; this.hasTransit = true;
    }
    const k = ext & 511;
    if (this.nackExt[k] === ext) this.nackExt[k] = -1;
    this.slot = head; this.extSeq = ext; this.kf = kf;
    return 0;
  }
}

class RefMunger {
  seqOff = 0; tsOff = 0; highIn = 0; highOut = 0; lastTs = 0; lastMs = 0; epochIn = 0;
  started = false; pending = false;
  readonly winExt = new Float64Array(64).fill(-1); // ext seqs forwarded in the last 64
  outLen = 0; outSeq = 0; outTs = 0;
  constructor(readonly ssrc: number, readonly pt: number, readonly initSeq: number, readonly initTs: number) {}

  /** Same decisions as assembly/munger.ts rewrite() with copy to out[outOff]. */
  rewrite(s: RefStream, slot: number, now: number, out: Buffer, outOff: number): number {
    if (!(s.flags[slot]! & 1)) return -40;
    const inExt = s.ext[slot]!;
    const inTs = s.extTs[slot]!;
    let dec = 0;
    if (!this.started || this.pending) {
      let outExt: number, outTs: number;
      if (!this.started) { outExt = 0x10000 + this.initSeq; outTs = 2 ** 32 + this.initTs; }
      else {
        outExt = this.highOut + 1;
        outTs = this.lastTs + Math.max(1, Math.round(((now - this.lastMs) * s.clockRate) / 1000));
      }
      this.seqOff = outExt - inExt; this.tsOff = outTs - inTs;
      this.highIn = inExt; this.highOut = outExt; this.lastTs = outTs; this.lastMs = now;
      this.epochIn = inExt; this.winExt.fill(-1); this.winExt[inExt & 63] = inExt;
      this.started = true; this.pending = false;
    } else {
      const diff = inExt - this.highIn;
      if (diff > 0) {
        this.winExt[inExt & 63] = inExt;
        this.highIn = inExt; this.highOut = inExt + this.seqOff;
        if (diff > 1) dec = 2;
        const outTs = inTs + this.tsOff;
        if (outTs > this.lastTs) { this.lastTs = outTs; this.lastMs = now; }
      } else {
        if (inExt < this.epochIn) return 4;
        if (-diff >= 64) return 4;
        if (this.winExt[inExt & 63] === inExt) return 3;
        this.winExt[inExt & 63] = inExt;
        dec = 1;
      }
    }
    const outSeq = inExt + this.seqOff;
    const outTs = inTs + this.tsOff;
    const len = s.len[slot]!;
    const p = slot * SLOT + HDR;
    s.ring.copy(out, outOff, p, p + len);
    out[outOff + 1] = (out[outOff + 1]! & 0x80) | this.pt;
    out.writeUInt16BE(outSeq % 65536, outOff + 2);
    out.writeUInt32BE(outTs % 2 ** 32, outOff + 4);
    out.writeUInt32BE(this.ssrc, outOff + 8);
    this.outLen = len; this.outSeq = outSeq; this.outTs = outTs;
    return dec;
  }
}

// ---------------------------------------------------------------------------------------------
// Workload: VP8 video, 1200-byte packets with abs-capture-time + transport-cc extensions,
// 4 packets per frame, a keyframe every 300 packets, 1 packet in 200 lost.

const POOL = 64;
const pool: Buffer[] = [];
for (let i = 0; i < POOL; i++) {
  const b = Buffer.alloc(PACKET);
  b[0] = 0x90; b[1] = 96;
  b.writeUInt32BE(0x12345678, 8);
  b.writeUInt16BE(0xbede, 12); b.writeUInt16BE(3, 14);
  b[16] = 0x27; // id 2, 8 bytes: abs-capture-time
  for (let k = 0; k < 8; k++) b[17 + k] = k;
  b[25] = 0x31; b[26] = 0; b[27] = 0; // id 3, 2 bytes: transport-wide seq
  for (let k = 28; k < PACKET; k++) b[k] = (k * 31 + i) & 0xff;
  pool.push(b);
}

/** Set packet n's header fields in its pool buffer (same cost for both sides). */
function packet(n: number): Buffer {
  const b = pool[n % POOL]!;
  const seq = (n + 60000) & 0xffff;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(((Math.floor(n / 4) * 3000) + 0xfff00000) >>> 0, 4);
  b[1] = (n & 3) === 3 ? 0x80 | 96 : 96;
  b.writeUInt16BE(n & 0xffff, 26);
  b[28] = 0x10; // VP8 descriptor S=1 PID=0
  b[29] = n % 300 === 0 ? 0x00 : 0x01; // keyframe flag (P bit)
  return b;
}
const lost = (n: number) => n % 200 === 199;

function setupWasm(): Core {
  const c = new Core({ maxStreams: 2, maxDownstreams: 16, outSlots: DOWNSTREAMS });
  c.openStream(0, { clockRate: 90000, ringSize: RING, codecs: { 96: Codec.VP8 }, extensions: { absCaptureTime: 2, transportCc: 3 } });
  for (let d = 0; d < DOWNSTREAMS; d++) {
    c.openDownstream(d, { ssrc: 0x1000 + d, payloadType: 100, initialSeq: d * 777, initialTs: d * 1234567 });
    c.setSource(d, 0);
  }
  return c;
}

function setupTs(): { s: RefStream; m: RefMunger[]; out: Buffer } {
  const s = new RefStream(90000, 2, 3);
  const m: RefMunger[] = [];
  for (let d = 0; d < DOWNSTREAMS; d++) m.push(new RefMunger(0x1000 + d, 100, d * 777, d * 1234567));
  return { s, m, out: Buffer.alloc(DOWNSTREAMS * SLOT) };
}

let sink = 0;

function runWasm(c: Core, from: number, count: number): void {
  for (let n = from; n < from + count; n++) {
    if (lost(n)) continue;
    const now = n * 2.5;
    if (c.ingestPacket(0, packet(n), now) !== Status.OK) throw new Error(`wasm ingest ${c.pktCode}`);
    // One call munges for all attached downstreams (8 <= outSlots, so no cursor round).
    sink += c.fanout(0, c.pktSlot, now, -1);
  }
}

function runTs(t: { s: RefStream; m: RefMunger[]; out: Buffer }, from: number, count: number): void {
  const { s, m, out } = t;
  for (let n = from; n < from + count; n++) {
    if (lost(n)) continue;
    const now = n * 2.5;
    if (s.ingest(packet(n), now) !== 0) throw new Error('ts ingest');
    for (let d = 0; d < DOWNSTREAMS; d++) sink += m[d]!.rewrite(s, s.slot, now, out, d * SLOT) + 1;
  }
}

// ---- equivalence check: identical output bytes and stats ---------------------------------------
{
  const c = setupWasm();
  const t = setupTs();
  for (let n = 0; n < 5000; n++) {
    if (lost(n)) continue;
    const now = n * 2.5;
    c.ingestPacket(0, packet(n), now);
    t.s.ingest(packet(n), now);
    if (c.pktExtSeq !== t.s.extSeq || c.pktKeyframe !== t.s.kf) throw new Error(`ingest mismatch at ${n}`);
    const k = c.fanout(0, c.pktSlot, now, -1);
    if (k !== DOWNSTREAMS) throw new Error('fanout count');
    for (let i = 0; i < k; i++) {
      const d = c.fanoutDownstream(i);
      const dec = t.m[d]!.rewrite(t.s, t.s.slot, now, t.out, d * SLOT);
      if (dec !== c.fanoutDecision(i)) throw new Error(`decision mismatch at ${n}/${d}`);
      const a = c.view(c.fanoutOffset(i), c.fanoutLength(i));
      const b = t.out.subarray(d * SLOT, d * SLOT + t.m[d]!.outLen);
      if (Buffer.compare(Buffer.from(a), b) !== 0) throw new Error(`output mismatch at ${n}/${d}`);
    }
  }
  const st = c.stats(0);
  if (st.received !== t.s.received || Math.abs(st.jitter - t.s.jitter) > 1e-9) throw new Error('stats mismatch');
  console.log(`equivalence: 5000 packets x ${DOWNSTREAMS} downstreams byte-identical, stats equal`);
}

// ---- timing ------------------------------------------------------------------------------------
// Many short chunks, alternating WASM and TS, so that other processes on a shared core slow both
// sides alike; the figures are the medians over chunks (min and quartiles printed too).
const WARM = 100_000;
const CHUNK = 10_000;
const PAIRS = Number(process.env.BENCH_PAIRS ?? 80);
const wasm = setupWasm();
const ts = setupTs();
runWasm(wasm, 0, WARM);
runTs(ts, 0, WARM);
const delivered = (from: number, count: number) => {
  let k = 0;
  for (let n = from; n < from + count; n++) if (!lost(n)) k++;
  return k;
};
const wasmNs: number[] = [];
const tsNs: number[] = [];
let next = WARM;
for (let r = 0; r < PAIRS; r++) {
  const pkts = delivered(next, CHUNK);
  const order = r & 1; // alternate which side goes first
  for (let k = 0; k < 2; k++) {
    const t0 = process.hrtime.bigint();
    if ((k ^ order) === 0) runWasm(wasm, next, CHUNK);
    else runTs(ts, next, CHUNK);
    const ns = Number(process.hrtime.bigint() - t0) / pkts;
    ((k ^ order) === 0 ? wasmNs : tsNs).push(ns);
  }
  next += CHUNK;
}
const q = (a: number[], f: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * f))]!;
const fmt = (a: number[]) => `min ${q(a, 0).toFixed(0)}  p25 ${q(a, 0.25).toFixed(0)}  median ${q(a, 0.5).toFixed(0)}  p75 ${q(a, 0.75).toFixed(0)}`;
console.log(`${PAIRS} chunk pairs of ${CHUNK} packets (${PACKET} B, ${DOWNSTREAMS} downstreams, 1 in 200 lost), ns/packet:`);
console.log(`  wasm: ${fmt(wasmNs)}`);
console.log(`  ts:   ${fmt(tsNs)}   (sink ${sink % 10})`);
const w = q(wasmNs, 0.5);
const t = q(tsNs, 0.5);
console.log(`median: wasm ${w.toFixed(1)} ns/pkt, ts ${t.toFixed(1)} ns/pkt, ratio ${(t / w).toFixed(2)}`);
console.log(JSON.stringify({ bench: 'core', wasm_ns_per_pkt: Math.round(w), ts_ns_per_pkt: Math.round(t), ratio: Math.round((t / w) * 100) / 100 }));
