import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { registerProfileKind } from '../profiles/resource.js';
import { loadControllerConfig } from './config.js';
import { ControllerHealth } from './health.js';
import { loadCa } from './init.js';
import { controllerPaths } from './paths.js';
import { ControllerServer } from './server.js';
import { SqliteStore } from './store/sqlite.js';

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
}): Promise<RunningController> {
  registerProfileKind();
  const p = controllerPaths(opts.dataDir);
  const ca = loadCa(opts.dataDir);
  const config = loadControllerConfig(p.config);
  const store = new SqliteStore(p.dataDir);
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
    { listen: opts.listen ?? config.listen, port, revision: store.revision() },
    'controller serving',
  );
  const compactTimer = setInterval(() => store.compact(config.historyRevisions), 60_000);
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
      store.close();
    },
  };
}
