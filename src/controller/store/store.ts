import type { TetherObject } from '../../api/resource.js';
import type { ReportMark } from '../../api/signed-report.js';

/**
 * The controller's resource store, shaped after etcd's KV + watch API so that an etcd
 * implementation can stand behind it: one global revision counter, every write bumps it,
 * compare-and-swap on an object's revision, and watch from a revision with history.
 */
export interface StoredObject {
  kind: string;
  name: string;
  /** Revision of the last write to this object. */
  revision: number;
  /** Revision at which it was created. */
  createRevision: number;
  object: TetherObject;
}

export type StoreEvent =
  | { type: 'put'; revision: number; kind: string; name: string; object: TetherObject; prev?: TetherObject }
  | { type: 'delete'; revision: number; kind: string; name: string; prev: TetherObject };

export interface PutOp {
  op: 'put';
  object: TetherObject;
  /** Compare-and-swap: the write succeeds only if the object's current revision equals this;
   *  0 means "must not exist"; undefined means no check. */
  expectRevision?: number;
}

export interface DeleteOp {
  op: 'delete';
  kind: string;
  name: string;
  expectRevision?: number;
}

export type TxnOp = PutOp | DeleteOp;

export interface TxnResult {
  /** Revision of this transaction (all its writes share it); unchanged if it wrote nothing. */
  revision: number;
  results: Array<{
    kind: string;
    name: string;
    revision: number;
    action: 'created' | 'configured' | 'unchanged' | 'deleted';
  }>;
}

/** What a transaction writes besides resources. */
export interface TxnExtras {
  /**
   * Per node, the mark of the signed endpoint report whose endpoints this transaction stores
   * (src/api/signed-report.ts): durable with the endpoints, or not at all, so a controller
   * that restarts still refuses a replay of an older report. Not resources: no revision, no
   * event, no history; written even when the ops change nothing. A Node deleted in any
   * transaction takes its mark with it.
   */
  reportMarks?: ReadonlyArray<{ node: string; mark: ReportMark }>;
  /** A created object keeps the creationTimestamp it carries instead of the store's clock
   *  (`tether controller migrate` copies objects with their history of record). */
  keepCreationTimestamp?: boolean;
  /**
   * Leader fencing (src/controller/leader.ts): the transaction commits only while the
   * election key `key` (relative to the store's prefix) still has this create revision, that
   * is while the writer is still the leader of the term it won. Checked in the same etcd Txn
   * as the writes, so a deposed leader's late write fails (TETHER_E_PRECONDITION, nothing
   * written) instead of racing the new leader. Stores with one writer by construction
   * (memory, SQLite) have no election and ignore it.
   */
  fence?: { key: string; createRevision: number };
}

export interface Store {
  /** Current revision of the whole store. */
  revision(): number;
  /** Oldest revision whose events can still be replayed by watch(from). */
  compactedRevision(): number;
  get(kind: string, name: string): StoredObject | undefined;
  list(kind?: string): { revision: number; items: StoredObject[] };
  /** All-or-nothing; throws TETHER_E_CONFLICT (nothing written) when a CAS check fails.
   *  Returns only after the write is durable. A put identical to the stored object is
   *  'unchanged' and does not bump the revision. */
  txn(ops: readonly TxnOp[], extras?: TxnExtras): TxnResult;
  /** The node's last stored report mark (TxnExtras.reportMarks). */
  reportMark(node: string): ReportMark | undefined;
  /** Events with revision > fromRevision, in order. Throws TETHER_E_COMPACTED when
   *  fromRevision < compactedRevision(). */
  history(fromRevision: number, kind?: string): StoreEvent[];
  /** Calls `fn` for every event after the moment of subscription; returns an unsubscribe. */
  subscribe(fn: (events: readonly StoreEvent[]) => void): () => void;
  /** Writes a value outside the resources (no revision, no event), makes it durable and
   *  reads it back: proof that the store can still take writes. Throws TETHER_E_STATE when
   *  it cannot (disk full, I/O error, closed). */
  probe(): void;
  /** Drops history older than `keepRevisions` behind the head. */
  compact(keepRevisions: number): void;
  close(): void;
}
