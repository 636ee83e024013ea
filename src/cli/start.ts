/**
 * `canopy start` (`npm start`): the whole mesh on this machine. Without --redis: one process,
 * memory topology, signaling + N in-process relays (relay-0 is the origin). With --redis URL:
 * signaling in this process on the Redis topology and one `canopy relay` child process per
 * relay (one per core by default). Prints the pages to open, with working tokens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { generateSecret, mintToken } from '../auth/token.ts';
import { parseFlags, UsageError } from './args.ts';
import { parseIceServers, parseInteger, parsePortRange, untilSignal } from './relay.ts';
import { startMesh, redisTopology } from '../mesh.ts';
import { SignalingServer } from '../../signaling/server.ts';
import type { Topology } from '../topology/index.ts';

const BIN = fileURLToPath(new URL('../../bin/canopy.mjs', import.meta.url));
const WEB_ROOT = fileURLToPath(new URL('../../build/web/', import.meta.url));

export interface RelayChild {
  id: string;
  url: string;
  proc: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Spawn `canopy relay` as a child process and wait (bounded) for its "relay <id> <url>" line.
 * `args` are extra relay flags; the environment carries CANOPY_SECRET and REDIS_URL.
 */
export async function spawnRelay(id: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 20_000): Promise<RelayChild> {
  const proc = spawn(process.execPath, [BIN, 'relay', '--id', id, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (graceMs = 3000): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`relay ${id} did not start within ${timeoutMs} ms`)), timeoutMs);
      const rl = createInterface({ input: proc.stdout! });
      rl.on('line', (line) => {
        const m = /^relay (\S+) (\S+)$/.exec(line);
        if (m && m[1] === id) {
          clearTimeout(t);
          resolve(m[2]!);
        }
      });
      proc.once('exit', (code, sig) => {
        clearTimeout(t);
        reject(new Error(`relay ${id} exited during start-up (code ${code}, signal ${sig})`));
      });
    });
    return { id, url, proc, stop };
  } catch (e) {
    await stop(500);
    throw e;
  }
}

function splitRange(range: [number, number], n: number, i: number): string {
  const size = Math.floor((range[1] - range[0] + 1) / n);
  if (size < 2) throw new UsageError(`--media-ports ${range[0]}-${range[1]} is too small for ${n} relays`);
  return `${range[0] + i * size}-${range[0] + (i + 1) * size - 1}`;
}

export async function run(argv: string[]): Promise<number> {
  const { flags } = parseFlags(argv, {
    relays: 'string', port: 'string', host: 'string', 'media-ports': 'string', redis: 'string', stream: 'string',
    capacity: 'string', fanout: 'string', broker: 'boolean', 'web-root': 'string', 'ice-server': 'string',
  });
  const iceServers = parseIceServers(flags['ice-server']);
  const host = (flags.host as string | undefined) ?? '127.0.0.1';
  const port = parseInteger(flags.port, '--port', 0, 65535, 8080);
  const redisUrl = flags.redis as string | undefined;
  const relays = parseInteger(flags.relays, '--relays', 1, 64, redisUrl ? availableParallelism() : 3);
  const capacity = parseInteger(flags.capacity, '--capacity', 1, 1_000_000, 50);
  const fanout = parseInteger(flags.fanout, '--fanout', 0, 1000, 2);
  const mediaPorts = typeof flags['media-ports'] === 'string' ? parsePortRange(flags['media-ports']) : undefined;
  const stream = (flags.stream as string | undefined) ?? 'demo';
  if (!/^[A-Za-z0-9._~-]{1,128}$/.test(stream)) throw new UsageError('--stream must be 1-128 characters of A-Z a-z 0-9 . _ ~ -');
  const webRoot = (flags['web-root'] as string | undefined) ?? WEB_ROOT;

  let secret = process.env.CANOPY_SECRET;
  const out = (s: string): boolean => process.stdout.write(s + '\n');
  if (!secret) {
    secret = generateSecret();
    out(`canopy: CANOPY_SECRET is not set; generated one for this session:\n  export CANOPY_SECRET=${secret}`);
  }
  if (!existsSync(webRoot)) out(`canopy: no web pages in ${webRoot}; run \`npm run build:web\` (npm start does it for you)`);

  let close: () => Promise<void>;
  let url: string;
  let what: string;
  if (!redisUrl) {
    const mesh = await startMesh({ host, port, relays, secret, capacity, fanout, webRoot, broker: flags.broker === true, iceServers, ...(mediaPorts ? { mediaPortRange: mediaPorts } : {}) });
    url = mesh.signalingUrl;
    close = () => mesh.close();
    what = `${relays} relays in this process (relay-0 is the origin), memory topology`;
  } else {
    const env = { ...process.env, CANOPY_SECRET: secret, REDIS_URL: redisUrl };
    const children: RelayChild[] = [];
    let topology: Topology | undefined;
    let server: SignalingServer | undefined;
    close = async () => {
      await server?.close();
      await Promise.all(children.map((c) => c.stop()));
      await topology?.close();
    };
    try {
      topology = await redisTopology({ url: redisUrl, reapIntervalMs: 500 });
      const started = await Promise.all(
        Array.from({ length: relays }, (_, i) =>
          spawnRelay(`relay-${i}`, ['--host', host, '--capacity', String(capacity), '--fanout', String(fanout), ...(typeof flags['ice-server'] === 'string' ? ['--ice-server', flags['ice-server']] : []), ...(mediaPorts ? ['--media-ports', splitRange(mediaPorts, relays, i)] : [])], env),
        ),
      );
      children.push(...started);
      server = new SignalingServer({ secret, topology, host, port, webRoot, broker: flags.broker === true });
      await server.listen();
      url = server.url;
    } catch (e) {
      await close();
      throw e;
    }
    what = `${relays} relay processes (canopy relay), Redis topology at ${redisUrl}`;
  }

  const shown = url.replace('//0.0.0.0:', '//127.0.0.1:');
  const ttl = 24 * 3600;
  const now = Date.now();
  const pub = mintToken(secret, stream, 'publish', ttl, now);
  const watch = mintToken(secret, stream, 'watch', ttl, now);
  const admin = mintToken(secret, '*', 'admin', ttl, now);
  out(`canopy: signaling on ${url} with ${what}`);
  out(`  broadcast: ${shown}/broadcast.html?stream=${stream}&token=${pub}`);
  out(`  watch:     ${shown}/watch.html?stream=${stream}&token=${watch}`);
  out(`  topology:  ${shown}/topology.html?token=${admin}`);
  out(`  WHIP/WHEP: ${shown}/whip/${stream} and ${shown}/whep/${stream} (Authorization: Bearer <token above>)`);
  out('Tokens are valid for 24 h. Ctrl-C stops.');
  await untilSignal();
  out('canopy: stopping');
  await close();
  return 0;
}
