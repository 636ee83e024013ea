/**
 * Placement policy: pure functions of the topology state, no store and no clock. The stores call
 * them (MemoryTopology directly; RedisTopology's Lua scripts in src/topology/scripts.ts mirror
 * them line for line, and the shared contract suite checks the two agree).
 *
 * Slot rule (see types.ts): a relay keeps `fanout` slots per carried stream in reserve for child
 * relays, so viewers + streams*fanout <= capacity and children(stream) <= fanout; hence a parent
 * with a free fan-out slot always has a free slot, and a full relay can still grow the tree.
 */

/** What the policy needs to know about a relay. */
export interface RelayState {
  id: string;
  region: string;
  capacity: number;
  fanout: number;
  /** Viewer slots reserved, all streams. */
  viewers: number;
  /** Child relays fed, all streams. */
  children: number;
  /** Streams carried. */
  streams: number;
  up: boolean;
  draining: boolean;
}

/** A relay's place in one stream's tree. */
export interface NodeState {
  relayId: string;
  parentId: string | null;
  depth: number;
  /** Child relays it feeds in this stream. */
  children: number;
}

/** Viewer slots still free on a relay, after the per-stream fan-out reserve. */
export function viewerHeadroom(r: RelayState): number {
  return r.capacity - r.viewers - r.streams * r.fanout;
}

/** May a viewer be placed on this relay (which already carries the stream)? */
export function canTakeViewer(r: RelayState): boolean {
  return r.up && !r.draining && viewerHeadroom(r) >= 1;
}

/** May this relay start carrying one more stream and take a viewer of it? */
export function canJoinStream(r: RelayState): boolean {
  return r.up && !r.draining && viewerHeadroom(r) - r.fanout >= 1;
}

/** May this relay feed one more child relay in a stream where it already feeds `childrenInStream`? */
export function canFeedChild(r: RelayState, childrenInStream: number): boolean {
  return r.up && !r.draining && childrenInStream < r.fanout && r.viewers + r.children < r.capacity;
}

/** Compare loads (viewers+children)/capacity without floating point: <0 when a is less loaded. */
export function compareLoad(a: RelayState, b: RelayState): number {
  return (a.viewers + a.children) * b.capacity - (b.viewers + b.children) * a.capacity;
}

function compareId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function regionRank(r: RelayState, region: string): number {
  return region !== '' && r.region === region ? 0 : 1;
}

export interface ViewerCandidate {
  relay: RelayState;
  depth: number;
}

/**
 * Choose the relay for a viewer among relays that carry the stream: one with a free slot, in the
 * viewer's region first, then the shallowest, then the least loaded, then the lowest id (so every
 * store picks the same one). Returns the index into `candidates`, or -1 when none has room.
 */
export function chooseViewerRelay(candidates: readonly ViewerCandidate[], region = ''): number {
  let best = -1;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    if (!canTakeViewer(c.relay)) continue;
    if (best < 0 || compareViewerCandidates(c, candidates[best]!, region) < 0) best = i;
  }
  return best;
}

export function compareViewerCandidates(a: ViewerCandidate, b: ViewerCandidate, region: string): number {
  return (
    regionRank(a.relay, region) - regionRank(b.relay, region) ||
    a.depth - b.depth ||
    compareLoad(a.relay, b.relay) ||
    compareId(a.relay.id, b.relay.id)
  );
}

export interface ParentCandidate {
  relay: RelayState;
  depth: number;
  /** Child relays it already feeds in this stream. */
  children: number;
}

/**
 * Choose a relay that does not yet carry the stream, to attach for a viewer: room for the fan-out
 * reserve plus the viewer, the viewer's region first, then the least loaded, then lowest id.
 * `free` must not contain relays that already carry the stream. Returns an index or -1.
 */
export function chooseNewRelay(free: readonly RelayState[], region = ''): number {
  let best = -1;
  for (let i = 0; i < free.length; i++) {
    const r = free[i]!;
    if (!canJoinStream(r)) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const b = free[best]!;
    const cmp = regionRank(r, region) - regionRank(b, region) || compareLoad(r, b) || compareId(r.id, b.id);
    if (cmp < 0) best = i;
  }
  return best;
}

/**
 * Choose the parent a relay attaches under: a relay of the tree with a free fan-out slot, in the
 * child's region first, then the shallowest (this is what keeps depth logarithmic: the tree
 * fills level by level), then the lowest id. `exclude(id)` rules out parents
 * that would make a cycle (the child's own subtree) or are the child itself. Returns an index or -1.
 */
export function chooseParent(
  parents: readonly ParentCandidate[],
  childRegion: string,
  exclude: (relayId: string) => boolean = () => false,
): number {
  let best = -1;
  for (let i = 0; i < parents.length; i++) {
    const p = parents[i]!;
    if (!canFeedChild(p.relay, p.children) || exclude(p.relay.id)) continue;
    if (best < 0 || compareParents(p, parents[best]!, childRegion) < 0) best = i;
  }
  return best;
}

export function compareParents(a: ParentCandidate, b: ParentCandidate, region: string): number {
  // No load tie-break here: (region, depth, id) is an order Redis keeps in a sorted set (score =
  // depth, ties by member), so the Lua script finds the parent without scanning the tree.
  return regionRank(a.relay, region) - regionRank(b.relay, region) || a.depth - b.depth || compareId(a.relay.id, b.relay.id);
}

/** Is `nodeId` inside the subtree rooted at `rootId` (itself included)? Walks parent links. */
export function inSubtree(nodes: ReadonlyMap<string, NodeState>, nodeId: string, rootId: string): boolean {
  let cur: string | null = nodeId;
  let guard = nodes.size + 1;
  while (cur !== null && guard-- > 0) {
    if (cur === rootId) return true;
    cur = nodes.get(cur)?.parentId ?? null;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Repair

export interface RepairInput {
  /** The stream's tree before the loss (the lost relay included). */
  nodes: ReadonlyMap<string, NodeState>;
  /** Every relay the plan may use: those in the tree and those that could be attached. */
  relays: ReadonlyMap<string, RelayState>;
  /** The relay that died, drained or deregistered. Must be in `nodes` and not the origin. */
  lost: string;
  /** Viewer ids a relay serves in this stream, in a stable order (asked for the lost relay and any relay the plan cuts off). */
  viewersOf: (relayId: string) => readonly string[];
  /** Region the moved viewers prefer (the lost relay's; viewers were placed near it). */
  region: string;
}

export interface RepairPlan {
  /** Orphaned child relays and their new parents (their subtrees move with them). */
  reparent: Array<{ relayId: string; parentId: string }>;
  /** Orphaned child relays that found no parent: they stop carrying the stream (so do their subtrees' viewers, see moves). */
  detach: string[];
  /** Relays attached to the tree to make room for moved viewers. */
  attach: Array<{ relayId: string; parentId: string }>;
  /** Every viewer that must move, with its new relay (null = no room anywhere). */
  moves: Array<{ viewerId: string; relayId: string | null }>;
}

/**
 * Plan the repair of one stream after losing a relay (down, drained or deregistered), as one
 * step. For the origin (only ever drained: a dead origin ends the stream) only its viewers move.
 * Otherwise: each orphaned child
 * relay re-attaches to the nearest live ancestor of the lost relay with a free fan-out slot, else
 * to the best parent anywhere in the tree (chooseParent) outside its own subtree; each orphaned
 * viewer is placed as a new viewer would be (chooseViewerRelay, growing with chooseNewRelay +
 * chooseParent). Pure: works on copies of the input.
 */
export function planRepair(input: RepairInput): RepairPlan {
  const relays = new Map<string, RelayState>();
  for (const [id, r] of input.relays) relays.set(id, { ...r });
  const nodes = new Map<string, NodeState>();
  for (const [id, n] of input.nodes) nodes.set(id, { ...n });
  const lost = nodes.get(input.lost);
  if (!lost) throw new RangeError(`planRepair: "${input.lost}" is not a node of the tree`);
  const plan: RepairPlan = { reparent: [], detach: [], attach: [], moves: [] };
  if (lost.parentId === null) {
    // A draining origin keeps feeding its subtree (the publisher is connected to it); only its
    // viewers move elsewhere.
    const r = relays.get(input.lost);
    const vs = input.viewersOf(input.lost);
    if (r) {
      r.viewers -= vs.length;
      r.up = false;
    }
    const ctx: PlanCtx = { nodes, relays, open: null };
    for (const viewerId of vs) plan.moves.push({ viewerId, relayId: placeInPlan(ctx, input.region, plan) });
    return plan;
  }

  // Remove the lost node: its parent frees a fan-out slot; the lost relay loses the stream.
  const lostParent = nodes.get(lost.parentId);
  if (lostParent) {
    lostParent.children--;
    const pr = relays.get(lostParent.relayId);
    if (pr) pr.children--;
  }
  const lostRelay = relays.get(input.lost);
  if (lostRelay) {
    lostRelay.streams--;
    lostRelay.children -= lost.children;
    lostRelay.viewers -= input.viewersOf(input.lost).length;
    lostRelay.up = false; // never a target of its own repair, even when only draining
  }
  nodes.delete(input.lost);

  // Ancestors of the lost relay, nearest first.
  const ancestors: string[] = [];
  for (let a: string | null = lost.parentId; a !== null; a = nodes.get(a)?.parentId ?? null) {
    if (!nodes.has(a) || ancestors.length > nodes.size) break;
    ancestors.push(a);
  }

  const orphans = [...nodes.values()].filter((n) => n.parentId === input.lost).map((n) => n.relayId).sort(compareId);
  const movedViewers: string[] = [...input.viewersOf(input.lost)];
  const queue = [...orphans];
  while (queue.length > 0) {
    const childId = queue.shift()!;
    const child = nodes.get(childId)!;
    const childRelay = relays.get(childId);
    const exclude = (id: string): boolean => inSubtree(nodes, id, childId);
    let parentId: string | null = null;
    for (const a of ancestors) {
      const an = nodes.get(a)!;
      const ar = relays.get(a);
      if (ar && canFeedChild(ar, an.children) && !exclude(a)) {
        parentId = a;
        break;
      }
    }
    if (parentId === null) {
      const cands: ParentCandidate[] = [];
      for (const n of nodes.values()) {
        const r = relays.get(n.relayId);
        if (r) cands.push({ relay: r, depth: n.depth, children: n.children });
      }
      const i = chooseParent(cands, childRelay?.region ?? '', exclude);
      if (i >= 0) parentId = cands[i]!.relay.id;
    }
    if (parentId !== null) {
      const pn = nodes.get(parentId)!;
      pn.children++;
      relays.get(parentId)!.children++;
      child.parentId = parentId;
      setSubtreeDepth(nodes, childId, pn.depth + 1);
      plan.reparent.push({ relayId: childId, parentId });
    } else {
      // Nowhere to go: cut it off; its own children become orphans in turn, its viewers move.
      plan.detach.push(childId);
      nodes.delete(childId);
      const cut = input.viewersOf(childId);
      if (childRelay) {
        childRelay.streams--;
        childRelay.children -= child.children;
        childRelay.viewers -= cut.length;
        childRelay.up = false; // it could not be placed; do not put its own viewers back on it
      }
      movedViewers.push(...cut);
      for (const n of [...nodes.values()].filter((x) => x.parentId === childId).sort((a, b) => compareId(a.relayId, b.relayId))) {
        queue.push(n.relayId);
      }
    }
  }

  const ctx: PlanCtx = { nodes, relays, open: null };
  for (const viewerId of movedViewers) plan.moves.push({ viewerId, relayId: placeInPlan(ctx, input.region, plan) });
  return plan;
}

function setSubtreeDepth(nodes: Map<string, NodeState>, rootId: string, depth: number): void {
  const kids = new Map<string, string[]>();
  for (const n of nodes.values()) {
    if (n.parentId === null) continue;
    const l = kids.get(n.parentId);
    if (l) l.push(n.relayId);
    else kids.set(n.parentId, [n.relayId]);
  }
  const stack: Array<[string, number]> = [[rootId, depth]];
  while (stack.length > 0) {
    const [id, d] = stack.pop()!;
    nodes.get(id)!.depth = d;
    for (const k of kids.get(id) ?? []) stack.push([k, d + 1]);
  }
}

/** Viewer candidates of a working copy, built once per plan and kept current (perf: a repair moves hundreds of viewers). */
interface PlanCtx {
  nodes: Map<string, NodeState>;
  relays: Map<string, RelayState>;
  open: ViewerCandidate[] | null;
}

/** Place one viewer against a working copy (used by planRepair), mutating it; returns the relay id or null. */
function placeInPlan(ctx: PlanCtx, region: string, plan: RepairPlan): string | null {
  const { nodes, relays } = ctx;
  if (ctx.open === null) {
    ctx.open = [];
    for (const n of nodes.values()) {
      const r = relays.get(n.relayId);
      if (r && canTakeViewer(r)) ctx.open.push({ relay: r, depth: n.depth });
    }
  }
  const i = chooseViewerRelay(ctx.open, region);
  if (i >= 0) {
    const c = ctx.open[i]!;
    c.relay.viewers++;
    if (!canTakeViewer(c.relay)) ctx.open.splice(i, 1);
    return c.relay.id;
  }
  const free = [...relays.values()].filter((r) => !nodes.has(r.id));
  const j = chooseNewRelay(free, region);
  if (j < 0) return null;
  const nr = free[j]!;
  const parents: ParentCandidate[] = [];
  for (const n of nodes.values()) {
    const r = relays.get(n.relayId);
    if (r) parents.push({ relay: r, depth: n.depth, children: n.children });
  }
  const k = chooseParent(parents, nr.region, (id) => id === nr.id);
  if (k < 0) return null;
  const p = parents[k]!;
  nodes.get(p.relay.id)!.children++;
  p.relay.children++;
  nodes.set(nr.id, { relayId: nr.id, parentId: p.relay.id, depth: p.depth + 1, children: 0 });
  nr.streams++;
  nr.viewers++;
  if (canTakeViewer(nr)) ctx.open.push({ relay: nr, depth: p.depth + 1 });
  plan.attach.push({ relayId: nr.id, parentId: p.relay.id });
  return nr.id;
}
