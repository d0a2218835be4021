import type { FloatingIPSpec, GatewaySpec } from '../../api/gateway-kinds.js';
import type { EndpointSpec, SiteSpec } from '../../api/kinds.js';
import type { TetherObject } from '../../api/resource.js';
import type { BirdConfig } from '../../bgp/render.js';
import type { KernelOp, NftTable } from '../../kernel/types.js';
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

export function desiredGateway(args: {
  node: string;
  vtep: string;
  gateway: TetherObject;
  site?: TetherObject;
  floatingIps: readonly TetherObject[];
  /** Endpoints on this node (its own). */
  endpoints: readonly TetherObject[];
  /** VNI of each network present on this node. */
  vniOf: (network: string) => number | undefined;
}): GatewayDesired {
  const gw = args.gateway.spec as unknown as GatewaySpec;
  const bindings: FipBinding[] = [];
  const unbound: { name: string; reason: string }[] = [];
  const eps = [...args.endpoints].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const f of [...args.floatingIps].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const spec = f.spec as unknown as FloatingIPSpec;
    if (spec.gateway !== args.gateway.metadata.name) continue;
    const ep = eps.find((e) => {
      const es = e.spec as unknown as EndpointSpec;
      if (es.network !== spec.network || es.node !== args.node) return false;
      if (spec.target.endpoint !== undefined) return e.metadata.name === spec.target.endpoint;
      return Object.entries(spec.target.matchLabels ?? {}).every(([k, v]) => es.labels?.[k] === v);
    });
    const vni = args.vniOf(spec.network);
    if (!ep) unbound.push({ name: f.metadata.name, reason: 'no matching endpoint on this node' });
    else if (vni === undefined)
      unbound.push({ name: f.metadata.name, reason: `network ${spec.network} has no breakout here` });
    else
      bindings.push({
        name: f.metadata.name,
        address: spec.address,
        network: spec.network,
        vni,
        endpoint: ep.metadata.name,
        ip: (ep.spec as unknown as EndpointSpec).ip,
      });
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

/** nft table that maps a network's floating IPs, in that network's namespace. */
export const FIP_TABLE = 'tether_fip';

/**
 * The floating IP dataplane of one network: in its own namespace (so overlapping workload
 * addresses of other networks never meet it), DNAT of the floating IP to the workload on the
 * way in (the source, the real client, is kept) and SNAT of the workload to the floating IP
 * on the way out through the breakout veth; both are maps, one rule each whatever the count.
 */
export function fipTable(bindings: readonly FipBinding[]): Omit<NftTable, 'fingerprint'> | undefined {
  if (!bindings.length) return undefined;
  const sorted = [...bindings].sort((a, b) => a.address.localeCompare(b.address));
  return {
    family: 'ip',
    name: FIP_TABLE,
    counters: [],
    sets: [],
    chains: [
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
    ],
  };
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
