/**
 * The cross-node floating IP path, measured: from the site router's side through a floating
 * IP to a workload on ANOTHER node (DNAT on the gateway node G, VXLAN to the endpoint's node
 * E, the return path on E by G's MAC: docs/gateway.md "Floating IPs on another node"),
 * against, in the same run and interleaved in every round (order rotating):
 * - local: a floating IP whose workload is on G itself (DNAT in G's network namespace, no
 *   VXLAN);
 * - hand-built: the same path by hand on the same two nodes: nft DNAT in G's node namespace,
 *   a plain bridge + VXLAN (nolearning, static FDB, MTU 1450, Tether's UDP port so it shares
 *   its VXLAN socket and notrack rule) to E, E routing the frames addressed to its bridge to
 *   the workload and its replies back to G by policy routing (`ip rule from W lookup`, a
 *   default route via a next hop whose static neighbour is G's bridge MAC), redirects off.
 * Both Tether nodes run the vRouter and GatewayConsumer as `tether node run` composes them
 * (plan from the slice, read-back, apply), as test/integration/gateway/fip-remote.test.ts.
 * Reported: iperf3 TCP throughput and ping RTT per path, and the median of per-round ratios
 * (remote / hand-built, remote / local).
 *
 * Needs root, iperf3, bird. `npx tsx test/bench/gateway-fip-remote.ts` or `npm run bench`
 * (BENCH_ONLY=gateway-fip-remote; BENCH_FIPX_ROUNDS, default 5; BENCH_FIPX_SECONDS, default 5).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TetherObject } from '../../src/api/resource.js';
import { IprouteKernel } from '../../src/kernel/iproute2.js';
import { ProcessRunner } from '../../src/lib/exec.js';
import { silentLogger } from '../../src/lib/log.js';
import type { DurableState } from '../../src/node/agent/session.js';
import { GatewayConsumer } from '../../src/node/gateway/consumer.js';
import { withFipReturns } from '../../src/node/gateway/model.js';
import { VRouter } from '../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, names } from '../../src/node/vrouter/model.js';
import { network, OVERLAY_MTU, UNDERLAY_MTU } from '../integration/vrouter/topo.js';
import { NetnsSet } from '../support/netns.js';
import { sleep } from './support/proc.js';

type Result = Record<string, number | string>;
type Path = 'remote' | 'local' | 'hand';
const ROUNDS = Number(process.env.BENCH_FIPX_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_FIPX_SECONDS ?? 5);
const VNI = 740;
const FIP: Record<Path, string> = { remote: '203.0.113.5', local: '203.0.113.6', hand: '203.0.113.7' };
const RTR_IP = '10.95.0.1';
const UPLINK = '10.95.0.2';
const VTEP = { g: '192.168.95.1', e: '192.168.95.2' };
const HAND = {
  vni: 4243,
  workloadIp: '10.2.0.50',
  workloadMac: '02:78:00:00:00:50',
  /** E's bridge: the hand workload's gateway, and the next hop G routes it through. */
  eMac: '02:78:00:00:00:01',
  eIp: '10.2.0.1',
  eNextHop: '169.254.117.2',
  /** G's bridge: where E's policy route sends the replies. */
  gMac: '02:78:00:00:00:fe',
  gNextHop: '169.254.117.254',
};

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r3 = (x: number) => +x.toFixed(3);

const obj = (kind: string, name: string, spec: Record<string, unknown>, status?: object): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});

export async function run(): Promise<Result> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root for network namespaces' };
  for (const bin of ['iperf3', 'bird'])
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return { skipped: `${bin} not installed` };
  const topo = new NetnsSet('fr');
  const [rtr, g, e, wE, wG, wH] = ['rtr', 'g', 'e', 'we', 'wg', 'wh'].map((r) => topo.name(r)) as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipx-'));
  const ip = (...a: string[]) => execFileSync('ip', a);
  const sh = (ns: string, cmd: string, args: string[], input?: string) =>
    execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
      encoding: 'utf8',
      ...(input ? { input } : {}),
    });
  const plans: DesiredNodeNetwork[] = [];
  const consumers: GatewayConsumer[] = [];
  const servers: ChildProcess[] = [];
  try {
    await topo.add('rtr', 'g', 'e', 'we', 'wg', 'wh');
    await topo.veth(
      { ns: g, ifname: 'up0', addrs: [`${UPLINK}/24`] },
      { ns: rtr, ifname: 'dn0', addrs: [`${RTR_IP}/24`] },
    );
    await topo.veth(
      { ns: g, ifname: 'ul0', addrs: [`${VTEP.g}/24`] },
      { ns: e, ifname: 'ul0', addrs: [`${VTEP.e}/24`] },
    );
    ip('-n', rtr, 'route', 'add', '203.0.113.0/28', 'via', UPLINK);
    // Workloads as a CNI plugin attaches them: host end left in the node's namespace.
    const workload = (nodeNs: string, ns: string, host: string, addr: string, gw: string, mac: string) => {
      ip(
        '-n',
        nodeNs,
        'link',
        'add',
        host,
        'mtu',
        String(OVERLAY_MTU),
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        ns,
      );
      ip('-n', ns, 'link', 'set', 'eth0', 'address', mac, 'mtu', String(OVERLAY_MTU), 'up');
      ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
      ip('-n', ns, 'route', 'add', 'default', 'via', gw);
    };
    const we = { id: wE, ip: '10.1.0.50', mac: '02:00:0a:01:00:32', labels: {} };
    const wg = { id: wG, ip: '10.1.0.60', mac: '02:00:0a:01:00:3c', labels: {} };
    workload(e, wE, 'wl0', we.ip, '10.1.0.1', we.mac);
    workload(g, wG, 'wl0', wg.ip, '10.1.0.1', wg.mac);

    // Tether: the slice both nodes hold, each node's vRouter plan, its gateway consumer.
    const slice: TetherObject[] = [
      obj('Site', 's1', {}),
      obj('Gateway', 'gw', {
        site: 's1',
        nodes: ['node-g'],
        localAsn: 65001,
        pool: ['203.0.113.0/28'],
        peers: [{ name: 'rtr', address: RTR_IP, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
        announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
        gracefulRestartSeconds: 120,
      }),
      obj('Node', 'node-g', { site: 's1' }, { vtep: VTEP.g }),
      obj('Node', 'node-e', { site: 's1' }, { vtep: VTEP.e }),
      obj('Endpoint', 'node-e.w', {
        network: 'red',
        node: 'node-e',
        site: 's1',
        mac: we.mac,
        ip: we.ip,
        vtep: VTEP.e,
      }),
      obj('Endpoint', 'node-g.w', {
        network: 'red',
        node: 'node-g',
        site: 's1',
        mac: wg.mac,
        ip: wg.ip,
        vtep: VTEP.g,
      }),
      obj('FloatingIP', 'remote', {
        gateway: 'gw',
        address: FIP.remote,
        network: 'red',
        target: { endpoint: 'node-e.w' },
      }),
      obj('FloatingIP', 'local', {
        gateway: 'gw',
        address: FIP.local,
        network: 'red',
        target: { endpoint: 'node-g.w' },
      }),
    ];
    const state: DurableState = {
      revision: 1,
      snapshotRevision: 1,
      list: (kind?: string) => (kind ? slice.filter((o) => o.kind === kind) : slice),
      get: (kind: string, name: string) => slice.find((o) => o.kind === kind && o.metadata.name === name),
      applyDelta: () => {},
      replace: () => ({ swept: 0 }),
    };
    for (const [n, ns] of [
      ['g', g],
      ['e', e],
    ] as const) {
      const red = network('red', VNI, { breakout: n === 'g' });
      const [mine, other] = n === 'g' ? [wg, we] : [we, wg];
      red.localEndpoints = [{ ...mine, hostIfname: 'wl0' }];
      red.remoteEndpoints = [{ ...other, vtep: n === 'g' ? VTEP.e : VTEP.g }];
      const planned = withFipReturns(
        {
          node: `node-${n}`,
          netnsPrefix: `${topo.id}${n}`,
          underlay: { ifname: 'ul0', vtepIp: VTEP[n], mtu: UNDERLAY_MTU, netns: ns },
          ...(n === 'g' ? { breakout: { uplinkIfname: 'up0' } } : {}),
          networks: [red],
        },
        `node-${n}`,
        's1',
        slice,
      );
      plans.push(planned.desired);
      const r = await new VRouter(new ProcessRunner(), silentLogger()).sync(planned.desired);
      if (!r.ok) throw new Error(`vRouter of ${n}: ${JSON.stringify(r.failures)}`);
      const c = new GatewayConsumer({
        node: `node-${n}`,
        site: 's1',
        vtep: VTEP[n],
        stateDir: join(dir, n),
        kernel: new IprouteKernel(new ProcessRunner()),
        log: silentLogger(),
        nodeNetns: ns,
        network: () => planned.desired,
        localEndpoints: () => slice.filter((o) => o.kind === 'Endpoint' && o.metadata.name === `node-${n}.w`),
        fipReturns: () => planned.returns,
      });
      consumers.push(c);
      // G's BIRD has no router to peer with here (not measured): only the dataplane counts.
      await c.apply(state);
    }

    // Hand-built: bridge + VXLAN on both nodes, DNAT on G, policy routing on E.
    for (const [ns, local, mac, peerMac, peerVtep] of [
      [g, VTEP.g, HAND.gMac, HAND.eMac, VTEP.e],
      [e, VTEP.e, HAND.eMac, HAND.gMac, VTEP.g],
    ] as const) {
      const mtu = String(OVERLAY_MTU);
      ip('-n', ns, 'link', 'add', 'hbr0', 'address', mac, 'mtu', mtu, 'type', 'bridge');
      ip(
        '-n',
        ns,
        'link',
        'add',
        'hvx0',
        'mtu',
        mtu,
        'type',
        'vxlan',
        'id',
        String(HAND.vni),
        'local',
        local,
        'dev',
        'ul0',
        'dstport',
        '4789',
        'nolearning',
      );
      ip('-n', ns, 'link', 'set', 'hvx0', 'master', 'hbr0', 'up');
      ip('-n', ns, 'link', 'set', 'hbr0', 'up');
      execFileSync('bridge', [
        '-n',
        ns,
        'fdb',
        'add',
        peerMac,
        'dev',
        'hvx0',
        'dst',
        peerVtep,
        'self',
        'permanent',
      ]);
      execFileSync('bridge', ['-n', ns, 'fdb', 'add', peerMac, 'dev', 'hvx0', 'master', 'static']);
      sh(ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    }
    // G: DNAT of the floating IP, the workload routed through E's bridge MAC.
    ip('-n', g, 'addr', 'add', `${HAND.gNextHop}/24`, 'dev', 'hbr0');
    ip('-n', g, 'neigh', 'replace', HAND.eNextHop, 'lladdr', HAND.eMac, 'dev', 'hbr0', 'nud', 'permanent');
    ip('-n', g, 'route', 'add', `${HAND.workloadIp}/32`, 'via', HAND.eNextHop, 'dev', 'hbr0', 'onlink');
    sh(
      g,
      'nft',
      ['-f', '-'],
      `table ip fipx_hand { chain pre { type nat hook prerouting priority dstnat; policy accept; ip daddr ${FIP.hand} dnat to ${HAND.workloadIp}; }; }\n`,
    );
    // E: the workload's gateway on its bridge; its replies back to G by policy routing.
    workload(e, wH, 'hw0', HAND.workloadIp, HAND.eIp, HAND.workloadMac);
    ip('-n', e, 'link', 'set', 'hw0', 'master', 'hbr0', 'up');
    ip('-n', e, 'addr', 'add', `${HAND.eIp}/24`, 'dev', 'hbr0');
    ip('-n', e, 'addr', 'add', `${HAND.eNextHop}/24`, 'dev', 'hbr0');
    ip(
      '-n',
      e,
      'neigh',
      'replace',
      HAND.workloadIp,
      'lladdr',
      HAND.workloadMac,
      'dev',
      'hbr0',
      'nud',
      'permanent',
    );
    ip('-n', e, 'neigh', 'replace', HAND.gNextHop, 'lladdr', HAND.gMac, 'dev', 'hbr0', 'nud', 'permanent');
    ip('-n', e, 'rule', 'add', 'from', HAND.workloadIp, 'lookup', '7500', 'priority', '7500');
    ip('-n', e, 'route', 'add', 'default', 'via', HAND.gNextHop, 'dev', 'hbr0', 'onlink', 'table', '7500');
    for (const k of ['all', 'hbr0']) sh(e, 'sysctl', ['-q', '-w', `net.ipv4.conf.${k}.send_redirects=0`]);

    const serverNs: Record<Path, string> = { remote: wE, local: wG, hand: wH };
    // Every path answers before anything is measured.
    for (const p of ['remote', 'local', 'hand'] as const) {
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        ok = spawnSync('ip', ['netns', 'exec', rtr, 'ping', '-c', '1', '-W', '1', FIP[p]]).status === 0;
        if (!ok) await sleep(200);
      }
      if (!ok) throw new Error(`${p} path (${FIP[p]}) does not answer a ping`);
    }

    const iperf = async (p: Path): Promise<number> => {
      const s = spawn('ip', ['netns', 'exec', serverNs[p], 'iperf3', '-s', '-1'], { stdio: 'ignore' });
      servers.push(s);
      for (let i = 0; ; i++) {
        if (sh(serverNs[p], 'ss', ['-Hltn', 'sport = :5201']).trim()) break;
        if (i > 100) throw new Error(`iperf3 server for ${p} did not listen`);
        await sleep(100);
      }
      const out = sh(rtr, 'iperf3', ['-c', FIP[p], '-t', String(SECONDS), '-J']);
      await new Promise<void>((r) => (s.exitCode !== null ? r() : s.once('close', () => r())));
      const j = JSON.parse(out) as { end?: { sum_received?: { bits_per_second?: number } } };
      return (j.end?.sum_received?.bits_per_second ?? Number.NaN) / 1e9;
    };
    // ping's own average over 500 echoes 2 ms apart (a request/response latency, µs).
    const rtt = (p: Path): number => {
      const out = sh(rtr, 'ping', ['-q', '-n', '-c', '500', '-i', '0.002', FIP[p]]);
      const m = /= [\d.]+\/([\d.]+)\//.exec(out);
      return m ? Math.round(Number(m[1]) * 1000) : Number.NaN;
    };

    const paths: Path[] = ['remote', 'local', 'hand'];
    const gbps: Record<Path, number[]> = { remote: [], local: [], hand: [] };
    const us: Record<Path, number[]> = { remote: [], local: [], hand: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const p of order) gbps[p].push(await iperf(p));
      for (const p of order) us[p].push(rtt(p));
    }
    const ratio = (x: number[], y: number[]) => x.map((v, i) => v / (y[i] ?? Number.NaN));
    const out: Result = {
      rounds: ROUNDS,
      seconds_per_iperf: SECONDS,
      mtu: `underlay ${UNDERLAY_MTU}, overlay ${OVERLAY_MTU}`,
    };
    for (const p of paths) {
      out[`${p} TCP Gbit/s (median)`] = +median(gbps[p]).toFixed(2);
      out[`${p} ping RTT us (median of avg)`] = median(us[p]);
    }
    const tHand = median(ratio(gbps.remote, gbps.hand));
    out['remote / hand-built TCP, median of per-round ratios'] = `${r3(tHand)} hand-built`;
    out['remote / local TCP, median of per-round ratios'] = r3(median(ratio(gbps.remote, gbps.local)));
    out['remote / hand-built RTT, median of per-round ratios'] =
      `${r3(median(ratio(us.remote, us.hand)))} hand-built`;
    out['remote / local RTT, median of per-round ratios'] = r3(median(ratio(us.remote, us.local)));
    out.gbps_runs = JSON.stringify(
      Object.fromEntries(paths.map((p) => [p, gbps[p].map((x) => +x.toFixed(2))])),
    );
    out.rtt_us_runs = JSON.stringify(us);
    return out;
  } finally {
    for (const s of servers) if (s.exitCode === null) s.kill('SIGKILL');
    for (const c of consumers) await c.stop().catch(() => undefined);
    for (const d of plans) {
      await new VRouter(new ProcessRunner(), silentLogger()).teardown(d).catch(() => undefined);
      for (const n of d.networks)
        try {
          execFileSync('ip', ['netns', 'del', names.vnNetns(d.netnsPrefix, n.vni)], { stdio: 'ignore' });
        } catch {}
    }
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
