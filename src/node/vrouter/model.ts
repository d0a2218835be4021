/**
 * Desired state of one node's virtual networking, as plain data. The agent turns it into
 * kernel state (planner.ts → applier.ts); nothing here knows about the kernel.
 *
 * Layout on the node (see docs/vrouter.md):
 *   node namespace (underlay.netns)      one namespace per virtual network: `<netnsPrefix>-vn<VNI>`
 *   ───────────────────────────────       ──────────────────────────────────────────────────────────
 *   underlay.ifname (VTEP ip)            tbr0      bridge, anycast gateway IP + MAC, MTU = underlay − 50
 *   tvx<VNI>  (created here, moved →)    tvx<VNI>  VXLAN, nolearning + proxy ARP, UDP socket stays in node ns
 *   tbo<VNI>  ── veth (breakout) ──      tbo0      transit /31, default route, SNAT to the transit address
 *   workload host ends (by CNI, moved →) <hostIfname> bridge ports
 */
import { GATEWAY_MAC_PREFIX } from '../../api/kinds.js';

/** One node's share of the virtual networks. */
export interface DesiredNodeNetwork {
  /** Node name, as known to the controller. */
  node: string;
  /**
   * Prefix of every namespace this node's vRouter creates (`<prefix>-vn<VNI>`). Namespace names
   * are global on a machine, and a lab runs several nodes on one machine, so it must be unique
   * per node on the machine (e.g. `t1`). Letters, digits, `_`, `-`, at most 16 characters.
   */
  netnsPrefix: string;
  underlay: Underlay;
  /** Present when the node may do local breakout (SNAT to the site router's networks). */
  breakout?: BreakoutConfig;
  /** The virtual networks present on this node. VNIs unique. */
  networks: DesiredNetwork[];
}

export interface Underlay {
  /** Interface carrying VXLAN traffic, in the node's namespace. */
  ifname: string;
  /** This node's VTEP address (an address of `ifname`). */
  vtepIp: string;
  /** Underlay MTU; every overlay interface gets `mtu − 50`. */
  mtu: number;
  /** The namespace the node itself lives in; undefined = the agent's own namespace. */
  netns?: string;
  /** VXLAN UDP port; default 4789. */
  vxlanPort?: number;
}

export interface BreakoutConfig {
  /** The uplink towards the site router, in the node's namespace; traffic is masqueraded here. */
  uplinkIfname: string;
  /**
   * Pool of per-network transit /31s between each network namespace and the node namespace
   * (default `198.18.0.0/15`, the RFC 2544 benchmarking range, never routed). Must not overlap
   * anything the node routes.
   */
  transitPool?: string;
}

export interface DesiredNetwork {
  /** VirtualNetwork name (for humans and reports; kernel names use the VNI). */
  name: string;
  /** VXLAN network identifier, 1‥16777215, allocated by the controller; unique on the node. */
  vni: number;
  /** IPv4 CIDRs of the network. The first one containing `gateway` is assigned to the bridge. */
  subnets: string[];
  /** Anycast gateway IPv4 address: the same on every node. */
  gateway: string;
  /** Anycast gateway MAC, derived from the VNI (`gatewayMacFor`) so it is the same everywhere. */
  gatewayMac: string;
  /** SNAT this network's traffic out of the node's uplink (needs `DesiredNodeNetwork.breakout`). */
  localBreakout: boolean;
  /** Transit addresses for local breakout; filled by desiredFromResources (`allocateTransit`). */
  breakoutTransit?: { nodeIp: string; vnIp: string };
  /** Workload interfaces on this node. */
  localEndpoints: LocalEndpoint[];
  /** Workload interfaces of this network on other nodes. */
  remoteEndpoints: RemoteEndpoint[];
  /** Policies of this network, evaluated in order (desiredFromResources sorts them by name). */
  policies: DesiredPolicy[];
}

export interface LocalEndpoint {
  /** Endpoint id (unique on the node). */
  id: string;
  /**
   * Host end of the workload veth, created by the CNI plugin in the node's namespace. The agent
   * moves it into the network's namespace and makes it a bridge port.
   */
  hostIfname: string;
  /** MAC of the workload end. */
  mac: string;
  /** IPv4 address of the workload (no prefix length). */
  ip: string;
  /** Labels (tags) used by policy selectors. */
  labels: Record<string, string>;
}

export interface RemoteEndpoint {
  /** `<node>.<id>`, for reports. */
  id?: string;
  mac: string;
  ip: string;
  /** VTEP address of the node that hosts it. */
  vtep: string;
  labels: Record<string, string>;
}

export type PolicyAction = 'allow' | 'deny';

export interface DesiredPolicy {
  name: string;
  /** What happens to traffic between endpoints no rule matched. Any policy with `deny` makes it deny. */
  defaultAction: PolicyAction;
  /** First match wins, across all policies of the network in order. */
  rules: DesiredRule[];
}

export interface DesiredRule {
  name: string;
  action: PolicyAction;
  /** Endpoints (local and remote) whose labels include all of these; `{}` selects every endpoint. */
  from: { matchLabels: Record<string, string> };
  to: { matchLabels: Record<string, string> };
  /** Restrict to these protocols/destination ports; absent = any IPv4 traffic. */
  ports?: { protocol: 'tcp' | 'udp' | 'icmp'; port?: number }[];
}

/** Kernel names, all derived from the prefix and the VNI, so every object is recognisably Tether's. */
export const names = {
  vnNetns: (prefix: string, vni: number): string => `${prefix}-vn${vni}`,
  vnNetnsPattern: (prefix: string): RegExp =>
    new RegExp(`^${prefix.replace(/[^A-Za-z0-9_]/g, '\\$&')}-vn(\\d+)$`),
  vxlan: (vni: number): string => `tvx${vni}`,
  bridge: 'tbr0',
  /** Breakout veth, node-namespace end. */
  breakoutNode: (vni: number): string => `tbo${vni}`,
  /** Breakout veth, network-namespace end. */
  breakoutVn: 'tbo0',
  /** nft table in the node namespace (family ip). */
  nodeNatTable: (prefix: string): string => `tether_${prefix.replace(/-/g, '_')}`,
  /** nft table in the node namespace (family ip): `notrack` for the VXLAN underlay. */
  nodeRawTable: (prefix: string): string => `tether_raw_${prefix.replace(/-/g, '_')}`,
  /** nft tables in each network namespace. */
  vnNatTable: 'tether_nat',
  vnPolicyTable: 'tether_policy',
};

/** Deterministic anycast gateway MAC: locally administered `02:74:67` + the 24-bit VNI. */
export function gatewayMacFor(vni: number): string {
  const h = (vni & 0xffffff).toString(16).padStart(6, '0');
  return `${GATEWAY_MAC_PREFIX}:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

export const DEFAULT_VXLAN_PORT = 4789;
export const DEFAULT_TRANSIT_POOL = '198.18.0.0/15';
/** VXLAN over IPv4 costs 50 bytes. */
export const VXLAN_OVERHEAD = 50;
