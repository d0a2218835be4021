import { describe, expect, it } from 'vitest';
import type { FakeKernel } from '../../../src/kernel/fake.js';
import { parseSysctl } from '../../../src/kernel/iproute2.js';
import { renderNftTable } from '../../../src/kernel/render.js';
import type { PolicyKernelFacts } from '../../../src/kernel/types.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { applyPlan } from '../../../src/node/vrouter/applier.js';
import type { DesiredNodeNetwork, DesiredPolicy } from '../../../src/node/vrouter/model.js';
import { observe } from '../../../src/node/vrouter/observe.js';
import { plan, policyTable } from '../../../src/node/vrouter/planner.js';
import { choosePolicyMode, type PolicyMode } from '../../../src/node/vrouter/policy-mode.js';
import { fakeNode, net, node } from './helpers.js';

const VN = 't1-vn100';
const BRNF = 'net.bridge.bridge-nf-call-iptables';
const noRunner = {
  run: async () => {
    throw new Error('the fake kernel runs nothing');
  },
};
const INET: PolicyKernelFacts = { brNetfilter: true, inetConntrack: true, bridgeConntrack: false };
const BRIDGE: PolicyKernelFacts = { brNetfilter: false, inetConntrack: true, bridgeConntrack: true };
const NONE: PolicyKernelFacts = { brNetfilter: false, inetConntrack: true, bridgeConntrack: false };

const web = { id: 'w', hostIfname: 'h1', mac: '02:00:00:00:00:0a', ip: '10.1.0.10', labels: { app: 'web' } };
const db = { id: 'd', mac: '02:00:00:00:00:0b', ip: '10.1.0.11', vtep: '192.168.0.2', labels: { app: 'db' } };

const zeroTrust: DesiredPolicy = {
  name: 'zt',
  defaultAction: 'deny',
  rules: [
    {
      name: 'web-db',
      action: 'allow',
      from: { matchLabels: { app: 'web' } },
      to: { matchLabels: { app: 'db' } },
      ports: [
        { protocol: 'tcp', port: 5432 },
        { protocol: 'tcp', port: 80 },
        { protocol: 'udp', port: 53 },
        { protocol: 'icmp' },
      ],
    },
    { name: 'no-ssh', action: 'deny', from: { matchLabels: {} }, to: { matchLabels: { app: 'db' } } },
  ],
};

const red = (policies: DesiredPolicy[] = [zeroTrust]) =>
  node([net('red', 100, { localEndpoints: [web], remoteEndpoints: [db], policies })]);

async function converge(k: FakeKernel, d: DesiredNodeNetwork): Promise<void> {
  const r = await applyPlan(k, plan(d, await observe(k, d)).ops);
  expect(r.failures).toEqual([]);
}

describe('policy mode: a pure choice from probed kernel facts', () => {
  // Every combination of the three facts.
  const all: PolicyKernelFacts[] = [];
  for (const brNetfilter of [false, true])
    for (const inetConntrack of [false, true])
      for (const bridgeConntrack of [false, true]) all.push({ brNetfilter, inetConntrack, bridgeConntrack });
  for (const f of all) {
    const want: PolicyMode =
      f.brNetfilter && f.inetConntrack
        ? 'inet-br-netfilter'
        : f.bridgeConntrack
          ? 'bridge-conntrack'
          : 'none';
    it(`${JSON.stringify(f)} → ${want}`, () => {
      const c = choosePolicyMode(f);
      expect(c.mode).toBe(want);
      expect(c.facts).toEqual(f);
      expect(c.reason.length).toBeGreaterThan(0);
    });
  }
});

describe('policy table golden (stateful: judged by the connection, not by the packet)', () => {
  const d = red().networks[0]!;
  const endpointRules = [
    'ct original ip saddr @p0r0_from ct original ip daddr @p0r0_to meta l4proto tcp ct original proto-dst { 80, 5432 } counter name "p0r0" accept comment "zt/web-db"',
    'ct original ip saddr @p0r0_from ct original ip daddr @p0r0_to meta l4proto udp ct original proto-dst { 53 } counter name "p0r0" accept comment "zt/web-db"',
    'ct original ip saddr @p0r0_from ct original ip daddr @p0r0_to meta l4proto icmp counter name "p0r0" accept comment "zt/web-db"',
    'ct original ip saddr @p0r1_from ct original ip daddr @p0r1_to counter name "p0r1" drop comment "zt/no-ssh"',
    'counter name "default_deny" drop comment "default deny"',
  ];
  const stateful = [
    'ct state invalid drop comment "not part of a connection"',
    'ct state related accept comment "ICMP errors of tracked connections"',
  ];

  it('inet-br-netfilter: inet forward, breakout passes, then connection state, rules, default deny', () => {
    const t = policyTable(d, 'inet-br-netfilter')!;
    expect(t.family).toBe('inet');
    expect(t.counters).toEqual(['p0r0', 'p0r1', 'default_deny']);
    expect(t.sets).toEqual([
      { name: 'p0r0_from', type: 'ipv4_addr', elements: ['10.1.0.10'] },
      { name: 'p0r0_to', type: 'ipv4_addr', elements: ['10.1.0.11'] },
      { name: 'p0r1_from', type: 'ipv4_addr', elements: ['10.1.0.10', '10.1.0.11'] },
      { name: 'p0r1_to', type: 'ipv4_addr', elements: ['10.1.0.11'] },
    ]);
    expect(t.chains).toEqual([
      {
        name: 'forward',
        base: { type: 'filter', hook: 'forward', priority: 0 },
        rules: [
          'iifname != "tbr0" accept comment "not between endpoints (breakout)"',
          'oifname != "tbr0" accept comment "not between endpoints (breakout)"',
          'meta nfproto != ipv4 accept comment "policy is IPv4"',
          ...stateful,
          ...endpointRules,
        ],
      },
    ]);
  });

  it('bridge-conntrack: bridge forward, IPv4 only, the same stateful rules', () => {
    const t = policyTable(d, 'bridge-conntrack')!;
    expect(t.family).toBe('bridge');
    expect(t.chains[0]?.rules).toEqual([
      'ether type != ip accept comment "policy is IPv4"',
      ...stateful,
      ...endpointRules,
    ]);
    expect(t.fingerprint).not.toBe(policyTable(d, 'inet-br-netfilter')!.fingerprint);
  });

  it('no mode without connection tracking: no table', () => {
    expect(policyTable(d, 'none')).toBeUndefined();
  });

  it('no rule of any shape matches on the packet’s own ports or addresses (the reverse-port trick)', () => {
    const shapes: DesiredPolicy[] = [
      zeroTrust,
      { ...zeroTrust, defaultAction: 'allow' },
      {
        name: 'x',
        defaultAction: 'deny',
        rules: [
          {
            name: 'any-udp',
            action: 'allow',
            from: { matchLabels: {} },
            to: { matchLabels: {} },
            ports: [{ protocol: 'udp' }, { protocol: 'tcp', port: 1 }],
          },
        ],
      },
    ];
    for (const p of shapes)
      for (const mode of ['inet-br-netfilter', 'bridge-conntrack'] as const) {
        const rules = policyTable({ ...d, policies: [p] }, mode)!.chains.flatMap((c) => c.rules);
        for (const r of rules) {
          expect(r).not.toMatch(/\b(sport|dport)\b/);
          expect(r).not.toMatch(/(^|[^l] )ip [sd]addr/);
          if (r.includes('counter name "p'))
            expect(r).toMatch(/^ct original ip saddr @\S+ ct original ip daddr @/);
        }
      }
  });

  it('renders into a file nft accepts the shape of (counters, sets, chain with ct)', () => {
    const text = renderNftTable(policyTable(d, 'inet-br-netfilter')!);
    expect(text.split('\n').slice(0, 3)).toEqual([
      'table inet tether_policy',
      'delete table inet tether_policy',
      'table inet tether_policy {',
    ]);
    expect(text).toContain('    type filter hook forward priority 0; policy accept;');
  });
});

describe('planner with each policy mode', () => {
  it('inet-br-netfilter: bridge-nf-call-iptables=1 only where a network has policies, before its table', async () => {
    const k = fakeNode(['h1'], INET);
    const d = node([
      net('red', 100, { localEndpoints: [web], remoteEndpoints: [db], policies: [zeroTrust] }),
      net('blue', 200),
    ]);
    const p = plan(d, await observe(k, d));
    const sys = p.ops.filter((o) => o.op === 'sysctl');
    // IPv6 and ARP are never judged by policy (it is IPv4): those switches are off everywhere.
    expect(sys).toEqual([
      { op: 'sysctl', netns: VN, key: BRNF, value: '1' },
      { op: 'sysctl', netns: VN, key: 'net.bridge.bridge-nf-call-ip6tables', value: '0' },
      { op: 'sysctl', netns: VN, key: 'net.bridge.bridge-nf-call-arptables', value: '0' },
      { op: 'sysctl', netns: 't1-vn200', key: BRNF, value: '0' },
      { op: 'sysctl', netns: 't1-vn200', key: 'net.bridge.bridge-nf-call-ip6tables', value: '0' },
      { op: 'sysctl', netns: 't1-vn200', key: 'net.bridge.bridge-nf-call-arptables', value: '0' },
    ]);
    const iSys = p.ops.findIndex((o) => o.op === 'sysctl' && o.netns === VN);
    const iTable = p.ops.findIndex((o) => o.op === 'nft-table' && o.netns === VN);
    expect(iSys).toBeLessThan(iTable);
    expect((await applyPlan(k, p.ops)).failures).toEqual([]);
    expect(plan(d, await observe(k, d)).ops).toEqual([]);
  });

  it('upgrade from the stateless bridge table: old table deleted and the inet one created in one transaction', async () => {
    const k = fakeNode(['h1'], INET);
    await converge(k, red([]));
    // What the previous version left: a stateless bridge table with the same name.
    const old = policyTable(red().networks[0]!, 'bridge-conntrack')!;
    const stateless = {
      ...old,
      fingerprint: 'old',
      chains: [{ ...old.chains[0]!, rules: ['ether type ip counter name "default_deny" drop'] }],
    };
    expect((await k.apply('nft', VN, [{ op: 'nft-table', netns: VN, table: stateless }])).failures).toEqual(
      [],
    );
    const d = red();
    const p = plan(d, await observe(k, d));
    k.log.length = 0;
    expect((await applyPlan(k, p.ops)).failures).toEqual([]);
    const nft = k.log.filter((b) => b.tool === 'nft');
    expect(nft).toHaveLength(1);
    expect(
      nft[0]!.ops.map(
        (o) => `${o.op} ${o.op === 'nft-table' ? o.table.family : 'family' in o ? o.family : ''}`,
      ),
    ).toEqual(['nft-table-del bridge', 'nft-table inet']);
    expect(plan(d, await observe(k, d)).ops).toEqual([]);
  });

  it('structure change → one atomic table replacement; membership change → only the sets', async () => {
    const k = fakeNode(['h1'], INET);
    await converge(k, red());
    const more: DesiredPolicy = {
      ...zeroTrust,
      rules: [
        ...zeroTrust.rules,
        { name: 'x', action: 'allow', from: { matchLabels: {} }, to: { matchLabels: {} } },
      ],
    };
    const structure = plan(red([more]), await observe(k, red([more]))).ops;
    expect(structure.map((o) => o.op)).toEqual(['nft-table']);
    const d = node([
      net('red', 100, {
        localEndpoints: [web],
        remoteEndpoints: [db, { ...db, mac: '02:00:00:00:00:0c', ip: '10.1.0.12' }],
        policies: [zeroTrust],
      }),
    ]);
    const membership = plan(d, await observe(k, d)).ops.filter((o) => o.op.startsWith('nft'));
    expect(membership.map((o) => (o.op === 'nft-set' ? `${o.family} ${o.set}` : o.op))).toEqual([
      'inet p0r0_to',
      'inet p0r1_from',
      'inet p0r1_to',
    ]);
  });

  it('bridge-conntrack: bridge table with ct, no br_netfilter switch (the kernel has none)', async () => {
    const k = fakeNode(['h1'], BRIDGE);
    const d = red();
    const p = plan(d, await observe(k, d));
    expect(p.ops.filter((o) => o.op === 'sysctl')).toEqual([]);
    const tables = p.ops.flatMap((o) => (o.op === 'nft-table' ? [`${o.table.family} ${o.table.name}`] : []));
    expect(tables).toEqual(['bridge tether_policy', 'ip tether_raw_t1']);
    expect((await applyPlan(k, p.ops)).failures).toEqual([]);
    expect(plan(d, await observe(k, d)).ops).toEqual([]);
  });

  it('the fake kernel refuses ct in a bridge table without nf_conntrack_bridge, as this kernel does', async () => {
    const k = fakeNode(['h1'], INET);
    await converge(k, red([]));
    const t = policyTable(red().networks[0]!, 'bridge-conntrack')!;
    const r = await k.apply('nft', VN, [{ op: 'nft-table', netns: VN, table: t }]);
    expect(r.failures[0]?.message).toMatch(/Protocol error/);
  });
});

describe('VRouter and the policy mode', () => {
  it('probes once, reports the choice, and reads counters from the chosen family', async () => {
    for (const [facts, family] of [
      [INET, 'inet'],
      [BRIDGE, 'bridge'],
    ] as const) {
      const k = fakeNode(['h1'], facts);
      const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
      const r1 = await vr.sync(red());
      const r2 = await vr.sync(red());
      expect(r1.policy).toEqual(choosePolicyMode(facts));
      expect(r2.policy.mode).toBe(r1.policy.mode);
      k.counterAdd(VN, family, 'tether_policy', 'p0r1', 3);
      expect((await vr.counters(red())).map((c) => `${c.rule}:${c.packets}`)).toEqual([
        'web-db:0',
        'no-ssh:3',
        '(default):0',
      ]);
      expect(k.probes).toBe(1);
    }
  });

  it('a kernel that cannot track bridged connections: policies refused before anything is applied', async () => {
    const k = fakeNode(['h1'], NONE);
    const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
    await expect(vr.sync(red())).rejects.toMatchObject({
      code: 'TETHER_E_PRECONDITION',
      details: { field: 'policies' },
    });
    expect(k.processes).toBe(0);
    // Networks without policies still work there.
    const r = await vr.sync(red([]));
    expect(r.ok).toBe(true);
    expect(r.policy.mode).toBe('none');
  });
});

describe('sysctl output parsing', () => {
  it('keys are matched by name: a missing key does not shift the others', () => {
    const out = 'net.ipv4.ip_forward = 1\n';
    expect(parseSysctl(out, ['net.bridge.bridge-nf-call-iptables', 'net.ipv4.ip_forward'])).toEqual({
      'net.ipv4.ip_forward': '1',
    });
    expect(parseSysctl(`${BRNF} = 0\nnet.ipv4.ip_forward = 1\n`, [BRNF, 'net.ipv4.ip_forward'])).toEqual({
      [BRNF]: '0',
      'net.ipv4.ip_forward': '1',
    });
  });
});
