/**
 * `canopy signaling`: one signaling process on the shared topology (REDIS_URL). Run as many as
 * you like behind any load balancer; WebSocket sessions live on the process they connect to.
 *
 *   REDIS_URL=redis://10.0.0.2:6379 CANOPY_SECRET=... canopy signaling --host 0.0.0.0 --port 8080
 */
import { parseFlags, UsageError } from './args.ts';
import { parseInteger, untilSignal } from './relay.ts';
import { redisTopology } from '../mesh.ts';
import { SignalingServer } from '../../signaling/server.ts';
import { logger } from '../util/log.ts';

const log = logger('cli:signaling');

export async function run(argv: string[]): Promise<number> {
  const { flags } = parseFlags(argv, {
    host: 'string', port: 'string', redis: 'string', 'redis-prefix': 'string', broker: 'boolean', 'web-root': 'string',
    'joins-per-second': 'string', 'frames-per-second': 'string', 'sessions-per-ip': 'string', 'max-frame': 'string', reap: 'string',
  });
  const secret = process.env.CANOPY_SECRET;
  if (!secret) throw new UsageError('CANOPY_SECRET is not set; every process of a mesh must share the mesh secret');
  const redisUrl = (flags.redis as string | undefined) ?? process.env.REDIS_URL;
  if (!redisUrl) throw new UsageError('REDIS_URL (or --redis URL) is required; for one machine without Redis use `canopy start`');
  const prefix = (flags['redis-prefix'] as string | undefined) ?? process.env.CANOPY_REDIS_PREFIX;
  const port = parseInteger(flags.port, '--port', 0, 65535, 8080);
  const reapIntervalMs = parseInteger(flags.reap, '--reap (ms)', 0, 60_000, 500);
  const limits = {
    ...(flags['joins-per-second'] !== undefined ? { joinsPerSecond: parseInteger(flags['joins-per-second'], '--joins-per-second', 1, 1_000_000, 5) } : {}),
    ...(flags['frames-per-second'] !== undefined ? { framesPerSecond: parseInteger(flags['frames-per-second'], '--frames-per-second', 1, 1_000_000, 50) } : {}),
    ...(flags['sessions-per-ip'] !== undefined ? { sessionsPerIp: parseInteger(flags['sessions-per-ip'], '--sessions-per-ip', 1, 10_000_000, 200) } : {}),
    ...(flags['max-frame'] !== undefined ? { maxFrameBytes: parseInteger(flags['max-frame'], '--max-frame', 1024, 16 * 1024 * 1024, 65536) } : {}),
  };
  // Every signaling process runs the store's maintenance step (declaring expired relays down is
  // exactly-once across processes), so relay failures are noticed while any signaling is up.
  const topology = await redisTopology({ url: redisUrl, reapIntervalMs, ...(prefix ? { prefix } : {}) });
  const server = new SignalingServer({
    secret,
    topology,
    host: (flags.host as string | undefined) ?? '127.0.0.1',
    port,
    broker: flags.broker === true,
    limits,
    ...(typeof flags['web-root'] === 'string' ? { webRoot: flags['web-root'] } : {}),
  });
  await server.listen();
  log.info('signaling up', { url: server.url });
  process.stdout.write(`signaling ${server.url}\n`);
  const sig = await untilSignal();
  log.info('signaling stopping', { signal: sig });
  await server.close();
  await topology.close();
  return 0;
}
