// The SiteLocal precedence rules (src/api/site-local.ts), one class at a time, each over
// several inputs; the proxy (headless.ts) and every agent (networking.ts) use this function.
import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { resolveSiteLocal } from '../../../src/api/site-local.js';

const ep = (name: string, node: string, ip: string, mac: string, network = 'red'): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network, node, site: 'a', ip, mac, vtep: '192.0.2.9' },
});
const vn = (name: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'VirtualNetwork',
  metadata: { name },
  spec: { subnets: ['10.1.0.0/24'] },
});
const names = (os: readonly TetherObject[]) => os.map((o) => o.metadata.name);

describe('resolveSiteLocal', () => {
  it('keeps the node’s own endpoints over every other copy of them', () => {
    for (const self of ['n1', 'n2', 'edge-7']) {
      const r = resolveSiteLocal({
        slice: [
          ep(`${self}.a`, self, '10.1.0.2', '02:00:00:00:00:02'),
          ep('x.b', 'x', '10.1.0.3', '02:00:00:00:00:03'),
        ],
        siteLocal: [
          ep(`${self}.c`, self, '10.1.0.4', '02:00:00:00:00:04'),
          ep('y.d', 'y', '10.1.0.5', '02:00:00:00:00:05'),
        ],
        // Even when the set claims to speak for it: only the node itself does.
        covered: [self],
        self,
        own: [ep(`${self}.a`, self, '10.1.0.9', '02:00:00:00:00:09')],
      });
      expect(names(r.slice)).toEqual(['x.b']);
      expect(names(r.siteLocal)).toEqual(['y.d']);
    }
  });

  it('ignores a covered node’s slice copies: they hold no name or address', () => {
    for (const covered of [['n2'], ['n2', 'n3'], ['n3', 'n2']]) {
      const slice = [
        ep('n2.old', 'n2', '10.1.0.2', '02:00:00:00:00:02'),
        ep('n3.old', 'n3', '10.1.0.3', '02:00:00:00:00:03'),
        ep('n4.a', 'n4', '10.1.0.4', '02:00:00:00:00:04'),
      ];
      const r = resolveSiteLocal({
        slice,
        // n2 re-addressed and renamed during the cut: its old address is free again.
        siteLocal: [
          ep('n2.old', 'n2', '10.1.0.12', '02:00:00:00:00:12'),
          ep('n2.new', 'n2', '10.1.0.3', '02:00:00:00:00:03'),
        ],
        covered,
        self: 'n1',
      });
      expect(names(r.slice)).toEqual(covered.includes('n3') ? ['n4.a'] : ['n3.old', 'n4.a']);
      // n2.new uses n3's slice address: free only while n3 is covered too.
      expect(names(r.siteLocal)).toEqual(covered.includes('n3') ? ['n2.old', 'n2.new'] : ['n2.old']);
    }
  });

  it('lets a standing slice endpoint win by name, by IP or by MAC in the same network', () => {
    const slice = [ep('n2.a', 'n2', '10.1.0.2', '02:00:00:00:00:02')];
    const shadowed = [
      ep('n2.a', 'n2', '10.1.0.77', '02:00:00:00:00:77'), // same name (confirmed or decided otherwise)
      ep('n3.b', 'n3', '10.1.0.2', '02:00:00:00:00:78'), // same IP
      ep('n3.c', 'n3', '10.1.0.79', '02:00:00:00:00:02'), // same MAC
      ep('n3.d', 'n3', '10.1.0.80', '02:00:00:00:00:02'.toUpperCase()), // same MAC, other case
      ep('n2.e', 'n2', '10.1.0.2', '02:00:00:00:00:81'), // same IP, same node, another name
    ];
    for (const o of shadowed)
      expect(names(resolveSiteLocal({ slice, siteLocal: [o], covered: [], self: 'n1' }).siteLocal)).toEqual(
        [],
      );
    // The same addresses in another network are another holder's business.
    const other = shadowed.slice(1).map((o) => ({ ...o, spec: { ...(o.spec as object), network: 'blue' } }));
    expect(names(resolveSiteLocal({ slice, siteLocal: other, covered: [], self: 'n1' }).siteLocal)).toEqual(
      names(other),
    );
  });

  it('lets the node’s own endpoints hold their names and addresses against the set', () => {
    const own = [ep('n1.w', 'n1', '10.1.0.2', '02:00:00:00:00:02')];
    for (const o of [
      ep('n3.b', 'n3', '10.1.0.2', '02:00:00:00:00:78'),
      ep('n3.c', 'n3', '10.1.0.79', '02:00:00:00:00:02'),
    ])
      expect(
        resolveSiteLocal({ slice: [], siteLocal: [o], covered: ['n3'], self: 'n1', own }).siteLocal,
      ).toEqual([]);
  });

  it('passes the slice’s other kinds through, drops non-Endpoints from the set, keeps order', () => {
    const slice = [vn('red'), ep('n2.a', 'n2', '10.1.0.2', '02:00:00:00:00:02'), vn('blue')];
    const siteLocal = [
      ep('n3.z', 'n3', '10.1.0.9', '02:00:00:00:00:09'),
      vn('green'),
      ep('n3.a', 'n3', '10.1.0.8', '02:00:00:00:00:08'),
    ];
    const r = resolveSiteLocal({ slice, siteLocal, covered: ['n3'] });
    expect(names(r.slice)).toEqual(['red', 'n2.a', 'blue']);
    expect(names(r.siteLocal)).toEqual(['n3.z', 'n3.a']);
    // Pure: the inputs are untouched.
    expect(names(slice)).toEqual(['red', 'n2.a', 'blue']);
    expect(siteLocal).toHaveLength(3);
  });
});
