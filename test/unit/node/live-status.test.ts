import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import type { NodeStatusFile } from '../../../src/node/agent/daemon.js';
import { EventRing } from '../../../src/node/control-api.js';
import { eventFromLogLine, liveStatus } from '../../../src/node/live-status.js';
import { noShellDrops } from '../../../src/node/proxy/shell-relay.js';

const noShells = { open: 0, dropped: noShellDrops() };

const ep = (name: string, node: string, ip: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network: 'red', node, ip, mac: '02:00:00:00:00:01' },
});

const agent: NodeStatusFile = {
  pid: 1,
  node: 'n1',
  site: 's1',
  controller: 'c:7443',
  controllers: ['c:7443'],
  startedAt: 't0',
  updatedAt: 't1',
  session: {
    phase: 'connected',
    since: 't0',
    revision: 7,
    reconnects: 2,
    certNotAfter: 'x',
    upstream: 'proxy 10.0.0.2:7444',
  },
  cache: { revision: 7, snapshotRevision: 5, objects: 3 },
  certNotAfter: 'x',
  health: { ok: true, state: 'ok', reasons: [] },
  reconcile: { passes: 4 },
} as NodeStatusFile;

describe('live status', () => {
  it('labels endpoints by origin with the desired-state precedence and counts them per network', () => {
    const vn: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'VirtualNetwork',
      metadata: { name: 'red' },
      spec: {},
      status: { vni: 4096 },
    };
    const s = liveStatus({
      agent,
      proxy: {
        active: false,
        leader: { node: 'n2', address: '10.0.0.2:7444' },
        revision: 0,
        agents: 0,
        siteLocal: 0,
        shells: noShells,
      },
      slice: [vn, ep('n1.a', 'n1', '10.1.0.2'), ep('n2.b', 'n2', '10.1.0.3')],
      siteLocal: [ep('n2.b', 'n2', '10.1.0.3'), ep('n3.c', 'n3', '10.1.0.4')],
      local: [ep('n1.a', 'n1', '10.1.0.2')],
      counters: {},
    });
    expect(s.endpoints.map((e) => [e.name, e.origin])).toEqual([
      ['n1.a', 'local'],
      ['n2.b', 'slice'],
      ['n3.c', 'site-local'],
    ]);
    expect(s.networks).toEqual([{ name: 'red', vni: 4096, localEndpoints: 1, remoteEndpoints: 2 }]);
    expect(s.proxy).toEqual({ role: 'standby', activeNode: 'n2', shells: noShells });
    expect(s.session.upstream).toEqual({ kind: 'proxy', address: '10.0.0.2:7444' });
  });

  it('says "off" without a proxy role', () => {
    const s = liveStatus({ agent, proxy: undefined, slice: [], siteLocal: [], local: [], counters: {} });
    expect(s.proxy.role).toBe('off');
    expect(s.proxy.shells).toBeUndefined();
  });

  it('keeps warnings, errors and event lines in the ring, nothing else, and never throws on junk', () => {
    const ring = new EventRing(10);
    eventFromLogLine(ring, '{"level":30,"msg":"routine"}\n');
    eventFromLogLine(ring, '{"level":30,"event":"drift_repaired","msg":"fixed","changes":2}\n');
    eventFromLogLine(ring, '{"level":50,"msg":"boom","err":"x"}\n');
    for (const junk of ['', '{', '"level":50 not json', `{"level":40,"msg":"${'x'.repeat(20000)}"}`])
      eventFromLogLine(ring, junk);
    const evs = ring.since(0).events;
    expect(evs.map((e) => e.type)).toEqual(['drift_repaired', 'error']);
    expect(evs[0]!.fields).toEqual({ changes: 2 });
  });
});

describe('live status: WAN RTT and peer VTEPs', () => {
  const rtt = (srttMs: number) => ({
    srttMs,
    lastRttMs: srttMs,
    offsetMs: 12,
    offsetErrorMs: 3,
    samples: 4,
    at: 't',
  });
  const base = { slice: [], siteLocal: [], local: [], counters: {} };
  it('takes the WAN RTT from the own session to the controller, or the active proxy WAN session, never a neighbour proxy', () => {
    const direct = { ...agent, session: { ...agent.session, upstream: 'controller c:7443', rtt: rtt(80) } };
    expect(liveStatus({ ...base, agent: direct, proxy: undefined }).wan).toEqual({
      via: 'session',
      rtt: rtt(80),
    });
    const viaNeighbour = { ...agent, session: { ...agent.session, rtt: rtt(1) } };
    const s = liveStatus({
      ...base,
      agent: viaNeighbour,
      proxy: { active: false, revision: 0, agents: 0, siteLocal: 0, shells: noShells },
    });
    expect(s.wan).toBeUndefined();
    expect(s.session.rtt?.srttMs).toBe(1);
    const active = liveStatus({
      ...base,
      agent: viaNeighbour,
      proxy: {
        active: true,
        revision: 0,
        agents: 2,
        siteLocal: 0,
        shells: noShells,
        wan: { up: true, since: 't', revision: 3, reconnects: 0, rtt: rtt(95) },
      },
    });
    expect(active.wan).toEqual({ via: 'proxy', rtt: rtt(95) });
    expect(active.proxy.wan?.rtt?.srttMs).toBe(95);
  });

  it('lists each peer VTEP once with its node, site and networks, not its own', () => {
    const node = (name: string, site: string, vtep: string): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Node',
      metadata: { name },
      spec: { site },
      status: { vtep },
    });
    const remote = (id: string, vtep: string) => ({
      id,
      mac: '02:00:00:00:00:09',
      ip: '10.1.0.9',
      vtep,
      labels: {},
    });
    const net = (name: string, vni: number, remotes: ReturnType<typeof remote>[]) => ({
      name,
      vni,
      subnets: ['10.1.0.0/24'],
      gateway: '10.1.0.1',
      gatewayMac: '02:00:00:00:00:01',
      localBreakout: false,
      localEndpoints: [],
      remoteEndpoints: remotes,
      policies: [],
    });
    const s = liveStatus({
      ...base,
      agent,
      proxy: undefined,
      slice: [node('s2n1', 's2', '10.202.0.11')],
      planned: {
        node: 'n1',
        netnsPrefix: 't1',
        underlay: { ifname: 'lan0', vtepIp: '10.201.0.11', mtu: 1500 },
        networks: [
          net('red', 100, [
            remote('s2n1.w1', '10.202.0.11'),
            remote('s1n2.w1', '10.201.0.12'),
            remote('n1.x', '10.201.0.11'),
          ]),
          net('blue', 200, [remote('s2n1.w2', '10.202.0.11')]),
        ],
      },
    });
    expect(s.vtep).toEqual({
      ip: '10.201.0.11',
      ifname: 'lan0',
      mtu: 1500,
      vxlanPort: 4789,
      peers: [
        { vtep: '10.201.0.12', node: 's1n2', networks: ['red'] },
        { vtep: '10.202.0.11', node: 's2n1', site: 's2', networks: ['blue', 'red'] },
      ],
    });
  });

  it("reports the proxy's relayed shells and its dropped shell frames", () => {
    const dropped = { bad: 1, notOwner: 2, notAttached: 0, notAllowed: 3 };
    const s = liveStatus({
      agent,
      proxy: { active: true, revision: 0, agents: 2, siteLocal: 0, shells: { open: 1, dropped } },
      slice: [],
      siteLocal: [],
      local: [],
      counters: {},
    });
    expect(s.proxy).toMatchObject({ role: 'active', agents: 2, shells: { open: 1, dropped } });
  });
});
