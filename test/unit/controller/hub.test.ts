import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { type SessionCall, SessionHub, type SessionOptions } from '../../../src/controller/hub.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { silentLogger } from '../../../src/lib/log.js';
import { syncControllerStore } from '../../support/sync-store.js';

class FakeCall extends EventEmitter {
  sent: ControllerMessage[] = [];
  ended = false;
  destroyed = false;
  /** While stalled, the transport takes nothing: write callbacks wait here. */
  stalled = false;
  pending: Array<() => void> = [];
  write(m: ControllerMessage, cb?: () => void): boolean {
    this.sent.push(m);
    if (cb) {
      if (this.stalled) this.pending.push(cb);
      else cb();
    }
    return true;
  }
  resume(): void {
    this.stalled = false;
    const p = this.pending;
    this.pending = [];
    for (const cb of p) cb();
  }
  destroy(): void {
    this.destroyed = true;
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

function setup(opts: { sendQueueBytes?: number } = {}) {
  const store = new MemoryStore();
  const hub = new SessionHub(syncControllerStore(store), silentLogger(), { heartbeatMs: 1000, ...opts });
  const open = (node: string, site: string, held: number, o: SessionOptions = {}) => {
    const call = new FakeCall();
    hub.open(call as unknown as SessionCall, node, site, held, 'boot', o);
    return call;
  };
  return { store, hub, open };
}

const nodeObj = (name: string, site: string, phase = 'Approved', vtep?: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Node',
  metadata: { name },
  spec: { site, facts: { hostname: `${name}-host`, macs: ['02:00:00:00:00:aa'] } },
  status: {
    phase,
    certSerials: ['aa01', 'aa00'],
    csrPem: '-----BEGIN CERTIFICATE REQUEST-----secret',
    issuedCertPem: '-----BEGIN CERTIFICATE-----x',
    keyFingerprint: 'f'.repeat(64),
    enrolledAt: '2026-01-01T00:00:00Z',
    ...(vtep ? { vtep } : {}),
  },
});

/** Every Node object a call received (snapshot chunks and deltas), parsed. */
function nodesSent(call: FakeCall): TetherObject[] {
  return call.sent
    .flatMap((m) => [...(m.delta?.put ?? []), ...(m.snapshot_chunk?.put ?? [])])
    .filter((r) => r.kind === 'Node')
    .map((r) => JSON.parse(Buffer.from(r.json as Uint8Array).toString()) as TetherObject);
}

describe('SessionHub', () => {
  it('sends a node holding nothing a snapshot of its site slice, closed by an end marker', async () => {
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
    expect(call.names().some((n) => n.startsWith('EnrollmentToken/'))).toBe(false);
  });

  it('resumes a node from its revision with only what changed in its slice', async () => {
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

  it('falls back to a snapshot when a network the node held was deleted since its revision', async () => {
    const { store, open } = setup();
    store.txn([{ op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/24'] }) }]);
    const held = store.revision();
    store.txn([{ op: 'delete', kind: 'VirtualNetwork', name: 'red' }]);
    expect(open('n1', 'a', held).kinds()).toEqual(['snapshot_begin', 'snapshot_end']);
  });

  it("falls back to a snapshot when a network changed its sites since the node's revision", async () => {
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

  it('streams deltas per site and moves endpoints in and out with their network', async () => {
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

  it('replaces an older session of the same node and closes on demand', async () => {
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

  it("carries the site roster: a summary of each of the site's nodes and nothing else of them", async () => {
    const { store, open } = setup();
    store.txn([
      { op: 'put', object: obj('Site', 'a', {}) },
      { op: 'put', object: obj('Site', 'b', {}) },
      { op: 'put', object: nodeObj('n1', 'a', 'Approved', '192.0.2.1') },
      { op: 'put', object: nodeObj('n2', 'a', 'Pending') },
      { op: 'put', object: nodeObj('m1', 'b', 'Approved', '192.0.2.9') },
    ]);
    const call = open('n1', 'a', 0);
    const nodes = nodesSent(call).sort((x, y) => x.metadata.name.localeCompare(y.metadata.name));
    expect(nodes.map((n) => n.metadata.name)).toEqual(['n1', 'n2']);
    for (const n of nodes) {
      expect(Object.keys(n).sort()).toEqual(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
      expect(Object.keys(n.metadata).sort()).toEqual(['name', 'revision']);
      expect(n.spec).toEqual({ site: 'a' });
      expect(Object.keys(n.status ?? {}).every((k) => ['phase', 'vtep', 'certSerials'].includes(k))).toBe(
        true,
      );
      expect(JSON.stringify(n)).not.toMatch(/BEGIN|facts|keyFingerprint|hostname/);
    }
    expect(nodes[0]!.status).toEqual({ phase: 'Approved', vtep: '192.0.2.1', certSerials: ['aa01', 'aa00'] });
    expect(nodes[1]!.status).toEqual({ phase: 'Pending', certSerials: ['aa01', 'aa00'] });

    // Deltas: a change of a node of the site arrives as its summary, another site's never.
    call.sent = [];
    store.txn([{ op: 'put', object: nodeObj('n2', 'a', 'Revoked') }]);
    store.txn([{ op: 'put', object: nodeObj('m1', 'b', 'Revoked') }]);
    expect(nodesSent(call).map((n) => [n.metadata.name, n.status?.phase])).toEqual([['n2', 'Revoked']]);
    expect(JSON.stringify(call.sent)).not.toContain('m1');
    store.txn([{ op: 'delete', kind: 'Node', name: 'n2' }]);
    expect(call.deletes()).toEqual(['Node/n2']);
    // …and resuming from history yields the same summaries.
    const held = store.revision();
    store.txn([{ op: 'put', object: nodeObj('n3', 'a', 'Approved', '192.0.2.3') }]);
    const resumed = open('n9', 'a', held);
    expect(resumed.kinds()).toEqual(['delta']);
    expect(nodesSent(resumed).map((n) => n.status)).toEqual([
      { phase: 'Approved', vtep: '192.0.2.3', certSerials: ['aa01', 'aa00'] },
    ]);
  });

  it('keeps one proxy session per site next to node sessions, and a tiny record per proxied node', async () => {
    const { store, hub, open } = setup();
    store.txn([
      { op: 'put', object: obj('Site', 'a', {}) },
      { op: 'put', object: nodeObj('n1', 'a') },
      { op: 'put', object: nodeObj('n2', 'a') },
      { op: 'put', object: nodeObj('n3', 'a', 'Revoked') },
      { op: 'put', object: nodeObj('m1', 'b') },
    ]);
    const direct = open('n1', 'a', 0);
    const p1 = open('n1', 'a', 0, { role: 'proxy' });
    expect(direct.ended).toBe(false);
    expect(p1.kinds()).toEqual(['snapshot_begin', 'snapshot_chunk', 'snapshot_end']);
    expect(hub.proxyCount()).toBe(1);
    // A worse-ranked node cannot take a live proxy session over...
    expect(() => open('n2', 'a', 0, { role: 'proxy' })).toThrow(/live proxy session from node "n1"/);
    expect(p1.ended).toBe(false);
    // ...only once that session is silent (or from a better-ranked node).
    hub.proxyOf('a')!.lastHeard = 0;
    const p2 = open('n2', 'a', 0, { role: 'proxy' });
    expect(p1.ended).toBe(true);
    expect(p1.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_CONFLICT');
    expect(hub.proxyCount()).toBe(1);
    const s = hub.proxyOf('a')!;
    // Move the site to revision 10, so that the acks below are of revisions the proxy got.
    for (let i = 0; i < 9; i++) store.txn([{ op: 'put', object: obj('Site', 'a', { i }) }]);
    expect(s.sent).toBe(10);
    hub.siteAgents(s, {
      complete: true,
      agents: [
        { node: 'n2', acked: 7, connected: true, boot_id: 'b2' },
        { node: 'n3', acked: 7, connected: true, boot_id: 'b3' },
        { node: 'm1', acked: 7, connected: true, boot_id: 'bm' },
        { node: 'ghost', acked: 7, connected: true, boot_id: 'bg' },
      ],
    });
    expect(hub.info('n2')).toMatchObject({ connected: true, via: 'n2', acked: 7, bootId: 'b2' });
    // Not approved, another site's, unknown: not remembered.
    expect(hub.info('n3')).toBeUndefined();
    expect(hub.info('m1')).toBeUndefined();
    expect(hub.info('ghost')).toBeUndefined();
    // The direct session wins over what a proxy says.
    expect(hub.info('n1')?.via).toBeUndefined();
    hub.siteAgents(s, {
      complete: false,
      agents: [{ node: 'n2', acked: 9, connected: true, boot_id: 'b2' }],
    });
    expect(hub.info('n2')?.acked).toBe(9);
    // Never more than the proxy was sent.
    hub.siteAgents(s, {
      complete: false,
      agents: [{ node: 'n2', acked: 2 ** 40, connected: true, boot_id: 'b2' }],
    });
    expect(hub.info('n2')?.acked).toBe(10);
    hub.siteAgents(s, { complete: true, agents: [] });
    expect(hub.info('n2')?.connected).toBe(false);
    // Revoking the node hosting the proxy ends the proxy session.
    expect(hub.closeNode('n2', 'TETHER_E_REVOKED', 'revoked')).toBe(true);
    expect(p2.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_REVOKED');
    expect(hub.proxyCount()).toBe(0);
    expect(hub.info('n2')).toBeUndefined();
  });
});

describe('SessionHub heartbeats', () => {
  afterEach(() => vi.useRealTimers());

  it("uses each peer's declared interval; a proxy only gets echoes and ends after 3 silent intervals", async () => {
    vi.useFakeTimers();
    const { hub, open } = setup();
    hub.start();
    const node = open('n1', 'a', 0, { heartbeatMs: 3000 });
    const proxy = open('n2', 'a', 0, { role: 'proxy', heartbeatMs: 4000 });
    const beats = (c: FakeCall) => c.sent.filter((m) => m.heartbeat).length;
    const ps = hub.proxyOf('a')!;
    expect(hub.info('n1')?.connected).toBe(true);
    vi.advanceTimersByTime(3500);
    expect(beats(node)).toBe(1);
    expect(beats(proxy)).toBe(0);
    // The proxy's heartbeat is echoed.
    hub.onMessage(ps, { heartbeat: { seq: 1, unix_ms: 1 } } as never);
    expect(beats(proxy)).toBe(1);
    vi.advanceTimersByTime(3 * 4000 - 500);
    expect(proxy.ended).toBe(false);
    vi.advanceTimersByTime(1500);
    expect(proxy.ended).toBe(true);
    expect(proxy.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_TIMEOUT');
    hub.stop();
  });

  it("does not count its own stall as the peers' silence, and still ends a peer silent while it listened", async () => {
    vi.useFakeTimers();
    const { hub, open } = setup();
    hub.start();
    const live = new FakeCall();
    const s1 = hub.open(live as unknown as SessionCall, 'n1', 'a', 0, 'boot', { heartbeatMs: 3000 });
    const dead = open('n2', 'a', 0, { heartbeatMs: 3000 });
    vi.advanceTimersByTime(2000);
    // The event loop blocked for 20 s (wall time moves, no timer runs): on waking, the tick
    // comes first, before the sockets are read, and must not take both peers for dead.
    vi.setSystemTime(Date.now() + 20_000);
    vi.advanceTimersByTime(100);
    expect(live.ended).toBe(false);
    expect(dead.ended).toBe(false);
    // What n1 sent meanwhile is read now; n2 stays silent while the hub listens.
    hub.onMessage(s1, { heartbeat: { seq: 1, unix_ms: 1 } } as never);
    vi.advanceTimersByTime(7000);
    expect(dead.ended).toBe(false);
    hub.onMessage(s1, { heartbeat: { seq: 2, unix_ms: 1 } } as never);
    vi.advanceTimersByTime(1500);
    expect(dead.ended).toBe(true);
    expect(dead.sent.at(-1)?.goodbye?.code).toBe('TETHER_E_TIMEOUT');
    expect(live.ended).toBe(false);
    hub.stop();
  });

  it('bounds a declared interval and takes 0 as the configured default', async () => {
    vi.useFakeTimers();
    const { hub, open } = setup();
    hub.start();
    const fast = open('n1', 'a', 0, { heartbeatMs: 1 });
    const dflt = open('n2', 'a', 0, { heartbeatMs: 0 });
    const slow = open('n3', 'a', 0, { heartbeatMs: 10_000_000 });
    vi.advanceTimersByTime(1100);
    expect(fast.sent.filter((m) => m.heartbeat).length).toBe(1);
    expect(dflt.sent.filter((m) => m.heartbeat).length).toBe(1);
    vi.advanceTimersByTime(100_000);
    // 120 s at most: still alive after 100 s of silence, gone after 3 × 120 s.
    expect(slow.ended).toBe(false);
    expect(fast.ended).toBe(true);
    vi.advanceTimersByTime(3 * 120_000);
    expect(slow.ended).toBe(true);
    hub.stop();
  });
});

describe('SessionHub send queues', () => {
  it('stops queueing deltas for a stalled session and sends a snapshot equal to the slice once it drains', async () => {
    const limit = 64 * 1024;
    const { store, hub, open } = setup({ sendQueueBytes: limit });
    store.txn([
      { op: 'put', object: obj('Site', 'a', {}) },
      { op: 'put', object: obj('VirtualNetwork', 'red', { subnets: ['10.1.0.0/16'] }) },
    ]);
    const stalled = open('n1', 'a', 0);
    const healthy = open('n2', 'a', 0);
    stalled.stalled = true;
    stalled.sent = [];
    healthy.sent = [];
    const ep = (i: number) =>
      obj('Endpoint', `n5.e${i % 300}`, {
        network: 'red',
        node: 'n5',
        site: 'a',
        mac: '02:00:00:00:00:01',
        ip: `10.1.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`,
        vtep: '192.0.2.5',
        pad: 'x'.repeat(200),
      });
    for (let i = 0; i < 3000; i++) store.txn([{ op: 'put', object: ep(i) }]);
    store.txn([{ op: 'delete', kind: 'Endpoint', name: 'n5.e7' }]);
    expect(healthy.sent.filter((m) => m.delta).length).toBe(3001);
    // What the stalled session was given stays near the limit, not 3000 deltas' worth.
    const bytes = (c: FakeCall) => c.sent.reduce((n, m) => n + JSON.stringify(m).length, 0);
    expect(stalled.sent.length).toBeLessThan(3000 / 4);
    expect(bytes(stalled)).toBeLessThan(4 * limit);
    expect(hub.overflows).toBe(1);

    stalled.sent = [];
    stalled.resume();
    await new Promise((r) => setImmediate(r));
    expect(stalled.kinds()[0]).toBe('snapshot_begin');
    expect(stalled.sent.at(-1)?.snapshot_end?.revision).toBe(store.revision());
    // The snapshot is the store's slice: the site, the network and the 299 live endpoints.
    const want = [
      'Site/a',
      'VirtualNetwork/red',
      ...store.list('Endpoint').items.map((i) => `Endpoint/${i.name}`),
    ];
    expect(stalled.names().sort()).toEqual(want.sort());
    // Back to deltas afterwards.
    stalled.sent = [];
    store.txn([{ op: 'put', object: ep(9999) }]);
    expect(stalled.kinds()).toEqual(['delta']);
  });
});
