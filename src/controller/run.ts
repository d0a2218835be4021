import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { type MetricsServer, parseMetricsListen, startMetricsServer } from '../lib/metrics-server.js';
import { registerProfileKind } from '../profiles/resource.js';
import { checkSharedCa } from './claimkeys.js';
import { loadControllerConfig } from './config.js';
import { ControllerHealth } from './health.js';
import { loadCa } from './init.js';
import { type Leadership, openLeadership } from './leader.js';
import { ControllerMetrics } from './metrics.js';
import { StoreMirror } from './mirror.js';
import { controllerPaths } from './paths.js';
import { ControllerServer } from './server.js';
import { type DatastoreTlsFiles, openDatastore, parseDatastoreUrl } from './store/open.js';

export interface RunningController {
  server: ControllerServer;
  /** What the systemd watchdog is fed on (store probe, event-loop lag). */
  health: ControllerHealth;
  port: number;
  /** Who runs the single writers: always this process on SQLite/memory, an etcd election
   *  among the replicas on etcd. */
  leadership: Leadership;
  /** Port of /metrics, /livez, /readyz; undefined when metrics are off. */
  metricsPort: number | undefined;
  close(): Promise<void>;
}

/** Opens the data directory's store, CA and certificates and starts serving. */
export async function startController(opts: {
  dataDir: string;
  log: Logger;
  listen?: string;
  /** `--metrics-listen`: overrides the config's `metricsListen` (docs/observability.md). */
  metricsListen?: string;
  /** `--datastore`: overrides the config file's `datastore` (default: SQLite in dataDir). */
  datastore?: string;
  datastoreTls?: DatastoreTlsFiles;
  /** Lease TTL of the leader election on etcd (seconds); default: the config's. */
  leaseTtlSeconds?: number;
}): Promise<RunningController> {
  registerProfileKind();
  const p = controllerPaths(opts.dataDir);
  const ca = loadCa(opts.dataDir);
  const config = loadControllerConfig(p.config);
  const metricsListen = parseMetricsListen(
    opts.metricsListen ?? config.metricsListen,
    opts.metricsListen === undefined ? `${p.config}: metricsListen` : '--metrics-listen',
  );
  const url = opts.datastore ?? (config.datastore || `sqlite:${p.dataDir}`);
  const spec = parseDatastoreUrl(
    url,
    opts.datastore !== undefined ? '--datastore' : `${p.config}: datastore`,
  );
  const datastore = await openDatastore(spec, opts.datastoreTls ? { tls: opts.datastoreTls } : {});
  // Every module reads the mirror; changes reach it (and the sessions) only through the
  // datastore's watch, also the ones this process wrote.
  const store = await StoreMirror.open(datastore, {
    log: opts.log.child({ component: 'store' }),
    keepEvents: config.historyRevisions,
  });
  // Replicas on one store must share one CA (docs/controller.md, "Replicas"): a node enrolled
  // by one must be accepted by every other. The first start records its fingerprint.
  if (datastore.backend === 'etcd') await checkSharedCa(store, ca.certPem);
  const leadership = openLeadership(datastore, {
    log: opts.log.child({ component: 'leader' }),
    ttlSeconds: opts.leaseTtlSeconds ?? config.leaseTtlSeconds,
    addr: opts.listen ?? config.listen,
  });
  const metrics = new ControllerMetrics();
  metrics.instrumentStore(store);
  metrics.instrumentLeadership(leadership);
  const server = new ControllerServer({
    store,
    ca,
    serverCertPem: readFileSync(p.serverCert, 'utf8'),
    serverKeyPem: readFileSync(p.serverKey, 'utf8'),
    config,
    log: opts.log,
    shellDir: join(p.dataDir, 'shell'),
    onApply: metrics.onApply,
    leadership,
  });
  metrics.attach(server);
  const port = await server.listen(opts.listen ?? config.listen);
  opts.log.info(
    { listen: opts.listen ?? config.listen, port, revision: store.revision(), datastore: store.backend },
    'controller serving',
  );
  const compactTimer = setInterval(() => {
    // Compaction is cluster-wide on etcd: one replica (the leader) does it.
    if (!leadership.isLeader()) return;
    store
      .compact(config.historyRevisions)
      .catch((e: Error) => opts.log.warn({ err: e.message }, 'store compaction failed'));
  }, 60_000);
  compactTimer.unref();
  const health = new ControllerHealth({ store, maxLagMs: config.watchdogMaxLagMs });
  health.start();
  let closing = false;
  const metricsServer: MetricsServer | undefined =
    metricsListen === 'off'
      ? undefined
      : await startMetricsServer({
          listen: metricsListen,
          registry: metrics.registry,
          livez: () => ({ ok: true, reasons: [] }),
          // Ready once the gRPC port serves, until shutdown begins. Not health.check(): that
          // writes a store probe and resets the watchdog's lag window on every probe.
          readyz: () => readiness(leadership, closing),
        });
  if (metricsServer) opts.log.info({ metricsPort: metricsServer.port }, 'controller metrics serving');
  return {
    server,
    health,
    port,
    leadership,
    metricsPort: metricsServer?.port,
    async close() {
      closing = true;
      await metricsServer?.close();
      metrics.close();
      health.stop();
      clearInterval(compactTimer);
      await server.close();
      // Resign before the store closes: the next leader need not wait for the lease TTL.
      await leadership.close();
      await store.close();
    },
  };
}

/**
 * /readyz: ready while serving and (on etcd) hearing from the datastore; the body also says
 * whether this replica holds the election, its term and who leads, so an operator or a load
 * balancer sees the leader without a client certificate.
 */
export function readiness(
  leadership: Leadership,
  closing: boolean,
): { ok: boolean; reasons: string[]; detail: string[] } {
  const reasons: string[] = [];
  if (closing) reasons.push('shutting down');
  if (!leadership.reachable())
    reasons.push('datastore unreachable (no etcd lease answer within the lease TTL)');
  const holder = leadership.leader();
  const detail = [
    `leader: ${leadership.isLeader() ? 'yes' : 'no'}`,
    `term: ${leadership.term()}`,
    `replica: ${leadership.self.id}`,
    `datastore: ${leadership.reachable() ? 'reachable' : 'unreachable'}`,
  ];
  if (holder) detail.push(`leader_id: ${holder.id}`, ...(holder.addr ? [`leader_addr: ${holder.addr}`] : []));
  return { ok: reasons.length === 0, reasons, detail };
}
