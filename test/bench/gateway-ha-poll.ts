/**
 * What the gateway HA monitor's uplink check costs (src/node/gateway/ha.ts, docs/gateway.md
 * "Gateway HA"): a real BIRD 2 (BirdDaemon, in a namespace this bench creates) with
 * BENCH_HA_POLL_PEERS BGP peers (default 4, addresses inside that namespace that never
 * answer) and 1,000 announced prefixes. Per read, CPU of this process plus BIRD's
 * (/proc/<pid>/stat): the baseline, `status()` (`show protocols all`, what the monitor used to
 * read every 100 ms), against `sessionsUp()` (`show protocols`, read every 100 ms with BFD and
 * once a second without). Rounds interleave the two (BENCH_HA_POLL_ROUNDS, default 5, of
 * BENCH_HA_POLL_READS reads each, default 500); medians of the per-round figures.
 *   npm run bench (BENCH_ONLY=gateway-ha-poll) or: npx tsx test/bench/gateway-ha-poll.ts
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BirdDaemon } from '../../src/bgp/daemon.js';
import { renderBirdConfig } from '../../src/bgp/render.js';
import { NetnsSet } from '../support/netns.js';

type Result = Record<string, number | string>;
const PEERS = Number(process.env.BENCH_HA_POLL_PEERS ?? 4);
const ROUNDS = Number(process.env.BENCH_HA_POLL_ROUNDS ?? 5);
const READS = Number(process.env.BENCH_HA_POLL_READS ?? 500);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** CPU time of a process in µs (utime + stime; USER_HZ is 100 on Linux). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

async function measure(bird: BirdDaemon, pid: number, read: () => Promise<unknown>) {
  const c0 = process.cpuUsage();
  const b0 = procCpuUs(pid);
  const t0 = performance.now();
  for (let i = 0; i < READS; i++) await read();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const cpu = c.user + c.system + (procCpuUs(pid) - b0);
  void bird;
  return { cpuUsPerRead: cpu / READS, wallUsPerRead: (wall * 1000) / READS };
}

export async function run(): Promise<Result> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root for a network namespace' };
  const topo = new NetnsSet('hp');
  const dir = mkdtempSync(join(tmpdir(), 'tether-hapoll-'));
  const [ns] = await topo.add('gw');
  const bird = new BirdDaemon({ stateDir: dir, netns: ns! });
  try {
    const peers = Array.from({ length: PEERS }, (_, i) => ({
      name: `p${i}`,
      // Inside the bench's own namespace, no route there: the sessions stay Active.
      address: `10.254.${i}.1`,
      asn: 65000,
      holdSeconds: 9,
      keepaliveSeconds: 3,
      bfd: { intervalMs: 300, multiplier: 3 },
    }));
    const announce = Array.from({ length: 1000 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`);
    await bird.apply(
      renderBirdConfig({
        routerId: '10.254.255.1',
        localAsn: 65001,
        peers,
        announce,
        acceptDefaultRoute: false,
        gracefulRestartSeconds: 120,
        llgrStaleSeconds: 0,
      }),
    );
    const pid = (await bird.status()).pid!;
    // Warm both paths (socket open, JIT).
    for (let i = 0; i < 50; i++) {
      await bird.status();
      await bird.sessionsUp();
    }
    const all: Array<{ cpuUsPerRead: number; wallUsPerRead: number }> = [];
    const cheap: Array<{ cpuUsPerRead: number; wallUsPerRead: number }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      all.push(await measure(bird, pid, () => bird.status()));
      cheap.push(await measure(bird, pid, () => bird.sessionsUp()));
    }
    const allCpu = median(all.map((x) => x.cpuUsPerRead));
    const cheapCpu = median(cheap.map((x) => x.cpuUsPerRead));
    return {
      peers: PEERS,
      rounds: ROUNDS,
      'reads per round': READS,
      'baseline show protocols all: CPU µs/read (median)': +allCpu.toFixed(1),
      'baseline show protocols all: wall µs/read (median)': +median(all.map((x) => x.wallUsPerRead)).toFixed(
        1,
      ),
      'show protocols: CPU µs/read (median)': +cheapCpu.toFixed(1),
      'show protocols: wall µs/read (median)': +median(cheap.map((x) => x.wallUsPerRead)).toFixed(1),
      'cost per read vs baseline (x)': +(cheapCpu / allCpu).toFixed(2),
      // The monitor's budget: reads per second times CPU per read.
      'baseline monitor CPU ms/s (10 reads/s)': +((allCpu * 10) / 1000).toFixed(2),
      'now with BFD CPU ms/s (10 reads/s)': +((cheapCpu * 10) / 1000).toFixed(2),
      'now without BFD CPU ms/s (1 read/s)': +(cheapCpu / 1000).toFixed(2),
    };
  } finally {
    await bird.stop();
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
