// The election when becoming active fails (a damaged journal, a full disk): the node must not
// claim to be the site proxy without a core, and it retries with a growing interval.
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { Election } from '../../../src/node/proxy/election.js';
import { rosterOf } from '../../../src/node/proxy/roster.js';
import { type NodeCreds, nodeSummary, sitePki } from '../../integration/support/site.js';

let n1: NodeCreds;
let caPem: string;
beforeAll(async () => {
  const pki = await sitePki('s1');
  n1 = await pki.node('n1');
  caPem = pki.ca.certPem;
});

describe('Election', () => {
  it('stays standby while onActive throws, retries with backoff, and becomes active once it succeeds', async () => {
    const roster = rosterOf([nodeSummary(n1, '192.0.2.1')], 's1');
    const calls: boolean[] = [];
    let failing = true;
    const e = new Election({
      node: 'n1',
      site: 's1',
      caPem,
      credentials: { keyPem: n1.keyPem, certPem: n1.certPem },
      port: 7444,
      roster: () => roster,
      log: silentLogger(),
      probeMs: 5,
      onActive: (a) => {
        calls.push(a);
        if (a && failing) throw new Error('journal damaged');
      },
    });
    e.start();
    try {
      await vi.waitFor(() => expect(e.rounds).toBeGreaterThanOrEqual(40), { timeout: 10_000 });
      expect(e.active).toBe(false);
      expect(e.leader).toBeUndefined();
      const attempts = calls.filter((a) => a).length;
      // Retried, but not every round: 2, 4, 8, 16... rounds apart.
      expect(attempts).toBeGreaterThanOrEqual(2);
      expect(attempts).toBeLessThanOrEqual(6);
      // Each failed attempt is undone.
      expect(calls.filter((a) => !a).length).toBe(attempts);
      failing = false;
      await vi.waitFor(() => expect(e.active).toBe(true), { timeout: 10_000 });
      expect(e.leader?.node).toBe('n1');
      expect(calls.at(-1)).toBe(true);
    } finally {
      e.stop();
    }
  });
});
