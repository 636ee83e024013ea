export { Core, CoreConfigError, CoreCallError, CoreAbortError } from './core.ts';
export type { CoreOptions, StreamOptions, DownstreamOptions, StreamStats } from './core.ts';
export { CoreLoadError, coreModule, CORE_WASM_PATH } from './load.ts';
export { Status, Decision, DropReason, Codec, RtcpType, SLOT_STRIDE, MAX_PACKET, LIST_MAX } from './layout.ts';
export type { StatusCode, DecisionCode, CodecId, RtcpTypeCode } from './layout.ts';
