import { describe, expect, it } from 'vitest';
import { names } from '../../../src/node/vrouter/model.js';
import { validateDesired } from '../../../src/node/vrouter/validate.js';
import { net, node } from './helpers.js';

describe('validateDesired', () => {
  const ok = () =>
    node([
      net('red', 100, {
        localEndpoints: [
          { id: 'a', hostIfname: 'h1', mac: '02:00:00:00:00:0a', ip: '10.1.0.10', labels: {} },
        ],
        remoteEndpoints: [{ mac: '02:00:00:00:00:0b', ip: '10.1.0.11', vtep: '192.168.0.2', labels: {} }],
      }),
    ]);

  it('accepts a valid state, including prefixes with dashes', () => {
    expect(() => validateDesired(ok())).not.toThrow();
    expect(() => validateDesired({ ...ok(), netnsPrefix: 'site1-n2' })).not.toThrow();
    expect(names.nodeNatTable('site1-n2')).toBe('tether_site1_n2');
    expect(names.vnNetnsPattern('site1-n2').test('site1-n2-vn100')).toBe(true);
    expect(names.vnNetnsPattern('site1-n2').test('site1-n2x-vn100')).toBe(false);
  });

  const bad: [string, (d: ReturnType<typeof ok>) => void, string][] = [
    ['netnsPrefix', (d) => (d.netnsPrefix = 'a b'), 'netnsPrefix'],
    ['underlay MTU too small', (d) => (d.underlay.mtu = 600), 'underlay.mtu'],
    ['duplicate VNI', (d) => d.networks.push(net('blue', 100)), 'networks[1].vni'],
    ['gateway outside subnets', (d) => (d.networks[0]!.gateway = '10.2.0.1'), 'networks[0].gateway'],
    [
      'upper-case MAC',
      (d) => (d.networks[0]!.remoteEndpoints[0]!.mac = '02:00:00:00:00:0B'),
      'networks[0].remoteEndpoints[0].mac',
    ],
    [
      'reserved host ifname',
      (d) => (d.networks[0]!.localEndpoints[0]!.hostIfname = 'tbr0'),
      'networks[0].localEndpoints[0].hostIfname',
    ],
    ['breakout without uplink', (d) => (d.networks[0]!.localBreakout = true), 'networks[0].localBreakout'],
    [
      'bad VTEP',
      (d) => (d.networks[0]!.remoteEndpoints[0]!.vtep = 'x'),
      'networks[0].remoteEndpoints[0].vtep',
    ],
  ];
  for (const [name, mutate, field] of bad)
    it(`rejects ${name} naming ${field}`, () => {
      const d = ok();
      mutate(d);
      expect(() => validateDesired(d)).toThrow(
        expect.objectContaining({ code: 'TETHER_E_INVALID', details: expect.objectContaining({ field }) }),
      );
    });
});
