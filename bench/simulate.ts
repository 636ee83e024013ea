/**
 * Scale simulation: the real policy and a real store (MemoryTopology, or RedisTopology with
 * --redis) through a large audience and a run of relay failures, no media.
 *
 *   npm run simulate -- --viewers 1000000 --relays 4000 --regions 4 [--redis]
 *        [--failures 20] [--capacity 300] [--fanout 8] [--batch 500] [--seed 1]
 *
 * Relays register in round-robin regions; viewers join with a seeded random region, in batches
 * through placeViewers (one atomic step, one Redis round trip per batch). Then `--failures`
 * relays of the tree (seeded choice) lose their lease: each is re-registered with a 1 ms lease,
 * the store's clock moves 2 ms, and reapExpired declares it down and repairs the tree; the moved
 * viewers and relays and the repair time are recorded per failure. Finally the invariants are
 * checked (no relay over capacity, every relay reaches the origin). Time is a FakeClock handed
 * to the store (in Redis mode too), so leases expire exactly when the simulation says.
 * Last line: one JSON object.
 */
import { FakeClock } from '../src/util/clock.ts';
import { MemoryTopology, RedisTopology, MAX_PLACE_BATCH, type PlaceOptions, type Topology } from '../src/topology/index.ts';
import { startRedis, uniquePrefix, type TestRedis } from '../test/helpers/redis.ts';
import { mulberry32 as rng } from '../src/util/random.ts';

function num(name: string, def: number, min = 1): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} needs an integer >= ${min}, got ${process.argv[i + 1]}`);
  return v;
}


function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
}

async function main(): Promise<number> {
  const viewers = num('viewers', 1_000_000);
  const nRelays = num('relays', 4000, 2);
  const nRegions = num('regions', 4);
  const failures = num('failures', 20, 0);
  const capacity = num('capacity', 300);
  const fanout = num('fanout', 8, 2);
  const batch = Math.min(num('batch', 500), MAX_PLACE_BATCH);
  const seed = num('seed', 1, 0);
  const useRedis = process.argv.includes('--redis');
  if (failures > nRelays / 2) throw new Error('--failures must be at most half of --relays');

  const clock = new FakeClock(1_700_000_000_000);
  let redis: TestRedis | undefined;
  let prefix = '';
  let topo: Topology;
  if (useRedis) {
    redis = await startRedis();
    prefix = uniquePrefix('simulate');
    const rt = new RedisTopology({ url: redis.url, prefix, clock, commandTimeoutMs: 30_000, idleGraceMs: 3_600_000 });
    await rt.ready();
    topo = rt;
  } else {
    topo = new MemoryTopology({ clock, idleGraceMs: 3_600_000 });
  }
  const rand = rng(seed);
  const regions = Array.from({ length: nRegions }, (_, i) => `region-${i}`);
  const LONG = 86_400_000; // a day: nothing expires unless the simulation says so
  try {
    const tReg = performance.now();
    for (let i = 0; i < nRelays; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, nRelays - i) }, (_, k) =>
          topo.registerRelay({ id: `relay-${i + k}`, region: regions[(i + k) % nRegions]!, url: `http://10.${(i + k) >> 16}.${((i + k) >> 8) & 255}.${(i + k) & 255}:8443`, capacity, fanout, leaseMs: LONG }),
        ),
      );
    }
    await topo.registerStream('live', 'relay-0');
    console.log(`store ${useRedis ? 'redis' : 'memory'}: ${nRelays} relays (capacity ${capacity}, fan-out ${fanout}) in ${nRegions} regions registered in ${((performance.now() - tReg) / 1000).toFixed(1)} s`);

    // ---- joins ----
    let placed = 0;
    let refused = 0;
    const t0 = performance.now();
    for (let done = 0; done < viewers; done += batch) {
      const reqs: PlaceOptions[] = [];
      for (let k = 0; k < Math.min(batch, viewers - done); k++) reqs.push({ region: regions[Math.floor(rand() * nRegions)]! });
      const res = await topo.placeViewers('live', reqs);
      for (const r of res) {
        if (r instanceof Error) refused++;
        else placed++;
      }
    }
    const joinSec = (performance.now() - t0) / 1000;
    const joinsPerS = viewers / joinSec;

    const tree = (await topo.getTree('live'))!;
    const depths: number[] = [];
    for (const n of tree.nodes) for (let v = 0; v < n.viewers; v++) depths.push(n.depth);
    depths.sort((a, b) => a - b);
    const maxDepth = Math.max(...tree.nodes.map((n) => n.depth));
    const relays = new Map((await topo.listRelays()).map((r) => [r.id, r]));
    let used = 0;
    let cap = 0;
    for (const n of tree.nodes) {
      const r = relays.get(n.relayId)!;
      used += r.viewers + r.children;
      cap += r.capacity;
    }
    const balanced = Math.ceil(Math.log(tree.nodes.length * (fanout - 1) + 1) / Math.log(fanout)) - 1;
    console.log(`joins: ${placed} placed, ${refused} refused, in ${joinSec.toFixed(2)} s = ${joinsPerS.toFixed(0)} joins/s (batches of ${batch})`);
    console.log(`tree: ${tree.nodes.length} relays used of ${nRelays}; depth max ${maxDepth} (a balanced ${fanout}-ary tree of that size: ${balanced}), viewer depth p50 ${quantile(depths, 0.5)} p99 ${quantile(depths, 0.99)}; slot utilisation ${((100 * used) / cap).toFixed(1)}% of the used relays' capacity`);

    // ---- failures ----
    const moved: number[] = [];
    const movedRelays: number[] = [];
    const repairMs: number[] = [];
    let unplaced = 0;
    const dead = new Set<string>();
    const unsub = topo.subscribe((e) => {
      if (e.kind === 'VIEWER_MOVE' && e.relayId === '') unplaced++;
    });
    for (let f = 0; f < failures; f++) {
      const cur = (await topo.getTree('live'))!;
      const candidates = cur.nodes.filter((n) => n.parentId !== null && !dead.has(n.relayId));
      if (candidates.length === 0) break;
      const victim = candidates[Math.floor(rand() * candidates.length)]!;
      const info = relays.get(victim.relayId)!;
      // Its lease now ends in 1 ms; nobody else's does.
      await topo.registerRelay({ id: info.id, region: info.region, url: info.url, capacity: info.capacity, fanout: info.fanout, leaseMs: 1 });
      clock.advance(2);
      const t = performance.now();
      const res = await topo.reapExpired();
      repairMs.push(performance.now() - t);
      if (res.down.join() !== victim.relayId) throw new Error(`expected ${victim.relayId} down, got ${res.down.join()}`);
      dead.add(victim.relayId);
      moved.push(res.movedViewers);
      movedRelays.push(res.movedRelays);
    }
    unsub();
    await new Promise((r) => setTimeout(r, useRedis ? 200 : 0)); // let pub/sub deliver the last events

    // ---- invariants ----
    const after = (await topo.getTree('live'))!;
    const relaysAfter = new Map((await topo.listRelays()).map((r) => [r.id, r]));
    let overfilled = 0;
    for (const r of relaysAfter.values()) if (r.viewers + r.children > r.capacity) overfilled++;
    const byId = new Map(after.nodes.map((n) => [n.relayId, n]));
    let broken = 0;
    for (const n of after.nodes) {
      let cur = n;
      let steps = 0;
      while (cur.parentId !== null && steps++ <= after.nodes.length) cur = byId.get(cur.parentId) ?? cur;
      if (cur.relayId !== after.originId || n.children > fanout) broken++;
    }
    const avg = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
    const sortedMs = [...repairMs].sort((a, b) => a - b);
    console.log(
      `failures: ${moved.length}; per failure: viewers moved avg ${avg(moved).toFixed(1)} max ${Math.max(0, ...moved)}, relays re-parented avg ${avg(movedRelays).toFixed(2)} max ${Math.max(0, ...movedRelays)}; repair (reapExpired) avg ${avg(repairMs).toFixed(1)} ms max ${quantile(sortedMs, 1).toFixed(1)} ms`,
    );
    console.log(`after failures: ${after.viewers} viewers on ${after.nodes.length} relays, depth max ${Math.max(...after.nodes.map((n) => n.depth))}, ${unplaced} viewers found no room, ${overfilled} relays over capacity, ${broken} broken tree links`);
    console.log(
      JSON.stringify({ bench: 'simulate', viewers: placed, relays: tree.nodes.length, max_depth: maxDepth, joins_per_s: Math.round(joinsPerS), moved_per_failure: +avg(moved).toFixed(1) }),
    );
    return overfilled === 0 && broken === 0 && after.viewers + unplaced === placed ? 0 : 1;
  } finally {
    await topo.close();
    if (redis) {
      await redis.cleanup(prefix);
      await redis.stop();
    }
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

