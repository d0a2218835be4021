import type { FloatingIPSpec, GatewaySpec } from '../../api/gateway-kinds.js';
import type { EndpointSpec, SiteSpec } from '../../api/kinds.js';
import type { TetherObject } from '../../api/resource.js';
import type { BirdConfig } from '../../bgp/render.js';
import type { KernelOp, NftTable } from '../../kernel/types.js';
import { parseIp } from '../../lib/ipv4.js';
import type { DesiredNodeNetwork, RemoteEndpoint } from '../vrouter/model.js';
import { names } from '../vrouter/model.js';

/**
 * The local gateway's desired state, as plain values: what BIRD announces (renderBirdConfig
 * input) and where each floating IP is bound. Pure; the manager applies it.
 */

/** Default LLGR stale time when the Site sets no autonomy budget: one day. */
export const DEFAULT_LLGR_STALE_SECONDS = 86_400;

export interface FipBinding {
  name: string;
  address: string;
  network: string;
  vni: number;
  /** The endpoint it maps to, and that endpoint's address in its network. */
  endpoint: string;
  ip: string;
  /** The node that hosts the endpoint: this node (a local port) or another (over VXLAN). */
  endpointNode: string;
}

export interface GatewayDesired {
  bird: BirdConfig;
  bindings: FipBinding[];
  /** Floating IPs that could not be bound here, with why (status). */
  unbound: { name: string; reason: string }[];
}

/**
 * LLGR stale time from the site's autonomy budget: the site router keeps the site's routes
 * as long as the site is allowed to run headless (and so keeps forwarding), not longer.
 */
export function llgrStaleSeconds(gw: GatewaySpec, site: SiteSpec | undefined): number {
  if (gw.llgrStaleSeconds !== undefined) return gw.llgrStaleSeconds;
  return Math.min(16_777_215, site?.autonomySeconds ?? DEFAULT_LLGR_STALE_SECONDS);
}

/**
 * The endpoint a floating IP maps to, as seen from gateway node `from`: among the site's
 * endpoints of its network that match its target, the one on `from` itself when there is
 * one (no VXLAN hop), else the first by name. With `Gateway.spec.nodes` absent (every node
 * of the site is a gateway node) only a local endpoint is taken: each node serves its own.
 */
export function selectEndpoint(
  fip: FloatingIPSpec,
  gw: GatewaySpec,
  endpoints: readonly TetherObject[],
  from: string,
): TetherObject | undefined {
  const matching = endpoints
    .filter((e) => {
      const es = e.spec as unknown as EndpointSpec;
      // This node's own endpoints are its site's; another node's must say it is there.
      if (es.network !== fip.network || (es.node !== from && es.site !== gw.site)) return false;
      if (fip.target.endpoint !== undefined) return e.metadata.name === fip.target.endpoint;
      return Object.entries(fip.target.matchLabels ?? {}).every(([k, v]) => es.labels?.[k] === v);
    })
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const local = matching.find((e) => (e.spec as unknown as EndpointSpec).node === from);
  if (local || !gw.nodes) return local;
  return matching[0];
}

export function desiredGateway(args: {
  node: string;
  vtep: string;
  gateway: TetherObject;
  site?: TetherObject;
  floatingIps: readonly TetherObject[];
  /** The site's endpoints (this node's own from its CNI registry, the others from the slice). */
  endpoints: readonly TetherObject[];
  /** VNI of each network present on this node. */
  vniOf: (network: string) => number | undefined;
}): GatewayDesired {
  const gw = args.gateway.spec as unknown as GatewaySpec;
  const bindings: FipBinding[] = [];
  const unbound: { name: string; reason: string }[] = [];
  for (const f of [...args.floatingIps].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const spec = f.spec as unknown as FloatingIPSpec;
    if (spec.gateway !== args.gateway.metadata.name) continue;
    const ep = selectEndpoint(spec, gw, args.endpoints, args.node);
    const vni = args.vniOf(spec.network);
    if (!ep)
      unbound.push({
        name: f.metadata.name,
        reason: gw.nodes ? 'no matching endpoint in the site' : 'no matching endpoint on this node',
      });
    else if (vni === undefined)
      unbound.push({ name: f.metadata.name, reason: `network ${spec.network} has no breakout here` });
    else {
      const es = ep.spec as unknown as EndpointSpec;
      bindings.push({
        name: f.metadata.name,
        address: spec.address,
        network: spec.network,
        vni,
        endpoint: ep.metadata.name,
        ip: es.ip,
        endpointNode: es.node,
      });
    }
  }
  const announce = [...gw.announce.prefixes];
  if (gw.announce.floatingIps) announce.push(...bindings.map((b) => `${b.address}/32`));
  return {
    bird: {
      routerId: gw.routerId ?? args.vtep,
      localAsn: gw.localAsn,
      peers: gw.peers.map((p) => ({
        name: p.name,
        address: p.address,
        asn: p.asn,
        holdSeconds: p.holdSeconds,
        keepaliveSeconds: p.keepaliveSeconds,
        ...(p.bfd?.enabled ? { bfd: { intervalMs: p.bfd.intervalMs, multiplier: p.bfd.multiplier } } : {}),
      })),
      announce,
      acceptDefaultRoute: gw.announce.acceptDefaultRoute,
      gracefulRestartSeconds: gw.gracefulRestartSeconds,
      llgrStaleSeconds: llgrStaleSeconds(gw, args.site?.spec as SiteSpec | undefined),
    },
    bindings,
    unbound,
  };
}

/** nft tables (family `ip` and `bridge`) of the floating IP dataplane, in a network's namespace. */
export const FIP_TABLE = 'tether_fip';

/**
 * Cross-node floating IPs (docs/gateway.md "Floating IPs on another node"). A gateway node
 * that DNATs towards an endpoint on another node marks those packets (`FIP_MARK_OUT`) and its
 * bridge writes its own inner source MAC (`fipMacFor(vtep)`) on them; the endpoint's node
 * recognises the gateway by that MAC, routes the frame itself (so its conntrack sees the
 * flow), marks the connection with the gateway's `mark`, and routes the flow's packets from
 * the workload by fwmark through the gateway's table to `nextHop`, which its VXLAN device
 * answers (proxy ARP) with the gateway's MAC and its FDB sends to the gateway's VTEP.
 */
export const FIP_MARK_OUT = 0x7467_0000;
const FIP_MARK_BASE = 0x7467_0001;
const FIP_ROUTE_TABLE_BASE = 746_701;
const FIP_RULE_PRIORITY_BASE = 7400;
/** The link-local range the per-gateway next hops come from (never a workload address). */
const FIP_NEXT_HOP_NET = '169.254.116.';

/** One gateway node, as the endpoint's node sends a floating IP's return traffic to it. */
export interface GatewayHop {
  node: string;
  /** Its index in `Gateway.spec.nodes` (0 is the first-ranked). */
  rank: number;
  vtep: string;
  mac: string;
  nextHop: string;
  mark: number;
  table: number;
  priority: number;
}

/** The inner MAC a gateway node uses for cross-node floating IP traffic: `0e:74` + its VTEP. */
export function fipMacFor(vtep: string): string {
  const n = parseIp(vtep) ?? 0;
  const bytes = [0x0e, 0x74, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The gateway nodes of a Gateway that lists them, with a known VTEP (`Node.status.vtep`). */
export function gatewayHops(gateway: TetherObject, objects: readonly TetherObject[]): GatewayHop[] {
  const nodes = (gateway.spec as unknown as GatewaySpec).nodes ?? [];
  const out: GatewayHop[] = [];
  nodes.forEach((node, rank) => {
    const obj = objects.find((o) => o.kind === 'Node' && o.metadata.name === node);
    const vtep = (obj?.status as { vtep?: unknown } | undefined)?.vtep;
    if (typeof vtep !== 'string' || parseIp(vtep) === undefined) return;
    out.push({
      node,
      rank,
      vtep,
      mac: fipMacFor(vtep),
      nextHop: `${FIP_NEXT_HOP_NET}${rank + 1}`,
      mark: FIP_MARK_BASE + rank,
      table: FIP_ROUTE_TABLE_BASE + rank,
      priority: FIP_RULE_PRIORITY_BASE + rank,
    });
  });
  return out;
}

/**
 * The nodes hosting an endpoint that some listed gateway node of `gateway` maps one of its
 * floating IPs to (`selectEndpoint` from each of them, as `fipReturnFor` sees it on the
 * endpoint's node): where the gateway nodes send their HA heartbeats besides each other, so
 * those nodes know which gateway is active. Sorted; the listed nodes themselves included when
 * they host one. Pure.
 */
export function fipEndpointNodes(gateway: TetherObject, objects: readonly TetherObject[]): string[] {
  const gw = gateway.spec as unknown as GatewaySpec;
  if (!gw.nodes) return [];
  const byNet = new Map<string, TetherObject[]>();
  for (const o of objects)
    if (o.kind === 'Endpoint') {
      const n = (o.spec as unknown as EndpointSpec).network;
      byNet.set(n, [...(byNet.get(n) ?? []), o]);
    }
  const out = new Set<string>();
  for (const f of objects) {
    if (f.kind !== 'FloatingIP') continue;
    const spec = f.spec as unknown as FloatingIPSpec;
    if (spec.gateway !== gateway.metadata.name) continue;
    const eps = byNet.get(spec.network) ?? [];
    for (const g of gw.nodes) {
      const ep = selectEndpoint(spec, gw, eps, g);
      const at = (ep?.spec as unknown as EndpointSpec | undefined)?.node;
      if (at !== undefined && at !== g) out.add(at);
    }
  }
  return [...out].sort();
}

/** The return path on an endpoint's node for one network: who may send it FIP traffic. */
export interface FipReturn {
  network: string;
  vni: number;
  subnets: string[];
  /** Gateway nodes (not this one) that DNAT towards a workload here. */
  hops: GatewayHop[];
  /** This node's workloads those gateways target; `outbound`: the gateway its own new
   *  outbound flows take when nothing is known of which gateway is active (the first-ranked
   *  that targets it), `via`: every gateway that targets it, best first (`outboundHop` picks
   *  the active one among them); both absent when this node binds the floating IP itself
   *  (then its own breakout SNATs them). */
  workloads: FipWorkload[];
}

export interface FipWorkload {
  ip: string;
  outbound?: GatewayHop;
  via?: GatewayHop[];
}

/**
 * The gateway a floating IP workload's own new outbound flows leave through: the active
 * gateway node when it is one that targets this workload (its SNAT map holds the floating
 * IP, and the router sends the floating IP's replies to it), else the first-ranked (nothing
 * heard yet, or the active one does not serve this workload). Pure.
 */
export function outboundHop(w: FipWorkload, active: string | undefined): GatewayHop | undefined {
  return (active === undefined ? undefined : w.via?.find((h) => h.node === active)) ?? w.outbound;
}

/** The site's Gateway (one per site; by name when a store holds more). */
export function siteGateway(site: string, objects: readonly TetherObject[]): TetherObject | undefined {
  return objects
    .filter((o) => o.kind === 'Gateway' && (o.spec as unknown as GatewaySpec).site === site)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))[0];
}

/**
 * The return path this node needs: for every other gateway node, the floating IPs whose
 * endpoint (as that gateway selects it, `selectEndpoint`) is here. Pure.
 */
export function fipReturnFor(args: {
  node: string;
  site: string;
  /** The slice with this node's own endpoints merged in. */
  objects: readonly TetherObject[];
  /** The networks present here. */
  networks: readonly { name: string; vni: number; subnets: string[]; breakout: boolean }[];
}): FipReturn[] {
  const gwObj = siteGateway(args.site, args.objects);
  if (!gwObj) return [];
  const gw = gwObj.spec as unknown as GatewaySpec;
  if (!gw.nodes) return [];
  const hops = gatewayHops(gwObj, args.objects);
  const endpoints = args.objects.filter((o) => o.kind === 'Endpoint');
  const fips = args.objects
    .filter(
      (o) => o.kind === 'FloatingIP' && (o.spec as unknown as FloatingIPSpec).gateway === gwObj.metadata.name,
    )
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const out: FipReturn[] = [];
  for (const net of [...args.networks].sort((a, b) => a.vni - b.vni)) {
    const used = new Map<string, GatewayHop>();
    const workloads = new Map<string, FipWorkload>();
    for (const f of fips) {
      const spec = f.spec as unknown as FloatingIPSpec;
      if (spec.network !== net.name) continue;
      const selfBinds =
        gw.nodes.includes(args.node) && net.breakout && selectEndpoint(spec, gw, endpoints, args.node);
      for (const h of hops) {
        if (h.node === args.node) continue;
        const ep = selectEndpoint(spec, gw, endpoints, h.node);
        const es = ep?.spec as unknown as EndpointSpec | undefined;
        if (!ep || es?.node !== args.node) continue;
        used.set(h.node, h);
        const w = workloads.get(es.ip) ?? { ip: es.ip };
        const own = selfBinds && selfBinds.metadata.name === ep.metadata.name;
        if (!own && (!w.outbound || h.rank < w.outbound.rank)) w.outbound = h;
        if (!own && !w.via?.some((x) => x.node === h.node))
          w.via = [...(w.via ?? []), h].sort((a, b) => a.rank - b.rank);
        workloads.set(es.ip, w);
      }
    }
    if (!used.size) continue;
    out.push({
      network: net.name,
      vni: net.vni,
      subnets: [...net.subnets],
      hops: [...used.values()].sort((a, b) => a.rank - b.rank),
      workloads: [...workloads.values()].sort((a, b) => a.ip.localeCompare(b.ip)),
    });
  }
  return out;
}

/** The vRouter entries (VXLAN FDB, bridge FDB, proxy-ARP neighbour) that make each gateway's
 *  next hop resolve to its MAC at its VTEP: added to the network's remote endpoints. */
export function gatewayHopEndpoints(ret: FipReturn): RemoteEndpoint[] {
  return ret.hops.map((h) => ({
    id: `gateway.${h.node}`,
    mac: h.mac,
    ip: h.nextHop,
    vtep: h.vtep,
    labels: {},
  }));
}

/**
 * The vRouter's plan with each return path's gateway next hops added to its network's remote
 * endpoints, and the return paths (for the gateway consumer, which runs after the vRouter).
 */
export function withFipReturns(
  d: DesiredNodeNetwork,
  node: string,
  site: string,
  objects: readonly TetherObject[],
): { desired: DesiredNodeNetwork; returns: FipReturn[] } {
  const returns = fipReturnFor({
    node,
    site,
    objects,
    networks: d.networks.map((n) => ({
      name: n.name,
      vni: n.vni,
      subnets: n.subnets,
      breakout: n.breakoutTransit !== undefined,
    })),
  });
  if (!returns.length) return { desired: d, returns };
  const byVni = new Map(returns.map((r) => [r.vni, r]));
  return {
    desired: {
      ...d,
      networks: d.networks.map((n) => {
        const r = byVni.get(n.vni);
        if (!r) return n;
        const taken = new Set(n.remoteEndpoints.map((e) => e.ip));
        return {
          ...n,
          remoteEndpoints: [...n.remoteEndpoints, ...gatewayHopEndpoints(r).filter((e) => !taken.has(e.ip))],
        };
      }),
    },
    returns,
  };
}

/**
 * The floating IP dataplane of one network (family `ip`), in its own namespace (so
 * overlapping workload addresses of other networks never meet it).
 * As a gateway: DNAT of the floating IP to the workload on the way in (the source, the real
 * client, is kept), SNAT of the workload to the floating IP on the way out through the
 * breakout veth (maps, one rule each whatever the count), and the mark that has the bridge
 * write this node's MAC on what it forwards to another node.
 * As an endpoint's node: the connection mark of the gateway a flow came from (by its
 * MAC), or that its workload opened towards a gateway, copied to the packet for routing.
 */
export function fipTable(
  bindings: readonly FipBinding[],
  opts: {
    /** The node this table is for: floating IPs whose endpoint is elsewhere are marked (none without it). */
    node?: string;
    ret?: FipReturn | undefined;
    /** The gateway node this node believes active (HA heartbeats): its workloads' own new
     *  outbound flows take that gateway's mark (`outboundHop`). */
    active?: string | undefined;
  } = {},
): Omit<NftTable, 'fingerprint'> | undefined {
  const ret = opts.ret;
  if (!bindings.length && !ret) return undefined;
  const sorted = [...bindings].sort((a, b) => a.address.localeCompare(b.address));
  const steer: string[] = [];
  const away = opts.node === undefined ? [] : sorted.filter((b) => b.endpointNode !== opts.node);
  if (away.length)
    steer.push(
      `iifname "${names.breakoutVn}" ip daddr { ${away.map((b) => b.address).join(', ')} } meta mark set 0x${FIP_MARK_OUT.toString(16)}`,
    );
  if (ret) {
    const br = names.bridge;
    for (const h of ret.hops)
      steer.push(`iifname "${br}" ct state new ether saddr ${h.mac} ct mark set 0x${h.mark.toString(16)}`);
    for (const h of ret.hops) {
      const ips = ret.workloads.filter((w) => outboundHop(w, opts.active)?.node === h.node).map((w) => w.ip);
      if (ips.length)
        steer.push(
          `iifname "${br}" ct state new ip saddr { ${ips.join(', ')} } ip daddr != { ${ret.subnets.join(', ')} } ct mark set 0x${h.mark.toString(16)}`,
        );
    }
    steer.push(
      `iifname "${br}" ip saddr { ${ret.workloads.map((w) => w.ip).join(', ')} } meta mark set ct mark`,
    );
  }
  // A table with only local bindings is what it was before cross-node floating IPs.
  const chains: NftTable['chains'] = steer.length
    ? [{ name: 'steer', base: { type: 'filter', hook: 'prerouting', priority: -150 }, rules: steer }]
    : [];
  if (sorted.length)
    chains.push(
      {
        name: 'prerouting',
        base: { type: 'nat', hook: 'prerouting', priority: -100 },
        rules: [
          `iifname "${names.breakoutVn}" dnat to ip daddr map { ${sorted.map((b) => `${b.address} : ${b.ip}`).join(', ')} }`,
        ],
      },
      {
        name: 'postrouting',
        base: { type: 'nat', hook: 'postrouting', priority: 90 },
        rules: [
          `oifname "${names.breakoutVn}" snat to ip saddr map { ${sorted.map((b) => `${b.ip} : ${b.address}`).join(', ')} }`,
        ],
      },
    );
  return { family: 'ip', name: FIP_TABLE, counters: [], sets: [], chains };
}

/**
 * The bridge side (family `bridge`) of a cross-node floating IP, in the network's namespace:
 * a gateway writes its MAC on the frames it DNATs (marked by `fipTable`) and takes frames sent
 * to that MAC as its own; an endpoint's node takes frames from a gateway's MAC to its own IP
 * layer (they are routed there, so conntrack sees the flow, with no br_netfilter). Absent
 * when no binding crosses nodes and no return path is needed.
 */
export function fipBridgeTable(args: {
  vni: number;
  gatewayMac: string;
  /** This node's MAC when it DNATs towards another node. */
  selfMac?: string;
  ret?: FipReturn;
}): Omit<NftTable, 'fingerprint'> | undefined {
  if (!args.selfMac && !args.ret) return undefined;
  const vx = names.vxlan(args.vni);
  const up = `ether daddr set ${args.gatewayMac} meta pkttype set host`;
  const pre: string[] = [];
  if (args.selfMac) pre.push(`iifname "${vx}" ether type ip ether daddr ${args.selfMac} ${up}`);
  for (const h of args.ret?.hops ?? []) pre.push(`iifname "${vx}" ether type ip ether saddr ${h.mac} ${up}`);
  const chains: NftTable['chains'] = [
    { name: 'prerouting', base: { type: 'filter', hook: 'prerouting', priority: -300 }, rules: pre },
  ];
  if (args.selfMac)
    chains.push({
      name: 'output',
      base: { type: 'filter', hook: 'output', priority: 0 },
      rules: [`ether type ip meta mark 0x${FIP_MARK_OUT.toString(16)} ether saddr set ${args.selfMac}`],
    });
  return { family: 'bridge', name: FIP_TABLE, counters: [], sets: [], chains };
}

/** The endpoint's node's policy routing for one network: a rule and a table per gateway. */
export function fipReturnRouting(
  ret: FipReturn,
  netns: string,
): { rules: Array<KernelOp & { op: 'rule-add' }>; routes: Array<KernelOp & { op: 'route-replace' }> } {
  return {
    rules: ret.hops.map((h) => ({
      op: 'rule-add',
      netns,
      priority: h.priority,
      fwmark: h.mark,
      table: h.table,
    })),
    routes: ret.hops.map((h) => ({
      op: 'route-replace',
      netns,
      dst: 'default',
      via: h.nextHop,
      dev: names.bridge,
      onlink: true,
      table: h.table,
    })),
  };
}

/** Whether a rule or table route is the floating IP return path's (by its numbers). */
export const isFipRule = (r: { fwmark: number; table: number; priority: number }): boolean =>
  r.fwmark >= FIP_MARK_BASE &&
  r.fwmark < FIP_MARK_BASE + 16 &&
  r.table >= FIP_ROUTE_TABLE_BASE &&
  r.table < FIP_ROUTE_TABLE_BASE + 16;
export const isFipTable = (table: number): boolean =>
  table >= FIP_ROUTE_TABLE_BASE && table < FIP_ROUTE_TABLE_BASE + 16;

/**
 * Sysctls of an endpoint's node's network namespace while it carries a return path, and what
 * they go back to when it no longer does. It forwards (a network without breakout has
 * forwarding off), and sends no redirects: it forwards a gateway's traffic back out of the
 * bridge it came in on, and the kernel would tell the workload to use the gateway's next hop
 * directly, around the connection mark.
 */
export const FIP_SYSCTLS: ReadonlyArray<{ key: string; want: string; restore?: string }> = [
  { key: 'net.ipv4.ip_forward', want: '1' },
  { key: 'net.ipv4.conf.all.send_redirects', want: '0', restore: '1' },
  { key: `net.ipv4.conf.${names.bridge}.send_redirects`, want: '0', restore: '1' },
];

/** The desired value of each floating IP sysctl of a network namespace, from whether it
 *  carries a return path (`FIP_SYSCTLS`); a key without a restore value has none without. */
export function fipSysctls(returnPath: boolean): Array<{ key: string; value: string }> {
  return FIP_SYSCTLS.flatMap(({ key, want, restore }) => {
    const value = returnPath ? want : restore;
    return value === undefined ? [] : [{ key, value }];
  });
}
/** Node-namespace routes that steer each floating IP into its network's namespace. */
export function fipRoutes(
  bindings: readonly FipBinding[],
  transitVnIp: (vni: number) => string | undefined,
  nodeNs: string | undefined,
): KernelOp[] {
  const ops: KernelOp[] = [];
  for (const b of [...bindings].sort((x, y) => x.address.localeCompare(y.address))) {
    const via = transitVnIp(b.vni);
    if (via)
      ops.push({
        op: 'route-replace',
        netns: nodeNs,
        dst: `${b.address}/32`,
        via,
        dev: names.breakoutNode(b.vni),
      });
  }
  return ops;
}
