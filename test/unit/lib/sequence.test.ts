import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DurableSequence } from '../../../src/lib/sequence.js';

const root = mkdtempSync(join(tmpdir(), 'tether-seq-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const file = () => join(root, `seq-${++n}.json`);
const reservedIn = (p: string) => (JSON.parse(readFileSync(p, 'utf8')) as { reserved: number }).reserved;

describe('DurableSequence', () => {
  it('starts at the wall clock when new, then counts up by one', () => {
    const s = new DurableSequence(file(), { now: () => 1_700_000_000_000 });
    expect([s.next(), s.next(), s.next()]).toEqual([1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]);
  });

  it('writes the file once per block, before handing out a number of that block', () => {
    const p = file();
    const s = new DurableSequence(p, { block: 100, now: () => 5000 });
    expect(reservedIn(p)).toBe(5100);
    const first = statSync(p).ino;
    for (let i = 0; i < 100; i++) s.next();
    // 100 numbers, one block: the same file (an atomic write would have replaced it).
    expect(statSync(p).ino).toBe(first);
    expect(reservedIn(p)).toBe(5100);
    expect(s.next()).toBe(5100);
    expect(reservedIn(p)).toBe(5200);
  });

  it('a restart continues above every number handed out, whatever the clock says', () => {
    const p = file();
    let now = 1_000_000;
    let s = new DurableSequence(p, { block: 1000, now: () => now });
    let last = 0;
    for (let i = 0; i < 1500; i++) last = s.next();
    for (const step of [-3_600_000, -1, -900_000, 0]) {
      // A reboot with the clock stepped back (or not moved at all).
      now = Math.max(0, now + step);
      s = new DurableSequence(p, { block: 1000, now: () => now });
      const next = s.next();
      expect(next).toBeGreaterThan(last);
      // It skips at most the rest of one block.
      expect(next - last).toBeLessThanOrEqual(1000);
      last = next;
    }
  });

  it('a clock far ahead of the file lifts the start (a state directory restored from a backup)', () => {
    const p = file();
    new DurableSequence(p, { now: () => 10 }).next();
    expect(new DurableSequence(p, { now: () => 9_000_000 }).next()).toBe(9_000_000);
  });

  it('a damaged file is reported and replaced; the counter continues from the clock', () => {
    for (const bad of ['', 'not json', '{"version":1,"reserved":-4}', '{"version":2,"reserved":5}', '[]']) {
      const p = file();
      writeFileSync(p, bad);
      const seen: string[] = [];
      const s = new DurableSequence(p, { now: () => 777, onDamaged: (f) => seen.push(f) });
      expect(seen, bad).toEqual([p]);
      expect(s.next()).toBe(777);
      expect(reservedIn(p)).toBe(1777);
    }
  });
});
