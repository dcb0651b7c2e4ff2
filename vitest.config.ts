import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    // on CI also write a machine-readable summary (.ci/run prints its totals)
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'out/vitest.json' }]] : ['default'],
  },
});
