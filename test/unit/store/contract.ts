import { beforeEach, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import type { Store, StoreEvent } from '../../../src/controller/store/store.js';
import { type ErrorCode, TetherError } from '../../../src/lib/errors.js';

/** A fixed clock so creationTimestamp is predictable; `tick()` moves it forward a second. */
export function fixedClock(start = Date.UTC(2026, 0, 1)): { now: () => Date; tick: () => void } {
  let t = start;
  return {
    now: () => new Date(t),
    tick: () => {
      t += 1000;
    },
  };
}

export function obj(
  kind: string,
  name: string,
  spec: Record<string, unknown> = {},
  extra = {},
): TetherObject {
  return { apiVersion: 'tether.dev/v1', kind, metadata: { name, ...extra }, spec };
}

export function thrown(fn: () => unknown): TetherError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TetherError) return e;
    throw e;
  }
  throw new Error('expected a TetherError, nothing was thrown');
}

function expectCode(fn: () => unknown, code: ErrorCode): TetherError {
  const e = thrown(fn);
  expect(e.code).toBe(code);
  return e;
}

/**
 * The Store contract every implementation must meet. `make` returns a fresh, empty store
 * whose clock is `clock.now`.
 */
export function storeContract(
  label: string,
  make: (clock: { now: () => Date }, onSubscriberError?: (e: unknown) => void) => Store,
): void {
  describe(`Store contract: ${label}`, () => {
    let clock: ReturnType<typeof fixedClock>;
    let store: Store;
    beforeEach(() => {
      clock = fixedClock();
      store = make(clock);
      return () => store.close();
    });

    it('starts empty at revision 0', () => {
      expect(store.revision()).toBe(0);
      expect(store.compactedRevision()).toBe(0);
      expect(store.list()).toEqual({ revision: 0, items: [] });
      expect(store.get('Site', 'a')).toBeUndefined();
      expect(store.history(0)).toEqual([]);
    });

    it('creates an object, stamping revision, createRevision and creationTimestamp', () => {
      const res = store.txn([{ op: 'put', object: obj('Site', 'a', { x: 1 }) }]);
      expect(res).toEqual({
        revision: 1,
        results: [{ kind: 'Site', name: 'a', revision: 1, action: 'created' }],
      });
      const got = store.get('Site', 'a');
      expect(got).toEqual({
        kind: 'Site',
        name: 'a',
        revision: 1,
        createRevision: 1,
        object: {
          apiVersion: 'tether.dev/v1',
          kind: 'Site',
          metadata: {
            name: 'a',
            revision: 1,
            createRevision: 1,
            creationTimestamp: '2026-01-01T00:00:00.000Z',
          },
          spec: { x: 1 },
        },
      });
      expect(store.revision()).toBe(1);
    });

    it('does not mutate the caller object and hands out copies', () => {
      const o = obj('Site', 'a', { x: 1 });
      const before = structuredClone(o);
      store.txn([{ op: 'put', object: o }]);
      expect(o).toEqual(before);
      const got = store.get('Site', 'a')!;
      (got.object.spec as { x: number }).x = 99;
      expect(store.get('Site', 'a')!.object.spec).toEqual({ x: 1 });
      const listed = store.list().items[0]!;
      (listed.object.spec as { x: number }).x = 98;
      expect(store.get('Site', 'a')!.object.spec).toEqual({ x: 1 });
    });

    it('updates: bumps revision, keeps createRevision and creationTimestamp', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a', { x: 1 }) }]);
      clock.tick();
      const res = store.txn([{ op: 'put', object: obj('Site', 'a', { x: 2 }) }]);
      expect(res).toEqual({
        revision: 2,
        results: [{ kind: 'Site', name: 'a', revision: 2, action: 'configured' }],
      });
      const got = store.get('Site', 'a')!;
      expect(got.revision).toBe(2);
      expect(got.createRevision).toBe(1);
      expect(got.object.metadata).toEqual({
        name: 'a',
        revision: 2,
        createRevision: 1,
        creationTimestamp: '2026-01-01T00:00:00.000Z',
      });
    });

    it('an identical put is unchanged: no revision bump, no event, no history', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a', { x: 1, y: [1, { z: 2 }] }) }]);
      const seen: StoreEvent[][] = [];
      store.subscribe((ev) => seen.push([...ev]));
      clock.tick();
      // Different key order and store-owned metadata from an older read are ignored.
      const again: TetherObject = {
        spec: { y: [1, { z: 2 }], x: 1 },
        metadata: { creationTimestamp: '1999-01-01T00:00:00Z', revision: 77, createRevision: 5, name: 'a' },
        kind: 'Site',
        apiVersion: 'tether.dev/v1',
      };
      const res = store.txn([{ op: 'put', object: again }]);
      expect(res).toEqual({
        revision: 1,
        results: [{ kind: 'Site', name: 'a', revision: 1, action: 'unchanged' }],
      });
      expect(store.revision()).toBe(1);
      expect(seen).toEqual([]);
      expect(store.history(0)).toHaveLength(1);
      expect(store.get('Site', 'a')!.object.metadata.creationTimestamp).toBe('2026-01-01T00:00:00.000Z');
    });

    it('a change in labels or status is a change', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      expect(
        store.txn([{ op: 'put', object: obj('Site', 'a', {}, { labels: { r: 'x' } }) }]).results[0]!.action,
      ).toBe('configured');
      expect(
        store.txn([
          { op: 'put', object: { ...obj('Site', 'a', {}, { labels: { r: 'x' } }), status: { p: 1 } } },
        ]).results[0]!.action,
      ).toBe('configured');
      expect(store.revision()).toBe(3);
    });

    it('all ops of a txn share one revision; mixed unchanged ops keep theirs', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      const res = store.txn([
        { op: 'put', object: obj('Site', 'a') },
        { op: 'put', object: obj('Site', 'b') },
        { op: 'put', object: obj('VirtualNetwork', 'n', { subnets: ['10.0.0.0/24'] }) },
      ]);
      expect(res).toEqual({
        revision: 2,
        results: [
          { kind: 'Site', name: 'a', revision: 1, action: 'unchanged' },
          { kind: 'Site', name: 'b', revision: 2, action: 'created' },
          { kind: 'VirtualNetwork', name: 'n', revision: 2, action: 'created' },
        ],
      });
      expect(store.history(1).map((e) => [e.revision, e.kind, e.name])).toEqual([
        [2, 'Site', 'b'],
        [2, 'VirtualNetwork', 'n'],
      ]);
    });

    it('an empty or all-unchanged txn returns the current revision', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      expect(store.txn([])).toEqual({ revision: 1, results: [] });
    });

    it('CAS: expectRevision must equal the current revision; 0 means must not exist', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a', { v: 1 }), expectRevision: 0 }]);
      const ok = store.txn([{ op: 'put', object: obj('Site', 'a', { v: 2 }), expectRevision: 1 }]);
      expect(ok.revision).toBe(2);
      const stale = expectCode(
        () => store.txn([{ op: 'put', object: obj('Site', 'a', { v: 3 }), expectRevision: 1 }]),
        'TETHER_E_CONFLICT',
      );
      expect(stale.details).toMatchObject({
        field: 'metadata.revision',
        expected: 'revision 1',
        kind: 'Site',
        name: 'a',
        expectedRevision: 1,
        actualRevision: 2,
      });
      const exists = expectCode(
        () => store.txn([{ op: 'put', object: obj('Site', 'a', { v: 3 }), expectRevision: 0 }]),
        'TETHER_E_CONFLICT',
      );
      expect(exists.details).toMatchObject({ field: 'metadata.revision', expected: 'object not to exist' });
      const missing = expectCode(
        () => store.txn([{ op: 'put', object: obj('Site', 'zz'), expectRevision: 4 }]),
        'TETHER_E_CONFLICT',
      );
      expect(missing.details).toMatchObject({ expectedRevision: 4, actualRevision: 0 });
      expect(store.get('Site', 'a')!.object.spec).toEqual({ v: 2 });
    });

    it('a failed CAS anywhere in a txn writes nothing at all', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      const seen: unknown[] = [];
      store.subscribe((ev) => seen.push(ev));
      expectCode(
        () =>
          store.txn([
            { op: 'put', object: obj('Site', 'b') },
            { op: 'delete', kind: 'Site', name: 'a' },
            { op: 'put', object: obj('Site', 'c'), expectRevision: 9 },
          ]),
        'TETHER_E_CONFLICT',
      );
      expect(store.revision()).toBe(1);
      expect(store.list().items.map((i) => i.name)).toEqual(['a']);
      expect(store.history(0)).toHaveLength(1);
      expect(seen).toEqual([]);
      // The next txn gets the next revision: nothing was consumed by the failed one.
      expect(store.txn([{ op: 'put', object: obj('Site', 'b') }]).revision).toBe(2);
    });

    it('deletes, with CAS; deleting a missing object is NOT_FOUND and writes nothing', () => {
      store.txn([
        { op: 'put', object: obj('Site', 'a') },
        { op: 'put', object: obj('Site', 'b') },
      ]);
      expectCode(
        () => store.txn([{ op: 'delete', kind: 'Site', name: 'a', expectRevision: 5 }]),
        'TETHER_E_CONFLICT',
      );
      const res = store.txn([{ op: 'delete', kind: 'Site', name: 'a', expectRevision: 1 }]);
      expect(res).toEqual({
        revision: 2,
        results: [{ kind: 'Site', name: 'a', revision: 2, action: 'deleted' }],
      });
      expect(store.get('Site', 'a')).toBeUndefined();
      const nf = expectCode(
        () =>
          store.txn([
            { op: 'put', object: obj('Site', 'c') },
            { op: 'delete', kind: 'Site', name: 'a' },
          ]),
        'TETHER_E_NOT_FOUND',
      );
      expect(nf.details).toMatchObject({ kind: 'Site', name: 'a' });
      expect(store.get('Site', 'c')).toBeUndefined();
      expect(store.revision()).toBe(2);
      // Re-creating gets a fresh createRevision.
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      expect(store.get('Site', 'a')).toMatchObject({ revision: 3, createRevision: 3 });
    });

    it('rejects the same object twice in one txn and malformed ops', () => {
      const dup = expectCode(
        () =>
          store.txn([
            { op: 'put', object: obj('Site', 'a') },
            { op: 'delete', kind: 'Site', name: 'a' },
          ]),
        'TETHER_E_INVALID',
      );
      expect(dup.details.field).toBe('ops[1]');
      expectCode(() => store.txn([{ op: 'put', object: obj('Site', '') }]), 'TETHER_E_INVALID');
      expect(store.revision()).toBe(0);
    });

    it('list is sorted by kind then name, filters by kind and carries the head revision', () => {
      store.txn([
        { op: 'put', object: obj('VirtualNetwork', 'b') },
        { op: 'put', object: obj('Site', 'z') },
        { op: 'put', object: obj('Site', 'a') },
      ]);
      store.txn([{ op: 'put', object: obj('Node', 'n1') }]);
      const all = store.list();
      expect(all.revision).toBe(2);
      expect(all.items.map((i) => `${i.kind}/${i.name}`)).toEqual([
        'Node/n1',
        'Site/a',
        'Site/z',
        'VirtualNetwork/b',
      ]);
      const sites = store.list('Site');
      expect(sites.revision).toBe(2);
      expect(sites.items.map((i) => i.name)).toEqual(['a', 'z']);
      expect(store.list('Nope').items).toEqual([]);
    });

    it('history returns events after a revision, in order, with prev, filtered by kind', () => {
      store.txn([{ op: 'put', object: obj('Site', 'a', { v: 1 }) }]);
      store.txn([
        { op: 'put', object: obj('Site', 'a', { v: 2 }) },
        { op: 'put', object: obj('Node', 'n') },
      ]);
      store.txn([{ op: 'delete', kind: 'Site', name: 'a' }]);
      const h = store.history(0);
      expect(h.map((e) => [e.revision, e.type, e.kind, e.name])).toEqual([
        [1, 'put', 'Site', 'a'],
        [2, 'put', 'Site', 'a'],
        [2, 'put', 'Node', 'n'],
        [3, 'delete', 'Site', 'a'],
      ]);
      const [e1, e2, e3, e4] = h as [StoreEvent, StoreEvent, StoreEvent, StoreEvent];
      expect(e1.type === 'put' && e1.prev).toBeUndefined();
      expect(e2.type === 'put' && e2.object.spec).toEqual({ v: 2 });
      expect(e2.type === 'put' && e2.object.metadata.revision).toBe(2);
      expect(e2.prev?.spec).toEqual({ v: 1 });
      expect(e2.prev?.metadata.revision).toBe(1);
      expect(e3.type === 'put' && e3.prev).toBeUndefined();
      expect(e4.type).toBe('delete');
      expect(e4.prev?.spec).toEqual({ v: 2 });
      expect(store.history(2).map((e) => e.revision)).toEqual([3]);
      expect(store.history(3)).toEqual([]);
      expect(store.history(1, 'Node').map((e) => e.name)).toEqual(['n']);
      expect(store.history(0, 'Site')).toHaveLength(3);
    });

    it('compact drops old history; older reads are COMPACTED, objects stay', () => {
      for (let i = 1; i <= 10; i++) store.txn([{ op: 'put', object: obj('Site', 'a', { i }) }]);
      store.compact(3);
      expect(store.compactedRevision()).toBe(7);
      expect(store.history(7).map((e) => e.revision)).toEqual([8, 9, 10]);
      const e = expectCode(() => store.history(6), 'TETHER_E_COMPACTED');
      expect(e.details).toMatchObject({ compactedRevision: 7 });
      expectCode(() => store.history(0, 'Site'), 'TETHER_E_COMPACTED');
      // Keeping more than we have, or compacting again to an older point, is a no-op.
      store.compact(100);
      store.compact(5);
      expect(store.compactedRevision()).toBe(7);
      expect(store.get('Site', 'a')!.object.spec).toEqual({ i: 10 });
      expect(store.revision()).toBe(10);
      store.compact(0);
      expect(store.compactedRevision()).toBe(10);
      expect(store.history(10)).toEqual([]);
      expect(store.txn([{ op: 'put', object: obj('Site', 'b') }]).revision).toBe(11);
      expect(store.history(10).map((x) => x.name)).toEqual(['b']);
      expectCode(() => store.compact(-1), 'TETHER_E_INVALID');
    });

    it('subscribe: one call per committed txn, synchronously, until unsubscribed', () => {
      const calls: Array<Array<[string, number, string]>> = [];
      const off = store.subscribe((ev) => calls.push(ev.map((e) => [e.type, e.revision, e.name])));
      store.txn([
        { op: 'put', object: obj('Site', 'a') },
        { op: 'put', object: obj('Site', 'b') },
      ]);
      expect(calls).toEqual([
        [
          ['put', 1, 'a'],
          ['put', 1, 'b'],
        ],
      ]);
      store.txn([{ op: 'delete', kind: 'Site', name: 'a' }]);
      expect(calls[1]).toEqual([['delete', 2, 'a']]);
      off();
      store.txn([{ op: 'put', object: obj('Site', 'c') }]);
      expect(calls).toHaveLength(2);
    });

    it('subscriber events equal history events', () => {
      const got: StoreEvent[] = [];
      store.subscribe((ev) => got.push(...ev));
      store.txn([{ op: 'put', object: obj('Site', 'a', { v: 1 }) }]);
      store.txn([{ op: 'put', object: obj('Site', 'a', { v: 2 }) }]);
      store.txn([{ op: 'delete', kind: 'Site', name: 'a' }]);
      expect(got).toEqual(store.history(0));
    });

    it('a throwing subscriber neither undoes the write nor starves other subscribers', () => {
      const errors: unknown[] = [];
      const s = make(clock, (e) => errors.push(e));
      try {
        const seen: number[] = [];
        s.subscribe(() => {
          throw new Error('boom');
        });
        s.subscribe((ev) => seen.push(ev[0]!.revision));
        expect(s.txn([{ op: 'put', object: obj('Site', 'a') }]).revision).toBe(1);
        expect(seen).toEqual([1]);
        expect(errors).toHaveLength(1);
        expect(s.get('Site', 'a')).toBeDefined();
      } finally {
        s.close();
      }
    });

    it('report marks: written with the txn (also with no op), no revision or event; a failed txn or a deleted Node drops them', () => {
      const seen: unknown[] = [];
      store.subscribe((evs) => seen.push(...evs));
      const mark = { serial: '0a', bootId: 'b1', seq: 7, at: 1 };
      store.txn([{ op: 'put', object: obj('Node', 'n1', {}) }], { reportMarks: [{ node: 'n1', mark }] });
      expect(store.reportMark('n1')).toEqual(mark);
      const rev = store.revision();
      // A report that changes no object still moves the mark, and nothing else.
      const res = store.txn([], { reportMarks: [{ node: 'n1', mark: { ...mark, seq: 8 } }] });
      expect(res.revision).toBe(rev);
      expect(store.revision()).toBe(rev);
      expect(store.history(rev)).toEqual([]);
      expect(seen).toHaveLength(1);
      expect(store.reportMark('n1')?.seq).toBe(8);
      // All or nothing: a failed CAS in the same txn leaves the mark as it was.
      expect(
        thrown(() =>
          store.txn([{ op: 'put', object: obj('Node', 'n1', { x: 1 }), expectRevision: 999 }], {
            reportMarks: [{ node: 'n1', mark: { ...mark, seq: 9 } }],
          }),
        ).code,
      ).toBe('TETHER_E_CONFLICT');
      expect(store.reportMark('n1')?.seq).toBe(8);
      // A copy: changing what was returned changes nothing stored.
      const got = store.reportMark('n1')!;
      got.seq = 1;
      expect(store.reportMark('n1')?.seq).toBe(8);
      expect(store.reportMark('n2')).toBeUndefined();
      store.txn([{ op: 'delete', kind: 'Node', name: 'n1' }]);
      expect(store.reportMark('n1')).toBeUndefined();
    });

    it('a closed store refuses every call with TETHER_E_STATE', () => {
      const s = make(clock);
      s.close();
      for (const call of [
        () => s.revision(),
        () => s.compactedRevision(),
        () => s.get('Site', 'a'),
        () => s.list(),
        () => s.txn([{ op: 'put', object: obj('Site', 'a') }]),
        () => s.history(0),
        () => s.subscribe(() => {}),
        () => s.compact(1),
      ]) {
        expectCode(call, 'TETHER_E_STATE');
      }
      s.close(); // idempotent
    });

    it('a txn committed from inside a subscriber is delivered after the current one, in order', () => {
      const order: Array<[string, number]> = [];
      store.subscribe((ev) => {
        order.push(['first', ev[0]!.revision]);
        if (ev[0]!.name === 'a') store.txn([{ op: 'put', object: obj('Site', 'b') }]);
      });
      store.subscribe((ev) => order.push(['second', ev[0]!.revision]));
      store.txn([{ op: 'put', object: obj('Site', 'a') }]);
      expect(order).toEqual([
        ['first', 1],
        ['second', 1],
        ['first', 2],
        ['second', 2],
      ]);
    });
  });
}
