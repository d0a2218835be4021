import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Datastore, WatchBatch } from '../../src/controller/store/datastore.js';
import { EtcdStore } from '../../src/controller/store/etcd.js';
import { follow } from '../../src/controller/store/follow.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { isTetherError } from '../../src/lib/errors.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../support/etcd.js';
import { obj } from '../unit/store/contract.js';
import { datastoreContract, rejected } from '../unit/store/datastore-contract.js';

const have = etcdAvailable();
const LIMIT = 16;

// One etcd for the whole file: every store gets its own key prefix, which is how several
// Tether installations (or tests) share a cluster.
describe.skipIf(!have)('EtcdStore on a real etcd', () => {
  let etcd: TestEtcd;
  const open: Datastore[] = [];
  const store = async (extra: { maxTxnOps?: number; callTimeoutMs?: number } = {}) => {
    const s = await openDatastore(parseDatastoreUrl(etcd.url()), { maxTxnOps: LIMIT, ...extra });
    open.push(s);
    return s;
  };
  beforeAll(async () => {
    etcd = await startEtcd({ maxTxnOps: LIMIT });
  });
  afterAll(async () => {
    for (const s of open) await s.close();
    await etcd?.stop();
  });

  datastoreContract(
    'EtcdStore',
    async (clock) => openDatastore(parseDatastoreUrl(etcd.url()), { now: clock.now, maxTxnOps: LIMIT }),
    { maxTxnOps: LIMIT },
  );

  it("etcd's own --max-txn-ops refusal is TETHER_E_TOO_LARGE and writes nothing", async () => {
    // A store that believes the limit is 128 on an etcd that enforces 16.
    const s = await store({ maxTxnOps: 128 });
    const many = Array.from({ length: 40 }, (_, i) => ({
      op: 'put' as const,
      object: obj('Endpoint', `e${i}`),
    }));
    const e = await rejected(s.txn(many));
    expect(e.code).toBe('TETHER_E_TOO_LARGE');
    expect((await s.list()).items).toEqual([]);
  });

  it('a watcher behind a real etcd compaction gets TETHER_E_COMPACTED; follow resyncs by snapshot', async () => {
    const s = await store();
    const r1 = (await s.txn([{ op: 'put', object: obj('Site', 'a', { v: 1 }) }])).revision;
    await s.txn([{ op: 'put', object: obj('Site', 'a', { v: 2 }) }]);
    await s.txn([{ op: 'delete', kind: 'Site', name: 'a' }]);
    await s.txn([{ op: 'put', object: obj('Site', 'b') }]);
    await s.compact(0);
    const e = await rejected(
      (async () => {
        for await (const _ of s.watch(r1)) break;
      })(),
    );
    expect(e.code).toBe('TETHER_E_COMPACTED');
    expect(await s.compactedRevision()).toBeGreaterThan(r1);

    // follow: its first watch starts at the list's revision; compact under it while the
    // consumer is slow, then keep writing: it must end up with exactly the store's state.
    const ac = new AbortController();
    const state = new Set<string>();
    let resyncs = 0;
    let gate: Promise<void> = Promise.resolve();
    const done = follow(
      s,
      {
        snapshot: (items) => {
          state.clear();
          for (const o of items) state.add(o.name);
        },
        batch: async (b: WatchBatch) => {
          await gate;
          for (const ev of b.events) {
            if (ev.type === 'put') state.add(ev.name);
            else state.delete(ev.name);
          }
        },
      },
      { signal: ac.signal, onResync: () => resyncs++ },
    );
    let release!: () => void;
    gate = new Promise((r) => {
      release = r;
    });
    for (let i = 0; i < 5; i++) await s.txn([{ op: 'put', object: obj('Site', `c${i}`) }]);
    await s.compact(0);
    for (let i = 0; i < 3; i++) await s.txn([{ op: 'delete', kind: 'Site', name: `c${i}` }]);
    await s.compact(0);
    release();
    const want = (await s.list()).items.map((o) => o.name).sort();
    const deadline = Date.now() + 10_000;
    while ([...state].sort().join() !== want.join() && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await done;
    expect([...state].sort()).toEqual(want);
  });

  it('a watch survives another tenant compacting the cluster when it lost nothing', async () => {
    const mine = await store();
    const other = await store();
    const r = (await mine.txn([{ op: 'put', object: obj('Site', 'x') }])).revision;
    for (let i = 0; i < 5; i++) await other.txn([{ op: 'put', object: obj('Site', `o${i}`) }]);
    await other.compact(0);
    const it = mine.watch(r)[Symbol.asyncIterator]();
    const next = it.next();
    const r2 = (await mine.txn([{ op: 'put', object: obj('Site', 'y') }])).revision;
    expect(((await next).value as WatchBatch).revision).toBe(r2);
    await it.return?.();
  });

  it('a burst of report-mark reads shares Txns of at most --max-txn-ops ranges, each node gets its own mark, fresh', async () => {
    // Two clients of one prefix: this replica and another.
    const url = etcd.url();
    const s = await openDatastore(parseDatastoreUrl(url), { maxTxnOps: LIMIT });
    const other = await openDatastore(parseDatastoreUrl(url), { maxTxnOps: LIMIT });
    open.push(s, other);
    const mark = (i: number) => ({ serial: `s${i}`, bootId: `b${i}`, seq: i, at: 1000 + i });
    for (let i = 0; i < 40; i += 10)
      await s.txn([], {
        reportMarks: Array.from({ length: 10 }, (_, j) => ({ node: `n${i + j}`, mark: mark(i + j) })),
      });
    const unary = vi.spyOn(s as unknown as { unary: (...a: unknown[]) => unknown }, 'unary');
    // 50 nodes (10 without a mark), each asked twice in the same turn, as a storm's hellos.
    const nodes = Array.from({ length: 50 }, (_, i) => `n${i}`);
    const got = await Promise.all([...nodes, ...nodes].map((n) => s.reportMark(n)));
    const calls = unary.mock.calls.length;
    unary.mockRestore();
    expect(calls).toBe(Math.ceil(50 / LIMIT));
    for (const [i, m] of got.entries()) expect(m).toEqual(i % 50 < 40 ? mark(i % 50) : undefined);
    // Not a cache: a mark another replica stores afterwards is what the next read answers.
    await other.txn([], { reportMarks: [{ node: 'n3', mark: mark(99) }] });
    expect(await s.reportMark('n3')).toEqual(mark(99));
  });

  it('grpcTarget and the URL agree: a mixed member list is refused before dialling', () => {
    expect(() => new EtcdStore({ endpoints: ['127.0.0.1:1', 'a.example:2'] })).toThrow(/mix names/);
  });
});

describe.skipIf(!have)('EtcdStore over TLS with a client certificate', () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await startEtcd({ tls: true });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('works with the CA and a client certificate, and is refused without the certificate', async () => {
    const tls = etcd.tls!;
    const spec = parseDatastoreUrl(etcd.url());
    expect(spec).toMatchObject({ backend: 'etcd', tls: true });
    const s = await openDatastore(spec, {
      tls: { caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile },
    });
    await s.probe();
    const r = await s.txn([{ op: 'put', object: obj('Site', 'tls') }]);
    expect((await s.get('Site', 'tls'))?.revision).toBe(r.revision);
    await s.close();

    const noCert = await openDatastore(spec, { tls: { caFile: tls.caFile }, callTimeoutMs: 2000 });
    const e = await rejected(noCert.probe());
    expect(['TETHER_E_UNAVAILABLE', 'TETHER_E_TIMEOUT']).toContain(e.code);
    await noCert.close();

    // Plain gRPC to a TLS member fails as unreachable, never hangs or crashes.
    const plain = await openDatastore(parseDatastoreUrl(`etcd://${etcd.endpoint}/p/`), {
      callTimeoutMs: 2000,
    });
    expect(isTetherError(await rejected(plain.probe()))).toBe(true);
    await plain.close();
  });
});

describe.skipIf(!have)('EtcdStore across an etcd member restart (kill -9)', () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('every acknowledged write is there after kill -9 and restart; the watch resumes by itself', async () => {
    const s = await openDatastore(parseDatastoreUrl(etcd.url()), { callTimeoutMs: 2000 });
    const acked = new Map<string, number>();
    const seen = new Map<string, number>();
    const ac = new AbortController();
    const watching = (async () => {
      for await (const b of s.watch(0, { signal: ac.signal }))
        for (const ev of b.events) if (ev.type === 'put') seen.set(ev.name, ev.revision);
    })();
    let stop = false;
    let failures = 0;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const name = `w${i}`;
        for (;;) {
          try {
            const r = await s.txn([{ op: 'put', object: obj('Site', name, { i }) }]);
            acked.set(name, r.results[0]!.revision);
            break;
          } catch (e) {
            if (!(isTetherError(e) && e.retryable)) throw e;
            failures++;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
    })();
    const waitAcked = async (n: number) => {
      const deadline = Date.now() + 20_000;
      while (acked.size < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(acked.size).toBeGreaterThanOrEqual(n);
    };
    await waitAcked(50);
    await etcd.kill9();
    const beforeRestart = acked.size;
    await new Promise((r) => setTimeout(r, 300));
    await etcd.restart();
    await waitAcked(beforeRestart + 50);
    stop = true;
    await writer;
    expect(failures).toBeGreaterThan(0); // the writer did see the member go away
    const items = new Map((await s.list('Site')).items.map((o) => [o.name, o]));
    for (const [name, rev] of acked) {
      expect(items.get(name)?.revision, name).toBe(rev);
      expect(items.get(name)?.object.spec).toEqual({ i: Number(name.slice(1)) });
    }
    const last = Math.max(...acked.values());
    const deadline = Date.now() + 15_000;
    while (Math.max(0, ...seen.values()) < last && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await watching;
    for (const [name, rev] of acked) expect(seen.get(name), name).toBe(rev);
    await s.close();
  });
});
