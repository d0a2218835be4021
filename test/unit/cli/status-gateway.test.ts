import { describe, expect, it } from 'vitest';
import { renderView, type StatusView } from '../../../src/cli/commands/status.js';

describe('tether status: the gateway HA role', () => {
  const base: StatusView = {
    source: 'live',
    sourceDetail: 'control API',
    node: 'gw-a',
    site: 'cell',
    controller: 'c',
    daemon: 'running',
    session: 'synced',
    revision: 1,
    refusedEndpoints: [],
  };
  it('shows the live role and why; no row on a node without a gateway', () => {
    const gateway = {
      gateway: 'cell-gw',
      role: 'standby' as const,
      roleReason: 'gw-b is active; waiting out the preempt hold',
      running: true,
      restarts: 0,
      peers: {},
      announced: 1,
      bound: [],
      unbound: [],
      updatedAt: '',
    };
    expect(renderView({ ...base, gateway })).toMatch(
      /gateway role\s+standby: gw-b is active; waiting out the preempt hold/,
    );
    expect(renderView(base)).not.toMatch(/gateway role/);
    expect(renderView({ ...base, gateway })).not.toMatch(/gateway heartbeats/);
    const heartbeats = {
      accepted: 120,
      dropped: {
        malformed: 0,
        'unknown-key': 0,
        'bad-signature': 7,
        'wrong-signer': 0,
        stale: 0,
        replay: 2,
        'wrong-source': 0,
        'other-gateway': 0,
        'no-key': 0,
      },
    };
    expect(renderView({ ...base, gateway: { ...gateway, heartbeats } })).toMatch(
      /gateway heartbeats\s+120 accepted, dropped: bad-signature 7, replay 2/,
    );
  });
});
