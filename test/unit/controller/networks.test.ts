import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import {
  NetworkReconciler,
  networkStatus,
  nodeBlockPrefix,
  VNI_BASE,
} from '../../../src/controller/networks.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { silentLogger } from '../../../src/lib/log.js';
import { syncControllerStore } from '../../support/sync-store.js';

const vn = (name: string, spec: Record<string, unknown>, status?: Record<string, unknown>): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'VirtualNetwork',
  metadata: { name },
  spec,
  ...(status ? { status } : {}),
});

describe('networkStatus', () => {
  it('allocates the lowest free VNI, keeps a given one, honours spec.vni', async () => {
    const a = vn('a', { subnets: ['10.1.0.0/24'] }, { vni: VNI_BASE });
    expect(networkStatus(vn('b', { subnets: ['10.2.0.0/24'] }), [a], []).vni).toBe(VNI_BASE + 1);
    expect(networkStatus(a, [a], []).vni).toBe(VNI_BASE);
    expect(networkStatus(vn('c', { subnets: ['10.3.0.0/24'], vni: 77 }), [a], []).vni).toBe(77);
    const clash = networkStatus(vn('d', { subnets: ['10.4.0.0/24'], vni: VNI_BASE }), [a], []);
    expect(clash.vni).toBeUndefined();
    expect(clash.message).toContain('already used');
  });

  it('gives each covered site its own block and never moves a block in use', async () => {
    const s1 = networkStatus(vn('red', { subnets: ['10.1.0.0/24'] }), [], ['b', 'a']);
    expect(s1.siteBlocks).toEqual({ a: '10.1.0.0/26', b: '10.1.0.64/26' });
    // A new site sorting first must not take a's block.
    const s2 = networkStatus(
      vn('red', { subnets: ['10.1.0.0/24'] }, s1 as Record<string, unknown>),
      [],
      ['0first', 'a', 'b'],
    );
    expect(s2.siteBlocks).toEqual({ '0first': '10.1.0.128/26', a: '10.1.0.0/26', b: '10.1.0.64/26' });
    expect(
      networkStatus(vn('big', { subnets: ['10.0.0.0/16'], sites: ['x'] }), [], ['x', 'y']).siteBlocks,
    ).toEqual({ x: '10.0.0.0/24' });
  });

  it('says when sites outnumber blocks', async () => {
    const st = networkStatus(vn('tiny', { subnets: ['10.9.0.0/28'] }), [], ['a', 'b', 'c', 'd', 'e']);
    expect(Object.keys(st.siteBlocks ?? {})).toHaveLength(4);
    expect(st.message).toContain('no address block left for site e');
  });

  it('splits a site block among its nodes so they never draw the same address', async () => {
    expect(nodeBlockPrefix(26)).toBe(28);
    expect(nodeBlockPrefix(24)).toBe(28);
    const nodes = new Map([['a', ['n2', 'n1']]]);
    const st = networkStatus(vn('red', { subnets: ['10.1.0.0/24'] }), [], ['a'], nodes);
    expect(st.nodeBlocks).toEqual({ n1: '10.1.0.0/28', n2: '10.1.0.16/28' });
    // n0 joins later: existing shares stay where they are.
    const st2 = networkStatus(
      vn('red', { subnets: ['10.1.0.0/24'] }, st as Record<string, unknown>),
      [],
      ['a'],
      new Map([['a', ['n0', 'n1', 'n2']]]),
    );
    expect(st2.nodeBlocks).toEqual({ n0: '10.1.0.32/28', n1: '10.1.0.0/28', n2: '10.1.0.16/28' });
  });
});

describe('NetworkReconciler', () => {
  it('writes status for networks as sites and nodes appear, and is idempotent', async () => {
    const store = new MemoryStore();
    const r = new NetworkReconciler(syncControllerStore(store), silentLogger());
    store.txn([
      { op: 'put', object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'a' }, spec: {} } },
      { op: 'put', object: vn('red', { subnets: ['10.1.0.0/24'] }) },
      {
        op: 'put',
        object: {
          apiVersion: 'tether.dev/v1',
          kind: 'Node',
          metadata: { name: 'n1' },
          spec: { site: 'a' },
          status: { phase: 'Approved' },
        },
      },
    ]);
    expect(await r.reconcile()).toBe(1);
    expect(store.get('VirtualNetwork', 'red')!.object.status).toEqual({
      vni: VNI_BASE,
      siteBlocks: { a: '10.1.0.0/26' },
      nodeBlocks: { n1: '10.1.0.0/28' },
    });
    expect(await r.reconcile()).toBe(0);
  });
});

describe('NetworkReconciler.withStatus', () => {
  it('reads no Node for an apply without networks (every apply passes through it)', async () => {
    const store = new MemoryStore();
    const reads: Array<string | undefined> = [];
    const list = store.list.bind(store);
    store.list = (kind?: string) => {
      reads.push(kind);
      return list(kind);
    };
    const r = new NetworkReconciler(syncControllerStore(store), silentLogger());
    expect(r.withStatus([])).toEqual([]);
    expect(reads).not.toContain('Node');
    // With a network it does read them (its node blocks depend on them).
    r.withStatus([vn('a', { subnets: ['10.1.0.0/24'] })]);
    expect(reads).toContain('Node');
  });
});
