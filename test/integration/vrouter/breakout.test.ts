import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
import { isRoot, local, network, nodeDesired, Topo, type Workload } from './topo.js';

if (!isRoot)
  console.warn('skipping vRouter local breakout integration tests: they need root (network namespaces)');

describe.skipIf(!isRoot)('vRouter local breakout on the real kernel', () => {
  const topo = new Topo('vb');
  let redW: Workload;
  let blueW: Workload;
  const desired = (breakout = true) => {
    const red = network('red', 410, { breakout });
    red.localEndpoints = [local(redW)];
    const blue = network('blue', 420, { breakout });
    blue.localEndpoints = [local(blueW)];
    return nodeDesired(topo, 'a', [red, blue], true);
  };

  beforeAll(async () => {
    await topo.build({ router: true });
    // Same address in two networks on the same node.
    redW = await topo.addWorkload('a', 'red', '10.1.0.50', '10.1.0.1');
    blueW = await topo.addWorkload('a', 'blue', '10.1.0.50', '10.1.0.1');
    const r = await new VRouter(topo.runner, silentLogger()).sync(desired());
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
  });

  afterAll(async () => {
    await new VRouter(topo.runner, silentLogger()).teardown(desired()).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`]);
    await topo.destroy();
  });

  it('workloads of red and blue with the same address both reach the site router at the same time', async () => {
    const [a, b] = await Promise.all([
      topo.runner.run('ping', ['-c', '10', '-i', '0.1', '-W', '1', topo.siteNet], {
        netns: redW.ns,
        allowFailure: true,
      }),
      topo.runner.run('ping', ['-c', '10', '-i', '0.1', '-W', '1', topo.siteNet], {
        netns: blueW.ns,
        allowFailure: true,
      }),
    ]);
    expect(a.stdout).toMatch(/10 packets transmitted, 10 received/);
    expect(b.stdout).toMatch(/10 packets transmitted, 10 received/);
  });

  it('keeps connection tracking apart per network (one conntrack entry per network, distinct transit sources)', async () => {
    // Inside each network namespace the workload address is translated to that network's own transit address.
    const t = JSON.parse(
      await topo.sh(
        'nft',
        ['-j', 'list', 'table', 'ip', names.vnNatTable],
        names.vnNetns(`${topo.id}a`, 410),
      ),
    ) as { nftables: Record<string, unknown>[] };
    expect(JSON.stringify(t)).toContain('snat');
    const redT = desired().networks[0]!.breakoutTransit!.vnIp;
    const blueT = desired().networks[1]!.breakoutTransit!.vnIp;
    expect(redT).not.toBe(blueT);
  });

  it('turning breakout off removes the path and Tether objects; turning it on restores it', async () => {
    const off = await new VRouter(topo.runner, silentLogger()).sync(desired(false));
    expect(off.ok).toBe(true);
    expect(await topo.ping(redW, topo.siteNet)).toBe(false);
    const nodeLinks = await topo.sh('ip', ['-n', topo.nodeA, '-br', 'link']);
    expect(nodeLinks).not.toMatch(/tbo410/);
    const tables = await topo.sh('nft', ['list', 'tables'], topo.nodeA);
    expect(tables).not.toContain(names.nodeNatTable(`${topo.id}a`));
    const on = await new VRouter(topo.runner, silentLogger()).sync(desired());
    expect(on.ok).toBe(true);
    expect(await topo.ping(redW, topo.siteNet, 2)).toBe(true);
    expect(await topo.ping(blueW, topo.siteNet, 2)).toBe(true);
  });
});
