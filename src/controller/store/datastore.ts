import type { ReportMark } from '../../api/signed-report.js';
import type { StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store.js';

/**
 * The asynchronous store: the same data model and semantics as `Store` (one revision
 * counter, CAS on an object's revision, history with compaction), with every call returning
 * a Promise and change delivery as a pull stream instead of callbacks inside the commit.
 * A network store (etcd) cannot promise either synchronous reads or subscribers that run
 * inside the commit; this interface promises neither. Implementations: LocalDatastore over
 * MemoryStore/SqliteStore (local.ts) and EtcdStore (etcd.ts).
 *
 * Revisions only increase; they need not be consecutive (etcd's revision counts every key
 * of the cluster, also those that are not Tether objects).
 */
export interface Datastore {
  /** 'memory' | 'sqlite' | 'etcd', for logs and `tether controller migrate`. */
  readonly backend: string;
  /** Revision of the last transaction that changed an object (0 for an empty store). */
  revision(): Promise<number>;
  /** history(from)/watch(from) refuse a `from` below this with TETHER_E_COMPACTED. */
  compactedRevision(): Promise<number>;
  get(kind: string, name: string): Promise<StoredObject | undefined>;
  /** One consistent snapshot: `revision` is the revision the items are at, the right
   *  starting point for watch(). */
  list(kind?: string): Promise<{ revision: number; items: StoredObject[] }>;
  /** All-or-nothing unless `opts.split` (see TxnOptions); resolves only once durable. */
  txn(ops: readonly TxnOp[], extras?: TxnExtras, opts?: TxnOptions): Promise<TxnResult>;
  reportMark(node: string): Promise<ReportMark | undefined>;
  /** Events with revision > fromRevision up to the current revision, in order. */
  history(fromRevision: number, kind?: string): Promise<StoreEvent[]>;
  /**
   * Every event with revision > fromRevision, one batch per transaction, in revision order,
   * first the stored history and then live, until `signal` aborts, the consumer stops
   * iterating, or the store closes. Throws TETHER_E_COMPACTED when fromRevision is (or
   * becomes, for a consumer that falls behind) older than the kept history: the consumer
   * then resyncs by list() and watches again from that list's revision (see `follow`).
   */
  watch(fromRevision: number, opts?: WatchOptions): AsyncIterable<WatchBatch>;
  /** Proves the store takes a durable write now; TETHER_E_STATE/UNAVAILABLE if not. */
  probe(): Promise<void>;
  /** Drops history older than `keepRevisions` behind revision(). */
  compact(keepRevisions: number): Promise<void>;
  close(): Promise<void>;
}

export interface TxnOptions {
  /**
   * A backend with a per-transaction operation limit (etcd's --max-txn-ops, 128 by default)
   * refuses a larger transaction with TETHER_E_TOO_LARGE unless this is true; then it
   * commits the ops in order in chunks that each fit, every chunk atomic with its own CAS
   * checks, and the report marks in the last chunk. Only for callers whose ops are
   * independent and idempotent on retry (a bulk apply, an endpoint report whose mark must
   * not outrun its endpoints). Backends without a limit ignore it.
   */
  split?: boolean;
}

export interface WatchOptions {
  /** Only events of this kind (batches without any are skipped). */
  kind?: string;
  signal?: AbortSignal;
}

export interface WatchBatch {
  revision: number;
  events: readonly StoreEvent[];
}
