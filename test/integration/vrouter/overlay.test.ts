import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
import { observe } from '../../../src/node/vrouter/observe.js';
import { plan } from '../../../src/node/vrouter/planner.js';
import { isRoot, local, network, nodeDesired, OVERLAY_MTU, remote, Topo, type Workload } from './topo.js';

const CHILD = fileURLToPath(new URL('./sync-child.ts', import.meta.url));

if (!isRoot) console.warn('skipping vRouter overlay integration tests: they need root (network namespaces)');

describe.skipIf(!isRoot)('vRouter overlay on the real kernel', () => {
  const topo = new Topo('vo');
  let redA: Workload;
  let redB: Workload;
  let blueA: Workload;
  let blueB: Workload;
  let blueB2: Workload;
  const red = () => network('red', 100);
  const blue = () => network('blue', 200);

  const desiredA = (opts: { dropRedB?: boolean } = {}) => {
    const r = red();
    r.localEndpoints = [local(redA)];
    r.remoteEndpoints = opts.dropRedB ? [] : [remote(redB, topo.vtepB)];
    const b = blue();
    b.localEndpoints = [local(blueA)];
    b.remoteEndpoints = [remote(blueB, topo.vtepB), remote(blueB2, topo.vtepB)];
    return nodeDesired(topo, 'a', [r, b]);
  };
  const desiredB = () => {
    const r = red();
    r.localEndpoints = [local(redB)];
    r.remoteEndpoints = [remote(redA, topo.vtepA)];
    const b = blue();
    b.localEndpoints = [local(blueB), local(blueB2)];
    b.remoteEndpoints = [remote(blueA, topo.vtepA)];
    return nodeDesired(topo, 'b', [r, b]);
  };

  beforeAll(async () => {
    await topo.build();
    // red and blue both use 10.1.0.0/24, with the same addresses on both nodes.
    redA = await topo.addWorkload('a', 'red-a', '10.1.0.11', '10.1.0.1');
    redB = await topo.addWorkload('b', 'red-b', '10.1.0.12', '10.1.0.1');
    blueA = await topo.addWorkload('a', 'blue-a', '10.1.0.11', '10.1.0.1');
    blueB = await topo.addWorkload('b', 'blue-b', '10.1.0.12', '10.1.0.1');
    blueB2 = await topo.addWorkload('b', 'blue-b2', '10.1.0.13', '10.1.0.1');
    const a = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
    const b = await new VRouter(topo.runner, silentLogger()).sync(desiredB());
    expect(a.ok, JSON.stringify(a.failures)).toBe(true);
    expect(b.ok, JSON.stringify(b.failures)).toBe(true);
  });

  afterAll(async () => {
    const k = new VRouter(topo.runner, silentLogger());
    await k.teardown(desiredA()).catch(() => undefined);
    await k.teardown(desiredB()).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
  });

  it('workloads of red on node A and node B reach each other over VXLAN', async () => {
    expect(await topo.ping(redA, redB.ip, 2)).toBe(true);
    expect(await topo.ping(redB, redA.ip, 2)).toBe(true);
    // and the anycast gateway answers locally on both nodes
    expect(await topo.ping(redA, '10.1.0.1')).toBe(true);
    expect(await topo.ping(redB, '10.1.0.1')).toBe(true);
  });

  it('sets MTU underlay − 50 on vxlan, bridge and workload host ends', async () => {
    const ns = names.vnNetns(`${topo.id}a`, 100);
    const links = JSON.parse(await topo.sh('ip', ['-n', ns, '-j', 'link', 'show'])) as {
      ifname: string;
      mtu: number;
    }[];
    const mtus = Object.fromEntries(links.map((l) => [l.ifname, l.mtu]));
    expect(mtus[names.vxlan(100)]).toBe(OVERLAY_MTU);
    expect(mtus[names.bridge]).toBe(OVERLAY_MTU);
    expect(mtus[redA.hostIfname]).toBe(OVERLAY_MTU);
  });

  it('keeps red and blue apart although both use 10.1.0.0/24', async () => {
    expect(await topo.ping(blueA, blueB.ip, 2)).toBe(true);
    // blue-a's ARP entry for 10.1.0.12 is blue-b's MAC, not red-b's
    const neigh = await topo.sh('ip', ['-n', blueA.ns, 'neigh', 'show', blueB.ip]);
    expect(neigh).toContain(blueB.mac);
    expect(neigh).not.toContain(redB.mac);
    // 10.1.0.13 exists only in blue: red cannot reach it
    expect(await topo.ping(blueA, blueB2.ip)).toBe(true);
    expect(await topo.ping(redA, blueB2.ip)).toBe(false);
  });

  it('a second run with the same desired state plans nothing and duplicates nothing', async () => {
    const kernel = new IprouteKernel(topo.runner);
    const p = plan(desiredA(), await observe(kernel, desiredA()));
    expect(p.ops).toEqual([]);
    const ns = names.vnNetns(`${topo.id}a`, 200);
    const fdb = JSON.parse(
      await topo.sh('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', names.vxlan(200)]),
    ) as { mac: string; dst?: string }[];
    expect(fdb.filter((e) => e.mac === blueB.mac && e.dst).length).toBe(1);
  });

  it('re-running the agent (new processes and new appliers) while a ping runs loses no pings', async () => {
    const pinger = topo.runner.run('ping', ['-c', '60', '-i', '0.05', '-W', '1', redB.ip], {
      netns: redA.ns,
      allowFailure: true,
    });
    // Two runs in fresh OS processes (as after a restart of `tether node run`) …
    const dir = mkdtempSync(join(tmpdir(), 'tether-vrouter-'));
    try {
      const file = join(dir, 'desired.json');
      writeFileSync(file, JSON.stringify(desiredA()));
      for (let i = 0; i < 2; i++) {
        const out = await topo.runner.run(process.execPath, ['--import', 'tsx', CHILD, file]);
        expect(JSON.parse(out.stdout)).toEqual({ ok: true, ops: 0 });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // … and new VRouter instances in this one.
    for (let i = 0; i < 3; i++) {
      const r = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
      expect(r.ok).toBe(true);
      expect(r.ops).toBe(0);
    }
    const res = await pinger;
    expect(res.stdout).toMatch(/60 packets transmitted, 60 received/);
  });

  it('a remote endpoint removed from desired state disappears from forwarding entries', async () => {
    const r = await new VRouter(topo.runner, silentLogger()).sync(desiredA({ dropRedB: true }));
    expect(r.ok).toBe(true);
    const ns = names.vnNetns(`${topo.id}a`, 100);
    const fdb = await topo.sh('bridge', ['-n', ns, 'fdb', 'show', 'dev', names.vxlan(100)]);
    expect(fdb).not.toContain(redB.mac);
    const neigh = await topo.sh('ip', ['-n', ns, 'neigh', 'show', 'dev', names.vxlan(100)]);
    expect(neigh).not.toContain(redB.ip);
    expect(await topo.ping(redA, redB.ip)).toBe(false);
    // and coming back restores it
    expect((await new VRouter(topo.runner, silentLogger()).sync(desiredA())).ok).toBe(true);
    expect(await topo.ping(redA, redB.ip, 2)).toBe(true);
  });

  it('a VTEP address change recreates the VXLAN device (same VNI) and traffic resumes', async () => {
    await topo.sh('ip', ['-n', topo.nodeA, 'addr', 'add', '192.168.77.11/24', 'dev', 'ul0']);
    topo.vtepA = '192.168.77.11';
    const a = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
    expect(a.ok, JSON.stringify(a.failures)).toBe(true);
    const b = await new VRouter(topo.runner, silentLogger()).sync(desiredB());
    expect(b.ok, JSON.stringify(b.failures)).toBe(true);
    const ns = names.vnNetns(`${topo.id}a`, 100);
    const vx = JSON.parse(await topo.sh('ip', ['-n', ns, '-d', '-j', 'link', 'show', names.vxlan(100)])) as {
      linkinfo: { info_data: { local: string } };
    }[];
    expect(vx[0]?.linkinfo.info_data.local).toBe('192.168.77.11');
    expect(await topo.ping(redA, redB.ip, 2)).toBe(true);
    expect(await topo.ping(blueB, blueA.ip, 2)).toBe(true);
  });
});
