import { defineConfig } from 'vitest/config';

// Integration suites start real peers, relays and Redis servers; two cores cannot run many at
// once without turning timing bounds into flakes, so files run in at most two forks.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
  },
});
