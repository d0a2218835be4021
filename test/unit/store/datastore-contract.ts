import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import type { Datastore, WatchBatch } from '../../../src/controller/store/datastore.js';
import { follow } from '../../../src/controller/store/follow.js';
import type { StoreEvent, TxnOp } from '../../../src/controller/store/store.js';
import { type ErrorCode, TetherError } from '../../../src/lib/errors.js';
import { fixedClock, obj } from './contract.js';

export async function rejected(p: Promise<unknown>): Promise<TetherError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof TetherError) return e;
    throw e;
  }
  throw new Error('expected a TetherError, the promise resolved');
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<TetherError> {
  const e = await rejected(p);
  expect(e.code).toBe(code);
  return e;
}

/** Pulls `n` batches from a watch, then stops it. */
async function take(it: AsyncIterable<WatchBatch>, n: number): Promise<WatchBatch[]> {
  const out: WatchBatch[] = [];
  if (n === 0) return out;
  for await (const b of it) {
    out.push(b);
    if (out.length >= n) break;
  }
  return out;
}

const put = (o: TetherObject, expectRevision?: number): TxnOp =>
  expectRevision === undefined ? { op: 'put', object: o } : { op: 'put', object: o, expectRevision };

/**
 * The Datastore contract, the asynchronous twin of `storeContract` (contract.ts): every
 * implementation, including etcd, meets it. Revisions are compared relative to each other,
 * never as absolute numbers: a shared etcd's revision counts other keys too.
 */
export function datastoreContract(
  label: string,
  make: (clock: { now: () => Date }) => Promise<Datastore>,
  opts: { maxTxnOps?: number } = {},
): void {
  describe(`Datastore contract: ${label}`, () => {
    let clock: ReturnType<typeof fixedClock>;
    let store: Datastore;
    beforeEach(async () => {
      clock = fixedClock();
      store = await make(clock);
    });
    afterEach(async () => {
      await store.close();
    });

    it('starts empty at revision 0', async () => {
      expect(await store.revision()).toBe(0);
      expect(await store.list()).toEqual({ revision: 0, items: [] });
      expect(await store.get('Site', 'a')).toBeUndefined();
      expect(await store.history(0)).toEqual([]);
    });

    it('creates an object, stamping revision, createRevision and creationTimestamp', async () => {
      const res = await store.txn([put(obj('Site', 'a', { x: 1 }))]);
      const r = res.revision;
      expect(r).toBeGreaterThan(0);
      expect(res.results).toEqual([{ kind: 'Site', name: 'a', revision: r, action: 'created' }]);
      expect(await store.get('Site', 'a')).toEqual({
        kind: 'Site',
        name: 'a',
        revision: r,
        createRevision: r,
        object: {
          apiVersion: 'tether.dev/v1',
          kind: 'Site',
          metadata: {
            name: 'a',
            revision: r,
            createRevision: r,
            creationTimestamp: '2026-01-01T00:00:00.000Z',
          },
          spec: { x: 1 },
        },
      });
      expect(await store.revision()).toBe(r);
    });

    it('does not mutate the caller object and hands out copies', async () => {
      const o = obj('Site', 'a', { x: 1 });
      const before = structuredClone(o);
      await store.txn([put(o)]);
      expect(o).toEqual(before);
      const got = (await store.get('Site', 'a'))!;
      (got.object.spec as { x: number }).x = 99;
      expect((await store.get('Site', 'a'))!.object.spec).toEqual({ x: 1 });
    });

    it('updates bump the revision and keep createRevision and creationTimestamp', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a', { x: 1 }))])).revision;
      clock.tick();
      const res = await store.txn([put(obj('Site', 'a', { x: 2 }))]);
      expect(res.revision).toBeGreaterThan(r1);
      expect(res.results).toEqual([
        { kind: 'Site', name: 'a', revision: res.revision, action: 'configured' },
      ]);
      const got = (await store.get('Site', 'a'))!;
      expect(got).toMatchObject({ revision: res.revision, createRevision: r1 });
      expect(got.object.metadata.creationTimestamp).toBe('2026-01-01T00:00:00.000Z');
    });

    it('an identical put is unchanged: no revision bump, no event', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a', { x: 1, y: [1, { z: 2 }] }))])).revision;
      clock.tick();
      const again: TetherObject = {
        spec: { y: [1, { z: 2 }], x: 1 },
        metadata: { creationTimestamp: '1999-01-01T00:00:00Z', revision: 77, createRevision: 5, name: 'a' },
        kind: 'Site',
        apiVersion: 'tether.dev/v1',
      };
      expect(await store.txn([put(again)])).toEqual({
        revision: r1,
        results: [{ kind: 'Site', name: 'a', revision: r1, action: 'unchanged' }],
      });
      expect(await store.revision()).toBe(r1);
      expect(await store.history(0)).toHaveLength(1);
      expect(await store.txn([])).toEqual({ revision: r1, results: [] });
    });

    it('all ops of a txn share one revision; unchanged ops keep theirs', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a'))])).revision;
      const res = await store.txn([
        put(obj('Site', 'a')),
        put(obj('Site', 'b')),
        put(obj('VirtualNetwork', 'n')),
      ]);
      const r2 = res.revision;
      expect(res.results).toEqual([
        { kind: 'Site', name: 'a', revision: r1, action: 'unchanged' },
        { kind: 'Site', name: 'b', revision: r2, action: 'created' },
        { kind: 'VirtualNetwork', name: 'n', revision: r2, action: 'created' },
      ]);
      expect((await store.history(r1)).map((e) => [e.revision, e.kind, e.name])).toEqual([
        [r2, 'Site', 'b'],
        [r2, 'VirtualNetwork', 'n'],
      ]);
    });

    it('CAS: expectRevision must equal the current revision; 0 means must not exist', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a', { v: 1 }), 0)])).revision;
      const r2 = (await store.txn([put(obj('Site', 'a', { v: 2 }), r1)])).revision;
      const stale = await expectCode(store.txn([put(obj('Site', 'a', { v: 3 }), r1)]), 'TETHER_E_CONFLICT');
      expect(stale.details).toMatchObject({
        field: 'metadata.revision',
        expectedRevision: r1,
        actualRevision: r2,
      });
      const exists = await expectCode(store.txn([put(obj('Site', 'a', { v: 3 }), 0)]), 'TETHER_E_CONFLICT');
      expect(exists.details).toMatchObject({ expected: 'object not to exist' });
      await expectCode(store.txn([put(obj('Site', 'zz'), 4)]), 'TETHER_E_CONFLICT');
      expect((await store.get('Site', 'a'))!.object.spec).toEqual({ v: 2 });
    });

    it('a failed CAS anywhere in a txn writes nothing at all', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a'))])).revision;
      await expectCode(
        store.txn([
          put(obj('Site', 'b')),
          { op: 'delete', kind: 'Site', name: 'a' },
          put(obj('Site', 'c'), 9),
        ]),
        'TETHER_E_CONFLICT',
      );
      expect(await store.revision()).toBe(r1);
      expect((await store.list()).items.map((i) => i.name)).toEqual(['a']);
      expect(await store.history(0)).toHaveLength(1);
    });

    it('deletes, with CAS; deleting a missing object is NOT_FOUND and writes nothing', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a')), put(obj('Site', 'b'))])).revision;
      await expectCode(
        store.txn([{ op: 'delete', kind: 'Site', name: 'a', expectRevision: r1 + 100 }]),
        'TETHER_E_CONFLICT',
      );
      const res = await store.txn([{ op: 'delete', kind: 'Site', name: 'a', expectRevision: r1 }]);
      expect(res.results).toEqual([{ kind: 'Site', name: 'a', revision: res.revision, action: 'deleted' }]);
      expect(await store.get('Site', 'a')).toBeUndefined();
      const nf = await expectCode(
        store.txn([put(obj('Site', 'c')), { op: 'delete', kind: 'Site', name: 'a' }]),
        'TETHER_E_NOT_FOUND',
      );
      expect(nf.details).toMatchObject({ kind: 'Site', name: 'a' });
      expect(await store.get('Site', 'c')).toBeUndefined();
      const r3 = (await store.txn([put(obj('Site', 'a'))])).revision;
      expect(await store.get('Site', 'a')).toMatchObject({ revision: r3, createRevision: r3 });
    });

    it('rejects the same object twice in one txn and malformed ops', async () => {
      const dup = await expectCode(
        store.txn([put(obj('Site', 'a')), { op: 'delete', kind: 'Site', name: 'a' }]),
        'TETHER_E_INVALID',
      );
      expect(dup.details.field).toBe('ops[1]');
      await expectCode(store.txn([put(obj('Site', ''))]), 'TETHER_E_INVALID');
      expect(await store.revision()).toBe(0);
    });

    it('list is sorted by kind then name, filters by kind and carries the head revision', async () => {
      await store.txn([put(obj('VirtualNetwork', 'b')), put(obj('Site', 'z')), put(obj('Site', 'a'))]);
      const r2 = (await store.txn([put(obj('Node', 'n1'))])).revision;
      const all = await store.list();
      expect(all.revision).toBe(r2);
      expect(all.items.map((i) => `${i.kind}/${i.name}`)).toEqual([
        'Node/n1',
        'Site/a',
        'Site/z',
        'VirtualNetwork/b',
      ]);
      const sites = await store.list('Site');
      expect(sites.revision).toBe(r2);
      expect(sites.items.map((i) => i.name)).toEqual(['a', 'z']);
      expect((await store.list('Nope')).items).toEqual([]);
    });

    it('history returns events after a revision, in order, with prev, filtered by kind', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a', { v: 1 }))])).revision;
      const r2 = (await store.txn([put(obj('Site', 'a', { v: 2 })), put(obj('Node', 'n'))])).revision;
      const r3 = (await store.txn([{ op: 'delete', kind: 'Site', name: 'a' }])).revision;
      const h = await store.history(0);
      expect(h.map((e) => [e.revision, e.type, e.kind, e.name])).toEqual([
        [r1, 'put', 'Site', 'a'],
        [r2, 'put', 'Site', 'a'],
        [r2, 'put', 'Node', 'n'],
        [r3, 'delete', 'Site', 'a'],
      ]);
      const [e1, e2, e3, e4] = h as [StoreEvent, StoreEvent, StoreEvent, StoreEvent];
      expect(e1.type === 'put' && e1.prev).toBeUndefined();
      expect(e2.type === 'put' && e2.object.metadata.revision).toBe(r2);
      expect(e2.prev?.spec).toEqual({ v: 1 });
      expect(e2.prev?.metadata.revision).toBe(r1);
      expect(e3.type === 'put' && e3.prev).toBeUndefined();
      expect(e4.prev?.spec).toEqual({ v: 2 });
      expect((await store.history(r2)).map((e) => e.revision)).toEqual([r3]);
      expect(await store.history(r3)).toEqual([]);
      expect((await store.history(r1, 'Node')).map((e) => e.name)).toEqual(['n']);
      expect(await store.history(0, 'Site')).toHaveLength(3);
    });

    it('compact drops old history; older reads and watches are COMPACTED, objects stay', async () => {
      const revs: number[] = [];
      for (let i = 1; i <= 6; i++) revs.push((await store.txn([put(obj('Site', 'a', { i }))])).revision);
      await store.compact(0);
      const head = revs[5]!;
      expect(await store.compactedRevision()).toBe(head);
      expect(await store.history(head)).toEqual([]);
      const e = await expectCode(store.history(revs[2]!), 'TETHER_E_COMPACTED');
      expect(Number(e.details.compactedRevision)).toBe(head);
      await expectCode(take(store.watch(revs[0]!), 1), 'TETHER_E_COMPACTED');
      await store.compact(5); // older point: no-op
      expect(await store.compactedRevision()).toBe(head);
      expect((await store.get('Site', 'a'))!.object.spec).toEqual({ i: 6 });
      const r7 = (await store.txn([put(obj('Site', 'b'))])).revision;
      expect((await store.history(head)).map((x) => [x.revision, x.name])).toEqual([[r7, 'b']]);
      await expectCode(store.compact(-1), 'TETHER_E_INVALID');
    });

    it('report marks: written with the txn, no revision or event; failed txn or deleted Node drops them', async () => {
      const mark = { serial: '0a', bootId: 'b1', seq: 7, at: 1 };
      await store.txn([put(obj('Node', 'n1'))], { reportMarks: [{ node: 'n1', mark }] });
      expect(await store.reportMark('n1')).toEqual(mark);
      const rev = await store.revision();
      const res = await store.txn([], { reportMarks: [{ node: 'n1', mark: { ...mark, seq: 8 } }] });
      expect(res.revision).toBe(rev);
      expect(await store.revision()).toBe(rev);
      expect(await store.history(rev)).toEqual([]);
      expect((await store.reportMark('n1'))?.seq).toBe(8);
      await expectCode(
        store.txn([put(obj('Node', 'n1', { x: 1 }), 999_999)], {
          reportMarks: [{ node: 'n1', mark: { ...mark, seq: 9 } }],
        }),
        'TETHER_E_CONFLICT',
      );
      expect((await store.reportMark('n1'))?.seq).toBe(8);
      expect(await store.reportMark('n2')).toBeUndefined();
      await store.txn([{ op: 'delete', kind: 'Node', name: 'n1' }]);
      expect(await store.reportMark('n1')).toBeUndefined();
    });

    it('watch replays history, then delivers live transactions, one batch each, equal to history', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a', { v: 1 }))])).revision;
      const it = store.watch(0)[Symbol.asyncIterator]();
      const first = await it.next();
      expect(first.value).toEqual({ revision: r1, events: await store.history(0) });
      const pending = it.next();
      const r2 = (await store.txn([put(obj('Site', 'a', { v: 2 })), put(obj('Site', 'b'))])).revision;
      const second = (await pending).value as WatchBatch;
      expect(second.revision).toBe(r2);
      expect(second.events).toEqual(await store.history(r1));
      await it.return?.();
    });

    it('watch filters by kind and starts after fromRevision', async () => {
      const r1 = (await store.txn([put(obj('Site', 'a'))])).revision;
      await store.txn([put(obj('Node', 'n'))]);
      const r3 = (await store.txn([put(obj('Site', 'b'))])).revision;
      const got = await take(store.watch(r1, { kind: 'Site' }), 1);
      expect(got.map((b) => [b.revision, b.events.map((e) => e.name)])).toEqual([[r3, ['b']]]);
    });

    it('an aborted watch ends; so does one on a closed store', async () => {
      const ac = new AbortController();
      const done = (async () => {
        const seen: number[] = [];
        for await (const b of store.watch(await store.revision(), { signal: ac.signal }))
          seen.push(b.revision);
        return seen;
      })();
      const r = (await store.txn([put(obj('Site', 'a'))])).revision;
      await new Promise((res) => setTimeout(res, 50));
      ac.abort();
      const seen = await done;
      expect(seen.filter((x) => x !== r)).toEqual([]);
    });

    it('follow: snapshot, then batches; resyncs by snapshot when its watch is compacted', async () => {
      await store.txn([put(obj('Site', 'a'))]);
      const snapshots: Array<[number, string[]]> = [];
      const batches: number[] = [];
      const ac = new AbortController();
      let resynced = 0;
      let compactOnce = true;
      const done = follow(
        store,
        {
          snapshot: (items, revision) => {
            snapshots.push([revision, items.map((i) => i.name)]);
          },
          batch: async (b) => {
            batches.push(b.revision);
            if (compactOnce) {
              // Fall behind on purpose: while this consumer is busy, two more transactions
              // land and the history is compacted past where it stands.
              compactOnce = false;
              await store.txn([put(obj('Site', 'c'))]);
              await store.txn([put(obj('Site', 'd'))]);
              await store.compact(0);
            }
            if (b.events.some((e) => e.name === 'z')) ac.abort();
          },
        },
        { signal: ac.signal, onResync: () => resynced++ },
      );
      await store.txn([put(obj('Site', 'b'))]);
      // The local store delivers c and d from its queue before noticing nothing; etcd's watch
      // may already be cancelled. Either way a final write ends the loop.
      await new Promise((res) => setTimeout(res, 100));
      await store.txn([put(obj('Site', 'z'))]);
      await done;
      expect(snapshots[0]![1]).toEqual(['a']);
      // Either the stream kept up (local queue) or it resynced with a snapshot holding c and d.
      if (resynced > 0) expect(snapshots.at(-1)![1]).toEqual(expect.arrayContaining(['a', 'b', 'c', 'd']));
      expect(batches.length).toBeGreaterThan(0);
    });

    it('a closed store refuses calls with TETHER_E_STATE', async () => {
      const s = await make(clock);
      await s.close();
      await expectCode(s.get('Site', 'a'), 'TETHER_E_STATE');
      await expectCode(s.txn([put(obj('Site', 'a'))]), 'TETHER_E_STATE');
      await expectCode(s.list(), 'TETHER_E_STATE');
    });

    if (opts.maxTxnOps !== undefined) {
      const limit = opts.maxTxnOps;
      it(`a txn over the backend's operation limit (${limit}) is refused, or split when allowed`, async () => {
        const many = Array.from({ length: limit + 5 }, (_, i) => put(obj('Endpoint', `e${i}`)));
        const e = await expectCode(store.txn(many), 'TETHER_E_TOO_LARGE');
        expect(e.details).toMatchObject({ field: 'ops' });
        expect((await store.list()).items).toEqual([]);
        const mark = { serial: '0a', bootId: 'b1', seq: 1, at: 1 };
        const res = await store.txn(many, { reportMarks: [{ node: 'n1', mark }] }, { split: true });
        expect(res.results).toHaveLength(limit + 5);
        expect(res.results.every((r) => r.action === 'created')).toBe(true);
        expect((await store.list('Endpoint')).items).toHaveLength(limit + 5);
        expect(await store.reportMark('n1')).toEqual(mark);
      });
    }
  });
}
