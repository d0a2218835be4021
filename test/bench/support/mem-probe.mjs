// Preloaded into a benchmarked daemon (`node --import`): writes process.memoryUsage() to
// $TETHER_BENCH_MEM every second, so a benchmark can say where the resident memory goes
// (V8 heap vs external vs array buffers) without changing the daemon.
import { writeFileSync } from 'node:fs';

const path = process.env.TETHER_BENCH_MEM;
if (path) {
  setInterval(() => {
    try {
      writeFileSync(path, JSON.stringify(process.memoryUsage()));
    } catch {
      // the state dir may be going away at the end of a run
    }
  }, 1000).unref();
}
