import { defineConfig } from 'vitest/config';

// The node image boot test (npm run test:image): minutes under qemu's software emulation, so
// it is not part of `npm test`. Its files end in .image.ts so the main config never sees them.
export default defineConfig({
  test: {
    include: ['test/image/**/*.image.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
