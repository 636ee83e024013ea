/**
 * Typed topology errors. `code` is stable for callers (signaling maps it to a wire ErrorCode);
 * messages say what to do.
 */
export type TopologyErrorCode =
  | 'store_unavailable'
  | 'no_capacity'
  | 'no_stream'
  | 'unknown_relay'
  | 'relay_unavailable'
  | 'stream_exists'
  | 'invalid';

export class TopologyError extends Error {
  readonly code: TopologyErrorCode;
  constructor(code: TopologyErrorCode, message: string) {
    super(message);
    this.name = 'TopologyError';
    this.code = code;
  }
}

/** The store (Redis) cannot be reached or did not answer within the command timeout. Retry later. */
export class StoreUnavailableError extends TopologyError {
  constructor(message: string, cause?: unknown) {
    super('store_unavailable', message);
    this.name = 'StoreUnavailableError';
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause;
  }
}

/** No relay that carries the stream has a free slot and none can be attached. Add relays or raise capacity. */
export class NoCapacityError extends TopologyError {
  constructor(stream: string) {
    super('no_capacity', `no relay has room for another viewer of stream "${stream}"; add relays or raise their capacity`);
    this.name = 'NoCapacityError';
  }
}

/** The stream is not live (never registered, or ended). */
export class NoStreamError extends TopologyError {
  constructor(stream: string) {
    super('no_stream', `stream "${stream}" is not being published; publish it (WHIP) first`);
    this.name = 'NoStreamError';
  }
}

/** The relay is not registered (or was declared down). Register it (again). */
export class UnknownRelayError extends TopologyError {
  constructor(relayId: string) {
    super('unknown_relay', `relay "${relayId}" is not registered (or its lease expired); call registerRelay again`);
    this.name = 'UnknownRelayError';
  }
}

/** The relay is registered but down or draining, so it cannot take this role. */
export class RelayUnavailableError extends TopologyError {
  constructor(relayId: string, why: string) {
    super('relay_unavailable', `relay "${relayId}" cannot take a new stream: it is ${why}`);
    this.name = 'RelayUnavailableError';
  }
}

/** registerStream on a stream that is live with another origin. End it first. */
export class StreamExistsError extends TopologyError {
  constructor(stream: string, originId: string) {
    super('stream_exists', `stream "${stream}" is already published at relay "${originId}"; end it first`);
    this.name = 'StreamExistsError';
  }
}

/** Bad argument or option; the message names it and the accepted values. */
export class InvalidTopologyArgumentError extends TopologyError {
  constructor(message: string) {
    super('invalid', message);
    this.name = 'InvalidTopologyArgumentError';
  }
}
