/** Adapter from the relay's stream to the WASM forwarding core (src/wasm). */
import type { CodecKind } from './media.ts';
import type { Downstream } from './downstream.ts';

export type SendFn = (out: Uint8Array, ts: number, payloadBytes: number) => boolean;

export interface CoreTrack {
  clockRate: number;
  codec: CodecKind;
  extIds: Map<string, number>;
}

export class ForwardCore {
  lastKeyframe = false;
  lastNeedKeyframe = false;
  constructor(readonly tracks: CoreTrack[]) {}
  newSource(): void {}
  ingest(_track: number, _pkt: Uint8Array, _now: number): number {
    return 0;
  }
  fanout(_track: number, _send: (ds: Downstream, out: Uint8Array, ts: number, payloadBytes: number) => boolean): void {}
  senderReport(_track: number, _ssrc: number, _ntp: bigint, _now: number): void {}
  addDownstream(_ds: Downstream): void {}
  removeDownstream(_ds: Downstream): void {}
  joinFromCache(_ds: Downstream, _track: number, _send: SendFn): number {
    return 0;
  }
  retransmit(_ds: Downstream, _track: number, _seq: number, _send: SendFn): boolean {
    return false;
  }
  pollNacks(_track: number, _senderSsrc: number, _mediaSsrc: number, _now: number): Uint8Array | undefined {
    return undefined;
  }
  receiverReport(_senderSsrc: number, _ssrcs: number[], _now: number): Uint8Array | undefined {
    return undefined;
  }
  close(): void {}
}
