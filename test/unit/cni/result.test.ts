import { describe, expect, it } from 'vitest';
import { type AgentEndpoint, validateEndpoint } from '../../../src/cni/agent.js';
import { buildResult, expectationFromResult, hostIfnameFor } from '../../../src/cni/result.js';
import { CniError } from '../../../src/cni/spec.js';

const ep: AgentEndpoint = {
  network: 'blue',
  containerId: 'c1',
  ifname: 'eth0',
  hostIfname: hostIfnameFor('c1', 'eth0'),
  address: '10.1.0.70/24',
  ip: '10.1.0.70',
  prefixLength: 24,
  gateway: '10.1.0.1',
  mac: '02:aa:bb:cc:dd:ee',
  mtu: 1450,
  state: 'attached',
};

describe('hostIfnameFor', () => {
  it('is deterministic, short and distinct per attachment', () => {
    const a = hostIfnameFor('c1', 'eth0');
    expect(a).toMatch(/^tc[0-9a-f]{10}$/);
    expect(a.length).toBeLessThanOrEqual(15);
    expect(hostIfnameFor('c1', 'eth0')).toBe(a);
    expect(hostIfnameFor('c1', 'eth1')).not.toBe(a);
  });
});

describe('buildResult', () => {
  it('builds a 1.0.0 result: host end, container end with sandbox, ip bound to it, default route', () => {
    const r = buildResult({
      cniVersion: '1.0.0',
      containerId: 'c1',
      ifname: 'eth0',
      netns: '/run/netns/p',
      endpoint: ep,
    });
    expect(r).toMatchObject({
      cniVersion: '1.0.0',
      interfaces: [
        { name: ep.hostIfname, mtu: 1450 },
        { name: 'eth0', mac: '02:aa:bb:cc:dd:ee', sandbox: '/run/netns/p', mtu: 1450 },
      ],
      ips: [{ address: '10.1.0.70/24', gateway: '10.1.0.1', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }],
      dns: {},
    });
    expect(r.ips?.[0]).not.toHaveProperty('version');
  });

  it('adds ips[].version for results older than 1.0.0', () => {
    const r = buildResult({
      cniVersion: '0.4.0',
      containerId: 'c1',
      ifname: 'eth0',
      netns: '/x',
      endpoint: ep,
    });
    expect(r.ips?.[0]?.version).toBe('4');
    expect(r.interfaces?.[1]).not.toHaveProperty('mtu');
  });

  it('appends to a prevResult and re-indexes its own ips', () => {
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'lo', sandbox: '/x' }],
      ips: [{ address: '127.0.0.1/8', interface: 0 }],
      dns: { nameservers: ['10.0.0.53'] },
      custom: 'kept',
    };
    const r = buildResult({
      cniVersion: '1.0.0',
      containerId: 'c1',
      ifname: 'eth0',
      netns: '/x',
      endpoint: ep,
      prevResult: prev,
    });
    expect(r.interfaces?.map((i) => i.name)).toEqual(['lo', ep.hostIfname, 'eth0']);
    expect(r.ips).toEqual([
      { address: '127.0.0.1/8', interface: 0 },
      { address: '10.1.0.70/24', gateway: '10.1.0.1', interface: 2 },
    ]);
    expect(r.dns).toEqual({ nameservers: ['10.0.0.53'] });
    expect(r.custom).toBe('kept');
  });
});

describe('expectationFromResult', () => {
  it('finds the interface and its addresses', () => {
    const r = buildResult({
      cniVersion: '1.0.0',
      containerId: 'c1',
      ifname: 'eth0',
      netns: '/x',
      endpoint: ep,
    });
    expect(expectationFromResult(r, 'eth0', '/x')).toEqual({
      mac: '02:aa:bb:cc:dd:ee',
      addresses: ['10.1.0.70/24'],
      gateway: '10.1.0.1',
    });
  });
  it('fails when the result does not mention the interface', () => {
    expect(() => expectationFromResult({ cniVersion: '1.0.0' }, 'eth0', '/x')).toThrow(CniError);
  });
});

describe('validateEndpoint', () => {
  it('accepts a good endpoint and refuses anything that could corrupt an ip batch line', () => {
    expect(validateEndpoint(ep)).toBe(ep);
    for (const patch of [
      { mac: '02:00:00:00:00:02\nlink del eth0' },
      { address: '10.1.0.71/24' },
      { gateway: 'x' },
      { mtu: 10 },
      { hostIfname: 'a b' },
      { prefixLength: 40 },
    ])
      expect(() => validateEndpoint({ ...ep, ...patch })).toThrow(/invalid endpoint/);
  });
});
