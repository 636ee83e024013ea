/** The relay: WHIP/WHEP SFU with relay-to-relay pull (see docs/architecture.md). */
export { Relay, type RelayOptions, type SessionKind } from './relay.ts';
export { HttpError, PullError, RelayOptionsError, RelayClosedError } from './errors.ts';
export { PliMerger } from './pli.ts';
