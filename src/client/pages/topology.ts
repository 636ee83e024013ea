/**
 * The topology page: `topology.html?token=ADMIN_TOKEN` polls signaling's admin API
 * (/admin/streams, /admin/streams/{stream}, /admin/relays) and draws every stream's relay tree
 * as SVG, with viewers per relay and each relay's load. A table under each picture carries the
 * same facts for screen readers.
 */
import { layoutTree, streamNames, type RelayLoadIn, type TreeLayout, type TreeNodeIn } from '../tree-layout.ts';
import { $, param, setText, showNotice } from './common.ts';

const POLL_MS = Number(param('interval') ?? 1000);
const COL_W = 180;
const ROW_H = 120;
const BOX_W = 150;
const BOX_H = 58;
const PAD = 20;
const SVG_NS = 'http://www.w3.org/2000/svg';

interface StreamTreeIn {
  stream: string;
  originId?: string;
  nodes: TreeNodeIn[];
  viewers?: number;
}

class AdminError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'AdminError';
  }
}

async function getJson(path: string, token: string): Promise<unknown> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, signal: ctl.signal, cache: 'no-store' });
    if (!res.ok) throw new AdminError(res.status, `${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    return await res.json();
  } finally {
    clearTimeout(timer);
  }
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawTree(tree: StreamTreeIn, layout: TreeLayout): SVGSVGElement {
  const width = layout.columns * COL_W + PAD * 2;
  const height = layout.rows * ROW_H + PAD * 2;
  const total = tree.viewers ?? layout.nodes.reduce((s, n) => s + n.viewers, 0);
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    role: 'img',
    'aria-label': `Stream ${tree.stream}: ${layout.nodes.length} relays, ${total} viewers`,
  });
  root.style.maxWidth = `${width}px`;
  const pos = new Map(layout.nodes.map((n) => [n.relayId, { x: PAD + n.col * COL_W + COL_W / 2, y: PAD + n.depth * ROW_H + BOX_H / 2 }]));
  for (const l of layout.links) {
    const a = pos.get(l.from)!;
    const b = pos.get(l.to)!;
    const midY = (a.y + BOX_H / 2 + b.y - BOX_H / 2) / 2;
    root.append(svg('path', { class: 'tree-link', d: `M${a.x},${a.y + BOX_H / 2} C${a.x},${midY} ${b.x},${midY} ${b.x},${b.y - BOX_H / 2}` }));
  }
  for (const n of layout.nodes) {
    const p = pos.get(n.relayId)!;
    const cls = ['tree-node', n.depth === 0 ? 'origin' : '', n.up ? '' : 'down', n.draining ? 'draining' : ''].filter(Boolean).join(' ');
    const g = svg('g', { class: cls, 'data-relay': n.relayId, 'data-viewers': n.viewers, 'data-depth': n.depth, transform: `translate(${p.x - BOX_W / 2},${p.y - BOX_H / 2})` });
    g.append(svg('title', {}, `${n.relayId}: depth ${n.depth}, ${n.viewers} viewers${n.load !== undefined ? `, load ${Math.round(n.load * 100)} %` : ''}${n.up ? '' : ', DOWN'}`));
    g.append(svg('rect', { width: BOX_W, height: BOX_H, rx: 8 }));
    const role = n.depth === 0 ? 'origin' : n.depth === 1 ? 'edge' : 'sub-edge';
    g.append(svg('text', { class: 'id', x: 10, y: 18 }, n.relayId));
    g.append(svg('text', { x: 10, y: 34 }, `${role} · ${n.viewers} viewer${n.viewers === 1 ? '' : 's'}`));
    if (n.load !== undefined) {
      g.append(svg('rect', { class: 'load-bg', x: 10, y: 42, width: BOX_W - 20, height: 6, rx: 3 }));
      const lc = n.load >= 1 ? 'load full' : n.load >= 0.75 ? 'load high' : 'load';
      g.append(svg('rect', { class: lc, x: 10, y: 42, width: Math.max(2, (BOX_W - 20) * n.load), height: 6, rx: 3 }));
    }
    // Viewers as dots under the box (at most 12, then a count).
    const shown = Math.min(n.viewers, 12);
    for (let i = 0; i < shown; i++) g.append(svg('circle', { class: 'viewer-dot', cx: 10 + i * 11, cy: BOX_H + 10, r: 4 }));
    if (n.viewers > shown) g.append(svg('text', { x: 14 + shown * 11, y: BOX_H + 14 }, `+${n.viewers - shown}`));
    root.append(g);
  }
  return root;
}

function drawTable(layout: TreeLayout): HTMLTableElement {
  const table = document.createElement('table');
  table.innerHTML = '<thead><tr><th scope="col">Relay</th><th scope="col">Parent</th><th scope="col">Depth</th><th scope="col">Viewers</th><th scope="col">Load</th></tr></thead>';
  const body = document.createElement('tbody');
  for (const n of layout.nodes) {
    const tr = document.createElement('tr');
    tr.dataset.relay = n.relayId;
    for (const [v, num] of [
      [n.relayId, false],
      [n.parentId ?? '— (origin)', false],
      [String(n.depth), true],
      [String(n.viewers), true],
      [n.load === undefined ? '–' : `${Math.round(n.load * 100)} %`, true],
    ] as const) {
      const td = document.createElement('td');
      td.textContent = v;
      if (num) td.className = 'num';
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  return table;
}

function renderStreams(trees: StreamTreeIn[], relays: RelayLoadIn[]): void {
  const host = $('streams');
  host.replaceChildren();
  if (trees.length === 0) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'No live streams. Open the broadcast page to start one.';
    host.append(p);
  }
  for (const tree of trees) {
    const layout = layoutTree(tree.nodes, relays);
    const total = tree.viewers ?? layout.nodes.reduce((s, n) => s + n.viewers, 0);
    const sec = document.createElement('section');
    sec.className = 'card stream';
    sec.dataset.stream = tree.stream;
    sec.dataset.viewers = String(total);
    const h = document.createElement('h2');
    h.textContent = `${tree.stream} · ${layout.nodes.length} relay${layout.nodes.length === 1 ? '' : 's'} · ${total} viewer${total === 1 ? '' : 's'} · depth ${layout.rows - 1}`;
    sec.append(h, drawTree(tree, layout), drawTable(layout));
    host.append(sec);
  }
}

/** POST /admin/relays/{id}/drain: the relay takes nothing new and its viewers and children move. */
async function drain(id: string, token: string, button: HTMLButtonElement): Promise<void> {
  if (!confirmDrain(id)) return;
  button.disabled = true;
  button.textContent = 'Draining…';
  try {
    const res = await fetch(`/admin/relays/${encodeURIComponent(id)}/drain`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    if (!res.ok) throw new AdminError(res.status, `drain ${id} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  } catch (e) {
    showNotice(`Cannot drain ${id}: ${(e as Error).message}`);
    button.disabled = false;
    button.textContent = 'Drain';
  }
}

// `?confirm=0` skips the dialog (tests, kiosks); people get asked, since draining moves viewers.
const confirmDrain = (id: string): boolean => param('confirm') === '0' || confirm(`Drain ${id}? Its viewers and child relays move to other relays.`);

function renderRelays(relays: RelayLoadIn[], token: string): void {
  const body = $('relays');
  // Keep the rows (and a focused Drain button) when nothing changed since the last poll.
  const sig = JSON.stringify(relays.map((r) => [r.id, r.region, r.up, r.draining, r.streams, r.viewers, r.children, r.capacity]));
  if (body.dataset.sig === sig) return;
  body.dataset.sig = sig;
  body.replaceChildren();
  for (const r of relays) {
    const tr = document.createElement('tr');
    tr.dataset.relay = r.id;
    const state = r.up === false ? 'down' : r.draining ? 'draining' : 'up';
    for (const [v, num] of [
      [r.id, false],
      [r.region || '–', false],
      [state, false],
      [String(r.streams ?? '–'), true],
      [String(r.viewers ?? '–'), true],
      [String(r.children ?? '–'), true],
      [String(r.capacity ?? '–'), true],
    ] as const) {
      const td = document.createElement('td');
      td.textContent = v;
      if (num) td.className = 'num';
      tr.append(td);
    }
    const td = document.createElement('td');
    if (r.up !== false && !r.draining) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Drain';
      b.setAttribute('aria-label', `Drain ${r.id}`);
      b.addEventListener('click', () => void drain(r.id, token, b));
      td.append(b);
    }
    tr.append(td);
    body.append(tr);
  }
}

async function poll(token: string): Promise<void> {
  const [names, relaysReply] = await Promise.all([getJson('/admin/streams', token), getJson('/admin/relays', token)]);
  const relays = (Array.isArray(relaysReply) ? relaysReply : ((relaysReply as { relays?: unknown[] })?.relays ?? [])) as RelayLoadIn[];
  const trees: StreamTreeIn[] = [];
  for (const s of streamNames(names)) {
    try {
      const t = (await getJson(`/admin/streams/${encodeURIComponent(s)}`, token)) as StreamTreeIn | undefined | null;
      if (t && Array.isArray(t.nodes)) trees.push({ ...t, stream: t.stream ?? s });
    } catch (e) {
      if (e instanceof AdminError && e.status === 404) continue; // ended between the two calls
      throw e;
    }
  }
  renderStreams(trees, relays);
  renderRelays(relays, token);
  document.body.dataset.updated = String(Date.now());
  setText('updated', `updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
}

function main(): void {
  const token = param('token');
  if (!token) {
    showNotice('This page needs ?token=ADMIN_TOKEN in its address (`npm start` prints a working link).');
    return;
  }
  const loop = async (): Promise<void> => {
    try {
      await poll(token);
      $('notice').hidden = true;
    } catch (e) {
      showNotice(`Cannot read the topology: ${(e as Error).message}`);
    }
    setTimeout(() => void loop(), POLL_MS);
  };
  void loop();
}

main();
