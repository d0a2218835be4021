// Gateway failover inside the site (docs/gateway.md "Gateway HA"), the product's wiring: two
// gateway nodes each running GatewayConsumer + GatewayHa as `tether node run` does
// (test/bench/support/ha-node.ts) peer with a BIRD 2 site router in namespaces this benchmark
// creates; a ping every 10 ms from the router's side to the floating IP while the active is
// silenced (link up, everything it sends dropped: only a timer can tell). Compared in the
// same run against the baseline without BFD, where only BGP's hold timer (9 s) ends the dead
// session. Rounds alternate the two (BENCH_HA_ROUNDS, default 2).
//   npm run bench (BENCH_ONLY=gateway-failover) or: npx tsx test/bench/gateway-failover.ts
import { type FailoverResult, failover, HaLab } from './support/ha-lab.js';

type Result = Record<string, number | string>;
const ROUNDS = Number(process.env.BENCH_HA_ROUNDS ?? 2);

const median = (xs: number[]) => {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function once(bfd: boolean): Promise<FailoverResult> {
  const lab = new HaLab('bird', 'node', bfd);
  try {
    await lab.build();
    return await failover(lab, 'silence');
  } finally {
    await lab.destroy();
  }
}

export async function run(): Promise<Result> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root for network namespaces' };
  const runs: Record<'bfd' | 'hold', FailoverResult[]> = { bfd: [], hold: [] };
  for (let i = 0; i < ROUNDS; i++) {
    runs.bfd.push(await once(true));
    runs.hold.push(await once(false));
  }
  const moved = (rs: FailoverResult[]) => median(rs.map((r) => r.routeMovedMs ?? Number.NaN));
  const lost = (rs: FailoverResult[]) => median(rs.map((r) => r.failover.lost));
  const gap = (rs: FailoverResult[]) => median(rs.map((r) => r.failover.maxGapMs));
  const out: Result = {
    rounds: ROUNDS,
    'bfd_300msx3 route moved ms (median)': moved(runs.bfd),
    'bfd_300msx3 pings lost (median, 10 ms apart)': lost(runs.bfd),
    'bfd_300msx3 longest gap ms (median)': gap(runs.bfd),
    'baseline hold 9 s route moved ms (median)': moved(runs.hold),
    'baseline hold 9 s pings lost (median)': lost(runs.hold),
    'baseline hold 9 s longest gap ms (median)': gap(runs.hold),
    'speedup vs baseline (x)': +(moved(runs.hold) / moved(runs.bfd)).toFixed(1),
    'preempted back (all rounds)': [...runs.bfd, ...runs.hold].every((r) => r.preemptedBack) ? 'yes' : 'no',
  };
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
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
