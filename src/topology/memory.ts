/**
 * MemoryTopology: the embedded store, for one process (signaling and relays together). All state
 * lives in maps; every method runs to completion before another starts (one JS thread), which is
 * what makes each call atomic. Time comes from the injected Clock.
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../util/clock.ts';
import { logger } from '../util/log.ts';
import {
  NoCapacityError,
  NoStreamError,
  TopologyError,
  RelayUnavailableError,
  StreamExistsError,
  UnknownRelayError,
  InvalidTopologyArgumentError,
} from './errors.ts';
import {
  canTakeViewer,
  chooseNewRelay,
  chooseParent,
  chooseViewerRelay,
  planRepair,
  type RelayState,
  type RepairPlan,
} from './policy.ts';
import type {
  Placement,
  PlaceOptions,
  ReapResult,
  RegisterResult,
  RelayInfo,
  RelayRegistration,
  StreamTree,
  Topology,
  TopologyEvent,
  TopologyEventKind,
  TopologyListener,
  TopologyOptions,
  TreeNode,
} from './types.ts';
import { MAX_PLACE_BATCH } from './types.ts';
import { checkId, checkLoad, checkRegistration, resolveOptions, type ResolvedOptions } from './validate.ts';

const log = logger('topology:memory');

interface RelayRec extends RelayState {
  url: string;
  load: number;
  leaseMs: number;
  leaseExpiresAt: number;
  /** Streams it carries. */
  carried: Set<string>;
}

interface NodeRec {
  relayId: string;
  parentId: string | null;
  depth: number;
  children: number;
  viewerSet: Set<string>;
  idleSince: number | null;
  relay: RelayRec;
}

interface StreamRec {
  name: string;
  originId: string;
  nodes: Map<string, NodeRec>;
  /** viewerId -> relayId */
  viewers: Map<string, string>;
  /** Relays of this tree that can take a viewer now (kept exact on every change). */
  open: Set<string>;
}

export interface MemoryTopologyOptions extends TopologyOptions {
  clock?: Clock;
}

export class MemoryTopology implements Topology {
  readonly #clock: Clock;
  readonly #opts: ResolvedOptions;
  readonly #relays = new Map<string, RelayRec>();
  readonly #streams = new Map<string, StreamRec>();
  readonly #listeners = new Set<TopologyListener>();
  #pending: TopologyEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: MemoryTopologyOptions = {}) {
    this.#opts = resolveOptions(opts);
    this.#clock = opts.clock ?? systemClock;
    if (this.#opts.reapIntervalMs > 0) {
      this.#timer = setInterval(() => void this.reapExpired().catch((e) => log.warn('reap failed', { err: e })), this.#opts.reapIntervalMs);
      this.#timer.unref();
    }
  }

  // ---- relays ------------------------------------------------------------------------------

  async registerRelay(reg: RelayRegistration): Promise<RegisterResult> {
    this.#live();
    const r = checkRegistration(reg, this.#opts.leaseMs);
    const now = this.#clock.now();
    let rec = this.#relays.get(r.id);
    if (rec && !rec.up) {
      // Declared down earlier: repair already took it out of every tree. Start clean.
      this.#relays.delete(r.id);
      rec = undefined;
    }
    if (!rec) {
      rec = {
        id: r.id, region: r.region, url: r.url, capacity: r.capacity, fanout: r.fanout,
        viewers: 0, children: 0, streams: 0, up: true, draining: false,
        load: 0, leaseMs: r.leaseMs, leaseExpiresAt: now + r.leaseMs, carried: new Set(),
      };
      this.#relays.set(r.id, rec);
    } else {
      Object.assign(rec, { region: r.region, url: r.url, capacity: r.capacity, fanout: r.fanout, leaseMs: r.leaseMs });
      rec.leaseExpiresAt = now + r.leaseMs;
    }
    const accepted: string[] = [];
    const rejected: RegisterResult['rejected'] = [];
    if (reg.carrying !== undefined) {
      // The relay is the truth about what it carries: drop what it no longer has...
      const claimed = new Set(r.carrying.map((c) => c.stream));
      for (const s of [...rec.carried]) if (!claimed.has(s)) this.#evacuate(this.#streams.get(s)!, rec, 'reconcile');
      // ...and adopt what it has, where the tree allows.
      for (const c of r.carrying) {
        const why = this.#adopt(rec, c.stream, c.parentId, c.viewers, now);
        if (why === null) accepted.push(c.stream);
        else rejected.push({ stream: c.stream, reason: why });
      }
    }
    this.#refreshRelay(rec);
    this.#flush();
    return { relay: relayInfo(rec), accepted, rejected };
  }

  /** Adopt one carried stream; returns null or why not. */
  #adopt(rec: RelayRec, stream: string, parentId: string | null, viewers: string[], now: number): string | null {
    let s = this.#streams.get(stream);
    if (parentId === null) {
      if (s && s.originId !== rec.id) return `stream is live with origin "${s.originId}"`;
      if (!s) s = this.#newStream(stream, rec, now);
    } else {
      if (!s) return 'stream is not live in the store (its origin has not re-registered yet)';
      const parent = s.nodes.get(parentId);
      if (!parent) return `parent "${parentId}" does not carry the stream in the store (re-register after it does)`;
      if (s.originId === rec.id) return 'relay is the origin of this stream';
      const node = s.nodes.get(rec.id);
      if (node) {
        if (node.parentId !== parentId) {
          if (isUnder(s, parentId, rec.id)) return `parent "${parentId}" is in this relay's own subtree`;
          this.#setParent(s, node, parentId);
          this.#emit('RELAY_REPARENTED', { stream, relayId: rec.id, parentId, depth: node.depth });
        }
      } else {
        this.#addNode(s, rec, parent, now);
      }
    }
    const node = s.nodes.get(rec.id)!;
    for (const v of viewers) {
      if (s.viewers.has(v)) continue; // the store's assignment wins; the relay releases it on session close
      s.viewers.set(v, rec.id);
      node.viewerSet.add(v);
      rec.viewers++;
    }
    this.#touchIdle(node, now);
    return null;
  }

  async heartbeat(relayId: string, load: number): Promise<void> {
    this.#live();
    checkId('relay id', relayId);
    checkLoad(load);
    const rec = this.#relays.get(relayId);
    if (!rec || !rec.up) throw new UnknownRelayError(relayId);
    rec.load = load;
    rec.leaseExpiresAt = this.#clock.now() + rec.leaseMs;
  }

  async drainRelay(relayId: string): Promise<void> {
    this.#live();
    checkId('relay id', relayId);
    const rec = this.#relays.get(relayId);
    if (!rec || !rec.up) throw new UnknownRelayError(relayId);
    if (!rec.draining) {
      rec.draining = true;
      this.#emit('RELAY_DRAINING', { relayId });
    }
    for (const s of [...rec.carried].sort()) this.#evacuate(this.#streams.get(s)!, rec, 'drain');
    this.#refreshRelay(rec);
    this.#flush();
  }

  async deregisterRelay(relayId: string): Promise<void> {
    this.#live();
    checkId('relay id', relayId);
    const rec = this.#relays.get(relayId);
    if (!rec) return;
    for (const s of [...rec.carried].sort()) this.#evacuate(this.#streams.get(s)!, rec, 'down');
    this.#relays.delete(relayId);
    this.#flush();
  }

  async expireLease(relayId: string): Promise<boolean> {
    this.#live();
    checkId('relay id', relayId);
    const rec = this.#relays.get(relayId);
    if (!rec || !rec.up) return false;
    rec.leaseExpiresAt = this.#clock.now() - 1;
    const res = await this.reapExpired();
    return res.down.includes(relayId);
  }

  // ---- streams -----------------------------------------------------------------------------

  async registerStream(stream: string, originRelayId: string): Promise<StreamTree> {
    this.#live();
    checkId('stream', stream);
    checkId('relay id', originRelayId);
    const rec = this.#relays.get(originRelayId);
    if (!rec || !rec.up) throw new UnknownRelayError(originRelayId);
    const s = this.#streams.get(stream);
    if (s) {
      if (s.originId !== originRelayId) throw new StreamExistsError(stream, s.originId);
      return treeOf(s);
    }
    if (rec.draining) throw new RelayUnavailableError(originRelayId, 'draining');
    const ns = this.#newStream(stream, rec, this.#clock.now());
    this.#refreshRelay(rec);
    this.#flush();
    return treeOf(ns);
  }

  #newStream(stream: string, origin: RelayRec, now: number): StreamRec {
    const s: StreamRec = { name: stream, originId: origin.id, nodes: new Map(), viewers: new Map(), open: new Set() };
    s.nodes.set(origin.id, { relayId: origin.id, parentId: null, depth: 0, children: 0, viewerSet: new Set(), idleSince: now, relay: origin });
    origin.streams++;
    origin.carried.add(stream);
    this.#streams.set(stream, s);
    return s;
  }

  async endStream(stream: string): Promise<void> {
    this.#live();
    checkId('stream', stream);
    const s = this.#streams.get(stream);
    if (!s) return;
    this.#end(s);
    this.#flush();
  }

  #end(s: StreamRec): void {
    this.#streams.delete(s.name);
    for (const n of s.nodes.values()) {
      n.relay.viewers -= n.viewerSet.size;
      n.relay.children -= n.children;
      n.relay.streams--;
      n.relay.carried.delete(s.name);
      this.#refreshRelay(n.relay);
    }
    this.#emit('STREAM_ENDED', { stream: s.name, originId: s.originId });
  }

  // ---- viewers -----------------------------------------------------------------------------

  async placeViewer(stream: string, opts: PlaceOptions = {}): Promise<Placement> {
    this.#live();
    checkId('stream', stream);
    const p = this.#place(stream, opts);
    this.#flush();
    return p;
  }

  async placeViewers(stream: string, requests: readonly PlaceOptions[]): Promise<Array<Placement | TopologyError>> {
    this.#live();
    checkId('stream', stream);
    if (!Array.isArray(requests) || requests.length > MAX_PLACE_BATCH) {
      throw new InvalidTopologyArgumentError(`placeViewers takes an array of at most ${MAX_PLACE_BATCH} requests`);
    }
    if (!this.#streams.has(stream)) throw new NoStreamError(stream);
    const out: Array<Placement | TopologyError> = [];
    for (const r of requests) {
      try {
        out.push(this.#place(stream, r));
      } catch (e) {
        if (!(e instanceof TopologyError)) throw e;
        out.push(e);
      }
    }
    this.#flush();
    return out;
  }

  #place(stream: string, opts: PlaceOptions): Placement {
    const region = opts.region ?? '';
    if (typeof region !== 'string') throw new InvalidTopologyArgumentError('region must be a string');
    const s = this.#streams.get(stream);
    if (!s) throw new NoStreamError(stream);
    const viewerId = opts.viewerId === undefined ? randomUUID() : checkId('viewer id', opts.viewerId);
    const existing = s.viewers.get(viewerId);
    if (existing !== undefined) {
      const n = s.nodes.get(existing)!;
      return { stream, viewerId, relay: relayInfo(n.relay), depth: n.depth };
    }
    const now = this.#clock.now();
    // 1. A relay that carries the stream and has room (s.open is exactly those).
    const cands: NodeRec[] = [];
    for (const id of s.open) cands.push(s.nodes.get(id)!);
    const i = chooseViewerRelay(cands, region);
    let node: NodeRec;
    let attach: Placement['attach'];
    if (i >= 0) {
      node = cands[i]!;
    } else {
      // 2. Grow: attach a relay with room under the shallowest relay with a free fan-out slot.
      const free: RelayRec[] = [];
      for (const r of this.#relays.values()) if (!s.nodes.has(r.id)) free.push(r);
      const j = chooseNewRelay(free, region);
      if (j < 0) throw new NoCapacityError(stream);
      const nr = free[j]!;
      const parents = [...s.nodes.values()];
      const k = chooseParent(parents, nr.region);
      if (k < 0) throw new NoCapacityError(stream);
      node = this.#addNode(s, nr, parents[k]!, now);
      attach = { relayId: nr.id, parentId: parents[k]!.relayId };
      this.#emit('RELAY_ATTACHED', { stream, relayId: nr.id, parentId: attach.parentId, depth: node.depth });
    }
    node.viewerSet.add(viewerId);
    node.relay.viewers++;
    node.idleSince = null;
    s.viewers.set(viewerId, node.relayId);
    this.#refreshRelay(node.relay);
    const p: Placement = { stream, viewerId, relay: relayInfo(node.relay), depth: node.depth };
    if (attach) p.attach = attach;
    return p;
  }

  async releaseViewer(stream: string, viewerId: string): Promise<boolean> {
    this.#live();
    checkId('stream', stream);
    checkId('viewer id', viewerId);
    const s = this.#streams.get(stream);
    const relayId = s?.viewers.get(viewerId);
    if (!s || relayId === undefined) return false;
    const n = s.nodes.get(relayId)!;
    s.viewers.delete(viewerId);
    n.viewerSet.delete(viewerId);
    n.relay.viewers--;
    this.#touchIdle(n, this.#clock.now());
    this.#refreshRelay(n.relay);
    return true;
  }

  // ---- reads -------------------------------------------------------------------------------

  async getTree(stream: string): Promise<StreamTree | undefined> {
    this.#live();
    checkId('stream', stream);
    const s = this.#streams.get(stream);
    return s ? treeOf(s) : undefined;
  }

  async getRelay(relayId: string): Promise<RelayInfo | undefined> {
    this.#live();
    const r = this.#relays.get(relayId);
    return r ? relayInfo(r) : undefined;
  }

  async listRelays(): Promise<RelayInfo[]> {
    this.#live();
    return [...this.#relays.values()].map(relayInfo).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async listStreams(): Promise<string[]> {
    this.#live();
    return [...this.#streams.keys()].sort();
  }

  subscribe(listener: TopologyListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- maintenance -------------------------------------------------------------------------

  async reapExpired(): Promise<ReapResult> {
    this.#live();
    const now = this.#clock.now();
    const res: ReapResult = { down: [], repaired: [], detached: [], movedViewers: 0, movedRelays: 0 };
    for (const r of [...this.#relays.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (!r.up || r.leaseExpiresAt > now) continue;
      r.up = false;
      res.down.push(r.id);
      this.#emit('RELAY_DOWN', { relayId: r.id });
      for (const s of [...r.carried].sort()) {
        const plan = this.#evacuate(this.#streams.get(s)!, r, 'down');
        res.repaired.push(s);
        if (plan) {
          res.movedViewers += plan.moves.length;
          res.movedRelays += plan.reparent.length + plan.detach.length;
        }
      }
      this.#refreshRelay(r);
    }
    // Idle relays past the grace period detach (never the origin).
    // Sorted, as the Lua scripts go, so both stores detach in the same order.
    for (const name of [...this.#streams.keys()].sort()) {
      const s = this.#streams.get(name)!;
      for (const n of [...s.nodes.values()].sort((a, b) => (a.relayId < b.relayId ? -1 : 1))) {
        if (!s.nodes.has(n.relayId)) continue;
        if (n.parentId === null || n.idleSince === null || now - n.idleSince < this.#opts.idleGraceMs) continue;
        const parent = s.nodes.get(n.parentId)!;
        this.#removeNode(s, n);
        this.#touchIdle(parent, now);
        this.#refreshRelay(parent.relay);
        res.detached.push(`${s.name}/${n.relayId}`);
        this.#emit('RELAY_DETACHED', { stream: s.name, relayId: n.relayId, parentId: parent.relayId });
      }
    }
    this.#flush();
    return res;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  // ---- internals ---------------------------------------------------------------------------

  /**
   * Take relay `r` out of stream `s` (down, drained, deregistered, or no longer claimed): the
   * origin ends the stream, unless only draining; anything else is repaired with planRepair.
   */
  #evacuate(s: StreamRec, r: RelayRec, why: 'down' | 'drain' | 'reconcile'): RepairPlan | undefined {
    const lost = s.nodes.get(r.id)!;
    if (lost.parentId === null && why !== 'drain') {
      this.#end(s);
      return undefined;
    }
    const now = this.#clock.now();
    const plan = planRepair({
      nodes: s.nodes,
      relays: this.#relays,
      lost: r.id,
      viewersOf: (id) => [...(s.nodes.get(id)?.viewerSet ?? [])].sort(), // byte order, as the Lua scripts sort
      region: r.region,
    });
    this.#applyPlan(s, r, plan, now);
    return plan;
  }

  #applyPlan(s: StreamRec, lostRelay: RelayRec, plan: RepairPlan, now: number): void {
    const lost = s.nodes.get(lostRelay.id)!;
    const touched = new Set<RelayRec>([lostRelay]);
    const dropViewers = (n: NodeRec): void => {
      for (const v of n.viewerSet) s.viewers.delete(v);
      n.relay.viewers -= n.viewerSet.size;
      n.viewerSet.clear();
    };
    dropViewers(lost);
    if (lost.parentId !== null) {
      this.#removeNode(s, lost);
      this.#emit('RELAY_DETACHED', { stream: s.name, relayId: lost.relayId, parentId: lost.parentId });
    }
    for (const id of plan.detach) {
      const n = s.nodes.get(id)!;
      dropViewers(n);
      this.#removeNode(s, n);
      touched.add(n.relay);
      this.#emit('RELAY_DETACHED', { stream: s.name, relayId: id, parentId: '' });
    }
    for (const { relayId, parentId } of plan.reparent) {
      const n = s.nodes.get(relayId)!;
      const p = s.nodes.get(parentId)!;
      n.parentId = parentId;
      p.children++;
      p.relay.children++;
      touched.add(p.relay);
    }
    for (const { relayId, parentId } of plan.attach) {
      this.#addNode(s, this.#relays.get(relayId)!, s.nodes.get(parentId)!, now);
    }
    recomputeDepths(s);
    for (const { relayId, parentId } of plan.reparent) {
      this.#emit('RELAY_REPARENTED', { stream: s.name, relayId, parentId, depth: s.nodes.get(relayId)!.depth });
    }
    for (const { relayId, parentId } of plan.attach) {
      this.#emit('RELAY_ATTACHED', { stream: s.name, relayId, parentId, depth: s.nodes.get(relayId)!.depth });
    }
    for (const { viewerId, relayId } of plan.moves) {
      if (relayId === null) {
        this.#emit('VIEWER_MOVE', { stream: s.name, viewerId, relayId: '' });
        continue;
      }
      const n = s.nodes.get(relayId)!;
      n.viewerSet.add(viewerId);
      n.relay.viewers++;
      s.viewers.set(viewerId, relayId);
      touched.add(n.relay);
      this.#emit('VIEWER_MOVE', { stream: s.name, viewerId, relayId, depth: n.depth, relay: n.relay });
    }
    for (const n of s.nodes.values()) this.#touchIdle(n, now);
    for (const r of touched) this.#refreshRelay(r);
    for (const n of s.nodes.values()) this.#refreshRelay(n.relay);
  }

  #addNode(s: StreamRec, r: RelayRec, parent: NodeRec, now: number): NodeRec {
    const node: NodeRec = { relayId: r.id, parentId: parent.relayId, depth: parent.depth + 1, children: 0, viewerSet: new Set(), idleSince: now, relay: r };
    s.nodes.set(r.id, node);
    parent.children++;
    parent.relay.children++;
    parent.idleSince = null;
    r.streams++;
    r.carried.add(s.name);
    this.#refreshRelay(parent.relay);
    this.#refreshRelay(r);
    return node;
  }

  /** Remove a node (no viewers on it any more) from its stream; its parent loses a child. */
  #removeNode(s: StreamRec, n: NodeRec): void {
    s.nodes.delete(n.relayId);
    s.open.delete(n.relayId);
    const parent = n.parentId === null ? undefined : s.nodes.get(n.parentId);
    if (parent) {
      parent.children--;
      parent.relay.children--;
    }
    n.relay.children -= n.children;
    n.relay.streams--;
    n.relay.carried.delete(s.name);
    this.#refreshRelay(n.relay);
  }

  #setParent(s: StreamRec, n: NodeRec, parentId: string): void {
    const old = n.parentId === null ? undefined : s.nodes.get(n.parentId);
    if (old) {
      old.children--;
      old.relay.children--;
    }
    const p = s.nodes.get(parentId)!;
    p.children++;
    p.relay.children++;
    n.parentId = parentId;
    recomputeDepths(s);
  }

  #touchIdle(n: NodeRec, now: number): void {
    if (n.viewerSet.size === 0 && n.children === 0) n.idleSince ??= now;
    else n.idleSince = null;
  }

  /** Keep every carried stream's open set exact for this relay. */
  #refreshRelay(r: RelayRec): void {
    const ok = canTakeViewer(r);
    for (const name of r.carried) {
      const s = this.#streams.get(name);
      if (!s) continue;
      if (ok) s.open.add(r.id);
      else s.open.delete(r.id);
    }
  }

  #emit(kind: TopologyEventKind, f: Partial<Omit<TopologyEvent, 'kind' | 'relay'>> & { relay?: RelayRec }): void {
    if (this.#listeners.size === 0) return;
    const ev: TopologyEvent = {
      kind, stream: f.stream ?? '', relayId: f.relayId ?? '', parentId: f.parentId ?? '', viewerId: f.viewerId ?? '',
      originId: f.originId ?? '', atMs: this.#clock.now(),
    };
    if (f.relay) ev.relay = relayInfo(f.relay);
    if (f.depth !== undefined) ev.depth = f.depth;
    this.#pending.push(ev);
  }

  /** Deliver events after the state change is complete, so listeners may call back in. */
  #flush(): void {
    if (this.#pending.length === 0) return;
    const evs = this.#pending;
    this.#pending = [];
    for (const ev of evs) {
      for (const l of this.#listeners) {
        try {
          l(ev);
        } catch (e) {
          log.warn('topology listener threw', { err: e, kind: ev.kind });
        }
      }
    }
  }

  #live(): void {
    if (this.#closed) throw new InvalidTopologyArgumentError('topology is closed');
  }
}

function isUnder(s: StreamRec, nodeId: string, rootId: string): boolean {
  let cur: string | null = nodeId;
  for (let guard = s.nodes.size + 1; cur !== null && guard > 0; guard--) {
    if (cur === rootId) return true;
    cur = s.nodes.get(cur)?.parentId ?? null;
  }
  return false;
}

function recomputeDepths(s: StreamRec): void {
  const kids = new Map<string, NodeRec[]>();
  for (const n of s.nodes.values()) {
    if (n.parentId === null) continue;
    const l = kids.get(n.parentId);
    if (l) l.push(n);
    else kids.set(n.parentId, [n]);
  }
  const stack: Array<[NodeRec, number]> = [[s.nodes.get(s.originId)!, 0]];
  while (stack.length > 0) {
    const [n, d] = stack.pop()!;
    n.depth = d;
    for (const k of kids.get(n.relayId) ?? []) stack.push([k, d + 1]);
  }
}

export function relayInfo(r: RelayRec): RelayInfo {
  return {
    id: r.id, region: r.region, url: r.url, capacity: r.capacity, fanout: r.fanout, load: r.load,
    viewers: r.viewers, children: r.children, streams: r.streams, draining: r.draining, up: r.up,
    leaseExpiresAt: r.leaseExpiresAt,
  };
}

function treeOf(s: StreamRec): StreamTree {
  const nodes: TreeNode[] = [...s.nodes.values()]
    .map((n) => ({ relayId: n.relayId, parentId: n.parentId, depth: n.depth, viewers: n.viewerSet.size, children: n.children, idleSinceMs: n.idleSince }))
    .sort((a, b) => a.depth - b.depth || (a.relayId < b.relayId ? -1 : a.relayId > b.relayId ? 1 : 0));
  return { stream: s.name, originId: s.originId, nodes, viewers: s.viewers.size };
}
