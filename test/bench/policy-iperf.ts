/**
 * Benchmark: what stateful policy costs on the overlay. Two vRouter nodes in namespaces (the
 * vRouter integration topology: underlay veth, one network, one workload per node), iperf3 TCP
 * from node A's workload to node B's over VXLAN, in three configurations, alternating, best and
 * median over POLICY_IPERF_ROUNDS rounds (default 3):
 * - `no_policy`: no policy (Tether sets bridge-nf-call-iptables=0);
 * - `brnf_on_no_policy`: no policy but bridge-nf-call-iptables=1 (the kernel's default, what
 *   every network paid before Tether turned it off where there is no policy);
 * - `policy`: a default-deny policy allowing only workload A → B on TCP 5201 (br_netfilter +
 *   conntrack + the inet policy table, on both nodes).
 *
 * Needs root and iperf3. Usage: `npx tsx test/bench/policy-iperf.ts` or through test/bench/run.ts.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { silentLogger } from '../../src/lib/log.js';
import { VRouter } from '../../src/node/vrouter/agent.js';
import { type DesiredPolicy, names } from '../../src/node/vrouter/model.js';
import { waitFor } from '../integration/support/proc.js';
import { local, network, nodeDesired, remote, Topo, type Workload } from '../integration/vrouter/topo.js';

const SECONDS = 4;
const BRNF = 'net.bridge.bridge-nf-call-iptables';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function iperf(topo: Topo, server: Workload, client: Workload): Promise<number> {
  const srv: ChildProcess = spawn('ip', ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', '-B', server.ip], {
    stdio: 'ignore',
  });
  try {
    await waitFor(
      'iperf3 to listen',
      async () => (await topo.sh('ss', ['-Hltn', 'sport = :5201'], server.ns)).trim(),
      10_000,
      50,
    );
    const out = await topo.sh('iperf3', ['-c', server.ip, '-t', String(SECONDS), '-J'], client.ns);
    const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    if (srv.exitCode === null && srv.signalCode === null) srv.kill('SIGKILL');
  }
}

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root (network namespaces)' };
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) return { skipped: 'iperf3 not installed' };
  const rounds = Number(process.env.POLICY_IPERF_ROUNDS ?? 3);
  const topo = new Topo('bp');
  const vr = new VRouter(topo.runner, silentLogger());
  let a: Workload | undefined;
  let b: Workload | undefined;
  const desired = (node: 'a' | 'b', policies: DesiredPolicy[]) => {
    const n = network('red', 500);
    n.localEndpoints = [local(node === 'a' ? a! : b!)];
    n.remoteEndpoints = [remote(node === 'a' ? b! : a!, node === 'a' ? topo.vtepB : topo.vtepA)];
    n.policies = policies;
    return nodeDesired(topo, node, [n]);
  };
  const policy: DesiredPolicy = {
    name: 'zt',
    defaultAction: 'deny',
    rules: [
      {
        name: 'iperf',
        action: 'allow',
        from: { matchLabels: { role: 'client' } },
        to: { matchLabels: { role: 'server' } },
        ports: [{ protocol: 'tcp', port: 5201 }],
      },
    ],
  };
  const configure = async (policies: DesiredPolicy[], brnf?: '1') => {
    for (const node of ['a', 'b'] as const) {
      const r = await vr.sync(desired(node, policies));
      if (!r.ok) throw new Error(`sync failed: ${JSON.stringify(r.failures[0])}`);
      if (brnf)
        await topo.sh('sysctl', ['-q', '-w', `${BRNF}=${brnf}`], names.vnNetns(`${topo.id}${node}`, 500));
    }
  };
  try {
    await topo.build();
    a = await topo.addWorkload('a', 'client', '10.1.0.10', '10.1.0.1', { role: 'client' });
    b = await topo.addWorkload('b', 'server', '10.1.0.20', '10.1.0.1', { role: 'server' });
    const configs: [string, () => Promise<void>][] = [
      ['no_policy', () => configure([])],
      ['brnf_on_no_policy', () => configure([], '1')],
      ['policy', () => configure([policy])],
    ];
    const runs: Record<string, number[]> = Object.fromEntries(configs.map(([k]) => [k, []]));
    for (let i = 0; i < rounds; i++)
      for (const [k, setup] of i % 2 ? [...configs].reverse() : configs) {
        await setup();
        runs[k]!.push(await iperf(topo, b, a));
      }
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    const out: Record<string, number | string> = { rounds, seconds_per_run: SECONDS };
    for (const [k] of configs) {
      out[`${k}_gbps_best`] = r3(Math.max(...runs[k]!));
      out[`${k}_gbps_median`] = r3(median(runs[k]!));
      out[`${k}_gbps_runs`] = runs[k]!.map(r3).join(' ');
    }
    out.policy_vs_no_policy_median = r3(median(runs.policy!) / median(runs.no_policy!));
    out.brnf_on_vs_off_median = r3(median(runs.brnf_on_no_policy!) / median(runs.no_policy!));
    out.path = 'workload↔workload over VXLAN between two node namespaces (underlay veth, MTU 1450 overlay)';
    return out;
  } finally {
    if (a && b) {
      await vr.teardown(desired('a', [])).catch(() => undefined);
      await vr.teardown(desired('b', [])).catch(() => undefined);
    }
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
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
