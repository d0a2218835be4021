import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readRegularFileNoFollow } from '../../../src/node/support/bundle.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-bundle-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readRegularFileNoFollow', () => {
  it('reads a regular file whole', () => {
    writeFileSync(join(dir, 'a.yaml'), 'site: s1\n');
    expect(readRegularFileNoFollow(join(dir, 'a.yaml'), 1024).toString()).toBe('site: s1\n');
  });

  it('refuses a symlink at the last component, even to a readable file', () => {
    writeFileSync(join(dir, 'secret.key'), 'KEY');
    symlinkSync(join(dir, 'secret.key'), join(dir, 'link.yaml'));
    expect(() => readRegularFileNoFollow(join(dir, 'link.yaml'), 1024)).toThrow(/ELOOP/);
  });

  it('refuses a file over the bound, checked on the open descriptor', () => {
    writeFileSync(join(dir, 'big'), Buffer.alloc(2048));
    expect(() => readRegularFileNoFollow(join(dir, 'big'), 1024)).toThrow(
      expect.objectContaining({ code: 'TETHER_E_TOO_LARGE' }),
    );
  });

  it('does not block on a fifo and says it is not a regular file', () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect(() => readRegularFileNoFollow(join(dir, 'fifo'), 1024)).toThrow(
      expect.objectContaining({ code: 'TETHER_E_INVALID' }),
    );
  });
});
