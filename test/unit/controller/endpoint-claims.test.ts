// A node may only speak for itself: every kind of endpoint claim a node must not make,
// through the real claim checks, the real endpoint index and a real (in-memory) store.

import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { DEFAULT_CLAIM_LIMITS, EndpointClaims } from '../../../src/controller/endpoints.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import type { Store } from '../../../src/controller/store/store.js';
import { silentLogger } from '../../../src/lib/log.js';
import { syncControllerStore } from '../../support/sync-store.js';

const V = 'tether.dev/v1';

function world(): Store {
  const store = new MemoryStore();
  const node = (name: string, site: string, vtep?: string): TetherObject => ({
    apiVersion: V,
    kind: 'Node',
    metadata: { name },
    spec: { site },
    status: { phase: 'Approved', ...(vtep ? { vtep } : {}) },
  });
  store.txn([
    { op: 'put', object: { apiVersion: V, kind: 'Site', metadata: { name: 's1' }, spec: {} } },
    { op: 'put', object: { apiVersion: V, kind: 'Site', metadata: { name: 's2' }, spec: {} } },
    { op: 'put', object: node('n1', 's1', '192.0.2.1') },
    { op: 'put', object: node('n2', 's1', '192.0.2.2') },
    { op: 'put', object: node('n3', 's2', '192.0.2.3') },
    { op: 'put', object: node('quiet', 's1') },
    {
      op: 'put',
      object: {
        apiVersion: V,
        kind: 'VirtualNetwork',
        metadata: { name: 'red' },
        spec: { subnets: ['10.1.0.0/24'], sites: ['s1', 's2'] },
        status: {
          vni: 4096,
          siteBlocks: { s1: '10.1.0.0/26', s2: '10.1.0.64/26' },
          nodeBlocks: {
            n1: '10.1.0.0/28',
            n2: '10.1.0.16/28',
            quiet: '10.1.0.32/28',
            n3: '10.1.0.64/28',
          },
        },
      },
    },
    {
      op: 'put',
      object: {
        apiVersion: V,
        kind: 'VirtualNetwork',
        metadata: { name: 'blue' },
        spec: { subnets: ['10.2.0.0/24'], sites: ['s2'] },
        status: { vni: 4097, siteBlocks: { s2: '10.2.0.0/24' }, nodeBlocks: { n3: '10.2.0.0/28' } },
      },
    },
    // n2's endpoint, and one of n2's stored before shares were enforced, inside n1's share.
    {
      op: 'put',
      object: endpoint('n2.a', { node: 'n2', ip: '10.1.0.18', mac: '02:00:00:00:00:02', vtep: '192.0.2.2' }),
    },
    {
      op: 'put',
      object: endpoint('n2.legacy', {
        node: 'n2',
        ip: '10.1.0.6',
        mac: '02:00:00:00:00:06',
        vtep: '192.0.2.2',
      }),
    },
  ]);
  return store;
}

function endpoint(
  name: string,
  spec: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): TetherObject {
  return {
    apiVersion: V,
    kind: 'Endpoint',
    metadata: { name },
    spec: { network: 'red', site: 's1', ...spec },
    ...extra,
  } as TetherObject;
}

/** What n1's agent would send for a good workload. */
function good(name = 'ok', over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: V,
    kind: 'Endpoint',
    metadata: { name: `n1.${name}` },
    spec: {
      network: 'red',
      node: 'n1',
      site: 's1',
      mac: '02:00:00:00:01:05',
      ip: '10.1.0.5',
      vtep: '192.0.2.1',
      ...over,
    },
  };
}

/** n1's second workload, valid unless a case changes a field. */
const x = (over: Record<string, unknown> = {}) =>
  good('x', { ip: '10.1.0.10', mac: '02:00:00:00:01:0a', ...over });

const enc = (o: unknown) => Buffer.from(JSON.stringify(o));

const bad: Array<[string, Record<string, unknown> | Buffer, string, string]> = [
  ["an address in another node's share", x({ ip: '10.1.0.20' }), 'TETHER_E_CLAIM', 'spec.ip'],
  ["an address in another site's block", x({ ip: '10.1.0.70' }), 'TETHER_E_CLAIM', 'spec.ip'],
  ['an address outside the network', x({ ip: '192.168.1.5' }), 'TETHER_E_CLAIM', 'spec.ip'],
  ['the gateway address', x({ ip: '10.1.0.1' }), 'TETHER_E_CLAIM', 'spec.ip'],
  ['the subnet network address', x({ ip: '10.1.0.0' }), 'TETHER_E_CLAIM', 'spec.ip'],
  [
    'a network that does not cover its site',
    x({ network: 'blue', ip: '10.2.0.5' }),
    'TETHER_E_CLAIM',
    'spec.network',
  ],
  ['a network that does not exist', x({ network: 'green' }), 'TETHER_E_CLAIM', 'spec.network'],
  ["another node's VTEP", x({ vtep: '192.0.2.2' }), 'TETHER_E_CLAIM', 'spec.vtep'],
  ['an arbitrary VTEP', x({ vtep: '203.0.113.9' }), 'TETHER_E_CLAIM', 'spec.vtep'],
  ["an IP another node's endpoint holds", x({ ip: '10.1.0.6' }), 'TETHER_E_CLAIM', 'spec.ip'],
  ["a MAC another node's endpoint holds", x({ mac: '02:00:00:00:00:02' }), 'TETHER_E_CLAIM', 'spec.mac'],
  ['a status', { ...x(), status: { ready: true } }, 'TETHER_E_CLAIM', 'status'],
  ['another node as owner', x({ node: 'n2' }), 'TETHER_E_CLAIM', 'spec.node'],
  ['another site', x({ site: 's2' }), 'TETHER_E_CLAIM', 'spec.site'],
  ['another kind', { ...x(), kind: 'VirtualNetwork' }, 'TETHER_E_INVALID', 'kind'],
  ['a multicast MAC', x({ mac: '01:00:5e:00:00:01' }), 'TETHER_E_INVALID', 'spec.mac'],
  ["the network's anycast gateway MAC", x({ mac: '02:74:67:00:10:00' }), 'TETHER_E_CLAIM', 'spec.mac'],
  ["another network's gateway MAC", x({ mac: '02:74:67:00:10:01' }), 'TETHER_E_CLAIM', 'spec.mac'],
  ['no JSON', Buffer.from('{"kind":'), 'TETHER_E_PARSE', ''],
  [
    'a too large endpoint',
    {
      ...x(),
      metadata: { name: 'n1.x', annotations: { a: 'z'.repeat(DEFAULT_CLAIM_LIMITS.maxEndpointBytes) } },
    },
    'TETHER_E_TOO_LARGE',
    '',
  ],
];

describe('endpoint claims', () => {
  it('stores a good endpoint with node and site from the identity', async () => {
    const store = world();
    const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
    const out = await claims.report('n1', 's1', [enc(good())]);
    expect(out.refused).toEqual([]);
    expect(out.accepted).toBe(1);
    expect(store.get('Endpoint', 'n1.ok')?.object.spec).toMatchObject({
      node: 'n1',
      site: 's1',
      vtep: '192.0.2.1',
    });
  });

  it.each(bad)(
    'refuses %s, stores the rest of the report, leaves other nodes alone',
    async (_what, item, code, field) => {
      const store = world();
      const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
      const before = store.get('Endpoint', 'n2.a')!.revision;
      const out = await claims.report('n1', 's1', [enc(good()), Buffer.isBuffer(item) ? item : enc(item)]);
      expect(out.accepted).toBe(1);
      expect(out.refused).toHaveLength(1);
      expect(out.refused[0]).toMatchObject({ code, field });
      expect(out.refused[0]!.message.length).toBeGreaterThan(10);
      expect(store.get('Endpoint', 'n1.ok')).toBeDefined();
      expect(store.get('Endpoint', 'n1.x')).toBeUndefined();
      expect(store.get('Endpoint', 'n2.a')!.revision).toBe(before);
      expect(store.get('Endpoint', 'n2.legacy')).toBeDefined();
      expect(claims.stats('n1')).toMatchObject({ refused: 1, byCode: { [code]: 1 } });
    },
  );

  it('refuses two endpoints of one report with the same IP or MAC (the second)', async () => {
    const store = world();
    const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
    const out = await claims.report('n1', 's1', [
      enc(good('a')),
      enc(good('b', { mac: '02:00:00:00:01:06' })),
      enc(good('c', { ip: '10.1.0.7' })),
      enc(good('a', { ip: '10.1.0.8', mac: '02:00:00:00:01:08' })),
    ]);
    expect(out.refused.map((r) => [r.name, r.field])).toEqual([
      ['n1.b', 'spec.ip'],
      ['n1.c', 'spec.mac'],
      ['n1.a', 'metadata.name'],
    ]);
    expect(out.accepted).toBe(1);
  });

  it('refuses every endpoint of a node whose hello declared no underlay address', async () => {
    const store = world();
    const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
    const out = await claims.report('quiet', 's1', [
      enc({
        ...good(),
        metadata: { name: 'q' },
        spec: { ...(good().spec as object), node: 'quiet', ip: '10.1.0.35' },
      }),
    ]);
    expect(out.refused[0]).toMatchObject({ code: 'TETHER_E_CLAIM', field: 'spec.vtep' });
    expect(store.list('Endpoint').items.filter((e) => e.name.startsWith('quiet.'))).toEqual([]);
  });

  it('refuses a report with too many endpoints whole, changing nothing', async () => {
    const store = world();
    const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
    await claims.report('n1', 's1', [enc(good())]);
    const rev = store.revision();
    const many = Array.from({ length: DEFAULT_CLAIM_LIMITS.maxEndpoints + 1 }, (_, i) => enc(good(`e${i}`)));
    const out = await claims.report('n1', 's1', many);
    expect(out.refused).toEqual([expect.objectContaining({ name: '*', code: 'TETHER_E_TOO_LARGE' })]);
    expect(store.revision()).toBe(rev);
    expect(store.get('Endpoint', 'n1.ok')).toBeDefined();
  });

  it('deletes the node’s endpoints missing from its report, in one revision', async () => {
    const store = world();
    const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
    await claims.report('n1', 's1', [
      enc(good('a')),
      enc(good('b', { ip: '10.1.0.9', mac: '02:00:00:00:01:09' })),
    ]);
    const out = await claims.report('n1', 's1', [enc(good('a'))]);
    expect(store.get('Endpoint', 'n1.b')).toBeUndefined();
    expect(store.get('Endpoint', 'n1.a')).toBeDefined();
    expect(out.revision).toBe(store.revision());
    // A refused endpoint that was stored before goes too: the report is the complete set.
    await claims.report('n1', 's1', [enc(good('a', { vtep: '192.0.2.99' }))]);
    expect(store.get('Endpoint', 'n1.a')).toBeUndefined();
  });

  it('stores nothing for a node that is not (or no longer) approved, whatever it reports', async () => {
    for (const phase of ['Revoked', 'Reset', 'Pending']) {
      const store = world();
      const claims = new EndpointClaims(syncControllerStore(store), silentLogger());
      const n1 = store.get('Node', 'n1')!;
      store.txn([{ op: 'put', object: { ...n1.object, status: { ...n1.object.status, phase } } }]);
      const rev = store.revision();
      const out = await claims.report('n1', 's1', [enc(good())]);
      expect(out.accepted, phase).toBe(0);
      expect(out.refused[0]).toMatchObject({ code: 'TETHER_E_PERMISSION' });
      expect(store.revision()).toBe(rev);
    }
    const store = world();
    store.txn([{ op: 'delete', kind: 'Node', name: 'n1' }]);
    const rev = store.revision();
    expect(
      (await new EndpointClaims(syncControllerStore(store), silentLogger()).report('n1', 's1', [enc(good())]))
        .accepted,
    ).toBe(0);
    expect(store.revision()).toBe(rev);
  });

  it('handles a report by lookups: no list of all Endpoints per report', async () => {
    const store = world();
    let lists = 0;
    const counting: Store = new Proxy(store, {
      get(target, prop, recv) {
        if (prop === 'list')
          return (kind?: string) => {
            if (kind === undefined || kind === 'Endpoint') lists++;
            return target.list(kind);
          };
        const v = Reflect.get(target, prop, recv);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const claims = new EndpointClaims(syncControllerStore(counting), silentLogger());
    const atStart = lists;
    for (let i = 0; i < 5; i++) await claims.report('n1', 's1', [enc(good()), enc(x({ ip: '10.1.0.6' }))]);
    await claims.report('n1', 's1', []);
    expect(lists - atStart).toBe(0);
    // The index follows the store: n2's endpoints deleted elsewhere free their MAC.
    store.txn([{ op: 'delete', kind: 'Endpoint', name: 'n2.a' }]);
    expect((await claims.report('n1', 's1', [enc(good('m', { mac: '02:00:00:00:00:02' }))])).refused).toEqual(
      [],
    );
  });
});
