import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { validateObject } from '../../../src/api/validate.js';
import {
  DEFAULT_LLGR_STALE_SECONDS,
  desiredGateway,
  fipRoutes,
  fipTable,
} from '../../../src/node/gateway/model.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>): TetherObject =>
  validateObject({ apiVersion: 'tether.dev/v1', kind, metadata: { name }, spec });
const gateway = (extra: Record<string, unknown> = {}) =>
  obj('Gateway', 'gw', {
    site: 's1',
    localAsn: 65001,
    pool: ['203.0.113.0/28'],
    peers: [{ name: 'r1', address: '10.99.0.1', asn: 65000, bfd: {} }],
    announce: { prefixes: ['198.51.100.0/24'] },
    ...extra,
  });
const ep = (
  name: string,
  network: string,
  ip: string,
  labels: Record<string, string> = {},
  node = 'n1',
): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network, node, site: 's1', mac: '02:00:00:00:00:01', ip, vtep: '192.168.0.1', labels },
});
const fip = (name: string, address: string, network: string, target: Record<string, unknown>) =>
  obj('FloatingIP', name, { gateway: 'gw', address, network, target });
const vni = (n: string) => ({ red: 410, blue: 420 })[n];

describe('gateway desired state', () => {
  it('LLGR stale time comes from the site autonomy budget, then the explicit override, else a day', () => {
    const site = (s: number | undefined) => obj('Site', 's1', s === undefined ? {} : { autonomySeconds: s });
    const d = (g: TetherObject, s?: TetherObject) =>
      desiredGateway({
        node: 'n1',
        vtep: '192.168.0.1',
        gateway: g,
        ...(s ? { site: s } : {}),
        floatingIps: [],
        endpoints: [],
        vniOf: vni,
      }).bird;
    expect(d(gateway(), site(7200)).llgrStaleSeconds).toBe(7200);
    expect(d(gateway(), site(0)).llgrStaleSeconds).toBe(0);
    expect(d(gateway(), site(undefined)).llgrStaleSeconds).toBe(DEFAULT_LLGR_STALE_SECONDS);
    expect(d(gateway({ llgrStaleSeconds: 60 }), site(7200)).llgrStaleSeconds).toBe(60);
    expect(d(gateway(), site(7200))).toMatchObject({
      routerId: '192.168.0.1',
      gracefulRestartSeconds: 120,
      peers: [{ bfd: { intervalMs: 300, multiplier: 3 } }],
    });
  });

  it('two networks with the same workload address get their own floating IP, each in its own table', () => {
    const d = desiredGateway({
      node: 'n1',
      vtep: '192.168.0.1',
      gateway: gateway(),
      floatingIps: [
        fip('a', '203.0.113.5', 'red', { endpoint: 'n1.red' }),
        fip('b', '203.0.113.6', 'blue', { matchLabels: { app: 'web' } }),
        fip('c', '203.0.113.7', 'red', { endpoint: 'elsewhere' }),
      ],
      endpoints: [
        ep('n1.red', 'red', '10.1.0.50'),
        ep('n1.blue', 'blue', '10.1.0.50', { app: 'web' }),
        ep('n2.blue', 'blue', '10.1.0.51', { app: 'web' }, 'n2'),
      ],
      vniOf: vni,
    });
    expect(d.bindings.map((b) => [b.name, b.vni, b.ip])).toEqual([
      ['a', 410, '10.1.0.50'],
      ['b', 420, '10.1.0.50'],
    ]);
    expect(d.unbound).toEqual([{ name: 'c', reason: 'no matching endpoint on this node' }]);
    expect(d.bird.announce).toEqual(['198.51.100.0/24', '203.0.113.5/32', '203.0.113.6/32']);
    const red = fipTable(d.bindings.filter((b) => b.vni === 410))!;
    expect(red.chains.map((c) => c.rules[0])).toEqual([
      'iifname "tbo0" dnat to ip daddr map { 203.0.113.5 : 10.1.0.50 }',
      'oifname "tbo0" snat to ip saddr map { 10.1.0.50 : 203.0.113.5 }',
    ]);
    expect(fipRoutes(d.bindings, (v) => `198.18.0.${v === 410 ? 1 : 3}`, 'ns')).toEqual([
      { op: 'route-replace', netns: 'ns', dst: '203.0.113.5/32', via: '198.18.0.1', dev: 'tbo410' },
      { op: 'route-replace', netns: 'ns', dst: '203.0.113.6/32', via: '198.18.0.3', dev: 'tbo420' },
    ]);
    expect(fipTable([])).toBeUndefined();
  });
});
