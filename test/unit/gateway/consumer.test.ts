import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { GatewayReport__Output } from '../../../src/api/gen/tether/v1/GatewayReport.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { tableFor } from '../../../src/cli/kinds.js';
import { GatewayReports } from '../../../src/controller/gateways.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import type { NsState } from '../../../src/kernel/types.js';
import { gatewayFor, gatewayStatus, planFip, toReport } from '../../../src/node/gateway/consumer.js';
import { FIP_TABLE, type FipBinding } from '../../../src/node/gateway/model.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
});
const gw = obj('Gateway', 'gw1', {
  site: 's1',
  localAsn: 65001,
  pool: ['203.0.113.0/28'],
  peers: [{ name: 'rtr', address: '10.0.0.1', asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
  announce: { prefixes: ['198.51.100.0/24'], floatingIps: true, acceptDefaultRoute: false },
  gracefulRestartSeconds: 120,
});
const network = {
  netnsPrefix: 'tvn',
  networks: [
    { name: 'red', vni: 510, breakoutTransit: { nodeIp: '169.254.0.1', vnIp: '169.254.0.2' } },
    { name: 'blue', vni: 520, breakoutTransit: { nodeIp: '169.254.0.5', vnIp: '169.254.0.6' } },
  ],
} as unknown as DesiredNodeNetwork;
const empty = (): NsState => ({ links: [], routes: [], neighs: [], fdb: [], nft: [], sysctl: {} });
const red: FipBinding = {
  name: 'r',
  address: '203.0.113.5',
  network: 'red',
  vni: 510,
  endpoint: 'e',
  ip: '10.1.0.50',
  endpointNode: 'n1',
};

describe('gatewayFor', () => {
  it("picks the node's site's Gateway, honouring its node list", () => {
    const other = obj('Gateway', 'gw0', { ...gw.spec, site: 's2' });
    const listed = obj('Gateway', 'gw2', { ...gw.spec, nodes: ['n9'] });
    expect(gatewayFor('n1', 's1', [other, listed, gw])?.metadata.name).toBe('gw1');
    expect(gatewayFor('n9', 's1', [other, listed])?.metadata.name).toBe('gw2');
    expect(gatewayFor('n1', 's1', [other, listed])).toBeUndefined();
  });
});

describe('planFip', () => {
  it('first pass: a table in the bound network, a /32 into it; nothing for a network without bindings', () => {
    const p = planFip({
      bindings: [red],
      network,
      nodeNetns: undefined,
      vnState: new Map([
        [510, empty()],
        [520, empty()],
      ]),
      nodeRoutes: [],
      owned: [],
    });
    expect(p.nft.map((n) => [n.netns, n.ops[0]!.op])).toEqual([['tvn-vn510', 'nft-table']]);
    expect(p.routes).toEqual([
      { op: 'route-replace', netns: undefined, dst: '203.0.113.5/32', via: '169.254.0.2', dev: 'tbo510' },
    ]);
    expect(p.owned).toEqual(['203.0.113.5/32', 'nft:tvn-vn510']);
  });

  it('converged: no ops; a removed binding deletes its table and only the routes it owned', () => {
    const first = planFip({
      bindings: [red],
      network,
      nodeNetns: undefined,
      vnState: new Map([[510, empty()]]),
      nodeRoutes: [],
      owned: [],
    });
    const table = (first.nft[0]!.ops[0] as { table: { fingerprint: string } }).table;
    const vn: NsState = {
      ...empty(),
      nft: [{ family: 'ip', name: FIP_TABLE, fingerprint: table.fingerprint, sets: {}, counters: {} }],
    };
    const routes = [
      { dst: '203.0.113.5/32', via: '169.254.0.2', dev: 'tbo510' },
      { dst: '10.1.0.0/24', via: '169.254.0.2', dev: 'tbo510' }, // the vRouter's, not ours
    ];
    const same = planFip({
      bindings: [red],
      network,
      nodeNetns: undefined,
      vnState: new Map([[510, vn]]),
      nodeRoutes: routes,
      owned: first.owned,
    });
    expect(same.nft).toEqual([]);
    expect(same.routes).toEqual([]);
    const gone = planFip({
      bindings: [],
      network,
      nodeNetns: undefined,
      vnState: new Map([[510, vn]]),
      nodeRoutes: routes,
      owned: first.owned,
    });
    expect(gone.nft[0]!.ops).toEqual([
      { op: 'nft-table-del', netns: 'tvn-vn510', family: 'ip', table: FIP_TABLE },
    ]);
    expect(gone.routes).toEqual([
      { op: 'route-del', netns: undefined, dst: '203.0.113.5/32', via: '169.254.0.2', dev: 'tbo510' },
    ]);
    expect(gone.owned).toEqual([]);
  });

  it('applied to the fake kernel, a second plan is empty (restartable, nothing duplicated)', async () => {
    const k = new FakeKernel();
    for (const ns of ['tvn-vn510', 'tvn-vn520'])
      await k.apply('ip', undefined, [{ op: 'netns-add', name: ns }]);
    await k.apply('ip', undefined, [
      { op: 'veth-add', netns: undefined, name: 'tbo510', peer: 'tbo0', peerNetns: 'tvn-vn510', mtu: 1500 },
    ]);
    await k.apply('ip', undefined, [{ op: 'link-set', netns: undefined, name: 'tbo510', up: true }]);
    const read = async () => ({
      vn: new Map([
        [510, await k.readNs('tvn-vn510', { nftTables: [{ family: 'ip', name: FIP_TABLE }] })],
        [520, await k.readNs('tvn-vn520', { nftTables: [{ family: 'ip', name: FIP_TABLE }] })],
      ]),
      routes: (await k.readNs(undefined))!.routes,
    });
    let r = await read();
    const p = planFip({
      bindings: [red],
      network,
      nodeNetns: undefined,
      vnState: r.vn,
      nodeRoutes: r.routes,
      owned: [],
    });
    for (const t of p.nft) expect((await k.apply('nft', t.netns, t.ops)).failures).toEqual([]);
    expect((await k.apply('ip', undefined, p.routes)).failures).toEqual([]);
    r = await read();
    const again = planFip({
      bindings: [red],
      network,
      nodeNetns: undefined,
      vnState: r.vn,
      nodeRoutes: r.routes,
      owned: p.owned,
    });
    expect(again.nft).toEqual([]);
    expect(again.routes).toEqual([]);
  });
});

describe('gatewayStatus and the report', () => {
  it('peers by name with BIRD counts; a peer BIRD does not know is Idle; error carried', () => {
    const s = gatewayStatus({
      gateway: gw,
      role: 'active',
      bird: {
        running: true,
        restarts: 1,
        configHash: 'abc',
        peers: [
          { protocol: 'tp_rtr', proto: 'up', bgpState: 'Established', since: 't', imported: 2, exported: 3 },
        ],
      },
      desired: {
        bird: { announce: ['198.51.100.0/24', '203.0.113.5/32'] } as never,
        bindings: [red],
        unbound: [],
      },
      error: 'BIRD refused the configuration: x',
      now: 0,
    });
    expect(s.peers.rtr).toMatchObject({
      bgpState: 'Established',
      imported: 2,
      exported: 3,
      address: '10.0.0.1',
    });
    expect(s.announced).toBe(2);
    expect(s.error).toMatch(/refused/);
    const r = toReport(s);
    expect(r.bound).toEqual(['r=203.0.113.5>10.1.0.50@n1']);
    expect(r.peers?.[0]).toMatchObject({ name: 'rtr', bgp_state: 'Established', exported: 3 });
  });
});

describe('GatewayReports (controller)', () => {
  const fip = obj('FloatingIP', 'r', {
    gateway: 'gw1',
    address: '203.0.113.5',
    network: 'red',
    target: { endpoint: 'e' },
  });
  const store = new Map([
    ['Gateway/gw1', gw],
    ['FloatingIP/r', fip],
  ]);
  const get = (k: string, n: string) => store.get(`${k}/${n}`);
  const report = (over: Partial<GatewayReport__Output> = {}): GatewayReport__Output => ({
    gateway: 'gw1',
    role: 'active',
    running: true,
    config_hash: 'abc',
    error: '',
    peers: [
      {
        name: 'rtr',
        state: 'up',
        bgp_state: 'Established',
        imported: 2,
        exported: 3,
        since: 't',
        last_error: '',
      },
    ],
    bound: ['r=203.0.113.5>10.1.0.50@n1'],
    announced: 2,
    ...over,
  });

  it("keeps a node's report on its own site's Gateway and shows it in Gateway and FloatingIP status", () => {
    const g = new GatewayReports(get);
    expect(g.accept('n1', 's1', report(), 0)).toBeUndefined();
    const st = g.decorate(gw).status as { nodes: Record<string, { peers: Record<string, unknown> }> };
    expect(st.nodes.n1!.peers.rtr).toMatchObject({ state: 'Established', imported: 2, exported: 3 });
    expect(g.decorate(fip).status).toEqual({ bound: { node: 'n1', ip: '10.1.0.50' } });
  });

  it('`tether get gateways` shows peer state, prefixes sent and received, and errors from the reports', () => {
    const g = new GatewayReports(get);
    g.accept('n1', 's1', report({ error: 'BIRD refused the configuration: x' }), 0);
    const t = tableFor('Gateway', [g.decorate(gw)]);
    const row = Object.fromEntries(t.headers.map((h, i) => [h, t.rows[0]![i]]));
    expect(row).toMatchObject({ state: 'n1/rtr=Established', sent: '3', received: '2' });
    expect(row.error).toMatch(/n1: BIRD refused/);
    const f = tableFor('FloatingIP', [g.decorate(fip)]);
    expect(f.rows[0]).toContain('n1:10.1.0.50');
  });

  it('refuses another site, unknown peers, floating IPs at a wrong address or of another gateway', () => {
    const g = new GatewayReports(get);
    expect(g.accept('n2', 's2', report(), 0)).toMatch(/not site s2/);
    expect(g.decorate(gw)).toBe(gw);
    g.accept(
      'n1',
      's1',
      report({
        peers: [
          {
            name: 'evil',
            state: 'up',
            bgp_state: 'Established',
            imported: 1,
            exported: 1,
            since: '',
            last_error: '',
          },
        ],
        bound: ['r=203.0.113.9>10.1.0.50', 'x=203.0.113.5>10.1.0.50', 'garbage'],
      }),
      0,
    );
    const st = g.decorate(gw).status as {
      nodes: Record<string, { peers: Record<string, unknown>; bound: number }>;
    };
    expect(st.nodes.n1!.peers).toEqual({});
    expect(st.nodes.n1!.bound).toBe(0);
    expect(g.decorate(fip)).toBe(fip);
  });

  it('takes a role only from a gateway node the Gateway lists; shows it in the ROLE column', () => {
    const ha = obj('Gateway', 'gw2', { ...(gw.spec as Record<string, unknown>), nodes: ['n1', 'n2'] });
    const g = new GatewayReports((k, n) => (k === 'Gateway' && n === 'gw2' ? ha : get(k, n)));
    expect(g.accept('n1', 's1', report({ gateway: 'gw2', role: 'active', bound: [] }), 0)).toBeUndefined();
    expect(g.accept('n2', 's1', report({ gateway: 'gw2', role: 'standby', bound: [] }), 0)).toBeUndefined();
    // n3 is of the same site but not a gateway node: its claim to be active is dropped.
    expect(g.accept('n3', 's1', report({ gateway: 'gw2', role: 'active', bound: [] }), 0)).toMatch(
      /n3 is not a gateway node of Gateway "gw2"/,
    );
    expect(g.accept('n2', 's1', report({ gateway: 'gw2', role: 'boss', bound: [] }), 0)).toMatch(
      /neither active nor standby/,
    );
    g.accept('n2', 's1', report({ gateway: 'gw2', role: 'standby', bound: [] }), 0);
    const st = g.decorate(ha).status as { nodes: Record<string, { role: string }> };
    expect(Object.keys(st.nodes).sort()).toEqual(['n1', 'n2']);
    expect(st.nodes.n2!.role).toBe('standby');
    const t = tableFor('Gateway', [g.decorate(ha)]);
    const row = Object.fromEntries(t.headers.map((h, i) => [h, t.rows[0]![i]]));
    expect(row.role).toBe('n1=active n2=standby');
  });

  it('never throws and stays bounded on arbitrary reports (fuzz)', () => {
    const g = new GatewayReports(get);
    const peer = fc.record({
      name: fc.oneof(fc.constant('rtr'), fc.string()),
      state: fc.string({ maxLength: 2000 }),
      bgp_state: fc.string({ maxLength: 2000 }),
      imported: fc.oneof(fc.integer(), fc.double()),
      exported: fc.oneof(fc.integer(), fc.double()),
      since: fc.string(),
      last_error: fc.string({ maxLength: 2000 }),
    });
    fc.assert(
      fc.property(
        fc.record({
          gateway: fc.oneof(fc.constant('gw1'), fc.string()),
          role: fc.string(),
          running: fc.boolean(),
          config_hash: fc.string({ maxLength: 2000 }),
          error: fc.string({ maxLength: 2000 }),
          peers: fc.array(peer, { maxLength: 40 }),
          bound: fc.array(fc.oneof(fc.string(), fc.constant('r=203.0.113.5>10.1.0.50')), { maxLength: 50 }),
          announced: fc.oneof(fc.integer(), fc.double()),
        }),
        (r) => {
          g.accept('n1', 's1', r as GatewayReport__Output, 0);
          const st = (g.decorate(gw).status ?? {}) as {
            nodes?: Record<
              string,
              { peers: Record<string, { state: string; imported: number }>; error?: string }
            >;
          };
          for (const n of Object.values(st.nodes ?? {})) {
            expect((n.error ?? '').length).toBeLessThanOrEqual(256);
            for (const p of Object.values(n.peers)) {
              expect(p.state.length).toBeLessThanOrEqual(256);
              expect(Number.isInteger(p.imported) && p.imported >= 0).toBe(true);
            }
          }
        },
      ),
    );
  });
});
