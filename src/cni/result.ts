/**
 * Building the CNI result of an ADD and reading back the expectations of a CHECK. Pure.
 */
import { createHash } from 'node:crypto';
import type { AgentEndpoint } from './agent.js';
import { CNI_CODES, CniError, type CniIpConfig, type CniResult, compareVersions } from './spec.js';

/**
 * The host end of the veth pair: `tc` + 10 hex digits of sha256(containerId/ifname), 12 bytes
 * (Linux allows 15). Deterministic, so DEL finds it without any state.
 */
export function hostIfnameFor(containerId: string, ifname: string): string {
  return `tc${createHash('sha256').update(`${containerId}/${ifname}`).digest('hex').slice(0, 10)}`;
}

/** A locally administered unicast MAC derived from a seed. */
export function macFor(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  const bytes = [0x02, h[0] ?? 0, h[1] ?? 0, h[2] ?? 0, h[3] ?? 0, h[4] ?? 0];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The MAC the plugin gives the host end (the agent picks the container end's). */
export function hostMacFor(containerId: string, ifname: string): string {
  return macFor(`host/${containerId}/${ifname}`);
}

export interface AttachmentFacts {
  cniVersion: string;
  containerId: string;
  ifname: string;
  netns: string;
  endpoint: AgentEndpoint;
  prevResult?: CniResult;
}

/**
 * The ADD result: the host veth end (with `sandbox` once the vRouter has moved it into its
 * network's namespace), the container interface (with `sandbox`), its address
 * and the default route via the network's gateway. With a prevResult (tether-cni chained
 * after another plugin), its interfaces, ips, routes and dns are kept and ours appended.
 */
export function buildResult(f: AttachmentFacts): CniResult {
  const legacy = compareVersions(f.cniVersion, '1.0.0') < 0;
  const prev = f.prevResult;
  const interfaces = [...(prev?.interfaces ?? [])];
  const base = interfaces.length;
  interfaces.push(
    {
      name: f.endpoint.hostIfname,
      mac: hostMacFor(f.containerId, f.ifname),
      // Where the host end lives: the vRouter moves it into its network's namespace.
      ...(f.endpoint.hostNetns ? { sandbox: f.endpoint.hostNetns } : {}),
    },
    { name: f.ifname, mac: f.endpoint.mac, sandbox: f.netns },
  );
  if (!legacy) {
    const host = interfaces[base];
    const cont = interfaces[base + 1];
    if (host) host.mtu = f.endpoint.mtu;
    if (cont) cont.mtu = f.endpoint.mtu;
  }
  const ip: CniIpConfig = { address: f.endpoint.address, gateway: f.endpoint.gateway, interface: base + 1 };
  if (legacy) ip.version = '4';
  const result: CniResult = {
    ...(prev ?? {}),
    cniVersion: f.cniVersion,
    interfaces,
    ips: [...(prev?.ips ?? []), ip],
    routes: [...(prev?.routes ?? []), { dst: '0.0.0.0/0', gw: f.endpoint.gateway }],
    dns: prev?.dns ?? {},
  };
  return result;
}

/** What CHECK expects to find inside the container, taken from a prevResult. */
export interface CheckExpectation {
  mac?: string;
  addresses: string[];
  gateway?: string;
}

/**
 * Finds this plugin's interface (`ifname` in `netns`) in a prevResult and the addresses bound
 * to it. Throws CHECK_FAILED when the result does not mention the interface at all.
 */
export function expectationFromResult(prev: CniResult, ifname: string, netns: string): CheckExpectation {
  const interfaces = prev.interfaces ?? [];
  const idx = interfaces.findIndex(
    (i) => i.name === ifname && (i.sandbox === undefined || i.sandbox === netns),
  );
  if (idx < 0)
    throw new CniError(
      CNI_CODES.CHECK_FAILED,
      `prevResult has no interface ${ifname} in ${netns}`,
      'CHECK compares the container against the result of ADD',
    );
  const ips = (prev.ips ?? []).filter((i) => i.interface === idx);
  const exp: CheckExpectation = { addresses: ips.map((i) => i.address) };
  const mac = interfaces[idx]?.mac;
  if (mac) exp.mac = mac.toLowerCase();
  const gw = ips.find((i) => i.gateway)?.gateway;
  if (gw) exp.gateway = gw;
  return exp;
}
