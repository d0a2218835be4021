import { Registry } from 'prom-client';
import { type HostFs, RootedHostFs } from '../kernel/hw/hostfs.js';
import type { CommandRunner } from '../lib/exec.js';
import { lazyCounter, lazyGauge, type Sample, stateSet } from '../lib/prom.js';
import type { NodeAgent } from './agent/daemon.js';
import type { SessionPhase } from './agent/session.js';
import type { GatewayNodeStatus } from './gateway/consumer.js';
import type { NodeNetworking } from './networking.js';
import type { SiteProxyStatus } from './proxy/proxy.js';
import type { ShellDropCounts } from './proxy/shell-relay.js';
import { readProfileState, readProfileVfs } from './support/host-state.js';
import { type TrafficReader, trafficReader } from './traffic.js';

/**
 * The node's `tether_node_*` families (docs/observability.md). Everything is read at scrape
 * time: kernel link counters with one `ip -s -j link` per network namespace, nft counters
 * through the vRouter's own read-back. Labels are network, peer and policy names from the
 * node's slice (intent an admin wrote, bounded by the slice limits), never peer reports.
 */

const PHASES: readonly SessionPhase[] = [
  'connecting',
  'syncing',
  'connected',
  'disconnected',
  'revoked',
  'stopped',
];

/** The relay's counters by their metric label. */
const SHELL_DROP_REASONS: ReadonlyArray<readonly [keyof ShellDropCounts, string]> = [
  ['bad', 'bad'],
  ['notOwner', 'not_owner'],
  ['notAttached', 'not_attached'],
  ['notAllowed', 'not_allowed'],
];

export { type LinkCounters, MAX_LINK_JSON_BYTES, parseLinkStats } from './traffic.js';

export interface NodeMetricsSources {
  agent: NodeAgent;
  networking: NodeNetworking | undefined;
  runner: CommandRunner;
  gateway: () => GatewayNodeStatus | undefined;
  /** undefined: --proxy off. */
  proxy: (() => SiteProxyStatus | undefined) | undefined;
  version?: string;
  /** The host the profile's VFs and reboot state are read from (default the real `/`). */
  host?: HostFs;
  /** Shared with the control API; made here when absent. */
  traffic?: TrafficReader;
}

type Dir = 'rxBytes' | 'rxPackets' | 'txBytes' | 'txPackets';

export function nodeMetrics(src: NodeMetricsSources): Registry {
  const reg = new Registry();
  const { agent } = src;
  const status = () => agent.statusSnapshot();

  lazyGauge(reg, 'tether_node_info', 'Always 1; labels name this node', ['node', 'site', 'version'], () => [
    [{ node: agent.identity.name, site: agent.identity.site, version: src.version ?? 'unknown' }, 1],
  ]);
  lazyGauge(
    reg,
    'tether_node_session_state',
    'Upstream session phase (1 for the current one)',
    ['state'],
    () => stateSet(PHASES, status().session.phase),
  );
  lazyCounter(
    reg,
    'tether_node_session_reconnects_total',
    'Upstream session reconnects since start',
    [],
    () => [[{}, status().session.reconnects]],
  );
  lazyGauge(reg, 'tether_node_revision', 'Revision of the slice held on disk', [], () => [
    [{}, agent.cache.revision],
  ]);
  lazyCounter(reg, 'tether_node_reconcile_runs_total', 'Completed reconcile passes', [], () => [
    [{}, agent.loop.passes],
  ]);
  lazyCounter(
    reg,
    'tether_node_reconcile_errors_total',
    'Reconcile passes that left a consumer failing',
    [],
    () => [[{}, agent.loop.failedPasses]],
  );
  lazyGauge(
    reg,
    'tether_node_reconcile_last_duration_seconds',
    'How long the last completed reconcile pass took',
    [],
    () => [[{}, agent.loop.lastDurationMs / 1000]],
  );
  lazyGauge(reg, 'tether_node_healthy', '1 when the reconcile loop reports nothing failing', [], () => [
    [{}, agent.health().ok ? 1 : 0],
  ]);
  lazyGauge(
    reg,
    'tether_node_cert_expiry_timestamp_seconds',
    "Unix time the node's current certificate expires",
    [],
    () => {
      const t = Date.parse(status().certNotAfter);
      return Number.isFinite(t) ? [[{}, t / 1000]] : [];
    },
  );
  lazyGauge(
    reg,
    'tether_node_proxy_role',
    'Site proxy role of this node (1 for the current one)',
    ['role'],
    () => {
      const p = src.proxy?.();
      return stateSet(
        ['active', 'standby', 'off'] as const,
        !src.proxy ? 'off' : p?.active ? 'active' : 'standby',
        'role',
      );
    },
  );
  // The site proxy's relay of remote shells (src/node/proxy/shell-relay.ts, docs/shell.md).
  lazyGauge(
    reg,
    'tether_node_proxy_shells',
    "Remote shells relayed now through this node as its site's proxy (0 unless active)",
    [],
    () => [[{}, src.proxy?.()?.shells.open ?? 0]],
  );
  lazyCounter(
    reg,
    'tether_node_proxy_shells_dropped_total',
    'Shell frames the site proxy dropped since start, by reason (bad, not_owner, not_attached, not_allowed; none with --proxy off)',
    ['reason'],
    () => {
      const d = src.proxy?.()?.shells.dropped;
      return d ? SHELL_DROP_REASONS.map(([k, reason]) => [{ reason }, d[k]] as const) : [];
    },
  );
  lazyGauge(
    reg,
    'tether_node_gateway_role',
    'Local gateway HA role (no samples without a Gateway)',
    ['role'],
    () => {
      const g = src.gateway();
      return g ? stateSet(['active', 'standby'] as const, g.role, 'role') : [];
    },
  );
  lazyCounter(
    reg,
    'tether_node_gateway_ha_heartbeats_total',
    'Gateway HA heartbeats received: accepted, or dropped with the reason (unknown-key, bad-signature, replay, …)',
    ['result'],
    () => {
      const h = src.gateway()?.heartbeats;
      if (!h) return [];
      return [
        [{ result: 'accepted' }, h.accepted] as const,
        ...Object.entries(h.dropped).map(([reason, n]) => [{ result: reason }, n] as const),
      ];
    },
  );
  lazyGauge(
    reg,
    'tether_node_bgp_peer_up',
    '1 while the BGP session to the peer is Established',
    ['peer'],
    () =>
      Object.entries(src.gateway()?.peers ?? {}).map(
        ([peer, p]) => [{ peer }, p.bgpState === 'Established' ? 1 : 0] as const,
      ),
  );
  // Both sessions measure from heartbeat echoes (src/lib/rtt.ts): `agent` is this node's own
  // session to its upstream (the controller, or its site's proxy), `proxy_wan` the site
  // proxy's WAN session to the controller (on the active proxy only).
  const rtts = () => {
    const out: Array<[{ session: string }, { srttMs: number; offsetMs?: number }]> = [];
    const a = status().session.rtt;
    if (a) out.push([{ session: 'agent' }, a]);
    const w = src.proxy?.()?.wan?.rtt;
    if (w && src.proxy?.()?.active) out.push([{ session: 'proxy_wan' }, w]);
    return out;
  };
  lazyGauge(
    reg,
    'tether_node_wan_rtt_seconds',
    'Smoothed heartbeat round trip to the upstream (session=agent) or, on the active site proxy, to the controller (session=proxy_wan)',
    ['session'],
    () => rtts().map(([l, r]) => [l, r.srttMs / 1000] as const),
  );
  lazyGauge(
    reg,
    'tether_node_clock_offset_seconds',
    "Upstream clock minus this node's clock, from heartbeat echoes (error up to half the round trip)",
    ['session'],
    () => rtts().flatMap(([l, r]) => (r.offsetMs === undefined ? [] : [[l, r.offsetMs / 1000] as const])),
  );
  // The profile's SR-IOV VFs and reboot state, read back from sysfs and Tether's profile files
  // at scrape time (src/node/support/host-state.ts, as `tether status` shows them).
  const host = src.host ?? new RootedHostFs('/');
  lazyGauge(
    reg,
    'tether_node_sriov_vfs',
    'SR-IOV VFs present on each PF the applied profile configured (sriov_numvfs)',
    ['pf'],
    async () => (await readProfileVfs(host).catch(() => [])).map((v) => [{ pf: v.pf }, v.numVfs] as const),
  );
  lazyGauge(
    reg,
    'tether_node_profile_reboot_pending',
    "1 while the profile's boot configuration waits for a reboot",
    [],
    async () => {
      const st = await readProfileState(host).catch(() => undefined);
      return [[{}, st?.state === 'awaiting-reboot' ? 1 : 0]];
    },
  );
  lazyGauge(reg, 'tether_node_networks', 'Virtual networks programmed on this node', [], () => [
    [{}, src.networking?.planned()?.networks.length ?? 0],
  ]);

  // One read of every network's links per scrape, shared by the four families below (and,
  // through the same reader, with the control API's /v1/traffic).
  const traffic = src.traffic ?? trafficReader(src.networking, src.runner);
  const links = () => traffic.links();
  const family = (name: string, help: string, dir: Dir) =>
    lazyCounter(reg, name, help, ['network', 'link'], async () =>
      (await links()).map(
        (l): Sample<'network' | 'link'> => [{ network: l.network, link: l.link }, l.c[dir]],
      ),
    );
  const what =
    '(link: vxlan = overlay to other nodes, bridge = all traffic of the network here; kernel counters)';
  family('tether_node_network_receive_bytes_total', `Bytes received per network ${what}`, 'rxBytes');
  family('tether_node_network_transmit_bytes_total', `Bytes sent per network ${what}`, 'txBytes');
  family('tether_node_network_receive_packets_total', `Packets received per network ${what}`, 'rxPackets');
  family('tether_node_network_transmit_packets_total', `Packets sent per network ${what}`, 'txPackets');
  lazyCounter(
    reg,
    'tether_node_policy_dropped_packets_total',
    "Packets dropped by a network's default-deny policy rule (nft counter)",
    ['network'],
    async () => {
      const cs = await traffic.policy();
      return cs
        .filter((c) => c.rule === '(default)')
        .map((c) => [{ network: c.network }, c.packets] as const);
    },
  );
  return reg;
}
