/**
 * A werift viewer that watches through the /ws protocol and follows MIGRATE by itself: on
 * MIGRATE it closes its peer connection, makes a fresh recvonly offer and sends it on the same
 * socket. Records when media arrives so tests can measure join and recovery times. Used by the
 * mesh tests; binds to 127.0.0.1 only.
 */
import { RTCPeerConnection } from 'werift';
import { relayPeerConfig } from '../src/relay/media.ts';
import { iceGathered } from '../src/relay/peer.ts';
import { MsgType } from '../src/proto/index.ts';
import { SignalingClient, type Envelope, type PlacementMsg } from './ws-client.ts';

const GATHER_BOUND_MS = 1000;

export interface MigrateRecord {
  /** Date.now() when MIGRATE arrived. */
  at: number;
  reason: string;
  to: string;
  /** Date.now() when the re-offer was sent (after ICE gathering). */
  offerAt?: number;
  /** Date.now() when its ANSWER came back. */
  answerAt?: number;
  /** Date.now() when the new peer connection reached 'connected'. */
  connectedAt?: number;
  /** Date.now() of the first RTP packet after the re-offer, once it arrived. */
  mediaAt?: number;
}

export class WsViewer {
  readonly client: SignalingClient;
  placement: PlacementMsg | undefined;
  session = '';
  packets = 0;
  lastPacketAt = 0;
  firstPacketAt = 0;
  readonly migrations: MigrateRecord[] = [];
  readonly errors: Envelope[] = [];
  #pc: RTCPeerConnection | undefined;
  #closed = false;
  #gen = 0;
  #stallTimer: NodeJS.Timeout | undefined;
  #stallReportedGen = -1;
  /** STALLED reports sent (one per connection at most). */
  stallReports = 0;

  private constructor(client: SignalingClient) {
    this.client = client;
    client.onPush = (e) => {
      if (e.type === MsgType.MIGRATE && e.migrate) {
        this.migrations.push({ at: Date.now(), reason: e.migrate.reason, to: e.migrate.placement.relayId });
        this.placement = e.migrate.placement;
        void this.#renegotiate();
      } else if (e.type === MsgType.ERROR) {
        this.errors.push(e);
      }
    };
  }

  /** Connect, JOIN and play. Rejects if any step fails. */
  static async start(wsUrl: string, stream: string, token: string, region = ''): Promise<WsViewer> {
    const c = await SignalingClient.connect(wsUrl);
    const v = new WsViewer(c);
    try {
      const j = await c.join(stream, token, region, 30_000);
      v.session = j.session;
      v.placement = j.placement;
      await v.#negotiate();
    } catch (e) {
      await v.close();
      throw e;
    }
    return v;
  }

  get relayId(): string {
    return this.placement?.relayId ?? '';
  }

  /**
   * Like the browser player: after `ms` without a packet on a connection that had media, send
   * STALLED once for that connection, so signaling probes the relay and moves us if it is dead.
   */
  reportStalls(ms: number): void {
    clearInterval(this.#stallTimer);
    this.#stallTimer = setInterval(() => {
      const now = Date.now();
      if (this.#closed || this.#stallReportedGen === this.#gen || !this.lastPacketAt || now - this.lastPacketAt < ms) return;
      const m = this.migrations[this.migrations.length - 1];
      if (m && m.mediaAt === undefined) return; // renegotiating: not a stall of this connection
      this.#stallReportedGen = this.#gen;
      this.stallReports++;
      this.client.send({ type: MsgType.STALLED, id: 0, stalled: { relayId: this.relayId, silentMs: now - this.lastPacketAt } });
    }, Math.max(20, Math.floor(ms / 5)));
    this.#stallTimer.unref();
  }

  /** Re-offer after MIGRATE; like the browser player, retry a few times before giving up. */
  async #renegotiate(): Promise<void> {
    const gen = this.#gen + 1;
    for (let attempt = 0; attempt < 4 && !this.#closed; attempt++) {
      try {
        await this.#negotiate();
        return;
      } catch (err) {
        this.errors.push({ type: MsgType.ERROR, id: 0, error: { code: 0, message: `re-offer ${attempt + 1} failed: ${(err as Error).message}` } });
        // A newer MIGRATE started its own negotiation; this one is obsolete.
        if (this.#gen !== gen + attempt) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async #negotiate(): Promise<void> {
    const gen = ++this.#gen;
    const old = this.#pc;
    this.#pc = undefined;
    // Close the old connection first, as the protocol asks. (Not waiting for it was measured
    // worse: werift peers created while others tear down stalled ~5 s.)
    await old?.close().catch(() => undefined);
    if (this.#closed) return;
    const pc = new RTCPeerConnection(relayPeerConfig('127.0.0.1'));
    this.#pc = pc;
    for (const kind of ['video', 'audio'] as const) {
      const t = pc.addTransceiver(kind, { direction: 'recvonly' });
      t.onTrack.subscribe((track) => {
        track.onReceiveRtp.subscribe(() => {
          if (gen !== this.#gen) return;
          const now = Date.now();
          this.packets++;
          this.lastPacketAt = now;
          if (!this.firstPacketAt) this.firstPacketAt = now;
          const m = this.migrations[this.migrations.length - 1];
          if (m && m.mediaAt === undefined && now >= m.at) m.mediaAt = now;
        });
      });
    }
    const m = this.migrations[this.migrations.length - 1];
    pc.connectionStateChange.subscribe((st) => {
      if (st === 'connected' && gen === this.#gen && m && m.connectedAt === undefined) m.connectedAt = Date.now();
    });
    await pc.setLocalDescription(await pc.createOffer());
    // Host candidates on loopback are there within milliseconds; werift sometimes reports
    // gathering 'complete' only seconds later when many peers gather at once, so offer what
    // we have after a short bound rather than the default 5 s.
    await iceGathered(pc, GATHER_BOUND_MS);
    if (m && gen === this.#gen) m.offerAt = Date.now();
    const ans = await this.client.offer(pc.localDescription!.sdp, 30_000);
    if (gen !== this.#gen || this.#closed) return;
    if (m) m.answerAt = Date.now();
    await pc.setRemoteDescription({ type: 'answer', sdp: ans.sdp });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gen++;
    clearInterval(this.#stallTimer);
    await this.#pc?.close().catch(() => undefined);
    await this.client.close();
  }
}
