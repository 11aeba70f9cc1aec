import { readFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';
import SummaryReporter from './test/support/summary-reporter.js';

export default defineConfig({
  plugins: [
    {
      // The same WGSL files the build embeds, loaded as text.
      name: 'wgsl-text',
      transform(_code: string, id: string) {
        if (!id.endsWith('.wgsl')) return null;
        return { code: `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`, map: null };
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', new SummaryReporter()],
    // One device per test file; lavapipe is CPU-bound, so files run one at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // No first-use search of matmul shapes, and no reading of this machine's tuning cache: every test
    // runs the adapter kind's defaults (the tuning tests set their own cache and turn this back on).
    env: { FISHER_GPU_TUNING: 'off' },
  },
});
