import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/lib/errors.js';

/** docs/errors.md must document every code in ERROR_CODES, in its `| code | meaning |` table. */
const doc = readFileSync(join(import.meta.dirname, '../../docs/errors.md'), 'utf8');
const documented = new Map<string, string>();
for (const line of doc.split('\n')) {
  const m = /^\|\s*`?(TETHER_E_[A-Z0-9_]+)`?\s*\|\s*(.*?)\s*\|\s*$/.exec(line);
  if (m) documented.set(m[1]!, m[2]!);
}

describe('docs/errors.md', () => {
  it.each(Object.keys(ERROR_CODES))('documents %s', (code) => {
    expect(documented.has(code), `${code} is missing from docs/errors.md`).toBe(true);
    expect(documented.get(code)!.length, `${code} has an empty meaning`).toBeGreaterThan(0);
  });

  it('documents no code that does not exist', () => {
    const stale = [...documented.keys()].filter((c) => !(c in ERROR_CODES));
    expect(stale).toEqual([]);
  });
});
