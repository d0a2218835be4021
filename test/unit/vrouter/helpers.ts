import { FakeKernel } from '../../../src/kernel/fake.js';
import type { PolicyKernelFacts } from '../../../src/kernel/types.js';
import type { DesiredNetwork, DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';
import { gatewayMacFor } from '../../../src/node/vrouter/model.js';

export const NODE_NS = 'node1';

export function net(name: string, vni: number, extra: Partial<DesiredNetwork> = {}): DesiredNetwork {
  return {
    name,
    vni,
    subnets: ['10.1.0.0/24'],
    gateway: '10.1.0.1',
    gatewayMac: gatewayMacFor(vni),
    localBreakout: false,
    localEndpoints: [],
    remoteEndpoints: [],
    policies: [],
    ...extra,
  };
}

export function node(
  networks: DesiredNetwork[],
  extra: Partial<DesiredNodeNetwork> = {},
): DesiredNodeNetwork {
  return {
    node: 'n1',
    netnsPrefix: 't1',
    underlay: { ifname: 'ul0', vtepIp: '192.168.0.1', mtu: 1500, netns: NODE_NS },
    networks,
    ...extra,
  };
}

/** A fake kernel with the node namespace, its underlay and uplink, and CNI-created host veth ends. */
export function fakeNode(hostIfnames: string[] = [], facts?: PolicyKernelFacts): FakeKernel {
  const k = new FakeKernel(facts);
  k.addNsForTest(NODE_NS);
  k.addLink(NODE_NS, { name: 'ul0', mtu: 1500, addrs: ['192.168.0.1/24'] });
  k.addLink(NODE_NS, { name: 'up0', mtu: 1500, addrs: ['10.99.0.2/24'] });
  for (const h of hostIfnames) {
    k.addNsForTest(`wl-${h}`);
    k.addVeth(NODE_NS, h, `wl-${h}`, 'eth0');
  }
  return k;
}
