// Controller scale benchmark: one real controller process, N simulated nodes over real mTLS
// on loopback, held by a few worker processes. Measures controller memory per connected
// node, time to deliver the snapshot to all, apply → last-ack latency, and (optionally) the
// resident memory of one real idle node daemon. Numbers only; nothing is asserted.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, type TetherObject } from '../../src/api/resource.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { initController, loadCa } from '../../src/controller/init.js';
import { controllerPaths } from '../../src/controller/paths.js';
import { SqliteStore } from '../../src/controller/store/sqlite.js';
import type { TxnOp } from '../../src/controller/store/store.js';
import { createKeyAndCsr, normalizeSerial, signCsr } from '../../src/lib/pki.js';
import { measureNodeDaemon } from './support/node-daemon.js';
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
import type { FromWorker, SimSetup, ToWorker } from './support/sim-protocol.js';

export interface ControllerScaleOptions {
  nodes: number;
  /** Worker processes holding the simulated nodes (default 4, fewer for tiny N). */
  workers?: number;
  /** Sequential applies for the latency measurement (default 30). */
  applies?: number;
  sites?: number;
  /** Sessions being set up at once, across all workers (default 200). */
  wave?: number;
  /** Also measure an idle real node daemon (bundle and tsx). */
  nodeDaemon?: boolean;
  /** How the controller runs: the bundle when built, else tsx; 'lib' runs startController()
   *  through a minimal entry (test/bench/support/controller-main.ts) instead of the CLI. */
  flavor?: Flavor | 'lib';
  /** Give up on the connect+snapshot phase after this long (default 15 min). */
  syncTimeoutMs?: number;
  log?: (msg: string) => void;
}

type Result = Record<string, number | string>;

const SETTLE_MS = 5000;
const HEARTBEAT_MS = 5000;

function vn(name: string, subnet: string, sites?: string[]): TetherObject {
  return {
    apiVersion: API_VERSION,
    kind: 'VirtualNetwork',
    metadata: { name },
    spec: { subnets: [subnet], ...(sites ? { sites } : {}) },
  };
}

export const siteName = (i: number) => `site-${String(i).padStart(3, '0')}`;
const nodeName = (i: number) => `sim-${String(i).padStart(5, '0')}`;

/** N node certificates from the CA, all over one key (each its own serial and identity). */
export async function issueCerts(
  dataDir: string,
  n: number,
  sites: number,
): Promise<{
  keyPem: string;
  certs: Array<{ name: string; site: string; certPem: string; serial: string }>;
}> {
  const ca = loadCa(dataDir);
  const { keyPem, csrPem } = await createKeyAndCsr('bench-node');
  const certs: Array<{ name: string; site: string; certPem: string; serial: string }> = [];
  const BATCH = 64;
  for (let i = 0; i < n; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) {
      const name = nodeName(j);
      const site = siteName(j % sites);
      batch.push(
        signCsr(ca, csrPem, {
          identity: { role: 'node', name, site },
          validitySeconds: 86_400,
        }).then((c) => ({ name, site, certPem: c.certPem, serial: normalizeSerial(c.serial) })),
      );
    }
    certs.push(...(await Promise.all(batch)));
  }
  return { keyPem, certs };
}

function seedStore(
  dataDir: string,
  certs: ReadonlyArray<{ name: string; site: string; serial: string }>,
  sites: number,
): void {
  const store = new SqliteStore(dataDir);
  try {
    const now = new Date().toISOString();
    const ops: TxnOp[] = [];
    for (let i = 0; i < sites; i++) {
      ops.push({
        op: 'put',
        object: { apiVersion: API_VERSION, kind: 'Site', metadata: { name: siteName(i) }, spec: {} },
      });
    }
    ops.push({ op: 'put', object: vn('bench-all', '10.100.0.0/24') });
    ops.push({
      op: 'put',
      object: vn(
        'bench-some',
        '10.101.0.0/24',
        Array.from({ length: Math.min(10, sites) }, (_, i) => siteName(i)),
      ),
    });
    for (const c of certs) {
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
    }
    const CHUNK = 2000;
    for (let i = 0; i < ops.length; i += CHUNK) store.txn(ops.slice(i, i + CHUNK));
  } finally {
    store.close();
  }
}

/** utime + stime of a process in seconds (fields 14 and 15 of /proc/PID/stat, 100 Hz). */
export function cpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

interface Worker {
  child: Child;
  sims: number;
  on: (fn: (m: FromWorker) => void) => () => void;
  send: (m: ToWorker) => void;
}

function startWorker(setup: SimSetup, logFile: string): Worker {
  const child = spawnNode(['--import', TSX_LOADER, `${REPO}test/bench/support/sim-worker.ts`], {
    ipc: true,
    logFile,
  });
  return {
    child,
    sims: setup.to - setup.from,
    on(fn) {
      child.child.on('message', fn);
      return () => child.child.off('message', fn);
    },
    send(m) {
      child.child.send(m);
    },
  };
}

function waitAll<T extends FromWorker['type']>(
  workers: readonly Worker[],
  type: T,
  timeoutMs: number,
  match: (m: Extract<FromWorker, { type: T }>) => boolean = () => true,
): Promise<Array<Extract<FromWorker, { type: T }>>> {
  return new Promise((resolve, reject) => {
    const got = new Map<number, Extract<FromWorker, { type: T }>>();
    const offs: Array<() => void> = [];
    const done = (err?: Error) => {
      clearTimeout(timer);
      for (const off of offs) off();
      if (err) reject(err);
      else resolve(workers.map((_, i) => got.get(i)!));
    };
    const timer = setTimeout(
      () =>
        done(
          new Error(`timed out after ${timeoutMs} ms waiting for ${type} (${got.size}/${workers.length})`),
        ),
      timeoutMs,
    );
    workers.forEach((w, i) => {
      offs.push(
        w.on((m) => {
          if (m.type !== type) return;
          const mm = m as Extract<FromWorker, { type: T }>;
          if (!match(mm)) return;
          got.set(i, mm);
          if (got.size === workers.length) done();
        }),
      );
    });
  });
}

/** Asks the controller (started with --expose-gc) to collect garbage, then lets it settle,
 *  so RSS reflects live memory rather than uncollected handshake garbage. */
async function collect(pid: number): Promise<void> {
  await sleep(SETTLE_MS);
  try {
    process.kill(pid, 'SIGUSR2');
  } catch {
    /* already gone: the caller will notice */
  }
  await sleep(1000);
}

export async function run(opts: ControllerScaleOptions): Promise<Result> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`[controller-scale N=${opts.nodes}] ${m}\n`));
  const n = opts.nodes;
  const sites = opts.sites ?? Math.min(100, n);
  const nWorkers = Math.max(1, Math.min(opts.workers ?? 4, n));
  const applies = opts.applies ?? 30;
  const wave = opts.wave ?? 200;
  const flavor =
    opts.flavor ??
    (process.env.BENCH_CONTROLLER as Flavor | 'lib' | undefined) ??
    (bundleExists() ? 'bundle' : 'tsx');
  const r: Result = { nodes: n, sites, workers: nWorkers, controller_runs_from: flavor };
  const dir = mkdtempSync(join(tmpdir(), `tether-bench-${n}-`));
  const dataDir = join(dir, 'controller');
  let controller: Child | undefined;
  const workers: Worker[] = [];
  let admin: Admin | undefined;
  try {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    // Every simulated node dials from 127.0.0.1: lift the per-address caps that protect a
    // real controller from one misbehaving peer (src/lib/listener.ts).
    await initController({
      dataDir,
      listen: address,
      advertise: address,
      config: { maxConnectionsPerPeer: 1_000_000, maxUnauthenticatedPerPeer: 1_000_000 },
    });
    const p = controllerPaths(dataDir);
    // Workaround for a bug in initController (src/controller/init.ts): it writes the server
    // chain as certPem + caPem, and @peculiar/x509 PEM has no trailing newline, so the file
    // holds "-----END CERTIFICATE----------BEGIN CERTIFICATE-----"; grpc-js' setSecureContext
    // then fails ("PEM routines::bad end line") and the controller drops every connection.
    const chain = readFileSync(p.serverCert, 'utf8');
    const fixed = chain.replace(/-----END CERTIFICATE-----(?=-----BEGIN)/g, '-----END CERTIFICATE-----\n');
    if (fixed !== chain) {
      writeFileSync(p.serverCert, fixed);
      r.workaround_server_crt_newline = 'applied (init.ts bug)';
    }

    let t = Date.now();
    const { keyPem, certs } = await issueCerts(dataDir, n, sites);
    r.setup_cert_issue_s = (Date.now() - t) / 1000;
    t = Date.now();
    seedStore(dataDir, certs, sites);
    r.setup_store_seed_s = (Date.now() - t) / 1000;
    const certsFile = join(dir, 'certs.json');
    writeFileSync(certsFile, JSON.stringify(certs.map((c) => ({ name: c.name, certPem: c.certPem }))));
    log(`issued ${n} certificates in ${r.setup_cert_issue_s} s, seeded store in ${r.setup_store_seed_s} s`);

    const ctlArgv =
      flavor === 'lib'
        ? ['--expose-gc', '--import', TSX_LOADER, `${REPO}test/bench/support/controller-main.ts`, dataDir]
        : [
            '--expose-gc',
            // e.g. BENCH_CONTROLLER_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it
            ...(process.env.BENCH_CONTROLLER_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
            ...tetherArgv(flavor),
            'controller',
            'start',
            '--data-dir',
            dataDir,
          ];
    controller = spawnNode(ctlArgv, {
      logFile: join(dir, 'controller.log'),
    });
    const ctlPid = controller.pid;
    admin = new Admin(loadClientConfig(p.adminConfig), 15_000);
    const a = admin;
    await waitFor(
      'controller to serve',
      async () => (await a.list('Site')).items.length === sites,
      60_000,
      200,
    );
    await collect(ctlPid);
    const idle = rssKiB(ctlPid);
    r.controller_rss_idle_MB = +(idle.rss / 1024).toFixed(1);
    log(`controller pid ${ctlPid} idle RSS ${r.controller_rss_idle_MB} MB`);

    // Simulated nodes.
    const per = Math.ceil(n / nWorkers);
    const caPem = certs.length ? loadCa(dataDir).certPem : '';
    for (let i = 0; i < nWorkers; i++) {
      const setup: SimSetup = {
        address,
        caPem,
        keyPem,
        certsFile,
        from: i * per,
        to: Math.min(n, (i + 1) * per),
        inFlight: Math.max(1, Math.ceil(wave / nWorkers)),
        heartbeatMs: HEARTBEAT_MS,
      };
      const w = startWorker(setup, join(dir, `worker-${i}.log`));
      workers.push(w);
      const ready = waitAll([w], 'ready', 60_000);
      w.send({ type: 'setup', setup });
      await ready;
    }
    let lastProgress = Date.now();
    const progress = new Map<number, number>();
    workers.forEach((w, i) => {
      w.on((m) => {
        if (m.type === 'progress') {
          progress.set(i, m.synced);
          if (Date.now() - lastProgress > 10_000) {
            lastProgress = Date.now();
            const total = [...progress.values()].reduce((x, y) => x + y, 0);
            log(`  … ${total}/${n} sessions synced`);
          }
        }
        if (m.type === 'lost') log(`  session lost: ${m.node}: ${m.why}`);
      });
    });

    const cpu0 = cpuSeconds(ctlPid);
    const t0 = nowMs();
    const syncedP = waitAll(
      workers,
      'synced',
      opts.syncTimeoutMs ?? (Number(process.env.BENCH_SYNC_TIMEOUT_S) || 900) * 1000,
    );
    for (const w of workers) w.send({ type: 'connect' });
    let syncedMsgs: Array<Extract<FromWorker, { type: 'synced' }>>;
    try {
      syncedMsgs = await syncedP;
    } catch (e) {
      r.sync_error = (e as Error).message;
      const total = [...progress.values()].reduce((x, y) => x + y, 0);
      r.sessions_synced = total;
      log(`connect+snapshot did not finish: ${r.sync_error}`);
      const partial = rssKiB(ctlPid).rss;
      r.controller_rss_partial_MB = +(partial / 1024).toFixed(1);
      if (total > 0) r.controller_KB_per_node_partial = +((partial - idle.rss) / total).toFixed(1);
      return r;
    }
    const syncedCount = syncedMsgs.reduce((x, m) => x + m.synced, 0);
    const failedCount = syncedMsgs.reduce((x, m) => x + m.failed, 0);
    const lastAck = Math.max(...syncedMsgs.map((m) => m.lastAck));
    r.sessions_synced = syncedCount;
    r.sessions_failed = failedCount;
    const errs = syncedMsgs.flatMap((m) => m.errors);
    if (errs.length) r.session_errors = errs.slice(0, 5).join('; ');
    r.snapshot_all_s = +((lastAck - t0) / 1000).toFixed(2);
    r.snapshot_sessions_per_s = +(syncedCount / ((lastAck - t0) / 1000)).toFixed(0);
    r.controller_cpu_s_connect = +(cpuSeconds(ctlPid) - cpu0).toFixed(2);
    log(`${syncedCount} synced (${failedCount} failed) in ${r.snapshot_all_s} s`);

    await sleep(SETTLE_MS);
    await collect(ctlPid);
    const loaded = rssKiB(ctlPid);
    r.controller_rss_connected_MB = +(loaded.rss / 1024).toFixed(1);
    r.controller_rss_peak_MB = +(loaded.hwm / 1024).toFixed(1);
    r.controller_KB_per_node = syncedCount ? +((loaded.rss - idle.rss) / syncedCount).toFixed(1) : Number.NaN;
    log(`controller RSS ${r.controller_rss_connected_MB} MB connected → ${r.controller_KB_per_node} KB/node`);

    // Apply → last ack latency, one apply at a time.
    const lat: number[] = [];
    const applyRpc: number[] = [];
    // Per revision, per worker: when that worker's last simulated node acknowledged it. The
    // controller may write follow-up revisions of its own (status), so match by revision.
    const revAcks = new Map<number, Map<number, number>>();
    workers.forEach((w, i) => {
      w.on((m) => {
        if (m.type !== 'rev') return;
        let byWorker = revAcks.get(m.revision);
        if (!byWorker) {
          byWorker = new Map();
          revAcks.set(m.revision, byWorker);
        }
        byWorker.set(i, m.lastAck);
      });
    });
    for (let i = 0; i < applies; i++) {
      const obj = vn('bench-all', `10.${150 + Math.floor(i / 250)}.${i % 250}.0/24`);
      const ts = nowMs();
      const res = await admin.apply({
        json: [Buffer.from(JSON.stringify(obj))],
        sources: ['bench'],
        expect_revision: 0,
      });
      applyRpc.push(nowMs() - ts);
      const byWorker = await waitFor(
        `all nodes to acknowledge revision ${res.revision}`,
        () => {
          const b = revAcks.get(res.revision);
          return b && b.size === workers.length ? b : undefined;
        },
        60_000,
        1,
      );
      lat.push(Math.max(...byWorker.values()) - ts);
    }
    lat.sort((x, y) => x - y);
    applyRpc.sort((x, y) => x - y);
    r.apply_to_last_ack_p50_ms = +percentile(lat, 50).toFixed(1);
    r.apply_to_last_ack_p99_ms = +percentile(lat, 99).toFixed(1);
    r.apply_to_last_ack_max_ms = +(lat[lat.length - 1] ?? Number.NaN).toFixed(1);
    r.apply_rpc_p50_ms = +percentile(applyRpc, 50).toFixed(1);
    r.applies = applies;
    log(`apply→last ack p50 ${r.apply_to_last_ack_p50_ms} ms, p99 ${r.apply_to_last_ack_p99_ms} ms`);
    r.controller_rss_after_applies_MB = +(rssKiB(ctlPid).rss / 1024).toFixed(1);

    if (opts.nodeDaemon) {
      for (const f of ['bundle', 'tsx'] as const) {
        if (f === 'bundle' && !bundleExists()) {
          r.node_daemon_rss_bundle_MB = 'not measured: no dist/tether.mjs (npm run bundle)';
          continue;
        }
        try {
          const m = await measureNodeDaemon({
            flavor: f,
            address,
            adminConfig: p.adminConfig,
            site: siteName(0),
            name: `real-${f}`,
            workDir: join(dir, 'nodes'),
          });
          r[`node_daemon_rss_${f}_MB`] = +(m.rssKiB / 1024).toFixed(1);
          r[`node_daemon_connect_${f}_ms`] = m.connectMs;
          log(`node daemon (${f}) idle RSS ${r[`node_daemon_rss_${f}_MB`]} MB`);
        } catch (e) {
          r[`node_daemon_rss_${f}_MB`] = `failed: ${(e as Error).message.slice(0, 200)}`;
        }
      }
    }
    return r;
  } finally {
    admin?.close();
    for (const w of workers) {
      try {
        w.send({ type: 'stop' });
      } catch {
        /* already gone */
      }
    }
    await Promise.all(
      workers.map(async (w) => {
        await Promise.race([w.child.exited, sleep(3000)]);
        await w.child.stop('SIGKILL');
      }),
    );
    await controller?.stop();
    if (process.env.BENCH_KEEP) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
