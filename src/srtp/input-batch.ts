/**
 * The span of one batch of input: the datagrams one native read of a socket returned
 * (reader.ts), handled in one synchronous run. Sends made during it may wait for its end and
 * leave together: the relay's fan-out stages each viewer's packets (native sendBatch with
 * defer) and sends them at the end, several per sendmsg with UDP GSO.
 *
 * Whoever stages registers a function with `atInputBatchEnd`; it runs once the outermost batch
 * ends (also when handling threw), before the event loop moves on, so nothing waits longer
 * than the batch's own handling.
 */
import { logger } from '../util/log.ts';

const log = logger('srtp:batch');

let depth = 0;
const atEnd: (() => void)[] = [];

/** Whether a batch of input is being handled (sends may be deferred to its end). */
export function inInputBatch(): boolean {
  return depth > 0;
}

/** Run `fn` when the current batch ends; outside a batch, at once. */
export function atInputBatchEnd(fn: () => void): void {
  if (depth === 0) {
    run(fn);
    return;
  }
  atEnd.push(fn);
}

/** A batch begins; every begin is paired with an end (try/finally). */
export function beginInputBatch(): void {
  depth++;
}

/** The batch begun last ends; the outermost end runs what was registered, in order. */
export function endInputBatch(): void {
  if (depth === 0) return;
  if (--depth > 0) return;
  // A function may register another (bounded: each is run once and removed).
  for (let i = 0; i < atEnd.length; i++) run(atEnd[i]!);
  atEnd.length = 0;
}

function run(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.error('end-of-batch work failed', { err: err as Error });
  }
}
