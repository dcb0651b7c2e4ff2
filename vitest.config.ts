import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // examples import the package by name, as users do; in the repository that is the sources
  resolve: { alias: { 'iommu-lab': fileURLToPath(new URL('./src/index.ts', import.meta.url)) } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    // on CI also write a machine-readable summary (.ci/run prints its totals)
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'out/vitest.json' }]] : ['default'],
  },
});
