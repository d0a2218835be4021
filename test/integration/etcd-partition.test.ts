// A controller replica cut off from etcd while it leads (issue 12): etcd sits behind a TCP
// relay in this test (test/support/tcp-proxy.ts) that stops passing bytes without closing
// anything, which is what a partition looks like to TCP. The cut replica must step down by
// itself, report not ready, give its sessions up so its nodes move to the other replica,
// and a write it still carries its old fence on is refused by etcd's compare on the term;
// the other replica takes over leadership and nothing acknowledged is lost. Real etcd,
// real `tether controller start` and `tether node run --no-vrouter` processes. No
// assertion on how long anything took: times are printed. Run under
// `flock /tmp/tether-heavy.lock`.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { TetherObject } from '../../src/api/resource.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { EtcdElection } from '../../src/controller/leader.js';
import type { EtcdStore } from '../../src/controller/store/etcd.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { isTetherError } from '../../src/lib/errors.js';
import { silentLogger } from '../../src/lib/log.js';
import type { NodeStatusFile } from '../../src/node/agent/daemon.js';
import { readStateCache } from '../../src/node/cache.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../support/etcd.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { type Daemon, enrollArgs, freePort, runTether, startTether, waitFor } from './support/proc.js';

const have = etcdAvailable();
const SITE = 'h12p-s1';
const TTL = 3;

describe.skipIf(!have)('a replica partitioned from etcd while it leads', () => {
  let etcd: TestEtcd;
  const closers: Array<() => Promise<void>> = [];
  const dir = mkdtempSync(join(tmpdir(), 'tether-h12p-'));
  const etcdPort = () => Number(etcd.endpoint.split(':')[1]);
  const via = (url: string, p: TcpProxy) => url.replace(etcd.endpoint, p.endpoint);

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the cut leader steps down and calls etcd unreachable; its old fence is refused once the path is back', async () => {
    const url = etcd.url();
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcdPort() });
    closers.push(() => proxy.close());
    const open = async (u: string) => {
      const s = (await openDatastore(parseDatastoreUrl(u))) as EtcdStore;
      closers.push(() => s.close());
      return s;
    };
    const cutStore = await open(via(url, proxy));
    const otherStore = await open(url);
    const log = silentLogger();
    const cut = new EtcdElection(cutStore, { log, ttlSeconds: 2 });
    cut.start();
    closers.push(() => cut.close());
    await waitFor('the replica behind the relay to lead', () => cut.isLeader(), 30_000);
    const other = new EtcdElection(otherStore, { log, ttlSeconds: 2 });
    other.start();
    closers.push(() => other.close());
    await waitFor('the other to know who leads', () => other.leader()?.id === cut.self.id, 30_000);

    const site = (v: number): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Site',
      metadata: { name: 'partitioned' },
      spec: { v },
    });
    const fence = cut.fence()!;
    await cutStore.txn([{ op: 'put', object: site(1) }], { fence });

    const t0 = Date.now();
    proxy.blackhole();
    await waitFor('the cut leader to step down', () => !cut.isLeader(), 30_000, 20);
    const steppedMs = Date.now() - t0;
    await waitFor('the other replica to lead', () => other.isLeader(), 30_000, 20);
    const takenMs = Date.now() - t0;
    await waitFor('the cut replica to call etcd unreachable', () => !cut.reachable(), 30_000, 20);
    expect(cut.isLeader()).toBe(false);
    expect(() => cut.fence()).toThrow(/not the leader/);
    expect(other.term()).toBeGreaterThan(fence.createRevision);
    expect(other.reachable()).toBe(true);
    console.log(
      `partition (lease TTL 2 s): the cut leader stepped down after ${steppedMs} ms, the other led after ${takenMs} ms`,
    );

    proxy.heal();
    // A single writer that was mid-write when the path went: its write, still carrying the
    // old term's fence, reaches etcd only now. etcd's compare on the term refuses it.
    const late = await waitFor(
      'the late fenced write to reach etcd',
      async () => {
        const e = await cutStore.txn([{ op: 'put', object: site(2) }], { fence }).then(
          () => 'committed',
          (err: unknown) => err,
        );
        // Not reached yet (the channel reconnects after the relay dropped it): try again.
        if (isTetherError(e, 'TETHER_E_UNAVAILABLE') || isTetherError(e, 'TETHER_E_TIMEOUT'))
          return undefined;
        return { e };
      },
      60_000,
      200,
    );
    expect(isTetherError(late.e, 'TETHER_E_PRECONDITION'), String(late.e)).toBe(true);
    expect((await otherStore.get('Site', 'partitioned'))?.object.spec).toEqual({ v: 1 });
    await waitFor('the cut replica to hear from etcd again', () => cut.reachable(), 60_000);
    // It came back as a follower: the other keeps the term it won.
    await waitFor('the cut replica to know the new leader', () => cut.leader()?.id === other.self.id, 30_000);
    expect(cut.isLeader()).toBe(false);
    expect(other.isLeader()).toBe(true);
  }, 120_000);

  it('two replica processes, the leader cut from etcd: it goes unready, its node moves to the other, which leads; nothing acknowledged is lost', async () => {
    const url = etcd.url();
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcdPort() });
    closers.push(() => proxy.close());
    const dirA = join(dir, 'ctl-a');
    const dirB = join(dir, 'ctl-b');
    const [metricsA, metricsB, portB] = [await freePort(), await freePort(), await freePort()];
    const initA = await initTestController(dirA, {
      heartbeatSeconds: 1,
      leaseTtlSeconds: TTL,
      datastore: via(url, proxy),
      metricsListen: `127.0.0.1:${metricsA}`,
    });
    const initB = { addr: `127.0.0.1:${portB}`, port: portB, cfg: join(dirB, 'admin.yaml') };
    const replicas = [initA.addr, initB.addr];
    // One CA: B's data directory is a copy of A's (docs/controller.md "Replicas on one etcd").
    cpSync(dirA, dirB, { recursive: true });
    const conf = parse(readFileSync(join(dirA, 'controller.yaml'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dirA, 'controller.yaml'), stringify({ ...conf, replicas }));
    writeFileSync(
      join(dirB, 'controller.yaml'),
      stringify({
        ...conf,
        replicas,
        datastore: url,
        listen: initB.addr,
        advertise: initB.addr,
        metricsListen: `127.0.0.1:${metricsB}`,
      }),
    );
    const adminCfgB = parse(readFileSync(initB.cfg, 'utf8')) as Record<string, unknown>;
    writeFileSync(initB.cfg, stringify({ ...adminCfgB, server: initB.addr }));

    const readyz = async (port: number) => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = await r.text();
      const term = Number(/^term: (\d+)$/m.exec(body)?.[1] ?? Number.NaN);
      return { status: r.status, leader: /^leader: yes$/m.test(body), term, body };
    };

    // A first, so A leads.
    const a: TestController = await startTestController(dirA, initA);
    closers.push(() => a.daemon.stop());
    const aLeads = await waitFor(
      'A to lead',
      async () => {
        const r = await readyz(metricsA);
        return r.status === 200 && r.leader ? r : undefined;
      },
      30_000,
    );
    const b: TestController = await startTestController(dirB, initB);
    closers.push(() => b.daemon.stop());
    const bFollows = await waitFor(
      'B to follow A',
      async () => {
        const r = await readyz(metricsB);
        return r.status === 200 && r.body.includes(`leader_addr: ${initA.addr}`) ? r : undefined;
      },
      30_000,
    );
    expect(bFollows.leader).toBe(false);
    expect(bFollows.term).toBe(0);

    const nodeDir = join(dir, 'node-n1');
    const tok = await runTether(['token', 'create', '--site', SITE, '--config', initA.cfg]);
    expect(tok.code, tok.stderr).toBe(0);
    const en = await runTether(enrollArgs(replicas.join(','), tok.stdout.trim(), 'h12p-n1', nodeDir));
    expect(en.code, en.stderr).toBe(0);
    const node: Daemon = startTether([
      'node',
      'run',
      '--no-vrouter',
      '--proxy',
      'off',
      '--heartbeat',
      '1s',
      '--state-dir',
      nodeDir,
    ]);
    closers.push(() => node.stop());
    const status = (): NodeStatusFile | undefined => {
      const p = join(nodeDir, 'status.json');
      try {
        return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as NodeStatusFile) : undefined;
      } catch {
        return undefined; // replaced atomically; a read may still race the rename
      }
    };
    const on = (addr: string) => {
      const s = status();
      return s?.session.phase === 'connected' && s.session.upstream === `controller ${addr}`;
    };
    await waitFor('the node on A', () => on(initA.addr), 60_000);

    const adminA = new Admin(loadClientConfig(initA.cfg), 8000);
    const adminB = new Admin(loadClientConfig(initB.cfg), 8000);
    closers.push(async () => {
      adminA.close();
      adminB.close();
    });
    const vn = (i: number): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'VirtualNetwork',
      metadata: { name: `h12p-vn-${i}` },
      spec: { subnets: [`10.${120 + Math.floor(i / 200)}.${i % 200}.0/24`], sites: [SITE] },
    });
    // Applies through both replicas in turn; a replica whose call failed is skipped for the
    // next few. Only what was acknowledged is counted.
    const acked: number[] = [];
    let stop = false;
    const stream = (async () => {
      let i = 0;
      let t = 0;
      const skip = [0, 0];
      while (!stop) {
        let k = t++ % 2;
        if (skip[k]! > 0) {
          skip[k]!--;
          k = 1 - k;
        }
        try {
          await [adminA, adminB][k]!.apply({
            json: [Buffer.from(JSON.stringify(vn(i)))],
            expect_revision: 0,
            sources: [],
          });
          acked.push(i);
          i++;
        } catch {
          // Unknown outcome (it may be durable): the same object is applied again next,
          // which is idempotent.
          skip[k] = 5;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await waitFor('applies acknowledged before the cut', () => acked.length >= 10, 60_000);

    const t0 = Date.now();
    proxy.blackhole();
    const times: Record<string, number> = {};
    const aDown = await waitFor(
      'A to give up the term and go unready',
      async () => {
        const r = await readyz(metricsA);
        if (!r.leader) times.aSteppedDown ??= Date.now() - t0;
        return r.status === 503 && !r.leader ? r : undefined;
      },
      60_000,
      50,
    );
    times.aUnready = Date.now() - t0;
    expect(aDown.body).toMatch(/datastore unreachable/);
    expect(aDown.term).toBe(0);
    const bLeads = await waitFor(
      'B to lead',
      async () => {
        const r = await readyz(metricsB);
        return r.status === 200 && r.leader ? r : undefined;
      },
      60_000,
      50,
    );
    times.bLeads = Date.now() - t0;
    // A new term, so anything A still sends with its old fence is refused.
    expect(bLeads.term).toBeGreaterThan(aLeads.term);
    await waitFor('the node on B', () => on(initB.addr), 60_000, 50);
    times.nodeOnB = Date.now() - t0;
    const afterCut = acked.length;
    await waitFor(
      'applies acknowledged through B during the cut',
      () => acked.length >= afterCut + 10,
      60_000,
    );
    // While cut off, A refuses sessions: the node does not drift back to it.
    expect(on(initB.addr)).toBe(true);
    expect(a.daemon.log()).toMatch(/controller is not the leader/);
    expect(a.daemon.log()).toMatch(/sessions closed so the peers move to another replica/);

    proxy.heal();
    await waitFor(
      'A ready again, as a follower of B',
      async () => {
        const r = await readyz(metricsA);
        return r.status === 200 && !r.leader && r.body.includes(`leader_addr: ${initB.addr}`);
      },
      90_000,
    );
    times.aReadyAgain = Date.now() - t0;
    const afterHeal = acked.length;
    await waitFor('applies acknowledged after the heal', () => acked.length >= afterHeal + 6, 60_000);
    stop = true;
    await stream;
    console.log(
      `partition of the leading replica (lease TTL ${TTL} s), ms after the cut: ${JSON.stringify(times)}`,
    );

    // Every acknowledged network: in the store with its content and one VNI each, all
    // distinct, as both replicas list it; and on the node's disk.
    const names = acked.map((i) => vn(i).metadata.name);
    for (const [which, admin] of [
      ['B', adminB],
      ['A', adminA],
    ] as const) {
      const items = await waitFor(
        `replica ${which} to list every acknowledged network with its VNI`,
        async () => {
          const got = new Map((await admin.list('VirtualNetwork')).items.map((o) => [o.metadata.name, o]));
          return names.every((n) => typeof (got.get(n)?.status as { vni?: unknown })?.vni === 'number')
            ? got
            : undefined;
        },
        60_000,
      );
      for (const i of acked) expect(items.get(vn(i).metadata.name)?.spec).toEqual(vn(i).spec);
      const vnis = [...items.values()].map((o) => (o.status as { vni: number }).vni);
      expect(new Set(vnis).size).toBe(vnis.length);
    }
    await waitFor(
      'the node to hold every acknowledged network',
      () => {
        const held = new Set(
          readStateCache(join(nodeDir, 'cache.json'))
            .objects.filter((o) => o.kind === 'VirtualNetwork')
            .map((o) => o.metadata.name),
        );
        return names.every((n) => held.has(n));
      },
      60_000,
    );
    expect(status()?.session.phase).toBe('connected');
  }, 300_000);
});
