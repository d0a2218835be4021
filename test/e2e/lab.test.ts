// The whole deployment in one machine's namespaces (src/lab): a real controller, a WAN
// router, two site routers, one `tether node run` per site and CNI-attached workloads in
// `red` and `blue` (both 10.1.0.0/24). Cross-site forwarding, isolation of overlapping
// addresses, endpoint withdrawal, local breakout, policy, restart without loss and the WAN cut.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allNodes, defaultLabStateDir, Lab, listNetns } from '../../src/lab/index.js';
import { waitFor } from '../integration/support/proc.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test/e2e/lab.test.ts: skipped (needs root for network namespaces)');

const name = `e${randomBytes(2).toString('hex')}`;
const stateDir = defaultLabStateDir(name);
let lab: Lab;

const ownedByLab = (ns: string) => ns.startsWith(`${name}-`) || ns.startsWith(`${name}_`);

/** ICMP echo requests a namespace's stack has received (Icmp InEchos in /proc/net/snmp). */
async function echoRequestsIn(ns: string): Promise<number> {
  const snmp = (await lab.exec(ns, 'cat', ['/proc/net/snmp'])).stdout
    .split('\n')
    .filter((l) => l.startsWith('Icmp:'));
  const keys = snmp[0]?.split(/\s+/) ?? [];
  const values = snmp[1]?.split(/\s+/) ?? [];
  return Number(values[keys.indexOf('InEchos')]);
}

/** Kernel objects of a vRouter namespace, normalised for comparison. */
async function kernelObjects(
  ns: string,
): Promise<{ links: string[]; fdb: string[]; neigh: string[]; nft: string[] }> {
  const links = JSON.parse((await lab.sh('ip', ['-n', ns, '-j', 'link', 'show'])).stdout) as Array<{
    ifname: string;
    master?: string;
  }>;
  const fdb = JSON.parse((await lab.sh('bridge', ['-n', ns, '-j', 'fdb', 'show'])).stdout) as Array<{
    mac: string;
    ifname?: string;
    dst?: string;
    state?: string;
    flags?: string[];
  }>;
  const neigh = JSON.parse(
    (await lab.sh('ip', ['-n', ns, '-j', 'neigh', 'show', 'nud', 'permanent'])).stdout,
  ) as Array<{
    dst: string;
    lladdr?: string;
    dev: string;
  }>;
  const nft = JSON.parse(
    (await lab.sh('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'])).stdout,
  ) as {
    nftables: Array<Record<string, { family?: string; table?: string; name?: string; chain?: string }>>;
  };
  return {
    // Every table, chain, rule and set, by identity (handles and counters left out).
    nft: nft.nftables
      .flatMap((o) =>
        Object.entries(o)
          .filter(([k]) => k !== 'metainfo')
          .map(
            ([k, v]) =>
              `${k} ${v.family ?? ''} ${v.table ?? ''} ${v.chain ?? ''} ${k === 'rule' ? '' : (v.name ?? '')}`,
          ),
      )
      .sort(),
    links: links.map((l) => `${l.ifname}@${l.master ?? ''}`).sort(),
    // Learned (dynamic) entries come and go with traffic; compare what the vRouter programs.
    fdb: fdb
      .filter((e) => e.state === 'permanent' || e.state === 'static' || e.dst)
      .map((e) => `${e.mac} ${e.ifname ?? ''} ${e.dst ?? ''} ${e.state ?? ''} ${(e.flags ?? []).join(',')}`)
      .sort(),
    neigh: neigh.map((n) => `${n.dst} ${n.lladdr ?? ''} ${n.dev}`).sort(),
  };
}

async function policyDrops(ns: string): Promise<number> {
  const r = await lab.sh('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'counters'], {
    allowFailure: true,
  });
  if (r.code !== 0) return 0;
  const items = (
    JSON.parse(r.stdout) as {
      nftables: Array<{ counter?: { name: string; table: string; packets: number } }>;
    }
  ).nftables;
  return items
    .filter((i) => i.counter && i.counter.table === 'tether_policy' && i.counter.name !== 'default_deny')
    .reduce((sum, i) => sum + (i.counter?.packets ?? 0), 0);
}

describe.skipIf(!isRoot)('tether lab: two sites end to end', () => {
  beforeAll(async () => {
    lab = await Lab.up(
      // Direct node sessions (--proxy off): this suite checks each node's own WAN session;
      // the site proxy's behaviour over a cut is test/e2e/headless.test.ts.
      { name, sites: 2, nodesPerSite: 1, workloadsPerNode: 2, stateDir, proxy: false },
      { progress: (m) => process.stderr.write(`[lab ${name}] ${m}\n`) },
    );
  }, 180_000);

  afterAll(async () => {
    const l = lab ?? (existsSync(stateDir) ? Lab.open(stateDir) : undefined);
    await l?.down();
    const left = (await listNetns()).filter(ownedByLab);
    expect(left, 'namespaces left behind by down').toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
  }, 60_000);

  it('every node came up through first boot from its config drive directory', async () => {
    for (const n of allNodes(lab.plan)) {
      const fb = JSON.parse(readFileSync(join(n.stateDir, 'firstboot.json'), 'utf8')) as {
        phase: string;
        source: string;
        phases: Array<{ name: string; attempts: number }>;
      };
      expect(fb.phase).toBe('ready');
      expect(fb.source).toBe(`config-drive: ${join(n.bootDir, 'config-drive', 'bootstrap.yaml')}`);
      expect(fb.phases.map((p) => p.name)).toEqual([
        'discover',
        'preflight',
        'profile',
        'enroll',
        'configure',
        'ready',
      ]);
      expect(readFileSync(join(n.stateDir, 'node.env'), 'utf8')).toContain(`TETHER_NODE=${n.name}\n`);
      expect(lab.state.firstBootSeconds?.[n.name]).toBeGreaterThan(0);
    }
    // The controller shows each node's first boot as Ready (reported over the node's session).
    const nodes = JSON.parse((await lab.admin(['get', 'nodes', '-o', 'json'])).stdout) as {
      items: Array<{ metadata: { name: string }; status: { firstBoot?: { phase: string } } }>;
    };
    for (const n of allNodes(lab.plan))
      expect(nodes.items.find((i) => i.metadata.name === n.name)?.status.firstBoot?.phase).toBe('ready');
  });

  it('red workloads at site 1 and site 2 reach each other over VXLAN', async () => {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    expect([a.network, b.network]).toEqual(['red', 'red']);
    expect((await lab.ping(a.ns, b.ip, { count: 3 })).received).toBe(3);
    expect((await lab.ping(b.ns, a.ip, { count: 3 })).received).toBe(3);
    // The path is the overlay: site 1's red namespace forwards b's MAC to site 2's VTEP.
    const fdb = await lab.vxlanFdb(lab.vnNs('s1n1', 'red'), lab.vni('red'));
    expect(fdb.get(b.mac)).toBe(lab.node('s2n1').ip);
  });

  it('each site router holds its LAN address on a veth port of br0, never on the bridge itself', async () => {
    // Routing into an L3 bridge device segments VXLAN GSO packets in software (docs/lab.md).
    for (const s of lab.plan.sites) {
      const addrs = JSON.parse(
        (await lab.sh('ip', ['-n', s.ns, '-j', '-4', 'addr', 'show'])).stdout,
      ) as Array<{
        ifname: string;
        addr_info: Array<{ local: string }>;
      }>;
      const holders = addrs
        .filter((a) => a.addr_info.some((i) => i.local === s.routerIp))
        .map((a) => a.ifname);
      expect(holders).toEqual([s.lanIf]);
      expect(addrs.find((a) => a.ifname === 'br0')?.addr_info ?? []).toEqual([]);
      const links = JSON.parse(
        (await lab.sh('ip', ['-n', s.ns, '-j', '-d', 'link', 'show'])).stdout,
      ) as Array<{
        ifname: string;
        master?: string;
        linkinfo?: { info_kind?: string };
      }>;
      const lanIf = links.find((l) => l.ifname === s.lanIf);
      const port = links.find((l) => l.ifname === s.lanPort);
      expect([lanIf?.linkinfo?.info_kind, lanIf?.master]).toEqual(['veth', undefined]);
      expect([port?.linkinfo?.info_kind, port?.master]).toEqual(['veth', 'br0']);
    }
  });

  it('red and blue with the same addresses on the same nodes never see each other', async () => {
    const redA = lab.workload('s1n1w1');
    const redB = lab.workload('s2n1w1');
    const blueA = lab.workload('s1n1w2');
    const blueB = lab.workload('s2n1w2');
    // Overlapping on purpose: the same address in both networks, at both sites.
    expect(blueA.ip).toBe(redA.ip);
    expect(blueB.ip).toBe(redB.ip);
    // Red at site 1 pings the shared address: red at site 2 answers, blue at site 2 gets nothing.
    const before = await echoRequestsIn(blueB.ns);
    const redBefore = await echoRequestsIn(redB.ns);
    expect((await lab.ping(redA.ns, redB.ip, { count: 20, intervalS: 0.05 })).received).toBe(20);
    expect(await echoRequestsIn(redB.ns)).toBeGreaterThanOrEqual(redBefore + 20);
    expect(await echoRequestsIn(blueB.ns)).toBe(before);
    const neigh = await lab.exec(redA.ns, 'ip', ['-j', 'neigh', 'show', redB.ip]);
    expect((JSON.parse(neigh.stdout) as Array<{ lladdr?: string }>)[0]?.lladdr).toBe(redB.mac);
    // With red's owner of the address down, nothing answers in red: blue's twin must not.
    await lab.sh('ip', ['-n', redB.ns, 'link', 'set', 'eth0', 'down']);
    try {
      expect((await lab.ping(redA.ns, redB.ip, { count: 3, intervalS: 0.2 })).received).toBe(0);
      expect(await echoRequestsIn(blueB.ns)).toBe(before);
      expect((await lab.ping(blueA.ns, blueB.ip, { count: 3 })).received).toBe(3);
    } finally {
      await lab.sh('ip', ['-n', redB.ns, 'link', 'set', 'eth0', 'up']);
      await lab.exec(redB.ns, 'ip', ['route', 'replace', 'default', 'via', redB.gateway]);
    }
    await waitFor('red to answer again', async () => (await lab.ping(redA.ns, redB.ip, { count: 1 })).ok);
  });

  it('a workload deleted at site 1 disappears from site 2 (controller endpoint reflection)', async () => {
    const gone = lab.workload('s1n1w1');
    const ns2 = lab.vnNs('s2n1', 'red');
    expect((await lab.vxlanFdb(ns2, lab.vni('red'))).has(gone.mac)).toBe(true);
    await lab.cniDel('s1n1w1');
    await waitFor(
      'site 2 to drop the deleted endpoint',
      async () => {
        const fdb = await lab.vxlanFdb(ns2, lab.vni('red'));
        const all = (await lab.sh('bridge', ['-n', ns2, '-j', 'fdb', 'show'])).stdout;
        const neigh = (await lab.sh('ip', ['-n', ns2, '-j', 'neigh', 'show'])).stdout;
        return !fdb.has(gone.mac) && !all.includes(gone.mac) && !neigh.includes(gone.mac);
      },
      30_000,
      200,
    );
    // Attach it again (as a runtime would recreate the pod) for the tests that follow.
    const back = await lab.cniAdd('s1n1w1');
    expect(back.mac).toBe(gone.mac);
    // ADD returns only once the vRouter has wired the interface: the very first packet to the
    // anycast gateway is answered, with no wait in between.
    expect((await lab.ping(back.ns, '10.1.0.1', { count: 1 })).received).toBe(1);
    await lab.waitConverged();
    expect((await lab.ping(back.ns, lab.workload('s2n1w1').ip, { count: 2 })).received).toBe(2);
  });

  it('red and blue with the same address both reach the site router through local breakout at once', async () => {
    await lab.apply({
      apiVersion: 'tether.dev/v1',
      kind: 'VirtualNetwork',
      metadata: { name: 'blue' },
      spec: { subnets: ['10.1.0.0/24'], localBreakout: true },
    });
    // Site 2's pair still holds the same address in both networks (site 1's red was re-added above).
    const red = lab.workload('s2n1w1');
    const blue = lab.workload('s2n1w2');
    const router = lab.plan.sites[1]!.routerIp;
    await waitFor(
      'blue breakout',
      async () => (await lab.ping(blue.ns, router, { count: 1 })).ok,
      30_000,
      300,
    );
    // Same source address in both networks, same destination, concurrently.
    const pinged = await Promise.all([
      lab.ping(red.ns, router, { count: 20, intervalS: 0.05 }),
      lab.ping(blue.ns, router, { count: 20, intervalS: 0.05 }),
    ]);
    expect(red.ip).toBe(blue.ip);
    expect(pinged.map((p) => p.received)).toEqual([20, 20]);
  });

  it('a deny policy between labelled groups blocks traffic across sites, counts drops, and lifting it restores traffic', async () => {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    const ns1 = lab.vnNs('s1n1', 'red');
    await lab.apply({
      apiVersion: 'tether.dev/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny-s1-to-s2' },
      spec: {
        network: 'red',
        defaultAction: 'allow',
        rules: [
          {
            name: 'block',
            action: 'deny',
            from: { matchLabels: { site: 's1' } },
            to: { matchLabels: { site: 's2' } },
          },
        ],
      },
    });
    await waitFor(
      'the policy to block',
      async () => (await lab.ping(a.ns, b.ip, { count: 1, waitS: 1 })).received === 0,
    );
    const before = await policyDrops(ns1);
    expect((await lab.ping(a.ns, b.ip, { count: 5, intervalS: 0.1 })).received).toBe(0);
    expect(await policyDrops(ns1)).toBeGreaterThanOrEqual(before + 5);
    // Other traffic in the network is untouched: blue is another network, site 2 → site 2's gateway works.
    expect(
      (await lab.ping(lab.workload('s1n1w2').ns, lab.workload('s2n1w2').ip, { count: 2 })).received,
    ).toBe(2);
    await lab.delete('networkpolicy', 'deny-s1-to-s2');
    await waitFor(
      'traffic to come back',
      async () => (await lab.ping(a.ns, b.ip, { count: 1 })).ok,
      30_000,
      200,
    );
    expect((await lab.ping(a.ns, b.ip, { count: 3 })).received).toBe(3);
  });

  it('restarting a node while a ping runs across sites loses no packet and duplicates no kernel object', async () => {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    const ns2 = lab.vnNs('s2n1', 'red');
    await lab.waitConverged();
    const before = await kernelObjects(ns2);
    const nodeNsBefore = await kernelObjects(lab.node('s2n1').ns);
    const echoesBefore = await echoRequestsIn(b.ns);
    const ping = lab.ping(a.ns, b.ip, { count: 200, intervalS: 0.05, waitS: 2 });
    // Restart only once the flow is really under way (echoes arriving at b), not after a guess.
    await waitFor(
      'the ping to be under way',
      async () => (await echoRequestsIn(b.ns)) >= echoesBefore + 20,
      10_000,
      50,
    );
    const oldPid = lab.nodeProcess('s2n1')?.pid;
    const proc = await lab.restartNode('s2n1');
    expect(proc.pid).not.toBe(oldPid);
    await waitFor(
      'the restarted node to reconnect',
      () => lab.nodeStatusFile('s2n1')?.session.phase === 'connected',
    );
    const result = await ping;
    expect(result.transmitted).toBe(200);
    expect(result.received).toBe(result.transmitted);
    await lab.waitConverged();
    expect(await kernelObjects(ns2)).toEqual(before);
    expect(await kernelObjects(lab.node('s2n1').ns)).toEqual(nodeNsBefore);
  });

  it('with the WAN cut, sites keep forwarding headless, and a node restarted meanwhile comes up from disk', async () => {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    await lab.cutWan();
    try {
      await waitFor(
        'both nodes to notice the WAN is gone',
        () =>
          ['s1n1', 's2n1'].every((n) => lab.nodeStatusFile(n)?.session.phase !== 'connected')
            ? true
            : undefined,
        30_000,
        200,
      );
      expect((await lab.ping(a.ns, b.ip, { count: 5, intervalS: 0.1 })).received).toBe(5);
      const held = lab.nodeStatusFile('s1n1')?.cache.revision ?? 0;
      expect(held).toBeGreaterThan(0);
      await lab.restartNode('s1n1');
      // Up from its disk cache: the revision it held before, no session.
      const st = lab.nodeStatusFile('s1n1');
      expect(st?.session.phase).not.toBe('connected');
      expect(st?.cache.revision).toBe(held);
      await lab.waitConverged();
      expect((await lab.ping(a.ns, b.ip, { count: 5, intervalS: 0.1 })).received).toBe(5);
      expect((await lab.ping(b.ns, a.ip, { count: 5, intervalS: 0.1 })).received).toBe(5);
      // Still headless: the controller is unreachable from the node namespaces.
      expect((await lab.ping(lab.node('s1n1').ns, lab.plan.central.ip, { count: 1 })).received).toBe(0);
    } finally {
      await lab.restoreWan();
    }
    await waitFor(
      'both nodes to reconnect after the WAN returns',
      () =>
        ['s1n1', 's2n1'].every((n) => lab.nodeStatusFile(n)?.session.phase === 'connected')
          ? true
          : undefined,
      60_000,
      250,
    );
    expect((await lab.ping(a.ns, b.ip, { count: 2 })).received).toBe(2);
  });
});
