/**
 * Floating IPs whose endpoint is on another node, on the real kernel: node A is the gateway
 * node (uplink to the site router), the workloads run on node B. Two networks whose workloads
 * have the same address, each with its own floating IP. From the site router's side each
 * floating IP reaches its own workload over VXLAN, the workload sees the router's real
 * address, the answers go back through A (not B's own breakout), and the workload's own new
 * flows leave through A with its floating IP as source. Both nodes run GatewayConsumer and
 * the vRouter as `tether node run` composes them (plan from the slice, read-back, apply).
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
import { waitFor } from '../support/proc.js';
import { isRoot, local, network, nodeDesired, remote, Topo, type Workload } from '../vrouter/topo.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>, status?: object): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});

describe.skipIf(!isRoot)('floating IPs whose endpoint is on another node (real kernel)', () => {
  const topo = new Topo('fx');
  let redW: Workload;
  let blueW: Workload;
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipx-'));
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
  let gwA: GatewayConsumer;
  let gwB: GatewayConsumer;
  let dA: DesiredNodeNetwork;
  let dB: DesiredNodeNetwork;
  let retB: FipReturn[] = [];

  const fips = () => [
    obj('FloatingIP', 'r', {
      gateway: 'gw',
      address: '203.0.113.5',
      network: 'red',
      target: { endpoint: 'node-b.r' },
    }),
    obj('FloatingIP', 'b', {
      gateway: 'gw',
      address: '203.0.113.6',
      network: 'blue',
      target: { matchLabels: { app: 'du' } },
    }),
  ];
  const base = () => [
    obj('Gateway', 'gw', {
      site: 's1',
      nodes: ['node-a'],
      localAsn: 65001,
      pool: ['203.0.113.0/28'],
      peers: [{ name: 'rtr', address: topo.routerIp, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
      announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
      gracefulRestartSeconds: 120,
    }),
    obj('Node', 'node-a', { site: 's1' }, { vtep: topo.vtepA }),
    obj('Node', 'node-b', { site: 's1' }, { vtep: topo.vtepB }),
    obj('Endpoint', 'node-b.r', {
      network: 'red',
      node: 'node-b',
      site: 's1',
      mac: redW.mac,
      ip: redW.ip,
      vtep: topo.vtepB,
    }),
    obj('Endpoint', 'node-b.b', {
      network: 'blue',
      node: 'node-b',
      site: 's1',
      mac: blueW.mac,
      ip: blueW.ip,
      vtep: topo.vtepB,
      labels: { app: 'du' },
    }),
  ];

  /** What NodeNetworking does each pass on both nodes: plan from the slice, sync the vRouter. */
  const syncVRouters = async () => {
    const redA = network('red', 610, { breakout: true });
    redA.remoteEndpoints = [remote(redW, topo.vtepB)];
    const blueA = network('blue', 620, { breakout: true });
    blueA.remoteEndpoints = [remote(blueW, topo.vtepB)];
    dA = withFipReturns(nodeDesired(topo, 'a', [redA, blueA], true), 'node-a', 's1', objects).desired;
    const redB = network('red', 610);
    redB.localEndpoints = [local(redW)];
    const blueB = network('blue', 620);
    blueB.localEndpoints = [local(blueW)];
    const planB = withFipReturns(nodeDesired(topo, 'b', [redB, blueB]), 'node-b', 's1', objects);
    dB = planB.desired;
    retB = planB.returns;
    for (const d of [dA, dB]) {
      const r = await new VRouter(topo.runner, silentLogger()).sync(d);
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    }
  };

  const consumer = (node: 'a' | 'b') =>
    new GatewayConsumer({
      node: node === 'a' ? 'node-a' : 'node-b',
      site: 's1',
      vtep: node === 'a' ? topo.vtepA : topo.vtepB,
      stateDir: join(dir, `gateway-${node}`),
      kernel: new IprouteKernel(topo.runner),
      log: silentLogger(),
      nodeNetns: node === 'a' ? topo.nodeA : topo.nodeB,
      network: () => (node === 'a' ? dA : dB),
      localEndpoints: () => (node === 'a' ? [] : objects.filter((o) => o.kind === 'Endpoint')),
      fipReturns: () => (node === 'a' ? [] : retB),
    });

  /** A UDP request from `ns` to `to:port`; the answer (or '' after the retries). */
  const ask = async (ns: string, to: string, port: number, proto: 'UDP' | 'TCP' = 'UDP') => {
    for (let i = 0; i < 30; i++) {
      const r = await topo.runner.run('socat', ['-T1', '-', `${proto}:${to}:${port}`], {
        netns: ns,
        input: 'x\n',
        allowFailure: true,
      });
      if (r.stdout.trim()) return r.stdout.trim();
    }
    return '';
  };
  const listen = (ns: string, spec: string, reply: string) => {
    const c = spawn('ip', ['netns', 'exec', ns, 'socat', spec, `SYSTEM:echo ${reply}`], { stdio: 'ignore' });
    procs.push(c);
  };

  beforeAll(async () => {
    await topo.build({ router: true });
    redW = await topo.addWorkload('b', 'red', '10.1.0.50', '10.1.0.1');
    blueW = await topo.addWorkload('b', 'blue', '10.1.0.50', '10.1.0.1');
    objects = [...base(), ...fips()];
    await syncVRouters();
    // The site router reaches the pool through the gateway node (BGP's job in production,
    // tested in fip.test.ts / node.test.ts).
    await topo.sh('ip', ['-n', topo.router, 'route', 'add', '203.0.113.0/28', 'via', topo.uplinkA]);
    for (const [w, tag] of [
      [redW, 'red'],
      [blueW, 'blue'],
    ] as const) {
      listen(w.ns, 'UDP-LISTEN:7000,fork', `${tag} $SOCAT_PEERADDR`);
      listen(w.ns, 'TCP-LISTEN:7001,fork,reuseaddr', `${tag} $SOCAT_PEERADDR`);
    }
    // On the router's side: who a workload's own new flow comes from.
    listen(topo.router, 'UDP-LISTEN:7100,fork', '$SOCAT_PEERADDR');
    gwA = consumer('a');
    gwB = consumer('b');
  }, 90_000);

  afterAll(async () => {
    await gwA?.bird.stop();
    await gwB?.bird.stop();
    for (const p of procs) p.kill();
    rmSync(dir, { recursive: true, force: true });
    for (const d of [dA, dB])
      if (d) await new VRouter(topo.runner, silentLogger()).teardown(d).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
  });

  it('each floating IP reaches its own network on the other node; the workload sees the real client; replies and its own flows go back through the gateway', async () => {
    await gwA.apply(state).catch(() => undefined); // BIRD has no router to talk to: not needed here
    await gwB.apply(state);
    const st = await gwA.refreshStatus();
    expect(st?.bound.map((b) => `${b.name}:${b.network}:${b.ip}@${b.endpointNode}`)).toEqual([
      'b:blue:10.1.0.50@node-b',
      'r:red:10.1.0.50@node-b',
    ]);
    expect(
      retB.map((r) => `${r.network}:${r.hops.map((h) => h.node)}:${r.workloads.map((w) => w.ip)}`),
    ).toEqual(['red:node-a:10.1.0.50', 'blue:node-a:10.1.0.50']);
    await waitFor(
      'red answers through its floating IP',
      async () => (await ask(topo.router, '203.0.113.5', 7000)) !== '',
      30_000,
    );
    expect(await ask(topo.router, '203.0.113.5', 7000)).toBe(`red ${topo.routerIp}`);
    expect(await ask(topo.router, '203.0.113.6', 7000)).toBe(`blue ${topo.routerIp}`);
    // TCP: the handshake's replies must meet A's conntrack (un-DNAT) or the client resets.
    expect(await ask(topo.router, '203.0.113.5', 7001, 'TCP')).toBe(`red ${topo.routerIp}`);
    expect(await ask(topo.router, '203.0.113.6', 7001, 'TCP')).toBe(`blue ${topo.routerIp}`);
    // The workloads' own flows leave through A, from their floating IPs (B has no breakout).
    expect(await ask(redW.ns, topo.routerIp, 7100)).toBe('203.0.113.5');
    expect(await ask(blueW.ns, topo.routerIp, 7100)).toBe('203.0.113.6');
    // B forwarded them without telling the client to go around it.
    const redB = names.vnNetns(dB.netnsPrefix, 610);
    const sys = await topo.runner.run('sysctl', ['-n', 'net.ipv4.conf.all.send_redirects'], { netns: redB });
    expect(sys.stdout.trim()).toBe('0');
  }, 120_000);

  it('converged: a second pass and a restarted consumer change nothing and duplicate nothing', async () => {
    await syncVRouters();
    expect(
      (await gwA.apply(state).catch(() => ({ changes: ['bird'] }))).changes.filter((c) => !/BIRD/.test(c)),
    ).toEqual([]);
    expect((await gwB.apply(state)).changes).toEqual([]);
    await gwB.stop();
    gwB = consumer('b');
    expect((await gwB.apply(state)).changes).toEqual([]);
    const redB = names.vnNetns(dB.netnsPrefix, 610);
    const rules = await topo.runner.run('ip', ['-n', redB, 'rule', 'show'], {});
    expect(rules.stdout.split('\n').filter((l) => l.includes('fwmark'))).toHaveLength(1);
    const routes = await topo.runner.run(
      'ip',
      ['-n', redB, 'route', 'show', 'table', 'all', 'proto', '183'],
      {},
    );
    expect(routes.stdout.split('\n').filter((l) => l.includes('table'))).toHaveLength(1);
    expect(await ask(topo.router, '203.0.113.5', 7001, 'TCP')).toBe(`red ${topo.routerIp}`);
  }, 90_000);

  it('a rule deleted by hand comes back; removing the red floating IP cleans up exactly, blue keeps working', async () => {
    const redB = names.vnNetns(dB.netnsPrefix, 610);
    const redA = names.vnNetns(dA.netnsPrefix, 610);
    await topo.sh('ip', ['-n', redB, 'rule', 'del', 'priority', '7400']);
    expect((await gwB.apply(state)).changes.join()).toMatch(/rule-add/);
    expect(await ask(topo.router, '203.0.113.5', 7000)).toBe(`red ${topo.routerIp}`);

    objects = [...base(), fips()[1]!];
    await syncVRouters();
    await gwA.apply(state).catch(() => undefined);
    await gwB.apply(state);
    for (const ns of [redA, redB]) {
      const t = await topo.runner.run('nft', ['list', 'tables'], { netns: ns });
      expect(t.stdout).not.toContain('tether_fip');
    }
    const rules = await topo.runner.run('ip', ['-n', redB, 'rule', 'show'], {});
    expect(rules.stdout).not.toContain('fwmark');
    const routes = await topo.runner.run(
      'ip',
      ['-n', redB, 'route', 'show', 'table', 'all', 'proto', '183'],
      {},
    );
    expect(routes.stdout).not.toContain('table');
    const neigh = await topo.runner.run('ip', ['-n', redB, 'neigh', 'show', 'nud', 'permanent'], {});
    expect(neigh.stdout).not.toContain('169.254.116.');
    const sys = await topo.runner.run('sysctl', ['-n', 'net.ipv4.conf.all.send_redirects'], { netns: redB });
    expect(sys.stdout.trim()).toBe('1');
    const nodeRoutes = await topo.runner.run('ip', ['-n', topo.nodeA, 'route', 'show', 'proto', '183'], {});
    expect(nodeRoutes.stdout).not.toContain('203.0.113.5');
    expect(await ask(topo.router, '203.0.113.6', 7000)).toBe(`blue ${topo.routerIp}`);
    expect(await ask(blueW.ns, topo.routerIp, 7100)).toBe('203.0.113.6');
    // send_redirects is planned state: what an interrupted removal leaves (redirects still
    // off, nothing left in the record) is restored by a later pass of a restarted consumer.
    await gwB.apply(state);
    await topo.sh('sysctl', ['-q', '-w', 'net.ipv4.conf.all.send_redirects=0'], redB);
    await gwB.stop();
    gwB = consumer('b');
    expect((await gwB.apply(state)).changes.join()).toMatch(/send_redirects=1/);
    const back = await topo.runner.run('sysctl', ['-n', 'net.ipv4.conf.all.send_redirects'], { netns: redB });
    expect(back.stdout.trim()).toBe('1');
  }, 90_000);
});
