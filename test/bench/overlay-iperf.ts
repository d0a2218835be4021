/**
 * Benchmark (b): TCP throughput over the overlay against the underlay, in a 2-site lab
 * (src/lab). iperf3 between the two red workloads (workload → bridge → VXLAN → site router →
 * WAN router → site router → VXLAN → bridge → workload) and between the two node namespaces
 * themselves (the same routed path without VXLAN), `-t 5` each, alternating, best of
 * OVERLAY_IPERF_ROUNDS rounds (default 2), plus the median of the per-round ratios.
 *
 * Needs root and iperf3. Usage: `npx tsx test/bench/overlay-iperf.ts` or through test/bench/run.ts.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { defaultLabStateDir, Lab } from '../../src/lab/index.js';

const SECONDS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function iperf(lab: Lab, serverNs: string, serverIp: string, clientNs: string): Promise<number> {
  const server: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-B', serverIp],
    {
      stdio: 'ignore',
    },
  );
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ss = await lab.exec(serverNs, 'ss', ['-Hltn', `sport = :5201`], { allowFailure: true });
      if (ss.stdout.trim()) break;
      if (Date.now() > deadline) throw new Error(`iperf3 server in ${serverNs} did not listen`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await lab.exec(clientNs, 'iperf3', ['-c', serverIp, '-t', String(SECONDS), '-J'], {
      timeoutMs: (SECONDS + 20) * 1000,
    });
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
  }
}

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root (network namespaces)' };
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) return { skipped: 'iperf3 not installed' };
  const rounds = Number(process.env.OVERLAY_IPERF_ROUNDS ?? 2);
  const name = `b${randomBytes(2).toString('hex')}`;
  const lab = await Lab.up({
    name,
    sites: 2,
    nodesPerSite: 1,
    workloadsPerNode: 1,
    stateDir: defaultLabStateDir(name),
  });
  try {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    const na = lab.node('s1n1');
    const nb = lab.node('s2n1');
    const overlay: number[] = [];
    const underlay: number[] = [];
    for (let i = 0; i < rounds; i++) {
      overlay.push(await iperf(lab, b.ns, b.ip, a.ns));
      underlay.push(await iperf(lab, nb.ns, nb.ip, na.ns));
    }
    const bestO = Math.max(...overlay);
    const bestU = Math.max(...underlay);
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    return {
      rounds,
      seconds_per_run: SECONDS,
      overlay_gbps_best: r3(bestO),
      underlay_gbps_best: r3(bestU),
      ratio_best: r3(bestO / bestU),
      ratio_median_per_round: r3(median(overlay.map((o, i) => o / (underlay[i] ?? 1)))),
      overlay_gbps_runs: overlay.map(r3).join(' '),
      underlay_gbps_runs: underlay.map(r3).join(' '),
      path: 'workload↔workload (red, VXLAN, MTU 1450) vs node↔node (MTU 1500); both via site and WAN router namespaces',
    };
  } finally {
    await lab.down();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => console.log(r),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
