import { describe, expect, it } from 'vitest';
import type { RosterEntry } from '../../../src/node/proxy/roster.js';
import { rosterDisowns, rosterDropped } from '../../../src/node/proxy/roster.js';

const entry = (name: string, phase: string, certSerials: string[]): RosterEntry => ({
  name,
  site: 's1',
  phase,
  vtep: '192.0.2.1',
  certSerials,
});
const roster = (...es: RosterEntry[]) => new Map(es.map((e) => [e.name, e]));

describe('roster: certificates no longer current', () => {
  it('disowns a listed node revoked, reset or holding other serials; not an unlisted one', () => {
    expect(rosterDisowns(roster(entry('n2', 'Approved', ['a1'])), 'n2', 'a1')).toBe(false);
    expect(rosterDisowns(roster(entry('n2', 'Revoked', [])), 'n2', 'a1')).toBe(true);
    expect(rosterDisowns(roster(entry('n2', 'Reset', [])), 'n2', 'a1')).toBe(true);
    // Renewed twice: the certificate before the previous one is no longer current.
    expect(rosterDisowns(roster(entry('n2', 'Approved', ['c1', 'b1'])), 'n2', 'a1')).toBe(true);
    // A node new to the site may probe before the roster names it.
    expect(rosterDisowns(roster(), 'n9', 'a1')).toBe(false);
  });

  it('drops a connection whose node was listed and is now refused, deleted included', () => {
    const before = roster(entry('n2', 'Approved', ['a1']), entry('n3', 'Approved', ['b1']));
    expect(
      rosterDropped(before, roster(entry('n2', 'Revoked', []), entry('n3', 'Approved', ['b1'])), 'n2', 'a1'),
    ).toBe(true);
    expect(
      rosterDropped(before, roster(entry('n2', 'Revoked', []), entry('n3', 'Approved', ['b1'])), 'n3', 'b1'),
    ).toBe(false);
    expect(rosterDropped(before, roster(entry('n3', 'Approved', ['b1'])), 'n2', 'a1')).toBe(true);
    expect(rosterDropped(roster(), roster(), 'n9', 'a1')).toBe(false);
  });
});
