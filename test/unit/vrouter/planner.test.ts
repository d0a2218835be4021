import { describe, expect, it } from 'vitest';
import type { FakeKernel } from '../../../src/kernel/fake.js';
import type { KernelOp } from '../../../src/kernel/types.js';
import { applyPlan } from '../../../src/node/vrouter/applier.js';
import type { DesiredNodeNetwork, DesiredPolicy } from '../../../src/node/vrouter/model.js';
import { observe } from '../../../src/node/vrouter/observe.js';
import { nodeRawTable, plan } from '../../../src/node/vrouter/planner.js';
import { allocateTransit } from '../../../src/node/vrouter/resources.js';
import { fakeNode, NODE_NS, net, node } from './helpers.js';

const VN = 't1-vn100';
const EP_A = { id: 'a', hostIfname: 'h1', mac: '02:00:00:00:00:0a', ip: '10.1.0.10', labels: { app: 'web' } };
const EP_B = {
  id: 'b',
  mac: '02:00:00:00:00:0b',
  ip: '10.1.0.11',
  vtep: '192.168.0.2',
  labels: { app: 'db' },
};
const EP_C = {
  id: 'c',
  mac: '02:00:00:00:00:0c',
  ip: '10.1.0.12',
  vtep: '192.168.0.3',
  labels: { app: 'db' },
};

/** Every br_netfilter switch off: what a network without policy gets. */
const brnfOff = (ns: string): KernelOp[] => [
  { op: 'sysctl', netns: ns, key: 'net.bridge.bridge-nf-call-iptables', value: '0' },
  { op: 'sysctl', netns: ns, key: 'net.bridge.bridge-nf-call-ip6tables', value: '0' },
  { op: 'sysctl', netns: ns, key: 'net.bridge.bridge-nf-call-arptables', value: '0' },
];

const red = (extra = {}) => net('red', 100, { localEndpoints: [EP_A], remoteEndpoints: [EP_B], ...extra });

/** The node namespace's VXLAN notrack table for a node with VTEP `vtep`. */
const raw = (vtep = '192.168.0.1'): KernelOp => ({
  op: 'nft-table',
  netns: NODE_NS,
  table: nodeRawTable(
    node([red()], { underlay: { ifname: 'ul0', vtepIp: vtep, mtu: 1500, netns: NODE_NS } }),
  )!,
});

async function converge(k: FakeKernel, d: DesiredNodeNetwork): Promise<void> {
  const p = plan(d, await observe(k, d));
  const r = await applyPlan(k, p.ops);
  expect(r.failures).toEqual([]);
}

interface Case {
  name: string;
  /** Desired state applied first (the "observed" kernel is what that produced), if any. */
  before?: DesiredNodeNetwork;
  /** Extra kernel setup after `before`. */
  setup?: (k: FakeKernel) => void | Promise<void>;
  desired: DesiredNodeNetwork;
  expected: KernelOp[];
}

const denyWebDb: DesiredPolicy = {
  name: 'p',
  defaultAction: 'allow',
  rules: [
    { name: 'r', action: 'deny', from: { matchLabels: { app: 'web' } }, to: { matchLabels: { app: 'db' } } },
  ],
};

const cases: Case[] = [
  {
    name: 'empty kernel → create namespace, VXLAN (socket in node ns, device in the network ns), bridge, ports, entries',
    desired: node([red()]),
    expected: [
      { op: 'netns-add', name: VN },
      {
        op: 'vxlan-add',
        netns: NODE_NS,
        into: VN,
        name: 'tvx100',
        vni: 100,
        local: '192.168.0.1',
        dev: 'ul0',
        dstport: 4789,
        mtu: 1450,
      },
      { op: 'link-move', netns: NODE_NS, name: 'h1', to: VN },
      { op: 'bridge-add', netns: VN, name: 'tbr0', mtu: 1450, mac: '02:74:67:00:00:64' },
      { op: 'link-set', netns: VN, name: 'tbr0', mtu: 1450, up: true },
      { op: 'link-set', netns: VN, name: 'lo', up: true },
      { op: 'addr-replace', netns: VN, dev: 'tbr0', cidr: '10.1.0.1/24' },
      { op: 'link-set', netns: VN, name: 'tvx100', mtu: 1450, master: 'tbr0', up: true, learning: false },
      { op: 'link-set', netns: VN, name: 'h1', mtu: 1450, master: 'tbr0', up: true },
      { op: 'neigh-replace', netns: VN, dev: 'tvx100', ip: '10.1.0.11', mac: '02:00:00:00:00:0b' },
      {
        op: 'fdb-replace',
        netns: VN,
        dev: 'tvx100',
        mac: '02:00:00:00:00:0b',
        target: 'self',
        dst: '192.168.0.2',
      },
      { op: 'fdb-replace', netns: VN, dev: 'tvx100', mac: '02:00:00:00:00:0b', target: 'master' },
      ...brnfOff(VN),
      raw(),
    ],
  },
  {
    name: 'converged kernel → nothing to do',
    before: node([red()]),
    desired: node([red()]),
    expected: [],
  },
  {
    name: 'remote endpoint removed → its neighbour and both forwarding entries deleted',
    before: node([red({ remoteEndpoints: [EP_B, EP_C] })]),
    desired: node([red()]),
    expected: [
      { op: 'neigh-del', netns: VN, dev: 'tvx100', ip: '10.1.0.12' },
      {
        op: 'fdb-del',
        netns: VN,
        dev: 'tvx100',
        mac: '02:00:00:00:00:0c',
        target: 'self',
        dst: '192.168.0.3',
      },
      { op: 'fdb-del', netns: VN, dev: 'tvx100', mac: '02:00:00:00:00:0c', target: 'master' },
    ],
  },
  {
    name: 'remote endpoint moved to another VTEP → only the self entry is replaced',
    before: node([red()]),
    desired: node([red({ remoteEndpoints: [{ ...EP_B, vtep: '192.168.0.9' }] })]),
    expected: [
      {
        op: 'fdb-replace',
        netns: VN,
        dev: 'tvx100',
        mac: '02:00:00:00:00:0b',
        target: 'self',
        dst: '192.168.0.9',
      },
    ],
  },
  {
    name: 'network removed → its namespace deleted; other prefixes and foreign namespaces untouched',
    before: node([red()]),
    setup: (k) => {
      k.addNsForTest('t2-vn100');
      k.addNsForTest('t1-vnx');
      k.addNsForTest('someone-else');
    },
    desired: node([]),
    expected: [
      { op: 'nft-table-del', netns: NODE_NS, family: 'ip', table: 'tether_raw_t1' },
      { op: 'netns-del', name: VN },
    ],
  },
  {
    name: 'VXLAN left in the node namespace (older run, or made by hand with our name) → moved, not recreated',
    setup: async (k) => {
      await k.apply('ip', undefined, [{ op: 'netns-add', name: VN }]);
      await k.apply('ip', NODE_NS, [
        {
          op: 'vxlan-add',
          netns: NODE_NS,
          name: 'tvx100',
          vni: 100,
          local: '192.168.0.1',
          dev: 'ul0',
          dstport: 4789,
          mtu: 1450,
        },
      ]);
    },
    desired: node([net('red', 100)]),
    expected: [
      { op: 'link-move', netns: NODE_NS, name: 'tvx100', to: VN },
      { op: 'bridge-add', netns: VN, name: 'tbr0', mtu: 1450, mac: '02:74:67:00:00:64' },
      { op: 'link-set', netns: VN, name: 'tbr0', mtu: 1450, up: true },
      { op: 'link-set', netns: VN, name: 'lo', up: true },
      { op: 'addr-replace', netns: VN, dev: 'tbr0', cidr: '10.1.0.1/24' },
      { op: 'link-set', netns: VN, name: 'tvx100', mtu: 1450, master: 'tbr0', up: true, learning: false },
      ...brnfOff(VN),
      raw(),
    ],
  },
  {
    name: 'VTEP address changed → VXLAN device recreated (entries re-added on the new device)',
    before: node([red()]),
    desired: node([red()], { underlay: { ifname: 'ul0', vtepIp: '192.168.0.5', mtu: 1500, netns: NODE_NS } }),
    expected: [
      { op: 'link-del', netns: VN, name: 'tvx100' },
      {
        op: 'vxlan-add',
        netns: NODE_NS,
        into: VN,
        name: 'tvx100',
        vni: 100,
        local: '192.168.0.5',
        dev: 'ul0',
        dstport: 4789,
        mtu: 1450,
      },
      { op: 'link-set', netns: VN, name: 'tvx100', mtu: 1450, master: 'tbr0', up: true, learning: false },
      { op: 'neigh-replace', netns: VN, dev: 'tvx100', ip: '10.1.0.11', mac: '02:00:00:00:00:0b' },
      {
        op: 'fdb-replace',
        netns: VN,
        dev: 'tvx100',
        mac: '02:00:00:00:00:0b',
        target: 'self',
        dst: '192.168.0.2',
      },
      { op: 'fdb-replace', netns: VN, dev: 'tvx100', mac: '02:00:00:00:00:0b', target: 'master' },
      // The notrack rules match the VTEP address: the table follows it.
      raw('192.168.0.5'),
    ],
  },
  {
    name: 'underlay MTU changed → MTU set on bridge, VXLAN and workload port',
    before: node([red()]),
    desired: node([red()], { underlay: { ifname: 'ul0', vtepIp: '192.168.0.1', mtu: 9000, netns: NODE_NS } }),
    expected: [
      { op: 'link-set', netns: VN, name: 'tbr0', mtu: 8950 },
      { op: 'link-set', netns: VN, name: 'tvx100', mtu: 8950 },
      { op: 'link-set', netns: VN, name: 'h1', mtu: 8950 },
    ],
  },
  {
    name: 'workload removed → its port (in Tether’s namespace) deleted',
    before: node([red()]),
    desired: node([red({ localEndpoints: [] })]),
    expected: [{ op: 'link-del', netns: VN, name: 'h1' }],
  },
  {
    name: 'second subnet → a protocol-183 route on the bridge; removing it deletes the route',
    before: node([red({ subnets: ['10.1.0.0/24', '10.2.0.0/24'] })]),
    desired: node([red()]),
    expected: [{ op: 'route-del', netns: VN, dst: '10.2.0.0/24', dev: 'tbr0' }],
  },
  {
    name: 'policy group membership change → only the set is rewritten (counters kept)',
    before: node([red({ policies: [denyWebDb] })]),
    desired: node([red({ remoteEndpoints: [EP_B, EP_C], policies: [denyWebDb] })]),
    expected: [
      { op: 'neigh-replace', netns: VN, dev: 'tvx100', ip: '10.1.0.12', mac: '02:00:00:00:00:0c' },
      {
        op: 'fdb-replace',
        netns: VN,
        dev: 'tvx100',
        mac: '02:00:00:00:00:0c',
        target: 'self',
        dst: '192.168.0.3',
      },
      { op: 'fdb-replace', netns: VN, dev: 'tvx100', mac: '02:00:00:00:00:0c', target: 'master' },
      {
        op: 'nft-set',
        netns: VN,
        family: 'inet',
        table: 'tether_policy',
        set: 'p0r0_to',
        elements: ['10.1.0.11', '10.1.0.12'],
      },
    ],
  },
  {
    name: 'policy removed → its table deleted, bridged frames no longer handed to the inet hooks',
    before: node([red({ policies: [denyWebDb] })]),
    desired: node([red()]),
    expected: [
      { op: 'sysctl', netns: VN, key: 'net.bridge.bridge-nf-call-iptables', value: '0' },
      { op: 'nft-table-del', netns: VN, family: 'inet', table: 'tether_policy' },
    ],
  },
  {
    name: 'stale Tether leftovers in the node namespace are deleted, foreign links are not',
    before: node([red()]),
    setup: (k) => {
      k.addLink(NODE_NS, { name: 'tvx555', kind: 'vxlan' });
      k.addLink(NODE_NS, { name: 'tvxfoo' });
      k.addLink(NODE_NS, { name: 'eth7' });
    },
    desired: node([red()]),
    expected: [{ op: 'link-del', netns: NODE_NS, name: 'tvx555' }],
  },
];

describe('planner golden table (desired + observed → exact operations)', () => {
  for (const c of cases)
    it(c.name, async () => {
      const k = fakeNode(['h1']);
      if (c.before) await converge(k, c.before);
      await c.setup?.(k);
      const p = plan(c.desired, await observe(k, c.desired));
      expect(p.ops).toEqual(c.expected);
      // and applying the plan converges: planning again yields nothing
      const r = await applyPlan(k, p.ops);
      expect(r.failures).toEqual([]);
      expect(plan(c.desired, await observe(k, c.desired)).ops).toEqual([]);
    });
});

describe('planner: local breakout', () => {
  it('creates the transit veth, SNAT inside the network namespace, masquerade on the uplink, ip_forward', async () => {
    const transit = allocateTransit([100]).get(100)!;
    const d = node([net('red', 100, { localBreakout: true, breakoutTransit: transit })], {
      breakout: { uplinkIfname: 'up0' },
    });
    const k = fakeNode();
    const p = plan(d, await observe(k, d));
    const pick = (op: string) => p.ops.filter((o) => o.op === op);
    expect(pick('veth-add')).toEqual([
      { op: 'veth-add', netns: NODE_NS, name: 'tbo100', peer: 'tbo0', peerNetns: VN, mtu: 1450 },
    ]);
    expect(pick('route-replace')).toEqual([
      { op: 'route-replace', netns: VN, dst: 'default', via: transit.nodeIp, dev: 'tbo0' },
    ]);
    expect(pick('sysctl')).toEqual([
      { op: 'sysctl', netns: VN, key: 'net.ipv4.ip_forward', value: '1' },
      ...brnfOff(VN),
      { op: 'sysctl', netns: NODE_NS, key: 'net.ipv4.ip_forward', value: '1' },
    ]);
    const tables = pick('nft-table').map((o) => (o.op === 'nft-table' ? o.table : undefined));
    expect(tables.map((t) => `${t?.family} ${t?.name}`)).toEqual([
      'ip tether_nat',
      'ip tether_t1',
      'ip tether_raw_t1',
    ]);
    expect(tables[0]?.chains[0]?.rules).toEqual([
      `oifname "tbo0" snat to ${transit.vnIp} comment "local breakout"`,
    ]);
    expect(tables[1]?.chains[0]?.rules).toEqual([
      'ip saddr @transit oifname "up0" masquerade comment "local breakout"',
    ]);
    expect(tables[1]?.sets).toEqual([{ name: 'transit', type: 'ipv4_addr', elements: [transit.vnIp] }]);
    await applyPlan(k, p.ops);
    expect(plan(d, await observe(k, d)).ops).toEqual([]);
    // turning it off removes the veth, the route, both tables
    const off = node([net('red', 100)], { breakout: { uplinkIfname: 'up0' } });
    const p2 = plan(off, await observe(k, off));
    expect(p2.ops).toEqual([
      { op: 'link-del', netns: VN, name: 'tbo0' },
      { op: 'nft-table-del', netns: VN, family: 'ip', table: 'tether_nat' },
      { op: 'nft-table-del', netns: NODE_NS, family: 'ip', table: 'tether_t1' },
    ]);
  });
});

describe('planner: VXLAN notrack in the node namespace', () => {
  it('raw hooks, before conntrack: the VTEP address and VXLAN port, both directions, nothing else', () => {
    const t = nodeRawTable(
      node([red()], {
        underlay: { ifname: 'ul0', vtepIp: '192.168.0.1', mtu: 1500, netns: NODE_NS, vxlanPort: 8472 },
      }),
    )!;
    expect({ family: t.family, name: t.name, sets: t.sets, counters: t.counters, chains: t.chains }).toEqual({
      family: 'ip',
      name: 'tether_raw_t1',
      sets: [],
      counters: [],
      chains: [
        {
          name: 'prerouting',
          base: { type: 'filter', hook: 'prerouting', priority: -300 },
          rules: ['ip daddr 192.168.0.1 udp dport 8472 notrack comment "VXLAN underlay: not a connection"'],
        },
        {
          name: 'output',
          base: { type: 'filter', hook: 'output', priority: -300 },
          rules: ['ip saddr 192.168.0.1 udp dport 8472 notrack comment "VXLAN underlay: not a connection"'],
        },
      ],
    });
    // No network, no VXLAN: no table (teardown removes it).
    expect(nodeRawTable(node([]))).toBeUndefined();
  });

  it('present with or without breakout; converged → nothing to do; teardown removes it', async () => {
    const k = fakeNode(['h1']);
    await converge(k, node([red()]));
    const tables =
      (await k.readNs(NODE_NS, { nftTables: [{ family: 'ip', name: 'tether_raw_t1' }] }))?.nft ?? [];
    expect(tables.map((t) => t.name)).toEqual(['tether_raw_t1']);
    expect(plan(node([red()]), await observe(k, node([red()]))).ops).toEqual([]);
    await converge(k, node([]));
    const after =
      (await k.readNs(NODE_NS, { nftTables: [{ family: 'ip', name: 'tether_raw_t1' }] }))?.nft ?? [];
    expect(after).toEqual([]);
  });
});

describe('planner: batching', () => {
  it('10,000 remote endpoints become one ip batch and one bridge batch in the network namespace', async () => {
    const remotes = Array.from({ length: 10_000 }, (_, i) => ({
      mac: `02:01:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      ip: `10.1.${Math.floor(i / 250)}.${(i % 250) + 2}`,
      vtep: '192.168.0.2',
      labels: {},
    }));
    const d = node([net('red', 100, { subnets: ['10.1.0.0/16'], remoteEndpoints: remotes })]);
    const k = fakeNode();
    const p = plan(d, await observe(k, d));
    const r = await applyPlan(k, p.ops);
    expect(r.failures).toEqual([]);
    expect(k.log.map((b) => `${b.tool}@${b.netns ?? '-'}:${b.ops.length}`)).toEqual([
      'ip@-:1',
      `ip@${NODE_NS}:1`,
      `ip@${VN}:10005`,
      `bridge@${VN}:20000`,
      `sysctl@${VN}:3`,
      `nft@${NODE_NS}:1`,
    ]);
  });
});

describe('planner: bridge with a foreign MAC', () => {
  it('recreates the bridge and re-attaches its ports and bridge entries', async () => {
    const k = fakeNode(['h1']);
    await converge(k, node([red()]));
    // Someone replaced the bridge with one of another MAC (ports attached to it).
    await k.apply('ip', VN, [{ op: 'link-del', netns: VN, name: 'tbr0' }]);
    await k.apply('ip', VN, [
      { op: 'bridge-add', netns: VN, name: 'tbr0', mtu: 1450, mac: '02:99:99:99:99:99' },
      { op: 'link-set', netns: VN, name: 'tvx100', master: 'tbr0' },
      { op: 'link-set', netns: VN, name: 'h1', master: 'tbr0' },
    ]);
    const d = node([red()]);
    const p = plan(d, await observe(k, d));
    expect(
      p.ops
        .filter((o) => o.op === 'link-set' && o.master === 'tbr0')
        .map((o) => (o.op === 'link-set' ? o.name : '')),
    ).toEqual(['tvx100', 'h1']);
    expect(p.ops).toContainEqual({
      op: 'fdb-replace',
      netns: VN,
      dev: 'tvx100',
      mac: '02:00:00:00:00:0b',
      target: 'master',
    });
    expect((await applyPlan(k, p.ops)).failures).toEqual([]);
    expect(plan(d, await observe(k, d)).ops).toEqual([]);
  });
});
