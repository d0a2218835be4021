import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { openSqliteStore, SqliteStore, STORE_FILE } from '../../../src/controller/store/sqlite.js';
import { fixedClock, obj, storeContract, thrown } from './contract.js';

const root = mkdtempSync(join(tmpdir(), 'tether-store-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `s${++n}`);

storeContract('MemoryStore', (clock, onSubscriberError) =>
  onSubscriberError
    ? new MemoryStore({ now: clock.now, onSubscriberError })
    : new MemoryStore({ now: clock.now }),
);
storeContract('SqliteStore', (clock, onSubscriberError) =>
  onSubscriberError
    ? new SqliteStore(freshDir(), { now: clock.now, onSubscriberError })
    : new SqliteStore(freshDir(), { now: clock.now }),
);

describe('SqliteStore on disk', () => {
  it('uses WAL with synchronous=FULL', () => {
    const dir = freshDir();
    const s = openSqliteStore(dir);
    try {
      const db = (s as unknown as { db: Database.Database }).db;
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    } finally {
      s.close();
    }
  });

  it('keeps objects, history, the revision counter and compaction across reopen', () => {
    const dir = freshDir();
    const clock = fixedClock();
    let s = openSqliteStore(dir, { now: clock.now });
    for (let i = 1; i <= 6; i++) s.txn([{ op: 'put', object: obj('Site', `s${i % 3}`, { i }) }]);
    s.txn([{ op: 'delete', kind: 'Site', name: 's0' }]);
    s.compact(2);
    const before = { list: s.list(), history: s.history(5), compacted: s.compactedRevision() };
    s.close();

    s = openSqliteStore(dir, { now: clock.now });
    try {
      expect(s.revision()).toBe(7);
      expect(s.compactedRevision()).toBe(5);
      expect(before.compacted).toBe(5);
      expect(s.list()).toEqual(before.list);
      expect(s.history(5)).toEqual(before.history);
      expect(thrown(() => s.history(4)).code).toBe('TETHER_E_COMPACTED');
      // Deleting everything does not reset the counter.
      s.txn(s.list().items.map((i) => ({ op: 'delete' as const, kind: i.kind, name: i.name })));
      s.close();
      s = openSqliteStore(dir);
      expect(s.list()).toEqual({ revision: 8, items: [] });
      expect(s.txn([{ op: 'put', object: obj('Site', 'x') }]).revision).toBe(9);
    } finally {
      s.close();
    }
  });

  it('keeps report marks across reopen', () => {
    const dir = freshDir();
    let s = openSqliteStore(dir);
    const mark = { serial: '0a', bootId: 'b1', seq: 1_733_000_000_123, at: 5 };
    s.txn([{ op: 'put', object: obj('Site', 'x', {}) }], { reportMarks: [{ node: 'n1', mark }] });
    s.txn([], { reportMarks: [{ node: 'n2', mark: { ...mark, seq: 3 } }] });
    s.close();
    s = openSqliteStore(dir);
    try {
      expect(s.reportMark('n1')).toEqual(mark);
      expect(s.reportMark('n2')?.seq).toBe(3);
    } finally {
      s.close();
    }
  });

  it('compaction truncates the WAL', () => {
    const dir = freshDir();
    const s = openSqliteStore(dir);
    try {
      for (let i = 0; i < 50; i++)
        s.txn([{ op: 'put', object: obj('Site', 'a', { i, pad: 'x'.repeat(2000) }) }]);
      s.compact(1);
      const db = (s as unknown as { db: Database.Database }).db;
      const r = db.prepare('SELECT count(*) AS c FROM history').get() as { c: number };
      expect(r.c).toBe(1);
      const { size } = statSync(join(dir, `${STORE_FILE}-wal`));
      expect(size).toBe(0);
    } finally {
      s.close();
    }
  });

  it('a second process-level writer cannot reuse a revision', () => {
    const dir = freshDir();
    const a = openSqliteStore(dir);
    const b = openSqliteStore(dir);
    try {
      expect(a.txn([{ op: 'put', object: obj('Site', 'a') }]).revision).toBe(1);
      expect(b.txn([{ op: 'put', object: obj('Site', 'b') }]).revision).toBe(2);
      expect(a.revision()).toBe(2);
      expect(a.history(0).map((e) => e.revision)).toEqual([1, 2]);
    } finally {
      a.close();
      b.close();
    }
  });

  it('a write blocked by a lock held elsewhere fails retryably and writes nothing', () => {
    const dir = freshDir();
    const s = openSqliteStore(dir, { busyTimeoutMs: 50 });
    const other = new Database(join(dir, STORE_FILE));
    try {
      other.exec('BEGIN IMMEDIATE');
      const e = thrown(() => s.txn([{ op: 'put', object: obj('Site', 'a') }]));
      expect(e.code).toBe('TETHER_E_UNAVAILABLE');
      expect(e.retryable).toBe(true);
      other.exec('ROLLBACK');
      expect(s.revision()).toBe(0);
      expect(s.txn([{ op: 'put', object: obj('Site', 'a') }]).revision).toBe(1);
    } finally {
      other.close();
      s.close();
    }
  });

  it('refuses a database from a newer schema and a corrupt file with TETHER_E_STATE', () => {
    const dir = freshDir();
    openSqliteStore(dir).close();
    const db = new Database(join(dir, STORE_FILE));
    db.pragma('user_version = 99');
    db.close();
    const e = thrown(() => openSqliteStore(dir));
    expect(e.code).toBe('TETHER_E_STATE');
    expect(e.message).toMatch(/schema version 99/);

    const bad = freshDir();
    mkdirSync(bad, { recursive: true });
    writeFileSync(
      join(bad, STORE_FILE),
      'this is not a database, just some text of some length '.repeat(100),
    );
    expect(thrown(() => openSqliteStore(bad)).code).toBe('TETHER_E_STATE');
  });
});
