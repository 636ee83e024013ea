/**
 * Placement throughput and latency against a real Redis.
 *
 *   npm run bench:topology [-- --placements 100000 --clients 4 --inflight 2 --seconds 20 --pin]
 *
 * Starts its own redis-server (test/helpers/redis.ts). With --pin, Redis runs on CPU 0 and this
 * script re-runs itself on CPU 1 (taskset), so the two never share a core — right on a quiet
 * machine; on a 2-core machine shared with other busy processes it only locks each side onto a
 * contended core (measured: 3-6k/s pinned against 13k/s unpinned at load ~9), so it is opt-in
 * and the output says which way it ran. Four RedisTopology
 * instances, each with its own connections (as four signaling processes would have), place
 * viewers on one stream whose tree grows as it fills. Afterwards it reads every relay back and
 * counts the ones over capacity. Last line: one JSON object.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RedisTopology } from '../src/topology/index.ts';
import { startRedis, uniquePrefix } from '../test/helpers/redis.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

const PIN = process.argv.includes('--pin') && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

async function main(): Promise<number> {
  if (PIN && process.env.CANOPY_BENCH_PINNED !== '1') {
    // Re-run this script on CPU 1; Redis goes on CPU 0.
    const self = fileURLToPath(import.meta.url);
    const child = spawn('taskset', ['-c', '1', process.execPath, '--import', 'tsx', self, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, CANOPY_BENCH_PINNED: '1' },
    });
    return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  }
  const total = Math.floor(arg('placements', 100_000));
  const nClients = Math.floor(arg('clients', 4));
  const inflight = Math.floor(arg('inflight', 2));
  const seconds = arg('seconds', 20);
  const capacity = 500;
  const fanout = 4;
  const nRelays = Math.ceil(total / (capacity - fanout)) + 20;

  const redis = await startRedis({ own: true, cpu: PIN ? '0' : undefined });
  const prefix = uniquePrefix('bench');
  const clients = Array.from({ length: nClients }, () => new RedisTopology({ url: redis.url, prefix, commandTimeoutMs: 5000 }));
  try {
    await Promise.all(clients.map((c) => c.ready()));
    const admin = clients[0]!;
    const regions = ['eu', 'us', 'ap', 'sa'];
    for (let i = 0; i < nRelays; i++) {
      await admin.registerRelay({ id: `relay-${i}`, url: `http://10.0.${i >> 8}.${i & 255}:8443`, region: regions[i % 4]!, capacity, fanout, leaseMs: 600_000 });
    }
    await admin.registerStream('bench', 'relay-0');
    // Warm up (script load, connection buffers); not measured.
    for (let i = 0; i < 200; i++) await clients[i % nClients]!.placeViewer('bench', { region: regions[i % 4] });

    const lat: number[] = [];
    let placed = 200;
    let errors = 0;
    let next = 0;
    const deadline = performance.now() + seconds * 1000;
    const worker = async (c: RedisTopology, w: number): Promise<void> => {
      while (next < total - 200 && performance.now() < deadline) {
        const i = next++;
        const t = performance.now();
        try {
          await c.placeViewer('bench', { region: regions[(i + w) % 4] });
          lat.push(performance.now() - t);
          placed++;
        } catch {
          errors++;
        }
      }
    };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(clients.flatMap((c, ci) => Array.from({ length: inflight }, (_, k) => worker(c, ci * inflight + k))));
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);

    // Verify: read every relay back; count any over capacity or over its viewer share.
    const relays = await admin.listRelays();
    const overfilled = relays.filter((r) => r.viewers + r.children > r.capacity || r.viewers > r.capacity - r.fanout * r.streams).length;
    const tree = (await admin.getTree('bench'))!;
    const maxDepth = Math.max(...tree.nodes.map((n) => n.depth));
    lat.sort((a, b) => a - b);
    const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
    const perS = lat.length / elapsed;
    console.log(`redis ${PIN ? 'pinned to CPU 0, clients pinned to CPU 1' : 'and clients not pinned (--pin to pin)'}; ${nClients} clients x ${inflight} in flight, one Node process, one connection pair per client`);
    console.log(`placed ${placed} viewers (${errors} errors) on ${tree.nodes.length} relays, tree depth ${maxDepth}, store says ${tree.viewers} viewers`);
    console.log(`client CPU ${((cpu.user + cpu.system) / lat.length).toFixed(1)} us per placement (${((100 * (cpu.user + cpu.system)) / 1e6 / elapsed).toFixed(0)}% of one core); load average ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`);
    console.log(`placements/s ${perS.toFixed(0)}  p50 ${q(0.5).toFixed(3)} ms  p99 ${q(0.99).toFixed(3)} ms  max ${q(1).toFixed(3)} ms`);
    if (tree.viewers !== placed) console.log(`MISMATCH: store holds ${tree.viewers} reservations, ${placed} placements succeeded`);
    await redis.cleanup(prefix);
    console.log(JSON.stringify({ bench: 'topology', placements_per_s: Math.round(perS), p50_ms: +q(0.5).toFixed(3), p99_ms: +q(0.99).toFixed(3), overfilled }));
    return overfilled === 0 && tree.viewers === placed ? 0 : 1;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await redis.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
