import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { gatewayHaKey, gatewayHaKeys, haMasterKey } from '../../../src/controller/ha-keys.js';
import { type SessionCall, SessionHub } from '../../../src/controller/hub.js';
import { sliceView } from '../../../src/controller/slice.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { silentLogger } from '../../../src/lib/log.js';
import { haKeysOf } from '../../../src/node/gateway/ha.js';
import { syncControllerStore } from '../../support/sync-store.js';

const gw = (name: string, site: string, gen?: number): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Gateway',
  metadata: { name },
  spec: {
    site,
    nodes: ['a', 'b'],
    localAsn: 65001,
    pool: [],
    peers: [{ name: 'r', address: '10.0.0.1', asn: 65000 }],
    ...(gen !== undefined ? { haKeyGeneration: gen } : {}),
  },
});
// A stand-in CA key: derivation takes any text (the real one is a PEM).
const master = haMasterKey('ca key text for the test');

describe('HA heartbeat keys (controller)', () => {
  it('are derived: the same on every controller holding the CA key, apart per site, gateway, generation', () => {
    expect(haMasterKey('ca key text for the test').equals(master)).toBe(true);
    expect(haMasterKey('another CA').equals(master)).toBe(false);
    const k = gatewayHaKey(master, 's1', 'gw', 0);
    expect(k.byteLength).toBe(32);
    expect(gatewayHaKey(master, 's2', 'gw', 0).equals(k)).toBe(false);
    expect(gatewayHaKey(master, 's1', 'gw2', 0).equals(k)).toBe(false);
    expect(gatewayHaKey(master, 's1', 'gw', 1).equals(k)).toBe(false);
  });
  it('rotation: the current generation first, then the previous one; generation 0 alone', () => {
    expect(gatewayHaKeys(master, gw('gw', 's1')).map((k) => k.generation)).toEqual([0]);
    const two = gatewayHaKeys(master, gw('gw', 's1', 5));
    expect(two.map((k) => k.generation)).toEqual([5, 4]);
    // What the node decodes is the controller's key, byte for byte.
    const node = haKeysOf({ ...gw('gw', 's1', 5), status: { haKeys: two } });
    expect(node[1]!.key.equals(gatewayHaKey(master, 's1', 'gw', 4))).toBe(true);
  });
  it('only the slice view carries them; the object itself (what tether get reads) does not', () => {
    const o = gw('gw', 's1');
    const v = sliceView(o, master);
    expect((v.status as { haKeys?: unknown }).haKeys).toEqual(gatewayHaKeys(master, o));
    expect(o.status).toBeUndefined();
    expect(sliceView(o)).toBe(o);
  });
});

class Call extends EventEmitter {
  sent: ControllerMessage[] = [];
  write(m: ControllerMessage, cb?: () => void): boolean {
    this.sent.push(m);
    cb?.();
    return true;
  }
  destroy(): void {}
  end(): void {}
  gateways(): TetherObject[] {
    return this.sent
      .flatMap((m) => [...(m.delta?.put ?? []), ...(m.snapshot_chunk?.put ?? [])])
      .filter((r) => r.kind === 'Gateway')
      .map((r) => JSON.parse(Buffer.from(r.json as Uint8Array).toString()) as TetherObject);
  }
}

describe('the hub sends each site its Gateway with its keys, in snapshots and deltas', () => {
  it('a snapshot carries the site own Gateway with keys; a rotation arrives as a delta; other sites get nothing', () => {
    const store = new MemoryStore();
    const hub = new SessionHub(syncControllerStore(store), silentLogger(), {
      heartbeatMs: 1000,
      haMaster: master,
    });
    store.txn([
      {
        op: 'put',
        object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 's1' }, spec: {} },
      },
      { op: 'put', object: gw('gw', 's1') },
      { op: 'put', object: gw('gw2', 's2') },
    ]);
    const c1 = new Call();
    const c2 = new Call();
    hub.open(c1 as unknown as SessionCall, 'n1', 's1', 0, 'boot');
    hub.open(c2 as unknown as SessionCall, 'n2', 's2', 0, 'boot');
    const snap = c1.gateways();
    expect(snap.map((g) => g.metadata.name)).toEqual(['gw']);
    expect((snap[0]!.status as { haKeys: unknown }).haKeys).toEqual(gatewayHaKeys(master, gw('gw', 's1')));
    expect(c2.gateways().map((g) => g.metadata.name)).toEqual(['gw2']);
    store.txn([{ op: 'put', object: gw('gw', 's1', 1) }]);
    const after = c1.gateways().at(-1)!;
    expect(haKeysOf(after).map((k) => k.generation)).toEqual([1, 0]);
    // Never in the store.
    expect(store.get('Gateway', 'gw')?.object.status).toBeUndefined();
    hub.stop();
  });
});
