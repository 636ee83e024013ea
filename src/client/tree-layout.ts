/**
 * Lays out a stream's relay tree for the topology page: the origin at the top, each level one
 * row lower, leaves on consecutive columns and every parent centred over its children (a simple
 * tidy-tree layout). Pure and tested in Node; the page turns the result into SVG.
 */

/** One relay of a stream's tree, as the admin API reports it (StreamTree.nodes). */
export interface TreeNodeIn {
  relayId: string;
  parentId: string | null;
  depth?: number;
  viewers: number;
  children?: number;
}

/** A relay's load across all streams (from /admin/relays). */
export interface RelayLoadIn {
  id: string;
  url?: string;
  region?: string;
  capacity?: number;
  viewers?: number;
  children?: number;
  load?: number;
  up?: boolean;
  draining?: boolean;
  /** Streams it carries. */
  streams?: number;
}

export interface LaidOutNode {
  relayId: string;
  parentId: string | null;
  depth: number;
  viewers: number;
  /** Column centre, in column units (0-based; leaves are integers). */
  col: number;
  /** Slots used / capacity across all streams, 0..1, when the relay's capacity is known. */
  load?: number;
  up: boolean;
  draining: boolean;
  region?: string;
}

export interface TreeLayout {
  nodes: LaidOutNode[];
  /** Number of leaf columns (width in column units). */
  columns: number;
  /** Number of rows (max depth + 1). */
  rows: number;
  /** Parent → child edges by relay id. */
  links: Array<{ from: string; to: string }>;
}

/**
 * Nodes whose parent is missing from the list (a relay mid-repair) are drawn as extra roots,
 * so nothing vanishes from the picture. Cycles cannot come from the store, but a malformed
 * reply must not hang the page, so a visited set guards the walk.
 */
export function layoutTree(nodesIn: readonly TreeNodeIn[], relays: readonly RelayLoadIn[] = []): TreeLayout {
  const byId = new Map(nodesIn.map((n) => [n.relayId, n]));
  const load = new Map(relays.map((r) => [r.id, r]));
  const kids = new Map<string, TreeNodeIn[]>();
  const roots: TreeNodeIn[] = [];
  for (const n of nodesIn) {
    if (n.parentId && byId.has(n.parentId) && n.parentId !== n.relayId) {
      const list = kids.get(n.parentId) ?? [];
      list.push(n);
      kids.set(n.parentId, list);
    } else {
      roots.push(n);
    }
  }
  const byName = (a: TreeNodeIn, b: TreeNodeIn): number => (a.relayId < b.relayId ? -1 : a.relayId > b.relayId ? 1 : 0);
  roots.sort((a, b) => (a.parentId === null ? 0 : 1) - (b.parentId === null ? 0 : 1) || byName(a, b));
  for (const list of kids.values()) list.sort(byName);

  const out: LaidOutNode[] = [];
  const links: TreeLayout['links'] = [];
  const seen = new Set<string>();
  let nextLeaf = 0;
  let rows = 0;
  const place = (n: TreeNodeIn, depth: number): number => {
    seen.add(n.relayId);
    rows = Math.max(rows, depth + 1);
    const childCols: number[] = [];
    for (const c of kids.get(n.relayId) ?? []) {
      if (seen.has(c.relayId)) continue;
      links.push({ from: n.relayId, to: c.relayId });
      childCols.push(place(c, depth + 1));
    }
    const col = childCols.length ? (childCols[0]! + childCols[childCols.length - 1]!) / 2 : nextLeaf++;
    const r = load.get(n.relayId);
    const used = (r?.viewers ?? 0) + (r?.children ?? 0);
    out.push({
      relayId: n.relayId,
      parentId: n.parentId,
      depth,
      viewers: n.viewers,
      col,
      load: r?.capacity ? Math.min(1, used / r.capacity) : undefined,
      up: r?.up ?? true,
      draining: r?.draining ?? false,
      region: r?.region || undefined,
    });
    return col;
  };
  for (const r of roots) if (!seen.has(r.relayId)) place(r, 0);
  // Anything left is on a cycle: place it as its own root.
  for (const n of nodesIn) if (!seen.has(n.relayId)) place(n, 0);
  out.sort((a, b) => a.depth - b.depth || a.col - b.col);
  return { nodes: out, columns: Math.max(1, nextLeaf), rows: Math.max(1, rows), links };
}

/** Accept the admin API's replies in the shapes it may take (list of names, or objects). */
export function streamNames(reply: unknown): string[] {
  const list = Array.isArray(reply) ? reply : reply && typeof reply === 'object' && Array.isArray((reply as { streams?: unknown }).streams) ? (reply as { streams: unknown[] }).streams : [];
  const names: string[] = [];
  for (const v of list) {
    if (typeof v === 'string') names.push(v);
    else if (v && typeof v === 'object') {
      const o = v as { stream?: unknown; name?: unknown };
      const n = typeof o.stream === 'string' ? o.stream : typeof o.name === 'string' ? o.name : undefined;
      if (n) names.push(n);
    }
  }
  return [...new Set(names)].sort();
}
