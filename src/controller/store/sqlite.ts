import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
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
import type { Store, StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store.js';

export interface SqliteStoreOptions extends StoreOptions {
  /** How long a write waits for another connection's lock before TETHER_E_UNAVAILABLE
   *  (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** File name of the database inside the data directory. */
export const STORE_FILE = 'store.sqlite';
// 2: report_marks (older builds would leave the marks behind the endpoints they store).
const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS objects (
  kind            TEXT    NOT NULL,
  name            TEXT    NOT NULL,
  revision        INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  json            TEXT    NOT NULL,
  PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
  revision  INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  kind      TEXT    NOT NULL,
  name      TEXT    NOT NULL,
  type      TEXT    NOT NULL CHECK (type IN ('put', 'delete')),
  json      TEXT,
  prev_json TEXT,
  PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_kind ON history (kind, revision);
CREATE TABLE IF NOT EXISTS report_marks (
  node    TEXT    PRIMARY KEY,
  serial  TEXT    NOT NULL,
  boot_id TEXT    NOT NULL,
  seq     INTEGER NOT NULL,
  at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  n  INTEGER NOT NULL
);
`;

interface HistoryRow {
  revision: number;
  kind: string;
  name: string;
  type: 'put' | 'delete';
  json: string | null;
  prev_json: string | null;
}

interface ObjectRow {
  kind: string;
  name: string;
  revision: number;
  create_revision: number;
  json: string;
}

/**
 * The controller's durable Store: one SQLite database (WAL, synchronous=FULL) in a data
 * directory. `txn` returns only after SQLite has fsynced the commit, so an acknowledged
 * write survives kill -9 and power loss. Each transaction runs under BEGIN IMMEDIATE and
 * reads the head revision inside it, so even a second process writing the same file cannot
 * make two transactions share a revision (its subscribers would not see the other's
 * writes, though: one controller per data directory).
 */
export class SqliteStore implements Store {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly subs: Subscribers;
  private readonly now: () => Date;
  private probes = 0;
  private readonly stmt: ReturnType<SqliteStore['prepare']>;
  private readonly runTxn: Database.Transaction<
    (ops: readonly TxnOp[], extras: TxnExtras) => { plan: ReturnType<typeof planTxn> }
  >;

  constructor(dataDir: string, opts: SqliteStoreOptions = {}) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.path = join(dataDir, STORE_FILE);
    this.now = opts.now ?? (() => new Date());
    this.subs = new Subscribers(opts.onSubscriberError ?? defaultSubscriberError);
    try {
      this.db = new Database(this.path);
    } catch (e) {
      throw stateError(this.path, e);
    }
    try {
      this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
      const mode = this.db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(`database schema version ${version} is newer than this build (${SCHEMA_VERSION})`);
      }
      this.db
        .transaction(() => {
          this.db.exec(SCHEMA);
          this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
        })
        .immediate();
      this.stmt = this.prepare();
    } catch (e) {
      this.db.close();
      throw stateError(this.path, e);
    }
    this.runTxn = this.db.transaction((ops: readonly TxnOp[], extras: TxnExtras) => {
      const head = this.metaValue('revision');
      const plan = planTxn(ops, head, (k, n) => this.row(k, n), this.now, extras.keepCreationTimestamp);
      for (const { node, mark } of extras.reportMarks ?? [])
        this.stmt.putMark.run(node, mark.serial, mark.bootId, mark.seq, mark.at);
      for (const w of plan.writes)
        if (w.type === 'delete' && w.kind === 'Node') this.stmt.delMark.run(w.name);
      if (plan.writes.length === 0) return { plan };
      const revision = head + 1;
      plan.writes.forEach((w, seq) => {
        if (w.type === 'put') {
          const r = w.row!;
          this.stmt.upsert.run(r.kind, r.name, r.revision, r.createRevision, r.json);
        } else {
          this.stmt.del.run(w.kind, w.name);
        }
        this.stmt.addHistory.run(
          revision,
          seq,
          w.kind,
          w.name,
          w.type,
          w.row?.json ?? null,
          w.prevJson ?? null,
        );
      });
      this.stmt.setMeta.run(revision, 'revision');
      return { plan };
    });
  }

  private prepare() {
    const db = this.db;
    return {
      getMeta: db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE key = ?'),
      get: db.prepare<[string, string], ObjectRow>(
        'SELECT kind, name, revision, create_revision, json FROM objects WHERE kind = ? AND name = ?',
      ),
      listAll: db.prepare<[], ObjectRow>(
        'SELECT kind, name, revision, create_revision, json FROM objects ORDER BY kind, name',
      ),
      listKind: db.prepare<[string], ObjectRow>(
        'SELECT kind, name, revision, create_revision, json FROM objects WHERE kind = ? ORDER BY name',
      ),
      upsert: db.prepare<[string, string, number, number, string]>(
        `INSERT INTO objects (kind, name, revision, create_revision, json) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (kind, name) DO UPDATE SET revision = excluded.revision,
           create_revision = excluded.create_revision, json = excluded.json`,
      ),
      del: db.prepare<[string, string]>('DELETE FROM objects WHERE kind = ? AND name = ?'),
      addHistory: db.prepare<[number, number, string, string, string, string | null, string | null]>(
        'INSERT INTO history (revision, seq, kind, name, type, json, prev_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      historyAll: db.prepare<[number], HistoryRow>(
        'SELECT revision, kind, name, type, json, prev_json FROM history WHERE revision > ? ORDER BY revision, seq',
      ),
      historyKind: db.prepare<[number, string], HistoryRow>(
        `SELECT revision, kind, name, type, json, prev_json FROM history
         WHERE revision > ? AND kind = ? ORDER BY revision, seq`,
      ),
      dropHistory: db.prepare<[number]>('DELETE FROM history WHERE revision <= ?'),
      putMark: db.prepare<[string, string, string, number, number]>(
        `INSERT INTO report_marks (node, serial, boot_id, seq, at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (node) DO UPDATE SET serial = excluded.serial, boot_id = excluded.boot_id,
           seq = excluded.seq, at = excluded.at`,
      ),
      delMark: db.prepare<[string]>('DELETE FROM report_marks WHERE node = ?'),
      getMark: db.prepare<[string], { serial: string; boot_id: string; seq: number; at: number }>(
        'SELECT serial, boot_id, seq, at FROM report_marks WHERE node = ?',
      ),
      probeWrite: db.prepare<[number]>(
        'INSERT INTO probe (id, n) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n',
      ),
      probeRead: db.prepare<[], { n: number }>('SELECT n FROM probe WHERE id = 1'),
    };
  }

  revision(): number {
    return this.metaValue('revision');
  }

  compactedRevision(): number {
    return this.metaValue('compacted');
  }

  get(kind: string, name: string): StoredObject | undefined {
    const row = this.row(kind, name);
    return row && toStored(row);
  }

  list(kind?: string): { revision: number; items: StoredObject[] } {
    this.checkOpen();
    // One read transaction: the revision and the items are the same snapshot.
    return this.db.transaction(() => {
      const rows = kind === undefined ? this.stmt.listAll.all() : this.stmt.listKind.all(kind);
      return { revision: this.metaValue('revision'), items: rows.map((r) => toStored(fromObjectRow(r))) };
    })();
  }

  txn(ops: readonly TxnOp[], extras: TxnExtras = {}): TxnResult {
    this.checkOpen();
    let plan: ReturnType<typeof planTxn>;
    try {
      ({ plan } = this.runTxn.immediate(ops, extras));
    } catch (e) {
      throw sqliteError(this.path, e);
    }
    this.subs.emit(plan.events);
    return plan.result;
  }

  reportMark(node: string): ReportMark | undefined {
    this.checkOpen();
    const r = this.stmt.getMark.get(node);
    return r && { serial: r.serial, bootId: r.boot_id, seq: r.seq, at: r.at };
  }

  history(fromRevision: number, kind?: string): StoreEvent[] {
    this.checkOpen();
    return this.db.transaction(() => {
      const compacted = this.metaValue('compacted');
      if (fromRevision < compacted) throw compactedError(fromRevision, compacted);
      const rows =
        kind === undefined
          ? this.stmt.historyAll.all(fromRevision)
          : this.stmt.historyKind.all(fromRevision, kind);
      return rows.map((h) => eventOf(h.revision, h.type, h.kind, h.name, h.json, h.prev_json));
    })();
  }

  subscribe(fn: (events: readonly StoreEvent[]) => void): () => void {
    this.checkOpen();
    return this.subs.add(fn);
  }

  probe(): void {
    this.checkOpen();
    const n = ++this.probes;
    try {
      // A committed write under synchronous=FULL: it reaches the disk, as every txn must.
      this.db.transaction(() => this.stmt.probeWrite.run(n)).immediate();
      const back = this.stmt.probeRead.get()?.n;
      if (back !== n) throw new Error(`probe read back ${String(back)}, wrote ${n}`);
    } catch (e) {
      throw sqliteError(this.path, e);
    }
  }

  compact(keepRevisions: number): void {
    this.checkOpen();
    const changed = this.db
      .transaction(() => {
        const to = compactTarget(this.metaValue('revision'), keepRevisions);
        if (to <= this.metaValue('compacted')) return false;
        this.stmt.dropHistory.run(to);
        this.stmt.setMeta.run(to, 'compacted');
        return true;
      })
      .immediate();
    if (changed) {
      // Fold the WAL back into the main file and truncate it. Best effort: a busy reader
      // only means the checkpoint is partial; the next one finishes it.
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
  }

  close(): void {
    this.subs.clear();
    if (!this.db.open) return;
    try {
      this.db.pragma('optimize');
    } finally {
      this.db.close();
    }
  }

  private metaValue(key: 'revision' | 'compacted'): number {
    this.checkOpen();
    const r = this.stmt.getMeta.get(key);
    if (!r) throw new TetherError('TETHER_E_STATE', `store ${this.path} has no ${key} counter`);
    return r.value;
  }

  private checkOpen(): void {
    if (!this.db.open) throw new TetherError('TETHER_E_STATE', `store ${this.path} is closed`);
  }

  private row(kind: string, name: string): Row | undefined {
    this.checkOpen();
    const r = this.stmt.get.get(kind, name);
    return r && fromObjectRow(r);
  }
}

function fromObjectRow(r: ObjectRow): Row {
  return {
    kind: r.kind,
    name: r.name,
    revision: r.revision,
    createRevision: r.create_revision,
    json: r.json,
  };
}

/** TetherErrors pass through; SQLite's are mapped: a lock held too long by another
 *  connection is retryable (TETHER_E_UNAVAILABLE), anything else (disk full, I/O error,
 *  corruption) is TETHER_E_STATE. Either way the transaction was rolled back. */
function sqliteError(path: string, e: unknown): TetherError {
  if (e instanceof TetherError) return e;
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) {
    return new TetherError(
      'TETHER_E_UNAVAILABLE',
      `store ${path} is locked: ${msg}`,
      { file: path },
      { cause: e },
    );
  }
  return new TetherError(
    'TETHER_E_STATE',
    `store ${path} write failed: ${msg}`,
    { file: path, sqlite: code },
    { cause: e },
  );
}

function stateError(path: string, e: unknown): TetherError {
  const msg = e instanceof Error ? e.message : String(e);
  return new TetherError('TETHER_E_STATE', `cannot open store ${path}: ${msg}`, { file: path }, { cause: e });
}

/** Opens (creating if needed) the SQLite store in `dataDir`. */
export function openSqliteStore(dataDir: string, opts: SqliteStoreOptions = {}): SqliteStore {
  return new SqliteStore(dataDir, opts);
}
