import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Two vCPUs: more than two forks only makes every test slower.
    maxWorkers: 2,
    // no progress bars in test output
    env: { DKFAC_QUIET: '1' },
  },
});
