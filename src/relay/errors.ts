/** Named errors of the relay. Messages say what to do. */

/** A request the relay refuses; becomes an HTTP status with a short text body. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers?: Record<string, string>;
  constructor(status: number, message: string, headers?: Record<string, string>) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

/** Bad RelayOptions, thrown by the constructor. */
export class RelayOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RelayOptionsError';
  }
}

/** pull() failed: the parent refused, did not answer, or the connection did not come up. */
export class PullError extends Error {
  readonly status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.name = 'PullError';
    this.status = status;
  }
}

/** The relay is closed or draining and takes nothing new. */
export class RelayClosedError extends Error {
  constructor(message = 'relay is closed') {
    super(message);
    this.name = 'RelayClosedError';
  }
}
