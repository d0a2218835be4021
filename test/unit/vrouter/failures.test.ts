import { describe, expect, it } from 'vitest';
import type { FakeKernel } from '../../../src/kernel/fake.js';
import type { KernelOpName, NftTable } from '../../../src/kernel/types.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';
import { observe } from '../../../src/node/vrouter/observe.js';
import { plan } from '../../../src/node/vrouter/planner.js';
import { allocateTransit } from '../../../src/node/vrouter/resources.js';
import { fakeNode, net, node } from './helpers.js';

const noRunner = {
  run: () => {
    throw new Error('the fake kernel must be used');
  },
};

function desired(): DesiredNodeNetwork {
  const t = allocateTransit([100, 200]);
  return node(
    [
      net('red', 100, {
        localBreakout: true,
        breakoutTransit: t.get(100)!,
        subnets: ['10.1.0.0/24', '10.9.0.0/24'],
        localEndpoints: [
          { id: 'a', hostIfname: 'h1', mac: '02:00:00:00:00:0a', ip: '10.1.0.10', labels: { app: 'web' } },
        ],
        remoteEndpoints: [
          { mac: '02:00:00:00:00:0b', ip: '10.1.0.11', vtep: '192.168.0.2', labels: { app: 'db' } },
          { mac: '02:00:00:00:00:0c', ip: '10.1.0.12', vtep: '192.168.0.3', labels: {} },
        ],
        policies: [
          {
            name: 'p',
            defaultAction: 'deny',
            rules: [
              {
                name: 'r',
                action: 'allow',
                from: { matchLabels: { app: 'web' } },
                to: { matchLabels: { app: 'db' } },
                ports: [{ protocol: 'tcp', port: 5432 }],
              },
            ],
          },
        ],
      }),
      net('blue', 200, {
        localBreakout: true,
        breakoutTransit: t.get(200)!,
        localEndpoints: [
          { id: 'b', hostIfname: 'h2', mac: '02:00:00:00:00:1a', ip: '10.1.0.10', labels: {} },
        ],
        remoteEndpoints: [{ mac: '02:00:00:00:00:1b', ip: '10.1.0.11', vtep: '192.168.0.2', labels: {} }],
      }),
    ],
    { breakout: { uplinkIfname: 'up0' } },
  );
}

async function cleanResult(): Promise<Record<string, unknown>> {
  const k = fakeNode(['h1', 'h2']);
  const r = await new VRouter(noRunner, silentLogger(), { kernel: k }).sync(desired());
  expect(r.ok).toBe(true);
  return k.dump();
}

const ALL_OPS: KernelOpName[] = [
  'netns-add',
  'vxlan-add',
  'link-move',
  'veth-add',
  'bridge-add',
  'link-set',
  'addr-replace',
  'route-replace',
  'neigh-replace',
  'fdb-replace',
  'sysctl',
  'nft-table',
];

describe('fake kernel: behaves like the kernel', () => {
  it('EEXIST on duplicate add, ENOENT on missing delete, replace always wins', async () => {
    const k = fakeNode();
    const add = { op: 'netns-add', name: 'x' } as const;
    expect((await k.apply('ip', undefined, [add])).failures).toEqual([]);
    expect((await k.apply('ip', undefined, [add])).failures[0]?.message).toMatch(/File exists/);
    const del = { op: 'neigh-del', netns: 'x', dev: 'lo', ip: '10.0.0.1' } as const;
    expect((await k.apply('ip', 'x', [del])).failures[0]?.message).toMatch(/No such file/);
    const rep = {
      op: 'neigh-replace',
      netns: 'x',
      dev: 'lo',
      ip: '10.0.0.1',
      mac: '02:00:00:00:00:01',
    } as const;
    expect((await k.apply('ip', 'x', [rep, rep])).failures).toEqual([]);
  });

  it('VNIs are unique per namespace holding the socket, even after the device moved', async () => {
    const k = fakeNode();
    const vx = (name: string) =>
      ({
        op: 'vxlan-add',
        netns: 'node1',
        name,
        vni: 7,
        local: '192.168.0.1',
        dev: 'ul0',
        dstport: 4789,
        mtu: 1450,
      }) as const;
    await k.apply('ip', undefined, [{ op: 'netns-add', name: 'x' }]);
    expect(
      (await k.apply('ip', 'node1', [vx('a'), { op: 'link-move', netns: 'node1', name: 'a', to: 'x' }]))
        .failures,
    ).toEqual([]);
    expect((await k.apply('ip', 'node1', [vx('b')])).failures[0]?.message).toMatch(/VNI already exists/);
  });

  it('an nft batch is one transaction: a failure leaves the tables as they were', async () => {
    const k = fakeNode();
    k.failNext('nft-set');
    const t = {
      family: 'ip' as const,
      name: 't',
      fingerprint: 'f',
      counters: [],
      sets: [{ name: 's', type: 'ipv4_addr', elements: [] }],
      chains: [],
    } satisfies NftTable;
    const r = await k.apply('nft', 'node1', [
      { op: 'nft-table', netns: 'node1', table: t },
      { op: 'nft-set', netns: 'node1', family: 'ip', table: 't', set: 's', elements: ['10.0.0.1'] },
    ]);
    expect(r.failures.length).toBe(2);
    const s = await k.readNs('node1', { nftTables: [{ family: 'ip', name: 't' }] });
    expect(s?.nft).toEqual([]);
  });
});

describe('VRouter against a fake kernel that fails on demand', () => {
  it('converges to the same state from a clean run', async () => {
    const k = fakeNode(['h1', 'h2']);
    const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
    const r = await vr.sync(desired());
    expect(r.ok).toBe(true);
    expect(r.passes).toBe(1);
    const again = await vr.sync(desired());
    expect(again.ops).toBe(0);
  });

  for (const op of ALL_OPS)
    for (const after of [0, 1])
      it(`a failing ${op} (#${after + 1}) is reported, and the next sync converges to exactly the clean state`, async () => {
        const expected = await cleanResult();
        const k = fakeNode(['h1', 'h2']);
        k.failNext(op, `injected ${op} failure`, after);
        const first = await new VRouter(noRunner, silentLogger(), { kernel: k, maxPasses: 1 }).sync(
          desired(),
        );
        const opCount = first.ops;
        if (!first.ok) expect(first.failures.some((f) => f.message === `injected ${op} failure`)).toBe(true);
        else expect(opCount).toBeGreaterThan(0); // the op kind occurred fewer than `after + 1` times
        // A new agent (as after a restart) finishes the job.
        const second = await new VRouter(noRunner, silentLogger(), { kernel: k }).sync(desired());
        expect(second.ok, JSON.stringify(second.failures)).toBe(true);
        expect(plan(desired(), await observe(k, desired())).ops).toEqual([]);
        expect(await k.dump()).toEqual(expected);
      });

  it('retries within one sync: a transient failure is absorbed by the next pass', async () => {
    const k = fakeNode(['h1', 'h2']);
    k.failNext('fdb-replace');
    const r = await new VRouter(noRunner, silentLogger(), { kernel: k }).sync(desired());
    expect(r.ok).toBe(true);
    expect(r.passes).toBe(2);
  });

  it('a plan interrupted after every prefix of its batches converges (restartable at any moment)', async () => {
    const expected = await cleanResult();
    const probe = fakeNode(['h1', 'h2']);
    const total = plan(desired(), await observe(probe, desired())).ops.length;
    for (let cut = 0; cut < total; cut += 3) {
      const k: FakeKernel = fakeNode(['h1', 'h2']);
      const p = plan(desired(), await observe(k, desired()));
      // apply only the first `cut` ops, one by one (as if killed right after op #cut)
      for (const op of p.ops.slice(0, cut)) {
        const { opTool, opNetns } = await import('../../../src/kernel/types.js');
        await k.apply(opTool(op), opNetns(op), [op]);
      }
      const r = await new VRouter(noRunner, silentLogger(), { kernel: k }).sync(desired());
      expect(r.ok, `cut at ${cut}: ${JSON.stringify(r.failures)}`).toBe(true);
      expect(await k.dump()).toEqual(expected);
    }
  });

  it('serialises concurrent syncs: the second one finds nothing to do', async () => {
    const k = fakeNode(['h1', 'h2']);
    const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
    const [a, b] = await Promise.all([vr.sync(desired()), vr.sync(desired())]);
    expect(a.ok && b.ok).toBe(true);
    expect(a.ops).toBeGreaterThan(0);
    expect(b.ops).toBe(0);
  });

  it('reports progress before every batch', async () => {
    const k = fakeNode(['h1', 'h2']);
    const seen: string[] = [];
    const vr = new VRouter(noRunner, silentLogger(), {
      kernel: k,
      onProgress: (p) => seen.push(`${p.pass}:${p.batch + 1}/${p.batches}:${p.tool}`),
    });
    const r = await vr.sync(desired());
    expect(seen.length).toBe(r.batches);
    expect(seen[0]).toBe(`1:1/${r.batches}:ip`);
  });

  it('reads policy drop counters per rule and for the default deny', async () => {
    const k = fakeNode(['h1', 'h2']);
    const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
    await vr.sync(desired());
    k.counterAdd('t1-vn100', 'inet', 'tether_policy', 'p0r0', 2);
    k.counterAdd('t1-vn100', 'inet', 'tether_policy', 'default_deny', 5);
    expect(await vr.counters(desired())).toEqual([
      { network: 'red', policy: 'p', rule: 'r', packets: 2, bytes: 168 },
      { network: 'red', policy: '(all)', rule: '(default)', packets: 5, bytes: 420 },
    ]);
  });

  it('teardown removes every Tether object of the node and nothing else', async () => {
    const k = fakeNode(['h1', 'h2']);
    const before = await k.dump();
    const vr = new VRouter(noRunner, silentLogger(), { kernel: k });
    await vr.sync(desired());
    const r = await vr.teardown(desired());
    expect(r.ok).toBe(true);
    const after = await k.dump();
    // the workload host ends went with their namespaces (they had been moved in); all else is as before
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    expect(after.node1).toMatchObject({
      nft: [],
      links: expect.not.arrayContaining([expect.objectContaining({ name: 'tbo100' })]),
    });
  });

  it('rejects invalid desired state before touching the kernel', async () => {
    const k = fakeNode(['h1']);
    const d = desired();
    d.networks[0]!.gateway = '10.200.0.1';
    await expect(new VRouter(noRunner, silentLogger(), { kernel: k }).sync(d)).rejects.toMatchObject({
      code: 'TETHER_E_INVALID',
      details: { field: 'networks[0].gateway' },
    });
    expect(k.processes).toBe(0);
  });
});
