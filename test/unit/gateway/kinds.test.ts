import { describe, expect, it } from 'vitest';
import { type FloatingIPSpec, type GatewaySpec, gatewayClaimIssues } from '../../../src/api/gateway-kinds.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { validateDocuments } from '../../../src/api/validate.js';
import { describeError, TetherError } from '../../../src/lib/errors.js';

function thrown(fn: () => unknown): TetherError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TetherError) return e;
    throw e;
  }
  throw new Error('expected a TetherError');
}

const GW = `apiVersion: tether.dev/v1
kind: Gateway
metadata:
  name: gw1
spec:
  site: cell-1
  localAsn: 65001
  pool: [203.0.113.0/28]
  peers:
    - name: r1
      address: 10.99.0.1
      asn: 65000
      bfd: {enabled: true}
  announce:
    prefixes: [198.51.100.0/24]
`;

describe('Gateway and FloatingIP resources', () => {
  it('fill defaults: timers, BFD 300 ms x 3, GR 120 s, announce floating IPs, no default route', () => {
    const [gw] = validateDocuments(GW, 'gw.yaml');
    const spec = gw!.spec as unknown as GatewaySpec;
    expect(spec.peers[0]).toMatchObject({
      holdSeconds: 90,
      keepaliveSeconds: 30,
      bfd: { enabled: true, intervalMs: 300, multiplier: 3 },
    });
    expect(spec.gracefulRestartSeconds).toBe(120);
    expect(spec.announce).toEqual({
      prefixes: ['198.51.100.0/24'],
      floatingIps: true,
      acceptDefaultRoute: false,
    });
  });

  it.each([
    ['asn: 65000', 'asn: 0', 'spec.peers[0].asn'],
    ['asn: 65000', 'asn: 4294967296', 'spec.peers[0].asn'],
    ['address: 10.99.0.1', 'address: 10.99.0.256', 'spec.peers[0].address'],
    ['address: 10.99.0.1', 'address: 127.0.0.1', 'spec.peers[0].address'],
    ['address: 10.99.0.1', 'address: 224.0.0.5', 'spec.peers[0].address'],
    ['asn: 65000', 'asn: 65000\n      holdSeconds: 2', 'spec.peers[0].holdSeconds'],
    [
      'asn: 65000',
      'asn: 65000\n      holdSeconds: 9\n      keepaliveSeconds: 9',
      'spec.peers[0].keepaliveSeconds',
    ],
    ['bfd: {enabled: true}', 'bfd: {intervalMs: 5}', 'spec.peers[0].bfd.intervalMs'],
    ['asn: 65000', 'asn: 65000\n      colour: red', 'spec.peers[0].colour'],
  ])('a bad peer field (%s → %s) names file:line:field', (from, to, field) => {
    const text = GW.replace(`      ${from}`, `      ${to}`);
    const last = to.split('\n').pop()!.trim().split(':')[0]!;
    const want =
      text.split('\n').findIndex((l) => l.trim().startsWith(`${last}:`) && l.startsWith('      ')) + 1;
    const e = thrown(() => validateDocuments(text, 'gw.yaml'));
    expect(e.code).toBe('TETHER_E_INVALID');
    expect(e.details.field).toBe(field);
    expect(e.details.file).toBe('gw.yaml');
    expect(e.details.line).toBe(want);
    expect(describeError(e)).toMatch(/^gw\.yaml:\d+: spec\.peers\[0\]/);
  });

  it('a second peer with the same name or address, pools with host bits: each named', () => {
    const text = `${GW.replace('pool: [203.0.113.0/28]', 'pool: [203.0.113.1/28]')}`.replace(
      '  announce:',
      '    - name: r1\n      address: 10.99.0.1\n      asn: 65000\n  announce:',
    );
    const e = thrown(() => validateDocuments(text, 'gw.yaml'));
    const fields = (e.details.errors as { field: string }[]).map((x) => x.field).sort();
    expect(fields).toEqual(['spec.peers[1].address', 'spec.peers[1].name', 'spec.pool[0]']);
    expect(e.message).toMatch(/did you mean 203\.0\.113\.0\/28/);
  });

  it('a FloatingIP needs exactly one target', () => {
    const fip = (target: string) => `apiVersion: tether.dev/v1
kind: FloatingIP
metadata:
  name: web
spec:
  gateway: gw1
  address: 203.0.113.5
  network: red
  target: ${target}
`;
    expect(() => validateDocuments(fip('{endpoint: node-a.web}'), 'f.yaml')).not.toThrow();
    expect(() => validateDocuments(fip('{matchLabels: {app: web}}'), 'f.yaml')).not.toThrow();
    for (const bad of ['{}', '{endpoint: a, matchLabels: {app: web}}', '{matchLabels: {}}']) {
      const e = thrown(() => validateDocuments(fip(bad), 'f.yaml'));
      expect(e.details.field).toMatch(/^spec\.target/);
      expect(e.details.line).toBe(9);
    }
  });
});

describe('gateway claims across objects', () => {
  const gw = (name: string, site: string, pool: string[]): TetherObject => ({
    apiVersion: 'tether.dev/v1',
    kind: 'Gateway',
    metadata: { name },
    spec: {
      site,
      localAsn: 65001,
      pool,
      peers: [],
      announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
      gracefulRestartSeconds: 120,
    } as unknown as Record<string, unknown>,
  });
  const fip = (name: string, address: string, gateway = 'gw1'): TetherObject => ({
    apiVersion: 'tether.dev/v1',
    kind: 'FloatingIP',
    metadata: { name },
    spec: {
      gateway,
      address,
      network: 'red',
      target: { endpoint: 'a.b' },
    } satisfies FloatingIPSpec as unknown as Record<string, unknown>,
  });
  const base = [gw('gw1', 's1', ['203.0.113.0/28']), gw('gw2', 's2', ['203.0.113.16/28'])];

  it('every address inside the pool is accepted; each one just outside either edge is refused', () => {
    for (let last = 0; last < 16; last++)
      expect(gatewayClaimIssues([...base, fip('f', `203.0.113.${last}`)], new Set(['FloatingIP/f']))).toEqual(
        [],
      );
    for (const a of ['203.0.112.255', '203.0.113.16', '10.0.0.1']) {
      const issues = gatewayClaimIssues([...base, fip('f', a)], new Set(['FloatingIP/f']));
      expect(issues.map((i) => i.field)).toEqual(['spec.address']);
      expect(issues[0]!.message).toContain('outside the pool of Gateway gw1');
    }
  });

  it('two floating IPs with one address: the new one is refused, whatever their names sort as', () => {
    for (const [old, nu] of [
      ['a', 'b'],
      ['b', 'a'],
    ] as const) {
      const issues = gatewayClaimIssues(
        [...base, fip(old, '203.0.113.5'), fip(nu, '203.0.113.5')],
        new Set([`FloatingIP/${nu}`]),
      );
      expect(issues.map((i) => [i.name, i.field])).toEqual([[nu, 'spec.address']]);
      expect(issues[0]!.message).toContain(`held by FloatingIP ${old}`);
    }
  });

  it('unknown gateway, overlapping pools and a second gateway for a site are refused; old inconsistency does not block others', () => {
    expect(
      gatewayClaimIssues([...base, fip('f', '203.0.113.5', 'nope')], new Set(['FloatingIP/f']))[0]!.field,
    ).toBe('spec.gateway');
    const overl = gatewayClaimIssues(
      [...base, gw('gw3', 's3', ['203.0.113.8/29'])],
      new Set(['Gateway/gw3']),
    );
    expect(overl.map((i) => i.field)).toEqual(['spec.pool[0]']);
    const twice = gatewayClaimIssues([...base, gw('gw3', 's1', ['192.0.2.0/28'])], new Set(['Gateway/gw3']));
    expect(twice.map((i) => i.field)).toEqual(['spec.site']);
    expect(
      gatewayClaimIssues([...base, fip('f', '10.0.0.1'), fip('g', '203.0.113.2')], new Set(['FloatingIP/g'])),
    ).toEqual([]);
  });
});
