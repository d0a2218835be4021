/**
 * A cross-node floating IP with two gateway nodes, on the real kernel: gateway nodes A and C
 * (each with its own uplink to the site router), the workload on node B. The router first
 * routes the floating IP to A, then (a failover, done here by replacing the router's route)
 * to C. Each flow's replies go back through the gateway it came in by (B marks the
 * connection by the gateway's MAC), with nothing installed at the failover and no centre.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { type FipReturn, withFipReturns } from '../../../src/node/gateway/model.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, names } from '../../../src/node/vrouter/model.js';
import {
  isRoot,
  local,
  network,
  nodeDesired,
  remote,
  Topo,
  UNDERLAY_MTU,
  type Workload,
} from '../vrouter/topo.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>, status?: object): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});

describe.skipIf(!isRoot)('a cross-node floating IP with two gateway nodes (real kernel)', () => {
  const topo = new Topo('fh');
  const nodeC = `${topo.id}-nodeC`;
  const vtepC = '192.168.78.3';
  const routerIpC = '10.98.0.1';
  const uplinkC = '10.98.0.2';
  let w: Workload;
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipha-'));
  const procs: ChildProcess[] = [];
  let objects: TetherObject[] = [];
  const state: DurableState = {
    revision: 1,
    snapshotRevision: 1,
    list: () => objects,
    get: (k, n) => objects.find((o) => o.kind === k && o.metadata.name === n),
    applyDelta: () => {},
    replace: () => ({ swept: 0 }),
  };
  const desired: Record<'a' | 'b' | 'c', DesiredNodeNetwork | undefined> = {
    a: undefined,
    b: undefined,
    c: undefined,
  };
  let retB: FipReturn[] = [];
  const consumers: GatewayConsumer[] = [];

  const ask = async (port: number, proto: 'UDP' | 'TCP') => {
    for (let i = 0; i < 30; i++) {
      const r = await topo.runner.run('socat', ['-T1', '-', `${proto}:203.0.113.5:${port}`], {
        netns: topo.router,
        input: 'x\n',
        allowFailure: true,
      });
      if (r.stdout.trim()) return r.stdout.trim();
    }
    return '';
  };

  beforeAll(async () => {
    await topo.build({ router: true });
    // Node C: underlay to A (routed to B through A), its own uplink to the router.
    await topo.addNs(nodeC);
    const sh = (ns: string, ...args: string[]) => topo.sh('ip', ['-n', ns, ...args]);
    await sh(
      topo.nodeA,
      'link',
      'add',
      'ul1',
      'mtu',
      String(UNDERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'ul0',
      'netns',
      nodeC,
    );
    await sh(topo.nodeA, 'addr', 'add', '192.168.78.1/24', 'dev', 'ul1');
    await sh(topo.nodeA, 'link', 'set', 'ul1', 'up');
    await sh(nodeC, 'addr', 'add', `${vtepC}/24`, 'dev', 'ul0');
    await sh(nodeC, 'link', 'set', 'ul0', 'up');
    await sh(nodeC, 'route', 'add', '192.168.77.0/24', 'via', '192.168.78.1');
    await sh(topo.nodeB, 'route', 'add', '192.168.78.0/24', 'via', topo.vtepA);
    await topo.sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], topo.nodeA);
    await sh(nodeC, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'dn1', 'netns', topo.router);
    await sh(nodeC, 'addr', 'add', `${uplinkC}/24`, 'dev', 'up0');
    await sh(nodeC, 'link', 'set', 'up0', 'up');
    await sh(topo.router, 'addr', 'add', `${routerIpC}/24`, 'dev', 'dn1');
    await sh(topo.router, 'link', 'set', 'dn1', 'up');
    await sh(topo.router, 'route', 'add', '203.0.113.5/32', 'via', topo.uplinkA);

    w = await topo.addWorkload('b', 'red', '10.1.0.50', '10.1.0.1');
    objects = [
      obj('Gateway', 'gw', {
        site: 's1',
        nodes: ['node-a', 'node-c'],
        localAsn: 65001,
        pool: ['203.0.113.0/28'],
        peers: [{ name: 'rtr', address: topo.routerIp, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
        announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
        gracefulRestartSeconds: 120,
      }),
      obj('Node', 'node-a', { site: 's1' }, { vtep: topo.vtepA }),
      obj('Node', 'node-b', { site: 's1' }, { vtep: topo.vtepB }),
      obj('Node', 'node-c', { site: 's1' }, { vtep: vtepC }),
      obj('Endpoint', 'node-b.r', {
        network: 'red',
        node: 'node-b',
        site: 's1',
        mac: w.mac,
        ip: w.ip,
        vtep: topo.vtepB,
      }),
      obj('FloatingIP', 'r', {
        gateway: 'gw',
        address: '203.0.113.5',
        network: 'red',
        target: { endpoint: 'node-b.r' },
      }),
    ];
    const redGw = () => {
      const n = network('red', 710, { breakout: true });
      n.remoteEndpoints = [remote(w, topo.vtepB)];
      return n;
    };
    desired.a = withFipReturns(nodeDesired(topo, 'a', [redGw()], true), 'node-a', 's1', objects).desired;
    const c: DesiredNodeNetwork = {
      node: 'node-c',
      netnsPrefix: `${topo.id}c`,
      underlay: { ifname: 'ul0', vtepIp: vtepC, mtu: UNDERLAY_MTU, netns: nodeC },
      breakout: { uplinkIfname: 'up0' },
      networks: [redGw()],
    };
    desired.c = withFipReturns(c, 'node-c', 's1', objects).desired;
    const redB = network('red', 710);
    redB.localEndpoints = [local(w)];
    const planB = withFipReturns(nodeDesired(topo, 'b', [redB]), 'node-b', 's1', objects);
    desired.b = planB.desired;
    retB = planB.returns;
    for (const d of Object.values(desired)) {
      const r = await new VRouter(topo.runner, silentLogger()).sync(d!);
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    }
    for (const [n, ns, vtep] of [
      ['a', topo.nodeA, topo.vtepA],
      ['b', topo.nodeB, topo.vtepB],
      ['c', nodeC, vtepC],
    ] as const)
      consumers.push(
        new GatewayConsumer({
          node: `node-${n}`,
          site: 's1',
          vtep,
          stateDir: join(dir, `gateway-${n}`),
          kernel: new IprouteKernel(topo.runner),
          log: silentLogger(),
          nodeNetns: ns,
          network: () => desired[n],
          localEndpoints: () => (n === 'b' ? objects.filter((o) => o.kind === 'Endpoint') : []),
          fipReturns: () => (n === 'b' ? retB : []),
        }),
      );
    for (const g of consumers) await g.apply(state).catch(() => undefined); // BIRD has no router here
    for (const spec of ['UDP-LISTEN:7000,fork', 'TCP-LISTEN:7001,fork,reuseaddr']) {
      const c = spawn('ip', ['netns', 'exec', w.ns, 'socat', spec, 'SYSTEM:echo $SOCAT_PEERADDR'], {
        stdio: 'ignore',
      });
      procs.push(c);
    }
  }, 120_000);

  afterAll(async () => {
    for (const g of consumers) await g.bird.stop();
    for (const p of procs) p.kill();
    rmSync(dir, { recursive: true, force: true });
    for (const d of Object.values(desired))
      if (d) await new VRouter(topo.runner, silentLogger()).teardown(d).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`, `${topo.id}c`]);
    await topo.destroy();
  });

  it('flows through either gateway reach the workload with the real client address, and their replies return through that gateway', async () => {
    expect(retB[0]?.hops.map((h) => h.node)).toEqual(['node-a', 'node-c']);
    expect(await ask(7001, 'TCP')).toBe(topo.routerIp);
    expect(await ask(7000, 'UDP')).toBe(topo.routerIp);
    // Failover: the router now sends the floating IP to C. Nothing is installed anywhere.
    await topo.sh('ip', ['-n', topo.router, 'route', 'replace', '203.0.113.5/32', 'via', uplinkC]);
    // A TCP handshake only completes when its SYN-ACK meets C's conntrack (un-DNAT): a reply
    // sent to A would be a SYN-ACK A never saw the SYN of (invalid, never NATed).
    expect(await ask(7001, 'TCP')).toBe(routerIpC);
    expect(await ask(7000, 'UDP')).toBe(routerIpC);
    const ct = await topo.runner.run('cat', ['/proc/net/nf_conntrack'], {
      netns: names.vnNetns(desired.b!.netnsPrefix, 710),
    });
    const marks = (src: string) =>
      new Set(
        ct.stdout
          .split('\n')
          .filter((l) => l.includes(`src=${src} `) && l.includes('dport=7001'))
          .map((l) => /mark=(\d+)/.exec(l)?.[1]),
      );
    expect(marks(topo.routerIp)).toEqual(new Set([String(0x74670001)]));
    expect(marks(routerIpC)).toEqual(new Set([String(0x74670002)]));
  }, 120_000);
});
