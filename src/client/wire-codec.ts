/**
 * The WebSocket wire codec for the browser, built from the schema's text. Pages get the text
 * of src/proto/canopy.proto bundled in (see wire.ts), so servers and pages share one schema.
 * Decoding never throws anything but WireError, as in src/proto/index.ts. No imports of the
 * .proto file here, so Node tests can check this codec against the servers' one.
 */
import protobuf from 'protobufjs';

/** Same limit as the servers (src/proto/index.ts MAX_FRAME_BYTES). */
export const MAX_FRAME_BYTES = 64 * 1024;

export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

export interface PlacementMsg { relayId?: string; relayUrl?: string; depth?: number; region?: string }
export interface EnvelopeMsg {
  type?: number;
  id?: number;
  join?: { stream: string; role: string; token: string; region?: string };
  offer?: { sdp: string; session?: string };
  answer?: { sdp?: string; session?: string };
  migrate?: { reason?: string; placement?: PlacementMsg };
  stats?: { packets?: number; lost?: number; latencyMs?: number; jitterMs?: number; framesDecoded?: number; ttffMs?: number };
  error?: { code?: number; message?: string };
  leave?: { reason?: string };
  ping?: { t?: number };
  pong?: { t?: number };
  joined?: { session?: string; placement?: PlacementMsg };
  stalled?: { relayId?: string; silentMs?: number };
}

export interface WireCodec {
  MsgType: Record<string, number>;
  ErrorCode: Record<string, number>;
  encodeEnvelope(msg: EnvelopeMsg): Uint8Array;
  /** Throws WireError on oversize or malformed frames, nothing else. */
  decodeEnvelope(bytes: Uint8Array): EnvelopeMsg;
  /** `ERR_NO_STREAM` → "no_stream", for messages and error codes shown to people. */
  errorName(code: number | undefined): string;
}

const toObjectOpts = { longs: Number, enums: Number, defaults: false, oneofs: true } as const;

export function createWire(schemaText: string): WireCodec {
  const root = protobuf.parse(schemaText, { keepCase: false }).root;
  const Envelope = root.lookupType('canopy.Envelope');
  const ErrorCode = root.lookupEnum('canopy.ErrorCode').values as Record<string, number>;
  const errorNames = new Map(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
  return {
    MsgType: root.lookupEnum('canopy.MsgType').values as Record<string, number>,
    ErrorCode,
    encodeEnvelope(msg) {
      const err = Envelope.verify(msg);
      if (err) throw new TypeError(`invalid Envelope: ${err}`);
      return Envelope.encode(Envelope.fromObject(msg)).finish();
    },
    decodeEnvelope(bytes) {
      if (bytes.byteLength > MAX_FRAME_BYTES) throw new WireError(`frame of ${bytes.byteLength} bytes exceeds ${MAX_FRAME_BYTES}`);
      try {
        return Envelope.toObject(Envelope.decode(bytes), toObjectOpts) as EnvelopeMsg;
      } catch (e) {
        throw new WireError(`malformed Envelope: ${(e as Error).message}`);
      }
    },
    errorName(code) {
      return (errorNames.get(code ?? 0) ?? 'ERR_UNKNOWN').replace(/^ERR_/, '').toLowerCase();
    },
  };
}
