/**
 * The parts of the CNI specification (containernetworking/cni SPEC.md, 0.4.0 … 1.1.0) that
 * tether-cni speaks: versions, error codes, and the shapes of the JSON it reads and writes.
 */

/** Versions this plugin accepts in `cniVersion`; the last is the newest. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares dotted versions numerically: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Well-known error codes of the spec (0-99 reserved), and this plugin's own (100+). */
export const CNI_CODES = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILED: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  PLUGIN_NOT_AVAILABLE: 50,
  /** tether-cni: the site's address block for this network has no free address. */
  POOL_EXHAUSTED: 100,
  /** tether-cni: the kernel refused to create or configure the interface. */
  KERNEL_FAILED: 101,
  /** tether-cni: the node agent answered something this plugin does not understand, or refused. */
  AGENT_ERROR: 102,
  /** tether-cni: CHECK found the container's interface missing or different from the result. */
  CHECK_FAILED: 103,
  /** tether-cni: an unexpected failure (a bug). */
  INTERNAL: 199,
} as const;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

/** The error object of the spec, printed on stdout with a non-zero exit status. */
export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** An error that crosses the plugin boundary as a CNI error object. */
export class CniError extends Error {
  override readonly name = 'CniError';
  constructor(
    readonly code: number,
    message: string,
    readonly details?: string,
  ) {
    super(message);
  }

  toObject(cniVersion: string): CniErrorObject {
    const o: CniErrorObject = { cniVersion, code: this.code, msg: this.message };
    if (this.details) o.details = this.details;
    return o;
  }
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  [k: string]: unknown;
}

export interface CniIpConfig {
  /** CIDR notation: the address and the prefix length of its subnet, e.g. `10.1.0.5/24`. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
  /** Only in results of version < 1.0.0: "4" or "6". */
  version?: string;
  [k: string]: unknown;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  [k: string]: unknown;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
  [k: string]: unknown;
}

/** The network configuration tether-cni reads on stdin. Unknown fields are ignored. */
export interface TetherNetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** Name of the VirtualNetwork resource this attachment joins. */
  network: string;
  /** Unix socket of the node agent's CNI endpoint. */
  agentSocket: string;
  /** Overrides the network's MTU for this attachment. */
  mtu?: number;
  prevResult?: CniResult;
  /** GC only (1.1.0): the attachments the runtime still knows. */
  validAttachments?: { containerID: string; ifname: string }[];
}

export const PLUGIN_TYPE = 'tether-cni';
export const DEFAULT_AGENT_SOCKET = '/run/tether/cni.sock';
