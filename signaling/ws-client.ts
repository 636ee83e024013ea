/**
 * A Node client of the /ws protocol (ws package): JOIN, OFFER, MIGRATE, PING. Used by the tests,
 * the benchmark and the load tester; the browser player implements the same protocol.
 */
import WebSocket from 'ws';
import { decodeEnvelope, encodeEnvelope, MsgType } from '../src/proto/index.ts';

export interface PlacementMsg {
  relayId: string;
  relayUrl: string;
  depth: number;
  region: string;
}

export interface Envelope {
  type: number;
  id: number;
  joined?: { session: string; placement: PlacementMsg };
  answer?: { sdp: string; session: string };
  migrate?: { reason: string; placement: PlacementMsg };
  error?: { code: number; message: string };
  pong?: { t: number };
  [k: string]: unknown;
}

export class ProtocolError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

export class SignalingClient {
  readonly ws: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (e: Envelope) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Server-initiated messages (MIGRATE, ERROR with id 0). */
  onPush: (e: Envelope) => void = () => {};
  closed = false;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      let env: Envelope;
      try {
        env = decodeEnvelope<Envelope>(data);
      } catch {
        return;
      }
      env.id = env.id ?? 0;
      const p = env.id ? this.#pending.get(env.id) : undefined;
      if (p) {
        this.#pending.delete(env.id);
        clearTimeout(p.timer);
        p.resolve(env);
      } else {
        this.onPush(env);
      }
    });
    ws.on('close', () => {
      this.closed = true;
      for (const [, p] of this.#pending) {
        clearTimeout(p.timer);
        p.reject(new Error('socket closed'));
      }
      this.#pending.clear();
    });
    ws.on('error', () => {});
  }

  static connect(url: string, timeoutMs = 5000): Promise<SignalingClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
      ws.binaryType = 'nodebuffer';
      ws.once('open', () => resolve(new SignalingClient(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
  }

  /** Send a request and wait for the reply with the same id. */
  request(env: Record<string, unknown>, timeoutMs = 10_000): Promise<Envelope> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`no reply to request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.ws.send(encodeEnvelope({ ...env, id }));
    });
  }

  /** JOIN; resolves with JOINED, rejects with ProtocolError on ERROR. */
  async join(stream: string, token: string, region = '', timeoutMs?: number): Promise<NonNullable<Envelope['joined']>> {
    const r = await this.request({ type: MsgType.JOIN, join: { stream, role: 'watch', token, region } }, timeoutMs);
    if (r.type !== MsgType.JOINED || !r.joined) throw new ProtocolError(r.error?.code ?? 0, r.error?.message ?? `unexpected reply type ${r.type}`);
    return r.joined;
  }

  async offer(sdp: string, timeoutMs?: number): Promise<NonNullable<Envelope['answer']>> {
    const r = await this.request({ type: MsgType.OFFER, offer: { sdp } }, timeoutMs);
    if (r.type !== MsgType.ANSWER || !r.answer) throw new ProtocolError(r.error?.code ?? 0, r.error?.message ?? `unexpected reply type ${r.type}`);
    return r.answer;
  }

  send(env: Record<string, unknown>): void {
    this.ws.send(encodeEnvelope(env));
  }

  sendRaw(bytes: Uint8Array | Buffer): void {
    this.ws.send(bytes);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 1000);
      this.ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.ws.close();
    });
  }
}
