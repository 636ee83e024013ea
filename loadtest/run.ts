/**
 * The coordinator: optionally starts a mesh, starts the broadcaster, forks viewer processes,
 * plays the scenario (steady, storm, churn, chaos), draws the live line, and builds the report.
 * Every phase is bounded in time; only loopback or the given signaling URL is contacted.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { Broadcaster } from './broadcaster.ts';
import type { ViewerProtocol } from './viewer.ts';
import type { ViewerSummary } from './meter.ts';
import type { ParentMsg, WorkerMsg, Tick } from './worker.ts';
import { Reservoir, percentile, round } from './metrics.ts';
import { buildReport, type Report, type Scenario, type TimelinePoint } from './report.ts';
import type { BitrateClass } from './media.ts';
import { setsockoptRcvbuf, effectiveRcvbuf } from '../src/util/rcvbuf.ts';
import { systemClock } from '../src/util/clock.ts';
import { logger } from '../src/util/log.ts';

const log = logger('loadtest');

export class LoadtestOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadtestOptionsError';
  }
}

/**
 * Relays in a spawned mesh: the origin and three more, so that after chaos kills one edge the
 * others still have a slot for each of its viewers at the default capacity and 100 viewers.
 */
export const DEFAULT_RELAYS = 4;
/**
 * Slots and child relays per relay in a spawned mesh, the same in process and with --redis (a
 * `canopy relay` process alone would default to 500 slots, and 100 viewers would all sit on the
 * origin).
 */
export const DEFAULT_CAPACITY = 50;
export const DEFAULT_FANOUT = 2;

export interface LoadtestOptions {
  /** Public entry of an existing deployment; or spawn a mesh. */
  signalingUrl?: string;
  spawn?: boolean;
  /** Relays in the spawned mesh (origin + edges). */
  relays?: number;
  capacity?: number;
  fanout?: number;
  /** Relay lease in the spawned mesh: a killed relay is declared dead within about this long. */
  leaseMs?: number;
  redisUrl?: string;
  stream?: string;
  viewers: number;
  durationMs: number;
  rampMs?: number;
  scenario?: Scenario;
  killRelayAtMs?: number;
  /** 'busiest' (default: the busiest relay that is not the origin), 'origin', or a relay id. */
  killTarget?: string;
  /** Churn: leaves (and later rejoins) per second. */
  churnPerSec?: number;
  /** Churn: how long a viewer stays away before rejoining. */
  churnAwayMs?: number;
  protocol?: ViewerProtocol;
  /** One viewer in this many decrypts and verifies payloads; 1 = all. */
  fullEvery?: number;
  workers?: number;
  bitrate?: BitrateClass;
  keyframeIntervalS?: number;
  pli?: 'respond' | 'ignore';
  /** Tokens for an external deployment (spawned meshes mint their own). */
  publishToken?: string;
  watchToken?: string;
  /** Live line on this stream (stderr); undefined = none. */
  live?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Abort (Ctrl-C): the run ends early with a partial report. */
  signal?: AbortSignal;
}

interface MeshLike {
  signalingUrl: string;
  relays: Array<{ id: string; url: string }>;
  killRelay(id: string): Promise<void>;
  mint(stream: string, role: 'publish' | 'watch', ttlSec?: number): string;
  close(): Promise<void>;
}

interface WorkerHandle {
  proc: ChildProcess;
  last: Tick | undefined;
  waiters: Array<(m: WorkerMsg) => boolean>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

export function validate(o: LoadtestOptions): Required<Pick<LoadtestOptions, 'viewers' | 'durationMs' | 'scenario' | 'stream' | 'protocol' | 'fullEvery' | 'bitrate' | 'keyframeIntervalS'>> & LoadtestOptions {
  if (!o.spawn && !o.signalingUrl) throw new LoadtestOptionsError('give --signaling URL of a deployment, or --spawn to start a mesh here');
  if (o.spawn && o.signalingUrl) throw new LoadtestOptionsError('--spawn and --signaling are exclusive');
  if (!(Number.isInteger(o.viewers) && o.viewers >= 1 && o.viewers <= 5000)) throw new LoadtestOptionsError(`--viewers must be an integer 1..5000, got ${o.viewers}`);
  if (!(o.durationMs >= 1000 && o.durationMs <= 3_600_000)) throw new LoadtestOptionsError(`--duration must be between 1s and 1h, got ${o.durationMs} ms`);
  const scenario = o.scenario ?? 'steady';
  if (!['steady', 'storm', 'churn', 'chaos'].includes(scenario)) throw new LoadtestOptionsError(`--scenario must be steady, storm, churn or chaos, got ${scenario}`);
  if (scenario === 'chaos' && !o.spawn) throw new LoadtestOptionsError('--scenario chaos kills a relay, which the load tester can only do in a mesh it started: add --spawn');
  if (o.rampMs !== undefined && !(o.rampMs >= 0 && o.rampMs < o.durationMs)) throw new LoadtestOptionsError('--ramp must be shorter than --duration');
  if (o.killRelayAtMs !== undefined && !(o.killRelayAtMs > 0 && o.killRelayAtMs < o.durationMs)) throw new LoadtestOptionsError('--kill-relay-at must fall inside --duration');
  const fullEvery = o.fullEvery ?? 10;
  if (!(Number.isInteger(fullEvery) && fullEvery >= 1)) throw new LoadtestOptionsError('--full-every must be an integer >= 1');
  if (!o.spawn && (!o.publishToken || !o.watchToken)) throw new LoadtestOptionsError('an external deployment needs --publish-token and --watch-token (or CANOPY_SECRET to mint them)');
  if (o.signalingUrl) {
    const u = new URL(o.signalingUrl);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && process.env.CANOPY_LOADTEST_REMOTE !== '1') {
      throw new LoadtestOptionsError(`refusing to load ${u.hostname}: set CANOPY_LOADTEST_REMOTE=1 to load a deployment you run on another host`);
    }
  }
  return {
    ...o,
    scenario,
    stream: o.stream ?? 'loadtest',
    protocol: o.protocol ?? 'ws',
    fullEvery,
    bitrate: o.bitrate ?? 'high',
    keyframeIntervalS: o.keyframeIntervalS ?? 4,
  };
}

export async function runLoadtest(input: LoadtestOptions): Promise<Report> {
  const o = validate(input);
  const clock = systemClock;
  setsockoptRcvbuf();
  const cleanups: Array<() => Promise<void>> = [];
  let mesh: MeshLike | undefined;
  const live = o.live;
  const say = (s: string) => live?.write(`${s}\n`);
  try {
    // ----- the mesh -----
    let signalingUrl = o.signalingUrl!;
    let publishToken = o.publishToken!;
    let watchToken = o.watchToken!;
    if (o.spawn && o.redisUrl) {
      say(`starting ${o.relays ?? DEFAULT_RELAYS} relay processes and signaling on Redis ${o.redisUrl === 'auto' ? '(a private redis-server)' : o.redisUrl}`);
      mesh = await withTimeout(spawnProcessMesh(o), 40_000, 'starting the relay processes');
      const m = mesh;
      cleanups.push(() => m.close());
      signalingUrl = m.signalingUrl;
      publishToken = m.mint(o.stream, 'publish', 7200);
      watchToken = m.mint(o.stream, 'watch', 7200);
    } else if (o.spawn) {
      const { startMesh } = await import('../src/mesh.ts');
      say(`starting a mesh: ${o.relays ?? DEFAULT_RELAYS} relays in this process`);
      mesh = (await withTimeout(
        startMesh({
          port: 0,
          relays: o.relays ?? DEFAULT_RELAYS,
          capacity: o.capacity ?? DEFAULT_CAPACITY,
          fanout: o.fanout ?? DEFAULT_FANOUT,
          leaseMs: o.leaseMs ?? 1000,
        }),
        20_000,
        'starting the mesh',
      )) as unknown as MeshLike;
      const m = mesh;
      cleanups.push(() => m.close());
      signalingUrl = m.signalingUrl;
      publishToken = m.mint(o.stream, 'publish', 7200);
      watchToken = m.mint(o.stream, 'watch', 7200);
    }
    const relayUrls: Record<string, string> = {};
    for (const r of mesh?.relays ?? []) relayUrls[r.url] = r.id;

    // ----- the broadcaster -----
    const b = new Broadcaster({ signalingUrl, stream: o.stream, token: publishToken, bitrate: o.bitrate, keyframeIntervalS: o.keyframeIntervalS, pli: o.pli ?? 'respond' });
    cleanups.unshift(() => b.stop());
    await withTimeout(b.start(), 15_000, 'publishing the broadcast');
    say(`publishing ${o.stream} to ${b.stats.relayUrl} (${o.bitrate}, keyframe every ${o.keyframeIntervalS} s)`);
    // Let the origin see a keyframe before the first viewer asks for one.
    await sleep(300, o.signal);

    // ----- viewer processes -----
    const nWorkers = Math.max(1, Math.min(o.workers ?? Math.min(cpus().length, Math.ceil(o.viewers / 25)), o.viewers, 16));
    const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const tsx = import.meta.resolve('tsx');
    const workers: WorkerHandle[] = [];
    for (let k = 0; k < nWorkers; k++) {
      // CANOPY_LOADTEST_WORKER_ARGS adds node flags to viewer processes, e.g. --cpu-prof for profiling.
      const extra = (process.env.CANOPY_LOADTEST_WORKER_ARGS ?? '').split(' ').filter(Boolean);
      const proc = fork(workerPath, [], { execArgv: ['--import', tsx, ...extra], serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      const h: WorkerHandle = { proc, last: undefined, waiters: [] };
      proc.on('message', (m: WorkerMsg) => onWorkerMsg(h, m));
      proc.on('exit', (code) => {
        if (code) log.warn('viewer process exited', { code });
      });
      workers.push(h);
    }
    cleanups.unshift(async () => {
      // Give each process a moment to exit on its own (profiles, sockets), then make sure.
      await Promise.all(
        workers.map((w) =>
          w.proc.exitCode !== null ? undefined : withTimeout(new Promise((r) => w.proc.once('exit', r)), 3000, 'viewer process exit').catch(() => w.proc.kill('SIGKILL')),
        ),
      );
    });
    const post = (w: WorkerHandle, m: ParentMsg) => {
      if (w.proc.connected) w.proc.send(m);
    };
    const waitFor = <T extends WorkerMsg['t']>(w: WorkerHandle, t: T, ms: number) =>
      withTimeout(
        new Promise<Extract<WorkerMsg, { t: T }>>((resolve) => {
          w.waiters.push((m) => {
            if (m.t !== t) return false;
            resolve(m as Extract<WorkerMsg, { t: T }>);
            return true;
          });
        }),
        ms,
        `viewer process reply '${t}'`,
      );

    // ----- timeline aggregation -----
    const startedAt = clock.now();
    const latency = new Reservoir(20_000, 42);
    const timeline: TimelinePoint[] = [];
    let bucket = { t: 0, ticks: new Map<WorkerHandle, Tick>() };
    const flush = () => {
      const ticks = [...bucket.ticks.values()];
      if (!ticks.length) return;
      const lat = ticks.flatMap((x) => x.latency);
      let lost = 0;
      let expected = 0;
      for (const w of workers) {
        lost += w.last?.lost ?? 0;
        expected += w.last?.expected ?? 0;
      }
      const prev = timeline.length ? (timeline[timeline.length - 1] as TimelinePoint & { _l?: number; _e?: number }) : undefined;
      const dl = lost - (prev?._l ?? 0);
      const de = expected - (prev?._e ?? 0);
      const p = {
        t: bucket.t,
        // Counts come from every process's latest report (a report can land in the next second).
        joined: workers.reduce((a, w) => a + (w.last?.joined ?? 0), 0),
        withMedia: workers.reduce((a, w) => a + (w.last?.withMedia ?? 0), 0),
        pps: ticks.reduce((a, x) => a + x.packets, 0),
        kbps: round(ticks.reduce((a, x) => a + x.bytes, 0) * 0.008, 0) ?? 0,
        latencyP50: round(percentile(lat, 50)),
        latencyP95: round(percentile(lat, 95)),
        lossPct: de > 0 ? round((100 * Math.max(0, dl)) / de, 3) : null,
        frozen: workers.reduce((a, w) => a + (w.last?.frozen ?? 0), 0),
      };
      Object.defineProperties(p, { _l: { value: lost }, _e: { value: expected } });
      timeline.push(p);
    };
    function onWorkerMsg(h: WorkerHandle, m: WorkerMsg): void {
      if (m.t === 'tick') {
        h.last = m;
        for (const x of m.latency) latency.add(x);
        const t = Math.floor((m.at - startedAt) / 1000);
        // A late report from a stalled process joins the current second instead of reopening an old one.
        if (t > bucket.t) {
          flush();
          bucket = { t, ticks: new Map() };
        }
        const prev = bucket.ticks.get(h);
        if (prev) {
          prev.packets += m.packets;
          prev.bytes += m.bytes;
          prev.latency.push(...m.latency);
        } else bucket.ticks.set(h, { ...m, latency: [...m.latency] });
        return;
      }
      if (m.t === 'error') log.warn('viewer process error', { message: m.message });
      const i = h.waiters.findIndex((f) => f(m));
      if (i >= 0) h.waiters.splice(i, 1);
    }

    await Promise.all(
      workers.map((w) => {
        const r = waitFor(w, 'ready', 20_000);
        post(w, { t: 'init', signalingUrl, stream: o.stream, token: watchToken, protocol: o.protocol, bitrate: o.bitrate, keyframeIntervalS: o.keyframeIntervalS, relayUrls, mediaTimeoutMs: 2000 });
        return r;
      }),
    );

    // ----- the scenario -----
    const duration = o.durationMs;
    const ramp = o.scenario === 'storm' ? Math.min(1000, o.rampMs ?? 1000) : (o.rampMs ?? Math.min(10_000, Math.floor(duration / 3)));
    const workerOf = (slot: number) => workers[slot % workers.length]!;
    const joinsPer = new Map<WorkerHandle, Array<{ slot: number; id: string; light: boolean; delayMs: number }>>();
    for (let slot = 0; slot < o.viewers; slot++) {
      // Joins spread evenly over the ramp (storm: all within one second).
      const delayMs = o.viewers === 1 ? 0 : Math.floor((slot * ramp) / o.viewers);
      const w = workerOf(slot);
      if (!joinsPer.has(w)) joinsPer.set(w, []);
      joinsPer.get(w)!.push({ slot, id: `v${String(slot).padStart(4, '0')}`, light: slot % o.fullEvery !== 0, delayMs });
    }
    for (const [w, slots] of joinsPer) post(w, { t: 'join', slots });
    say(`${o.viewers} viewers (${o.protocol}, ${Math.ceil(o.viewers / o.fullEvery)} decrypting) in ${nWorkers} processes, joining over ${ramp} ms; scenario ${o.scenario}, ${duration / 1000} s`);

    let kill: { relay: string; atMs: number } | undefined;
    const killAt = o.scenario === 'chaos' ? (o.killRelayAtMs ?? Math.max(ramp + 3000, Math.floor(duration / 2))) : undefined;
    const churnEvery = o.scenario === 'churn' ? 1000 / (o.churnPerSec ?? Math.max(1, o.viewers / 20)) : undefined;
    const churnAway = o.churnAwayMs ?? 1000;
    let nextChurn = ramp + 2000;
    let churnCounter = 0;
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);

    const liveTimer = setInterval(() => {
      if (!live) return;
      const el = clock.now() - startedAt;
      const frac = Math.min(1, el / duration);
      const bar = '#'.repeat(Math.round(frac * 24)).padEnd(24, '-');
      const last = timeline[timeline.length - 1];
      const media = workers.reduce((a, w) => a + (w.last?.withMedia ?? 0), 0);
      const line = `[${bar}] ${String(Math.round(frac * 100)).padStart(3)}% ${(el / 1000).toFixed(0).padStart(4)}/${duration / 1000}s  viewers ${media}/${o.viewers}  pps ${last?.pps ?? 0}  latency p50 ${last?.latencyP50 ?? '-'} ms  loss ${last?.lossPct ?? '-'}%  frozen ${last?.frozen ?? 0}${kill ? `  killed ${kill.relay}` : ''}`;
      if (live.isTTY) live.write(`\r\x1b[K${line}`);
      else if (Math.floor(el / 1000) % 5 === 0) live.write(`${line}\n`);
    }, 1000);
    cleanups.unshift(async () => clearInterval(liveTimer));

    // Bounded main loop: one step per 100 ms until the duration ends or the run is aborted.
    const maxSteps = Math.ceil(duration / 100) + 10;
    for (let step = 0; step < maxSteps && !o.signal?.aborted; step++) {
      const el = clock.now() - startedAt;
      if (el >= duration) break;
      if (killAt !== undefined && !kill && el >= killAt) {
        kill = await killBusiest(o.killTarget ?? 'busiest', el);
      }
      if (churnEvery !== undefined && el >= nextChurn && el < duration - churnAway - 3000) {
        nextChurn += churnEvery;
        const slot = Math.floor(rand() * o.viewers);
        const w = workerOf(slot);
        post(w, { t: 'leave', slots: [slot] });
        churnCounter++;
        post(w, { t: 'join', slots: [{ slot, id: `v${String(slot).padStart(4, '0')}.${churnCounter}`, light: slot % o.fullEvery !== 0, delayMs: churnAway }] });
      }
      await sleep(100, o.signal);
    }
    clearInterval(liveTimer);
    if (live?.isTTY) live.write('\n');
    const partial = !!o.signal?.aborted;
    if (partial) say('interrupted: finishing with a partial report');
    flush();

    async function killBusiest(target: string, el: number): Promise<{ relay: string; atMs: number }> {
      const counts: Record<string, number> = {};
      const replies = await Promise.all(
        workers.map((w) => {
          const r = waitFor(w, 'relays', 5000);
          post(w, { t: 'relays' });
          return r.catch(() => ({ t: 'relays' as const, counts: {} }));
        }),
      );
      for (const r of replies) for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;
      // The origin's death ends the broadcast itself (the encoder has to publish again), which no
      // viewer-side failover can hide; chaos is about viewers surviving a relay, so by default it
      // kills the busiest relay other than the origin. `--kill-relay origin` kills the origin.
      const origin = b.stats.relayUrl ? relayUrls[b.stats.relayUrl] : undefined;
      let relay = target === 'origin' ? (origin ?? mesh!.relays[0]!.id) : target;
      if (target === 'busiest') {
        const ranked = Object.entries(counts).sort((x, y) => y[1] - x[1]).map(([id]) => id);
        relay = ranked.find((id) => id !== origin) ?? mesh!.relays.find((r) => r.id !== origin)?.id ?? mesh!.relays[0]!.id;
      }
      const at = clock.now();
      // Tell the viewers first, so each knows it was on the relay when it died.
      await Promise.all(
        workers.map((w) => {
          const r = waitFor(w, 'killed', 5000);
          post(w, { t: 'kill', relay, at });
          return r.catch(() => undefined);
        }),
      );
      say(`\nkilling ${relay} (${counts[relay] ?? 0} viewers) at ${(el / 1000).toFixed(1)} s`);
      await mesh!.killRelay(relay);
      return { relay, atMs: at - startedAt };
    }

    // ----- collect -----
    const done = await Promise.all(
      workers.map((w) => {
        const r = waitFor(w, 'done', 30_000);
        post(w, { t: 'finish' });
        return r.catch((e: Error) => {
          log.warn('a viewer process did not report', { error: e });
          return { t: 'done' as const, viewers: [] as ViewerSummary[] };
        });
      }),
    );
    const all = done.flatMap((d) => d.viewers).sort((a, b) => (a.id < b.id ? -1 : 1));
    // The final session of a slot is its last id (churn appends .N).
    const finalBySlot = new Map<string, ViewerSummary>();
    for (const v of all) finalBySlot.set(v.id.split('.')[0]!, v);
    const endedAt = clock.now();
    return buildReport({
      scenario: o.scenario,
      viewersRequested: o.viewers,
      finalSessions: [...finalBySlot.values()],
      allSessions: all,
      latencySamples: latency.values,
      timeline,
      kill,
      broadcaster: { ...b.stats },
      meta: {
        partial,
        scenario: o.scenario,
        viewers: o.viewers,
        plannedDurationMs: duration,
        ranMs: Math.round(endedAt - startedAt),
        rampMs: ramp,
        protocol: o.protocol,
        decryptingEvery: o.fullEvery,
        processes: nWorkers,
        bitrate: o.bitrate,
        keyframeIntervalS: o.keyframeIntervalS,
        spawn: !!o.spawn,
        relays: mesh ? mesh.relays.map((r) => r.id).join(', ') : 'external',
        leaseMs: o.spawn ? (o.leaseMs ?? (o.redisUrl ? 2000 : 1000)) : 'external',
        relayProcesses: !!(o.spawn && o.redisUrl),
        signalingUrl,
        churnLeaves: churnCounter,
        udpRcvbuf: effectiveRcvbuf() ?? 'n/a',
        cores: cpus().length,
        node: process.version,
        startedAt: new Date(startedAt).toISOString(),
      },
    });
  } finally {
    for (const c of cleanups) {
      await withTimeout(c(), 10_000, 'cleanup').catch((e: Error) => log.warn('cleanup failed', { error: e }));
    }
  }
}

/**
 * `--spawn --redis URL|auto`: the multi-process deployment on this machine: one `canopy relay`
 * process per relay (spawnRelay from src/cli/start.ts) and signaling in this process, all on the
 * Redis topology. `auto` starts a private redis-server on a free loopback port (no persistence)
 * and stops it afterwards. A kill is SIGKILL: the relay process crashes and says nothing.
 */
async function spawnProcessMesh(o: LoadtestOptions): Promise<MeshLike> {
  const { spawnRelay } = await import('../src/cli/start.ts');
  const { redisTopology } = await import('../src/mesh.ts');
  const { SignalingServer } = await import('../signaling/server.ts');
  const { generateSecret, mintToken } = await import('../src/auth/token.ts');
  const secret = generateSecret();
  // Separate processes heartbeat through Redis: a little more slack than the in-process mesh.
  const leaseMs = o.leaseMs ?? 2000;
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    let url = o.redisUrl!;
    if (url === 'auto') {
      const port = await freePort();
      const { spawn } = await import('node:child_process');
      const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      closers.push(async () => {
        proc.kill('SIGKILL');
      });
      url = `redis://127.0.0.1:${port}`;
      // A missing redis-server is reported through 'error' (ENOENT), which would otherwise be
      // thrown as an unhandled event and end the process without a report.
      const failed = new Promise<never>((_, reject) => {
        proc.once('error', (e: NodeJS.ErrnoException) =>
          reject(
            e.code === 'ENOENT'
              ? new LoadtestOptionsError('--redis auto starts a private redis-server, which is not installed here: install it (apt-get install redis-server) or give --redis redis://HOST:PORT')
              : new Error(`could not start redis-server: ${e.message}`),
          ),
        );
        proc.once('exit', (code, sig) => reject(new Error(`redis-server exited at start (${sig ?? `code ${code}`})`)));
      });
      failed.catch(() => undefined);
      await Promise.race([waitForPort(port, 5000), failed]);
    }
    // Each run gets its own key prefix, so it never sees (or leaves behind) another run's relays.
    const prefix = `canopy-loadtest-${process.pid}-${Date.now()}:`;
    const topology = await redisTopology({ url, leaseMs, reapIntervalMs: Math.max(100, Math.floor(leaseMs / 4)), prefix });
    closers.push(() => topology.close());
    const env = { ...process.env, CANOPY_SECRET: secret, REDIS_URL: url, CANOPY_REDIS_PREFIX: prefix, CANOPY_LOG: process.env.CANOPY_LOG ?? 'warn' };
    const n = o.relays ?? DEFAULT_RELAYS;
    const relays = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        spawnRelay(`relay-${i}`, ['--host', '127.0.0.1', '--lease', String(leaseMs), '--capacity', String(o.capacity ?? DEFAULT_CAPACITY), '--fanout', String(o.fanout ?? DEFAULT_FANOUT)], env),
      ),
    );
    closers.push(async () => {
      await Promise.all(relays.map((r) => r.stop(2000)));
    });
    const server = new SignalingServer({ secret, topology, host: '127.0.0.1', port: 0 });
    await server.listen();
    closers.push(() => server.close());
    return {
      signalingUrl: server.url,
      relays: relays.map((r) => ({ id: r.id, url: r.url })),
      async killRelay(id) {
        const r = relays.find((x) => x.id === id);
        if (!r) throw new LoadtestOptionsError(`no relay ${id} (have ${relays.map((x) => x.id).join(', ')})`);
        r.proc.kill('SIGKILL');
      },
      mint: (stream, role, ttl = 3600) => mintToken(secret, stream, role, ttl, Date.now()),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const { connect } = await import('node:net');
  const until = Date.now() + timeoutMs;
  for (let i = 0; i < 100 && Date.now() < until; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
}
