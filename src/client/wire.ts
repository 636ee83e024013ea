/**
 * The wire codec with the schema bundled: esbuild loads src/proto/canopy.proto as text
 * (build.ts), so the page parses the very file the servers use instead of a hand-kept copy.
 */
import schema from '../proto/canopy.proto';
import { createWire } from './wire-codec.ts';

export { WireError, type EnvelopeMsg, type PlacementMsg } from './wire-codec.ts';
export const { MsgType, ErrorCode, encodeEnvelope, decodeEnvelope, errorName } = createWire(schema);
