import type { TetherObject } from '../../api/resource.js';
import { TetherError } from '../../lib/errors.js';
import { objectKey } from './keys.js';
import type { StoredObject, StoreEvent, TxnOp, TxnResult } from './store.js';

/**
 * The part of a transaction that does not depend on where the rows live: checks, the
 * unchanged test, revision stamping and the events. SqliteStore and MemoryStore both run
 * their transactions through `planTxn`, so the two cannot drift apart in semantics.
 */

/** One stored row, as both backends keep it (the object serialised as JSON). */
export interface Row {
  kind: string;
  name: string;
  revision: number;
  createRevision: number;
  json: string;
}

/** One write the backend must perform (all share `revision`). */
export interface Write {
  kind: string;
  name: string;
  type: 'put' | 'delete';
  /** New row for a put; undefined for a delete. */
  row?: Row;
  /** JSON of the object before the write, when there was one. */
  prevJson?: string;
}

export interface TxnPlan {
  result: TxnResult;
  writes: Write[];
  events: StoreEvent[];
}

/** Metadata fields the store owns; ignored when deciding whether a put changes anything. */
const STORE_OWNED_META = ['revision', 'createRevision', 'creationTimestamp'] as const;

export function planTxn(
  ops: readonly TxnOp[],
  head: number,
  lookup: (kind: string, name: string) => Row | undefined,
  now: () => Date,
  keepCreationTimestamp = false,
): TxnPlan {
  const revision = head + 1;
  const seen = new Set<string>();
  const current: Array<Row | undefined> = [];

  // 1. Shape and CAS checks for every op, before anything is decided.
  ops.forEach((op, i) => {
    const { kind, name } = opKey(op, i);
    const key = objectKey(kind, name);
    if (seen.has(key)) {
      throw new TetherError('TETHER_E_INVALID', `${key} appears more than once in one transaction`, {
        field: `ops[${i}]`,
        expected: 'each object at most once per transaction',
        kind,
        name,
      });
    }
    seen.add(key);
    const row = lookup(kind, name);
    current.push(row);
    if (op.expectRevision !== undefined) {
      const actual = row?.revision ?? 0;
      if (actual !== op.expectRevision) {
        const expected = op.expectRevision === 0 ? 'object not to exist' : `revision ${op.expectRevision}`;
        const found = row ? `it is at revision ${row.revision}` : 'it does not exist';
        throw new TetherError('TETHER_E_CONFLICT', `${key} changed: expected ${expected}, but ${found}`, {
          field: 'metadata.revision',
          expected,
          kind,
          name,
          expectedRevision: op.expectRevision,
          actualRevision: actual,
        });
      }
    }
    if (op.op === 'delete' && !row) {
      throw new TetherError('TETHER_E_NOT_FOUND', `${key} not found`, { kind, name });
    }
  });

  // 2. Compute the writes.
  const writes: Write[] = [];
  const pending: Array<{ kind: string; name: string; action: TxnResult['results'][number]['action'] }> = [];
  const unchangedRevision = new Map<number, number>();
  ops.forEach((op, i) => {
    const row = current[i];
    if (op.op === 'delete') {
      writes.push({ kind: op.kind, name: op.name, type: 'delete', prevJson: row!.json });
      pending.push({ kind: op.kind, name: op.name, action: 'deleted' });
      return;
    }
    const { kind, name } = opKey(op, i);
    const prev = row ? (JSON.parse(row.json) as TetherObject) : undefined;
    if (prev && canonical(prev) === canonical(op.object)) {
      unchangedRevision.set(i, row!.revision);
      pending.push({ kind, name, action: 'unchanged' });
      return;
    }
    const createRevision = row?.createRevision ?? revision;
    const object = JSON.parse(JSON.stringify(op.object)) as TetherObject;
    object.metadata = {
      ...object.metadata,
      revision,
      createRevision,
      creationTimestamp:
        prev?.metadata.creationTimestamp ??
        (keepCreationTimestamp ? validTimestamp(op.object.metadata.creationTimestamp) : undefined) ??
        now().toISOString(),
    };
    const json = JSON.stringify(object);
    writes.push({
      kind,
      name,
      type: 'put',
      row: { kind, name, revision, createRevision, json },
      ...(row ? { prevJson: row.json } : {}),
    });
    pending.push({ kind, name, action: row ? 'configured' : 'created' });
  });

  const wrote = writes.length > 0;
  const result: TxnResult = {
    revision: wrote ? revision : head,
    results: pending.map((p, i) => ({
      ...p,
      revision: p.action === 'unchanged' ? unchangedRevision.get(i)! : revision,
    })),
  };
  return {
    result,
    writes,
    events: writes.map((w) => eventOf(revision, w.type, w.kind, w.name, w.row?.json, w.prevJson)),
  };
}

export function eventOf(
  revision: number,
  type: 'put' | 'delete',
  kind: string,
  name: string,
  json: string | null | undefined,
  prevJson: string | null | undefined,
): StoreEvent {
  if (type === 'put') {
    const ev: StoreEvent = { type, revision, kind, name, object: JSON.parse(json!) as TetherObject };
    if (prevJson) ev.prev = JSON.parse(prevJson) as TetherObject;
    return ev;
  }
  return { type, revision, kind, name, prev: JSON.parse(prevJson!) as TetherObject };
}

export function opKey(op: TxnOp, i: number): { kind: string; name: string } {
  const kind = op.op === 'put' ? op.object?.kind : op.kind;
  const name = op.op === 'put' ? op.object?.metadata?.name : op.name;
  if (typeof kind !== 'string' || kind === '' || typeof name !== 'string' || name === '') {
    throw new TetherError('TETHER_E_INVALID', `transaction op ${i} has no kind or name`, {
      field: op.op === 'put' ? `ops[${i}].object.metadata.name` : `ops[${i}].name`,
      expected: 'non-empty kind and name',
    });
  }
  return { kind, name };
}

/** Stable serialisation (sorted keys) of an object without the store-owned metadata. */
export function canonical(obj: TetherObject): string {
  const meta: Record<string, unknown> = { ...(obj.metadata ?? {}) };
  for (const k of STORE_OWNED_META) delete meta[k];
  return stableStringify({ ...obj, metadata: meta });
}

function stableStringify(v: unknown): string {
  return JSON.stringify(sortKeys(JSON.parse(JSON.stringify(v ?? null))));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** Calls every subscriber with one txn's events; a throwing subscriber does not stop the
 *  others nor undo the (already committed) write. */
export class Subscribers {
  private fns: Array<(events: readonly StoreEvent[]) => void> = [];
  private queue: Array<readonly StoreEvent[]> = [];
  private dispatching = false;

  constructor(private readonly onError: (e: unknown) => void) {}

  add(fn: (events: readonly StoreEvent[]) => void): () => void {
    const wrapped = (events: readonly StoreEvent[]) => fn(events);
    this.fns.push(wrapped);
    return () => {
      this.fns = this.fns.filter((f) => f !== wrapped);
    };
  }

  /** Delivers one txn's events. A txn committed by a subscriber while an earlier txn is
   *  being delivered is queued and delivered right after, so every subscriber sees the
   *  transactions in revision order. */
  emit(events: readonly StoreEvent[]): void {
    if (events.length === 0) return;
    this.queue.push(Object.freeze([...events]));
    if (this.dispatching) return;
    this.dispatching = true;
    try {
      for (let batch = this.queue.shift(); batch; batch = this.queue.shift()) {
        for (const fn of [...this.fns]) {
          try {
            fn(batch);
          } catch (e) {
            this.onError(e);
          }
        }
      }
    } finally {
      this.dispatching = false;
    }
  }

  clear(): void {
    this.fns = [];
  }
}

export function defaultSubscriberError(e: unknown): void {
  process.emitWarning(`store subscriber threw: ${e instanceof Error ? e.stack : String(e)}`, {
    code: 'TETHER_STORE_SUBSCRIBER',
  });
}

export function compactedError(from: number, compacted: number): TetherError {
  return new TetherError(
    'TETHER_E_COMPACTED',
    `revision ${from} is compacted: history starts after revision ${compacted}`,
    { field: 'fromRevision', expected: `a revision >= ${compacted}`, compactedRevision: compacted },
  );
}

export interface StoreOptions {
  /** Clock for creationTimestamp (tests inject a fixed one). */
  now?: () => Date;
  /** Called when a subscriber throws; defaults to a process warning. */
  onSubscriberError?: (e: unknown) => void;
}

export function toStored(row: Row): StoredObject {
  return {
    kind: row.kind,
    name: row.name,
    revision: row.revision,
    createRevision: row.createRevision,
    object: JSON.parse(row.json) as TetherObject,
  };
}

/** Revision up to which compact(keep) drops history; validates `keep`. */
export function compactTarget(head: number, keepRevisions: number): number {
  if (!Number.isInteger(keepRevisions) || keepRevisions < 0) {
    throw new TetherError('TETHER_E_INVALID', `cannot keep ${keepRevisions} revisions`, {
      field: 'keepRevisions',
      expected: 'an integer >= 0',
    });
  }
  return Math.max(0, head - keepRevisions);
}

/** An RFC 3339 timestamp as the store writes them, or undefined: a migrated object's
 *  creationTimestamp is kept only when it is one. */
function validTimestamp(t: unknown): string | undefined {
  return typeof t === 'string' && t.length <= 40 && !Number.isNaN(Date.parse(t)) ? t : undefined;
}
