import type {
  EndpointSpec,
  NetworkPolicySpec,
  VirtualNetworkSpec,
  VirtualNetworkStatus,
} from '../../api/kinds.js';
import type { TetherObject } from '../../api/resource.js';
import { cidrContains, formatIp, parseCidr, parseIp } from '../../lib/ipv4.js';
import {
  type BreakoutConfig,
  DEFAULT_TRANSIT_POOL,
  type DesiredNetwork,
  type DesiredNodeNetwork,
  type DesiredPolicy,
  type DesiredRule,
  gatewayMacFor,
  type LocalEndpoint,
  type RemoteEndpoint,
  type Underlay,
} from './model.js';

// The kinds' spec/status shapes are the API's (src/api/kinds.ts); re-exported for callers of
// this module.
export type { EndpointSpec, NetworkPolicySpec, VirtualNetworkSpec, VirtualNetworkStatus };

export interface ResourcesInput {
  nodeName: string;
  site: string;
  objects: readonly TetherObject[];
  underlay: Underlay;
  netnsPrefix: string;
  breakout?: BreakoutConfig;
}

/** Something in the resources that could not be used; the rest is still returned. */
export interface ResourceProblem {
  kind: string;
  name: string;
  field?: string;
  message: string;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function labelsOf(v: unknown): Record<string, string> {
  if (!isObj(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** Endpoint id from `<node>.<id>`; the whole name when there is no dot. */
function endpointId(name: string, node: string): string {
  return name.startsWith(`${node}.`) ? name.slice(node.length + 1) : name;
}

/**
 * Transit /31s for local breakout, from `pool`: slot = VNI mod slots, probing upwards on
 * collision, networks taken in VNI order, so the result depends only on the set of VNIs.
 * Returns VNI → {nodeIp, vnIp}.
 */
export function allocateTransit(
  vnis: readonly number[],
  pool: string = DEFAULT_TRANSIT_POOL,
): Map<number, { nodeIp: string; vnIp: string }> {
  const c = parseCidr(pool);
  if (!c || c.prefix > 30) throw new Error(`transit pool ${pool} is not an IPv4 CIDR of /30 or larger`);
  const slots = 2 ** (31 - c.prefix);
  const used = new Set<number>();
  const out = new Map<number, { nodeIp: string; vnIp: string }>();
  for (const vni of [...vnis].sort((a, b) => a - b)) {
    if (out.has(vni)) continue;
    let slot = vni % slots;
    for (let i = 0; used.has(slot) && i < slots; i++) slot = (slot + 1) % slots;
    if (used.has(slot)) throw new Error(`transit pool ${pool} is exhausted`);
    used.add(slot);
    const base = c.base + slot * 2;
    out.set(vni, { nodeIp: formatIp(base), vnIp: formatIp(base + 1) });
  }
  return out;
}

/**
 * Turns resources as the node receives them (VirtualNetwork, Endpoint, NetworkPolicy) into the
 * node's desired network state. Pure. Unusable objects are skipped and reported to `onProblem`
 * (a network without a VNI yet, an endpoint with a bad address, …); everything else is kept.
 */
export function desiredFromResources(
  input: ResourcesInput,
  onProblem: (p: ResourceProblem) => void = () => {},
): DesiredNodeNetwork {
  const vns = new Map<string, { obj: TetherObject; spec: VirtualNetworkSpec; vni: number }>();
  const endpoints: { name: string; spec: EndpointSpec; metaLabels: Record<string, string> }[] = [];
  const policies: { name: string; spec: NetworkPolicySpec }[] = [];

  for (const o of input.objects) {
    const name = o.metadata?.name ?? '?';
    const problem = (message: string, field?: string) =>
      onProblem(field ? { kind: o.kind, name, field, message } : { kind: o.kind, name, message });
    if (o.kind === 'VirtualNetwork') {
      const spec = o.spec as unknown as VirtualNetworkSpec;
      const vni = (o.status as VirtualNetworkStatus | undefined)?.vni;
      if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 1 || vni > 0xffffff) {
        problem('no VNI allocated yet', 'status.vni');
        continue;
      }
      if (
        !Array.isArray(spec?.subnets) ||
        spec.subnets.length === 0 ||
        !spec.subnets.every((s) => parseCidr(s))
      ) {
        problem('expected a non-empty list of IPv4 CIDRs', 'spec.subnets');
        continue;
      }
      if (spec.sites && !spec.sites.includes(input.site)) continue;
      vns.set(name, { obj: o, spec, vni });
    } else if (o.kind === 'Endpoint') {
      const spec = o.spec as unknown as EndpointSpec;
      if (!isObj(spec) || typeof spec.network !== 'string' || typeof spec.node !== 'string') {
        problem('expected spec.network and spec.node', 'spec');
        continue;
      }
      endpoints.push({ name, spec, metaLabels: labelsOf(o.metadata?.labels) });
    } else if (o.kind === 'NetworkPolicy') {
      const spec = o.spec as unknown as NetworkPolicySpec;
      if (!isObj(spec) || typeof spec.network !== 'string' || !Array.isArray(spec.rules)) {
        problem('expected spec.network and spec.rules', 'spec');
        continue;
      }
      policies.push({ name, spec });
    }
  }

  // Networks present here: those the site carries (spec.sites) — already filtered — plus any
  // network with a local endpoint even if the site list says otherwise is not added: the
  // controller decides presence.
  const byVni = new Map<number, string>();
  const networks: DesiredNetwork[] = [];
  for (const [name, { spec, vni }] of [...vns].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const other = byVni.get(vni);
    if (other) {
      onProblem({
        kind: 'VirtualNetwork',
        name,
        field: 'status.vni',
        message: `VNI ${vni} is also used by ${other}`,
      });
      continue;
    }
    const first = parseCidr(spec.subnets[0]!)!;
    const gateway = spec.gateway ?? formatIp(first.base + 1);
    const gw = parseIp(gateway);
    if (gw === undefined || !spec.subnets.some((s) => cidrContains(parseCidr(s)!, gw))) {
      onProblem({
        kind: 'VirtualNetwork',
        name,
        field: 'spec.gateway',
        message: 'expected an IPv4 address inside spec.subnets',
      });
      continue;
    }
    byVni.set(vni, name);
    networks.push({
      name,
      vni,
      subnets: [...spec.subnets],
      gateway,
      gatewayMac: gatewayMacFor(vni),
      localBreakout: Boolean(spec.localBreakout) && input.breakout !== undefined,
      localEndpoints: [],
      remoteEndpoints: [],
      policies: [],
    });
    if (spec.localBreakout && !input.breakout)
      onProblem({
        kind: 'VirtualNetwork',
        name,
        field: 'spec.localBreakout',
        message: 'node has no breakout uplink configured; local breakout disabled here',
      });
  }
  const netByName = new Map(networks.map((n) => [n.name, n]));

  for (const { name, spec, metaLabels } of endpoints.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const net = netByName.get(spec.network);
    if (!net) continue;
    const bad = (field: string, message: string) => onProblem({ kind: 'Endpoint', name, field, message });
    const mac = typeof spec.mac === 'string' ? spec.mac.toLowerCase() : '';
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) {
      bad('spec.mac', 'expected a MAC address like 02:00:00:00:00:01');
      continue;
    }
    const ip = parseIp(spec.ip);
    if (ip === undefined || !net.subnets.some((s) => cidrContains(parseCidr(s)!, ip))) {
      bad('spec.ip', `expected an IPv4 address inside ${net.subnets.join(', ')}`);
      continue;
    }
    const labels = { ...metaLabels, ...labelsOf(spec.labels) };
    if (spec.node === input.nodeName) {
      if (!spec.hostIfname || !/^[A-Za-z0-9_.-]{1,15}$/.test(spec.hostIfname)) {
        bad('spec.hostIfname', 'expected the host-side interface name (1–15 characters) of a local endpoint');
        continue;
      }
      const ep: LocalEndpoint = {
        id: endpointId(name, input.nodeName),
        hostIfname: spec.hostIfname,
        mac,
        ip: spec.ip,
        labels,
      };
      net.localEndpoints.push(ep);
    } else {
      if (parseIp(spec.vtep) === undefined) {
        bad('spec.vtep', 'expected the IPv4 VTEP address of the hosting node');
        continue;
      }
      const ep: RemoteEndpoint = { id: name, mac, ip: spec.ip, vtep: spec.vtep, labels };
      net.remoteEndpoints.push(ep);
    }
  }

  // A remote entry may never shadow what this node answers for itself: the anycast gateway
  // (a `bridge fdb replace` of its MAC would take over the bridge's own entry and send the
  // network's routed traffic into the tunnel) or a local workload. The controller refuses
  // such claims; this holds even against a controller that let one through.
  for (const net of networks) {
    const ownMacs = new Set([net.gatewayMac, ...net.localEndpoints.map((e) => e.mac)]);
    const ownIps = new Set([net.gateway, ...net.localEndpoints.map((e) => e.ip)]);
    net.remoteEndpoints = net.remoteEndpoints.filter((ep) => {
      const clash = ownMacs.has(ep.mac)
        ? `MAC ${ep.mac}`
        : ownIps.has(ep.ip)
          ? `address ${ep.ip}`
          : undefined;
      if (!clash) return true;
      onProblem({
        kind: 'Endpoint',
        name: ep.id ?? '',
        field: clash.startsWith('MAC') ? 'spec.mac' : 'spec.ip',
        message: `remote endpoint claims ${clash}, which this node holds itself (gateway or local workload); ignored`,
      });
      return false;
    });
  }

  for (const { name, spec } of policies.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const net = netByName.get(spec.network);
    if (!net) continue;
    const rules: DesiredRule[] = [];
    let ok = true;
    spec.rules.forEach((r, i) => {
      const field = `spec.rules[${i}]`;
      if (!r || typeof r.name !== 'string' || (r.action !== 'allow' && r.action !== 'deny')) {
        onProblem({
          kind: 'NetworkPolicy',
          name,
          field,
          message: "expected name and action 'allow' or 'deny'",
        });
        ok = false;
        return;
      }
      const rule: DesiredRule = {
        name: r.name,
        action: r.action,
        from: { matchLabels: labelsOf(r.from?.matchLabels) },
        to: { matchLabels: labelsOf(r.to?.matchLabels) },
      };
      if (Array.isArray(r.ports) && r.ports.length) {
        const ports = r.ports.filter(
          (p) =>
            ['tcp', 'udp', 'icmp'].includes(p?.protocol) &&
            (p.port === undefined || (Number.isInteger(p.port) && p.port > 0 && p.port < 65536)),
        );
        if (ports.length !== r.ports.length) {
          onProblem({
            kind: 'NetworkPolicy',
            name,
            field: `${field}.ports`,
            message: 'expected {protocol: tcp|udp|icmp, port?: 1‥65535}',
          });
          ok = false;
          return;
        }
        rule.ports = ports.map((p) =>
          p.port === undefined ? { protocol: p.protocol } : { protocol: p.protocol, port: p.port },
        );
      }
      rules.push(rule);
    });
    // A policy with a bad rule is dropped whole: half a policy could allow what it meant to deny.
    if (!ok) continue;
    const p: DesiredPolicy = { name, defaultAction: spec.defaultAction === 'deny' ? 'deny' : 'allow', rules };
    net.policies.push(p);
  }

  const breakoutVnis = networks.filter((n) => n.localBreakout).map((n) => n.vni);
  if (breakoutVnis.length && input.breakout) {
    const transit = allocateTransit(breakoutVnis, input.breakout.transitPool);
    for (const n of networks) {
      const t = transit.get(n.vni);
      if (t) n.breakoutTransit = t;
    }
  }

  const out: DesiredNodeNetwork = {
    node: input.nodeName,
    netnsPrefix: input.netnsPrefix,
    underlay: { ...input.underlay },
    networks: networks.sort((a, b) => a.vni - b.vni),
  };
  if (input.breakout) out.breakout = { ...input.breakout };
  return out;
}
