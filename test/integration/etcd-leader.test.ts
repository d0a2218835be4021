import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { gatewayClaimIssues } from '../../src/api/gateway-kinds.js';
import type { TetherObject } from '../../src/api/resource.js';
import { CLAIM_KIND, checkSharedCa, serializeOn, txnWithClaims } from '../../src/controller/claimkeys.js';
import { EndpointClaims } from '../../src/controller/endpoints.js';
import { EtcdElection, type Leadership } from '../../src/controller/leader.js';
import { StoreMirror } from '../../src/controller/mirror.js';
import { NetworkReconciler, vniClaimOps } from '../../src/controller/networks.js';
import { Registry } from '../../src/controller/registry.js';
import type { EtcdStore } from '../../src/controller/store/etcd.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { isTetherError, TetherError } from '../../src/lib/errors.js';
import { silentLogger } from '../../src/lib/log.js';
import { createCA } from '../../src/lib/pki.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../support/etcd.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { freePort, runTether, waitFor } from './support/proc.js';

const have = etcdAvailable();
const log = silentLogger();

function vn(name: string): TetherObject {
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'VirtualNetwork',
    metadata: { name },
    spec: { subnets: ['10.80.0.0/16'] },
  };
}

function node(name: string): TetherObject {
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'Node',
    metadata: { name },
    spec: { site: 's1' },
    status: { phase: 'Approved' },
  };
}

describe.skipIf(!have)('leader election, fencing and claim keys on a real etcd', () => {
  let etcd: TestEtcd;
  const closers: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await etcd?.stop();
  });

  const etcdStore = async (url: string) => {
    const s = (await openDatastore(parseDatastoreUrl(url))) as EtcdStore;
    closers.push(() => s.close());
    return s;
  };
  const election = (s: EtcdStore) => {
    const e = new EtcdElection(s, { log, ttlSeconds: 2 });
    e.start();
    closers.push(() => e.close());
    return e;
  };

  it("exactly one of two replicas leads; on resign the other takes over; the deposed leader's fenced write fails", async () => {
    const url = etcd.url();
    const [s1, s2] = [await etcdStore(url), await etcdStore(url)];
    const [e1, e2] = [election(s1), election(s2)];
    const leaders = () => [e1, e2].filter((e) => e.isLeader());
    await waitFor('a leader', () => leaders().length === 1, 30_000);
    // Stays exactly one while both keep their leases alive (several keepalive periods).
    for (let i = 0; i < 20; i++) {
      expect(leaders().length).toBe(1);
      await new Promise((r) => setTimeout(r, 100));
    }
    const old = leaders()[0]!;
    const next = old === e1 ? e2 : e1;
    const oldStore = old === e1 ? s1 : s2;
    const nextStore = old === e1 ? s2 : s1;
    await waitFor('the follower to know the leader', () => next.leader()?.id === old.self.id, 30_000);
    const fence = old.fence()!;
    const site = (v: number): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Site',
      metadata: { name: 'fenced' },
      spec: { v },
    });
    await oldStore.txn([{ op: 'put', object: site(1) }], { fence });
    // A follower cannot even get a fence.
    expect(() => next.fence()).toThrow(/not the leader/);

    await old.close();
    await waitFor('the other replica to lead', () => next.isLeader(), 30_000);
    expect(old.isLeader()).toBe(false);
    // The deposed leader's late write (still holding its old fence) is refused, writes nothing.
    const late = await oldStore.txn([{ op: 'put', object: site(2) }], { fence }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isTetherError(late, 'TETHER_E_PRECONDITION')).toBe(true);
    expect((await nextStore.get('Site', 'fenced'))?.object.spec).toEqual({ v: 1 });
    // Also a split transaction carries the fence in every chunk.
    const many = Array.from({ length: 200 }, (_, i) => ({
      op: 'put' as const,
      object: { ...site(i), metadata: { name: `f${i}` } },
    }));
    const lateSplit = await oldStore.txn(many, { fence }, { split: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isTetherError(lateSplit, 'TETHER_E_PRECONDITION')).toBe(true);
    expect((await nextStore.list('Site')).items.map((i) => i.name)).toEqual(['fenced']);
    // The new leader's fence works.
    await nextStore.txn([{ op: 'put', object: site(3) }], { fence: next.fence()! });
    expect((await nextStore.get('Site', 'fenced'))?.object.spec).toEqual({ v: 3 });
  });

  it('kill -9 and restart of etcd: the leader steps down without keepalive answers; afterwards exactly one leads', async () => {
    const url = etcd.url();
    const [s1, s2] = [await etcdStore(url), await etcdStore(url)];
    const [e1, e2] = [election(s1), election(s2)];
    const leaders = () => [e1, e2].filter((e) => e.isLeader());
    await waitFor('a leader', () => leaders().length === 1, 30_000);
    const before = leaders()[0]!.fence()!.createRevision;
    await etcd.kill9();
    // TTL 2 s: no answer for 1.6 s ends the term on the replica's own clock.
    await waitFor('the leader to step down while etcd is down', () => leaders().length === 0, 30_000);
    await etcd.restart();
    await waitFor('one leader again', () => leaders().length === 1, 60_000);
    for (let i = 0; i < 10; i++) {
      expect(leaders().length).toBe(1);
      await new Promise((r) => setTimeout(r, 100));
    }
    // A new term (a new key), so writes fenced with the old one are refused.
    expect(leaders()[0]!.fence()!.createRevision).toBeGreaterThan(before);
  }, 120_000);

  it('two writers create networks at once on two store clients: every network gets exactly one VNI, all distinct', async () => {
    const url = etcd.url();
    const m1 = await StoreMirror.open(await etcdStore(url), { log });
    const m2 = await StoreMirror.open(await etcdStore(url), { log });
    closers.push(
      () => m1.close(),
      () => m2.close(),
    );
    const apply = (m: StoreMirror, name: string) => {
      const nets = new NetworkReconciler(m, log);
      return txnWithClaims(m, () => {
        const withStatus = nets.withStatus([vn(name)]);
        return [
          ...withStatus.map((object) => ({ op: 'put' as const, object })),
          ...vniClaimOps(m, withStatus),
        ];
      });
    };
    const names = Array.from({ length: 12 }, (_, i) => `net${i}`);
    await Promise.all(names.map((n, i) => apply(i % 2 ? m1 : m2, n)));
    await waitFor('both copies to see every network', () =>
      [m1, m2].every((m) => m.list('VirtualNetwork').items.length === names.length),
    );
    const vnis = m1.list('VirtualNetwork').items.map((i) => (i.object.status as { vni: number }).vni);
    expect(new Set(vnis).size).toBe(names.length);
    const claims = m1.list(CLAIM_KIND).items.filter((c) => c.name.startsWith('vni.'));
    expect(claims.map((c) => c.name).sort()).toEqual(vnis.map((v) => `vni.${v}`).sort());
  });

  it('two hellos declaring one VTEP for two nodes on two store clients: exactly one is recorded', async () => {
    const url = etcd.url();
    const m1 = await StoreMirror.open(await etcdStore(url), { log });
    const m2 = await StoreMirror.open(await etcdStore(url), { log });
    closers.push(
      () => m1.close(),
      () => m2.close(),
    );
    const ca = await createCA('leader-test');
    for (let round = 0; round < 5; round++) {
      const a = `a${round}`;
      const b = `b${round}`;
      await m1.txn([
        { op: 'put', object: node(a) },
        { op: 'put', object: node(b) },
      ]);
      await waitFor('both copies to have the nodes', () => m2.get('Node', b));
      const vtep = `192.0.2.${10 + round}`;
      const r1 = new Registry(m1, ca, { nodeCertSeconds: 3600 });
      const r2 = new Registry(m2, ca, { nodeCertSeconds: 3600 });
      const out = await Promise.allSettled([r1.recordVtep(a, vtep), r2.recordVtep(b, vtep)]);
      const ok = out.filter((o) => o.status === 'fulfilled');
      expect(ok.length).toBe(1);
      const refused = out.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(isTetherError(refused.reason, 'TETHER_E_CLAIM')).toBe(true);
      await waitFor('the copy to see the winner', () =>
        [a, b].some(
          (n) => (m1.get('Node', n)?.object.status as { vtep?: string } | undefined)?.vtep === vtep,
        ),
      );
      const holders = [a, b].filter(
        (n) => (m1.get('Node', n)?.object.status as { vtep?: string } | undefined)?.vtep === vtep,
      );
      expect(holders.length).toBe(1);
    }
  });

  it('two applies of a Gateway for one site on two store clients: the set claim lets exactly one through', async () => {
    const url = etcd.url();
    const m1 = await StoreMirror.open(await etcdStore(url), { log });
    const m2 = await StoreMirror.open(await etcdStore(url), { log });
    closers.push(
      () => m1.close(),
      () => m2.close(),
    );
    const gw = (name: string, site: string, pool: string): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name },
      spec: { site, localAsn: 65001, pool: [pool], peers: [{ name: 'r', address: '10.0.0.1', asn: 65000 }] },
    });
    // What Admin.Apply does for Gateway/FloatingIP objects: the cross-object check on the
    // copy, then the write together with the set's claim.
    const apply = (m: StoreMirror, o: TetherObject) =>
      txnWithClaims(m, () => {
        const after = [...m.list('Gateway').items.map((i) => i.object), o];
        const issues = gatewayClaimIssues(after, new Set([`Gateway/${o.metadata.name}`]));
        if (issues.length) throw new TetherError('TETHER_E_CLAIM', issues[0]!.message);
        return [{ op: 'put', object: o }, serializeOn(m, 'gateways')];
      });
    for (let round = 0; round < 5; round++) {
      const site = `gs${round}`;
      const out = await Promise.allSettled([
        apply(m1, gw(`${site}-a`, site, `198.51.100.${round * 32}/28`)),
        apply(m2, gw(`${site}-b`, site, `198.51.100.${round * 32 + 16}/28`)),
      ]);
      expect(out.filter((o) => o.status === 'fulfilled').length).toBe(1);
      const refused = out.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(isTetherError(refused.reason, 'TETHER_E_CLAIM')).toBe(true);
    }
    await waitFor('the copy to see every gateway', () => m1.list('Gateway').items.length === 5);
  });

  it('two nodes report one MAC at once through two store clients: exactly one endpoint is stored', async () => {
    const url = etcd.url();
    const m1 = await StoreMirror.open(await etcdStore(url), { log });
    const m2 = await StoreMirror.open(await etcdStore(url), { log });
    closers.push(
      () => m1.close(),
      () => m2.close(),
    );
    const n = (name: string, vtep: string): TetherObject => ({
      ...node(name),
      status: { phase: 'Approved', vtep },
    });
    await m1.txn([
      {
        op: 'put',
        object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 's1' }, spec: {} },
      },
      { op: 'put', object: n('na', '192.0.2.101') },
      { op: 'put', object: n('nb', '192.0.2.102') },
      { op: 'put', object: vn('red') },
    ]);
    await new NetworkReconciler(m1, log).reconcile();
    await waitFor('the second copy to see the network status', () =>
      (m2.get('VirtualNetwork', 'red')?.object.status as { nodeBlocks?: Record<string, string> } | undefined)
        ?.nodeBlocks?.nb
        ? true
        : undefined,
    );
    const blocks = (m1.get('VirtualNetwork', 'red')!.object.status as { nodeBlocks: Record<string, string> })
      .nodeBlocks;
    const ipIn = (cidr: string, i: number) => {
      const [base] = cidr.split('/');
      const o = base!.split('.').map(Number);
      return `${o[0]}.${o[1]}.${o[2]}.${o[3]! + i}`;
    };
    const report = (who: string, vtep: string, round: number) => [
      Buffer.from(
        JSON.stringify({
          metadata: { name: `w${round}` },
          spec: {
            network: 'red',
            ip: ipIn(blocks[who]!, 2 + round),
            mac: `02:00:00:00:10:${10 + round}`,
            vtep,
          },
        }),
      ),
    ];
    const e1 = new EndpointClaims(m1, log);
    const e2 = new EndpointClaims(m2, log);
    closers.push(async () => {
      e1.close();
      e2.close();
    });
    for (let round = 0; round < 5; round++) {
      const [ra, rb] = await Promise.all([
        e1.report('na', 's1', report('na', '192.0.2.101', round)),
        e2.report('nb', 's1', report('nb', '192.0.2.102', round)),
      ]);
      // Each report keeps only its own current endpoint: both reports are judged in full.
      expect(ra.accepted + rb.accepted).toBe(1);
      const refused = [...ra.refused, ...rb.refused];
      expect(refused.map((r) => r.code)).toEqual(['TETHER_E_CLAIM']);
      await waitFor('the copy to have the winner', () =>
        m1.list('Endpoint').items.some((i) => i.name.endsWith(`.w${round}`)),
      );
      const stored = m1
        .list('Endpoint')
        .items.filter((i) => (i.object.spec as { mac: string }).mac === `02:00:00:00:10:${10 + round}`);
      expect(stored.length).toBe(1);
    }
  });

  it('a replica with another CA is refused with TETHER_E_CONFIG', async () => {
    const m = await StoreMirror.open(await etcdStore(etcd.url()), { log });
    closers.push(() => m.close());
    const [ca1, ca2] = [await createCA('one'), await createCA('two')];
    await checkSharedCa(m, ca1.certPem);
    await checkSharedCa(m, ca1.certPem); // the same CA again: fine
    const e = await checkSharedCa(m, ca2.certPem).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isTetherError(e, 'TETHER_E_CONFIG')).toBe(true);
  });

  it('two controller processes on one etcd: one leader; kill -9 it and the other takes over; networks applied meanwhile get one VNI each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-h12lead-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const url = etcd.url();
    const TTL = 3;
    const dirA = join(dir, 'a');
    const dirB = join(dir, 'b');
    const initA = await initTestController(dirA, { datastore: url, leaseTtlSeconds: TTL });
    // Replica B: the same CA, server certificate and admin identity (docs/controller.md,
    // "Replicas on one etcd"), its own port.
    cpSync(dirA, dirB, { recursive: true });
    const portB = await freePort();
    const confB = join(dirB, 'controller.yaml');
    const c = parse(readFileSync(confB, 'utf8')) as Record<string, unknown>;
    writeFileSync(confB, stringify({ ...c, listen: `127.0.0.1:${portB}`, advertise: `127.0.0.1:${portB}` }));
    const adminB = join(dirB, 'admin.yaml');
    writeFileSync(adminB, readFileSync(adminB, 'utf8').replaceAll(initA.addr, `127.0.0.1:${portB}`));
    const initB = { addr: `127.0.0.1:${portB}`, port: portB, cfg: adminB };
    const a = await startTestController(dirA, initA);
    closers.push(() => a.daemon.stop());
    const b = await startTestController(dirB, initB);
    closers.push(() => b.daemon.stop());
    const leads = (t: TestController) => /controller became leader/.test(t.daemon.log());
    await waitFor('one controller to lead', () => leads(a) || leads(b), 30_000);
    await new Promise((r) => setTimeout(r, 2 * TTL * 1000));
    expect([a, b].filter(leads).length).toBe(1);
    const leader = leads(a) ? a : b;
    const other = leader === a ? b : a;

    const applyNet = async (t: TestController, name: string) => {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(f, stringify(vn(name)));
      for (;;) {
        const r = await runTether(['apply', '-f', f, '--config', t.cfg]);
        if (r.code === 0) return;
        // The killed replica: apply through the survivor instead.
        if (t === leader) t = other;
        else throw new Error(`apply ${name} failed: ${r.stderr}`);
      }
    };
    await applyNet(leader, 'before');
    // Kill -9 the leader while networks are being applied on both.
    const applying = Promise.all(
      Array.from({ length: 6 }, (_, i) => applyNet(i % 2 ? leader : other, `during${i}`)),
    );
    const killedAt = Date.now();
    await leader.daemon.kill9();
    await waitFor('the survivor to lead', () => leads(other), 60_000, 50);
    const takeoverMs = Date.now() - killedAt;
    await applying;
    await applyNet(other, 'after');
    console.log(`leader takeover after kill -9: ${takeoverMs} ms (lease TTL ${TTL} s)`);
    expect(takeoverMs).toBeGreaterThan(0);

    const list = async () => {
      const r = await runTether(['get', 'virtualnetworks', '-o', 'json', '--config', other.cfg]);
      expect(r.code).toBe(0);
      const parsed = JSON.parse(r.stdout) as { items?: TetherObject[] } | TetherObject[];
      return Array.isArray(parsed) ? parsed : (parsed.items ?? []);
    };
    const want = ['before', 'after', ...Array.from({ length: 6 }, (_, i) => `during${i}`)];
    const items = await waitFor(
      'every network to have its VNI',
      async () => {
        const l = await list();
        return l.length === want.length &&
          l.every((n) => typeof (n.status as { vni?: number })?.vni === 'number')
          ? l
          : undefined;
      },
      60_000,
      200,
    );
    const vnis = items.map((n) => (n.status as { vni: number }).vni);
    expect(new Set(vnis).size).toBe(want.length);
    expect(items.map((n) => n.metadata.name).sort()).toEqual(want.sort());
  }, 180_000);
});

// Leadership on a single-writer store is the process itself.
describe('SoleWriter', () => {
  it('is always the leader and fences nothing', async () => {
    const { SoleWriter } = await import('../../src/controller/leader.js');
    const l: Leadership = new SoleWriter('x');
    expect(l.isLeader()).toBe(true);
    expect(l.fence()).toBeUndefined();
  });
});
