import { describe, expect, it } from 'vitest';
import { REPO, runProcess } from '../integration/support/proc.js';

// scripts/vitest-summary.mjs is what `npm test` (and so CI) runs: it must not let a skipped suite
// pass in CI, and must still let a developer skip root suites on their own machine.
const summary = (file: string, ci: boolean) =>
  runProcess(
    'node',
    [
      'scripts/vitest-summary.mjs',
      '--config',
      'test/fixtures/ci-skip/vitest.config.ts',
      `test/fixtures/ci-skip/${file}`,
    ],
    { cwd: REPO, env: { ...process.env, CI: ci ? 'true' : '' }, timeoutMs: 60_000 },
  );

describe('npm test summary', () => {
  it('fails under CI=true when a suite was skipped, and names it', async () => {
    const r = await summary('skip.fixture.ts', true);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/^1 passed, 0 failed, 1 skipped$/m);
    expect(r.stderr).toContain('skipped: test/fixtures/ci-skip/skip.fixture.ts');
  });

  it('passes the same skip outside CI', async () => {
    const r = await summary('skip.fixture.ts', false);
    expect(r.code).toBe(0);
  });

  it('passes under CI=true when nothing was skipped', async () => {
    const r = await summary('pass.fixture.ts', true);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^1 passed, 0 failed, 0 skipped$/m);
  });
});
