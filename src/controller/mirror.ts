import type { ReportMark } from '../api/signed-report.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Datastore, TxnOptions, WatchBatch } from './store/datastore.js';
import { byKindName, objectKey } from './store/keys.js';
import type { StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store/store.js';

/**
 * What the controller's modules (hub, registry, endpoint claims, reconcilers, admin API) use
 * of the store: synchronous reads of a local copy that follows the Datastore's watch, and
 * asynchronous transactions that resolve once the write is durable in the Datastore AND the
 * copy has seen it (read-your-writes: code after `await txn()` reads what it wrote).
 * Subscribers run from the watch loop, never inside a commit: the same code serves a
 * controller on SQLite and every replica on one etcd, where a write by another replica
 * reaches this one only through its watch.
 */
export interface ControllerStore {
  readonly backend: string;
  /** Revision the copy is at (the last batch applied). */
  revision(): number;
  /** history(from) refuses a `from` below this with TETHER_E_COMPACTED. */
  compactedRevision(): number;
  get(kind: string, name: string): StoredObject | undefined;
  list(kind?: string): { revision: number; items: StoredObject[] };
  /** Events kept in the copy with revision > fromRevision, in order. */
  history(fromRevision: number, kind?: string): StoreEvent[];
  /** Resolves once the copy has applied `revision` (absent: the copy is the store). */
  caughtUp?(revision: number): Promise<void>;
  /** Called with each applied batch, after the copy applied it; returns an unsubscribe. */
  subscribe(fn: (events: readonly StoreEvent[]) => void): () => void;
  txn(ops: readonly TxnOp[], extras?: TxnExtras, opts?: TxnOptions): Promise<TxnResult>;
  reportMark(node: string): Promise<ReportMark | undefined>;
  /** Throws the last failed durable-write probe (watchdog: must be synchronous) and starts
   *  another one in the background. */
  probe(): void;
  compact(keepRevisions: number): Promise<void>;
  close(): Promise<void>;
}

export interface MirrorOptions {
  log?: Logger;
  /** Events kept for nodes' resume-by-delta (default 100,000; older ones: snapshot). */
  keepEvents?: number;
  /** How long a write waits for the copy to see it before its caller gets
   *  TETHER_E_UNAVAILABLE (the write is durable; the watch is stalled). Default 30 s. */
  catchUpTimeoutMs?: number;
  /** Delay between watch retries when the Datastore is unreachable (ms, doubled to 5 s). */
  retryMs?: number;
}

const DEFAULT_KEEP_EVENTS = 100_000;

/**
 * The local copy behind ControllerStore. Opened by `StoreMirror.open`, which loads a
 * snapshot and the Datastore's kept history (so a replica that starts after another died
 * can still resume that one's nodes by delta), then watches from the snapshot's revision.
 */
export class StoreMirror implements ControllerStore {
  private readonly objects = new Map<string, StoredObject>();
  /** The same objects per kind, by name. */
  private readonly byKind = new Map<string, Map<string, StoredObject>>();
  private hist: StoreEvent[] = [];
  private floor = 0;
  private head = 0;
  private readonly subs = new Set<(events: readonly StoreEvent[]) => void>();
  private readonly waiters: Array<{ revision: number; resolve: () => void; reject: (e: Error) => void }> = [];
  private readonly abort = new AbortController();
  private probeError: Error | undefined;
  private probing = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly keepEvents: number;
  private closed = false;

  private constructor(
    readonly datastore: Datastore,
    private readonly opts: MirrorOptions,
  ) {
    this.keepEvents = opts.keepEvents ?? DEFAULT_KEEP_EVENTS;
  }

  get backend(): string {
    return this.datastore.backend;
  }

  static async open(datastore: Datastore, opts: MirrorOptions = {}): Promise<StoreMirror> {
    const m = new StoreMirror(datastore, opts);
    await m.load();
    m.loop = m.run();
    return m;
  }

  private async load(): Promise<void> {
    const snap = await this.datastore.list();
    this.objects.clear();
    this.byKind.clear();
    for (const it of snap.items) this.setObject(it);
    this.head = snap.revision;
    this.floor = snap.revision;
    this.hist = [];
    try {
      const from = await this.datastore.compactedRevision();
      const events = (await this.datastore.history(from)).filter((e) => e.revision <= snap.revision);
      this.hist = events.slice(-this.keepEvents);
      this.floor = this.hist.length === events.length ? from : this.hist[0]!.revision - 1;
    } catch (e) {
      // Compacted between the two reads: resume-by-delta starts at the snapshot instead.
      if (!isTetherError(e, 'TETHER_E_COMPACTED')) throw e;
    }
  }

  private setObject(it: StoredObject): void {
    this.objects.set(objectKey(it.kind, it.name), it);
    let m = this.byKind.get(it.kind);
    if (!m) {
      m = new Map();
      this.byKind.set(it.kind, m);
    }
    m.set(it.name, it);
  }

  private deleteObject(kind: string, name: string): void {
    this.objects.delete(objectKey(kind, name));
    const m = this.byKind.get(kind);
    m?.delete(name);
    if (m?.size === 0) this.byKind.delete(kind);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let delay = this.opts.retryMs ?? 200;
    while (!signal.aborted) {
      try {
        for await (const b of this.datastore.watch(this.head, { signal })) {
          this.apply(b);
          delay = this.opts.retryMs ?? 200;
        }
        if (signal.aborted) return;
      } catch (e) {
        if (signal.aborted) return;
        if (isTetherError(e, 'TETHER_E_COMPACTED')) {
          this.opts.log?.warn({ revision: this.head }, 'store watch fell behind compaction; resyncing');
          const ok = await this.resync().then(
            () => true,
            (err: Error) => {
              this.opts.log?.warn({ err: err.message }, 'store resync failed; retrying');
              return false;
            },
          );
          // A failed resync backs off like a failed watch instead of listing in a tight loop.
          if (ok) continue;
        } else
          this.opts.log?.warn(
            { err: (e as Error).message, revision: this.head },
            'store watch failed; retrying',
          );
      }
      await new Promise((r) => setTimeout(r, delay).unref());
      delay = Math.min(5000, delay * 2);
    }
  }

  /** Applies one transaction's events, then tells subscribers and waiting writers. */
  private apply(b: WatchBatch): void {
    if (b.revision <= this.head) return;
    for (const ev of b.events) {
      const k = objectKey(ev.kind, ev.name);
      if (ev.type === 'put') {
        const old = this.objects.get(k);
        this.setObject({
          kind: ev.kind,
          name: ev.name,
          revision: ev.revision,
          createRevision: old?.createRevision ?? ev.object.metadata.createRevision ?? ev.revision,
          object: ev.object,
        });
      } else this.deleteObject(ev.kind, ev.name);
      this.hist.push(ev);
    }
    this.head = b.revision;
    if (this.hist.length > this.keepEvents) {
      const drop = this.hist.length - this.keepEvents;
      this.floor = this.hist[drop - 1]!.revision;
      this.hist = this.hist.slice(drop);
    }
    this.emit(b.events);
    this.wake();
  }

  /** After the watch fell behind compaction: diff a fresh snapshot against the copy and hand
   *  subscribers the difference as events of the snapshot's revision, so indexes and
   *  sessions stay right; history restarts there (older resumes get snapshots). */
  private async resync(): Promise<void> {
    const snap = await this.datastore.list();
    const events: StoreEvent[] = [];
    const seen = new Set<string>();
    for (const it of snap.items) {
      const k = objectKey(it.kind, it.name);
      seen.add(k);
      const old = this.objects.get(k);
      if (old && old.revision === it.revision) continue;
      events.push({
        type: 'put',
        revision: snap.revision,
        kind: it.kind,
        name: it.name,
        object: it.object,
        ...(old ? { prev: old.object } : {}),
      });
      this.setObject(it);
    }
    for (const [k, old] of this.objects)
      if (!seen.has(k)) {
        events.push({
          type: 'delete',
          revision: snap.revision,
          kind: old.kind,
          name: old.name,
          prev: old.object,
        });
        this.deleteObject(old.kind, old.name);
      }
    this.hist = [];
    this.floor = snap.revision;
    this.head = Math.max(this.head, snap.revision);
    if (events.length) this.emit(events);
    this.wake();
  }

  private emit(events: readonly StoreEvent[]): void {
    for (const fn of this.subs) {
      try {
        fn(events);
      } catch (e) {
        // One consumer's bug must not stop the copy or the other consumers.
        this.opts.log?.error({ err: (e as Error).message }, 'store subscriber failed');
      }
    }
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.revision <= this.head) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Resolves once the copy has applied `revision`. */
  caughtUp(revision: number): Promise<void> {
    if (revision <= this.head) return Promise.resolve();
    if (this.closed) return Promise.reject(new TetherError('TETHER_E_STATE', 'store is closed'));
    return new Promise((resolve, reject) => this.waiters.push({ revision, resolve, reject }));
  }

  revision(): number {
    return this.head;
  }
  compactedRevision(): number {
    return this.floor;
  }
  get(kind: string, name: string): StoredObject | undefined {
    return this.objects.get(objectKey(kind, name));
  }
  list(kind?: string): { revision: number; items: StoredObject[] } {
    // One kind is read from its own index: a store of 10,000 Nodes is not scanned (and
    // sorted) to list its 3 VirtualNetworks.
    const from = kind === undefined ? this.objects : (this.byKind.get(kind) ?? new Map());
    const items = [...from.values()].sort(byKindName);
    return { revision: this.head, items };
  }
  history(fromRevision: number, kind?: string): StoreEvent[] {
    if (fromRevision < this.floor)
      throw new TetherError(
        'TETHER_E_COMPACTED',
        `revision ${fromRevision} is older than the kept history (from ${this.floor})`,
        { fromRevision, compactedRevision: this.floor },
      );
    // The kept events are in revision order: a resuming session's few new events are found
    // by bisection, not by a pass over all of them (a reconnect storm asks once per hello).
    let lo = 0;
    let hi = this.hist.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hist[mid]!.revision <= fromRevision) lo = mid + 1;
      else hi = mid;
    }
    const after = this.hist.slice(lo);
    return kind === undefined ? after : after.filter((e) => e.kind === kind);
  }
  subscribe(fn: (events: readonly StoreEvent[]) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
  async txn(ops: readonly TxnOp[], extras?: TxnExtras, opts?: TxnOptions): Promise<TxnResult> {
    const r = await this.datastore.txn(ops, extras, opts);
    const ms = this.opts.catchUpTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.caughtUp(r.revision),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new TetherError(
                  'TETHER_E_UNAVAILABLE',
                  `the write is durable at revision ${r.revision} but this controller's copy has not seen it within ${ms} ms`,
                  { committedRevision: r.revision },
                ),
              ),
            ms,
          );
          timer.unref();
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return r;
  }
  reportMark(node: string): Promise<ReportMark | undefined> {
    return this.datastore.reportMark(node);
  }
  probe(): void {
    if (!this.probing && !this.closed) {
      this.probing = true;
      this.datastore.probe().then(
        () => {
          this.probeError = undefined;
          this.probing = false;
        },
        (e: Error) => {
          this.probeError = e;
          this.probing = false;
        },
      );
    }
    if (this.probeError) throw this.probeError;
  }
  compact(keepRevisions: number): Promise<void> {
    return this.datastore.compact(keepRevisions);
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    const err = new TetherError('TETHER_E_STATE', 'store is closed');
    for (const w of this.waiters.splice(0)) w.reject(err);
    await this.loop.catch(() => undefined);
    this.subs.clear();
    await this.datastore.close();
  }
}
