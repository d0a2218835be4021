// Gateway failover inside the site (docs/gateway.md "Gateway HA"), the product's wiring: two
// gateway nodes each running GatewayConsumer + GatewayHa as `tether node run` does
// (test/bench/support/ha-node.ts) peer with a BIRD 2 site router in namespaces this benchmark
// creates; a ping every 10 ms from the router's side to the floating IP while the active is
// silenced (link up, everything it sends dropped: only a timer can tell). Compared in the
// same run against the baseline without BFD, where only BGP's hold timer (9 s) ends the dead
// session. Then the same with a REAL FloatingIP (HaLab's real mode: both gateways bind it,
// DNAT over VXLAN to a workload on a third node E, which answers the pings), silenced and
// kill -9 of the active's daemon and BIRD, against the loopback-address mode (the floating
// IP an address on each gateway's loopback: the routing change alone) with the same faults.
// Every round runs each case once, interleaved (BENCH_HA_ROUNDS, default 2).
//   npm run bench (BENCH_ONLY=gateway-failover) or: npx tsx test/bench/gateway-failover.ts
import { type FailoverResult, type Fault, type FipMode, failover, HaLab } from './support/ha-lab.js';

type Result = Record<string, number | string>;
const ROUNDS = Number(process.env.BENCH_HA_ROUNDS ?? 2);

const median = (xs: number[]) => {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function once(
  bfd: boolean,
  fault: Fault = 'silence',
  fip: FipMode = 'loopback',
): Promise<FailoverResult> {
  const lab = new HaLab('bird', 'node', bfd, fip);
  try {
    await lab.build();
    return await failover(lab, fault);
  } finally {
    await lab.destroy();
  }
}

type Case = 'bfd' | 'hold' | 'fipSilence' | 'fipKill9' | 'loKill9';
const CASES: Record<Case, { label: string; bfd: boolean; fault: Fault; fip: FipMode }> = {
  bfd: { label: 'bfd_300msx3', bfd: true, fault: 'silence', fip: 'loopback' },
  hold: { label: 'baseline hold 9 s', bfd: false, fault: 'silence', fip: 'loopback' },
  fipSilence: { label: 'real FIP (E workload) silenced, bfd', bfd: true, fault: 'silence', fip: 'real' },
  fipKill9: { label: 'real FIP (E workload) kill -9, bfd', bfd: true, fault: 'kill9', fip: 'real' },
  loKill9: { label: 'loopback FIP kill -9, bfd (baseline)', bfd: true, fault: 'kill9', fip: 'loopback' },
};

export async function run(): Promise<Result> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root for network namespaces' };
  // BENCH_HA_CASES=bfd,fipSilence,…: a subset (quick iterations; recorded runs take all).
  const only = process.env.BENCH_HA_CASES?.split(',');
  const cases = (Object.keys(CASES) as Case[]).filter((c) => !only || only.includes(c));
  const runs: Record<Case, FailoverResult[]> = {
    bfd: [],
    hold: [],
    fipSilence: [],
    fipKill9: [],
    loKill9: [],
  };
  for (let i = 0; i < ROUNDS; i++)
    for (const c of cases) runs[c].push(await once(CASES[c].bfd, CASES[c].fault, CASES[c].fip));
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
    'preempted back (all rounds)': Object.values(runs)
      .flat()
      .every((r) => r.preemptedBack)
      ? 'yes'
      : 'no',
  };
  for (const c of ['fipSilence', 'fipKill9', 'loKill9'] as const) {
    if (!runs[c].length) continue;
    const l = CASES[c].label;
    // kill -9 under graceful restart: the router may keep the dead node's routes (stale) while
    // its kernel still forwards; then the route never moves and "moved" counts the rounds it did.
    out[`${l} route moved ms (median)`] = median(
      runs[c].flatMap((r) => (r.routeMovedMs === undefined ? [] : [r.routeMovedMs])),
    );
    out[`${l} route moved (rounds)`] =
      `${runs[c].filter((r) => r.routeMovedMs !== undefined).length}/${runs[c].length}`;
    out[`${l} pings lost (median)`] = lost(runs[c]);
    out[`${l} pings sent (median)`] = median(runs[c].map((r) => r.failover.sent));
    out[`${l} longest gap ms (median)`] = gap(runs[c]);
    if (CASES[c].fip === 'real')
      out[`${l} client seen after failover`] = [...new Set(runs[c].map((r) => r.seenDuring ?? '-'))].join(
        ' ',
      );
  }
  if (runs.fipSilence.length && runs.bfd.length)
    out['real FIP vs loopback FIP, silenced: route moved ratio (median of per-round)'] = +median(
      runs.fipSilence.map(
        (r, i) => (r.routeMovedMs ?? Number.NaN) / (runs.bfd[i]?.routeMovedMs ?? Number.NaN),
      ),
    ).toFixed(2);
  out.rawRuns = JSON.stringify(
    Object.fromEntries(
      cases.map((c) => [
        c,
        runs[c].map((r) => ({
          moved: r.routeMovedMs ?? null,
          lost: r.failover.lost,
          sent: r.failover.sent,
          gap: r.failover.maxGapMs,
          recLost: r.recovery.lost,
        })),
      ]),
    ),
  );
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
