// Fallback controller entry for the benchmark: the same startController() that
// `tether controller start` runs, without the CLI around it (no systemd notifier).
//   SIGUSR2 collects garbage (run under --expose-gc) so RSS shows live memory;
//   BENCH_STATS_FILE=PATH writes the listener's and hub's counters there every 250 ms.
import { renameSync, writeFileSync } from 'node:fs';
import { startController } from '../../../src/controller/run.js';
import { createLogger } from '../../../src/lib/log.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: controller-main.ts DATA_DIR');
const log = createLogger({ name: 'tether-controller' });
const running = await startController({ dataDir, log });
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) process.on('SIGUSR2', () => gc());
const statsFile = process.env.BENCH_STATS_FILE;
if (statsFile) {
  const write = () => {
    const stats = {
      at: Date.now(),
      listener: running.server.connectionStats(),
      nodeSessions: running.server.hub.count(),
      proxySessions: running.server.hub.proxyCount(),
      overflows: running.server.hub.overflows,
    };
    writeFileSync(`${statsFile}.tmp`, JSON.stringify(stats));
    renameSync(`${statsFile}.tmp`, statsFile);
  };
  write();
  setInterval(write, 250).unref();
}
// BENCH_CPU_PROFILE=PATH: the first SIGHUP starts the CPU profiler, the second writes PATH.
const profilePath = process.env.BENCH_CPU_PROFILE || undefined;
if (profilePath) {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  let running = false;
  process.on('SIGHUP', () => {
    if (!running) {
      running = true;
      session.post('Profiler.enable', () => session.post('Profiler.start'));
      return;
    }
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(profilePath, JSON.stringify(res.profile));
    });
  });
}
const stop = () => {
  running.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
