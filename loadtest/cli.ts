/**
 * `npm run loadtest -- [--signaling URL | --spawn] --stream S --viewers N --duration 60s
 *   [--ramp 10s] [--scenario steady|storm|churn|chaos] [--kill-relay-at 20s] [--report out/]`
 *
 * Progress goes to stderr; stdout gets the summary table and, as its last line, the summary JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDuration, parseFlags, UsageError } from '../src/cli/args.ts';
import { mintToken } from '../src/auth/token.ts';
import { LoadtestOptionsError, runLoadtest, type LoadtestOptions } from './run.ts';
import { html, summaryLine, table, type Scenario } from './report.ts';
import type { BitrateClass } from './media.ts';

const USAGE = `usage: npm run loadtest -- [--signaling URL | --spawn] [flags]

  --signaling URL        public entry of a running Canopy (loopback unless CANOPY_LOADTEST_REMOTE=1)
  --spawn                start a mesh in this process (signaling + relays, memory topology)
  --relays K             relays in the spawned mesh (default 4: origin + 3 edges)
  --redis URL|auto       spawn relay processes (canopy relay) + signaling on this Redis topology;
                         auto starts a private redis-server on a free port
  --capacity N           slots per relay in the spawned mesh (default 50)
  --fanout N             child relays per relay in the spawned mesh (default 2)
  --lease 1s             relay lease in the spawned mesh (how fast a dead relay is noticed;
                         default 1s in process, 2s with --redis)
  --stream S             stream name (default loadtest)
  --viewers N            simulated viewers (default 10)
  --duration 60s         how long to run (default 30s)
  --ramp 10s             spread the joins over this long (storm: within 1 s)
  --scenario S           steady | storm | churn | chaos (default steady)
  --kill-relay-at 20s    chaos: when to kill the relay serving the most viewers (default half-way)
  --kill-relay ID        chaos: kill this relay instead of the busiest non-origin one; 'origin'
                         kills the origin (the broadcast stops until the publisher comes back)
  --churn-rate 5         churn: viewers leaving (and rejoining 1 s later) per second
  --whep                 viewers join over WHEP instead of the WebSocket protocol
  --full-every N         one viewer in N decrypts and verifies payloads (default 10; 1 = all)
  --processes N          viewer processes (default: one per core, at most one per 25 viewers)
  --bitrate low|high     clip bitrate class (default high = 1.5 Mbit/s)
  --keyframe-interval 4s clip keyframe interval: 1s or 4s (default 4s)
  --pli respond|ignore   broadcaster answers keyframe requests (default respond)
  --publish-token T      tokens for an external deployment (or set CANOPY_SECRET to mint them)
  --watch-token T
  --report DIR           write report.json and report.html here (default out/loadtest)
`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseFlags(argv, {
    signaling: 'string',
    spawn: 'boolean',
    relays: 'string',
    redis: 'string',
    capacity: 'string',
    fanout: 'string',
    lease: 'string',
    stream: 'string',
    viewers: 'string',
    duration: 'string',
    ramp: 'string',
    scenario: 'string',
    'kill-relay-at': 'string',
    'kill-relay': 'string',
    'churn-rate': 'string',
    whep: 'boolean',
    'full-every': 'string',
    processes: 'string',
    bitrate: 'string',
    'keyframe-interval': 'string',
    pli: 'string',
    'publish-token': 'string',
    'watch-token': 'string',
    report: 'string',
    help: 'boolean',
  });
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const str = (k: string) => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  const int = (k: string) => {
    const v = str(k);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${k} must be a whole number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const dur = (k: string) => (str(k) === undefined ? undefined : parseDuration(str(k)!));
  const stream = str('stream') ?? 'loadtest';
  let publishToken = str('publish-token');
  let watchToken = str('watch-token');
  if (!flags.spawn && process.env.CANOPY_SECRET) {
    publishToken ??= mintToken(process.env.CANOPY_SECRET, stream, 'publish', 7200, Date.now());
    watchToken ??= mintToken(process.env.CANOPY_SECRET, stream, 'watch', 7200, Date.now());
  }
  const bitrate = str('bitrate') ?? 'high';
  if (bitrate !== 'low' && bitrate !== 'high') throw new UsageError('--bitrate must be low or high');
  const pli = str('pli') ?? 'respond';
  if (pli !== 'respond' && pli !== 'ignore') throw new UsageError('--pli must be respond or ignore');
  const kfi = dur('keyframe-interval');
  const ac = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\nCtrl-C: stopping, writing a partial report (Ctrl-C again to quit at once)\n');
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const opts: LoadtestOptions = {
    ...(str('signaling') ? { signalingUrl: str('signaling')! } : {}),
    spawn: !!flags.spawn,
    ...(int('relays') !== undefined ? { relays: int('relays')! } : {}),
    ...(str('redis') ? { redisUrl: str('redis')! } : {}),
    ...(int('capacity') !== undefined ? { capacity: int('capacity')! } : {}),
    ...(int('fanout') !== undefined ? { fanout: int('fanout')! } : {}),
    ...(dur('lease') !== undefined ? { leaseMs: dur('lease')! } : {}),
    stream,
    viewers: int('viewers') ?? 10,
    durationMs: dur('duration') ?? 30_000,
    ...(dur('ramp') !== undefined ? { rampMs: dur('ramp')! } : {}),
    scenario: (str('scenario') ?? 'steady') as Scenario,
    ...(dur('kill-relay-at') !== undefined ? { killRelayAtMs: dur('kill-relay-at')! } : {}),
    ...(str('kill-relay') ? { killTarget: str('kill-relay')! } : {}),
    ...(str('churn-rate') ? { churnPerSec: Number(str('churn-rate')) } : {}),
    protocol: flags.whep ? 'whep' : 'ws',
    ...(int('full-every') !== undefined ? { fullEvery: int('full-every')! } : {}),
    ...(int('processes') !== undefined ? { workers: int('processes')! } : {}),
    bitrate: bitrate as BitrateClass,
    ...(kfi !== undefined ? { keyframeIntervalS: kfi / 1000 } : {}),
    pli,
    ...(publishToken ? { publishToken } : {}),
    ...(watchToken ? { watchToken } : {}),
    live: process.stderr,
    signal: ac.signal,
  };
  try {
    const report = await runLoadtest(opts);
    const dir = resolve(str('report') ?? 'out/loadtest');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 2));
    writeFileSync(join(dir, 'report.html'), html(report));
    process.stdout.write(`${table(report)}\n\nreport: ${join(dir, 'report.html')} (and report.json)\n`);
    process.stdout.write(`${summaryLine(report.summary)}\n`);
    return report.meta.partial ? 130 : 0;
  } catch (e) {
    if (e instanceof LoadtestOptionsError || e instanceof UsageError) {
      process.stderr.write(`loadtest: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`loadtest failed: ${(e as Error).stack ?? e}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`loadtest: ${e instanceof UsageError ? e.message : (e.stack ?? e)}\n`);
      process.exit(2);
    },
  );
}
