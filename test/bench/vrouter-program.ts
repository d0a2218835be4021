/**
 * Benchmark (a): programming 10,000 remote endpoints from desired state to the kernel with
 * VRouter.sync against raw `ip -batch` / `bridge -batch` of the same entries. Each remote
 * endpoint is 3 kernel entries: a neighbour (proxy ARP) entry, a VXLAN forwarding entry
 * (MAC → VTEP) and a static bridge entry (MAC → VXLAN port).
 *
 * Per round, four measurements:
 *   vrouter_fresh  VRouter.sync into a fresh namespace: observe, plan, namespace, devices, entries
 *   raw_entries    ip -batch + bridge -batch of the entries only, devices made beforehand
 *   vrouter_incr   VRouter.sync adding the endpoints to an existing network (devices present)
 *   raw_full       namespace + devices + entries, all as raw batches
 * The headline ratio is the strict one: raw_entries / vrouter_fresh (goal ≥ 0.7).
 *
 * The test VM has 2 cores shared with other work: round 0 warms up and is not counted, the
 * ratios are medians of per-round ratios (both sides measured back to back), best-of times too.
 * Each round's namespaces are deleted at its end, followed by a 3 s pause, and the order of
 * the four measurements rotates from round to round: the kernel tears a
 * namespace down asynchronously, and a teardown of 30,000 entries running in the background
 * slows whatever runs next (and letting namespaces pile up grows the global ARP table).
 *
 * Needs root. Usage: `npx tsx test/bench/vrouter-program.ts` or through test/bench/run.ts.
 * Env: VROUTER_BENCH_ENDPOINTS (default 10000), VROUTER_BENCH_ROUNDS (default 5).
 */
import { randomBytes } from 'node:crypto';
import { ProcessRunner } from '../../src/lib/exec.js';
import { silentLogger } from '../../src/lib/log.js';
import { VRouter } from '../../src/node/vrouter/agent.js';
import {
  type DesiredNodeNetwork,
  gatewayMacFor,
  names,
  type RemoteEndpoint,
} from '../../src/node/vrouter/model.js';

const runner = new ProcessRunner();

function endpoints(n: number): RemoteEndpoint[] {
  const h = (x: number) => (x & 255).toString(16).padStart(2, '0');
  return Array.from({ length: n }, (_, i) => ({
    mac: `02:42:${h(i >> 16)}:${h(i >> 8)}:${h(i)}:07`,
    ip: `10.64.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`,
    vtep: `192.168.88.${2 + (i % 200)}`,
    labels: {},
  }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
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
  const t = {
    vrFresh: [] as number[],
    rawEntries: [] as number[],
    vrIncr: [] as number[],
    rawFull: [] as number[],
  };

  const desired = (prefix: string, vni: number, remotes: RemoteEndpoint[]): DesiredNodeNetwork => ({
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
        remoteEndpoints: remotes,
        policies: [],
      },
    ],
  });
  const count = async (ns: string, dev: string) =>
    (
      JSON.parse((await runner.run('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', dev])).stdout) as {
        state?: string;
        dst?: string;
      }[]
    ).filter((e) => e.dst || e.state === 'static').length;
  const sync = async (d: DesiredNodeNetwork) => {
    const rep = await new VRouter(runner, silentLogger()).sync(d);
    if (!rep.ok) throw new Error(`VRouter.sync failed: ${rep.failures[0]?.message}`);
    return rep;
  };
  const neighLines = (vx: string) =>
    `${eps.map((e) => `neigh replace ${e.ip} lladdr ${e.mac} dev ${vx} nud permanent`).join('\n')}\n`;
  const fdbLines = (vx: string) =>
    `${eps
      .flatMap((e) => [
        `fdb replace ${e.mac} dev ${vx} dst ${e.vtep} self permanent`,
        `fdb replace ${e.mac} dev ${vx} master static`,
      ])
      .join('\n')}\n`;
  const rawDevices = async (ns: string, vni: number) => {
    await runner.run('ip', ['netns', 'add', ns]);
    created.push(ns);
    await runner.run('ip', ['-n', nodeNs, '-batch', '-'], {
      input: `link add tvx${vni} netns ${ns} mtu 1450 type vxlan id ${vni} local 192.168.88.1 dev ul0 dstport 4789 nolearning proxy\n`,
    });
    await runner.run('ip', ['-n', ns, '-batch', '-'], {
      input: `link add tbr0 mtu 1450 type bridge\nlink set dev tbr0 up\nlink set dev tvx${vni} master tbr0 up\n`,
    });
  };
  const rawEntries = async (ns: string, vx: string) => {
    await runner.run('ip', ['-n', ns, '-batch', '-'], { input: neighLines(vx) });
    await runner.run('bridge', ['-n', ns, '-batch', '-'], { input: fdbLines(vx) });
  };

  try {
    await runner.run('ip', ['netns', 'add', nodeNs]);
    created.push(nodeNs);
    await runner.run('ip', ['-n', nodeNs, '-batch', '-'], {
      input:
        'link add ul0 type veth peer name ul1\naddr add 192.168.88.1/24 dev ul0\nlink set ul0 up\nlink set ul1 up\n',
    });

    for (let r = 0; r <= rounds; r++) {
      const base = 5000 + r * 10;
      const pFresh = `${id}f${r}`;
      const rawNs = `${id}-re${r}`;
      const pIncr = `${id}i${r}`;
      const fullNs = `${id}-rf${r}`;
      created.push(names.vnNetns(pFresh, base), names.vnNetns(pIncr, base + 2));
      let rep: Awaited<ReturnType<typeof sync>> | undefined;
      let vrFresh = 0;
      let rawE = 0;
      let vrIncr = 0;
      let rawF = 0;
      const steps: (() => Promise<void>)[] = [
        // vrouter_fresh
        async () => {
          vrFresh = await time(async () => {
            rep = await sync(desired(pFresh, base, eps));
          });
        },
        // raw_entries (devices made first, untimed)
        async () => {
          await rawDevices(rawNs, base + 1);
          rawE = await time(() => rawEntries(rawNs, `tvx${base + 1}`));
        },
        // vrouter_incr: the network exists (devices, no remote endpoints), then the endpoints arrive
        async () => {
          await sync(desired(pIncr, base + 2, []));
          vrIncr = await time(() => sync(desired(pIncr, base + 2, eps)));
        },
        // raw_full
        async () => {
          rawF = await time(async () => {
            await rawDevices(fullNs, base + 3);
            await rawEntries(fullNs, `tvx${base + 3}`);
          });
        },
      ];
      // Rotate the order every round, so background kernel work hits each method alike.
      for (let k = 0; k < steps.length; k++) await steps[(k + r) % steps.length]!();

      const counts = [
        await count(names.vnNetns(pFresh, base), names.vxlan(base)),
        await count(rawNs, `tvx${base + 1}`),
        await count(names.vnNetns(pIncr, base + 2), names.vxlan(base + 2)),
        await count(fullNs, `tvx${base + 3}`),
      ];
      if (counts.some((c) => c !== 2 * n))
        throw new Error(`forwarding entry counts differ: ${counts.join(', ')} (expected ${2 * n})`);
      if (r > 0) {
        t.vrFresh.push(vrFresh);
        t.rawEntries.push(rawE);
        t.vrIncr.push(vrIncr);
        t.rawFull.push(rawF);
      }
      console.log(
        `${r === 0 ? 'warm-up' : `round ${r}/${rounds}`}: vrouter_fresh ${vrFresh.toFixed(0)} ms ${JSON.stringify(rep?.timings)}, ` +
          `raw_entries ${rawE.toFixed(0)} ms, vrouter_incr ${vrIncr.toFixed(0)} ms, raw_full ${rawF.toFixed(0)} ms`,
      );
      for (const ns of created.splice(1))
        await runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
      await new Promise((res) => setTimeout(res, 3000));
    }
  } finally {
    for (const ns of created.reverse()) await runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
  }

  const entries = 3 * n;
  const rate = (ms: number) => Math.round(entries / (ms / 1000));
  const ratio = (a: number[], b: number[]) => Number(median(a.map((x, i) => x / b[i]!)).toFixed(3));
  const result = {
    endpoints: n,
    entries,
    rounds,
    vrouter_fresh_ms: Math.round(median(t.vrFresh)),
    raw_entries_ms: Math.round(median(t.rawEntries)),
    vrouter_incr_ms: Math.round(median(t.vrIncr)),
    raw_full_ms: Math.round(median(t.rawFull)),
    vrouter_fresh_entries_per_s: rate(median(t.vrFresh)),
    raw_entries_per_s: rate(median(t.rawEntries)),
    vrouter_incr_entries_per_s: rate(median(t.vrIncr)),
    ratio: ratio(t.rawEntries, t.vrFresh),
    ratio_best_of: Number((Math.min(...t.rawEntries) / Math.min(...t.vrFresh)).toFixed(3)),
    ratio_incremental: ratio(t.rawEntries, t.vrIncr),
    ratio_full: ratio(t.rawFull, t.vrFresh),
    goal_ratio: 0.7,
  };
  console.log(
    `vrouter-program: ${n} remote endpoints = ${entries} kernel entries, median of ${rounds} rounds\n` +
      `  VRouter.sync, fresh namespace (observe+plan+devices+entries): ${result.vrouter_fresh_ms} ms = ${result.vrouter_fresh_entries_per_s} entries/s\n` +
      `  raw ip -batch + bridge -batch, entries only:                  ${result.raw_entries_ms} ms = ${result.raw_entries_per_s} entries/s\n` +
      `  ratio raw/VRouter: ${result.ratio} (best-of ${result.ratio_best_of}; goal >= 0.7)\n` +
      `  VRouter.sync into an existing network: ${result.vrouter_incr_ms} ms = ${result.vrouter_incr_entries_per_s} entries/s, ratio ${result.ratio_incremental}\n` +
      `  raw incl. namespace + devices: ${result.raw_full_ms} ms, ratio vs fresh VRouter.sync ${result.ratio_full}`,
  );
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
