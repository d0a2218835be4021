// Controller restart storm: 500 simulated site proxies (test/bench/support/proxy-worker.ts,
// real TLS gRPC clients reconnecting with full-jitter exponential backoff, src/lib/backoff.ts)
// lose their controller for 60 s (kill -9, then the same data directory is started again).
// Measures the time until every site is back in sync and the peak connection rate the
// controller's listener saw (accepts per second, ListenerStats.peakAcceptsPerSecond).
//   BENCH_RESTART_SITES=500  BENCH_DOWN_S=60  BENCH_BACKOFF_CAP_MS=30000
import { rmSync } from 'node:fs';
import {
  type ProxyWorker,
  prepareFleet,
  readStats,
  startFleetController,
  startProxyWorkers,
  stopProxyWorkers,
  waitAllProxies,
} from './site-proxy.js';
import { type Child, nowMs, sleep, waitFor } from './support/proc.js';

type Result = Record<string, number | string>;

export async function run(opts: { sites?: number; downS?: number; capMs?: number } = {}): Promise<Result> {
  const log = (m: string) => process.stderr.write(`[controller-restart] ${m}\n`);
  const sites = opts.sites ?? (Number(process.env.BENCH_RESTART_SITES) || 500);
  const downS = opts.downS ?? (Number(process.env.BENCH_DOWN_S) || 60);
  const capMs = opts.capMs ?? (Number(process.env.BENCH_BACKOFF_CAP_MS) || 30_000);
  const backoff = { baseMs: 1000, capMs };
  const r: Result = {
    sites,
    controller_down_s: downS,
    backoff_base_ms: backoff.baseMs,
    backoff_cap_ms: capMs,
  };
  const f = await prepareFleet(sites, 20);
  let controller: Child | undefined;
  let workers: ProxyWorker[] = [];
  try {
    controller = startFleetController(f, 'controller-1.log');
    await waitFor('controller to serve', () => readStats(f), 120_000, 100);
    workers = await startProxyWorkers(f, 2, { heartbeatMs: 30_000, reconnect: backoff });
    const syncedP = waitAllProxies(workers, 'synced', 600_000);
    for (const w of workers) w.send({ type: 'connect' });
    const synced = await syncedP;
    r.proxies_synced_before = synced.reduce((x, m) => x + m.synced, 0);
    const first = readStats(f);
    r.first_start_peak_accepts_per_s = first?.listener.peakAcceptsPerSecond ?? Number.NaN;
    log(`${r.proxies_synced_before} proxies in sync; killing the controller for ${downS} s`);

    const lost = waitAllProxies(workers, 'lost', 60_000);
    const tKill = nowMs();
    await controller.stop('SIGKILL');
    await lost;
    rmSync(f.statsFile, { force: true });
    await sleep(downS * 1000 - (nowMs() - tKill));
    const resynced = waitAllProxies(workers, 'resynced', 600_000);
    const tStart = nowMs();
    controller = startFleetController(f, 'controller-2.log');
    await waitFor('restarted controller to serve', () => readStats(f), 120_000, 20);
    const tServing = nowMs();
    const back = await resynced;
    const tBack = Math.max(...back.map((m) => m.at));
    await sleep(1500);
    const stats = readStats(f);
    r.restart_to_serving_s = +((tServing - tStart) / 1000).toFixed(2);
    r.all_sites_in_sync_after_serving_s = +((tBack - tServing) / 1000).toFixed(2);
    r.all_sites_in_sync_after_restart_s = +((tBack - tStart) / 1000).toFixed(2);
    r.all_sites_in_sync_after_kill_s = +((tBack - tKill) / 1000).toFixed(2);
    r.peak_accepts_per_s = stats?.listener.peakAcceptsPerSecond ?? Number.NaN;
    r.accepted_connections_after_restart = stats?.listener.accepted ?? Number.NaN;
    r.proxy_sessions_after = stats?.proxySessions ?? Number.NaN;
    r.reconnect_attempts_total = back.reduce((x, m) => x + m.attempts, 0);
    const errs = back.flatMap((m) => m.errors);
    if (errs.length) r.session_errors = errs.slice(0, 3).join('; ');
    log(
      `every site back in sync ${r.all_sites_in_sync_after_restart_s} s after the restart; peak ${r.peak_accepts_per_s} accepts/s`,
    );
    return r;
  } finally {
    await stopProxyWorkers(workers);
    await controller?.stop();
    if (process.env.BENCH_KEEP) log(`kept ${f.dir}`);
    else rmSync(f.dir, { recursive: true, force: true });
  }
}
