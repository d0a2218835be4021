/**
 * Floating IPs on the real kernel: two networks whose workloads have the same address, each
 * with its own floating IP, reached from the site router's side; the workload sees the
 * router's real address, and the answer comes back from the floating IP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import { type FipBinding, fipRoutes, fipTable } from '../../../src/node/gateway/model.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
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

  beforeAll(async () => {
    await topo.build({ router: true });
    redW = await topo.addWorkload('a', 'red', '10.1.0.50', '10.1.0.1');
    blueW = await topo.addWorkload('a', 'blue', '10.1.0.50', '10.1.0.1');
    const d = desired();
    const r = await new VRouter(topo.runner, silentLogger()).sync(d);
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    const bindings: FipBinding[] = [
      { name: 'r', address: '203.0.113.5', network: 'red', vni: 510, endpoint: 'r', ip: '10.1.0.50' },
      { name: 'b', address: '203.0.113.6', network: 'blue', vni: 520, endpoint: 'b', ip: '10.1.0.50' },
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
});
