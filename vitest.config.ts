import { defineConfig } from 'vitest/config';

// Multi-process tests spawn real ranks (node processes) and run up to a few
// minutes; speed is measured by bench/, never asserted here.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    reporters: ['default'],
  },
});
