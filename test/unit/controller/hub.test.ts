import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { type SessionCall, SessionHub } from '../../../src/controller/hub.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { silentLogger } from '../../../src/lib/log.js';

class FakeCall extends EventEmitter {
  sent: ControllerMessage[] = [];
  ended = false;
  write(m: ControllerMessage): boolean {
    this.sent.push(m);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  names(): string[] {
    return this.sent.flatMap((m) =>
      [...(m.delta?.put ?? []), ...(m.snapshot_chunk?.put ?? [])].map((r) => `${r.kind}/${r.name}`),
    );
  }
  deletes(): string[] {
    return this.sent.flatMap((m) => (m.delta?.deleted ?? []).map((d) => `${d.kind}/${d.name}`));
  }
  kinds(): string[] {
    return this.sent.map(
      (m) => Object.keys(m).find((k) => (m as Record<string, unknown>)[k] !== undefined) ?? '?',
    );
  }
}

const obj = (kind: string, name: string, spec: Record<string, unknown>): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
});

function setup() {
  const store = new MemoryStore();
  const hub = new SessionHub(store, silentLogger(), { heartbeatMs: 1000 });
  const open = (node: string, site: string, held: number) => {
    const call = new FakeCall();
    hub.open(call as unknown as SessionCall, node, site, held, 'boot');
    return call;
  };
  return { store, hub, open };
}

describe('SessionHub', () => {
  it('sends a node holding nothing a snapshot of its site slice, closed by an end marker', () => {
    const { store, open } = setup();
    store.txn([
      { op: 'put', object: obj('Site', 'a', {}) },
      { op: 'put', object: obj('Site', 'b', {}) },
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'] }) },
      { op: 'put', object: obj('VirtualNetwork', 'only-b', { subnets: ['10.2.0.0/24'], sites: ['b'] }) },
      {
        op: 'put',
        object: obj('Endpoint', 'n2.x', {
          network: 'red',
          node: 'n2',
          site: 'b',
          mac: '02:00:00:00:00:01',
          ip: '10.1.0.5',
          vtep: '192.0.2.2',
        }),
      },
      {
        op: 'put',
        object: obj('Endpoint', 'n2.y', {
          network: 'only-b',
          node: 'n2',
          site: 'b',
          mac: '02:00:00:00:00:02',
          ip: '10.2.0.5',
          vtep: '192.0.2.2',
        }),
      },
      {
        op: 'put',
        object: obj('EnrollmentToken', 'token-abcdef', {
          site: 'a',
          expiresAt: '2030-01-01T00:00:00Z',
          uses: 1,
        }),
      },
    ]);
    const call = open('n1', 'a', 0);
    expect(call.kinds()).toEqual(['snapshot_begin', 'snapshot_chunk', 'snapshot_end']);
    expect(call.names().sort()).toEqual(['Endpoint/n2.x', 'Site/a', 'VirtualNetwork/red']);
    expect(call.sent[2]!.snapshot_end).toEqual({ revision: store.revision(), count: 3 });
  });

  it('resumes a node from its revision with only what changed in its slice', () => {
    const { store, open } = setup();
    store.txn([{ op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'] }) }]);
    const held = store.revision();
    store.txn([{ op: 'put', object: obj('VirtualNetwork', 'blue', { subnets: ['10.3.0.0/24'] }) }]);
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'far', { subnets: ['10.4.0.0/24'], sites: ['z'] }) },
    ]);
    store.txn([
      {
        op: 'put',
        object: obj('NetworkPolicy', 'p', { network: 'blue', defaultAction: 'allow', rules: [] }),
      },
    ]);
    store.txn([{ op: 'delete', kind: 'NetworkPolicy', name: 'p' }]);
    const call = open('n1', 'a', held);
    expect(call.kinds()).toEqual(['delta']);
    expect(call.names()).toEqual(['VirtualNetwork/blue']);
    expect(call.deletes()).toEqual(['NetworkPolicy/p']);
    expect(call.sent[0]!.delta!.revision).toBe(store.revision());
  });

  it('falls back to a snapshot when a network the node held was deleted since its revision', () => {
    const { store, open } = setup();
    store.txn([{ op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'] }) }]);
    const held = store.revision();
    store.txn([{ op: 'delete', kind: 'VirtualNetwork', name: 'red' }]);
    expect(open('n1', 'a', held).kinds()).toEqual(['snapshot_begin', 'snapshot_end']);
  });

  it("falls back to a snapshot when a network changed its sites since the node's revision", () => {
    const { store, open } = setup();
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], sites: ['b'] }) },
    ]);
    const held = store.revision();
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], sites: ['a', 'b'] }) },
    ]);
    expect(open('n1', 'a', held).kinds()[0]).toBe('snapshot_begin');
  });

  it('streams deltas per site and moves endpoints in and out with their network', () => {
    const { store, open } = setup();
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], sites: ['b'] }) },
      {
        op: 'put',
        object: obj('Endpoint', 'n2.x', {
          network: 'red',
          node: 'n2',
          site: 'b',
          mac: '02:00:00:00:00:01',
          ip: '10.1.0.5',
          vtep: '192.0.2.2',
        }),
      },
    ]);
    const a = open('n1', 'a', 0);
    const b = open('n2', 'b', 0);
    a.sent = [];
    b.sent = [];
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], sites: ['a', 'b'] }) },
    ]);
    expect(a.names().sort()).toEqual(['Endpoint/n2.x', 'VirtualNetwork/red']);
    expect(b.names()).toEqual(['VirtualNetwork/red']);
    a.sent = [];
    store.txn([
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'], sites: ['b'] }) },
    ]);
    expect(a.deletes().sort()).toEqual(['Endpoint/n2.x', 'VirtualNetwork/red']);
    a.sent = [];
    store.txn([
      {
        op: 'put',
        object: obj('VirtualNetwork', 'other-site-only', { subnets: ['10.9.0.0/24'], sites: ['b'] }),
      },
    ]);
    expect(a.sent).toEqual([]);
  });

  it('replaces an older session of the same node and closes on demand', () => {
    const { hub, open } = setup();
    const first = open('n1', 'a', 0);
    const second = open('n1', 'a', 0);
    expect(first.ended).toBe(true);
    expect(first.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_CONFLICT');
    expect(hub.count()).toBe(1);
    expect(hub.closeNode('n1', 'TETHER_E_REVOKED', 'revoked')).toBe(true);
    expect(second.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_REVOKED');
    expect(hub.count()).toBe(0);
  });
});
