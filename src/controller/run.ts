import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { registerProfileKind } from '../profiles/resource.js';
import { loadControllerConfig } from './config.js';
import { ControllerHealth } from './health.js';
import { loadCa } from './init.js';
import { StoreMirror } from './mirror.js';
import { controllerPaths } from './paths.js';
import { ControllerServer } from './server.js';
import { type DatastoreTlsFiles, openDatastore, parseDatastoreUrl } from './store/open.js';

export interface RunningController {
  server: ControllerServer;
  /** What the systemd watchdog is fed on (store probe, event-loop lag). */
  health: ControllerHealth;
  port: number;
  close(): Promise<void>;
}

/** Opens the data directory's store, CA and certificates and starts serving. */
export async function startController(opts: {
  dataDir: string;
  log: Logger;
  listen?: string;
  /** `--datastore`: overrides the config file's `datastore` (default: SQLite in dataDir). */
  datastore?: string;
  datastoreTls?: DatastoreTlsFiles;
}): Promise<RunningController> {
  registerProfileKind();
  const p = controllerPaths(opts.dataDir);
  const ca = loadCa(opts.dataDir);
  const config = loadControllerConfig(p.config);
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
  const server = new ControllerServer({
    store,
    ca,
    serverCertPem: readFileSync(p.serverCert, 'utf8'),
    serverKeyPem: readFileSync(p.serverKey, 'utf8'),
    config,
    log: opts.log,
    shellDir: join(p.dataDir, 'shell'),
  });
  const port = await server.listen(opts.listen ?? config.listen);
  opts.log.info(
    { listen: opts.listen ?? config.listen, port, revision: store.revision(), datastore: store.backend },
    'controller serving',
  );
  const compactTimer = setInterval(() => {
    store
      .compact(config.historyRevisions)
      .catch((e: Error) => opts.log.warn({ err: e.message }, 'store compaction failed'));
  }, 60_000);
  compactTimer.unref();
  const health = new ControllerHealth({ store, maxLagMs: config.watchdogMaxLagMs });
  health.start();
  return {
    server,
    health,
    port,
    async close() {
      health.stop();
      clearInterval(compactTimer);
      await server.close();
      await store.close();
    },
  };
}
