import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { gatewayMacFor } from '../../../src/node/vrouter/model.js';
import {
  allocateTransit,
  desiredFromResources,
  type ResourceProblem,
} from '../../../src/node/vrouter/resources.js';

const obj = (
  kind: string,
  name: string,
  spec: unknown,
  status?: unknown,
  labels?: Record<string, string>,
): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: labels ? { name, labels } : { name },
  spec: spec as Record<string, unknown>,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});

const base = {
  nodeName: 'n1',
  site: 'cell-1',
  underlay: { ifname: 'ul0', vtepIp: '192.168.0.1', mtu: 1500 },
  netnsPrefix: 't1',
};

const objects: TetherObject[] = [
  obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], localBreakout: true }, { vni: 100 }),
  obj(
    'VirtualNetwork',
    'blue',
    { subnets: ['10.1.0.0/24'], gateway: '10.1.0.254', sites: ['cell-1'] },
    { vni: 200 },
  ),
  obj('VirtualNetwork', 'elsewhere', { subnets: ['10.5.0.0/24'], sites: ['cell-9'] }, { vni: 300 }),
  obj('VirtualNetwork', 'pending', { subnets: ['10.6.0.0/24'] }),
  obj('Endpoint', 'n1.a', {
    network: 'red',
    node: 'n1',
    site: 'cell-1',
    mac: '02:00:00:00:00:0A',
    ip: '10.1.0.10',
    vtep: '192.168.0.1',
    hostIfname: 'h1',
    labels: { app: 'web' },
  }),
  obj(
    'Endpoint',
    'n2.b',
    {
      network: 'red',
      node: 'n2',
      site: 'cell-2',
      mac: '02:00:00:00:00:0b',
      ip: '10.1.0.11',
      vtep: '192.168.0.2',
    },
    undefined,
    { app: 'db' },
  ),
  obj('Endpoint', 'n2.bad', {
    network: 'red',
    node: 'n2',
    site: 'cell-2',
    mac: 'zz',
    ip: '10.1.0.12',
    vtep: '192.168.0.2',
  }),
  obj('Endpoint', 'n2.out', {
    network: 'red',
    node: 'n2',
    site: 'cell-2',
    mac: '02:00:00:00:00:0d',
    ip: '10.7.0.1',
    vtep: '192.168.0.2',
  }),
  obj('Endpoint', 'n2.c', {
    network: 'blue',
    node: 'n2',
    site: 'cell-2',
    mac: '02:00:00:00:00:0c',
    ip: '10.1.0.11',
    vtep: '192.168.0.2',
  }),
  obj('NetworkPolicy', 'zz-last', { network: 'red', defaultAction: 'allow', rules: [] }),
  obj('NetworkPolicy', 'aa-first', {
    network: 'red',
    defaultAction: 'deny',
    rules: [
      {
        name: 'web-db',
        action: 'allow',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
        ports: [{ protocol: 'tcp', port: 5432 }],
      },
    ],
  }),
  obj('NetworkPolicy', 'broken', {
    network: 'red',
    defaultAction: 'deny',
    rules: [{ name: 'x', action: 'maybe' }],
  }),
];

describe('desiredFromResources', () => {
  const problems: ResourceProblem[] = [];
  const d = desiredFromResources({ ...base, objects, breakout: { uplinkIfname: 'up0' } }, (p) =>
    problems.push(p),
  );

  it('keeps the networks of this site that have a VNI, sorted by VNI', () => {
    expect(d.networks.map((n) => [n.name, n.vni])).toEqual([
      ['red', 100],
      ['blue', 200],
    ]);
    expect(problems).toContainEqual({
      kind: 'VirtualNetwork',
      name: 'pending',
      field: 'status.vni',
      message: 'no VNI allocated yet',
    });
  });

  it('defaults the gateway to the first host and derives the gateway MAC from the VNI', () => {
    const [red, blue] = d.networks;
    expect(red?.gateway).toBe('10.1.0.1');
    expect(blue?.gateway).toBe('10.1.0.254');
    expect(red?.gatewayMac).toBe(gatewayMacFor(100));
    expect(gatewayMacFor(100)).toBe('02:74:67:00:00:64');
  });

  it('splits endpoints into local and remote, lower-cases MACs, merges labels', () => {
    const red = d.networks[0]!;
    expect(red.localEndpoints).toEqual([
      { id: 'a', hostIfname: 'h1', mac: '02:00:00:00:00:0a', ip: '10.1.0.10', labels: { app: 'web' } },
    ]);
    expect(red.remoteEndpoints).toEqual([
      { id: 'n2.b', mac: '02:00:00:00:00:0b', ip: '10.1.0.11', vtep: '192.168.0.2', labels: { app: 'db' } },
    ]);
    expect(d.networks[1]!.remoteEndpoints.map((e) => e.id)).toEqual(['n2.c']);
  });

  it('reports bad endpoints by field and keeps the rest', () => {
    expect(problems).toContainEqual(
      expect.objectContaining({ kind: 'Endpoint', name: 'n2.bad', field: 'spec.mac' }),
    );
    expect(problems).toContainEqual(
      expect.objectContaining({ kind: 'Endpoint', name: 'n2.out', field: 'spec.ip' }),
    );
  });

  it('never programs a remote entry that shadows the gateway or a local workload', () => {
    const remote = (name: string, mac: string, ip: string) =>
      obj('Endpoint', name, { network: 'red', node: 'n9', site: 'cell-1', mac, ip, vtep: '192.168.0.9' });
    const probs: ResourceProblem[] = [];
    const got = desiredFromResources(
      {
        ...base,
        objects: [
          ...objects,
          remote('n9.gwmac', gatewayMacFor(100), '10.1.0.40'),
          remote('n9.gwip', '02:00:00:00:09:01', '10.1.0.1'),
          remote('n9.localmac', '02:00:00:00:00:0a', '10.1.0.41'),
          remote('n9.localip', '02:00:00:00:09:02', '10.1.0.10'),
          remote('n9.fine', '02:00:00:00:09:03', '10.1.0.42'),
        ],
        breakout: { uplinkIfname: 'up0' },
      },
      (p) => probs.push(p),
    );
    expect(got.networks[0]!.remoteEndpoints.map((e) => e.id)).toEqual(['n2.b', 'n9.fine']);
    for (const [name, field] of [
      ['n9.gwmac', 'spec.mac'],
      ['n9.gwip', 'spec.ip'],
      ['n9.localmac', 'spec.mac'],
      ['n9.localip', 'spec.ip'],
    ])
      expect(probs).toContainEqual(expect.objectContaining({ kind: 'Endpoint', name, field }));
  });

  it('orders policies by name and drops a policy with a bad rule whole', () => {
    expect(d.networks[0]!.policies.map((p) => p.name)).toEqual(['aa-first', 'zz-last']);
    expect(d.networks[0]!.policies[0]!.rules[0]!.ports).toEqual([{ protocol: 'tcp', port: 5432 }]);
    expect(problems).toContainEqual(
      expect.objectContaining({ kind: 'NetworkPolicy', name: 'broken', field: 'spec.rules[0]' }),
    );
  });

  it('allocates breakout transit addresses only for breakout networks', () => {
    expect(d.networks[0]!.localBreakout).toBe(true);
    expect(d.networks[0]!.breakoutTransit).toEqual(allocateTransit([100]).get(100));
    expect(d.networks[1]!.breakoutTransit).toBeUndefined();
  });

  it('disables breakout (with a problem) when the node has no uplink', () => {
    const ps: ResourceProblem[] = [];
    const d2 = desiredFromResources({ ...base, objects }, (p) => ps.push(p));
    expect(d2.networks[0]!.localBreakout).toBe(false);
    expect(ps).toContainEqual(expect.objectContaining({ name: 'red', field: 'spec.localBreakout' }));
  });

  it('is pure: same input, same output', () => {
    expect(desiredFromResources({ ...base, objects, breakout: { uplinkIfname: 'up0' } })).toEqual(d);
  });
});

describe('allocateTransit', () => {
  it('gives each VNI a distinct /31, probing past collisions deterministically', () => {
    const t = allocateTransit([5, 5 + 65536, 6], '198.18.0.0/15');
    expect(t.get(5)).toEqual({ nodeIp: '198.18.0.10', vnIp: '198.18.0.11' });
    expect(t.get(6)).toEqual({ nodeIp: '198.18.0.12', vnIp: '198.18.0.13' });
    expect(t.get(5 + 65536)).toEqual({ nodeIp: '198.18.0.14', vnIp: '198.18.0.15' });
  });
});
