/**
 * Multi-process mesh: a real redis-server, two `canopy signaling` processes and three
 * `canopy relay` processes (child processes of bin/canopy.mjs), one werift publisher and twenty
 * werift viewers on the WebSocket protocol, half through each signaling process.
 *
 * Relay capacities make every relay serve viewers: relay-0 (origin) has room for 5, relay-1
 * for 10, relay-2 for 20, so the twenty viewers land 5/10/5.
 * SIGKILL relay-1: every viewer that was on it gets MIGRATE (whichever signaling process noticed
 * the expired lease, the other hears it through Redis) and receives media again; the time from
 * kill to media is recorded per viewer and bounded. Then relay-1 comes back and relay-2 is
 * drained: its viewers move on the same WebSocket session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { generateSecret, mintToken } from '../src/auth/token.ts';
import { spawnRelay, type RelayChild } from '../src/cli/start.ts';
import { RedisTopology } from '../src/topology/index.ts';
import { WsViewer } from '../signaling/ws-viewer.ts';
import { startRedis, uniquePrefix, type TestRedis } from './helpers/redis.ts';
import { TestPublisher, waitUntil } from './helpers/peers.ts';

const BIN = fileURLToPath(new URL('../bin/canopy.mjs', import.meta.url));
const LEASE_MS = 1500;
const RECOVERY_BOUND_MS = 10_000;
const VIEWERS = 20;

interface SignalingChild {
  url: string;
  port: number;
  proc: ChildProcess;
}

function spawnSignaling(env: NodeJS.ProcessEnv, prefix: string, timeoutMs = 20_000): Promise<SignalingChild> {
  const proc = spawn(process.execPath, [BIN, 'signaling', '--port', '0', '--redis-prefix', prefix, '--reap', '200'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('signaling did not start')), timeoutMs);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      const m = /^signaling (http:\/\/[^:]+:(\d+))$/.exec(l);
      if (m) {
        clearTimeout(t);
        resolve({ url: m[1]!, port: Number(m[2]), proc });
      }
    });
    proc.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`signaling exited with ${c}`));
    });
  });
}

const children: ChildProcess[] = [];

/** On timeout, say where each viewer is stuck before failing. */
async function waitOrExplain(pred: () => boolean, ms: number, what: string, vs: WsViewer[]): Promise<void> {
  try {
    await waitUntil(pred, ms, what, 50);
  } catch (e) {
    for (const v of vs) console.log(`viewer ${v.session.slice(0, 8)} on ${v.relayId}: packets ${v.packets}, migrations ${JSON.stringify(v.migrations)}, errors ${JSON.stringify(v.errors.map((x) => x.error?.message))}`);
    throw e;
  }
}

async function killAll(): Promise<void> {
  await Promise.all(
    children.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          const t = setTimeout(() => p.kill('SIGKILL'), 3000);
          p.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          p.kill('SIGTERM');
        }),
    ),
  );
}

describe('multi-process mesh on Redis', () => {
  const secret = generateSecret();
  const prefix = uniquePrefix('mesh-mp');
  let redis: TestRedis;
  let topo: RedisTopology;
  let env: NodeJS.ProcessEnv;
  const sig: SignalingChild[] = [];
  const relays = new Map<string, RelayChild>();
  let pub: TestPublisher | undefined;
  const viewers: WsViewer[] = [];

  /** relay-0 (origin): 5 viewers; relay-1: 10; relay-2: 20 (capacity minus the fan-out reserve of 2). */
  const capacities: Record<string, number> = { 'relay-0': 7, 'relay-1': 12, 'relay-2': 22 };
  const startRelay = async (id: string): Promise<void> => {
    const args = ['--capacity', String(capacities[id]), '--fanout', '2', '--lease', String(LEASE_MS), '--redis-prefix', prefix];
    const r = await spawnRelay(id, args, env);
    children.push(r.proc);
    relays.set(id, r);
  };

  beforeAll(async () => {
    redis = await startRedis();
    env = { ...process.env, CANOPY_SECRET: secret, REDIS_URL: redis.url, CANOPY_LOG: process.env.CANOPY_CHILD_LOG ?? 'warn' };
    topo = new RedisTopology({ url: redis.url, prefix });
    await topo.ready();
    await Promise.all(['relay-0', 'relay-1', 'relay-2'].map(startRelay));
    sig.push(await spawnSignaling(env, prefix), await spawnSignaling(env, prefix));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(viewers.map((v) => v.close().catch(() => undefined)));
    await pub?.close().catch(() => undefined);
    await killAll();
    await topo?.close();
    await redis?.cleanup(prefix).catch(() => undefined);
    await redis?.stop();
  }, 30_000);

  it('a publisher and twenty viewers through both signaling processes all get media', async () => {
    expect((await topo.listRelays()).filter((r) => r.up).map((r) => r.id)).toEqual(['relay-0', 'relay-1', 'relay-2']);
    pub = await TestPublisher.start({ url: `${sig[0]!.url}/whip/live`, token: mintToken(secret, 'live', 'publish', 600, Date.now()), keyframeIntervalMs: 1000 });
    const deadline = Date.now() + 10_000;
    while (!(await topo.getTree('live')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await topo.getTree('live'))?.originId).toBe('relay-0');
    for (let i = 0; i < VIEWERS; i++) {
      const s = sig[i % 2]!;
      const token = mintToken(secret, 'live', 'watch', 600, Date.now());
      viewers.push(await WsViewer.start(`ws://127.0.0.1:${s.port}/ws`, 'live', token));
    }
    const per = (id: string): number => viewers.filter((v) => v.relayId === id).length;
    console.log(`multi-process: placement relay-0 ${per('relay-0')}, relay-1 ${per('relay-1')}, relay-2 ${per('relay-2')}`);
    // The tree fills level by level: the origin, then the first attached edge, then the next.
    expect([per('relay-0'), per('relay-1'), per('relay-2')]).toEqual([5, 10, 5]);
    await waitOrExplain(() => viewers.every((v) => v.packets > 10), 30_000, 'media at all twenty viewers', viewers);
  }, 90_000);

  it('SIGKILL of a relay: its viewers get MIGRATE and media again within the bound', async () => {
    const victims = viewers.filter((v) => v.relayId === 'relay-1');
    const others = viewers.filter((v) => v.relayId !== 'relay-1');
    expect(victims.length).toBeGreaterThan(0);
    const killedAt = Date.now();
    relays.get('relay-1')!.proc.kill('SIGKILL');
    await waitOrExplain(() => victims.every((v) => v.migrations.some((m) => m.mediaAt !== undefined)), RECOVERY_BOUND_MS + 5000, 'every victim playing again', victims);
    const figures = victims.map((v) => v.migrations[0]!.mediaAt! - killedAt).sort((a, b) => a - b);
    const migrateAt = victims.map((v) => v.migrations[0]!.at - killedAt).sort((a, b) => a - b);
    console.log(
      `multi-process: SIGKILL relay-1 (lease ${LEASE_MS} ms), ${victims.length} viewers; kill -> MIGRATE ms: ${migrateAt.join(', ')}; kill -> media ms: ${figures.join(', ')}; max ${figures[figures.length - 1]}`,
    );
    const phase = (f: (m: (typeof victims)[0]['migrations'][0]) => number | undefined): string =>
      victims.map((v) => (f(v.migrations[0]!) ?? killedAt - 1) - killedAt).sort((a, b) => a - b).join(', ');
    console.log(`multi-process: kill -> offer sent ms: ${phase((m) => m.offerAt)}; -> answer: ${phase((m) => m.answerAt)}; -> connected: ${phase((m) => m.connectedAt)}`);
    for (const v of victims) {
      expect(v.migrations[0]).toMatchObject({ reason: 'relay_down', to: 'relay-2' });
      expect(v.client.closed).toBe(false);
    }
    expect(figures[figures.length - 1]!).toBeLessThan(RECOVERY_BOUND_MS);
    // Viewers elsewhere were not moved and keep playing.
    expect(others.every((v) => v.migrations.length === 0)).toBe(true);
    const before = others.map((v) => v.packets);
    await waitUntil(() => others.every((v, i) => v.packets > before[i]! + 5), 5000, 'others still playing', 50);
  }, 40_000);

  it('draining a relay moves its viewers on the same session', async () => {
    capacities['relay-1'] = 22;
    await startRelay('relay-1'); // back, empty, with room for all of relay-2's viewers
    const onDrained = viewers.filter((v) => v.relayId === 'relay-2');
    expect(onDrained.length).toBeGreaterThan(0);
    const sessions = onDrained.map((v) => v.session);
    const moves = onDrained.map((v) => v.migrations.length);
    const admin = mintToken(secret, '*', 'admin', 60, Date.now());
    const drainedAt = Date.now();
    // Through the signaling process that holds the fewest of these viewers: events must cross processes.
    const res = await fetch(`${sig[1]!.url}/admin/relays/relay-2/drain`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    await waitOrExplain(() => onDrained.every((v, i) => v.migrations.length === moves[i]! + 1 && v.migrations[moves[i]!]!.mediaAt !== undefined), 15_000, 'drained viewers playing again', onDrained);
    const figures = onDrained.map((v, i) => v.migrations[moves[i]!]!.mediaAt! - drainedAt).sort((a, b) => a - b);
    console.log(`multi-process: drain relay-2, ${onDrained.length} viewers; drain -> media ms: ${figures.join(', ')}`);
    const phase = (f: (m: (typeof onDrained)[0]['migrations'][0]) => number | undefined): string =>
      onDrained.map((v, i) => (f(v.migrations[moves[i]!]!) ?? drainedAt - 1) - drainedAt).sort((a, b) => a - b).join(', ');
    console.log(`multi-process: drain -> MIGRATE ms: ${phase((m) => m.at)}; -> offer sent: ${phase((m) => m.offerAt)}; -> answer: ${phase((m) => m.answerAt)}; -> connected: ${phase((m) => m.connectedAt)}`);
    for (const [i, v] of onDrained.entries()) {
      expect(v.migrations[moves[i]!]).toMatchObject({ reason: 'drain', to: 'relay-1' });
      expect(v.client.closed).toBe(false);
    }
    expect(onDrained.map((v) => v.session)).toEqual(sessions);
  }, 40_000);
});
