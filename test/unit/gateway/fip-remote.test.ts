/**
 * Cross-node floating IPs as pure plans: which endpoint a gateway node maps a floating IP to,
 * which return path an endpoint's node needs, the tables and policy routing it gets, and that
 * the plan converges on the fake kernel and removes exactly what it made.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FloatingIPSpec, GatewaySpec } from '../../../src/api/gateway-kinds.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { tableFor } from '../../../src/cli/kinds.js';
import { GatewayReports } from '../../../src/controller/gateways.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { planFip } from '../../../src/node/gateway/consumer.js';
import {
  desiredGateway,
  FIP_SYSCTLS,
  FIP_TABLE,
  fipBridgeTable,
  fipMacFor,
  fipReturnFor,
  fipSysctls,
  fipTable,
  gatewayHops,
  outboundHop,
  selectEndpoint,
  withFipReturns,
} from '../../../src/node/gateway/model.js';
import { type DesiredNodeNetwork, gatewayMacFor } from '../../../src/node/vrouter/model.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>, status?: object): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});
const gateway = (nodes?: string[]) =>
  obj('Gateway', 'gw', {
    site: 's1',
    ...(nodes ? { nodes } : {}),
    localAsn: 65001,
    pool: ['203.0.113.0/28'],
    peers: [{ name: 'rtr', address: '10.0.0.1', asn: 65000 }],
    announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
    gracefulRestartSeconds: 120,
  });
const node = (name: string, vtep: string, site = 's1') => obj('Node', name, { site }, { vtep });
const ep = (name: string, n: string, ip: string, labels: Record<string, string> = {}, site = 's1') =>
  obj('Endpoint', name, {
    network: 'red',
    node: n,
    site,
    mac: '02:00:00:00:00:01',
    ip,
    vtep: '0.0.0.0',
    labels,
  });
const fip = (name: string, address: string, target: FloatingIPSpec['target']) =>
  obj('FloatingIP', name, { gateway: 'gw', address, network: 'red', target });
const spec = (o: TetherObject) => o.spec as unknown as FloatingIPSpec;
const gws = (o: TetherObject) => o.spec as unknown as GatewaySpec;
const nets = [{ name: 'red', vni: 510, subnets: ['10.1.0.0/24'], breakout: false }];

describe('selectEndpoint', () => {
  const eps = [ep('w-b', 'e1', '10.1.0.6', { app: 'du' }), ep('w-a', 'e1', '10.1.0.5', { app: 'du' })];
  it('a gateway node takes its own matching endpoint, else the first by name in the site', () => {
    const g = gws(gateway(['g1', 'g2']));
    const f = spec(fip('f', '203.0.113.5', { matchLabels: { app: 'du' } }));
    expect(selectEndpoint(f, g, eps, 'g1')?.metadata.name).toBe('w-a');
    const own = [...eps, ep('w-z', 'g1', '10.1.0.9', { app: 'du' })];
    expect(selectEndpoint(f, g, own, 'g1')?.metadata.name).toBe('w-z');
    // Another site's endpoint of the same network is never a target.
    expect(selectEndpoint(f, g, [ep('w-x', 'e9', '10.1.0.7', { app: 'du' }, 's2')], 'g1')).toBeUndefined();
  });
  it('without a node list (every node a gateway) only a local endpoint is taken', () => {
    const f = spec(fip('f', '203.0.113.5', { endpoint: 'w-a' }));
    expect(selectEndpoint(f, gws(gateway()), eps, 'g1')).toBeUndefined();
    expect(selectEndpoint(f, gws(gateway()), eps, 'e1')?.metadata.name).toBe('w-a');
  });
  it('desiredGateway binds the remote endpoint and says where it is', () => {
    const d = desiredGateway({
      node: 'g1',
      vtep: '192.0.2.1',
      gateway: gateway(['g1']),
      floatingIps: [fip('f', '203.0.113.5', { endpoint: 'w-a' })],
      endpoints: eps,
      vniOf: () => 510,
    });
    expect(d.bindings).toEqual([
      expect.objectContaining({
        address: '203.0.113.5',
        ip: '10.1.0.5',
        endpoint: 'w-a',
        endpointNode: 'e1',
      }),
    ]);
    expect(d.bird.announce).toEqual(['203.0.113.5/32']);
  });
});

describe('the return path (fipReturnFor)', () => {
  const base = [
    gateway(['g1', 'g2']),
    node('g1', '192.0.2.1'),
    node('g2', '192.0.2.2'),
    node('e1', '192.0.2.3'),
  ];
  it('an endpoint node knows both gateways; its own flows take the first-ranked', () => {
    const objects = [...base, ep('w-a', 'e1', '10.1.0.5'), fip('f', '203.0.113.5', { endpoint: 'w-a' })];
    const [r, ...rest] = fipReturnFor({ node: 'e1', site: 's1', objects, networks: nets });
    expect(rest).toEqual([]);
    expect(r!.hops.map((h) => [h.node, h.mac, h.nextHop, h.mark.toString(16), h.table])).toEqual([
      ['g1', fipMacFor('192.0.2.1'), '169.254.116.1', '74670001', 746701],
      ['g2', fipMacFor('192.0.2.2'), '169.254.116.2', '74670002', 746702],
    ]);
    expect(r!.workloads).toEqual([{ ip: '10.1.0.5', outbound: r!.hops[0], via: r!.hops }]);
    // The vRouter gets each gateway's next hop as a remote entry; nothing else changes.
    const d = {
      node: 'e1',
      netnsPrefix: 't',
      underlay: { ifname: 'ul0', vtepIp: '192.0.2.3', mtu: 1500 },
      networks: [
        {
          name: 'red',
          vni: 510,
          subnets: ['10.1.0.0/24'],
          gateway: '10.1.0.1',
          gatewayMac: gatewayMacFor(510),
          localBreakout: false,
          localEndpoints: [],
          remoteEndpoints: [],
          policies: [],
        },
      ],
    } satisfies DesiredNodeNetwork;
    const w = withFipReturns(d, 'e1', 's1', objects);
    expect(w.desired.networks[0]!.remoteEndpoints.map((e) => `${e.ip}>${e.mac}@${e.vtep}`)).toEqual([
      `169.254.116.1>${fipMacFor('192.0.2.1')}@192.0.2.1`,
      `169.254.116.2>${fipMacFor('192.0.2.2')}@192.0.2.2`,
    ]);
    expect(d.networks[0]!.remoteEndpoints).toEqual([]);
  });
  it('a gateway node that hosts the endpoint serves the other gateway, and its own flows use its own breakout', () => {
    const objects = [...base, ep('w-a', 'g2', '10.1.0.5'), fip('f', '203.0.113.5', { endpoint: 'w-a' })];
    const [r] = fipReturnFor({
      node: 'g2',
      site: 's1',
      objects,
      networks: [{ ...nets[0]!, breakout: true }],
    });
    expect(r!.hops.map((h) => h.node)).toEqual(['g1']);
    expect(r!.workloads).toEqual([{ ip: '10.1.0.5' }]);
    expect(fipReturnFor({ node: 'g1', site: 's1', objects, networks: nets })).toEqual([]);
  });
  it('no return path without a node list, without a floating IP, or for an unknown gateway VTEP', () => {
    const objs = [ep('w-a', 'e1', '10.1.0.5'), fip('f', '203.0.113.5', { endpoint: 'w-a' })];
    expect(fipReturnFor({ node: 'e1', site: 's1', objects: [gateway(), ...objs], networks: nets })).toEqual(
      [],
    );
    expect(fipReturnFor({ node: 'e1', site: 's1', objects: [...base, objs[0]!], networks: nets })).toEqual(
      [],
    );
    expect(gatewayHops(gateway(['g1']), [node('g1', 'not-an-ip')])).toEqual([]);
  });
  it('tables: the gateway marks only what leaves for another node; the endpoint node marks by gateway MAC', () => {
    const objects = [...base, ep('w-a', 'e1', '10.1.0.5'), fip('f', '203.0.113.5', { endpoint: 'w-a' })];
    const [r] = fipReturnFor({ node: 'e1', site: 's1', objects, networks: nets });
    const gwT = fipTable(
      [
        {
          name: 'f',
          address: '203.0.113.5',
          network: 'red',
          vni: 510,
          endpoint: 'w-a',
          ip: '10.1.0.5',
          endpointNode: 'e1',
        },
        {
          name: 'l',
          address: '203.0.113.6',
          network: 'red',
          vni: 510,
          endpoint: 'w-l',
          ip: '10.1.0.6',
          endpointNode: 'g1',
        },
      ],
      { node: 'g1' },
    )!;
    expect(gwT.chains[0]!.rules).toEqual([
      'iifname "tbo0" ip daddr { 203.0.113.5 } meta mark set 0x74670000',
    ]);
    const eT = fipTable([], { node: 'e1', ret: r })!;
    expect(eT.chains.map((c) => c.name)).toEqual(['steer']);
    expect(eT.chains[0]!.rules).toEqual([
      `iifname "tbr0" ct state new ether saddr ${r!.hops[0]!.mac} ct mark set 0x74670001`,
      `iifname "tbr0" ct state new ether saddr ${r!.hops[1]!.mac} ct mark set 0x74670002`,
      'iifname "tbr0" ct state new ip saddr { 10.1.0.5 } ip daddr != { 10.1.0.0/24 } ct mark set 0x74670001',
      'iifname "tbr0" ip saddr { 10.1.0.5 } meta mark set ct mark',
    ]);
    const b = fipBridgeTable({ vni: 510, gatewayMac: gatewayMacFor(510), ret: r! })!;
    expect(b.chains.map((c) => c.name)).toEqual(['prerouting']);
    expect(fipBridgeTable({ vni: 510, gatewayMac: gatewayMacFor(510) })).toBeUndefined();
  });
  it('fuzz: never throws, independent of input order, every hop and workload is of the site', () => {
    const name = fc.constantFrom<string>('g1', 'g2', 'e1', 'e2', 'x');
    const arb = fc.record({
      nodes: fc.option(fc.uniqueArray(name, { maxLength: 2 }), { nil: undefined }),
      eps: fc.array(
        fc.record({
          n: name,
          ip: fc.ipV4(),
          app: fc.constantFrom('du', 'cu', ''),
          site: fc.constantFrom('s1', 's2'),
        }),
        { maxLength: 6 },
      ),
      fips: fc.array(
        fc.record({
          target: fc.oneof(
            fc.record({ endpoint: fc.constantFrom('ep0', 'ep1', 'ep2', 'nope') }),
            fc.record({
              matchLabels: fc.constantFrom<Record<string, string>>({ app: 'du' }, {}, { app: 'zz' }),
            }),
          ),
        }),
        { maxLength: 4 },
      ),
      self: name,
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(arb, (a) => {
        const objects: TetherObject[] = [
          gateway(a.nodes),
          node('g1', '192.0.2.1'),
          node('g2', '192.0.2.2'),
          ...a.eps.map((e, i) => ep(`ep${i}`, e.n, e.ip, e.app ? { app: e.app } : {}, e.site)),
          ...a.fips.map((f, i) => fip(`f${i}`, `203.0.113.${i + 1}`, f.target)),
        ];
        const args = { node: a.self, site: 's1', networks: nets };
        const one = fipReturnFor({ ...args, objects });
        const shuffled = [...objects].sort(
          (x, y) => ((x.metadata.name.length * a.seed) % 7) - ((y.metadata.name.length * a.seed) % 7),
        );
        expect(fipReturnFor({ ...args, objects: shuffled })).toEqual(one);
        for (const r of one) {
          expect(r.hops.every((h) => h.node !== a.self && a.nodes?.includes(h.node))).toBe(true);
          const mine = a.eps.filter((e) => e.n === a.self && e.site === 's1').map((e) => e.ip);
          expect(r.workloads.every((w) => mine.includes(w.ip))).toBe(true);
          expect(() => fipTable([], { node: a.self, ret: r })).not.toThrow();
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('planFip with a return path, on the fake kernel', () => {
  it('converges (a second plan is empty) and removal deletes exactly what it made', async () => {
    const k = new FakeKernel();
    await k.apply('ip', undefined, [{ op: 'netns-add', name: 'tvn-vn510' }]);
    await k.apply('ip', 'tvn-vn510', [
      { op: 'bridge-add', netns: 'tvn-vn510', name: 'tbr0', mtu: 1450, mac: gatewayMacFor(510) },
    ]);
    // Someone else's rule and table route in the same namespace are never touched.
    await k.apply('ip', 'tvn-vn510', [
      { op: 'rule-add', netns: 'tvn-vn510', priority: 100, fwmark: 7, table: 77 },
      { op: 'route-replace', netns: 'tvn-vn510', dst: 'default', dev: 'tbr0', table: 77 },
    ]);
    const network = {
      netnsPrefix: 'tvn',
      networks: [{ name: 'red', vni: 510, gatewayMac: gatewayMacFor(510), subnets: ['10.1.0.0/24'] }],
    } as unknown as DesiredNodeNetwork;
    const objects = [
      gateway(['g1']),
      node('g1', '192.0.2.1'),
      ep('w-a', 'e1', '10.1.0.5'),
      fip('f', '203.0.113.5', { endpoint: 'w-a' }),
    ];
    const returns = fipReturnFor({ node: 'e1', site: 's1', objects, networks: nets });
    const read = async () =>
      new Map([
        [
          510,
          await k.readNs('tvn-vn510', {
            nftTables: [
              { family: 'ip', name: FIP_TABLE },
              { family: 'bridge', name: FIP_TABLE },
            ],
            rules: true,
            sysctls: FIP_SYSCTLS.map((s) => s.key),
          }),
        ],
      ]);
    const apply = async (p: ReturnType<typeof planFip>) => {
      for (const t of p.nft) expect((await k.apply('nft', t.netns, t.ops)).failures).toEqual([]);
      for (const t of p.vnIp) expect((await k.apply('ip', t.netns, t.ops)).failures).toEqual([]);
      for (const t of p.vnSysctl) expect((await k.apply('sysctl', t.netns, t.ops)).failures).toEqual([]);
    };
    const plan = async (rets: typeof returns, owned: string[]) =>
      planFip({
        bindings: [],
        network,
        nodeNetns: undefined,
        node: 'e1',
        vtep: '192.0.2.3',
        returns: rets,
        vnState: await read(),
        nodeRoutes: [],
        owned,
      });
    const p = await plan(returns, []);
    expect(p.owned).toEqual(['nft:tvn-vn510']);
    await apply(p);
    const ns = (await read()).get(510)!;
    expect(ns.rules).toEqual(expect.arrayContaining([{ priority: 7400, fwmark: 0x74670001, table: 746701 }]));
    expect(ns.sysctl['net.ipv4.conf.all.send_redirects']).toBe('0');
    const again = await plan(returns, p.owned);
    expect([again.nft, again.vnIp, again.vnSysctl]).toEqual([[], [], []]);
    // Removed: tables, rule, route gone, redirects back on, the foreign rule and route kept.
    await apply(await plan([], p.owned));
    const gone = (await read()).get(510)!;
    expect(gone.nft).toEqual([]);
    expect(gone.rules).toEqual([{ priority: 100, fwmark: 7, table: 77 }]);
    expect(gone.tableRoutes).toEqual([{ dst: 'default', dev: 'tbr0', table: 77 }]);
    expect(gone.sysctl['net.ipv4.conf.all.send_redirects']).toBe('1');
  });
});

describe('the outbound mark follows the active gateway (planFip input `active`)', () => {
  const objects = [
    gateway(['g1', 'g2']),
    node('g1', '192.0.2.1'),
    node('g2', '192.0.2.2'),
    node('e1', '192.0.2.3'),
    ep('w-a', 'e1', '10.1.0.5'),
    fip('f', '203.0.113.5', { endpoint: 'w-a' }),
  ];
  const [ret] = fipReturnFor({ node: 'e1', site: 's1', objects, networks: nets });
  const outboundRule = (active: string | undefined) =>
    fipTable([], { node: 'e1', ret, active })!.chains[0]!.rules.find((r) => r.includes('ip daddr !='));
  it('takes the active gateway among those targeting the workload, else the first-ranked', () => {
    const w = ret!.workloads[0]!;
    expect(outboundHop(w, undefined)?.node).toBe('g1');
    expect(outboundHop(w, 'g2')?.node).toBe('g2');
    expect(outboundHop(w, 'g1')?.node).toBe('g1');
    // A node that is not one of this workload's gateways (or this node itself): the fallback.
    expect(outboundHop(w, 'e1')?.node).toBe('g1');
    expect(outboundHop(w, 'nobody')?.node).toBe('g1');
    expect(outboundRule(undefined)).toContain('ct mark set 0x74670001');
    expect(outboundRule('g2')).toContain('ct mark set 0x74670002');
    // Only the mark of new flows moves: what arrived from a gateway keeps that gateway's mark,
    // and every packet still copies its connection's mark (replies go back the way they came).
    const rules = (a: string | undefined) => fipTable([], { node: 'e1', ret, active: a })!.chains[0]!.rules;
    expect(rules('g2').filter((r) => r !== outboundRule('g2'))).toEqual(
      rules(undefined).filter((r) => r !== outboundRule(undefined)),
    );
    expect(rules('g2').every((r) => !r.includes('ct mark set') || r.includes('ct state new'))).toBe(true);
  });
  it('a workload this node serves itself (it binds the floating IP) has no outbound mark whoever is active', () => {
    const [own] = fipReturnFor({
      node: 'g1',
      site: 's1',
      objects: [
        ...objects.slice(0, 4),
        ep('w-b', 'g1', '10.1.0.6'),
        fip('f', '203.0.113.5', { endpoint: 'w-b' }),
      ],
      networks: [{ ...nets[0]!, breakout: true }],
    });
    expect(own?.workloads.map((w) => [w.ip, w.outbound, w.via])).toEqual([
      ['10.1.0.6', undefined, undefined],
    ]);
    expect(fipTable([], { node: 'g1', ret: own, active: 'g2' })!.chains[0]!.rules.join()).not.toContain(
      'ip daddr !=',
    );
  });
  it('planFip against the fake kernel: a change of active replaces the table once, then converges', async () => {
    const k = new FakeKernel();
    await k.apply('ip', undefined, [{ op: 'netns-add', name: 'tvn-vn510' }]);
    await k.apply('ip', 'tvn-vn510', [
      { op: 'bridge-add', netns: 'tvn-vn510', name: 'tbr0', mtu: 1450, mac: gatewayMacFor(510) },
    ]);
    const network = {
      netnsPrefix: 'tvn',
      networks: [{ name: 'red', vni: 510, gatewayMac: gatewayMacFor(510), subnets: ['10.1.0.0/24'] }],
    } as unknown as DesiredNodeNetwork;
    const read = async () =>
      new Map([
        [
          510,
          await k.readNs('tvn-vn510', {
            nftTables: [
              { family: 'ip', name: FIP_TABLE },
              { family: 'bridge', name: FIP_TABLE },
            ],
            rules: true,
            sysctls: FIP_SYSCTLS.map((s) => s.key),
          }),
        ],
      ]);
    let owned: string[] = [];
    const pass = async (active: string | undefined) => {
      const p = planFip({
        bindings: [],
        network,
        nodeNetns: undefined,
        node: 'e1',
        vtep: '192.0.2.3',
        returns: [ret!],
        active,
        vnState: await read(),
        nodeRoutes: [],
        owned,
      });
      for (const t of p.nft) expect((await k.apply('nft', t.netns, t.ops)).failures).toEqual([]);
      for (const t of p.vnIp) expect((await k.apply('ip', t.netns, t.ops)).failures).toEqual([]);
      for (const t of p.vnSysctl) expect((await k.apply('sysctl', t.netns, t.ops)).failures).toEqual([]);
      owned = p.owned;
      return p;
    };
    await pass(undefined);
    expect((await pass(undefined)).nft).toEqual([]);
    const moved = await pass('g2');
    expect(moved.nft.flatMap((t) => t.ops.map((o) => o.op))).toEqual(['nft-table']);
    // The rules and tables of both gateways stay: only the table's mark of new flows moved.
    expect(moved.vnIp).toEqual([]);
    expect((await pass('g2')).nft).toEqual([]);
    expect((await pass(undefined)).nft.length).toBe(1);
  });
});

describe('send_redirects is planned state: restored on any pass after removal', () => {
  it('a namespace left with redirects off (the removal pass interrupted) is restored by a later pass', async () => {
    const k = new FakeKernel();
    await k.apply('ip', undefined, [{ op: 'netns-add', name: 'tvn-vn510' }]);
    await k.apply('ip', 'tvn-vn510', [
      { op: 'bridge-add', netns: 'tvn-vn510', name: 'tbr0', mtu: 1450, mac: gatewayMacFor(510) },
    ]);
    // What a crash after the table removal and before the sysctl write leaves.
    await k.apply('sysctl', 'tvn-vn510', [
      { op: 'sysctl', netns: 'tvn-vn510', key: 'net.ipv4.conf.all.send_redirects', value: '0' },
      { op: 'sysctl', netns: 'tvn-vn510', key: 'net.ipv4.conf.tbr0.send_redirects', value: '0' },
    ]);
    const network = {
      netnsPrefix: 'tvn',
      networks: [{ name: 'red', vni: 510, gatewayMac: gatewayMacFor(510), subnets: ['10.1.0.0/24'] }],
    } as unknown as DesiredNodeNetwork;
    const plan = async (owned: string[]) =>
      planFip({
        bindings: [],
        network,
        nodeNetns: undefined,
        returns: [],
        vnState: new Map([
          [510, await k.readNs('tvn-vn510', { rules: true, sysctls: FIP_SYSCTLS.map((s) => s.key) })],
        ]),
        nodeRoutes: [],
        owned,
      });
    // Whatever the record says (a restart may have lost it), the desired value is planned.
    for (const owned of [[], ['nft:tvn-vn510']]) {
      const p = await plan(owned);
      expect(p.vnSysctl.flatMap((t) => t.ops)).toEqual([
        { op: 'sysctl', netns: 'tvn-vn510', key: 'net.ipv4.conf.all.send_redirects', value: '1' },
        { op: 'sysctl', netns: 'tvn-vn510', key: 'net.ipv4.conf.tbr0.send_redirects', value: '1' },
      ]);
      // The namespace stays in the record until its redirects are back, so the consumer keeps
      // reading it back across restarts until then.
      expect(p.owned).toEqual(['nft:tvn-vn510']);
    }
    const p = await plan([]);
    for (const t of p.vnSysctl) expect((await k.apply('sysctl', t.netns, t.ops)).failures).toEqual([]);
    const done = await plan(p.owned);
    expect([done.vnSysctl, done.owned]).toEqual([[], []]);
    // Forwarding has no restore value: it is never turned off.
    expect(fipSysctls(false).map((x) => x.key)).not.toContain('net.ipv4.ip_forward');
    expect(fipSysctls(true)).toContainEqual({ key: 'net.ipv4.ip_forward', value: '1' });
  });
});

describe('FloatingIP.status.bound names the endpoint node, a claim checked against the site', () => {
  it('keeps a node of the site, drops any other', () => {
    const store = [
      gateway(['g1']),
      fip('f', '203.0.113.5', { endpoint: 'w-a' }),
      node('e1', '1.1.1.1'),
      node('x9', '1.1.1.2', 's2'),
    ];
    const reports = new GatewayReports((k, n) => store.find((o) => o.kind === k && o.metadata.name === n));
    const report = (bound: string[]) => ({
      gateway: 'gw',
      role: 'active',
      running: true,
      config_hash: '',
      error: '',
      peers: [],
      bound,
      announced: 1,
    });
    expect(reports.accept('g1', 's1', report(['f=203.0.113.5>10.1.0.5@e1']))).toBeUndefined();
    expect(reports.decorate(store[1]!).status?.bound).toEqual({
      node: 'g1',
      ip: '10.1.0.5',
      endpointNode: 'e1',
    });
    // `tether get fips`: the BOUND column names the endpoint's node when it is another.
    expect(tableFor('FloatingIP', [reports.decorate(store[1]!)]).rows[0]).toContain('g1:10.1.0.5@e1');
    reports.accept('g1', 's1', report(['f=203.0.113.5>10.1.0.5@x9']));
    expect(reports.decorate(store[1]!).status?.bound).toEqual({ node: 'g1', ip: '10.1.0.5' });
  });
});
