/**
 * Which relay a broadcaster publishes to. Pure: a function of the registered relays.
 *
 * A stream that is already live keeps its origin (a broadcaster reconnecting after a network
 * blip lands where its tree is rooted). Otherwise: a live, non-draining relay, in the
 * broadcaster's region first, then the least loaded ((viewers + children) / capacity, compared
 * without floating point), then the lowest id — so with equal load relay 0 is the origin and
 * every signaling process picks the same one.
 */
import type { RelayInfo } from '../src/topology/index.ts';

export function pickOrigin(relays: readonly RelayInfo[], region = '', liveOriginId?: string): RelayInfo | undefined {
  if (liveOriginId) {
    const cur = relays.find((r) => r.id === liveOriginId);
    if (cur && cur.up && !cur.draining) return cur;
  }
  let best: RelayInfo | undefined;
  for (const r of relays) {
    if (!r.up || r.draining) continue;
    if (!best || compareOrigin(r, best, region) < 0) best = r;
  }
  return best;
}

function compareOrigin(a: RelayInfo, b: RelayInfo, region: string): number {
  const ra = region !== '' && a.region === region ? 0 : 1;
  const rb = region !== '' && b.region === region ? 0 : 1;
  return ra - rb || (a.viewers + a.children) * b.capacity - (b.viewers + b.children) * a.capacity || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
