import { describe, expect, it } from 'vitest';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/lib/exec.js';
import type { LocalEndpoint } from '../../../src/node/cni/registry.js';
import { labelsFromArgs } from '../../../src/node/networking.js';
import { comment, PortmapApplier, renderPortmaps } from '../../../src/node/portmap.js';
import type { DesiredNetwork, DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

const net = (name: string, vni: number, breakout: boolean): DesiredNetwork => ({
  name,
  vni,
  subnets: ['10.1.0.0/24'],
  gateway: '10.1.0.1',
  gatewayMac: '02:74:67:00:10:00',
  localBreakout: breakout,
  ...(breakout ? { breakoutTransit: { nodeIp: '198.18.0.0', vnIp: '198.18.0.1' } } : {}),
  localEndpoints: [],
  remoteEndpoints: [],
  policies: [],
});

const desired: DesiredNodeNetwork = {
  node: 'n1',
  netnsPrefix: 't1',
  underlay: { ifname: 'lan0', vtepIp: '10.0.1.11', mtu: 1500 },
  breakout: { uplinkIfname: 'lan0' },
  networks: [net('red', 4096, true), net('blue', 4097, false)],
};

const ep = (
  containerId: string,
  network: string,
  ip: string,
  pm?: LocalEndpoint['portMappings'],
): LocalEndpoint => ({
  network,
  containerId,
  ifname: 'eth0',
  hostIfname: `tc${containerId}`,
  ip,
  prefixLength: 24,
  address: `${ip}/24`,
  gateway: '10.1.0.1',
  mac: '02:00:00:00:00:02',
  mtu: 1450,
  block: '10.1.0.0/28',
  state: 'attached',
  createdAt: '2026-01-01T00:00:00Z',
  ...(pm ? { portMappings: pm } : {}),
});

describe('renderPortmaps', () => {
  it('DNATs node → transit → workload for networks with breakout, one atomic table per namespace', () => {
    const s = renderPortmaps(desired, [
      ep('web', 'red', '10.1.0.5', [
        { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '10.0.1.11' },
      ]),
      ep('plain', 'red', '10.1.0.6'),
    ]);
    expect([...s.keys()]).toEqual(['t1-vn4096', undefined]);
    expect(s.get(undefined)).toBe(
      'table ip tether_pm_t1 {}\ndelete table ip tether_pm_t1\ntable ip tether_pm_t1 {\n  chain prerouting {\n' +
        '    type nat hook prerouting priority -100; policy accept;\n' +
        '    fib daddr type local tcp dport 8080 dnat to 198.18.0.1:8080 comment "web/eth0"\n' +
        '    ip daddr 10.0.1.11 udp dport 5353 dnat to 198.18.0.1:5353 comment "web/eth0"\n  }\n}\n',
    );
    expect(s.get('t1-vn4096')).toContain(
      'iifname "tbo0" tcp dport 8080 dnat to 10.1.0.5:80 comment "web/eth0"',
    );
    expect(s.get('t1-vn4096')).toContain('iifname "tbo0" udp dport 5353 dnat to 10.1.0.5:53');
  });

  it('keeps runtime-chosen names from breaking out of the rule comment', () => {
    const hostile = {
      ...ep('web', 'red', '10.1.0.5', [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]),
    };
    hostile.ifname = 'e"; flush ruleset; "';
    const script = renderPortmaps(desired, [hostile]).get(undefined) ?? '';
    const comments = [...script.matchAll(/comment "([^"]*)"/g)].map((m) => m[1]);
    expect(comments).toEqual(['web/e___flush_ruleset___']);
    expect(script).not.toContain('flush ruleset;');
    expect(comment('x'.repeat(500))).toHaveLength(120);
  });

  it('no mappings: each table is only removed; endpoints not yet attached or without breakout get no rule', () => {
    const s = renderPortmaps(desired, [
      {
        ...ep('early', 'red', '10.1.0.7', [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }]),
        state: 'allocated',
      },
      ep('blue', 'blue', '10.1.0.8', [{ hostPort: 2, containerPort: 2, protocol: 'tcp' }]),
    ]);
    for (const v of s.values()) expect(v).not.toContain('dnat');
    expect(s.get('t1-vn4096')).toBe('table ip tether_pm {}\ndelete table ip tether_pm\n');
  });
});

describe('PortmapApplier', () => {
  class Runner implements CommandRunner {
    calls: (string | undefined)[] = [];
    async run(_c: string, _a: readonly string[], o: RunOptions = {}): Promise<RunResult> {
      this.calls.push(o.netns);
      return { code: 0, stdout: '', stderr: '' };
    }
  }
  it('cleans up once after start, then runs nothing while no workload maps a port', async () => {
    const r = new Runner();
    const a = new PortmapApplier(r);
    await a.apply(renderPortmaps(desired, []));
    expect(r.calls).toEqual(['t1-vn4096', undefined]);
    await a.apply(renderPortmaps(desired, []));
    expect(r.calls.length).toBe(2);
    await a.apply(
      renderPortmaps(desired, [
        ep('w', 'red', '10.1.0.5', [{ hostPort: 80, containerPort: 80, protocol: 'tcp' }]),
      ]),
    );
    expect(r.calls.length).toBe(4);
    // The last mapping went: its tables are removed once more, then quiet.
    await a.apply(renderPortmaps(desired, []));
    await a.apply(renderPortmaps(desired, []));
    expect(r.calls.length).toBe(6);
  });
});

describe('labelsFromArgs', () => {
  it('reads the chain-safe k:v form and the older k=v form', () => {
    expect(labelsFromArgs({ TETHER_LABELS: 'app:web,tier:fe' })).toEqual({ app: 'web', tier: 'fe' });
    expect(labelsFromArgs({ TETHER_LABELS: 'app=web,tier=fe' })).toEqual({ app: 'web', tier: 'fe' });
    expect(labelsFromArgs({ TETHER_LABELS: 'url:http://x' })).toEqual({ url: 'http://x' });
    expect(labelsFromArgs({})).toEqual({});
  });
});
