/**
 * The port between the node agent's CNI endpoint (server.ts) and whatever allocates
 * addresses and remembers local endpoints. The real implementation is FileIpam; the node
 * daemon wires its `blockFor` to VirtualNetwork resources (status.siteBlocks[site]).
 */

/** The site's share of one virtual network's subnet, as delegated by the controller. */
export interface SiteBlock {
  /** The block this site allocates from, e.g. `10.1.0.64/26` of subnet `10.1.0.0/24`. */
  cidr: string;
  /** Gateway address of the whole subnet (never handed out). */
  gateway: string;
  /** Prefix length of the whole subnet: container addresses are `ip/prefixLength`. */
  prefixLength: number;
  /** MTU of the network's interfaces (= VXLAN MTU = underlay − 50). */
  mtu: number;
}

/**
 * Answers the block for a network, or `undefined` while this site has none (yet). Throws
 * TETHER_E_NOT_FOUND for a network that does not exist at all (a configuration error).
 */
export type BlockFor = (network: string) => SiteBlock | undefined;

export interface AttachmentKey {
  containerId: string;
  ifname: string;
}

/** A hostPort mapping (CNI `portMappings` capability), done by the node (src/node/portmap.ts). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  /** Only traffic to this node address; absent: any of the node's addresses. */
  hostIP?: string;
}

/** One workload interface on this node: what the agent reports up and the vRouter wires. */
export interface LocalEndpoint {
  network: string;
  containerId: string;
  ifname: string;
  /** Host end of the veth pair (in the node's namespace), which the vRouter attaches. */
  hostIfname: string;
  ip: string;
  prefixLength: number;
  /** `ip/prefixLength`. */
  address: string;
  gateway: string;
  /** MAC of the workload end as the kernel has it (a chained plugin may change it after ADD). */
  mac: string;
  mtu: number;
  /** Path of the container's network namespace, when known. */
  netns?: string;
  /**
   * `dev:inode` of that namespace at ADD: a path reused by a new namespace (a container
   * restarted under the same name) is a different workload, and a vanished one is a leak.
   */
  netnsId?: string;
  /**
   * Path of the network namespace the host end lives in once the vRouter has wired it
   * (`/var/run/netns/<prefix>-vn<VNI>`): the `sandbox` of the host interface in the result.
   */
  hostNetns?: string;
  /** The block the address came from. */
  block: string;
  /** `allocated` after ADD asked for an address; `attached` once the interface exists. */
  state: 'allocated' | 'attached';
  /** CNI_ARGS of the ADD (K8S_POD_NAME, K8S_POD_NAMESPACE, …). */
  args?: Record<string, string>;
  portMappings?: PortMapping[];
  createdAt: string;
  attachedAt?: string;
}

export type EndpointPatch = Partial<Pick<LocalEndpoint, 'mac' | 'hostNetns'>>;

export interface AllocateRequest extends AttachmentKey {
  network: string;
  hostIfname: string;
  netns?: string;
  netnsId?: string;
  /** A static address the runtime asked for (CNI `ips` / `IP=`): honoured inside the block or refused. */
  ip?: string;
  /** Prefix length the runtime gave with `ip`; must be the subnet's. */
  prefixLength?: number;
  /** Overrides the block's MTU. */
  mtu?: number;
  args?: Record<string, string>;
  portMappings?: PortMapping[];
}

/**
 * Every mutating method has persisted its effect before its promise resolves. All methods
 * throw TetherError: TETHER_E_UNAVAILABLE (no block for the network yet), TETHER_E_EXHAUSTED,
 * TETHER_E_CONFLICT (the attachment is on another network), TETHER_E_NOT_FOUND, TETHER_E_STATE,
 * TETHER_E_INVALID (a static address outside the block or different from the one held).
 */
export interface EndpointRegistry {
  /** Idempotent per (containerId, ifname): a repeated call returns the same endpoint. */
  allocate(req: AllocateRequest): Promise<LocalEndpoint>;
  /** Marks the endpoint attached; TETHER_E_NOT_FOUND when it was never allocated. */
  markAttached(key: AttachmentKey): Promise<LocalEndpoint>;
  /** Changes what the kernel decides after ADD (the MAC, where the host end lives). */
  update(key: AttachmentKey, patch: EndpointPatch): Promise<LocalEndpoint>;
  /** Releases the address; `undefined` when there was nothing (idempotent). */
  release(key: AttachmentKey & { network?: string }): Promise<LocalEndpoint | undefined>;
  get(key: AttachmentKey): LocalEndpoint | undefined;
  /**
   * The endpoint for CHECK: the node re-reads what the kernel has first (the MAC a chained
   * plugin set). FileIpam alone answers its record.
   */
  check(key: AttachmentKey): Promise<LocalEndpoint | undefined>;
  list(): LocalEndpoint[];
  /** Releases every endpoint of `network` whose key is not in `valid`; returns them. */
  gc(network: string, valid: readonly AttachmentKey[]): Promise<LocalEndpoint[]>;
}
