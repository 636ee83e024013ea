// Per-instance tables. Everything is allocated from the runtime heap by init() and
// streamOpen(); a WASM instance is one Core, so module globals are per Core.
import { RES_SIZE, LIST_MAX, ITEM_MAX, ITEM_SIZE, RTCP_OUT_SIZE, SCRATCH_SIZE, SLOT_STRIDE, FANOUT_ENTRY } from "./layout";

export let resPtr: usize = 0;
export let listPtr: usize = 0;
export let itemsPtr: usize = 0;
export let rtcpOutPtr: usize = 0;
export let scratchPtr: usize = 0;
export let outPtr: usize = 0;
export let outSlots: i32 = 0;
export let fanPtr: usize = 0;
export let streamsPtr: usize = 0;
export let maxStreams: i32 = 0;
export let dsPtr: usize = 0;
export let maxDs: i32 = 0;
export let freeRings: usize = 0; // 32 u32 heads of free lists, indexed by log2(ring slots)
export let exportPtr: usize = 0;
export let initialized: bool = false;

export const STREAM_SIZE: i32 = 384;
export const DS_SIZE: i32 = 128;
export const EXPORT_SIZE: i32 = 128;

@inline export function align64(p: usize): usize {
  return (p + 63) & ~<usize>63;
}

/** Allocate `n` zeroed bytes aligned to 64 from the runtime heap (grows memory as needed). */
export function allocZeroed(n: i32): usize {
  let p = align64(heap.alloc(<usize>(n + 64)));
  memory.fill(p, 0, <usize>n);
  return p;
}

export function initTables(streams: i32, downstreams: i32, outs: i32): void {
  resPtr = allocZeroed(RES_SIZE);
  listPtr = allocZeroed(LIST_MAX * 4);
  itemsPtr = allocZeroed(ITEM_MAX * ITEM_SIZE);
  rtcpOutPtr = allocZeroed(RTCP_OUT_SIZE);
  scratchPtr = allocZeroed(SCRATCH_SIZE);
  outSlots = outs;
  outPtr = allocZeroed(outs * SLOT_STRIDE);
  fanPtr = allocZeroed(outs * FANOUT_ENTRY);
  maxStreams = streams;
  streamsPtr = allocZeroed(streams * STREAM_SIZE);
  maxDs = downstreams;
  dsPtr = allocZeroed(downstreams * DS_SIZE);
  freeRings = allocZeroed(32 * 4);
  exportPtr = allocZeroed(EXPORT_SIZE);
  initialized = true;
}
