/**
 * `canopy relay`: one relay process. It registers itself in the shared topology (REDIS_URL),
 * heartbeats its load, and follows the topology's pull/re-parent/detach events (RelayAgent).
 *
 *   REDIS_URL=redis://10.0.0.2:6379 CANOPY_SECRET=... canopy relay --id edge-3 --host 10.0.0.7 \
 *     --port 8443 --region eu --capacity 500 --media-ports 40000-40999
 */
import { hostname } from 'node:os';
import { parseFlags, UsageError } from './args.ts';
import { RelayAgent, redisTopology } from '../mesh.ts';
import { Relay } from '../relay/index.ts';
import { logger } from '../util/log.ts';

const log = logger('cli:relay');

export function parsePortRange(s: string, flag = '--media-ports'): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(s.trim());
  const a = m ? Number(m[1]) : NaN;
  const b = m ? Number(m[2]) : NaN;
  if (!m || a < 1024 || b > 65535 || a > b) throw new UsageError(`${flag} must be A-B with 1024 <= A <= B <= 65535, got ${JSON.stringify(s)}`);
  return [a, b];
}

export function parseInteger(s: string | boolean | undefined, flag: string, min: number, max: number, dflt: number): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (typeof s !== 'string' || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer ${min}..${max}, got ${JSON.stringify(s)}`);
  return n;
}

/** `--ice-server stun:host:port[,stun:...]` into werift's iceServers. */
export function parseIceServers(s: string | boolean | undefined): { urls: string }[] {
  if (s === undefined) return [];
  if (typeof s !== 'string') throw new UsageError('--ice-server needs a URL, e.g. stun:stun.example.org:3478');
  return s.split(',').map((u) => {
    const url = u.trim();
    if (!/^(stun|turn):[^\s:]+(:\d{1,5})?(\?.*)?$/.test(url)) throw new UsageError(`--ice-server must be stun:HOST[:PORT] or turn:HOST[:PORT], got ${JSON.stringify(url)}`);
    return { urls: url };
  });
}

/** Resolve on SIGINT/SIGTERM (once). */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export async function run(argv: string[]): Promise<number> {
  const { flags } = parseFlags(argv, {
    id: 'string', host: 'string', port: 'string', region: 'string', capacity: 'string', fanout: 'string',
    'public-url': 'string', 'media-ports': 'string', redis: 'string', 'redis-prefix': 'string', lease: 'string',
    'ice-server': 'string',
  });
  const secret = process.env.CANOPY_SECRET;
  if (!secret) throw new UsageError('CANOPY_SECRET is not set; every process of a mesh must share the mesh secret');
  const redisUrl = (flags.redis as string | undefined) ?? process.env.REDIS_URL;
  if (!redisUrl) throw new UsageError('REDIS_URL (or --redis URL) is required: a separate relay finds signaling through the shared topology');
  const host = (flags.host as string | undefined) ?? '127.0.0.1';
  const port = parseInteger(flags.port, '--port', 0, 65535, 0);
  const capacity = parseInteger(flags.capacity, '--capacity', 1, 1_000_000, 500);
  const fanout = parseInteger(flags.fanout, '--fanout', 0, 1000, 4);
  const leaseMs = parseInteger(flags.lease, '--lease (ms)', 300, 600_000, 3000);
  const id = (flags.id as string | undefined) ?? `${hostname()}-${process.pid}`;
  const mediaPortRange = typeof flags['media-ports'] === 'string' ? parsePortRange(flags['media-ports']) : undefined;
  const region = (flags.region as string | undefined) ?? '';
  const prefix = (flags['redis-prefix'] as string | undefined) ?? process.env.CANOPY_REDIS_PREFIX;

  const iceServers = parseIceServers(flags['ice-server']);
  const relay = new Relay({ id, host, port, secret, region, capacity, iceServers, ...(mediaPortRange ? { mediaPortRange } : {}) });
  await relay.listen();
  // Behind NAT or a proxy the address others must use differs from the bind address.
  const publicUrl = flags['public-url'] as string | undefined;
  const advertised = publicUrl ? publicUrl.replace(/\/+$/, '') : relay.url;
  const topology = await redisTopology({ url: redisUrl, leaseMs, ...(prefix ? { prefix } : {}) });
  const agent = new RelayAgent({ relay, publicUrl: advertised, topology, secret, capacity, fanout, leaseMs, region });
  await agent.start();
  log.info('relay up', { id, url: advertised, capacity, fanout, region });
  // One line on stdout for process supervisors and tests: "relay <id> <url>".
  process.stdout.write(`relay ${id} ${advertised}\n`);
  const sig = await untilSignal();
  log.info('relay stopping', { id, signal: sig });
  await agent.stop(true);
  await relay.close();
  await topology.close();
  return 0;
}
