import { Registry } from 'prom-client';
import type { CommandRunner } from '../lib/exec.js';
import { lazyCounter, lazyGauge, type Sample, stateSet } from '../lib/prom.js';
import type { NodeAgent } from './agent/daemon.js';
import type { SessionPhase } from './agent/session.js';
import type { GatewayNodeStatus } from './gateway/consumer.js';
import type { NodeNetworking } from './networking.js';
import type { SiteProxyStatus } from './proxy/proxy.js';
import { names } from './vrouter/model.js';

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
/** Largest `ip -s -j link` answer looked at; a network namespace holds a handful of links. */
export const MAX_LINK_JSON_BYTES = 1024 * 1024;
const IP_TIMEOUT_MS = 5000;

export interface LinkCounters {
  ifname: string;
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}

/** `ip -s -j link show` output → counters per link; anything malformed is skipped, not thrown. */
export function parseLinkStats(text: string): LinkCounters[] {
  if (text.length > MAX_LINK_JSON_BYTES) return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(v)) return [];
  const out: LinkCounters[] = [];
  for (const l of v.slice(0, 256)) {
    if (typeof l !== 'object' || l === null) continue;
    const o = l as {
      ifname?: unknown;
      stats64?: { rx?: Record<string, unknown>; tx?: Record<string, unknown> };
    };
    if (typeof o.ifname !== 'string' || typeof o.stats64 !== 'object' || o.stats64 === null) continue;
    out.push({
      ifname: o.ifname.slice(0, 15),
      rxBytes: count(o.stats64.rx?.bytes),
      rxPackets: count(o.stats64.rx?.packets),
      txBytes: count(o.stats64.tx?.bytes),
      txPackets: count(o.stats64.tx?.packets),
    });
  }
  return out;
}

export interface NodeMetricsSources {
  agent: NodeAgent;
  networking: NodeNetworking | undefined;
  runner: CommandRunner;
  gateway: () => GatewayNodeStatus | undefined;
  /** undefined: --proxy off. */
  proxy: (() => SiteProxyStatus | undefined) | undefined;
  version?: string;
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
  lazyGauge(reg, 'tether_node_networks', 'Virtual networks programmed on this node', [], () => [
    [{}, src.networking?.planned()?.networks.length ?? 0],
  ]);

  // One read of every network's links per scrape, shared by the four families below.
  let linkRead:
    | { at: number; p: Promise<Array<{ network: string; link: string; c: LinkCounters }>> }
    | undefined;
  const links = () => {
    const now = performance.now();
    if (!linkRead || now - linkRead.at > 500) linkRead = { at: now, p: readLinks() };
    return linkRead.p;
  };
  const readLinks = async () => {
    const d = src.networking?.planned();
    if (!d) return [];
    const per = await Promise.all(
      d.networks.map(async (n) => {
        const r = await src.runner
          .run('ip', ['-n', names.vnNetns(d.netnsPrefix, n.vni), '-s', '-j', 'link', 'show'], {
            allowFailure: true,
            timeoutMs: IP_TIMEOUT_MS,
          })
          .catch(() => undefined);
        if (r?.code !== 0) return [];
        const want = new Map([
          [names.vxlan(n.vni), 'vxlan'],
          [names.bridge, 'bridge'],
        ]);
        return parseLinkStats(r.stdout)
          .filter((c) => want.has(c.ifname))
          .map((c) => ({ network: n.name, link: want.get(c.ifname) as string, c }));
      }),
    );
    return per.flat();
  };
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
      const cs = (await src.networking?.counters().catch(() => [])) ?? [];
      return cs
        .filter((c) => c.rule === '(default)')
        .map((c) => [{ network: c.network }, c.packets] as const);
    },
  );
  return reg;
}
