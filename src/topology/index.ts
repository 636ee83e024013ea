/**
 * The topology: relay registry, atomic viewer placement, tree growth and repair.
 * `Topology` is the interface; MemoryTopology (one process) and RedisTopology (many processes)
 * implement it; the policy functions (policy.ts) decide, the stores apply them atomically.
 */
export type * from './types.ts';
export { MAX_PLACE_BATCH } from './types.ts';
export * from './errors.ts';
export * from './policy.ts';
export { MemoryTopology, type MemoryTopologyOptions } from './memory.ts';
export { RedisTopology, type RedisTopologyOptions } from './redis.ts';
