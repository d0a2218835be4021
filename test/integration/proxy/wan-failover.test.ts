// The site proxy's WAN session fails over between controller replicas (issue 12): a real
// SiteProxy over real TLS on loopback, two controllers that share revisions (two
// FakeControllers fed the same writes, as two replicas on one etcd are), the one in use cut:
// the WAN moves to the other, resumes by delta from the proxy's durable revision, stays
// there when the first comes back (sticky), and takes a ControllerList only when it is valid.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { silentLogger } from '../../../src/lib/log.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import { SiteProxy } from '../../../src/node/proxy/proxy.js';
import { freePort } from '../support/proc.js';
import { FakeController, type FakeSite, fakeSite, network, nodeSummary, until } from '../support/site.js';

const VTEP = { n1: '127.0.0.1', n2: '127.0.0.3' };

describe('site proxy WAN failover between controller replicas', () => {
  let dir: string;
  let site: FakeSite;
  let b: FakeController;
  let proxy: SiteProxy;
  let set: ControllerSet;
  const both = (put: TetherObject[]) => {
    const ra = site.ctl.apply(put);
    const rb = b.apply(put);
    expect(rb).toBe(ra);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-wan-failover-'));
    const red = network('red', '10.1.0.0/24', { n1: '10.1.0.0/28' }, ['s1']);
    site = await fakeSite('s1', VTEP, { objects: [red] });
    // Replica B: the same CA and the same writes in the same order, so the same revisions.
    b = new FakeController(site.pki, site.creds);
    await b.start();
    b.apply([nodeSummary(site.creds.get('n1')!, VTEP.n1), nodeSummary(site.creds.get('n2')!, VTEP.n2), red]);
    expect(b.revision).toBe(site.ctl.revision);
    set = new ControllerSet([`127.0.0.1:${site.ctl.port}`, `127.0.0.1:${b.port}`]);
    proxy = new SiteProxy({
      stateDir: join(dir, 'n1'),
      node: 'n1',
      site: 's1',
      controllers: set,
      caPem: site.pki.ca.certPem,
      credentials: site.creds.get('n1')!,
      vtep: VTEP.n1,
      port: await freePort(),
      log: silentLogger(),
      agentSlice: () => ({ revision: 0, objects: site.ctl.list('Node') }),
      probeMs: 200,
      probeTimeoutMs: 300,
      backoff: { baseMs: 50, capMs: 400 },
      wanHeartbeatMs: 1000,
    });
    await proxy.start();
    await until('WAN up on replica A', () => proxy.status().wan?.up === true, 30_000);
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    site?.ctl.stop();
    b?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves to the other replica when the one in use dies, resumes by delta, and sticks there', async () => {
    const a = `127.0.0.1:${site.ctl.port}`;
    const bAddr = `127.0.0.1:${b.port}`;
    expect(proxy.status().wan?.controller).toBe(a);
    both([network('blue', '10.2.0.0/24', {}, ['s1'])]);
    await until('the proxy at the new revision', () => proxy.status().wan?.revision === site.ctl.revision);
    const helloB = b.hellos.length;
    site.ctl.cut();
    // A write the proxy has not seen, made while it fails over (B has it, like etcd would).
    both([network('green', '10.3.0.0/24', {}, ['s1'])]);
    await until(
      'WAN up on replica B',
      () => proxy.status().wan?.up === true && proxy.status().wan?.controller === bAddr,
      30_000,
    );
    const hello = b.hellos[helloB]!;
    // It resumed from what it holds on disk, and B answered with the change only.
    expect(Number(hello.held_revision)).toBe(site.ctl.revision - 1);
    expect(proxy.status().wan?.lastSync).toBe('delta');
    await until('green on the proxy', () => proxy.status().wan?.revision === b.revision);
    expect(set.current).toBe(bAddr);
    // A comes back: the WAN stays on B.
    await site.ctl.restore();
    await new Promise((r) => setTimeout(r, 1500));
    expect(proxy.status().wan?.controller).toBe(bAddr);
    expect(proxy.status().wan?.up).toBe(true);
  }, 60_000);

  it('learns a valid ControllerList from the controller and refuses a bad one whole', async () => {
    const bAddr = `127.0.0.1:${b.port}`;
    for (const c of b.calls) c.write({ controllers: { addresses: ['a-9.example:7443', 'nope'] } });
    await new Promise((r) => setTimeout(r, 300));
    expect(set.addresses).toEqual([`127.0.0.1:${site.ctl.port}`, bAddr]);
    for (const c of b.calls) c.write({ controllers: { addresses: [bAddr, '10.9.9.9:7443'] } });
    await until('the new list', () => set.addresses.join(',') === `${bAddr},10.9.9.9:7443`);
    expect(set.current).toBe(bAddr);
  });
});
