// Site proxy benchmark: one real controller process; 10,000 nodes behind 500 simulated site
// proxies (20 agents each; real TLS gRPC clients in separate worker processes speaking
// Hello role "proxy", SiteAgents and acks after a write to disk), against direct node
// sessions in the same run as the baseline (test/bench/controller-scale.ts, N direct
// nodes). Measures controller memory per node and apply → last node's ack.
//   BENCH_PROXY_SITES=500 BENCH_PROXY_AGENTS=20   shape of the proxied fleet
//   BENCH_PROXY_BASELINE=1000                    direct sessions for the baseline (0 = skip;
//     10,000 direct sessions take ~10 min on the 2 shared cores, beyond a short run)
//   BENCH_PROXY_APPLIES=30                        sequential applies for the latency
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, type TetherObject } from '../../src/api/resource.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { initController, loadCa } from '../../src/controller/init.js';
import { controllerPaths } from '../../src/controller/paths.js';
import { SqliteStore } from '../../src/controller/store/sqlite.js';
import type { TxnOp } from '../../src/controller/store/store.js';
import { createKeyAndCsr, normalizeSerial, signCsr } from '../../src/lib/pki.js';
import { run as controllerScale, cpuSeconds } from './controller-scale.js';
import {
  type Child,
  freePort,
  nowMs,
  percentile,
  REPO,
  rssKiB,
  sleep,
  spawnNode,
  TSX_LOADER,
  waitFor,
} from './support/proc.js';
import type { FromProxyWorker, ProxySetup, ProxySpec, ToProxyWorker } from './support/proxy-protocol.js';

type Result = Record<string, number | string>;

export const siteName = (i: number) => `psite-${String(i).padStart(3, '0')}`;
export const nodeName = (site: number, j: number) =>
  `pn-${String(site).padStart(3, '0')}-${String(j).padStart(2, '0')}`;

export interface ProxyFleet {
  dir: string;
  dataDir: string;
  address: string;
  caPem: string;
  keyPem: string;
  proxiesFile: string;
  adminConfig: string;
  statsFile: string;
  sites: number;
  agents: number;
  setupSeconds: number;
}

/**
 * A controller data directory with `sites` sites of `agents` approved nodes each (node
 * records as enrollment leaves them: certificate, VTEP), and a certificate for the first
 * node of each site, which hosts the site's proxy.
 */
export async function prepareFleet(sites: number, agents: number): Promise<ProxyFleet> {
  const t0 = Date.now();
  const dir = mkdtempSync(join(tmpdir(), `tether-bench-proxy-${sites}-`));
  const dataDir = join(dir, 'controller');
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  // All simulated proxies dial from 127.0.0.1: lift the per-address caps.
  await initController({
    dataDir,
    listen: address,
    advertise: address,
    config: { maxConnectionsPerPeer: 1_000_000, maxUnauthenticatedPerPeer: 1_000_000 },
  });
  const p = controllerPaths(dataDir);
  // The init.ts PEM newline workaround of controller-scale.ts, if that bug is still there.
  const chain = readFileSync(p.serverCert, 'utf8');
  writeFileSync(
    p.serverCert,
    chain.replace(/-----END CERTIFICATE-----(?=-----BEGIN)/g, '-----END CERTIFICATE-----\n'),
  );
  const ca = loadCa(dataDir);
  const { keyPem, csrPem } = await createKeyAndCsr('bench-proxy');
  const proxies: ProxySpec[] = [];
  const hostCerts: Array<{ certPem: string; serial: string }> = [];
  for (let i = 0; i < sites; i += 50) {
    const batch = [];
    for (let s = i; s < Math.min(sites, i + 50); s++)
      batch.push(
        signCsr(ca, csrPem, {
          identity: { role: 'node', name: nodeName(s, 0), site: siteName(s) },
          validitySeconds: 86_400,
          client: true,
          server: true,
        }),
      );
    for (const c of await Promise.all(batch))
      hostCerts.push({ certPem: c.certPem, serial: normalizeSerial(c.serial) });
  }
  const store = new SqliteStore(dataDir);
  try {
    const now = new Date().toISOString();
    const ops: TxnOp[] = [];
    for (let s = 0; s < sites; s++) {
      ops.push({
        op: 'put',
        object: { apiVersion: API_VERSION, kind: 'Site', metadata: { name: siteName(s) }, spec: {} },
      });
      const agentNames: string[] = [];
      for (let j = 0; j < agents; j++) {
        const name = nodeName(s, j);
        agentNames.push(name);
        const host = j === 0 ? hostCerts[s]! : undefined;
        ops.push({
          op: 'put',
          object: {
            apiVersion: API_VERSION,
            kind: 'Node',
            metadata: { name },
            spec: { site: siteName(s), facts: { hostname: name, cpus: 16, memory_bytes: 64 * 2 ** 30 } },
            status: {
              phase: 'Approved',
              // Non-host nodes carry the host's certificate text: same record size as real ones.
              certSerials: [host?.serial ?? `${(s * 100 + j).toString(16).padStart(8, '0')}aa`],
              issuedCertPem: hostCerts[s]!.certPem,
              vtep: `10.${200 + Math.floor(s / 250)}.${s % 250}.${j + 1}`,
              enrolledAt: now,
            },
          },
        });
      }
      proxies.push({
        host: nodeName(s, 0),
        site: siteName(s),
        certPem: hostCerts[s]!.certPem,
        agents: agentNames,
      });
    }
    ops.push({ op: 'put', object: vn('bench-all', '10.100.0.0/24') });
    for (let i = 0; i < ops.length; i += 2000) store.txn(ops.slice(i, i + 2000));
  } finally {
    store.close();
  }
  const proxiesFile = join(dir, 'proxies.json');
  writeFileSync(proxiesFile, JSON.stringify(proxies));
  mkdirSync(join(dir, 'disk'));
  return {
    dir,
    dataDir,
    address,
    caPem: ca.certPem,
    keyPem,
    proxiesFile,
    adminConfig: p.adminConfig,
    statsFile: join(dir, 'controller-stats.json'),
    sites,
    agents,
    setupSeconds: (Date.now() - t0) / 1000,
  };
}

function vn(name: string, subnet: string): TetherObject {
  return { apiVersion: API_VERSION, kind: 'VirtualNetwork', metadata: { name }, spec: { subnets: [subnet] } };
}

/** The controller through startController() (test/bench/support/controller-main.ts), with
 *  --expose-gc and its counters written to the fleet's stats file. */
export function startFleetController(f: ProxyFleet, logName = 'controller.log'): Child {
  return spawnNode(
    ['--expose-gc', '--import', TSX_LOADER, `${REPO}test/bench/support/controller-main.ts`, f.dataDir],
    {
      logFile: join(f.dir, logName),
      env: { BENCH_STATS_FILE: f.statsFile, BENCH_CPU_PROFILE: process.env.BENCH_CPU_PROFILE ?? '' },
    },
  );
}

export interface ControllerStats {
  at: number;
  listener: { accepted: number; peakAcceptsPerSecond: number; open: number; authenticated: number };
  nodeSessions: number;
  proxySessions: number;
  overflows: number;
}

export function readStats(f: ProxyFleet): ControllerStats | undefined {
  try {
    return JSON.parse(readFileSync(f.statsFile, 'utf8')) as ControllerStats;
  } catch {
    return undefined;
  }
}

export interface ProxyWorker {
  child: Child;
  on: (fn: (m: FromProxyWorker) => void) => () => void;
  send: (m: ToProxyWorker) => void;
}

export async function startProxyWorkers(
  f: ProxyFleet,
  n: number,
  opts: { heartbeatMs: number; reconnect?: ProxySetup['reconnect']; inFlight?: number },
): Promise<ProxyWorker[]> {
  const per = Math.ceil(f.sites / n);
  const workers: ProxyWorker[] = [];
  for (let i = 0; i < n; i++) {
    const child = spawnNode(['--import', TSX_LOADER, `${REPO}test/bench/support/proxy-worker.ts`], {
      ipc: true,
      logFile: join(f.dir, `proxy-worker-${i}.log`),
    });
    const w: ProxyWorker = {
      child,
      on(fn) {
        child.child.on('message', fn);
        return () => child.child.off('message', fn);
      },
      send(m) {
        child.child.send(m);
      },
    };
    const ready = waitAllProxies([w], 'ready', 60_000);
    w.send({
      type: 'setup',
      setup: {
        address: f.address,
        caPem: f.caPem,
        keyPem: f.keyPem,
        proxiesFile: f.proxiesFile,
        from: i * per,
        to: Math.min(f.sites, (i + 1) * per),
        inFlight: opts.inFlight ?? 50,
        heartbeatMs: opts.heartbeatMs,
        diskDir: join(f.dir, 'disk'),
        reconnect: opts.reconnect,
      },
    });
    await ready;
    workers.push(w);
  }
  return workers;
}

export function waitAllProxies<T extends FromProxyWorker['type']>(
  workers: readonly ProxyWorker[],
  type: T,
  timeoutMs: number,
  match: (m: Extract<FromProxyWorker, { type: T }>) => boolean = () => true,
): Promise<Array<Extract<FromProxyWorker, { type: T }>>> {
  return new Promise((resolve, reject) => {
    const got = new Map<number, Extract<FromProxyWorker, { type: T }>>();
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
          if (m.type !== type || !match(m as Extract<FromProxyWorker, { type: T }>)) return;
          got.set(i, m as Extract<FromProxyWorker, { type: T }>);
          if (got.size === workers.length) done();
        }),
      );
    });
  });
}

export async function stopProxyWorkers(workers: readonly ProxyWorker[]): Promise<void> {
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
}

/** Asks the controller (under --expose-gc) to collect garbage, then lets it settle. */
export async function collect(pid: number, settleMs = 5000): Promise<void> {
  await sleep(settleMs);
  try {
    process.kill(pid, 'SIGUSR2');
  } catch {
    /* gone: the caller notices */
  }
  await sleep(1000);
}

export async function run(
  opts: { sites?: number; agents?: number; baseline?: number; applies?: number } = {},
): Promise<Result> {
  const log = (m: string) => process.stderr.write(`[site-proxy] ${m}\n`);
  const sites = opts.sites ?? (Number(process.env.BENCH_PROXY_SITES) || 500);
  const agents = opts.agents ?? (Number(process.env.BENCH_PROXY_AGENTS) || 20);
  const baselineN = opts.baseline ?? Number(process.env.BENCH_PROXY_BASELINE ?? 1000);
  const applies = opts.applies ?? (Number(process.env.BENCH_PROXY_APPLIES) || 30);
  const nodes = sites * agents;
  const r: Result = {
    proxied_nodes: nodes,
    site_proxies: sites,
    agents_per_proxy: agents,
    controller_runs_from: 'lib (tsx)',
  };
  const f = await prepareFleet(sites, agents);
  r.setup_s = f.setupSeconds;
  let controller: Child | undefined;
  let workers: ProxyWorker[] = [];
  let admin: Admin | undefined;
  try {
    controller = startFleetController(f);
    const pid = controller.pid;
    admin = new Admin(loadClientConfig(f.adminConfig), 30_000);
    const a = admin;
    await waitFor(
      'controller to serve',
      async () => (await a.list('Site')).items.length === sites,
      120_000,
      200,
    );
    await collect(pid);
    const idle = rssKiB(pid);
    r.controller_rss_idle_MB = +(idle.rss / 1024).toFixed(1);

    workers = await startProxyWorkers(f, 2, { heartbeatMs: 30_000 });
    const t0 = nowMs();
    const syncedP = waitAllProxies(workers, 'synced', 600_000);
    for (const w of workers) w.send({ type: 'connect' });
    const synced = await syncedP;
    const ok = synced.reduce((x, m) => x + m.synced, 0);
    r.proxies_synced = ok;
    r.proxies_failed = synced.reduce((x, m) => x + m.failed, 0);
    const errs = synced.flatMap((m) => m.errors);
    if (errs.length) r.proxy_errors = errs.slice(0, 3).join('; ');
    r.connect_snapshot_all_s = +((Math.max(...synced.map((m) => m.lastAck)) - t0) / 1000).toFixed(2);
    log(`${ok} proxies synced in ${r.connect_snapshot_all_s} s`);
    const stats = readStats(f);
    r.controller_proxy_sessions = stats?.proxySessions ?? Number.NaN;

    await collect(pid);
    const loaded = rssKiB(pid);
    r.controller_rss_connected_MB = +(loaded.rss / 1024).toFixed(1);
    r.controller_KB_per_proxied_node = +((loaded.rss - idle.rss) / (ok * agents)).toFixed(2);
    r.controller_KB_per_proxy_session = +((loaded.rss - idle.rss) / ok).toFixed(1);
    log(
      `controller ${r.controller_rss_connected_MB} MB → ${r.controller_KB_per_proxied_node} KB per proxied node`,
    );

    const lat: number[] = [];
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
    if (process.env.BENCH_CPU_PROFILE) process.kill(pid, 'SIGHUP');
    const cpuCtl0 = cpuSeconds(pid);
    const cpuW0 = workers.map((w) => cpuSeconds(w.child.pid));
    for (let i = 0; i < applies; i++) {
      // A small change every site receives (one new policy of a network covering all sites).
      const obj: TetherObject = {
        apiVersion: API_VERSION,
        kind: 'NetworkPolicy',
        metadata: { name: `bench-p${i}` },
        spec: { network: 'bench-all', defaultAction: 'allow', rules: [] },
      };
      const ts = nowMs();
      const res = await admin.apply({
        json: [Buffer.from(JSON.stringify(obj))],
        sources: ['bench'],
        expect_revision: 0,
      });
      const b = await waitFor(
        `all proxies to ack revision ${res.revision} for their agents`,
        () => {
          const x = revAcks.get(Number(res.revision));
          return x && x.size === workers.length ? x : undefined;
        },
        60_000,
        1,
      );
      lat.push(Math.max(...b.values()) - ts);
    }
    if (process.env.BENCH_CPU_PROFILE) process.kill(pid, 'SIGHUP');
    r.controller_cpu_ms_per_apply = +(((cpuSeconds(pid) - cpuCtl0) * 1000) / applies).toFixed(1);
    r.proxy_workers_cpu_ms_per_apply = +(
      (workers.reduce((x, w, i) => x + cpuSeconds(w.child.pid) - cpuW0[i]!, 0) * 1000) /
      applies
    ).toFixed(1);
    r.load_average_1m = +(loadavg()[0] ?? 0).toFixed(1);
    lat.sort((x, y) => x - y);
    r.apply_to_last_node_ack_p50_ms = +percentile(lat, 50).toFixed(1);
    r.apply_to_last_node_ack_p99_ms = +percentile(lat, 99).toFixed(1);
    r.apply_to_last_node_ack_max_ms = +(lat.at(-1) ?? Number.NaN).toFixed(1);
    r.applies = applies;
    log(
      `apply → last node's ack p50 ${r.apply_to_last_node_ack_p50_ms} ms, p99 ${r.apply_to_last_node_ack_p99_ms} ms`,
    );
    // The controller's own view (Node status.session of proxied nodes), for a sample of
    // nodes: listing all 10,000 Node objects exceeds the 4 MiB message limit.
    const last = Math.max(...[...revAcks.keys()]);
    const sample = Array.from({ length: 20 }, (_, k) => nodeName(Math.floor((k * sites) / 20), agents - 1));
    let acked = 0;
    for (const name of sample) {
      const s = (
        (await admin.get('Node', name)).status as { session?: { ackedRevision?: number; via?: string } }
      ).session;
      if ((s?.ackedRevision ?? 0) >= last && s?.via) acked++;
    }
    r.sampled_nodes_acked_last_revision_at_controller = `${acked}/${sample.length}`;
  } finally {
    admin?.close();
    await stopProxyWorkers(workers);
    await controller?.stop();
    if (process.env.BENCH_KEEP) log(`kept ${f.dir}`);
    else rmSync(f.dir, { recursive: true, force: true });
  }

  if (baselineN > 0) {
    log(`baseline: ${baselineN} direct node sessions`);
    let b: Result;
    try {
      b = await controllerScale({ nodes: baselineN, flavor: 'lib', applies });
    } catch (e) {
      b = { nodes: baselineN, sync_error: (e as Error).message };
    }
    r.baseline_direct_nodes = b.nodes ?? Number.NaN;
    r.baseline_sessions_synced = b.sessions_synced ?? Number.NaN;
    r.baseline_KB_per_direct_node = b.controller_KB_per_node ?? Number.NaN;
    r.baseline_apply_to_last_ack_p50_ms = b.apply_to_last_ack_p50_ms ?? Number.NaN;
    r.baseline_apply_to_last_ack_p99_ms = b.apply_to_last_ack_p99_ms ?? Number.NaN;
    if (b.sync_error) r.baseline_error = b.sync_error;
  }
  return r;
}
