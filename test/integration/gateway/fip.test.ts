/**
 * Floating IPs on the real kernel: two networks whose workloads have the same address, each
 * with its own floating IP, reached from the site router's side; the workload sees the
 * router's real address, and the answer comes back from the floating IP.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { BirdClient } from '../../../src/bgp/birdc.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { type FipBinding, fipRoutes, fipTable } from '../../../src/node/gateway/model.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
import { waitFor } from '../support/proc.js';
import { isRoot, local, network, nodeDesired, Topo, type Workload } from '../vrouter/topo.js';

describe.skipIf(!isRoot)('floating IPs on the real kernel', () => {
  const topo = new Topo('fp');
  let redW: Workload;
  let blueW: Workload;
  const desired = () => {
    const red = network('red', 510, { breakout: true });
    red.localEndpoints = [local(redW)];
    const blue = network('blue', 520, { breakout: true });
    blue.localEndpoints = [local(blueW)];
    return nodeDesired(topo, 'a', [red, blue], true);
  };
  const servers: Array<{ kill: () => void }> = [];
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipgw-'));
  let gw: GatewayConsumer | undefined;
  let routerBird: ChildProcess | undefined;
  let rc: BirdClient | undefined;

  beforeAll(async () => {
    await topo.build({ router: true });
    redW = await topo.addWorkload('a', 'red', '10.1.0.50', '10.1.0.1');
    blueW = await topo.addWorkload('a', 'blue', '10.1.0.50', '10.1.0.1');
    const d = desired();
    const r = await new VRouter(topo.runner, silentLogger()).sync(d);
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    const bindings: FipBinding[] = [
      {
        name: 'r',
        address: '203.0.113.5',
        network: 'red',
        vni: 510,
        endpoint: 'r',
        ip: '10.1.0.50',
        endpointNode: 'node-a',
      },
      {
        name: 'b',
        address: '203.0.113.6',
        network: 'blue',
        vni: 520,
        endpoint: 'b',
        ip: '10.1.0.50',
        endpointNode: 'node-a',
      },
    ];
    const kernel = new IprouteKernel(topo.runner);
    for (const net of d.networks) {
      const t = fipTable(bindings.filter((b) => b.vni === net.vni))!;
      const res = await kernel.apply('nft', names.vnNetns(d.netnsPrefix, net.vni), [
        {
          op: 'nft-table',
          netns: names.vnNetns(d.netnsPrefix, net.vni),
          table: { ...t, fingerprint: 'fip' },
        },
      ]);
      expect(res.failures).toEqual([]);
    }
    const transit = new Map(d.networks.map((n) => [n.vni, n.breakoutTransit!.vnIp]));
    const routes = fipRoutes(bindings, (v) => transit.get(v), topo.nodeA);
    expect((await kernel.apply('ip', topo.nodeA, routes)).failures).toEqual([]);
    // The site router reaches the pool through the node (BGP's job in production).
    await topo.sh('ip', ['-n', topo.router, 'route', 'add', '203.0.113.0/28', 'via', topo.uplinkA]);
    for (const [w, tag] of [
      [redW, 'red'],
      [blueW, 'blue'],
    ] as const) {
      const { spawn } = await import('node:child_process');
      const c = spawn(
        'ip',
        ['netns', 'exec', w.ns, 'socat', 'UDP-LISTEN:7000,fork', `SYSTEM:echo ${tag} $SOCAT_PEERADDR`],
        { stdio: 'ignore' },
      );
      servers.push(c);
    }
  }, 60_000);

  afterAll(async () => {
    await gw?.bird.stop();
    rc?.close();
    routerBird?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    for (const s of servers) s.kill();
    await new VRouter(topo.runner, silentLogger()).teardown(desired()).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`]);
    await topo.destroy();
  });

  it('each floating IP reaches its own network; the workload sees the real client; replies come from the floating IP', async () => {
    const ask = async (fip: string) => {
      for (let i = 0; i < 50; i++) {
        const r = await topo.runner.run('socat', ['-T1', '-', `UDP:${fip}:7000,sourceport=4${i % 10}00`], {
          netns: topo.router,
          input: 'x\n',
          allowFailure: true,
        });
        if (r.stdout.trim()) return r.stdout.trim();
      }
      return '';
    };
    expect(await ask('203.0.113.5')).toBe(`red ${topo.routerIp}`);
    expect(await ask('203.0.113.6')).toBe(`blue ${topo.routerIp}`);
  }, 60_000);

  it('the same through the gateway consumer: planned against the kernel, announced over BGP, converged, removed', async () => {
    const d = desired();
    const obj = (kind: string, name: string, spec: Record<string, unknown>): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind,
      metadata: { name },
      spec,
    });
    const fips = [
      obj('FloatingIP', 'r', {
        gateway: 'gw',
        address: '203.0.113.5',
        network: 'red',
        target: { endpoint: 'r' },
      }),
      obj('FloatingIP', 'b', {
        gateway: 'gw',
        address: '203.0.113.6',
        network: 'blue',
        target: { endpoint: 'b' },
      }),
    ];
    const base = [
      obj('Gateway', 'gw', {
        site: 's1',
        localAsn: 65001,
        pool: ['203.0.113.0/28'],
        peers: [{ name: 'rtr', address: topo.routerIp, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
        announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
        gracefulRestartSeconds: 120,
      }),
    ];
    let objects = [...base, ...fips];
    const state: DurableState = {
      revision: 1,
      snapshotRevision: 1,
      list: () => objects,
      get: (k, n) => objects.find((o) => o.kind === k && o.metadata.name === n),
      applyDelta: () => {},
      replace: () => ({ swept: 0 }),
    };
    writeFileSync(
      join(dir, 'router.conf'),
      `router id ${topo.routerIp};
protocol device {}
protocol bgp from_tether {
  local ${topo.routerIp} as 65000; neighbor ${topo.uplinkA} as 65001; hold time 9; keepalive time 3;
  ipv4 { import all; export none; };
}
`,
    );
    routerBird = spawn(
      'ip',
      [
        'netns',
        'exec',
        topo.router,
        'bird',
        '-f',
        '-c',
        join(dir, 'router.conf'),
        '-s',
        join(dir, 'router.ctl'),
      ],
      { stdio: 'ignore' },
    );
    rc = new BirdClient(join(dir, 'router.ctl'));
    await waitFor('router BIRD', () =>
      rc!.open().then(
        () => true,
        () => false,
      ),
    );
    const learned = async () =>
      (await rc!.command('show route protocol from_tether')).lines
        .filter((l) => l.code === 1007)
        .map((l) => l.text.split(/\s+/)[0]!)
        .filter((p) => p.includes('/'))
        .sort();
    const ep = (name: string, network: string) =>
      obj('Endpoint', name, { network, node: d.node, ip: '10.1.0.50' });
    gw = new GatewayConsumer({
      node: d.node,
      site: 's1',
      vtep: topo.uplinkA,
      stateDir: join(dir, 'gateway'),
      kernel: new IprouteKernel(topo.runner),
      log: silentLogger(),
      nodeNetns: topo.nodeA,
      network: () => d,
      localEndpoints: () => [ep('r', 'red'), ep('b', 'blue')],
    });
    await gw.apply(state);
    await waitFor(
      'router learned both floating IPs',
      async () => (await learned()).join() === '203.0.113.5/32,203.0.113.6/32',
      30_000,
    );
    const st = (await gw.refreshStatus())!;
    expect(st.bound.map((b) => `${b.name}:${b.network}:${b.ip}`)).toEqual([
      'b:blue:10.1.0.50',
      'r:red:10.1.0.50',
    ]);
    // Read back and converged: a second pass changes nothing.
    expect((await gw.apply(state)).changes).toEqual([]);
    const ask = async (fip: string) => {
      for (let i = 0; i < 30; i++) {
        const r = await topo.runner.run('socat', ['-T1', '-', `UDP:${fip}:7000,sourceport=5${i % 10}00`], {
          netns: topo.router,
          input: 'x\n',
          allowFailure: true,
        });
        if (r.stdout.trim()) return r.stdout.trim();
      }
      return '';
    };
    expect(await ask('203.0.113.5')).toBe(`red ${topo.routerIp}`);
    // Someone deletes the table by hand: the next pass puts it back (drift).
    const redNs = names.vnNetns(d.netnsPrefix, 510);
    await topo.sh('ip', ['netns', 'exec', redNs, 'nft', 'delete', 'table', 'ip', 'tether_fip']);
    expect((await gw.apply(state)).changes.join()).toMatch(/nft-table tether_fip/);
    expect(await ask('203.0.113.5')).toBe(`red ${topo.routerIp}`);
    // The red floating IP deleted: withdrawn, its table and route gone, blue untouched.
    objects = [...base, fips[1]!];
    await gw.apply(state);
    await waitFor('withdrawn', async () => (await learned()).join() === '203.0.113.6/32', 30_000);
    const nft = await topo.runner.run('nft', ['list', 'tables'], { netns: redNs });
    expect(nft.stdout).not.toContain('tether_fip');
    const routes = await topo.runner.run('ip', ['-n', topo.nodeA, 'route', 'show', 'proto', '183']);
    expect(routes.stdout).not.toContain('203.0.113.5');
    expect(routes.stdout).toContain('203.0.113.6');
    expect(await ask('203.0.113.6')).toBe(`blue ${topo.routerIp}`);
  }, 90_000);
});
