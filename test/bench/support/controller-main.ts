// Fallback controller entry for the benchmark: the same startController() that
// `tether controller start` runs, without the CLI around it (no systemd notifier).
import { startController } from '../../../src/controller/run.js';
import { createLogger } from '../../../src/lib/log.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: controller-main.ts DATA_DIR');
const log = createLogger({ name: 'tether-controller' });
const running = await startController({ dataDir, log });
const stop = () => {
  running.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
