import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { siteRoster } from '../../../src/node/agent/roster.js';

const node = (name: string, site: unknown, status: unknown): TetherObject =>
  ({ apiVersion: 'tether.dev/v1', kind: 'Node', metadata: { name }, spec: { site }, status }) as TetherObject;

describe('siteRoster', () => {
  it("reads the own site's Node summaries sorted by name, tolerating missing fields", () => {
    const r = siteRoster(
      [
        node('n2', 'a', { phase: 'Approved', vtep: '192.0.2.2', certSerials: ['02', 7] }),
        node('n1', 'a', { phase: 'Approved', vtep: '192.0.2.1', certSerials: ['01'] }),
        node('n3', 'a', { phase: 'Pending' }),
        node('n9', 'b', { phase: 'Approved', vtep: '192.0.2.9', certSerials: ['09'] }),
        node('n4', 'a', 'not an object'),
        {
          apiVersion: 'tether.dev/v1',
          kind: 'VirtualNetwork',
          metadata: { name: 'n0' },
          spec: { site: 'a' },
        },
      ],
      'a',
    );
    expect(r).toEqual([
      { name: 'n1', site: 'a', phase: 'Approved', vtep: '192.0.2.1', certSerials: ['01'] },
      { name: 'n2', site: 'a', phase: 'Approved', vtep: '192.0.2.2', certSerials: ['02'] },
      { name: 'n3', site: 'a', phase: 'Pending', vtep: undefined, certSerials: [] },
      { name: 'n4', site: 'a', phase: '', vtep: undefined, certSerials: [] },
    ]);
  });
});
