/**
 * Adapter from a relay stream to the WASM forwarding core (src/wasm). One `CoreHost` (one WASM
 * instance) per relay; each stream track is a core stream slot, each (downstream, track) pair a
 * core downstream slot (its munger). This file translates core decisions into calls of a send
 * callback; it decides nothing itself.
 *
 * Packets never leave WASM memory on the way out: the callback receives the core's memory and
 * an offset/length, and the SRTP fast path reads from there.
 *
 * With the native SRTP addon loaded, a fan-out does not call the send callback per downstream
 * whose egress can take a batch: each such output becomes a record (native context id, offset,
 * length) and ONE addon call (sendBatch) protects and sends all of them from WASM memory.
 *
 * Routes: once a downstream's egress has passed all of FastRtpSender's checks (batchId: keys,
 * consent, selected pair, socket, SSRC ownership), its core downstream slot gets a route (the
 * native context id and the extension id map) leased for ROUTE_LEASE_MS of core time. While
 * the lease runs, its outputs become records without touching any per-downstream object, and
 * the addon keeps the SR sender info and counts; the relay metrics get one update per fan-out.
 * The next output after the lease goes through the full checks again, and so does the next one
 * after any ICE state change of the downstream's connection (dropRoutes: consent expiry, ICE
 * restart, failure), so a route never outlives the checks it stands for. A route can outlive a
 * closed socket by at most the lease: the addon sends on its own dup() of the socket's fd, so
 * such a packet goes to the old peer, never to a reused descriptor. A record the addon refuses
 * (context destroyed by close or rekey, full socket buffer, send error) drops the route.
 *
 * Deferred sends: while the relay handles one batch of upstream datagrams (an input batch,
 * src/srtp/input-batch.ts: a frame's packets come in one native read), the addon stages each
 * record instead of sending it, and at the end of the batch sends each downstream's packets of
 * the whole batch together, as few sendmsg calls as UDP GSO allows (native/srtp.c, "deferred
 * sends"). The records' results come back then and are accounted exactly as an immediate
 * record's (StagedSends); nothing waits past the batch's own synchronous handling.
 */
import { randomInt } from 'node:crypto';
import { Core, Codec, Decision, Status, type CodecId } from '../wasm/index.ts';
import type { CodecKind } from './media.ts';
import { EXT_ABS_CAPTURE_TIME } from './media.ts';
import type { Downstream } from './downstream.ts';
import { BATCH_RECORD, BATCH_ROUTED, nativeSrtp, type NativeSrtpAddon } from '../srtp/native.ts';
import { SrtpStatus } from '../srtp/errors.ts';
import { logger } from '../util/log.ts';
import { remapExtIds } from './extmap.ts';
import { atInputBatchEnd, inInputBatch } from '../srtp/input-batch.ts';

/**
 * How long (core time, ms) a downstream output is sent on its route before full checks again.
 * State changes drop routes at once (dropRoutes), so the lease only bounds how stale the
 * JavaScript-side send statistics may get; the full checks cost a few microseconds each.
 */
export const ROUTE_LEASE_MS = 1000;

const log = logger('relay:forward');

/** Send `len` bytes at `off` of `buf` (WASM memory); ts = output RTP timestamp. */
export type SendFn = (buf: Uint8Array, off: number, len: number, ts: number, payloadBytes: number) => boolean;
export type FanoutFn = (ds: Downstream, buf: Uint8Array, off: number, len: number, ts: number, payloadBytes: number) => boolean;

export interface CoreTrack {
  clockRate: number;
  codec: CodecKind;
  payloadType: number;
  kind: 'video' | 'audio';
  extIds: Map<string, number>;
}

const CODEC_IDS: Record<CodecKind, CodecId> = { vp8: Codec.VP8, vp9: Codec.VP9, h264: Codec.H264, av1: Codec.AV1, opus: Codec.NONE, other: Codec.NONE };

/** Slot allocator over one Core. */
export class CoreHost {
  readonly core: Core;
  #freeStreams: number[] = [];
  #freeDs: number[] = [];
  /** downstream slot -> its owner and track */
  readonly outs: ({ ds: Downstream; track: number } | undefined)[] = [];
  /** The native SRTP addon (null: every output goes through the send callback). */
  readonly batchAddon: NativeSrtpAddon | null;
  /** sendBatch records for one core.fanout chunk, and each record's downstream and timestamp. */
  readonly batchDesc: Int32Array;
  /** undefined for a routed record (its downstream slot is in batchSlot). */
  readonly batchDs: (Downstream | undefined)[];
  readonly batchTs: number[];
  readonly batchSlot: Int32Array;
  /** Routes per core downstream slot: native context id (-1 none), lease end, extension id map. */
  readonly routeId: Int32Array;
  readonly routeUntil: Float64Array;
  readonly routeMap: (Uint8Array | null)[];
  /** Records of the current input batch that the addon staged (null: the addon cannot defer). */
  readonly staged: StagedSends | null;

  constructor(maxStreams: number, maxDownstreams: number) {
    const outSlots = 64;
    this.core = new Core({ maxStreams, maxDownstreams, outSlots });
    this.batchAddon = nativeSrtp();
    // CANOPY_GSO=0: every output leaves on its own (for a device or driver that mishandles UDP GSO).
    const defer = this.batchAddon !== null && typeof this.batchAddon.flushSends === 'function' && process.env.CANOPY_GSO !== '0';
    this.staged = defer ? stagedSends(this.batchAddon!) : null;
    this.batchDesc = new Int32Array(outSlots * BATCH_RECORD);
    this.batchDs = new Array<Downstream | undefined>(outSlots).fill(undefined);
    this.batchTs = new Array<number>(outSlots).fill(0);
    this.batchSlot = new Int32Array(outSlots);
    this.routeId = new Int32Array(maxDownstreams).fill(-1);
    this.routeUntil = new Float64Array(maxDownstreams);
    this.routeMap = new Array<Uint8Array | null>(maxDownstreams).fill(null);
    for (let i = maxStreams - 1; i >= 0; i--) this.#freeStreams.push(i);
    for (let i = maxDownstreams - 1; i >= 0; i--) this.#freeDs.push(i);
  }

  allocStream(): number {
    const s = this.#freeStreams.pop();
    if (s === undefined) throw new Error('forwarding core: no free stream slot; raise the relay capacity');
    return s;
  }
  freeStream(s: number): void {
    this.#freeStreams.push(s);
  }
  allocDs(): number {
    const d = this.#freeDs.pop();
    if (d === undefined) throw new Error('forwarding core: no free downstream slot; the relay is over capacity');
    return d;
  }
  freeDs(d: number): void {
    this.outs[d] = undefined;
    this.routeId[d] = -1;
    this.routeMap[d] = null;
    this.#freeDs.push(d);
  }
}

export class ForwardCore {
  /** keyframe / need-keyframe flags of the last ingest */
  lastKeyframe = false;
  lastNeedKeyframe = false;
  /** abs-capture-time of the last ingested packet in Unix ms, -1 when absent */
  lastCaptureMs = -1;
  readonly #host: CoreHost;
  readonly #core: Core;
  readonly #tracks: CoreTrack[];
  /** core stream slot per track */
  #slots: number[];
  /** ring slot of the last ingested packet per track (-1 none), its payload length, and time */
  #lastRing: number[];
  #lastPayload: number[];
  #lastNow = 0;
  #closed = false;
  /** downstreams attached (receiving) */
  #attached = new Set<Downstream>();
  #all = new Set<Downstream>();

  constructor(host: CoreHost, tracks: CoreTrack[]) {
    this.#host = host;
    this.#core = host.core;
    this.#tracks = tracks;
    this.#slots = tracks.map((t) => this.#open(t));
    this.#lastRing = tracks.map(() => -1);
    this.#lastPayload = tracks.map(() => 0);
  }

  #open(t: CoreTrack): number {
    const s = this.#host.allocStream();
    try {
      const codec = CODEC_IDS[t.codec];
      this.#core.openStream(s, {
        clockRate: t.clockRate,
        ringSize: t.kind === 'video' ? 1024 : 256,
        maxAgeMs: 3000,
        codecs: codec === Codec.NONE ? {} : { [t.payloadType]: codec },
        extensions: { absCaptureTime: t.extIds.get(EXT_ABS_CAPTURE_TIME) ?? 0 },
        // First NACK after 10 ms of reordering tolerance, then every 40 ms (a loopback or LAN RTT
        // is far below that), 8 tries before the packet is given up (RFC 4585 §6.2.1 leaves timing to us).
        nack: { firstDelayMs: 10, retryMs: 40, maxRetries: 8 },
      });
    } catch (e) {
      this.#host.freeStream(s);
      throw e;
    }
    return s;
  }

  /**
   * A new upstream (re-parent): fresh core streams (new seq space, empty ring, the new leg's
   * extension ids), and every attached downstream is pointed at them; the munger continues its
   * output across the switch.
   */
  newSource(extIds?: Map<string, number>[]): void {
    const old = this.#slots;
    if (extIds) this.#tracks.forEach((t, i) => (t.extIds = extIds[i] ?? t.extIds));
    this.#slots = this.#tracks.map((t) => this.#open(t));
    this.#lastRing = this.#tracks.map(() => -1);
    for (const ds of this.#attached) {
      ds.coreOuts.forEach((d, track) => {
        if (d >= 0) {
          this.#core.setSource(d, this.#slots[track]!);
          this.#host.routeId[d] = -1; // the extension id map may change with the new leg
        }
      });
    }
    for (const s of old) {
      this.#core.closeStream(s);
      this.#host.freeStream(s);
    }
  }

  /** Store one upstream packet. Returns the core status (negative: invalid packet). */
  ingest(track: number, pkt: Uint8Array, now: number): number {
    const s = this.#slots[track];
    if (s === undefined || this.#closed) return Status.ERR_STREAM;
    this.#lastNow = now;
    const st = this.#core.ingestPacket(s, pkt, now);
    if (st < 0) {
      this.#lastRing[track] = -1;
      this.lastKeyframe = this.lastNeedKeyframe = false;
      return st;
    }
    this.#lastRing[track] = this.#core.pktSlot;
    this.#lastPayload[track] = this.#core.pktPayloadLength;
    const abs = this.#core.pktAbsCaptureOffset;
    if (abs >= 0) {
      // abs-capture-time: 64-bit NTP (UQ32.32) of capture; glass-to-here latency for /metrics.
      const m = this.#core.bytes;
      const secs = ((m[abs]! << 24) | (m[abs + 1]! << 16) | (m[abs + 2]! << 8) | m[abs + 3]!) >>> 0;
      const frac = ((m[abs + 4]! << 24) | (m[abs + 5]! << 16) | (m[abs + 6]! << 8) | m[abs + 7]!) >>> 0;
      this.lastCaptureMs = (secs - 2208988800) * 1000 + (frac / 4294967296) * 1000;
    } else {
      this.lastCaptureMs = -1;
    }
    this.lastKeyframe = this.#core.pktKeyframe;
    this.lastNeedKeyframe = this.#core.pktNeedKeyframe;
    return st;
  }

  /** Rewrite the last ingested packet of `track` for every attached downstream and send.
   *  Returns how many downstreams are waiting for a keyframe (the caller asks upstream). */
  fanout(track: number, send: FanoutFn): number {
    const ring = this.#lastRing[track]!;
    if (ring < 0 || this.#attached.size === 0) return 0;
    let waiting = 0;
    const core = this.#core;
    const s = this.#slots[track]!;
    const payload = this.#lastPayload[track]!;
    const host = this.#host;
    const outs = host.outs;
    const addon = host.batchAddon;
    const desc = host.batchDesc;
    const bDs = host.batchDs;
    const bTs = host.batchTs;
    const bSlot = host.batchSlot;
    const routeId = host.routeId;
    const routeUntil = host.routeUntil;
    const routeMap = host.routeMap;
    const now = this.#lastNow;
    let cursor = -1;
    do {
      const n = core.fanout(s, ring, this.#lastNow, cursor);
      if (n <= 0) break;
      cursor = core.fanoutCursor;
      waiting += core.fanoutWaitingKeyframe;
      const mem = core.bytes;
      let k = 0;
      for (let i = 0; i < n; i++) {
        const off = core.fanoutOffset(i);
        if (off === 0) continue; // decided not to send (duplicate, waiting for a keyframe, ...)
        const d = core.fanoutDownstream(i);
        const rid = routeId[d]!;
        const left = routeUntil[d]! - now; // a clock that stepped back cannot stretch a lease
        if (rid >= 0 && left > 0 && left <= ROUTE_LEASE_MS) {
          // A leased route: no per-downstream object is touched (see the header comment).
          const len = core.fanoutLength(i);
          const map = routeMap[d]!;
          if (map !== null) remapExtIds(mem, off, len, map);
          const r = k * BATCH_RECORD;
          desc[r] = rid;
          desc[r + 1] = off;
          desc[r + 2] = len;
          desc[r + 3] = BATCH_ROUTED;
          bDs[k] = undefined;
          bSlot[k] = d;
          k++;
          continue;
        }
        const o = outs[d];
        if (!o) continue;
        const ts = ((mem[off + 4]! << 24) | (mem[off + 5]! << 16) | (mem[off + 6]! << 8) | mem[off + 7]!) >>> 0;
        const len = core.fanoutLength(i);
        if (addon !== null) {
          const id = o.ds.batchPrepare(track, mem, off, len);
          if (id >= 0) {
            const r = k * BATCH_RECORD;
            desc[r] = id;
            desc[r + 1] = off;
            desc[r + 2] = len;
            desc[r + 3] = 0;
            bDs[k] = o.ds;
            bTs[k] = ts;
            bSlot[k] = d;
            k++;
            // Checked just now: lease a route for the next outputs of this slot.
            routeId[d] = id;
            routeUntil[d] = now + ROUTE_LEASE_MS;
            routeMap[d] = o.ds.extMapOf(track);
            continue;
          }
          routeId[d] = -1;
        }
        send(o.ds, mem, off, len, ts, payload);
      }
      // The output slots are rewritten by the next core.fanout call: send this chunk's now.
      if (k > 0) this.#sendBatch(addon!, mem, k, track, payload);
    } while (cursor !== -1);
    return waiting;
  }

  /**
   * One addon call for k prepared records; then each checked record's downstream accounts for
   * its result, and routed records are counted together (failures drop the route). In an input
   * batch the addon stages the records instead (result 0) and their results are accounted when
   * the batch ends (StagedSends.flush).
   */
  #sendBatch(addon: NativeSrtpAddon, mem: Uint8Array, k: number, track: number, payload: number): void {
    const host = this.#host;
    const desc = host.batchDesc;
    const staged = host.staged !== null && inInputBatch() ? host.staged : null;
    try {
      addon.sendBatch(mem, desc, k, payload, this.#lastNow, staged !== null);
    } catch {
      // Not expected (arguments are built here): every record counts as not sent.
      for (let j = 0; j < k; j++) desc[j * BATCH_RECORD + 3] = SrtpStatus.NotConnected;
    }
    let routed = 0;
    let routedBytes = 0;
    let routedDs: Downstream | undefined;
    for (let j = 0; j < k; j++) {
      const r = j * BATCH_RECORD;
      const res = desc[r + 3]!;
      const ds = host.batchDs[j];
      host.batchDs[j] = undefined;
      if (res === 0 && staged !== null) {
        staged.add(host, ds, host.batchSlot[j]!, track, desc[r + 2]!, ds === undefined ? 0 : host.batchTs[j]!, payload);
        continue;
      }
      if (ds === undefined && res >= 0) {
        routed++;
        routedBytes += desc[r + 2]!;
        if (routedDs === undefined) routedDs = host.outs[host.batchSlot[j]!]?.ds;
        continue;
      }
      const off = desc[r + 1]!;
      if (ds === undefined && res === SrtpStatus.Closed) {
        // The context is gone (closed, or a new DTLS session): the full send path decides with
        // fresh state. The extension ids are already this downstream's, so no second translation.
        const slot = host.batchSlot[j]!;
        host.routeId[slot] = -1;
        const o = host.outs[slot];
        const ts = ((mem[off + 4]! << 24) | (mem[off + 5]! << 16) | (mem[off + 6]! << 8) | mem[off + 7]!) >>> 0;
        o?.ds.sendTranslated(track, mem, off, desc[r + 2]!, ts, payload);
        continue;
      }
      settleRecord(host, ds, host.batchSlot[j]!, track, res, desc[r + 2]!, ds === undefined ? 0 : host.batchTs[j]!, payload);
    }
    if (routed > 0 && routedDs !== undefined) routedDs.countRouted(routed, routedBytes);
  }

  /** Open this downstream's mungers (not attached yet: it receives nothing until join). */
  addDownstream(ds: Downstream): void {
    this.#all.add(ds);
    ds.coreOuts = this.#tracks.map(() => -1);
    for (const b of ds.bindings) {
      const d = this.#host.allocDs();
      try {
        this.#core.openDownstream(d, {
          ssrc: b.ssrc,
          payloadType: b.payloadType,
          initialSeq: randomInt(0, 0x10000),
          initialTs: randomInt(0, 0x100000000),
          requireKeyframe: this.#tracks[b.track]!.kind === 'video',
        });
      } catch (e) {
        this.#host.freeDs(d);
        throw e;
      }
      this.#host.outs[d] = { ds, track: b.track };
      ds.coreOuts[b.track] = d;
    }
  }

  /** The next outputs of `ds` go through the full checks again (its connection changed state). */
  dropRoutes(ds: Downstream): void {
    for (const d of ds.coreOuts) if (d >= 0) this.#host.routeId[d] = -1;
  }

  removeDownstream(ds: Downstream): void {
    if (!this.#all.delete(ds)) return;
    this.#attached.delete(ds);
    for (const d of ds.coreOuts) {
      if (d < 0) continue;
      this.#core.closeDownstream(d);
      this.#host.freeDs(d);
    }
    ds.coreOuts = [];
  }

  /**
   * Attach `ds` to `track` and replay the latest keyframe and everything after it from the ring
   * (fast join). Returns the number of packets sent from the cache.
   */
  joinFromCache(ds: Downstream, track: number, now: number, send: SendFn): number {
    const d = ds.coreOuts[track];
    if (d === undefined || d < 0 || this.#closed) return 0;
    const s = this.#slots[track]!;
    this.#core.setSource(d, s);
    this.#attached.add(ds);
    if (this.#tracks[track]!.kind !== 'video') return 0;
    const core = this.#core;
    const kf = core.latestKeyframe(s);
    if (!kf) return 0;
    let n = 0;
    const out = core.outSlot(0);
    for (let ext = kf.first; ext <= kf.last; ext++) {
      const slot = core.lookupAny(s, ext);
      if (slot < 0) continue;
      const payload = core.pktPayloadLength;
      const dec = core.rewrite(d, s, slot, now, out);
      if (dec === Decision.IN_ORDER || dec === Decision.OUT_OF_ORDER || dec === Decision.GAP) {
        if (send(core.bytes, core.outOffset, core.outLength, core.outTs, payload)) n++;
      }
    }
    return n;
  }

  /** RFC 4585 §6.2.1: answer `ds`'s NACK for its output seq from the ring. */
  retransmit(ds: Downstream, track: number, seq: number, now: number, send: SendFn): boolean {
    const d = ds.coreOuts[track];
    if (d === undefined || d < 0) return false;
    const core = this.#core;
    const dec = core.retransmit(d, seq & 0xffff, now, core.outSlot(0));
    if (dec !== Decision.RETRANSMIT) return false;
    const off = core.outOffset;
    const mem = core.bytes;
    const ts = ((mem[off + 4]! << 24) | (mem[off + 5]! << 16) | (mem[off + 6]! << 8) | mem[off + 7]!) >>> 0;
    return send(mem, off, core.outLength, ts, core.outLength - 12);
  }

  /** Upstream losses due for a NACK now, as an RTCP Generic NACK compound (copied), or undefined. */
  pollNacks(track: number, senderSsrc: number, mediaSsrc: number, now: number): Buffer | undefined {
    const s = this.#slots[track];
    if (s === undefined || !mediaSsrc || this.#closed) return undefined;
    const n = this.#core.pollNacks(s, now);
    if (n <= 0) return undefined;
    const len = this.#core.buildNack(senderSsrc, mediaSsrc, n);
    if (len <= 0) return undefined;
    return Buffer.from(this.#core.view(this.#core.rtcpOffset, len));
  }

  /** RFC 3550 §6.4.2 receiver report over every track that has received packets. */
  receiverReport(senderSsrc: number, ssrcs: number[], now: number): Buffer | undefined {
    if (this.#closed) return undefined;
    const slots = this.#slots.filter((_, i) => ssrcs[i]);
    if (slots.length === 0) return undefined;
    const len = this.#core.buildReceiverReport(senderSsrc, slots, now);
    if (len <= 0) return undefined;
    return Buffer.from(this.#core.view(this.#core.rtcpOffset, len));
  }

  /** An SR arrived from upstream: its NTP middle 32 bits become LSR in our RRs. */
  senderReport(track: number, _ssrc: number, ntp: bigint, now: number): void {
    const s = this.#slots[track];
    if (s === undefined || this.#closed) return;
    this.#core.recordSenderReport(s, Number((ntp >> 16n) & 0xffffffffn), now);
  }

  close(): void {
    if (this.#closed) return;
    for (const ds of [...this.#all]) this.removeDownstream(ds);
    for (const s of this.#slots) {
      this.#core.closeStream(s);
      this.#host.freeStream(s);
    }
    this.#slots = [];
    this.#closed = true;
  }
}

/**
 * The result of a batch record that is not a routed success (those are counted in bulk): a
 * checked record's downstream accounts for it; a failure drops the slot's route, so the next
 * output of that slot goes through the full checks.
 */
function settleRecord(host: CoreHost, ds: Downstream | undefined, slot: number, track: number, res: number, len: number, ts: number, payload: number): void {
  if (res < 0) host.routeId[slot] = -1;
  if (ds !== undefined) {
    ds.batchDone(track, res, len, ts, payload);
    return;
  }
  // A routed record the addon refused: the downstream counts the drop.
  host.outs[slot]?.ds.batchDone(track, res, len, ts, payload);
}

/**
 * Records the addon staged during the current input batch, in staging order, with what their
 * accounting needs: the native side keeps the bytes, this side the owners. `flush` runs at the
 * end of the batch (registered with atInputBatchEnd when the first record is added): the addon
 * sends everything and returns each record's result, which is settled as an immediate record's
 * would be. A routed record the addon staged cannot be re-sent on the full path if its context
 * is gone by then (its bytes are no longer in WASM memory), so that one counts as dropped.
 */
export class StagedSends {
  readonly #addon: NativeSrtpAddon;
  readonly #cap: number;
  #n = 0;
  readonly #host: (CoreHost | undefined)[];
  readonly #ds: (Downstream | undefined)[];
  readonly #slot: Int32Array;
  readonly #track: Int32Array;
  readonly #len: Int32Array;
  readonly #payload: Int32Array;
  readonly #ts: Float64Array;
  readonly #results: Int32Array;
  readonly #gso = new Int32Array(2);
  readonly #flush = (): void => this.flush();

  constructor(addon: NativeSrtpAddon) {
    this.#addon = addon;
    const cap = addon.STAGE_RECORDS;
    this.#cap = cap;
    this.#host = new Array<CoreHost | undefined>(cap).fill(undefined);
    this.#ds = new Array<Downstream | undefined>(cap).fill(undefined);
    this.#slot = new Int32Array(cap);
    this.#track = new Int32Array(cap);
    this.#len = new Int32Array(cap);
    this.#payload = new Int32Array(cap);
    this.#ts = new Float64Array(cap);
    this.#results = new Int32Array(cap);
  }

  add(host: CoreHost, ds: Downstream | undefined, slot: number, track: number, len: number, ts: number, payload: number): void {
    const i = this.#n;
    if (i >= this.#cap) {
      // Cannot happen while in step with the addon (past its table it sends at once).
      log.error('staged sends: more records than the addon stages', { cap: this.#cap });
      return;
    }
    if (i === 0) atInputBatchEnd(this.#flush);
    this.#host[i] = host;
    this.#ds[i] = ds;
    this.#slot[i] = slot;
    this.#track[i] = track;
    this.#len[i] = len;
    this.#ts[i] = ts;
    this.#payload[i] = payload;
    this.#n = i + 1;
  }

  /** Send what the addon staged and account for every record. */
  flush(): void {
    const n = this.#n;
    this.#n = 0;
    const results = this.#results;
    let got: number;
    try {
      got = this.#addon.flushSends(results, this.#gso);
    } catch {
      got = -1;
    }
    if (got !== n) log.error('staged sends out of step with the addon', { staged: n, flushed: got });
    // Routed successes are counted together per relay (consecutive records of one host).
    let routedDs: Downstream | undefined;
    let routedHost: CoreHost | undefined;
    let routed = 0;
    let routedBytes = 0;
    // One input batch is one relay's upstream leg: its GSO figures go to that relay's metrics.
    const gso = this.#gso;
    let gsoDs: Downstream | undefined;
    for (let i = 0; i < n; i++) {
      const host = this.#host[i]!;
      const ds = this.#ds[i];
      this.#host[i] = undefined;
      this.#ds[i] = undefined;
      const res = i < got ? results[i]! : SrtpStatus.NotConnected;
      const slot = this.#slot[i]!;
      gsoDs ??= ds ?? host.outs[slot]?.ds;
      if (ds === undefined && res >= 0) {
        if (host !== routedHost) {
          if (routed > 0) routedDs?.countRouted(routed, routedBytes);
          routedHost = host;
          routedDs = undefined;
          routed = routedBytes = 0;
        }
        routedDs ??= host.outs[slot]?.ds;
        routed++;
        routedBytes += this.#len[i]!;
        continue;
      }
      settleRecord(host, ds, slot, this.#track[i]!, res, this.#len[i]!, this.#ts[i]!, this.#payload[i]!);
    }
    if (routed > 0) routedDs?.countRouted(routed, routedBytes);
    if (gso[0]! > 0) gsoDs?.countCoalesced(gso[0]!, gso[1]!);
  }
}

/** The StagedSends of the process (the addon's stage is one per process). */
let theStaged: StagedSends | undefined;
function stagedSends(addon: NativeSrtpAddon): StagedSends {
  return (theStaged ??= new StagedSends(addon));
}
