/**
 * Loads the wire schema once and exposes typed codecs. Decoding bytes from the network goes
 * through `decodeEnvelope`, which enforces the frame limit and never throws anything but
 * WireError.
 */
import protobuf from 'protobufjs';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MAX_FRAME_BYTES = 64 * 1024;

const protoPath = fileURLToPath(new URL('./canopy.proto', import.meta.url));
export const root = protobuf.parse(readFileSync(protoPath, 'utf8'), { keepCase: false }).root;

export const Envelope = root.lookupType('canopy.Envelope');
export const ControlRequest = root.lookupType('canopy.ControlRequest');
export const ControlResponse = root.lookupType('canopy.ControlResponse');
export const TopologyEvent = root.lookupType('canopy.TopologyEvent');
export const MsgType = root.lookupEnum('canopy.MsgType').values as Record<string, number>;
export const ErrorCode = root.lookupEnum('canopy.ErrorCode').values as Record<string, number>;
export const TopologyEventKind = root.lookupEnum('canopy.TopologyEvent.Kind').values as Record<string, number>;

export class WireError extends Error {
  readonly code: 'too_large' | 'malformed';
  constructor(code: 'too_large' | 'malformed', message: string) {
    super(message);
    this.name = 'WireError';
    this.code = code;
  }
}

const toObjectOpts = { longs: Number, enums: Number, defaults: false, oneofs: true } as const;

function decodeWith<T>(type: protobuf.Type, bytes: Uint8Array, limit: number): T {
  if (bytes.byteLength > limit) throw new WireError('too_large', `frame of ${bytes.byteLength} bytes exceeds the ${limit}-byte limit`);
  try {
    return type.toObject(type.decode(bytes), toObjectOpts) as T;
  } catch (e) {
    throw new WireError('malformed', `malformed ${type.name}: ${(e as Error).message}`);
  }
}

function encodeWith(type: protobuf.Type, obj: object): Uint8Array {
  const err = type.verify(obj);
  if (err) throw new TypeError(`invalid ${type.name}: ${err}`);
  return type.encode(type.fromObject(obj)).finish();
}

export const decodeEnvelope = <T = Record<string, unknown>>(b: Uint8Array, limit = MAX_FRAME_BYTES): T => decodeWith<T>(Envelope, b, limit);
export const encodeEnvelope = (o: object): Uint8Array => encodeWith(Envelope, o);
export const decodeControl = <T = Record<string, unknown>>(b: Uint8Array): T => decodeWith<T>(ControlRequest, b, MAX_FRAME_BYTES);
export const encodeControl = (o: object): Uint8Array => encodeWith(ControlRequest, o);
export const decodeControlResponse = <T = Record<string, unknown>>(b: Uint8Array): T => decodeWith<T>(ControlResponse, b, MAX_FRAME_BYTES);
export const encodeControlResponse = (o: object): Uint8Array => encodeWith(ControlResponse, o);
export const decodeTopologyEvent = <T = Record<string, unknown>>(b: Uint8Array): T => decodeWith<T>(TopologyEvent, b, MAX_FRAME_BYTES);
export const encodeTopologyEvent = (o: object): Uint8Array => encodeWith(TopologyEvent, o);
