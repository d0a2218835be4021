// The kernel command line source (`tether.bootstrap=`), read from a file standing in for
// /proc/cmdline: bounded, and any content ends in a found config or a named miss, never a throw.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { MAX_BOOTSTRAP_BYTES } from '../../../src/node/bootstrap/config.js';
import { discover, SOURCES } from '../../../src/node/bootstrap/discover.js';

const FP = 'ef'.repeat(32);
const good = stringify({
  apiVersion: 'tether.dev/v1',
  kind: 'Bootstrap',
  controllers: ['192.0.2.1:7443'],
  caFingerprint: FP,
  token: `T10${FP}::abc123.${'x'.repeat(32)}`,
  site: 'cell-1',
});
const dir = mkdtempSync(join(tmpdir(), 'tether-cmdline-'));
const cmdline = join(dir, 'cmdline');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Only the cmdline source is looked at; the runner is never asked to run anything.
const onlyCmdline = () =>
  discover({
    statePath: join(dir, 'absent-state.yaml'),
    cmdlinePath: cmdline,
    skip: SOURCES.filter((s) => s !== 'cmdline'),
    runner: new ProcessRunner(),
  });

describe('kernel command line (tether.bootstrap=)', () => {
  it('decodes base64url, the last argument wins', async () => {
    const b64 = Buffer.from(good).toString('base64url');
    writeFileSync(cmdline, `quiet tether.bootstrap=AAAA root=/dev/vda2 tether.bootstrap=${b64}\n`);
    const d = await onlyCmdline();
    expect(d.found?.source).toBe('cmdline');
    expect(d.found?.config.site).toBe('cell-1');
  });

  it('refuses an oversize command line file with a named miss', async () => {
    writeFileSync(cmdline, `tether.bootstrap=${'A'.repeat(MAX_BOOTSTRAP_BYTES + 1)}`);
    const d = await onlyCmdline();
    expect(d.found).toBeUndefined();
    expect(d.misses.find((m) => m.source === 'cmdline')?.why).toMatch(String(MAX_BOOTSTRAP_BYTES));
  });

  it('fuzz: any command line is a config or a cmdline miss, never an exception', async () => {
    const arg = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ maxLength: 200 }).map((s) => `tether.bootstrap=${s}`),
      fc.string({ maxLength: 400 }).map((s) => `tether.bootstrap=${Buffer.from(s).toString('base64url')}`),
      fc.constant(`tether.bootstrap=${Buffer.from(good).toString('base64url')}`),
      fc.constantFrom(
        'tether.bootstrap=',
        'tether.bootstrap=/',
        'tether.bootstrap=/nonexistent',
        `tether.bootstrap=${dir}`,
      ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(arg, { maxLength: 8 }), async (args) => {
        writeFileSync(cmdline, args.join(' '));
        const d = await onlyCmdline();
        if (d.found) expect(d.found.source).toBe('cmdline');
        else expect(d.misses.some((m) => m.source === 'cmdline' && m.why.length > 0)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
