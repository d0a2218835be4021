import type { ReportMark } from '../../api/signed-report.js';
import { TetherError } from '../../lib/errors.js';
import type { Datastore, TxnOptions, WatchBatch, WatchOptions } from './datastore.js';
import type { Store, StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store.js';

/** Batches a watcher may have waiting before it stops queueing and re-reads the history
 *  instead: a slow consumer costs history reads, not unbounded memory. */
const DEFAULT_MAX_QUEUED = 1024;

/**
 * A Datastore over an in-process synchronous Store (MemoryStore, SqliteStore). Its watch
 * joins the stored history to a queue filled by a subscriber that does nothing but push:
 * no consumer code runs inside the commit. A watcher whose queue overflows drops it and
 * catches up from the history, and gets TETHER_E_COMPACTED if that was compacted meanwhile.
 */
export class LocalDatastore implements Datastore {
  private readonly wakers = new Set<() => void>();
  private closed = false;

  constructor(
    readonly inner: Store,
    readonly backend: string,
    private readonly maxQueued = DEFAULT_MAX_QUEUED,
  ) {}

  async revision(): Promise<number> {
    return this.inner.revision();
  }
  async compactedRevision(): Promise<number> {
    return this.inner.compactedRevision();
  }
  async get(kind: string, name: string): Promise<StoredObject | undefined> {
    return this.inner.get(kind, name);
  }
  async list(kind?: string): Promise<{ revision: number; items: StoredObject[] }> {
    return this.inner.list(kind);
  }
  async txn(ops: readonly TxnOp[], extras?: TxnExtras, _opts?: TxnOptions): Promise<TxnResult> {
    // No operation limit here: every transaction is atomic, `split` changes nothing.
    return this.inner.txn(ops, extras);
  }
  async reportMark(node: string): Promise<ReportMark | undefined> {
    return this.inner.reportMark(node);
  }
  async history(fromRevision: number, kind?: string): Promise<StoreEvent[]> {
    return this.inner.history(fromRevision, kind);
  }
  async probe(): Promise<void> {
    this.inner.probe();
  }
  async compact(keepRevisions: number): Promise<void> {
    this.inner.compact(keepRevisions);
  }
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.wakers) w();
    this.inner.close();
  }

  watch(fromRevision: number, opts: WatchOptions = {}): AsyncIterable<WatchBatch> {
    return { [Symbol.asyncIterator]: () => this.stream(fromRevision, opts) };
  }

  private async *stream(fromRevision: number, opts: WatchOptions): AsyncGenerator<WatchBatch> {
    if (this.closed) throw new TetherError('TETHER_E_STATE', 'store is closed');
    const { kind, signal } = opts;
    let last = fromRevision;
    let queue: WatchBatch[] = [];
    let overflow = false;
    let wake: (() => void) | undefined;
    const waker = () => wake?.();
    const off = this.inner.subscribe((events) => {
      if (overflow) return;
      if (queue.length >= this.maxQueued) {
        overflow = true;
        queue = [];
      } else {
        queue.push({ revision: events[0]!.revision, events });
      }
      wake?.();
    });
    this.wakers.add(waker);
    signal?.addEventListener('abort', waker);
    try {
      // Subscribed first, history second: nothing committed in between can be missed, and
      // the queue's copies of what the history already gave are skipped by revision.
      let backlog = groupByRevision(this.inner.history(last));
      for (;;) {
        for (const b of backlog) {
          if (signal?.aborted || this.closed) return;
          if (b.revision <= last) continue;
          last = b.revision;
          const events = kind === undefined ? b.events : b.events.filter((e) => e.kind === kind);
          if (events.length > 0) yield { revision: b.revision, events };
        }
        if (signal?.aborted || this.closed) return;
        if (overflow) {
          overflow = false;
          backlog = groupByRevision(this.inner.history(last));
          continue;
        }
        if (queue.length === 0) {
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
        }
        backlog = queue;
        queue = [];
      }
    } finally {
      off();
      this.wakers.delete(waker);
      signal?.removeEventListener('abort', waker);
    }
  }
}

export function groupByRevision(events: readonly StoreEvent[]): WatchBatch[] {
  const out: WatchBatch[] = [];
  let cur: StoreEvent[] = [];
  for (const e of events) {
    if (cur.length > 0 && cur[0]!.revision !== e.revision) {
      out.push({ revision: cur[0]!.revision, events: cur });
      cur = [];
    }
    cur.push(e);
  }
  if (cur.length > 0) out.push({ revision: cur[0]!.revision, events: cur });
  return out;
}
