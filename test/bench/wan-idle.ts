/**
 * Benchmark: WAN bytes per site per hour when idle (issue 8; goal ≤ 45 KB/h, 0.1 kbit/s).
 *
 * In one run, two labs of 1 site × 2 nodes, no workloads, one after the other:
 *   proxy   the default: the site's proxy holds the site's one WAN session, at the production
 *           `--wan-heartbeat 30s` (the lab's default is 1 s);
 *   direct  the baseline, `--proxy off`: every node holds its own WAN session.
 * Both at the production `--heartbeat 5s` (node ↔ its upstream: the proxy on the LAN, or the
 * controller across the WAN).
 * Each lab is brought up, every session is waited for (the expected number of connections at
 * the site's impairment proxy and every node connected through the expected upstream), then a
 * settle period, then a measurement window in which the site's controller traffic is counted
 * twice: by nft counters in the WAN router namespace on the site's port (IP packets: TCP/IP and
 * TLS framing, ACKs, everything) and by the impairment proxy's payload counters (TLS bytes the
 * TCP connections carried). Both are extrapolated to bytes per hour and kbit/s.
 *
 * Needs root. `npx tsx test/bench/wan-idle.ts` or `BENCH_ONLY=wan-idle npm run bench`.
 *   WAN_IDLE_WINDOW_S  measurement window per config (default 120)
 *   WAN_IDLE_SETTLE_S  wait after every session is up, before counting (default 40)
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { allNodes, defaultLabStateDir, Lab } from '../../src/lab/index.js';
import { stateFile } from '../../src/lab/state.js';
import { controlSocketPath, readLiveStatus } from '../../src/node/control-api.js';
import { waitFor } from '../integration/support/proc.js';

const GOAL_BYTES_PER_HOUR = 45_000;
// The production defaults of `node run` (the lab's own are 1 s each, for tests).
const WAN_HEARTBEAT_S = 30; // --wan-heartbeat: the site proxy ↔ controller
const HEARTBEAT_S = 5; // --heartbeat: a node ↔ its upstream (the controller itself when direct)
const COUNT_TABLE = 'tether_wanbench';

interface Counted {
  ipBytesUp: number;
  ipBytesDown: number;
  packets: number;
  payloadUp: number;
  payloadDown: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counters of the site's controller traffic at the WAN router: IP length of each packet. */
async function installCounters(lab: Lab, site: string): Promise<void> {
  const s = lab.plan.sites.find((x) => x.name === site);
  if (!s) throw new Error(`no site ${site}`);
  const c = lab.plan.central.ip;
  await lab.exec(lab.plan.wan.ns, 'nft', ['-f', '-'], {
    input:
      `table inet ${COUNT_TABLE} {\n  counter up {}\n  counter down {}\n` +
      `  chain forward {\n    type filter hook forward priority -10; policy accept;\n` +
      `    iifname "${s.wanPort}" ip daddr ${c} counter name "up"\n` +
      `    oifname "${s.wanPort}" ip saddr ${c} counter name "down"\n  }\n}\n`,
  });
}

async function readCounters(lab: Lab, site: string): Promise<Counted> {
  const r = await lab.exec(lab.plan.wan.ns, 'nft', ['-j', 'list', 'table', 'inet', COUNT_TABLE]);
  const out: Counted = { ipBytesUp: 0, ipBytesDown: 0, packets: 0, payloadUp: 0, payloadDown: 0 };
  for (const o of (
    JSON.parse(r.stdout) as {
      nftables: Array<{ counter?: { name: string; packets: number; bytes: number } }>;
    }
  ).nftables) {
    if (o.counter?.name === 'up') out.ipBytesUp = o.counter.bytes;
    if (o.counter?.name === 'down') out.ipBytesDown = o.counter.bytes;
    if (o.counter) out.packets += o.counter.packets;
  }
  const w = (await lab.wanStatus()).find((x) => x.site === site);
  out.payloadUp = w?.proxy.bytesToController ?? 0;
  out.payloadDown = w?.proxy.bytesFromController ?? 0;
  return out;
}

async function connectionsOpen(lab: Lab, site: string): Promise<number | undefined> {
  return (await lab.wanStatus()).find((x) => x.site === site)?.proxy.connectionsOpen;
}

/** Every node connected through the expected upstream, and the site's WAN connections as expected. */
async function waitSessions(lab: Lab, proxy: boolean): Promise<void> {
  const nodes = allNodes(lab.plan).map((n) => n.name);
  const want = proxy ? 1 : nodes.length;
  await waitFor(
    `${proxy ? 'the site proxy' : 'every node'} to hold the WAN session(s) (${want} connection(s))`,
    async () => {
      let active = 0;
      for (const n of nodes) {
        const st = await readLiveStatus(controlSocketPath(lab.node(n).stateDir), 1000).catch(() => undefined);
        if (st?.session.phase !== 'connected') return false;
        if (st.session.upstream?.kind !== (proxy ? 'proxy' : 'controller')) return false;
        if (st.proxy.role === 'active') {
          if (st.proxy.wan?.phase !== 'connected') return false;
          active++;
        }
      }
      if (active !== (proxy ? 1 : 0)) return false;
      return (await connectionsOpen(lab, 's1')) === want;
    },
    120_000,
    250,
  );
}

async function measure(
  proxy: boolean,
  settleS: number,
  windowS: number,
): Promise<Counted & { seconds: number; connections: number }> {
  const name = `w${randomBytes(2).toString('hex')}`;
  const stateDir = defaultLabStateDir(name);
  const lab = await Lab.up({
    name,
    sites: 1,
    nodesPerSite: 2,
    workloadsPerNode: 0,
    stateDir,
    wanHeartbeatSeconds: WAN_HEARTBEAT_S,
    heartbeatSeconds: HEARTBEAT_S,
    proxy,
  }).catch(async (e: unknown) => {
    // A failed `up` leaves what it built for inspection; a benchmark removes it.
    if (existsSync(stateFile(stateDir)))
      await Lab.open(stateDir)
        .down()
        .catch(() => undefined);
    throw e;
  });
  try {
    // The nodes really run the production intervals and the wanted proxy mode.
    for (const p of lab.state.processes.filter((x) => x.role === 'node')) {
      const flag = (f: string) => p.argv[p.argv.indexOf(f) + 1];
      if (
        flag('--heartbeat') !== `${HEARTBEAT_S}s` ||
        flag('--wan-heartbeat') !== `${WAN_HEARTBEAT_S}s` ||
        flag('--proxy') !== (proxy ? 'on' : 'off')
      )
        throw new Error(`node ${p.name} runs ${p.argv.join(' ')}`);
    }
    await waitSessions(lab, proxy);
    await installCounters(lab, 's1');
    await sleep(settleS * 1000);
    const a = await readCounters(lab, 's1');
    const t0 = process.hrtime.bigint();
    await sleep(windowS * 1000);
    const b = await readCounters(lab, 's1');
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    // Still the same sessions: a reconnect inside the window would have been measured as idle.
    const connections = (await connectionsOpen(lab, 's1')) ?? 0;
    return {
      seconds,
      connections,
      ipBytesUp: b.ipBytesUp - a.ipBytesUp,
      ipBytesDown: b.ipBytesDown - a.ipBytesDown,
      packets: b.packets - a.packets,
      payloadUp: b.payloadUp - a.payloadUp,
      payloadDown: b.payloadDown - a.payloadDown,
    };
  } finally {
    await lab.down();
  }
}

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root (network namespaces)' };
  const windowS = Number(process.env.WAN_IDLE_WINDOW_S ?? 120);
  const settleS = Number(process.env.WAN_IDLE_SETTLE_S ?? 40);
  const res: Record<string, number | string> = {
    site: '1 site × 2 nodes, idle (no workloads)',
    wan_heartbeat_s: WAN_HEARTBEAT_S,
    node_heartbeat_s: HEARTBEAT_S,
    settle_s: settleS,
    window_s: windowS,
    goal_bytes_per_site_hour: GOAL_BYTES_PER_HOUR,
  };
  for (const [label, proxy] of [
    ['proxy', true],
    ['direct', false],
  ] as const) {
    const m = await measure(proxy, settleS, windowS);
    const perHour = (x: number) => Math.round((x * 3600) / m.seconds);
    const ip = m.ipBytesUp + m.ipBytesDown;
    res[`${label}_wan_connections`] = m.connections;
    res[`${label}_ip_bytes_per_site_hour`] = perHour(ip);
    res[`${label}_ip_bytes_per_hour_up_down`] = `${perHour(m.ipBytesUp)} / ${perHour(m.ipBytesDown)}`;
    res[`${label}_kbit_s`] = Math.round(((ip * 8) / m.seconds / 1000) * 1000) / 1000;
    res[`${label}_packets_per_hour`] = perHour(m.packets);
    res[`${label}_payload_bytes_per_site_hour`] = perHour(m.payloadUp + m.payloadDown);
    if (label === 'proxy') res.proxy_meets_goal = perHour(ip) <= GOAL_BYTES_PER_HOUR ? 'yes' : 'no';
  }
  const p = res.proxy_ip_bytes_per_site_hour as number;
  const d = res.direct_ip_bytes_per_site_hour as number;
  res.direct_over_proxy = Math.round((d / Math.max(1, p)) * 10) / 10;
  return res;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(34)} ${v}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
