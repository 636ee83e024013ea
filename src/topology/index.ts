/**
 * The topology: relay registry, atomic viewer placement, tree growth and repair.
 * `Topology` is the interface; MemoryTopology (one process) and RedisTopology (many processes)
 * implement it; the policy functions decide, the stores apply atomically.
 */
export type * from './types.ts';
export * from './errors.ts';
