import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { WatchBatch } from '../../../src/controller/store/datastore.js';
import { LocalDatastore } from '../../../src/controller/store/local.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { SqliteStore } from '../../../src/controller/store/sqlite.js';
import { obj } from './contract.js';
import { datastoreContract, rejected } from './datastore-contract.js';

const root = mkdtempSync(join(tmpdir(), 'tether-ds-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

datastoreContract(
  'LocalDatastore(MemoryStore)',
  async (clock) => new LocalDatastore(new MemoryStore({ now: clock.now }), 'memory'),
);
datastoreContract(
  'LocalDatastore(SqliteStore)',
  async (clock) => new LocalDatastore(new SqliteStore(join(root, `s${++n}`), { now: clock.now }), 'sqlite'),
);

describe('LocalDatastore watch queue', () => {
  it('a consumer that overflows its queue catches up from history, in order, without gaps', async () => {
    const ds = new LocalDatastore(new MemoryStore(), 'memory', 4);
    const it = ds.watch(0)[Symbol.asyncIterator]();
    const first = it.next();
    await ds.txn([{ op: 'put', object: obj('Site', 's0') }]);
    const got: WatchBatch[] = [(await first).value as WatchBatch];
    // 20 transactions while nobody pulls: far past the queue's 4.
    for (let i = 1; i <= 20; i++) await ds.txn([{ op: 'put', object: obj('Site', `s${i}`) }]);
    for (let i = 1; i <= 20; i++) got.push((await it.next()).value as WatchBatch);
    expect(got.map((b) => b.revision)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    await it.return?.();
    await ds.close();
  });

  it('…and gets TETHER_E_COMPACTED when the history it needs was compacted meanwhile', async () => {
    const ds = new LocalDatastore(new MemoryStore(), 'memory', 2);
    const it = ds.watch(0)[Symbol.asyncIterator]();
    const first = it.next();
    await ds.txn([{ op: 'put', object: obj('Site', 's0') }]);
    await first;
    for (let i = 1; i <= 5; i++) await ds.txn([{ op: 'put', object: obj('Site', `s${i}`) }]);
    await ds.compact(0);
    const e = await rejected(it.next());
    expect(e.code).toBe('TETHER_E_COMPACTED');
    await ds.close();
  });
});
