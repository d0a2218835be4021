/**
 * Benchmark (b): TCP throughput over Tether's overlay, against a hand-built bridge + VXLAN
 * between the same two nodes and against the underlay, in a 2-site lab (src/lab).
 *
 * Three paths, interleaved in every round (the order rotates from round to round, so no path
 * always runs first on a machine whose load drifts), iperf3 `-t SECONDS` each:
 * - tether: red workload at s1n1 → Tether's vRouter (veth, tbr0, tvx<VNI>) → VXLAN → site
 *   router → WAN router → site router → VXLAN → vRouter → red workload at s2n1;
 * - hand-built: the textbook setup on the same two nodes, in their own namespaces: a bridge and
 *   a VXLAN device (nolearning, static FDB entries for the one remote MAC, MTU 1450, the same
 *   UDP port, so it shares Tether's VXLAN socket and notrack rule) with a veth to a workload
 *   namespace of its own;
 * - underlay: node namespace to node namespace on the same routed path without VXLAN, with the
 *   MSS the overlay's MTU 1450 gives (iperf3 `-M 1410`), so every path carries equal segments.
 * Reported: per-round ratios and their medians (tether / hand-built, tether / underlay), with
 * the goals tether ≥ 0.95 of hand-built and ≥ 0.9 of the underlay.
 *
 * Needs root and iperf3. Usage: `npx tsx test/bench/overlay-iperf.ts` or through test/bench/run.ts
 * (OVERLAY_IPERF_ROUNDS, default 5).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { defaultLabStateDir, Lab } from '../../src/lab/index.js';

const SECONDS = 5;
const OVERLAY_MTU = 1450;
/** TCP MSS on a 1450-byte MTU: what the underlay is held to for equal segments. */
const OVERLAY_MSS = OVERLAY_MTU - 40;
const HAND_VNI = 4242;
const HAND_IPS = ['10.77.0.1', '10.77.0.2'] as const;
const HAND_MACS = ['02:77:00:00:00:01', '02:77:00:00:00:02'] as const;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return 0;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function iperf(
  lab: Lab,
  serverNs: string,
  serverIp: string,
  clientNs: string,
  extra: string[] = [],
): Promise<number> {
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
    const r = await lab.exec(clientNs, 'iperf3', ['-c', serverIp, '-t', String(SECONDS), '-J', ...extra], {
      timeoutMs: (SECONDS + 20) * 1000,
    });
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
  }
}

interface HandBuilt {
  namespaces: string[];
  ips: readonly string[];
  cleanup: () => Promise<void>;
}

/**
 * The reference overlay: in each node namespace a bridge `hbr0` and a VXLAN `hvx0` (its port,
 * learning off), a veth `hv0` to a workload namespace `<lab>-h<i>`; static FDB entries (VXLAN
 * self → remote VTEP, bridge master) and a permanent neighbour for the one remote workload.
 */
async function handBuilt(
  lab: Lab,
  nodes: Array<{ ns: string; ip: string; lanIf: string }>,
): Promise<HandBuilt> {
  const used = new Set([lab.vni('red'), lab.vni('blue')]);
  let vni = HAND_VNI;
  while (used.has(vni)) vni += 1;
  const namespaces = nodes.map((_, i) => `${lab.plan.name}-h${i + 1}`);
  const created: string[] = [];
  const ip = (ns: string, args: string) => lab.sh('ip', ['-n', ns, ...args.split(' ')]);
  const cleanup = async () => {
    for (const n of nodes) {
      for (const dev of ['hv0', 'hvx0', 'hbr0'])
        await lab.sh('ip', ['-n', n.ns, 'link', 'del', dev], { allowFailure: true });
    }
    for (const ns of created) await lab.sh('ip', ['netns', 'del', ns], { allowFailure: true });
  };
  try {
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i]!;
      const peer = nodes[1 - i]!;
      const wns = namespaces[i]!;
      await lab.sh('ip', ['netns', 'add', wns]);
      created.push(wns);
      await ip(wns, 'link set lo up');
      await ip(n.ns, `link add hbr0 mtu ${OVERLAY_MTU} type bridge`);
      await ip(
        n.ns,
        `link add hvx0 mtu ${OVERLAY_MTU} type vxlan id ${vni} local ${n.ip} dev ${n.lanIf} dstport 4789 nolearning`,
      );
      await ip(n.ns, 'link set hvx0 master hbr0');
      await ip(n.ns, 'link set dev hvx0 type bridge_slave learning off');
      await ip(
        n.ns,
        `link add hv0 mtu ${OVERLAY_MTU} type veth peer name eth0 mtu ${OVERLAY_MTU} netns ${wns}`,
      );
      await ip(n.ns, 'link set hv0 master hbr0');
      for (const dev of ['hbr0', 'hvx0', 'hv0']) await ip(n.ns, `link set ${dev} up`);
      await ip(wns, `link set eth0 address ${HAND_MACS[i]}`);
      await ip(wns, `addr add ${HAND_IPS[i]}/24 dev eth0`);
      await ip(wns, 'link set eth0 up');
      await ip(wns, `neigh replace ${HAND_IPS[1 - i]} lladdr ${HAND_MACS[1 - i]} dev eth0 nud permanent`);
      const mac = HAND_MACS[1 - i]!;
      await lab.sh('bridge', [
        '-n',
        n.ns,
        'fdb',
        'replace',
        mac,
        'dev',
        'hvx0',
        'self',
        'permanent',
        'dst',
        peer.ip,
      ]);
      await lab.sh('bridge', ['-n', n.ns, 'fdb', 'replace', mac, 'dev', 'hvx0', 'master', 'static']);
    }
    const ping = await lab.ping(namespaces[0]!, HAND_IPS[1], { count: 3 });
    if (!ping.ok) throw new Error('the hand-built overlay does not forward (no ping reply)');
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { namespaces, ips: HAND_IPS, cleanup };
}

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root (network namespaces)' };
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) return { skipped: 'iperf3 not installed' };
  const rounds = Number(process.env.OVERLAY_IPERF_ROUNDS ?? 5);
  const name = `b${randomBytes(2).toString('hex')}`;
  const lab = await Lab.up({
    name,
    sites: 2,
    nodesPerSite: 1,
    workloadsPerNode: 1,
    stateDir: defaultLabStateDir(name),
  });
  let hand: HandBuilt | undefined;
  try {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s2n1w1');
    const na = lab.node('s1n1');
    const nb = lab.node('s2n1');
    await lab.waitConverged();
    hand = await handBuilt(
      lab,
      [na, nb].map((n) => ({ ns: n.ns, ip: n.ip, lanIf: n.lanIf })),
    );
    const h = hand;
    const paths = {
      tether: () => iperf(lab, b.ns, b.ip, a.ns),
      hand: () => iperf(lab, h.namespaces[1]!, h.ips[1]!, h.namespaces[0]!),
      underlay: () => iperf(lab, nb.ns, nb.ip, na.ns, ['-M', String(OVERLAY_MSS)]),
    };
    const order = Object.keys(paths) as Array<keyof typeof paths>;
    const runs: Record<keyof typeof paths, number[]> = { tether: [], hand: [], underlay: [] };
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < order.length; k++) {
        const p = order[(i + k) % order.length]!;
        runs[p].push(await paths[p]());
      }
    }
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    const ratio = (x: number[], y: number[]) => x.map((v, i) => v / (y[i] ?? Number.NaN));
    const vsHand = ratio(runs.tether, runs.hand);
    const vsUnder = ratio(runs.tether, runs.underlay);
    const handVsUnder = ratio(runs.hand, runs.underlay);
    const mHand = median(vsHand);
    const mUnder = median(vsUnder);
    return {
      rounds,
      seconds_per_run: SECONDS,
      tether_gbps_median: r3(median(runs.tether)),
      hand_built_gbps_median: r3(median(runs.hand)),
      underlay_gbps_median: r3(median(runs.underlay)),
      'tether / hand-built, median of per-round ratios': `${r3(mHand)} hand-built (goal ≥ 0.95: ${mHand >= 0.95 ? 'met' : 'missed'})`,
      'tether / underlay, median of per-round ratios': `${r3(mUnder)} (goal ≥ 0.9: ${mUnder >= 0.9 ? 'met' : 'missed'})`,
      'hand-built / underlay, median of per-round ratios': r3(median(handVsUnder)),
      tether_gbps_runs: runs.tether.map(r3).join(' '),
      hand_built_gbps_runs: runs.hand.map(r3).join(' '),
      underlay_gbps_runs: runs.underlay.map(r3).join(' '),
      ratio_vs_hand_built_runs: vsHand.map(r3).join(' '),
      ratio_vs_underlay_runs: vsUnder.map(r3).join(' '),
      path: `workload↔workload across two sites (red, VXLAN, MTU ${OVERLAY_MTU}) vs hand-built bridge + VXLAN on the same nodes vs node↔node (MSS ${OVERLAY_MSS}); all via both site routers and the WAN router`,
    };
  } finally {
    await hand?.cleanup();
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
