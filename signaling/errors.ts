/**
 * One mapping from whatever went wrong to the wire: a protobuf ErrorCode for WebSocket replies
 * and an HTTP status for WHIP/WHEP/admin replies, so both transports say the same thing.
 */
import { TokenError } from '../src/auth/token.ts';
import { ErrorCode } from '../src/proto/index.ts';
import { HttpError } from './http.ts';
import { RelayCallError } from './relay-client.ts';

export type CodeName = keyof typeof ErrorCode & string;

/** An error signaling raises itself, with the code it maps to. */
export class SignalingError extends Error {
  readonly code: CodeName;
  readonly status: number;
  constructor(code: CodeName, status: number, message: string) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.status = status;
  }
}

export interface Classified {
  code: CodeName;
  status: number;
  message: string;
  /** True when the error came from the topology store being unreachable. */
  store: boolean;
}

/**
 * Topology errors are matched by name so this module does not depend on which topology
 * implementation (memory, Redis) threw them.
 */
const byName: Record<string, [CodeName, number]> = {
  NoStreamError: ['ERR_NO_STREAM', 404],
  NoCapacityError: ['ERR_NO_CAPACITY', 503],
  StoreUnavailableError: ['ERR_STORE_UNAVAILABLE', 503],
  NoRelayError: ['ERR_NO_CAPACITY', 503],
  UnknownRelayError: ['ERR_NO_CAPACITY', 503],
};

export function classify(e: unknown): Classified {
  if (e instanceof SignalingError) return { code: e.code, status: e.status, message: e.message, store: false };
  if (e instanceof TokenError) {
    return { code: e.status === 403 ? 'ERR_FORBIDDEN' : 'ERR_UNAUTHORIZED', status: e.status, message: e.message, store: false };
  }
  if (e instanceof RelayCallError) return { code: 'ERR_RELAY_FAILED', status: 502, message: e.message, store: false };
  if (e instanceof HttpError) return { code: e.status === 413 ? 'ERR_TOO_LARGE' : 'ERR_BAD_STATE', status: e.status, message: e.message, store: false };
  const name = (e as { name?: unknown } | null)?.name;
  if (typeof name === 'string' && byName[name]) {
    const [code, status] = byName[name]!;
    return { code, status, message: (e as Error).message, store: code === 'ERR_STORE_UNAVAILABLE' };
  }
  return { code: 'ERR_INTERNAL', status: 500, message: 'internal error', store: false };
}
