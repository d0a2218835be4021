// Preloaded into a benchmarked daemon (`node --import`): writes process.memoryUsage(), the V8
// heap spaces and /proc/self/status's RSS split (anonymous, file-backed) to $TETHER_BENCH_MEM
// every second, so a benchmark can say where the resident memory goes without changing the
// daemon. With $TETHER_BENCH_HEAPSNAP set, SIGUSR2 writes a heap snapshot there (analysis only:
// writing it costs memory itself).
import { readFileSync, writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';

const path = process.env.TETHER_BENCH_MEM;
if (path) {
  setInterval(() => {
    try {
      const status = readFileSync('/proc/self/status', 'utf8');
      const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      const spaces = {};
      for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = s.space_size;
      writeFileSync(
        path,
        JSON.stringify({
          ...process.memoryUsage(),
          rssAnon: kib('RssAnon'),
          rssFile: kib('RssFile'),
          spaces,
        }),
      );
    } catch {
      // the state dir may be going away at the end of a run
    }
  }, 1000).unref();
}
const snap = process.env.TETHER_BENCH_HEAPSNAP;
if (snap) process.on('SIGUSR2', () => writeHeapSnapshot(snap));
