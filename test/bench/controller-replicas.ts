// Controller replicas (issue 12): N simulated nodes (test/bench/support/replica-sim-worker.ts,
// real mTLS gRPC clients that fail over between replicas with full-jitter backoff and resume
// by Hello.held_revision) against (a) one replica on SQLite, the baseline, and (b) two
// replicas on one real etcd, the sessions spread over both. Measures controller memory per
// node (all replicas, after GC), apply → last ack p50/p99, and the time until every node is
// in sync again after every replica is killed with -9 and started again (a reconnect storm
// spread by jitter), with how many resynced by delta and by snapshot. Numbers only.
//   BENCH_REPLICA_NODES=2000  BENCH_REPLICA_APPLIES=30  BENCH_REPLICA_CAP_MS=10000
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { API_VERSION, type TetherObject } from '../../src/api/resource.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { initController, loadCa } from '../../src/controller/init.js';
import { controllerPaths } from '../../src/controller/paths.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { SqliteStore } from '../../src/controller/store/sqlite.js';
import type { TxnOp } from '../../src/controller/store/store.js';
import { startEtcd, type TestEtcd } from '../support/etcd.js';
import { issueCerts, siteName } from './controller-scale.js';
import {
  bundleExists,
  type Child,
  type Flavor,
  freePort,
  nowMs,
  percentile,
  REPO,
  rssKiB,
  sleep,
  spawnNode,
  TSX_LOADER,
  tetherArgv,
  waitFor,
} from './support/proc.js';
import type { ReplicaFromWorker, ReplicaSimSetup, ReplicaToWorker } from './support/replica-sim-protocol.js';

type Result = Record<string, number | string>;

const HEARTBEAT_MS = 5000;

function vn(name: string, subnet: string): TetherObject {
  return { apiVersion: API_VERSION, kind: 'VirtualNetwork', metadata: { name }, spec: { subnets: [subnet] } };
}

function seedOps(
  certs: ReadonlyArray<{ name: string; site: string; serial: string }>,
  sites: number,
): TxnOp[] {
  const now = new Date().toISOString();
  const ops: TxnOp[] = [];
  for (let i = 0; i < sites; i++)
    ops.push({
      op: 'put',
      object: { apiVersion: API_VERSION, kind: 'Site', metadata: { name: siteName(i) }, spec: {} },
    });
  ops.push({ op: 'put', object: vn('bench-all', '10.100.0.0/24') });
  for (const c of certs)
    ops.push({
      op: 'put',
      object: {
        apiVersion: API_VERSION,
        kind: 'Node',
        metadata: { name: c.name },
        spec: { site: c.site, facts: { bench: true } },
        status: { phase: 'Approved', certSerials: [c.serial], approvedAt: now },
      },
    });
  return ops;
}

interface Worker {
  child: Child;
  on: (fn: (m: ReplicaFromWorker) => void) => () => void;
  send: (m: ReplicaToWorker) => void;
}

function startWorker(logFile: string): Worker {
  const child = spawnNode(['--import', TSX_LOADER, `${REPO}test/bench/support/replica-sim-worker.ts`], {
    ipc: true,
    logFile,
  });
  return {
    child,
    on(fn) {
      child.child.on('message', fn);
      return () => child.child.off('message', fn);
    },
    send(m) {
      child.child.send(m);
    },
  };
}

/** Resolves with every worker's first message matching `match`. */
function waitAll<T>(
  workers: readonly Worker[],
  timeoutMs: number,
  match: (m: ReplicaFromWorker) => T | undefined,
): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const got = new Map<number, T>();
    const offs: Array<() => void> = [];
    const timer = setTimeout(() => {
      for (const off of offs) off();
      reject(new Error(`timed out after ${timeoutMs} ms (${got.size}/${workers.length} workers)`));
    }, timeoutMs);
    workers.forEach((w, i) => {
      offs.push(
        w.on((m) => {
          const v = match(m);
          if (v === undefined || got.has(i)) return;
          got.set(i, v);
          if (got.size === workers.length) {
            clearTimeout(timer);
            for (const off of offs) off();
            resolve(workers.map((_, j) => got.get(j)!));
          }
        }),
      );
    });
  });
}

async function collect(pids: readonly number[]): Promise<void> {
  await sleep(3000);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGUSR2');
    } catch {
      /* gone: the caller notices */
    }
  }
  await sleep(1000);
}

interface Scenario {
  label: string;
  replicas: number;
  etcd?: TestEtcd;
}

async function scenario(
  s: Scenario,
  n: number,
  applies: number,
  capMs: number,
  flavor: Flavor,
): Promise<Result> {
  const log = (m: string) => process.stderr.write(`[controller-replicas ${s.label} N=${n}] ${m}\n`);
  const r: Result = {};
  const sites = Math.min(100, n);
  const dir = mkdtempSync(join(tmpdir(), `tether-bench-replicas-${s.label}-`));
  const dataDirs = Array.from({ length: s.replicas }, (_, i) => join(dir, `ctl-${i}`));
  const ports = await Promise.all(dataDirs.map(() => freePort()));
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  const url = s.etcd ? s.etcd.url() : '';
  let controllers: Child[] = [];
  const workers: Worker[] = [];
  const admins: Admin[] = [];
  // BENCH_CONTROLLER_ARGS: extra node flags for the controllers (e.g. --cpu-prof
  // --cpu-prof-dir=DIR: the replicas started after the kill write a profile on their clean stop).
  const extra = (process.env.BENCH_CONTROLLER_ARGS ?? '').split(' ').filter(Boolean);
  const startAll = () =>
    dataDirs.map((d, i) =>
      spawnNode(['--expose-gc', ...extra, ...tetherArgv(flavor), 'controller', 'start', '--data-dir', d], {
        logFile: join(dir, `controller-${i}.log`),
      }),
    );
  try {
    await initController({
      dataDir: dataDirs[0]!,
      listen: addresses[0]!,
      advertise: addresses[0]!,
      config: {
        maxConnectionsPerPeer: 1_000_000,
        maxUnauthenticatedPerPeer: 1_000_000,
        replicas: addresses,
        ...(url ? { datastore: url } : {}),
      },
    });
    const p0 = controllerPaths(dataDirs[0]!);
    // The server chain newline workaround of controller-scale.ts (init.ts writes cert+CA
    // without a newline between them).
    const chain = readFileSync(p0.serverCert, 'utf8');
    writeFileSync(
      p0.serverCert,
      chain.replace(/-----END CERTIFICATE-----(?=-----BEGIN)/g, '-----END CERTIFICATE-----\n'),
    );
    const { keyPem, certs } = await issueCerts(dataDirs[0]!, n, sites);
    const ops = seedOps(certs, sites);
    const t = Date.now();
    if (url) {
      const ds = await openDatastore(parseDatastoreUrl(url));
      try {
        for (let i = 0; i < ops.length; i += 1000)
          await ds.txn(ops.slice(i, i + 1000), undefined, { split: true });
      } finally {
        await ds.close();
      }
    } else {
      const store = new SqliteStore(dataDirs[0]!);
      try {
        for (let i = 0; i < ops.length; i += 2000) store.txn(ops.slice(i, i + 2000));
      } finally {
        store.close();
      }
    }
    r.setup_store_seed_s = (Date.now() - t) / 1000;
    // The other replicas: copies of the first data directory (one CA), each its own address.
    for (let i = 1; i < s.replicas; i++) {
      cpSync(dataDirs[0]!, dataDirs[i]!, { recursive: true });
      const f = controllerPaths(dataDirs[i]!).config;
      const conf = parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
      writeFileSync(f, stringify({ ...conf, listen: addresses[i], advertise: addresses[i] }));
      const af = controllerPaths(dataDirs[i]!).adminConfig;
      const ac = parse(readFileSync(af, 'utf8')) as Record<string, unknown>;
      writeFileSync(af, stringify({ ...ac, server: addresses[i] }));
    }
    const certsFile = join(dir, 'certs.json');
    writeFileSync(certsFile, JSON.stringify(certs.map((c) => ({ name: c.name, certPem: c.certPem }))));

    controllers = startAll();
    for (const d of dataDirs)
      admins.push(new Admin(loadClientConfig(controllerPaths(d).adminConfig), 30_000));
    for (const a of admins)
      await waitFor(
        'replica to serve',
        async () => (await a.list('Site')).items.length === sites,
        120_000,
        200,
      );
    await collect(controllers.map((c) => c.pid));
    const idle = controllers.map((c) => rssKiB(c.pid).rss);
    r.controller_rss_idle_MB = +(idle.reduce((x, y) => x + y, 0) / 1024).toFixed(1);

    const nWorkers = Math.max(1, Math.min(4, Math.ceil(n / 1000)));
    const per = Math.ceil(n / nWorkers);
    const caPem = loadCa(dataDirs[0]!).certPem;
    for (let i = 0; i < nWorkers; i++) {
      const setup: ReplicaSimSetup = {
        addresses,
        caPem,
        keyPem,
        certsFile,
        from: i * per,
        to: Math.min(n, (i + 1) * per),
        inFlight: Math.max(1, Math.ceil(200 / nWorkers)),
        heartbeatMs: HEARTBEAT_MS,
        backoff: { baseMs: 500, capMs },
      };
      const w = startWorker(join(dir, `worker-${i}.log`));
      workers.push(w);
      const ready = waitAll([w], 60_000, (m) => (m.type === 'ready' ? m : undefined));
      w.send({ type: 'setup', setup });
      await ready;
    }
    const synced0 = waitAll(workers, 900_000, (m) => (m.type === 'synced' && m.epoch === 0 ? m : undefined));
    const t0 = nowMs();
    for (const w of workers) w.send({ type: 'connect' });
    const first = await synced0;
    r.connect_all_s = +((Math.max(...first.map((m) => m.at)) - t0) / 1000).toFixed(2);
    r.sessions_per_replica = first
      .reduce(
        (acc, m) => acc.map((x, i) => x + (m.perReplica[i] ?? 0)),
        addresses.map(() => 0),
      )
      .join('/');
    log(`${n} nodes in sync in ${r.connect_all_s} s (per replica ${r.sessions_per_replica})`);

    await collect(controllers.map((c) => c.pid));
    const loaded = controllers.map((c) => rssKiB(c.pid).rss);
    r.controller_rss_connected_MB = +(loaded.reduce((x, y) => x + y, 0) / 1024).toFixed(1);
    r.controller_KB_per_node = +(loaded.reduce((x, y, i) => x + y - idle[i]!, 0) / n).toFixed(1);
    if (s.etcd) r.etcd_rss_MB = +(rssKiB(s.etcd.pid() ?? -1).rss / 1024).toFixed(1);

    // Apply → last ack, one at a time, written through the first replica.
    const revAcks = new Map<number, Map<number, number>>();
    workers.forEach((w, i) => {
      w.on((m) => {
        if (m.type !== 'rev') return;
        let b = revAcks.get(m.revision);
        if (!b) {
          b = new Map();
          revAcks.set(m.revision, b);
        }
        b.set(i, m.lastAck);
      });
    });
    const lat: number[] = [];
    for (let i = 0; i < applies; i++) {
      const ts = nowMs();
      const res = await admins[0]!.apply({
        json: [
          Buffer.from(JSON.stringify(vn('bench-all', `10.${150 + Math.floor(i / 250)}.${i % 250}.0/24`))),
        ],
        sources: ['bench'],
        expect_revision: 0,
      });
      const b = await waitFor(
        `every node to ack revision ${res.revision}`,
        () => {
          const x = revAcks.get(Number(res.revision));
          return x && x.size === workers.length ? x : undefined;
        },
        120_000,
        1,
      );
      lat.push(Math.max(...b.values()) - ts);
    }
    lat.sort((x, y) => x - y);
    r.apply_to_last_ack_p50_ms = +percentile(lat, 50).toFixed(1);
    r.apply_to_last_ack_p99_ms = +percentile(lat, 99).toFixed(1);
    log(`apply → last ack p50 ${r.apply_to_last_ack_p50_ms} ms, p99 ${r.apply_to_last_ack_p99_ms} ms`);

    // Every replica killed with -9 and started again at once: the storm.
    for (const w of workers) w.send({ type: 'epoch', epoch: 1 });
    const resynced = waitAll(workers, 900_000, (m) => (m.type === 'synced' && m.epoch === 1 ? m : undefined));
    await Promise.all(controllers.map((c) => c.stop('SIGKILL')));
    const tStart = nowMs();
    controllers = startAll();
    const serving = Promise.all(
      admins.map((a) =>
        waitFor(
          'replica to serve again',
          async () => (await a.list('Site')).items.length === sites,
          120_000,
          100,
        ),
      ),
    ).then(() => nowMs());
    const back = await resynced;
    r.restart_to_all_serving_s = +(((await serving) - tStart) / 1000).toFixed(2);
    // When each replica's gRPC port opened (its "controller serving" log line), apart from
    // when an admin call first got through the storm.
    r.restart_to_listening_s = dataDirs
      .map((_, i) => {
        const lines = readFileSync(join(dir, `controller-${i}.log`), 'utf8').split('\n');
        const t = lines
          .filter((l) => l.includes('"controller serving"'))
          .map((l) => Date.parse((JSON.parse(l) as { time: string }).time))
          .filter((x) => x >= tStart - 1000)[0];
        return t === undefined ? 'n/a' : ((t - tStart) / 1000).toFixed(2);
      })
      .join('/');
    const tBack = Math.max(...back.map((m) => m.at));
    r.resync_all_after_restart_s = +((tBack - tStart) / 1000).toFixed(2);
    // Resyncs, not nodes: a node dropped again during the storm resyncs twice.
    r.resync_by_delta = back.reduce((x, m) => x + m.deltas, 0);
    r.resync_by_snapshot = back.reduce((x, m) => x + m.snapshots, 0);
    r.resync_connect_attempts = back.reduce((x, m) => x + m.attempts, 0);
    r.resync_backoff = `full jitter, base 500 ms, cap ${capMs} ms`;
    const errs = back.flatMap((m) => m.errors);
    if (errs.length) r.resync_errors_seen = errs.slice(0, 2).join('; ').slice(0, 200);
    log(
      `all replicas restarted: every node in sync again after ${r.resync_all_after_restart_s} s (${r.resync_by_delta} by delta, ${r.resync_by_snapshot} by snapshot)`,
    );
    // Printed as soon as it exists: a run cut short still leaves this scenario's numbers.
    log(JSON.stringify(r));
    return r;
  } finally {
    // A run cut short (a timeout) still prints what it measured before.
    if (r.resync_all_after_restart_s === undefined) log(`partial: ${JSON.stringify(r)}`);
    for (const a of admins) a.close();
    for (const w of workers) {
      try {
        w.send({ type: 'stop' });
      } catch {
        /* gone */
      }
    }
    await Promise.all(
      workers.map(async (w) => {
        await Promise.race([w.child.exited, sleep(3000)]);
        await w.child.stop('SIGKILL');
      }),
    );
    await Promise.all(controllers.map((c) => c.stop()));
    if (process.env.BENCH_KEEP) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { nodes?: number; applies?: number; capMs?: number } = {}): Promise<Result> {
  const n = opts.nodes ?? (Number(process.env.BENCH_REPLICA_NODES) || 2000);
  const applies = opts.applies ?? (Number(process.env.BENCH_REPLICA_APPLIES) || 30);
  const capMs = opts.capMs ?? (Number(process.env.BENCH_REPLICA_CAP_MS) || 10_000);
  const flavor: Flavor = bundleExists() ? 'bundle' : 'tsx';
  const r: Result = { nodes: n, applies, controller_runs_from: flavor };
  const out = (prefix: string, x: Result) => {
    for (const [k, v] of Object.entries(x)) r[`${prefix}_${k}`] = v;
  };
  // BENCH_REPLICA_ONLY=sqlite|etcd runs one of the two (each stays within one locked run).
  const only = process.env.BENCH_REPLICA_ONLY;
  if (only !== 'etcd')
    try {
      out('sqlite_1', await scenario({ label: 'sqlite-1', replicas: 1 }, n, applies, capMs, flavor));
    } catch (e) {
      r.sqlite_1_error = (e as Error).message.slice(0, 300);
    }
  if (only === 'sqlite') return r;
  const etcd = await startEtcd();
  try {
    out('etcd_2', await scenario({ label: 'etcd-2', replicas: 2, etcd }, n, applies, capMs, flavor));
  } catch (e) {
    r.etcd_2_error = (e as Error).message.slice(0, 300);
  } finally {
    await etcd.stop();
  }
  return r;
}

// Run directly: `tsx test/bench/controller-replicas.ts` (npm run bench runs it as well).
if (import.meta.url === `file://${process.argv[1]}`) {
  run().then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
