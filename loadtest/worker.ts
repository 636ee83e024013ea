/**
 * A viewer process: runs many Viewers on one event loop and talks to the coordinator over the
 * IPC channel of child_process.fork (JSON messages, see WorkerMsg/ParentMsg). Each process owns
 * its own UDP sockets and event loop, so viewers spread over cores.
 */
import { setsockoptRcvbuf } from '../src/util/rcvbuf.ts';
import { Viewer, type ViewerProtocol } from './viewer.ts';
import type { ViewerSummary } from './meter.ts';
import { fnv1a, loadAudio, loadVideo, type BitrateClass } from './media.ts';
import { systemClock } from '../src/util/clock.ts';

export interface WorkerInit {
  t: 'init';
  signalingUrl: string;
  stream: string;
  token: string;
  protocol: ViewerProtocol;
  bitrate: BitrateClass;
  keyframeIntervalS: number;
  relayUrls: Record<string, string>;
  mediaTimeoutMs: number;
}

export type ParentMsg =
  | WorkerInit
  | { t: 'join'; slots: Array<{ slot: number; id: string; light: boolean; delayMs: number }> }
  | { t: 'leave'; slots: number[] }
  | { t: 'kill'; relay: string; at: number }
  | { t: 'relays' }
  | { t: 'finish' };

export interface Tick {
  t: 'tick';
  at: number;
  joined: number;
  withMedia: number;
  packets: number;
  bytes: number;
  lost: number;
  expected: number;
  frozen: number;
  latency: number[];
}

export type WorkerMsg =
  | { t: 'ready' }
  | Tick
  | { t: 'relays'; counts: Record<string, number> }
  | { t: 'killed'; affected: number }
  | { t: 'done'; viewers: ViewerSummary[] }
  | { t: 'error'; message: string };

const MAX_LATENCY_PER_TICK = 200;

function send(m: WorkerMsg): void {
  process.send?.(m);
}

async function main(): Promise<void> {
  const clock = systemClock;
  let init: WorkerInit | undefined;
  let frameHashes: Set<number> | undefined;
  let audioHashes: Set<number> | undefined;
  const slots = new Map<number, Viewer>();
  const ended: ViewerSummary[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let last = { packets: 0, bytes: 0 };
  let finishing = false;

  const relayIdOf = (url: string): string | undefined => init?.relayUrls[url];

  const tickTimer = setInterval(() => {
    const now = clock.now();
    for (const v of slots.values()) v.tick(now);
  }, 20);
  const statTimer = setInterval(() => {
    const now = clock.now();
    let packets = 0;
    let bytes = 0;
    let lost = 0;
    let expected = 0;
    let withMedia = 0;
    let frozen = 0;
    const latency: number[] = [];
    for (const v of slots.values()) {
      const s = v.meter.counters();
      packets += s.packets;
      bytes += s.bytes;
      lost += s.lost;
      expected += s.expected;
      if (s.hasMedia) withMedia++;
      if (v.meter.frozen(now)) frozen++;
      const r = v.meter.recent;
      for (let i = 0; i < r.length && latency.length < MAX_LATENCY_PER_TICK; i += Math.max(1, Math.floor(r.length / 4))) latency.push(r[i]!);
      v.meter.recent = [];
    }
    for (const s of ended) {
      packets += s.packets;
      bytes += s.bytes;
    }
    send({ t: 'tick', at: now, joined: slots.size, withMedia, packets: packets - last.packets, bytes: bytes - last.bytes, lost, expected, frozen, latency });
    last = { packets, bytes };
  }, 1000);

  const stopTimers = () => {
    clearInterval(tickTimer);
    clearInterval(statTimer);
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };

  const join = (slot: number, id: string, light: boolean): void => {
    if (!init || finishing) return;
    const v = new Viewer({
      id,
      signalingUrl: init.signalingUrl,
      stream: init.stream,
      token: init.token,
      protocol: init.protocol,
      light,
      mediaTimeoutMs: init.mediaTimeoutMs,
      relayIdOf,
      seed: slot + 1,
      ...(light ? {} : { frameHashes: frameHashes!, audioHashes: audioHashes! }),
    });
    slots.set(slot, v);
    v.join().catch((e: Error) => v.meter.failed(e.message));
  };

  process.on('message', (m: ParentMsg) => {
    void (async () => {
      try {
        switch (m.t) {
          case 'init': {
            init = m;
            const clip = loadVideo({ bitrate: m.bitrate, keyframeIntervalS: m.keyframeIntervalS });
            frameHashes = new Set(clip.frames.map(fnv1a));
            audioHashes = new Set(loadAudio().map(fnv1a));
            send({ t: 'ready' });
            break;
          }
          case 'join':
            for (const j of m.slots) {
              const t = setTimeout(() => {
                timers.delete(t);
                join(j.slot, j.id, j.light);
              }, j.delayMs);
              timers.add(t);
            }
            break;
          case 'leave':
            for (const slot of m.slots) {
              const v = slots.get(slot);
              if (!v) continue;
              slots.delete(slot);
              ended.push(v.summary(clock.now()));
              void v.leave('churn');
            }
            break;
          case 'kill': {
            let affected = 0;
            for (const v of slots.values()) {
              v.meter.relayKilled(m.relay, m.at);
              if (v.meter.relay === m.relay) affected++;
            }
            send({ t: 'killed', affected });
            break;
          }
          case 'relays': {
            const counts: Record<string, number> = {};
            for (const v of slots.values()) {
              const r = v.meter.relay;
              if (r) counts[r] = (counts[r] ?? 0) + 1;
            }
            send({ t: 'relays', counts });
            break;
          }
          case 'finish': {
            finishing = true;
            stopTimers();
            const now = clock.now();
            const viewers = [...ended, ...[...slots.values()].map((v) => v.summary(now))];
            // Leave in bounded parallel batches so signaling is not hit by all at once.
            const vs = [...slots.values()];
            for (let i = 0; i < vs.length; i += 25) {
              await Promise.race([Promise.all(vs.slice(i, i + 25).map((v) => v.leave('done'))), new Promise((r) => setTimeout(r, 3000))]);
            }
            send({ t: 'done', viewers });
            setTimeout(() => process.exit(0), 200).unref();
            break;
          }
        }
      } catch (e) {
        send({ t: 'error', message: (e as Error).message });
      }
    })();
  });
  process.on('disconnect', () => {
    stopTimers();
    process.exit(0);
  });
  setsockoptRcvbuf();
}

void main();
