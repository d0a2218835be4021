import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { type SessionCall, SessionHub } from '../../../src/controller/hub.js';
import { StoreMirror } from '../../../src/controller/mirror.js';
import { LocalDatastore } from '../../../src/controller/store/local.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { silentLogger } from '../../../src/lib/log.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
});

class Call {
  sent: Array<Record<string, unknown>> = [];
  write(m: Record<string, unknown>, cb?: () => void): boolean {
    this.sent.push(m);
    cb?.();
    return true;
  }
  end(): void {}
}

const tick = () => new Promise<void>((r) => setImmediate(r));
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  expect(cond()).toBe(true);
}

describe('StoreMirror', () => {
  it('reads its own writes after txn resolves, and sees another writer only through the watch', async () => {
    const inner = new MemoryStore();
    const ds = new LocalDatastore(inner, 'memory');
    const m = await StoreMirror.open(ds);
    const seen: number[] = [];
    m.subscribe((evs) => seen.push(evs[0]!.revision));
    const r = await m.txn([{ op: 'put', object: obj('Site', 's1', {}) }]);
    expect(m.get('Site', 's1')?.revision).toBe(r.revision);
    expect(seen).toEqual([r.revision]);
    // Another replica's write: committed in the datastore, not yet in this copy.
    inner.txn([{ op: 'put', object: obj('Site', 's2', {}) }]);
    expect(m.get('Site', 's2')).toBeUndefined();
    await until(() => m.get('Site', 's2') !== undefined);
    expect(m.revision()).toBe(inner.revision());
    await m.close();
  });

  it('a copy opened later keeps the datastore history, so a node resumes by delta', async () => {
    const inner = new MemoryStore();
    const ds = new LocalDatastore(inner, 'memory');
    inner.txn([{ op: 'put', object: obj('Site', 's1', {}) }]);
    const held = inner.revision();
    inner.txn([{ op: 'put', object: obj('VirtualNetwork', 'v1', { vni: 100, sites: ['s1'] }) }]);
    const m = await StoreMirror.open(ds);
    const hub = new SessionHub(m, silentLogger(), { heartbeatMs: 1000 });
    const call = new Call();
    hub.open(call as unknown as SessionCall, 'n1', 's1', held, 'boot');
    expect(Object.keys(call.sent[0]!)).toEqual(['delta']);
    // A change made elsewhere reaches the session as a delta, from the watch.
    inner.txn([{ op: 'put', object: obj('VirtualNetwork', 'v2', { vni: 101, sites: ['s1'] }) }]);
    await until(() => call.sent.length === 2);
    expect(Object.keys(call.sent[1]!)).toEqual(['delta']);
    hub.stop();
    await m.close();
  });

  it('two replicas on one datastore: a node that held a revision of A resumes on B by delta once B caught up', async () => {
    const inner = new MemoryStore();
    const ds = new LocalDatastore(inner, 'memory');
    await ds.txn([{ op: 'put', object: obj('Site', 's1', {}) }]);
    const a = await StoreMirror.open(ds);
    const b = await StoreMirror.open(ds);
    const held = (
      await a.txn([{ op: 'put', object: obj('VirtualNetwork', 'v1', { vni: 100, sites: ['s1'] }) }])
    ).revision;
    await b.caughtUp(held);
    // Written through A after the node's last ack; B only ever saw it through its watch.
    const head = (
      await a.txn([{ op: 'put', object: obj('VirtualNetwork', 'v2', { vni: 101, sites: ['s1'] }) }])
    ).revision;
    // What the server's hello does on B (catchUpTo): wait for the copy, then open. Without
    // the wait a copy behind the node would answer "ahead of the controller" with a snapshot.
    await b.caughtUp(head);
    const hub = new SessionHub(b, silentLogger(), { heartbeatMs: 1000 });
    const call = new Call();
    hub.open(call as unknown as SessionCall, 'n1', 's1', held, 'boot');
    expect(Object.keys(call.sent[0]!)).toEqual(['delta']);
    const names = ((call.sent[0]!.delta as { put: Array<{ name: string }> }).put ?? []).map((r) => r.name);
    expect(names).toEqual(['v2']);
    expect(hub.initialSyncs).toEqual({ delta: 1, snapshot: 0 });
    // A node claiming a revision B's copy has not reached gets a snapshot (the old fallback,
    // still right for a node from another store).
    const ahead = new Call();
    hub.open(ahead as unknown as SessionCall, 'n2', 's1', head + 10, 'boot');
    expect(Object.keys(ahead.sent[0]!)).toEqual(['snapshot_begin']);
    expect(hub.initialSyncs).toEqual({ delta: 1, snapshot: 1 });
    hub.stop();
    await a.close();
    await b.close();
  });

  it('resyncs by snapshot diff when its watch falls behind compaction', async () => {
    const inner = new MemoryStore();
    const ds = new LocalDatastore(inner, 'memory', 2);
    const m = await StoreMirror.open(ds, { retryMs: 1 });
    const events: string[] = [];
    m.subscribe((evs) => {
      for (const e of evs) events.push(`${e.type}:${e.name}`);
    });
    await m.txn([{ op: 'put', object: obj('Site', 'gone', {}) }]);
    // Many commits in one turn overflow the watcher's queue; compaction drops the history it
    // would catch up from.
    for (let i = 0; i < 10; i++) inner.txn([{ op: 'put', object: obj('Site', `s${i}`, {}) }]);
    inner.txn([{ op: 'delete', kind: 'Site', name: 'gone' }]);
    inner.compact(0);
    await until(() => m.revision() === inner.revision());
    expect(m.list('Site').items.map((i) => i.name)).toEqual([...Array(10).keys()].map((i) => `s${i}`));
    expect(events).toContain('delete:gone');
    expect(() => m.history(0)).toThrow(expect.objectContaining({ code: 'TETHER_E_COMPACTED' }));
    await m.close();
  });
});
