// Deeply nested and oversized input through the real binary and a real controller: `tether
// apply -f` exits 4 naming the file, never with a stack trace, and a peer that skips the
// CLI's checks gets TETHER_E_PARSE from the controller, which keeps serving.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { runTether } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-input-'));
let c: TestController;

beforeAll(async () => {
  const dataDir = join(dir, 'controller');
  c = await startTestController(dataDir, await initTestController(dataDir));
});
afterAll(async () => {
  await c?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

const site = (spec: string) =>
  `apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: deep\nspec:\n${spec}`;

const CASES: Array<[string, (d: number) => string]> = [
  ['json', (d) => `${'['.repeat(d)}${']'.repeat(d)}`],
  [
    'json',
    (d) =>
      `{"apiVersion":"tether.dev/v1","kind":"Site","metadata":{"name":"deep"},"spec":{"x":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}}`,
  ],
  ['yaml', (d) => site(`  labels:\n    x: ${'['.repeat(d)}1${']'.repeat(d)}\n`)],
  ['yaml', (d) => site(`  a:\n    ${'- '.repeat(d)}x\n`)],
];

describe('tether apply -f with nesting far beyond the bound', () => {
  it.each(CASES.flatMap(([ext, make], i) => [100, 10_000].map((d) => [ext, i, d, make] as const)))(
    '%s case %i at depth %i: exit 4, the file named, no stack trace',
    async (ext, i, d, make) => {
      const file = join(dir, `deep-${i}-${d}.${ext}`);
      writeFileSync(file, make(d));
      const r = await runTether(['apply', '-f', file, '--config', c.cfg]);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toContain('TETHER_E_PARSE');
      expect(r.stderr).not.toMatch(/Maximum call stack|^\s+at /m);
    },
  );

  it('an input file over the size bound is refused with exit 4 before it is parsed', async () => {
    const file = join(dir, 'huge.yaml');
    writeFileSync(file, `# ${'x'.repeat(17 * 1024 * 1024)}\n`);
    const r = await runTether(['apply', '-f', file, '--config', c.cfg]);
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('TETHER_E_TOO_LARGE');
  });
});

describe('Admin.Apply from a peer that skips the CLI checks', () => {
  it('answers deep JSON with TETHER_E_PARSE naming the source and keeps serving', async () => {
    const admin = new Admin(loadClientConfig(c.cfg), 30_000);
    try {
      for (const d of [65, 10_000, 200_000]) {
        const json = `{"apiVersion":"tether.dev/v1","kind":"Site","metadata":{"name":"p"},"spec":{"x":${'['.repeat(d)}${']'.repeat(d)}}}`;
        await expect(
          admin.apply({ json: [Buffer.from(json)], sources: [`peer-${d}.json`], expect_revision: 0 }),
        ).rejects.toMatchObject({ code: 'TETHER_E_PARSE', details: { file: `peer-${d}.json` } });
      }
      await expect(admin.list('Site')).resolves.toMatchObject({ items: [] });
    } finally {
      admin.close();
    }
  });
});
