// The lab's topology plan (pure, no root): names, addresses, limits, and the namespace
// pattern `down` uses to find each node's vRouter namespaces.
import { describe, expect, it } from 'vitest';
import { allWorkloads, planLab, plannedNamespaces, vnNamespaceRe } from '../../src/lab/index.js';
import { isTetherError } from '../../src/lib/errors.js';

const base = { name: 'tl', sites: 2, nodesPerSite: 1, workloadsPerNode: 2, stateDir: '/run/tether-lab/tl' };

describe('lab plan', () => {
  it('plans the default 2-site lab with short lab-prefixed names and the documented addresses', () => {
    const p = planLab(base);
    expect(plannedNamespaces(p)).toEqual([
      'tl-c',
      'tl-wan',
      'tl-s1',
      'tl-s1n1',
      'tl-s1n1w1',
      'tl-s1n1w2',
      'tl-s2',
      'tl-s2n1',
      'tl-s2n1w1',
      'tl-s2n1w2',
    ]);
    for (const ns of plannedNamespaces(p)) expect(ns.length).toBeLessThanOrEqual(15);
    expect(p.central).toMatchObject({
      ip: '172.31.255.2',
      gateway: '172.31.255.1',
      address: '172.31.255.2:7443',
    });
    expect(p.sites.map((s) => [s.wanPeer, s.wanIp, s.lan, s.routerIp])).toEqual([
      ['172.31.255.5', '172.31.255.6', '10.201.0.0/24', '10.201.0.1'],
      ['172.31.255.9', '172.31.255.10', '10.202.0.0/24', '10.202.0.1'],
    ]);
    const n = p.sites[1]!.nodes[0]!;
    expect(n).toMatchObject({
      name: 's2n1',
      ip: '10.202.0.11',
      gateway: '10.202.0.1',
      netnsPrefix: 'tl_s2n1',
    });
    expect(allWorkloads(p).map((w) => [w.name, w.network])).toEqual([
      ['s1n1w1', 'red'],
      ['s1n1w2', 'blue'],
      ['s2n1w1', 'red'],
      ['s2n1w2', 'blue'],
    ]);
    expect(allWorkloads(p)[0]!.labels).toEqual({ site: 's1', node: 's1n1', workload: 's1n1w1' });
  });

  it("matches only a node's own vRouter namespaces", () => {
    const re = vnNamespaceRe('tl_s1n1');
    expect(re.test('tl_s1n1-vn4096')).toBe(true);
    expect(re.test('tl_s1n10-vn4096')).toBe(false);
    expect(re.test('tl_s1n1-vn4096x')).toBe(false);
    expect(re.test('tvn-vn4096')).toBe(false);
  });

  it('accepts the WAN heartbeats the controller accepts (1–120 s) and the proxy switch', () => {
    for (const wanHeartbeatSeconds of [1, 30, 120])
      expect(() => planLab({ ...base, wanHeartbeatSeconds })).not.toThrow();
    expect(() => planLab({ ...base, proxy: false, heartbeatSeconds: 5 })).not.toThrow();
  });

  it('refuses bad names and sizes with the flag named', () => {
    for (const [o, field] of [
      [{ name: 'Bad-Name' }, '--name'],
      [{ name: 'toolongname' }, '--name'],
      [{ sites: 5 }, '--sites'],
      [{ sites: 0 }, '--sites'],
      [{ nodesPerSite: 0 }, '--nodes-per-site'],
      [{ nodesPerSite: 5 }, '--nodes-per-site'],
      [{ workloadsPerNode: 21 }, '--workloads-per-node'],
      [{ wanHeartbeatSeconds: 0 }, '--wan-heartbeat'],
      [{ wanHeartbeatSeconds: 121 }, '--wan-heartbeat'],
      [{ wanHeartbeatSeconds: 1.5 }, '--wan-heartbeat'],
      [{ heartbeatSeconds: 0 }, '--heartbeat'],
      [{ heartbeatSeconds: 121 }, '--heartbeat'],
    ] as const) {
      try {
        planLab({ ...base, ...o });
        expect.unreachable(`${JSON.stringify(o)} accepted`);
      } catch (e) {
        expect(isTetherError(e, 'TETHER_E_INVALID')).toBe(true);
        expect((e as { details: { field?: string } }).details.field).toBe(field);
      }
    }
  });
});
