/**
 * The kernel port: typed operations Tether asks of the kernel, and typed snapshots of what
 * the kernel holds. The real implementation (iproute2.ts) renders operations into
 * `ip -batch`, `bridge -batch`, `nft -f` input and parses `-j` output; the fake (fake.ts)
 * applies them to an in-memory model with the kernel's error semantics. Nothing above this
 * layer runs ip/bridge/nft itself.
 */

/** A network namespace by name; `undefined` means the namespace of the calling process. */
export type NetnsRef = string | undefined;

/** The route protocol number Tether stamps on every route it installs (`proto 183`). */
export const TETHER_ROUTE_PROTO = 183;

export type Tool = 'ip' | 'bridge' | 'nft' | 'sysctl';

export type KernelOp =
  /** `ip netns add NAME` (always run from the caller's namespace). */
  | { op: 'netns-add'; name: string }
  | { op: 'netns-del'; name: string }
  /**
   * VXLAN device; `nolearning`, `proxy` (answers ARP from its neighbour table), UDP `dstport`.
   * Requested in `netns` (where `dev` is and where its UDP socket lives); with `into`, the
   * device itself is created directly in that namespace (`link add NAME netns INTO type vxlan`).
   */
  | {
      op: 'vxlan-add';
      netns: NetnsRef;
      into?: string;
      name: string;
      vni: number;
      local: string;
      dev: string;
      dstport: number;
      mtu: number;
    }
  | { op: 'bridge-add'; netns: NetnsRef; name: string; mtu: number; mac: string }
  /** veth pair: `name` in `netns`, `peer` in `peerNetns`. */
  | { op: 'veth-add'; netns: NetnsRef; name: string; peer: string; peerNetns: NetnsRef; mtu: number }
  /** Move a link to another namespace (`ip link set NAME netns TO`). */
  | { op: 'link-move'; netns: NetnsRef; name: string; to: string }
  /**
   * Change attributes of a link. Only the fields given are changed. `master: null` detaches.
   * `learning` is the bridge-port learning flag of a bridge port.
   */
  | {
      op: 'link-set';
      netns: NetnsRef;
      name: string;
      mtu?: number;
      master?: string | null;
      up?: boolean;
      learning?: boolean;
    }
  | { op: 'link-del'; netns: NetnsRef; name: string }
  /** `ip addr replace CIDR dev DEV`. */
  | { op: 'addr-replace'; netns: NetnsRef; dev: string; cidr: string }
  | { op: 'addr-del'; netns: NetnsRef; dev: string; cidr: string }
  /**
   * `ip route replace DST [via GW] dev DEV [onlink] [table T] proto 183`. Without `table`, the
   * main table (the only one the vRouter reads); with one, a policy-routing table
   * (`ReadOptions.rules` reads those back).
   */
  | {
      op: 'route-replace';
      netns: NetnsRef;
      dst: string;
      via?: string;
      dev: string;
      table?: number;
      onlink?: boolean;
    }
  | { op: 'route-del'; netns: NetnsRef; dst: string; via?: string; dev: string; table?: number }
  /** Policy routing rule `ip rule add priority P fwmark M table T` (there is no `replace`). */
  | { op: 'rule-add'; netns: NetnsRef; priority: number; fwmark: number; table: number }
  | { op: 'rule-del'; netns: NetnsRef; priority: number; fwmark: number; table: number }
  /** Permanent neighbour entry (`ip neigh replace IP lladdr MAC dev DEV nud permanent`). */
  | { op: 'neigh-replace'; netns: NetnsRef; dev: string; ip: string; mac: string }
  | { op: 'neigh-del'; netns: NetnsRef; dev: string; ip: string }
  /**
   * Forwarding entry. `self` with `dst`: the VXLAN device's own table (MAC → remote VTEP).
   * `master`: the bridge's table, static (MAC → port).
   */
  | { op: 'fdb-replace'; netns: NetnsRef; dev: string; mac: string; target: 'self' | 'master'; dst?: string }
  | { op: 'fdb-del'; netns: NetnsRef; dev: string; mac: string; target: 'self' | 'master'; dst?: string }
  /** Write a sysctl (`net.ipv4.ip_forward` style key). */
  | { op: 'sysctl'; netns: NetnsRef; key: string; value: string }
  /** Atomically replace one nftables table (delete + create in one `nft -f` transaction). */
  | { op: 'nft-table'; netns: NetnsRef; table: NftTable }
  /** Atomically replace the elements of one set of an existing table. */
  | { op: 'nft-set'; netns: NetnsRef; family: NftFamily; table: string; set: string; elements: string[] }
  | { op: 'nft-table-del'; netns: NetnsRef; family: NftFamily; table: string };

export type KernelOpName = KernelOp['op'];

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'bridge';

export interface NftSet {
  name: string;
  /** nft type, e.g. `ipv4_addr`. */
  type: string;
  elements: string[];
}

export interface NftChain {
  name: string;
  /** Base chain: `{ type filter hook forward priority 0; policy accept; }`. */
  base?: { type: 'filter' | 'nat'; hook: string; priority: number; policy?: 'accept' | 'drop' };
  /** Rules in nft syntax, in order. */
  rules: string[];
}

export interface NftTable {
  family: NftFamily;
  name: string;
  /**
   * Identifies the structure (chains, rules, counters, set names), not the set elements. Stored
   * in the table as the comment of a rule in chain `fingerprint`, because nft 1.0.6 does not report
   * table comments in `-j` output.
   */
  fingerprint: string;
  counters: string[];
  sets: NftSet[];
  chains: NftChain[];
}

export interface ObservedNftTable {
  family: NftFamily;
  name: string;
  fingerprint?: string;
  sets: Record<string, string[]>;
  counters: Record<string, { packets: number; bytes: number }>;
}

export interface ObservedLink {
  name: string;
  /** `vxlan`, `bridge`, `veth`, … or undefined for a plain device. */
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  master?: string;
  /** Bridge-port learning flag, when the link is a bridge port. */
  learning?: boolean;
  vxlan?: { vni: number; local?: string; port?: number; learning: boolean; proxy: boolean };
  addrs: string[];
}

export interface ObservedRoute {
  dst: string;
  via?: string;
  dev: string;
}

/** A route of a table other than main (read with `ReadOptions.rules`), Tether's protocol only. */
export interface ObservedTableRoute extends ObservedRoute {
  table: number;
  onlink?: boolean;
}

/** A policy routing rule that selects by firewall mark (other rules are not read). */
export interface ObservedRule {
  priority: number;
  fwmark: number;
  table: number;
}

export interface ObservedNeigh {
  dev: string;
  ip: string;
  mac: string;
}

export interface ObservedFdb {
  dev: string;
  mac: string;
  target: 'self' | 'master';
  dst?: string;
}

/** What one namespace holds that Tether cares about. */
export interface NsState {
  links: ObservedLink[];
  /** Routes with Tether's protocol number only. */
  routes: ObservedRoute[];
  /** Permanent neighbour entries only. */
  neighs: ObservedNeigh[];
  /** Static/permanent entries with a `dst` (self) and static bridge entries (master), no learned ones. */
  fdb: ObservedFdb[];
  nft: ObservedNftTable[];
  sysctl: Record<string, string>;
  /** With `ReadOptions.rules`: fwmark rules and the proto-183 routes of non-main tables. */
  rules?: ObservedRule[];
  tableRoutes?: ObservedTableRoute[];
}

/** Per-namespace br_netfilter switch: bridged IPv4 frames traverse the inet hooks when 1. */
export const BRIDGE_NF_CALL_IPTABLES = 'net.bridge.bridge-nf-call-iptables';
/** The same for bridged IPv6 (the inet/ip6 hooks) and ARP (the arp family's hooks). */
export const BRIDGE_NF_CALL_IP6TABLES = 'net.bridge.bridge-nf-call-ip6tables';
export const BRIDGE_NF_CALL_ARPTABLES = 'net.bridge.bridge-nf-call-arptables';
/** Every br_netfilter switch: the module brings all three, each on (1) in a new namespace. */
export const BRIDGE_NF_CALLS = [BRIDGE_NF_CALL_IPTABLES, BRIDGE_NF_CALL_IP6TABLES, BRIDGE_NF_CALL_ARPTABLES];

/**
 * What the kernel offers for stateful filtering of bridged traffic, probed once per node
 * (`Kernel.probePolicy`). The vRouter chooses its policy layout from these facts alone.
 */
export interface PolicyKernelFacts {
  /** `net.bridge.bridge-nf-call-iptables` exists: br_netfilter can hand bridged IPv4 to the inet hooks. */
  brNetfilter: boolean;
  /** A table of family `inet` may use `ct` expressions (conntrack for IPv4/IPv6). */
  inetConntrack: boolean;
  /** A table of family `bridge` may use `ct` expressions (`nf_conntrack_bridge`). */
  bridgeConntrack: boolean;
}

export interface ReadOptions {
  /** Read fdb/neigh entries (large); skip for namespaces where Tether puts none. */
  entries?: boolean;
  /** nft tables to read (family + name); others are ignored. */
  nftTables?: { family: NftFamily; name: string }[];
  sysctls?: string[];
  /** Read fwmark rules and the Tether routes of tables other than main. */
  rules?: boolean;
}

export interface OpFailure {
  /** Index of the failed op in the batch given to apply(). */
  index: number;
  op: KernelOp;
  message: string;
}

export interface BatchResult {
  failures: OpFailure[];
}

/**
 * The narrow port to the kernel. `apply` runs a batch of operations of one tool in one
 * namespace; the real kernel runs it as one process (`ip -batch -`, `bridge -batch -`, one
 * `nft -f -`). Ops after a failure are still attempted (`-force`) except for nft, where the
 * whole transaction fails.
 */
export interface Kernel {
  listNetns(): Promise<string[]>;
  /** Undefined when the namespace does not exist. */
  readNs(netns: NetnsRef, opts?: ReadOptions): Promise<NsState | undefined>;
  apply(tool: Tool, netns: NetnsRef, ops: readonly KernelOp[]): Promise<BatchResult>;
  /** Probes, without changing anything, what `netns` offers for stateful bridged filtering. */
  probePolicy(netns: NetnsRef): Promise<PolicyKernelFacts>;
}

/** Which tool executes an op, and in which namespace. */
export function opTool(op: KernelOp): Tool {
  switch (op.op) {
    case 'fdb-replace':
    case 'fdb-del':
      return 'bridge';
    case 'nft-table':
    case 'nft-set':
    case 'nft-table-del':
      return 'nft';
    case 'sysctl':
      return 'sysctl';
    default:
      return 'ip';
  }
}

export function opNetns(op: KernelOp): NetnsRef {
  return op.op === 'netns-add' || op.op === 'netns-del' ? undefined : op.netns;
}

export interface Batch {
  tool: Tool;
  netns: NetnsRef;
  ops: KernelOp[];
}

/** Groups consecutive ops of the same tool and namespace into one batch, keeping order. */
export function toBatches(ops: readonly KernelOp[]): Batch[] {
  const out: Batch[] = [];
  for (const op of ops) {
    const tool = opTool(op);
    const netns = opNetns(op);
    const last = out[out.length - 1];
    if (last && last.tool === tool && last.netns === netns) last.ops.push(op);
    else out.push({ tool, netns, ops: [op] });
  }
  return out;
}
