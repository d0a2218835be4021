import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Journal } from '../../src/lib/journal.js';

/**
 * A write that really fails (EFBIG past `ulimit -f`, after part of the frame reached the
 * file) is reported as TETHER_E_STATE, leaves nothing of that record behind, and the next
 * append recovers by writing a checkpoint of the caller's state and a fresh log: what was
 * acknowledged before and after the failure is all there on reopen, and nothing else.
 */
const repo = join(import.meta.dirname, '../..');
const fixture = join(import.meta.dirname, 'fixtures/journal-efbig.ts');
const root = mkdtempSync(join(tmpdir(), 'tether-journal-faults-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('Journal under failing writes', () => {
  it('reports EFBIG as TETHER_E_STATE and recovers on the next append', () => {
    const base = join(root, 'j');
    // Ignored signals stay ignored across exec: EFBIG instead of death by SIGXFSZ.
    const r = spawnSync(
      'bash',
      ['-c', `trap '' XFSZ; ulimit -f 2; exec "$0" --import tsx "$1" "$2"`, process.execPath, fixture, base],
      { cwd: repo, encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { i: number; ok?: true; code?: string });
    expect(lines).toHaveLength(60);
    const failed = lines.filter((l) => !l.ok);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.code).toBe('TETHER_E_STATE');
    // Appends succeeded again after the first failure.
    expect(lines.some((l) => l.ok && l.i > failed[0]!.i)).toBe(true);

    const got = Journal.read<{ sum: number; count: number }, { i: number }>({
      path: base,
      maxRecordBytes: 4096,
      maxFileBytes: 1 << 20,
      checkpointRecords: 1000,
      checkpointBytes: 1 << 19,
      decodeState: (v) => v as { sum: number; count: number },
      decodeRecord: (v) => v as { i: number },
    });
    expect(got.truncated).toBeUndefined();
    const acked = lines.filter((l) => l.ok).map((l) => l.i);
    const sum = (got.state?.sum ?? 0) + got.records.reduce((a, x) => a + x.i, 0);
    const count = (got.state?.count ?? 0) + got.records.length;
    expect(count).toBe(acked.length);
    expect(sum).toBe(acked.reduce((a, b) => a + b, 0));
    // The records after the last checkpoint are exactly the last acknowledged ones, in order.
    expect(got.records.map((x) => x.i)).toEqual(acked.slice(acked.length - got.records.length));
  });
});
