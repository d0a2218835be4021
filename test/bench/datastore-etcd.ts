// Datastore throughput and watch latency: SQLite (LocalDatastore) against EtcdStore on a
// real etcd started for the run (test/support/etcd.ts), with the baseline of raw gRPC Puts
// and a raw Watch on the same etcd in the same run: what etcd itself costs, so the
// difference is EtcdStore's own work (read for CAS, plan, guarded Txn, JSON stamping).
//   BENCH_DS_N=500 (writes per mode)   npx tsx test/bench/datastore-etcd.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type EtcdWatchResponse, etcdProto } from '../../src/api/etcd-grpc.js';
import type { Datastore } from '../../src/controller/store/datastore.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { startEtcd } from '../support/etcd.js';

type Result = Record<string, number | string>;

const obj = (name: string, i: number) => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, mac: '02:00:00:00:00:01', site: 's1' },
});

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const ms = (x: number) => Math.round(x * 100) / 100;

/** Sequential txns with a watcher open: txn/s and put → watch delivery latency. */
async function measure(
  ds: Datastore,
  n: number,
  tag: string,
): Promise<{ tps: number; p50: number; p99: number; ctps: number }> {
  const sent = new Map<string, number>();
  const lat: number[] = [];
  const ac = new AbortController();
  let want = n;
  let doneResolve!: () => void;
  const done = new Promise<void>((r) => {
    doneResolve = r;
  });
  const watching = (async () => {
    for await (const b of ds.watch(await ds.revision(), { signal: ac.signal })) {
      const t = performance.now();
      for (const e of b.events) {
        const t0 = sent.get(e.name);
        if (t0 !== undefined) {
          lat.push(t - t0);
          sent.delete(e.name);
          if (--want === 0) doneResolve();
        }
      }
    }
  })();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const name = `${tag}-${i}`;
    sent.set(name, performance.now());
    await ds.txn([{ op: 'put', object: obj(name, i) }]);
  }
  const tps = n / ((performance.now() - t0) / 1000);
  await done;
  ac.abort();
  await watching.catch(() => undefined);
  // 16 writers at once (a controller's concurrent applies).
  const c0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = w; i < n; i += 16) await ds.txn([{ op: 'put', object: obj(`${tag}-c${i}`, i) }]);
    }),
  );
  const ctps = n / ((performance.now() - c0) / 1000);
  return { tps, p50: pct(lat, 50), p99: pct(lat, 99), ctps };
}

/** The same on raw etcd: one Put per write, one Watch on the range. */
async function rawEtcd(
  endpoint: string,
  n: number,
): Promise<{ tps: number; p50: number; p99: number; ctps: number }> {
  const proto = etcdProto();
  const kv = new proto.etcdserverpb.KV(`ipv4:${endpoint}`, grpc.credentials.createInsecure());
  const watch = new proto.etcdserverpb.Watch(`ipv4:${endpoint}`, grpc.credentials.createInsecure(), {
    channelOverride: kv.getChannel(),
  });
  const put = (key: string, value: string) =>
    new Promise<void>((res, rej) =>
      kv.Put({ key: Buffer.from(key), value: Buffer.from(value) }, (e) => (e ? rej(e) : res())),
    );
  const p = Buffer.from('/raw/');
  const sent = new Map<string, number>();
  const lat: number[] = [];
  let want = n;
  let doneResolve!: () => void;
  const done = new Promise<void>((r) => {
    doneResolve = r;
  });
  const call = watch.Watch();
  call.on('data', (m: EtcdWatchResponse) => {
    const t = performance.now();
    for (const ev of m.events) {
      const k = ev.kv?.key.toString() ?? '';
      const t0 = sent.get(k);
      if (t0 !== undefined) {
        lat.push(t - t0);
        sent.delete(k);
        if (--want === 0) doneResolve();
      }
    }
  });
  call.on('error', () => undefined);
  call.write({ create_request: { key: p, range_end: Buffer.from('/raw0') } });
  await put('/raw/warm', 'x');
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const k = `/raw/${i}`;
    sent.set(k, performance.now());
    await put(k, JSON.stringify(obj(k, i)));
  }
  const tps = n / ((performance.now() - t0) / 1000);
  await done;
  call.cancel();
  const c0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = w; i < n; i += 16) await put(`/rawc/${i}`, JSON.stringify(obj(`c${i}`, i)));
    }),
  );
  const ctps = n / ((performance.now() - c0) / 1000);
  kv.close();
  return { tps, p50: pct(lat, 50), p99: pct(lat, 99), ctps };
}

export async function run(opts: { n?: number } = {}): Promise<Result> {
  const n = opts.n ?? (Number(process.env.BENCH_DS_N) || 500);
  const log = (m: string) => process.stderr.write(`[datastore-etcd] ${m}\n`);
  const root = mkdtempSync(join(tmpdir(), 'tether-bench-ds-'));
  const etcd = await startEtcd();
  const r: Result = { writes_per_mode: n };
  try {
    const raw = await rawEtcd(etcd.endpoint, n);
    log(`raw etcd: ${raw.tps.toFixed(0)} put/s`);
    const sq = await openDatastore(parseDatastoreUrl(`sqlite:${join(root, 'sqlite')}`));
    const s = await measure(sq, n, 'sq');
    await sq.close();
    log(`sqlite: ${s.tps.toFixed(0)} txn/s`);
    const ed = await openDatastore(parseDatastoreUrl(etcd.url('/bench/')));
    await ed.probe();
    const e = await measure(ed, n, 'et');
    await ed.close();
    log(`etcd store: ${e.tps.toFixed(0)} txn/s`);
    Object.assign(r, {
      baseline_raw_etcd_put_per_s: Math.round(raw.tps),
      baseline_raw_etcd_put_16x_per_s: Math.round(raw.ctps),
      baseline_raw_etcd_watch_p50_ms: ms(raw.p50),
      baseline_raw_etcd_watch_p99_ms: ms(raw.p99),
      sqlite_txn_per_s: Math.round(s.tps),
      sqlite_txn_16x_per_s: Math.round(s.ctps),
      sqlite_watch_p50_ms: ms(s.p50),
      sqlite_watch_p99_ms: ms(s.p99),
      etcd_txn_per_s: Math.round(e.tps),
      etcd_txn_16x_per_s: Math.round(e.ctps),
      etcd_watch_p50_ms: ms(e.p50),
      etcd_watch_p99_ms: ms(e.p99),
    });
  } finally {
    await etcd.stop();
    rmSync(root, { recursive: true, force: true });
  }
  return r;
}

if (process.argv[1]?.endsWith('datastore-etcd.ts')) {
  run().then(
    (r) => {
      console.table(r);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
