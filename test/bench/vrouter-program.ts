/**
 * Benchmark (a): programming 10,000 remote endpoints from desired state to the kernel with
 * VRouter.sync (observe → plan → apply, into a fresh namespace, devices included) against raw
 * `ip -batch` / `bridge -batch` of the same entries into a namespace whose devices were made
 * beforehand. Each remote endpoint is 3 kernel entries: a neighbour (proxy ARP) entry, a VXLAN
 * forwarding entry (MAC → VTEP) and a static bridge entry (MAC → VXLAN port).
 *
 * Needs root. Usage: `npx tsx test/bench/vrouter-program.ts` or through test/bench/run.ts.
 * Env: VROUTER_BENCH_ENDPOINTS (default 10000), VROUTER_BENCH_ROUNDS (default 5).
 *
 * The test VM has 2 cores shared with other work, so each round measures both sides back to
 * back and the reported ratio is the median of the per-round ratios; best-of times are printed
 * too (the least disturbed by other load).
 */
import { randomBytes } from 'node:crypto';
import { ProcessRunner } from '../../src/lib/exec.js';
import { silentLogger } from '../../src/lib/log.js';
import { VRouter } from '../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, gatewayMacFor, names } from '../../src/node/vrouter/model.js';

const runner = new ProcessRunner();

async function sh(args: string[], input?: string): Promise<void> {
  await runner.run('ip', args, input ? { input } : {});
}

function endpoints(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    mac: `02:42:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:07`,
    ip: `10.64.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`,
    vtep: `192.168.88.${2 + (i % 200)}`,
    labels: {},
  }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) {
    console.log('vrouter-program: skipped (needs root)');
    return { skipped: 'needs root' };
  }
  const n = Number(process.env.VROUTER_BENCH_ENDPOINTS ?? 10_000);
  const rounds = Number(process.env.VROUTER_BENCH_ROUNDS ?? 5);
  const id = `vbench${randomBytes(2).toString('hex')}`;
  const nodeNs = `${id}-node`;
  const created: string[] = [];
  const eps = endpoints(n);
  const vrTimes: number[] = [];
  const rawTimes: number[] = [];
  const prefixes: string[] = [];
  try {
    await sh(['netns', 'add', nodeNs]);
    created.push(nodeNs);
    await sh(['-n', nodeNs, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1']);
    await sh(['-n', nodeNs, 'addr', 'add', '192.168.88.1/24', 'dev', 'ul0']);
    await sh(['-n', nodeNs, 'link', 'set', 'ul0', 'up']);
    await sh(['-n', nodeNs, 'link', 'set', 'ul1', 'up']);

    // Round 0 warms up (JIT, page cache) and is not counted: the agent is a long-running process.
    for (let r = 0; r <= rounds; r++) {
      // --- VRouter.sync into a fresh namespace (creates namespace, devices, then entries)
      const vni = 5000 + r;
      const prefix = `${id}r${r}`;
      prefixes.push(prefix);
      const desired: DesiredNodeNetwork = {
        node: 'bench',
        netnsPrefix: prefix,
        underlay: { ifname: 'ul0', vtepIp: '192.168.88.1', mtu: 1500, netns: nodeNs },
        networks: [
          {
            name: 'bench',
            vni,
            subnets: ['10.64.0.0/16'],
            gateway: '10.64.0.1',
            gatewayMac: gatewayMacFor(vni),
            localBreakout: false,
            localEndpoints: [],
            remoteEndpoints: eps,
            policies: [],
          },
        ],
      };
      const vr = new VRouter(runner, silentLogger());
      const t0 = performance.now();
      const rep = await vr.sync(desired);
      const vrMs = performance.now() - t0;
      if (!rep.ok) throw new Error(`VRouter.sync failed: ${rep.failures[0]?.message}`);
      if (r > 0) vrTimes.push(vrMs);

      // --- raw batches of the same entries into a namespace prepared beforehand
      const rawNs = `${id}-raw${r}`;
      const rvni = 6000 + r;
      await sh(['netns', 'add', rawNs]);
      created.push(rawNs);
      await sh(
        ['-n', nodeNs, '-batch', '-'],
        [
          `link add tvx${rvni} mtu 1450 type vxlan id ${rvni} local 192.168.88.1 dev ul0 dstport 4789 nolearning proxy`,
          `link set dev tvx${rvni} netns ${rawNs}`,
        ].join('\n'),
      );
      const vx = `tvx${rvni}`;
      await sh(
        ['-n', rawNs, '-batch', '-'],
        [
          `link add tbr0 mtu 1450 type bridge`,
          `link set dev tbr0 up`,
          `link set dev ${vx} master tbr0 up`,
        ].join('\n'),
      );
      const neighLines = eps
        .map((e) => `neigh replace ${e.ip} lladdr ${e.mac} dev ${vx} nud permanent`)
        .join('\n');
      const fdbLines = eps
        .flatMap((e) => [
          `fdb replace ${e.mac} dev ${vx} dst ${e.vtep} self permanent`,
          `fdb replace ${e.mac} dev ${vx} master static`,
        ])
        .join('\n');
      const t1 = performance.now();
      await runner.run('ip', ['-n', rawNs, '-batch', '-'], { input: `${neighLines}\n` });
      await runner.run('bridge', ['-n', rawNs, '-batch', '-'], { input: `${fdbLines}\n` });
      const rawMs = performance.now() - t1;
      if (r > 0) rawTimes.push(rawMs);

      // sanity: both namespaces hold the same number of entries
      const count = async (ns: string, dev: string) =>
        (
          JSON.parse((await runner.run('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', dev])).stdout) as {
            state?: string;
            dst?: string;
          }[]
        ).filter((e) => e.dst || e.state === 'static').length;
      const a = await count(names.vnNetns(prefix, vni), names.vxlan(vni));
      const b = await count(rawNs, vx);
      if (a !== 2 * n || b !== 2 * n)
        throw new Error(`entry counts differ: vrouter ${a}, raw ${b}, expected ${2 * n}`);
      console.log(
        `${r === 0 ? 'warm-up' : `round ${r}/${rounds}`}: VRouter.sync ${vrMs.toFixed(0)} ms (${rep.batches} batches; ${JSON.stringify(rep.timings)}), raw batches ${rawMs.toFixed(0)} ms`,
      );
    }
  } finally {
    for (const p of prefixes)
      await runner.run('ip', ['netns', 'del', names.vnNetns(p, 5000 + prefixes.indexOf(p))], {
        allowFailure: true,
      });
    for (const ns of created.reverse()) await runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
  }
  const entries = 3 * n;
  const vrMs = median(vrTimes);
  const rawMs = median(rawTimes);
  const ratios = vrTimes.map((v, i) => rawTimes[i]! / v);
  const bestVr = Math.min(...vrTimes);
  const bestRaw = Math.min(...rawTimes);
  const result = {
    endpoints: n,
    entries,
    rounds,
    vrouter_ms_median: Math.round(vrMs),
    raw_ms_median: Math.round(rawMs),
    vrouter_entries_per_s: Math.round(entries / (vrMs / 1000)),
    raw_entries_per_s: Math.round(entries / (rawMs / 1000)),
    ratio_median: Number(median(ratios).toFixed(3)),
    vrouter_ms_best: Math.round(bestVr),
    raw_ms_best: Math.round(bestRaw),
    ratio_best: Number((bestRaw / bestVr).toFixed(3)),
    goal_ratio: 0.7,
  };
  console.log(
    `vrouter-program: ${n} remote endpoints (${entries} entries), ${rounds} rounds:\n` +
      `  VRouter.sync (fresh namespace, devices, observe+plan included): median ${result.vrouter_ms_median} ms = ${result.vrouter_entries_per_s} entries/s, best ${result.vrouter_ms_best} ms\n` +
      `  raw ip -batch + bridge -batch (same entries, devices pre-made): median ${result.raw_ms_median} ms = ${result.raw_entries_per_s} entries/s, best ${result.raw_ms_best} ms\n` +
      `  ratio (raw time / VRouter time): median of rounds ${result.ratio_median}, best-of ${result.ratio_best} (goal >= 0.7)`,
  );
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
