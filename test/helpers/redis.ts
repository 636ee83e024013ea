/**
 * A real Redis for tests and benchmarks.
 *
 *   const redis = await startRedis();          // own redis-server on 127.0.0.1:<free port>
 *   const prefix = uniquePrefix('signaling');  // unique key prefix for this suite/run
 *   ... new RedisTopology({ url: redis.url, prefix }) ...
 *   await redis.cleanup(prefix);               // delete this run's keys (needed with REDIS_URL)
 *   await redis.stop();                        // stops the server (no-op with REDIS_URL)
 *
 * With REDIS_URL set, startRedis() uses that server instead (external: true) unless
 * `{ own: true }` is passed; fault tests that stop and restart Redis always pass `own: true`.
 * Own servers run with `--save '' --appendonly no` (nothing written to disk), so a restart
 * comes back EMPTY, like a Redis that lost its data. `restart()` keeps the port and URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface TestRedis {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  /** True when REDIS_URL is used (stop/restart are then not available). */
  external: boolean;
  /** Stop the server (SIGTERM, then SIGKILL after 3 s). Idempotent. No-op when external. */
  stop(): Promise<void>;
  /** Start it again on the same port, empty. Throws when external. */
  restart(): Promise<void>;
  /** Delete every key starting with `prefix` (SCAN + UNLINK). */
  cleanup(prefix: string): Promise<void>;
}

export interface StartRedisOptions {
  /** Always start an own server, even when REDIS_URL is set. */
  own?: boolean;
  /** Extra redis-server arguments. */
  args?: string[];
  /** CPU list for taskset (benchmarks pin Redis to a core), e.g. '0'. */
  cpu?: string;
}

/** A key prefix unique to this process and call: `canopy-test:<tag>:<pid>-<hex>:`. */
export function uniquePrefix(tag = 't'): string {
  return `canopy-test:${tag}:${process.pid}-${randomBytes(4).toString('hex')}:`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Send one inline command and read the first reply line (bounded by `ms`). */
function rawCommand(port: number, host: string, line: string, ms = 500): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('timeout'));
    }, ms);
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('connect', () => sock.write(line + '\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.slice(0, buf.indexOf('\r\n')));
      }
    });
  });
}

async function waitReady(port: number, host: string, ms: number, child?: ChildProcess): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    try {
      if ((await rawCommand(port, host, 'PING')) === '+PONG') return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > end) throw new Error(`redis on ${host}:${port} not ready within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function cleanupKeys(url: string, prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await r.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const ext = process.env.REDIS_URL;
  if (ext && !opts.own) {
    const u = new URL(ext);
    return {
      url: ext,
      port: Number(u.port || 6379),
      external: true,
      stop: async () => {},
      restart: async () => {
        throw new Error('cannot restart an external Redis (REDIS_URL); use startRedis({ own: true })');
      },
      cleanup: (prefix) => cleanupKeys(ext, prefix),
    };
  }
  const port = await freePort();
  const host = '127.0.0.1';
  const url = `redis://${host}:${port}`;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'warning', ...(opts.args ?? [])];
    const [cmd, argv] = opts.cpu !== undefined ? ['taskset', ['-c', opts.cpu, 'redis-server', ...args]] : ['redis-server', args];
    child = spawn(cmd as string, argv as string[], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', () => {});
    await waitReady(port, host, 5000, child);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  await launch();
  return {
    url,
    port,
    external: false,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
    cleanup: (prefix) => cleanupKeys(url, prefix),
  };
}
