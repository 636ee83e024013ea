/**
 * `npm run bench:signaling`: join throughput and latency of one signaling process on Redis.
 *
 * Starts its own redis-server and one `canopy signaling` child process, registers relays in the
 * Redis topology directly (no media: placement only), publishes a stream record, then drives
 * `--clients` WebSocket clients (ws package), each on its own socket, looping: JOIN, wait for
 * JOINED (the measured latency), LEAVE (signaling releases the slot), until `--joins` joins are
 * done or `--seconds` pass. `--reconnect` opens a new socket for every join instead (connect,
 * JOIN, JOINED, LEAVE, close: a storm of new viewers, WebSocket handshake included). Prints one JSON line last:
 *   {"bench":"signaling","joins_per_s":N,"p50_ms":N,"p99_ms":N,"errors":N}
 *
 * Pinning (Linux, when taskset exists and there are >= 2 CPUs): signaling and redis-server run
 * on CPU 0 (`taskset -c 0`), this process (the clients) moves itself to CPU 1
 * (`taskset -p -c 1 <pid>`). Flags: --clients 16 --joins 20000 --seconds 20 --warmup 500
 * --relays 8 --reconnect --no-pin.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { mintToken, generateSecret } from '../src/auth/token.ts';
import { decodeEnvelope, encodeEnvelope, MsgType } from '../src/proto/index.ts';
import { RedisTopology } from '../src/topology/index.ts';
import { parseFlags } from '../src/cli/args.ts';
import { startRedis, uniquePrefix } from '../test/helpers/redis.ts';

const { flags } = parseFlags(process.argv.slice(2), { clients: 'string', joins: 'string', seconds: 'string', warmup: 'string', relays: 'string', 'no-pin': 'boolean', reconnect: 'boolean' });
const REUSE = flags.reconnect !== true;
const CLIENTS = Number(flags.clients ?? 16);
const JOINS = Number(flags.joins ?? 20_000);
const SECONDS = Number(flags.seconds ?? 20);
const WARMUP = Number(flags.warmup ?? 500);
const RELAYS = Number(flags.relays ?? 8);
for (const [k, v, lo, hi] of [['clients', CLIENTS, 1, 2000], ['joins', JOINS, 1, 1_000_000], ['seconds', SECONDS, 1, 600], ['warmup', WARMUP, 0, 100_000], ['relays', RELAYS, 1, 1000]] as const) {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`--${k} must be an integer ${lo}..${hi}, got ${v}`);
}

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
const CPUS = availableParallelism(); // before pinning narrows this process's affinity
const pin = !flags['no-pin'] && hasTaskset && CPUS >= 2 && process.platform === 'linux';
const log = (s: string): boolean => process.stderr.write(s + '\n');

const STREAM = 'bench';
const secret = generateSecret();
const prefix = uniquePrefix('bench-signaling');

/** CPU seconds used so far by a process (-1 = this one), from /proc on Linux; 0 when unknown. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === -1) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  if (pin) spawnSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  const redis = await startRedis({ own: true, ...(pin ? { cpu: '0' } : {}) });
  const topo = new RedisTopology({ url: redis.url, prefix, leaseMs: 600_000 });
  let child: ReturnType<typeof spawn> | undefined;
  try {
    await topo.ready();
    // Relays with room for every join: placements never need to grow the tree (no media here).
    for (let i = 0; i < RELAYS; i++) {
      await topo.registerRelay({ id: `bench-relay-${i}`, url: `http://127.0.0.1:${9 + i}`, capacity: 1_000_000, fanout: 1, leaseMs: 600_000 });
    }
    await topo.registerStream(STREAM, 'bench-relay-0');

    const bin = fileURLToPath(new URL('../bin/canopy.mjs', import.meta.url));
    // BENCH_SIGNALING_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the signaling process.
    const nodeFlags = (process.env.BENCH_SIGNALING_NODE_FLAGS ?? '').split(' ').filter(Boolean);
    const args = [...nodeFlags, bin, 'signaling', '--port', '0', '--redis', redis.url, '--redis-prefix', prefix, '--sessions-per-ip', '1000000', '--joins-per-second', '1000000', '--frames-per-second', '1000000', '--reap', '0'];
    const [cmd, argv] = pin ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args];
    child = spawn(cmd, argv, { env: { ...process.env, CANOPY_SECRET: secret, CANOPY_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('signaling did not start within 20 s')), 20_000);
      createInterface({ input: child!.stdout! }).on('line', (l) => {
        const m = /^signaling (\S+)$/.exec(l);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
      child!.once('exit', (c) => reject(new Error(`signaling exited with ${c}`)));
    });
    // With taskset the child is taskset's exec'd node (same pid).
    const sigPid = child.pid;
    const redisPid = Number(spawnSync('sh', ['-c', `pgrep -f "redis-server.*:${redis.port}" | head -1`]).stdout.toString().trim()) || undefined;
    const wsUrl = url.replace('http://', 'ws://') + '/ws';
    const token = mintToken(secret, STREAM, 'watch', 3600, Date.now());
    const joinFrame = encodeEnvelope({ type: MsgType.JOIN, id: 1, join: { stream: STREAM, role: 'watch', token } });
    const leaveFrame = encodeEnvelope({ type: MsgType.LEAVE, id: 2, leave: { reason: 'bench' } });

    const latencies: number[] = [];
    let errors = 0;
    let started = 0;
    let done = 0;
    let measureFrom = 0;
    let cpu0 = { clients: 0, signaling: 0, redis: 0 };
    let measuredJoins = 0;
    const total = JOINS + WARMUP;
    const deadline = performance.now() + SECONDS * 1000;

    const record = (ms: number): void => {
      done++;
      if (done === WARMUP + 1) {
        measureFrom = performance.now() - ms;
        cpu0 = { clients: cpuSeconds(-1), signaling: cpuSeconds(sigPid), redis: cpuSeconds(redisPid) };
      }
      if (done > WARMUP) {
        latencies.push(ms);
        measuredJoins++;
      }
    };

    /** Reconnect mode (--reconnect): every join is a new socket: connect, JOIN, JOINED, LEAVE, close. */
    const reconnecting = async (): Promise<void> => {
      while (started < total && performance.now() < deadline) {
        started++;
        const ok = await new Promise<boolean>((resolve) => {
          const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
          let t0 = 0;
          let joined = false;
          const timer = setTimeout(() => {
            ws.terminate();
            resolve(false);
          }, 5000);
          ws.on('open', () => {
            t0 = performance.now();
            ws.send(joinFrame);
          });
          ws.on('message', (d: Buffer) => {
            const env = decodeEnvelope<{ type?: number }>(d);
            if (env.type === MsgType.JOINED) {
              joined = true;
              record(performance.now() - t0);
              ws.send(leaveFrame);
            }
            ws.close();
          });
          ws.on('close', () => {
            clearTimeout(timer);
            resolve(joined);
          });
          ws.on('error', () => undefined);
        });
        if (!ok) errors++;
      }
    };

    /** Default mode: one socket per client; JOIN, JOINED, LEAVE on it, repeatedly. */
    const reusing = async (): Promise<void> => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
      ws.on('error', () => undefined);
      const opened = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 5000);
        ws.once('open', () => {
          clearTimeout(t);
          resolve(true);
        });
        ws.once('close', () => resolve(false));
      });
      if (!opened) {
        errors++;
        ws.terminate();
        return;
      }
      let waiting: ((ok: boolean) => void) | undefined;
      ws.on('message', (d: Buffer) => waiting?.(decodeEnvelope<{ type?: number }>(d).type === MsgType.JOINED));
      ws.on('close', () => waiting?.(false));
      while (started < total && performance.now() < deadline && ws.readyState === WebSocket.OPEN) {
        started++;
        const t0 = performance.now();
        const ok = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 5000);
          waiting = (v) => {
            clearTimeout(t);
            waiting = undefined;
            resolve(v);
          };
          ws.send(joinFrame);
        });
        if (!ok) {
          errors++;
          continue;
        }
        record(performance.now() - t0);
        ws.send(leaveFrame);
      }
      ws.close();
    };

    log(`bench:signaling: ${CLIENTS} clients, ${REUSE ? 'one socket each' : 'a new socket per join (--reconnect)'}, ${JOINS} joins (+${WARMUP} warm-up), at most ${SECONDS} s; ${pin ? 'signaling+redis on CPU 0, clients on CPU 1' : 'not pinned'}`);
    await Promise.all(Array.from({ length: CLIENTS }, REUSE ? reusing : reconnecting));
    const elapsed = (performance.now() - measureFrom) / 1000;
    const per = (a: number, b: number): string => `${(((b - a) / Math.max(measuredJoins, 1)) * 1000).toFixed(3)} ms`;
    log(
      `bench:signaling: CPU per measured join (${REUSE ? 'JOIN+LEAVE' : 'connect+JOIN+LEAVE+close'}): clients ${per(cpu0.clients, cpuSeconds(-1))}, signaling ${per(cpu0.signaling, cpuSeconds(sigPid))}, redis ${per(cpu0.redis, cpuSeconds(redisPid))}`,
    );
    latencies.sort((a, b) => a - b);
    log(`bench:signaling: ${measuredJoins} measured joins in ${elapsed.toFixed(2)} s, ${errors} errors, p90 ${percentile(latencies, 90).toFixed(2)} ms, max ${(latencies[latencies.length - 1] ?? 0).toFixed(2)} ms`);
    // Slots are released when each socket closes; give the last closes a moment, then check.
    let left = -1;
    for (let i = 0; i < 40 && left !== 0; i++) {
      left = (await topo.getTree(STREAM))?.viewers ?? -1;
      if (left !== 0) await new Promise((r) => setTimeout(r, 50));
    }
    if (left !== 0) errors++;
    log(`bench:signaling: viewer slots still reserved after the run: ${left} (must be 0: every leave releases its slot)`);
    log(`bench:signaling: load average during the run ${loadavg().map((x) => x.toFixed(2)).join(' ')} on ${CPUS} CPUs (other processes share them)`);
    const res = {
      bench: 'signaling',
      joins_per_s: Math.round(measuredJoins / Math.max(elapsed, 1e-6)),
      p50_ms: Number(percentile(latencies, 50).toFixed(2)),
      p99_ms: Number(percentile(latencies, 99).toFixed(2)),
      errors,
    };
    process.stdout.write(JSON.stringify(res) + '\n');
  } finally {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child!.kill('SIGKILL');
          r(undefined);
        }, 3000);
        child!.once('exit', () => {
          clearTimeout(t);
          r(undefined);
        });
      });
    }
    await redis.cleanup(prefix).catch(() => undefined);
    await topo.close();
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`bench:signaling failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
