import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { byKindName, cmp, objectKey } from '../../../src/controller/store/keys.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { openSqliteStore } from '../../../src/controller/store/sqlite.js';
import { obj } from './contract.js';

const root = mkdtempSync(join(tmpdir(), 'tether-store-keys-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('store keys and order', () => {
  it('one key per object: kind and name are not mixed up across the separator', () => {
    expect(objectKey('Node', 'a')).toBe('Node/a');
    expect(objectKey('Node', 'a')).not.toBe(objectKey('Site', 'a'));
  });

  it('orders by code unit, not by locale (what SQLite BINARY and etcd byte order give)', () => {
    // localeCompare would put 'a' before 'B'; the backends put 'B' (0x42) first.
    expect(['a', 'B', 'a-1', 'a.1', '0'].sort(cmp)).toEqual(['0', 'B', 'a', 'a-1', 'a.1']);
    expect(cmp('x', 'x')).toBe(0);
  });

  it('kind first, then name, as list() answers', () => {
    const rows = [
      { kind: 'Site', name: 'a' },
      { kind: 'Node', name: 'z' },
      { kind: 'Node', name: 'b' },
    ];
    expect(rows.sort(byKindName)).toEqual([
      { kind: 'Node', name: 'b' },
      { kind: 'Node', name: 'z' },
      { kind: 'Site', name: 'a' },
    ]);
  });

  it('the memory store lists in the order of SQLite ORDER BY', () => {
    const objs = [
      obj('Ab', 'a'),
      obj('AB', 'a'),
      obj('A', 'a'),
      obj('Site', 'a.1'),
      obj('Site', 'a-1'),
      obj('Site', '0'),
      obj('Site', 'a'),
    ];
    const mem = new MemoryStore();
    const sql = openSqliteStore(join(root, 'db'));
    try {
      for (const s of [mem, sql]) s.txn(objs.map((object) => ({ op: 'put' as const, object })));
      const names = (s: MemoryStore | typeof sql) => s.list().items.map((i) => objectKey(i.kind, i.name));
      expect(names(mem)).toEqual(names(sql));
      expect(names(mem)).toEqual(['A/a', 'AB/a', 'Ab/a', 'Site/0', 'Site/a', 'Site/a-1', 'Site/a.1']);
    } finally {
      sql.close();
    }
  });
});
