import type { ReportMark } from '../../api/signed-report.js';
import { TetherError } from '../../lib/errors.js';
import {
  compactedError,
  compactTarget,
  defaultSubscriberError,
  eventOf,
  planTxn,
  type Row,
  type StoreOptions,
  Subscribers,
  toStored,
} from './core.js';
import { byKindName, objectKey } from './keys.js';
import type { Store, StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store.js';

interface HistoryRow {
  revision: number;
  kind: string;
  name: string;
  type: 'put' | 'delete';
  json: string | undefined;
  prevJson: string | undefined;
}

/**
 * In-memory Store with exactly the semantics of SqliteStore (both run transactions through
 * `planTxn`; objects are kept as JSON so callers never share references). Not durable: for
 * unit tests and throwaway tools.
 */
export class MemoryStore implements Store {
  private head = 0;
  private compacted = 0;
  private readonly objects = new Map<string, Row>();
  private hist: HistoryRow[] = [];
  private readonly marks = new Map<string, ReportMark>();
  private readonly subs: Subscribers;
  private readonly now: () => Date;
  private closed = false;

  constructor(opts: StoreOptions = {}) {
    this.now = opts.now ?? (() => new Date());
    this.subs = new Subscribers(opts.onSubscriberError ?? defaultSubscriberError);
  }

  revision(): number {
    this.open();
    return this.head;
  }

  compactedRevision(): number {
    this.open();
    return this.compacted;
  }

  get(kind: string, name: string): StoredObject | undefined {
    this.open();
    const row = this.objects.get(objectKey(kind, name));
    return row && toStored(row);
  }

  list(kind?: string): { revision: number; items: StoredObject[] } {
    this.open();
    const rows = [...this.objects.values()]
      .filter((r) => kind === undefined || r.kind === kind)
      .sort(byKindName);
    return { revision: this.head, items: rows.map(toStored) };
  }

  txn(ops: readonly TxnOp[], extras: TxnExtras = {}): TxnResult {
    this.open();
    const plan = planTxn(
      ops,
      this.head,
      (k, n) => this.objects.get(objectKey(k, n)),
      this.now,
      extras.keepCreationTimestamp,
    );
    for (const m of extras.reportMarks ?? []) this.marks.set(m.node, { ...m.mark });
    for (const w of plan.writes) if (w.type === 'delete' && w.kind === 'Node') this.marks.delete(w.name);
    if (plan.writes.length === 0) return plan.result;
    const revision = this.head + 1;
    for (const w of plan.writes) {
      const key = objectKey(w.kind, w.name);
      if (w.type === 'put') this.objects.set(key, w.row!);
      else this.objects.delete(key);
      this.hist.push({
        revision,
        kind: w.kind,
        name: w.name,
        type: w.type,
        json: w.row?.json,
        prevJson: w.prevJson,
      });
    }
    this.head = revision;
    this.subs.emit(plan.events);
    return plan.result;
  }

  reportMark(node: string): ReportMark | undefined {
    this.open();
    const m = this.marks.get(node);
    return m && { ...m };
  }

  history(fromRevision: number, kind?: string): StoreEvent[] {
    this.open();
    if (fromRevision < this.compacted) throw compactedError(fromRevision, this.compacted);
    return this.hist
      .filter((h) => h.revision > fromRevision && (kind === undefined || h.kind === kind))
      .map((h) => eventOf(h.revision, h.type, h.kind, h.name, h.json, h.prevJson));
  }

  subscribe(fn: (events: readonly StoreEvent[]) => void): () => void {
    this.open();
    return this.subs.add(fn);
  }

  probe(): void {
    this.open();
  }

  compact(keepRevisions: number): void {
    this.open();
    const to = compactTarget(this.head, keepRevisions);
    if (to <= this.compacted) return;
    this.hist = this.hist.filter((h) => h.revision > to);
    this.compacted = to;
  }

  close(): void {
    this.closed = true;
    this.subs.clear();
  }

  private open(): void {
    if (this.closed) throw new TetherError('TETHER_E_STATE', 'store is closed');
  }
}
