/**
 * Turns what a runtime hands a CNI plugin (network config on stdin, `CNI_*` environment) into
 * a typed request, or a CniError carrying the spec's code. Pure: no I/O.
 */

import { parseJson } from '../lib/input.js';
import {
  CNI_CODES,
  type CniCommand,
  CniError,
  type CniResult,
  DEFAULT_AGENT_SOCKET,
  isSupportedVersion,
  PLUGIN_TYPE,
  SUPPORTED_VERSIONS,
  type TetherNetConf,
} from './spec.js';

export type CniEnv = Readonly<Record<string, string | undefined>>;

export interface VersionRequest {
  command: 'VERSION';
  /** The cniVersion the runtime asked with, when stdin carried one we support. */
  cniVersion?: string;
}

export interface AttachmentRequest {
  command: 'ADD' | 'DEL' | 'CHECK';
  config: TetherNetConf;
  containerId: string;
  /** Path of the container's network namespace; may be absent on DEL. */
  netns?: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs (`K8S_POD_NAME`, …). */
  args: Record<string, string>;
  /** A static address the runtime asked for (ADD). */
  staticIp?: StaticIp;
  /** hostPort mappings (ADD, `portMappings` capability). */
  portMappings?: HostPortMapping[];
}

export interface StaticIp {
  ip: string;
  prefixLength?: number;
  /** Where it came from, for error messages. */
  source: string;
}

export interface NetworkRequest {
  command: 'STATUS' | 'GC';
  config: TetherNetConf;
}

export type CniRequest = VersionRequest | AttachmentRequest | NetworkRequest;

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];
/** libcni's rule for container ids. */
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/** Linux: at most 15 bytes, not `.`/`..`, no `/`, `:` or whitespace. */
const IFNAME_RE = /^[^\s/:]{1,15}$/;
/** A network (resource) name: DNS-label-like, as Tether resource names are. */
const NETWORK_RE = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

function invalidEnv(name: string, expected: string): CniError {
  return new CniError(CNI_CODES.INVALID_ENV, `invalid environment variable ${name}`, `expected ${expected}`);
}

function invalidConfig(field: string, expected: string): CniError {
  return new CniError(
    CNI_CODES.INVALID_CONFIG,
    `invalid network config: field "${field}"`,
    `expected ${expected}`,
  );
}

/** Parses `CNI_ARGS` (`K1=V1;K2=V2`). */
export function parseCniArgs(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const pair of raw.split(';')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalidEnv('CNI_ARGS', 'semicolon-separated KEY=VALUE pairs');
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/**
 * Largest network config accepted on stdin. A real one (conflist entry, runtimeConfig,
 * prevResult of a few chained plugins) is a few KiB; the bound keeps a runaway or hostile
 * caller from making the plugin buffer and parse without limit.
 */
export const MAX_STDIN_BYTES = 1024 * 1024;

function decodeJson(stdin: string): unknown {
  if (stdin.length > MAX_STDIN_BYTES)
    throw new CniError(
      CNI_CODES.DECODE_FAILED,
      'network config on stdin is too large',
      `more than ${MAX_STDIN_BYTES} bytes (a network config is a few KiB)`,
    );
  try {
    return parseJson(stdin, { source: 'network config on stdin' });
  } catch (e) {
    throw new CniError(
      CNI_CODES.DECODE_FAILED,
      'failed to decode network config on stdin',
      e instanceof Error ? e.message : String(e),
    );
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates the network config object (after JSON decoding). */
export function parseNetConf(raw: unknown, command: CniCommand): TetherNetConf {
  if (!isObject(raw)) throw invalidConfig('(root)', 'a JSON object');
  const v = raw.cniVersion;
  if (v === undefined || v === '')
    throw invalidConfig('cniVersion', `one of ${SUPPORTED_VERSIONS.join(', ')}`);
  if (typeof v !== 'string') throw invalidConfig('cniVersion', 'a string');
  if (!isSupportedVersion(v))
    throw new CniError(
      CNI_CODES.INCOMPATIBLE_VERSION,
      `incompatible CNI version ${v}`,
      `plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  if (typeof raw.name !== 'string' || raw.name === '') throw invalidConfig('name', 'a non-empty string');
  if (raw.type !== PLUGIN_TYPE) throw invalidConfig('type', `"${PLUGIN_TYPE}"`);
  if (typeof raw.network !== 'string' || !NETWORK_RE.test(raw.network))
    throw invalidConfig('network', 'the name of a VirtualNetwork (lowercase letters, digits, "-", ".")');
  let agentSocket = DEFAULT_AGENT_SOCKET;
  if (raw.agentSocket !== undefined) {
    if (typeof raw.agentSocket !== 'string' || !raw.agentSocket.startsWith('/'))
      throw invalidConfig('agentSocket', 'an absolute path to a unix socket');
    agentSocket = raw.agentSocket;
  }
  const conf: TetherNetConf = {
    cniVersion: v,
    name: raw.name,
    type: PLUGIN_TYPE,
    network: raw.network,
    agentSocket,
  };
  if (raw.mtu !== undefined) {
    if (typeof raw.mtu !== 'number' || !Number.isInteger(raw.mtu) || raw.mtu < 576 || raw.mtu > 9216)
      throw invalidConfig('mtu', 'an integer between 576 and 9216');
    conf.mtu = raw.mtu;
  }
  if (raw.prevResult !== undefined) conf.prevResult = parsePrevResult(raw.prevResult);
  if (command === 'CHECK' && conf.cniVersion.startsWith('0.3'))
    throw new CniError(
      CNI_CODES.INCOMPATIBLE_VERSION,
      `CHECK is not defined for CNI version ${conf.cniVersion}`,
      'CHECK needs cniVersion 0.4.0 or later',
    );
  if (command === 'GC' || command === 'STATUS') {
    if (!v.startsWith('1.1') && !v.startsWith('1.2'))
      throw new CniError(
        CNI_CODES.INCOMPATIBLE_VERSION,
        `${command} is not defined for CNI version ${v}`,
        `${command} needs cniVersion 1.1.0 or later`,
      );
    const valid = raw['cni.dev/valid-attachments'];
    if (command === 'GC') {
      if (valid !== undefined && !Array.isArray(valid))
        throw invalidConfig('cni.dev/valid-attachments', 'an array of {containerID, ifname}');
      conf.validAttachments = (Array.isArray(valid) ? valid : []).map((a, i) => {
        if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string')
          throw invalidConfig(`cni.dev/valid-attachments[${i}]`, 'an object {containerID, ifname}');
        return { containerID: a.containerID, ifname: a.ifname };
      });
    }
  }
  return conf;
}

function parsePrevResult(raw: unknown): CniResult {
  if (!isObject(raw)) throw invalidConfig('prevResult', 'a CNI result object');
  if (raw.interfaces !== undefined && !Array.isArray(raw.interfaces))
    throw invalidConfig('prevResult.interfaces', 'an array');
  if (raw.ips !== undefined && !Array.isArray(raw.ips)) throw invalidConfig('prevResult.ips', 'an array');
  if (raw.routes !== undefined && !Array.isArray(raw.routes))
    throw invalidConfig('prevResult.routes', 'an array');
  for (const [i, ip] of ((raw.ips as unknown[] | undefined) ?? []).entries())
    if (!isObject(ip) || typeof ip.address !== 'string')
      throw invalidConfig(`prevResult.ips[${i}].address`, 'a CIDR string');
  for (const [i, itf] of ((raw.interfaces as unknown[] | undefined) ?? []).entries())
    if (!isObject(itf) || typeof itf.name !== 'string')
      throw invalidConfig(`prevResult.interfaces[${i}].name`, 'a string');
  return raw as CniResult;
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/**
 * The static address of an ADD, from the `ips` capability (`runtimeConfig.ips`, podman
 * `--ip`), the `args.cni.ips` convention or CNI_ARGS `IP=`. At most one IPv4 address (an
 * attachment has one); the agent honours it inside the node's block or refuses it.
 */
export function requestedAddress(
  raw: Record<string, unknown>,
  args: Record<string, string>,
): StaticIp | undefined {
  const found: { value: string; source: string }[] = [];
  const take = (v: unknown, source: string): void => {
    if (v === undefined) return;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
      throw invalidConfig(source, 'an array of IP addresses ("10.1.0.5" or "10.1.0.5/24")');
    for (const x of v as string[]) found.push({ value: x, source });
  };
  const rc = raw.runtimeConfig;
  if (isObject(rc)) take(rc.ips, 'runtimeConfig.ips');
  const a = raw.args;
  if (isObject(a) && isObject(a.cni)) take(a.cni.ips, 'args.cni.ips');
  if (args.IP)
    for (const x of args.IP.split(',')) if (x) found.push({ value: x.trim(), source: 'CNI_ARGS IP' });
  if (found.length === 0) return undefined;
  const parsed = found.map((f) => {
    const [ip = '', prefix] = f.value.split('/');
    if (!IPV4_RE.test(ip))
      throw invalidConfig(
        f.source,
        `IPv4 addresses (tether-cni gives one IPv4 address per attachment), not "${f.value}"`,
      );
    let prefixLength: number | undefined;
    if (prefix !== undefined) {
      prefixLength = Number(prefix);
      if (!/^\d{1,2}$/.test(prefix) || prefixLength < 1 || prefixLength > 32)
        throw invalidConfig(f.source, `a prefix length 1-32 in "${f.value}"`);
    }
    return { ip, prefixLength, source: f.source };
  });
  const distinct = new Set(parsed.map((p) => p.ip));
  if (distinct.size > 1)
    throw invalidConfig(
      parsed[1]?.source ?? 'ips',
      `one static address per attachment; got ${[...distinct].join(', ')}`,
    );
  const first = parsed[0];
  if (!first) return undefined;
  const withPrefix = parsed.find((p) => p.prefixLength !== undefined);
  const out: StaticIp = { ip: first.ip, source: first.source };
  if (withPrefix?.prefixLength !== undefined) out.prefixLength = withPrefix.prefixLength;
  return out;
}

export interface HostPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  hostIP?: string;
}

/**
 * hostPort mappings handed to tether-cni (`"capabilities": {"portMappings": true}`): the node
 * programs them (the standard `portmap` plugin cannot reach a workload in its network's
 * namespace). Refused clearly when they cannot be honoured: IPv6, SCTP, bad ports.
 */
export function portMappingsOf(raw: Record<string, unknown>): HostPortMapping[] {
  const rc = raw.runtimeConfig;
  if (!isObject(rc) || rc.portMappings === undefined) return [];
  const field = 'runtimeConfig.portMappings';
  if (!Array.isArray(rc.portMappings))
    throw invalidConfig(field, 'an array of {hostPort, containerPort, protocol}');
  const port = (x: unknown): x is number =>
    typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;
  return rc.portMappings.map((m: unknown, i: number) => {
    const f = `${field}[${i}]`;
    if (!isObject(m)) throw invalidConfig(f, 'an object {hostPort, containerPort, protocol}');
    if (!port(m.hostPort)) throw invalidConfig(`${f}.hostPort`, 'an integer 1-65535');
    if (!port(m.containerPort)) throw invalidConfig(`${f}.containerPort`, 'an integer 1-65535');
    const protocol =
      typeof m.protocol === 'string' ? m.protocol.toLowerCase() : m.protocol === undefined ? 'tcp' : '';
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalidConfig(`${f}.protocol`, '"tcp" or "udp"');
    const out: HostPortMapping = { hostPort: m.hostPort, containerPort: m.containerPort, protocol };
    if (m.hostIP !== undefined && m.hostIP !== '' && m.hostIP !== '0.0.0.0') {
      if (typeof m.hostIP !== 'string' || !IPV4_RE.test(m.hostIP))
        throw invalidConfig(
          `${f}.hostIP`,
          'empty, 0.0.0.0 or an IPv4 address of the node (tether-cni is IPv4 only)',
        );
      out.hostIP = m.hostIP;
    }
    return out;
  });
}

/** Reads the cniVersion from stdin without validating anything else (for error objects). */
export function sniffVersion(stdin: string): string | undefined {
  if (stdin.length > MAX_STDIN_BYTES) return undefined;
  try {
    const o: unknown = parseJson(stdin, { source: 'stdin' });
    if (isObject(o) && isSupportedVersion(o.cniVersion)) return o.cniVersion;
  } catch {
    /* not JSON: no version */
  }
  return undefined;
}

/** The whole input of one invocation → a typed request. Throws CniError. */
export function parseRequest(stdin: string, env: CniEnv): CniRequest {
  const cmd = env.CNI_COMMAND;
  if (!cmd) throw invalidEnv('CNI_COMMAND', `one of ${COMMANDS.join(', ')}`);
  if (!(COMMANDS as readonly string[]).includes(cmd))
    throw invalidEnv('CNI_COMMAND', `one of ${COMMANDS.join(', ')}`);
  const command = cmd as CniCommand;

  if (command === 'VERSION') {
    // Runtimes send {"cniVersion": …}; an empty or unparsable stdin still gets an answer.
    return { command, cniVersion: sniffVersion(stdin) };
  }

  const config = parseNetConf(decodeJson(stdin), command);
  if (command === 'STATUS' || command === 'GC') return { command, config };

  const containerId = env.CNI_CONTAINERID;
  if (!containerId) throw invalidEnv('CNI_CONTAINERID', 'the container id (required)');
  if (!CONTAINER_ID_RE.test(containerId))
    throw invalidEnv('CNI_CONTAINERID', 'letters, digits, "_", "." and "-", starting with a letter or digit');
  const ifname = env.CNI_IFNAME;
  if (!ifname) throw invalidEnv('CNI_IFNAME', 'the interface name to create in the container (required)');
  if (!IFNAME_RE.test(ifname) || ifname === '.' || ifname === '..')
    throw invalidEnv('CNI_IFNAME', 'a Linux interface name: 1-15 bytes, no "/", ":" or whitespace');
  const netns = env.CNI_NETNS || undefined;
  if (command !== 'DEL' && !netns)
    throw invalidEnv('CNI_NETNS', 'the path of the container network namespace');
  if (netns && (!netns.startsWith('/') || /[\s"'\\]/.test(netns)))
    throw invalidEnv(
      'CNI_NETNS',
      'an absolute path without whitespace or quotes, such as /var/run/netns/NAME or /proc/PID/ns/net',
    );
  const args = parseCniArgs(env.CNI_ARGS);
  const req: AttachmentRequest = { command, config, containerId, ifname, args };
  if (command === 'ADD') {
    const raw = decodeJson(stdin) as Record<string, unknown>;
    const staticIp = requestedAddress(raw, args);
    if (staticIp) req.staticIp = staticIp;
    const pm = portMappingsOf(raw);
    if (pm.length) req.portMappings = pm;
  }
  if (netns) req.netns = netns;
  return req;
}
