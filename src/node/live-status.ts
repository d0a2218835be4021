import type { TetherObject } from '../api/resource.js';
import type { NodeStatusFile } from './agent/daemon.js';
import type { EventRing, NodeLiveStatus } from './control-api.js';
import type { GatewayNodeStatus } from './gateway/consumer.js';
import type { SiteProxyStatus } from './proxy/proxy.js';
import type { DesiredNodeNetwork } from './vrouter/model.js';

/** Peers listed in the live status: a node programs a handful of sites, not thousands. */
export const MAX_VTEP_PEERS = 512;
const DEFAULT_VXLAN_PORT = 4789;

/** What the daemon knows at one moment, as plain values; `liveStatus` turns it into the
 *  control API's answer (a pure function, so it is tested without a daemon). */
export interface LiveStatusInput {
  agent: NodeStatusFile;
  version?: string;
  /** `undefined`: --proxy off (or no underlay address: the node cannot be a candidate). */
  proxy: SiteProxyStatus | undefined;
  slice: readonly TetherObject[];
  siteLocal: readonly TetherObject[];
  /** The node's own attached endpoints (empty with --no-vrouter). */
  local: readonly TetherObject[];
  counters: Record<string, number>;
  gateway?: GatewayNodeStatus;
  /** The vRouter's last plan (NodeNetworking.planned()). */
  planned?: DesiredNodeNetwork;
}

/** The VTEPs the plan sends VXLAN to, with the nodes and networks behind each. */
export function vtepStatus(d: DesiredNodeNetwork, slice: readonly TetherObject[]): NodeLiveStatus['vtep'] {
  // Node objects of the slice carry their VTEP (status.vtep) and site: the authoritative names.
  const byVtep = new Map<string, { node: string; site?: string }>();
  for (const o of slice) {
    if (o.kind !== 'Node') continue;
    const st = (o.status ?? {}) as { vtep?: unknown };
    const site = (o.spec as { site?: unknown } | undefined)?.site;
    if (typeof st.vtep === 'string' && st.vtep)
      byVtep.set(st.vtep, { node: o.metadata.name, ...(typeof site === 'string' ? { site } : {}) });
  }
  const peers = new Map<string, { vtep: string; node?: string; site?: string; networks: Set<string> }>();
  for (const n of d.networks) {
    for (const r of n.remoteEndpoints) {
      if (r.vtep === d.underlay.vtepIp) continue;
      let p = peers.get(r.vtep);
      if (!p) {
        if (peers.size >= MAX_VTEP_PEERS) continue;
        const known = byVtep.get(r.vtep);
        const fromId = r.id?.includes('.') ? r.id.slice(0, r.id.indexOf('.')) : undefined;
        const node = known?.node ?? fromId;
        p = {
          vtep: r.vtep,
          ...(node ? { node } : {}),
          ...(known?.site ? { site: known.site } : {}),
          networks: new Set(),
        };
        peers.set(r.vtep, p);
      }
      p.networks.add(n.name);
    }
  }
  return {
    ip: d.underlay.vtepIp,
    ifname: d.underlay.ifname,
    mtu: d.underlay.mtu,
    ...(d.underlay.netns ? { netns: d.underlay.netns } : {}),
    vxlanPort: d.underlay.vxlanPort ?? DEFAULT_VXLAN_PORT,
    peers: [...peers.values()]
      .map((p) => ({ ...p, networks: [...p.networks].sort() }))
      .sort((a, b) => (a.vtep < b.vtep ? -1 : a.vtep > b.vtep ? 1 : 0)),
  };
}

interface EndpointSpec {
  network?: unknown;
  ip?: unknown;
  mac?: unknown;
  node?: unknown;
}

function upstreamOf(s: string | undefined): NodeLiveStatus['session']['upstream'] {
  const m = s ? /^(controller|proxy) (\S+)(?: \((\S+)\))?$/.exec(s) : null;
  if (!m) return undefined;
  return { kind: m[1] as 'controller' | 'proxy', address: m[2]!, ...(m[3] ? { node: m[3] } : {}) };
}

export function liveStatus(i: LiveStatusInput): NodeLiveStatus {
  const a = i.agent;
  const endpoints: NodeLiveStatus['endpoints'] = [];
  const seen = new Set<string>();
  const add = (o: TetherObject, origin: 'local' | 'slice' | 'site-local') => {
    if (o.kind !== 'Endpoint' || seen.has(o.metadata.name)) return;
    seen.add(o.metadata.name);
    const s = (o.spec ?? {}) as EndpointSpec;
    endpoints.push({
      name: o.metadata.name,
      network: String(s.network ?? ''),
      ip: String(s.ip ?? ''),
      mac: String(s.mac ?? ''),
      node: String(s.node ?? ''),
      origin,
    });
  };
  // The same precedence as desired state: the node's own, then the slice, then SiteLocal.
  for (const o of i.local) add(o, 'local');
  for (const o of i.slice) add(o, 'slice');
  for (const o of i.siteLocal) add(o, 'site-local');
  const networks = i.slice
    .filter((o) => o.kind === 'VirtualNetwork')
    .map((vn) => {
      const vni = (vn.status as { vni?: unknown } | undefined)?.vni;
      const mine = endpoints.filter((e) => e.network === vn.metadata.name);
      return {
        name: vn.metadata.name,
        ...(typeof vni === 'number' ? { vni } : {}),
        localEndpoints: mine.filter((e) => e.origin === 'local').length,
        remoteEndpoints: mine.filter((e) => e.origin !== 'local').length,
      };
    });
  const p = i.proxy;
  const proxy: NodeLiveStatus['proxy'] = !p
    ? { role: 'off' }
    : {
        role: p.active ? 'active' : 'standby',
        ...(p.leader ? { activeNode: p.leader.node } : {}),
        ...(p.activeSince ? { since: p.activeSince } : {}),
        ...(p.active ? { agents: p.agents } : {}),
        ...(p.active && p.wan
          ? {
              wan: {
                phase: p.wan.up ? 'connected' : 'disconnected',
                since: p.wan.since,
                revision: p.wan.revision,
                ...(p.wan.rtt ? { rtt: p.wan.rtt } : {}),
              },
            }
          : {}),
        shells: { open: p.shells.open, dropped: { ...p.shells.dropped } },
      };
  const upstream = upstreamOf(a.session.upstream);
  // The node's own measurement of the WAN: the proxy's WAN session when it is the active
  // proxy, else its own session if that goes to the controller directly.
  const wan: NodeLiveStatus['wan'] =
    p?.active && p.wan?.rtt
      ? { via: 'proxy', rtt: p.wan.rtt }
      : upstream?.kind === 'controller' && a.session.rtt
        ? { via: 'session', rtt: a.session.rtt }
        : undefined;
  return {
    node: a.node,
    site: a.site,
    controller: a.controller,
    ...(a.controllers ? { controllers: a.controllers } : {}),
    pid: a.pid,
    startedAt: a.startedAt,
    ...(i.version ? { version: i.version } : {}),
    session: {
      phase: a.session.phase,
      since: a.session.since,
      ...(a.session.lastError ? { lastError: a.session.lastError } : {}),
      ...(upstream ? { upstream } : {}),
      ...(a.session.rtt ? { rtt: a.session.rtt } : {}),
    },
    ...(wan ? { wan } : {}),
    proxy,
    revision: a.cache.revision,
    snapshotRevision: a.cache.snapshotRevision,
    networks,
    endpoints,
    counters: {
      reconnects: a.session.reconnects,
      reconcilePasses: a.reconcile.passes,
      objects: a.cache.objects,
      siteLocalEndpoints: i.siteLocal.length,
      ...(p ? { proxySiteLocal: p.siteLocal, proxyRevision: p.revision } : {}),
      ...(p?.wan ? { proxyWanReconnects: p.wan.reconnects } : {}),
      ...i.counters,
    },
    health: {
      ok: a.health.ok,
      ...(a.health.state === 'degraded' ? { degraded: true } : {}),
      reasons: a.health.reasons,
    },
    certNotAfter: a.certNotAfter,
    ...(a.session.endpoints?.refused.length ? { refusedEndpoints: a.session.endpoints.refused } : {}),
    ...(i.gateway ? { gateway: i.gateway } : {}),
    ...(i.planned ? { vtep: vtepStatus(i.planned, i.slice) } : {}),
  };
}

/** Longest log line looked at: a line past it is not an event (the ring keeps short ones). */
const MAX_EVENT_LINE = 16 * 1024;

/**
 * A log line as an event of the ring: warnings, errors and lines that carry an `event` field
 * (drift_repaired, endpoint_refused, …). Cheap for the rest: only matching lines are parsed.
 */
export function eventFromLogLine(ring: EventRing, line: string): void {
  if (line.length > MAX_EVENT_LINE) return;
  const m = /"level":(\d+)/.exec(line);
  const level = Number(m?.[1] ?? 30);
  if (level < 40 && !line.includes('"event":')) return;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return;
  }
  const fields: Record<string, string | number | boolean> = {};
  for (const [k, x] of Object.entries(v)) {
    if (['level', 'time', 'pid', 'hostname', 'name', 'msg', 'event'].includes(k)) continue;
    if (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean') fields[k] = x;
    else if (x !== null && x !== undefined) fields[k] = JSON.stringify(x).slice(0, 256);
  }
  const type = typeof v.event === 'string' ? v.event : level >= 50 ? 'error' : 'warning';
  ring.push(type, String(v.msg ?? ''), fields);
}
